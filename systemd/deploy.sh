#!/usr/bin/env bash
# The README's production steps as one script: install a central, set up Mosquitto, provision gates,
# install a gate box. Run as root on Debian 12. tests/deploy/test_production_steps.py runs these very
# commands with paths under a scratch folder (the variables below) and a stand-in for systemctl.
#
#   systemd/deploy.sh central                    venv + package, config with fresh secrets, schema, keys, units
#   systemd/deploy.sh site SITE [N:CAPACITY ...]  the park and its zones
#   systemd/deploy.sh admin NAME                 the first admin (prints a one-time password)
#   systemd/deploy.sh mosquitto                  the drop-in, the password and ACL files, a reload
#   systemd/deploy.sh provision SITE GATE ZONE [MODEL] [BROKER]
#                                                register a gate, write its TOML to $GATES_OUT/GATE.toml,
#                                                refresh the broker's files and reload (nobody is dropped)
#   systemd/deploy.sh gate-box FILE.toml         on the box: venv + package, its config, the unit
#   systemd/deploy.sh start central|gate         enable and start the units (the replicator: with [replication])
#
# Before `central`: apt-get install -y postgresql mosquitto python3-venv, and the database:
#   runuser -u postgres -- createuser park-central && runuser -u postgres -- createdb -O park-central park
set -euo pipefail

SOURCE=${SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
PACKAGE=${PACKAGE:-$SOURCE}                   # the source tree or a built wheel
PREFIX=${PREFIX:-/opt/scenic-gates}           # the virtualenv is $PREFIX/.venv (the units' ExecStart)
ETC=${ETC:-/etc}
STATE=${STATE:-/var/lib}
UNITS=${UNITS:-/etc/systemd/system}
CENTRAL_USER=${CENTRAL_USER:-park-central}
GATE_USER=${GATE_USER:-gate-agent}
MQTT_GROUP=${MQTT_GROUP:-mosquitto}
MQTT_PORT=${MQTT_PORT:-1883}                  # the central's loopback listener (park.conf)
DB_URL=${DB_URL:-postgresql+psycopg://park-central@/park}
CENTRAL_EXTRAS=${CENTRAL_EXTRAS:-central,face}
GATE_EXTRAS=${GATE_EXTRAS:-gate}
GATES_OUT=${GATES_OUT:-.}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
PIP_QUIET=${PIP_QUIET:--q}

CONF=$ETC/park-central/central.toml
VENV=$PREFIX/.venv
say() { printf '== %s\n' "$*"; }

as_user() {  # run a command as a service user (db upgrade over peer auth, keys it must read later)
  local user=$1; shift
  if [ "$(id -un)" = "$user" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

ensure_user() {  # a system user for a service, with extra groups
  local user=$1 groups=${2:-}
  id -u "$user" >/dev/null 2>&1 && return 0
  useradd --system --home-dir "$STATE/$user" --shell /usr/sbin/nologin ${groups:+--groups "$groups"} "$user"
}

install_venv() {  # a virtualenv with the package and the extras
  local extras=$1
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install $PIP_QUIET "$PACKAGE[$extras]"
  case ",$extras," in
    *,face,*) "$VENV/bin/pip" install $PIP_QUIET --no-deps 'face-recognition==1.3.0' ;;
  esac
}

install_unit() {  # a unit file, its paths moved to this install's
  sed -e "s#/opt/scenic-gates#$PREFIX#g" -e "s#/etc/park-central#$ETC/park-central#g" \
      -e "s#/etc/scenic-gates#$ETC/scenic-gates#g" "$SOURCE/systemd/$1" > "$UNITS/$1"
}

central() {
  ensure_user "$CENTRAL_USER"
  install -d -m 750 -o "$CENTRAL_USER" -g "$CENTRAL_USER" "$STATE/park-central"
  install_venv "$CENTRAL_EXTRAS"
  install -d -m 750 -o root -g "$CENTRAL_USER" "$ETC/park-central"
  if [ ! -e "$CONF" ]; then
    "$VENV/bin/park-central" init-config --out "$CONF" --database "$DB_URL" --state-dir "$STATE/park-central" \
      --mqtt-port "$MQTT_PORT" --group "$CENTRAL_USER"
  fi
  as_user "$CENTRAL_USER" "$VENV/bin/park-central" --config "$CONF" db upgrade
  if [ ! -e "$STATE/park-central/signing.key" ]; then  # made by the user that reads it (0600)
    as_user "$CENTRAL_USER" "$VENV/bin/park-central" --config "$CONF" keys generate
  fi
  install -d "$UNITS"
  for unit in park-central.target park-central-web.service park-central-ingest@.service \
              park-central-claims@.service park-central-scheduler.service park-central-replicate.service; do
    install_unit "$unit"
  done
  $SYSTEMCTL daemon-reload
}

site() {
  local site=$1; shift
  local zones=()
  for z in "$@"; do zones+=(--zone "$z"); done
  as_user "$CENTRAL_USER" "$VENV/bin/park-central" --config "$CONF" site create "$site" "${zones[@]}"
}

admin() {
  as_user "$CENTRAL_USER" "$VENV/bin/park-central" --config "$CONF" user create "$1" --role admin
}

broker_files() {  # the password and ACL files, readable by the broker's group, replaced atomically
  "$VENV/bin/park-central" --config "$CONF" acl --passwords "$ETC/mosquitto/park.passwd" \
    --acl "$ETC/mosquitto/park.acl" --group "$MQTT_GROUP"
}

mosquitto() {
  install -d -m 755 "$ETC/mosquitto/conf.d"
  sed -e "s#/etc/mosquitto/#$ETC/mosquitto/#g" -e "s#^listener 1883 127.0.0.1#listener $MQTT_PORT 127.0.0.1#" \
      "$SOURCE/config/mosquitto/park.conf" > "$ETC/mosquitto/conf.d/park.conf"
  chmod 644 "$ETC/mosquitto/conf.d/park.conf"
  broker_files
  $SYSTEMCTL reload-or-restart mosquitto
}

provision() {
  local site=$1 gate=$2 zone=$3 model=${4:-tripod-coil} broker=${5:-}
  install -d -m 700 "$GATES_OUT"
  "$VENV/bin/park-central" --config "$CONF" provision-gate "$site" "$gate" --zone "$zone" --controller "$model" \
    ${broker:+--broker "$broker"} -o "$GATES_OUT/$gate.toml"
  broker_files
  $SYSTEMCTL reload mosquitto  # re-reads the files; connected gates and the central stay connected
}

gate_box() {
  local toml=$1
  ensure_user "$GATE_USER" dialout
  install_venv "$GATE_EXTRAS"
  install -d -m 750 -o root -g "$GATE_USER" "$ETC/scenic-gates"
  sed -e "s#/var/lib/scenic-gates#$STATE/scenic-gates#g" "$toml" > "$ETC/scenic-gates/gate.toml"
  chown "root:$GATE_USER" "$ETC/scenic-gates/gate.toml" && chmod 640 "$ETC/scenic-gates/gate.toml"
  install -d -m 700 -o "$GATE_USER" -g "$GATE_USER" "$STATE/scenic-gates"  # the unit's StateDirectory
  install -d "$UNITS"
  install_unit gate-agent.service
  $SYSTEMCTL daemon-reload
}

replicate_unit() {  # the replicator's unit when the config sets [replication] server (else it has no peers)
  "$VENV/bin/python" -c 'import sys; from central.config import ConfigError, load_config
try: config = load_config(sys.argv[1], env={})
except ConfigError as exc: sys.exit(f"configuration error: {exc}")
print("park-central-replicate.service" if config.replication.enabled else "")' "$CONF"
}

start() {
  local replicate
  case $1 in
    central) replicate=$(replicate_unit)  # a broken config stops the step here
             $SYSTEMCTL enable --now park-central.target park-central-web.service park-central-ingest@1.service \
               park-central-scheduler.service $replicate ;;
    gate) $SYSTEMCTL enable --now gate-agent.service ;;
    *) echo "start central|gate" >&2; return 2 ;;
  esac
}

step=${1:-}
[ -n "$step" ] || { sed -n '2,16p' "$0"; exit 2; }
shift
case $step in
  central) say "central"; central "$@" ;;
  site) say "site $1"; site "$@" ;;
  admin) say "admin $1"; admin "$@" ;;
  mosquitto) say "mosquitto"; mosquitto "$@" ;;
  provision) say "provision $2"; provision "$@" ;;
  gate-box) say "gate box"; gate_box "$@" ;;
  start) say "start $1"; start "$@" ;;
  *) echo "unknown step $step" >&2; sed -n '2,16p' "$0"; exit 2 ;;
esac
