"""The central's own alerts, for parks without Prometheus: the same conditions as config/prometheus's
rules, checked by the scheduler, kept as `alerts` rows (one open row per site, place and kind) and
sent to the configured webhooks and e-mail addresses once, with a recovery notice when they clear.

    check(session, cfg, now)     conditions -> open the new alerts, touch the lasting ones, resolve the cleared
                                 (resolved_by "system"); returns what changed
    pending(session)             the notices still to send: new alerts, and recoveries of notified ones
    deliver(notices, cfg)        webhooks (slack / wecom / dingtalk JSON) and SMTP; which ones got through
    mark_sent(session, sent)     so a notice goes out once; one that failed is tried again next check

    kind            place            raised when
    gate_down       the gate         a gate seen before is offline (its heartbeat missed)
    gate_outbox     the gate         a gate holds more than `outbox_events` unsent events
    zone_full       "zone:N"         a zone is at `occupancy_ratio` of its capacity
    ingest_lag      ""               events stored in the last minute took over 5 s from the gate (p99)
    conflicts       ""               new conflicts in the last 15 minutes
    parked_messages ""               more than `parked_messages` messages parked
    link_down       the other server nothing heard from a replicating peer for `link_quiet_s` (on each of
                                     its parks at a head office; on this server's own at a park server)

Claim times live in the claim servers' processes only: their alert (p99 over the deadline) is Prometheus's.
Texts are in the site's language; they name places and counts, never a visitor.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.models import Alert, Conflict, Gate, ParkedMessage, PassageEventRecord, Site, Zone, utcnow
from central.services.alerts import AlertRaise, raise_alerts
from protocol.i18n import N_, translation

log = logging.getLogger(__name__)
SYSTEM = "system"
LAG_LIMIT_S = 5.0
LAG_WINDOW = timedelta(minutes=10)
CONFLICT_WINDOW = timedelta(minutes=15)

TEXTS = {
    "gate_down": N_("Gate %(place)s of %(site)s is down: no heartbeat since %(since)s."),
    "gate_outbox": N_("Gate %(place)s of %(site)s holds %(value)s events it could not send to the central."),
    "zone_full": N_("Zone %(place)s of %(site)s is at %(value)s %% of its capacity."),
    "ingest_lag": N_("The central stores passages of %(site)s %(value)s s after they happen (over 5 s)."),
    "conflicts": N_("%(value)s new conflicts at %(site)s: gates decided without seeing each other."),
    "parked_messages": N_("%(value)s messages the central could not store are parked (%(site)s)."),
    "link_down": N_("No word from server %(place)s for %(site)s since %(since)s: each side goes on alone, "
                    "and what changed meanwhile is sent when the link returns."),
}
RECOVERED = {
    "gate_down": N_("Recovered: gate %(place)s of %(site)s is back."),
    "gate_outbox": N_("Recovered: gate %(place)s of %(site)s has sent its events."),
    "zone_full": N_("Recovered: zone %(place)s of %(site)s is below the alert level again."),
    "ingest_lag": N_("Recovered: the central stores the passages of %(site)s in time again."),
    "conflicts": N_("Recovered: no new conflicts at %(site)s for 15 minutes."),
    "parked_messages": N_("Recovered: the parked messages of %(site)s are below the alert level."),
    "link_down": N_("Recovered: server %(place)s is heard again for %(site)s."),
}
KINDS = tuple(TEXTS)
OTHER_TEXTS = {  # alerts raised elsewhere (central.services.alerts), shown on the same page
    "implausible_event": N_("Gate %(place)s of %(site)s sent events the central refused to count (%(value)s)."),
}


@dataclass(frozen=True)
class Condition:
    site_id: str
    place: str
    kind: str
    value: str = ""


@dataclass(frozen=True)
class Notice:
    alert_id: int
    recovery: bool
    text: str


def conditions(session: Session, cfg, now: datetime) -> list[Condition]:
    """Every alert condition that holds now (see the module doc)."""
    found: list[Condition] = []
    for g in session.scalars(select(Gate).where(Gate.last_seen_at.is_not(None))):
        if not g.online:
            since = (g.offline_since or g.last_seen_at or now).isoformat(timespec="seconds")
            found.append(Condition(g.site_id, g.name, "gate_down", since))
        elif (g.outbox or 0) > cfg.outbox_events:
            found.append(Condition(g.site_id, g.name, "gate_outbox", str(g.outbox)))
    for z in session.scalars(select(Zone).where(Zone.capacity.is_not(None), Zone.capacity > 0)):
        if z.capacity and z.inside >= cfg.occupancy_ratio * z.capacity:  # the query keeps only capacities
            found.append(Condition(z.site_id, f"zone:{z.number}", "zone_full", str(round(100 * z.inside / z.capacity))))
    sites = list(session.scalars(select(Site.id).order_by(Site.id)))
    recent = now - timedelta(minutes=1)
    for site in sites:
        # The site's newest 500 events by the gates' clocks (the (site_id, at) index: a few pages, however
        # large the table); those stored in the last minute, online, tell how far behind the ingest is.
        rows = session.execute(select(PassageEventRecord.at, PassageEventRecord.received_at, PassageEventRecord.offline)
                               .where(PassageEventRecord.site_id == site, PassageEventRecord.at >= now - LAG_WINDOW)
                               .order_by(PassageEventRecord.at.desc()).limit(500)).all()
        lags = sorted(max(0.0, (received - at).total_seconds()) for at, received, offline in rows
                      if not offline and received >= recent)
        if lags:
            p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            if p99 > LAG_LIMIT_S:
                found.append(Condition(site, "", "ingest_lag", f"{p99:.0f}"))
    for site, n in session.execute(select(Conflict.site_id, func.count())
                                   .where(Conflict.created_at >= now - CONFLICT_WINDOW, Conflict.resolved_at.is_(None))
                                   .group_by(Conflict.site_id)):
        found.append(Condition(site, "", "conflicts", str(n)))
    parked = session.scalar(select(func.count()).select_from(ParkedMessage)) or 0
    if parked > cfg.parked_messages:
        found.extend(Condition(site, "", "parked_messages", str(parked)) for site in sites)
    return found


def link_conditions(session: Session, cfg, peers: dict[str, tuple[str, ...] | None], home: Collection[str],
                    now: datetime) -> list[Condition]:
    """A replicating peer not heard from for `cfg.link_quiet_s`: on each of its parks (a park server, at
    the head office), or on this server's own parks (the head office, at a park server)."""
    from central.services.replication import links

    found: list[Condition] = []
    for link in links(session, peers, now, quiet_s=cfg.link_quiet_s):
        if not link.up:  # never heard from: since this check first saw it
            since = (link.heard_at or now).isoformat(timespec="seconds")
            found.extend(Condition(site, link.peer, "link_down", since) for site in (link.sites or home))
    return found


def check(session: Session, cfg, now: datetime | None = None, skip: Collection[str] = (),
          peers: dict[str, tuple[str, ...] | None] | None = None,
          home: Collection[str] = ()) -> tuple[list[Condition], list[int]]:
    """Open or touch the alerts whose conditions hold, resolve the system's alerts that cleared;
    returns (conditions, ids resolved). `skip`: parks whose own server raises and clears their alerts
    (a head office's park servers: their alerts come with the replication), but for the link with that
    server (`peers`, the replicating servers; `home`: this server's own parks)."""
    now = now or utcnow()
    holding = [c for c in conditions(session, cfg, now) if c.site_id not in skip]
    if peers:
        holding += link_conditions(session, cfg, peers, home, now)
    raise_alerts(session, [AlertRaise(c.site_id, c.place, c.kind, c.value, now) for c in holding])
    keys = {(c.site_id, c.place, c.kind) for c in holding}
    resolved: list[int] = []
    for alert in session.scalars(select(Alert).where(Alert.kind.in_(KINDS), Alert.resolved_at.is_(None))):
        ours = alert.site_id not in skip or (alert.kind == "link_down" and alert.gate in (peers or {}))
        if (alert.site_id, alert.gate, alert.kind) not in keys and ours:
            alert.resolved_at, alert.resolved_by = now, SYSTEM
            resolved.append(alert.id)
    session.flush()
    return holding, resolved


def _since(detail: str, timezone: str) -> str:
    """The stored UTC time of a gate_down or link_down alert, as the park's clock shows it."""
    try:
        at = datetime.fromisoformat(detail)
    except ValueError:
        return detail
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def alert_text(alert, language: str, timezone: str, recovery: bool = False) -> str:
    """What a person reads about the alert (an Alert or AlertView) or its recovery, in `language`, times in
    the park's zone."""
    message = (RECOVERED if recovery else TEXTS).get(alert.kind) or OTHER_TEXTS.get(alert.kind)
    if message is None:
        return f"{alert.kind}: {alert.gate} {alert.detail}".strip()
    place = alert.gate.removeprefix("zone:")
    return translation(language).gettext(message) % {"site": alert.site_id, "place": place, "value": alert.detail,
                                                     "since": _since(alert.detail, timezone)}


def pending(session: Session) -> list[Notice]:
    """The notices not sent yet: each open alert once, each cleared one's recovery once (if it was notified)."""
    sites = {s.id: (s.language, s.timezone) for s in session.scalars(select(Site))}
    notices = []
    for alert in session.scalars(select(Alert).where(Alert.kind.in_(KINDS), Alert.notified_at.is_(None),
                                                     Alert.resolved_at.is_(None)).order_by(Alert.id)):
        notices.append(Notice(alert.id, False, alert_text(alert, *sites.get(alert.site_id, ("zh", "UTC")))))
    for alert in session.scalars(select(Alert).where(Alert.kind.in_(KINDS), Alert.notified_at.is_not(None),
                                                     Alert.resolved_by == SYSTEM,
                                                     Alert.recovery_notified_at.is_(None)).order_by(Alert.id)):
        notices.append(Notice(alert.id, True, alert_text(alert, *sites.get(alert.site_id, ("zh", "UTC")), True)))
    return notices


def webhook_body(style: str, text: str) -> bytes:
    """The JSON a chat webhook takes: Slack's {"text"}, WeCom's and DingTalk's {"msgtype": "text"}."""
    if style in ("wecom", "dingtalk"):
        return json.dumps({"msgtype": "text", "text": {"content": text}}, ensure_ascii=False).encode()
    return json.dumps({"text": text}, ensure_ascii=False).encode()


def _post(url: str, body: bytes) -> None:
    # http(s) only: alerts.webhooks is checked at config load.
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        if response.status >= 300:
            raise OSError(f"webhook answered {response.status}")


def _mail(cfg, text: str) -> None:
    message = EmailMessage()
    message["From"] = cfg.mail_from
    message["To"] = ", ".join(cfg.mail_to)
    message["Subject"] = text if len(text) <= 120 else text[:117] + "..."
    message.set_content(text)
    with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=15) as smtp:
        if cfg.smtp_starttls:
            smtp.starttls()
        if cfg.smtp_username:
            smtp.login(cfg.smtp_username, cfg.smtp_password)
        smtp.send_message(message)


def deliver(notices: list[Notice], cfg, count=None) -> list[Notice]:
    """Send each notice to every webhook and address; returns those that reached all of them."""
    sent = []
    for notice in notices:
        ok = True
        for url in cfg.webhooks:
            try:
                _post(url, webhook_body(cfg.webhook_style, notice.text))
                outcome = "sent"
            except OSError as exc:
                ok, outcome = False, "failed"
                log.warning("alert webhook failed: %s", exc.__class__.__name__)
            if count:
                count("webhook", outcome)
        if cfg.mail_to:
            try:
                _mail(cfg, notice.text)
                outcome = "sent"
            except (OSError, smtplib.SMTPException) as exc:
                ok, outcome = False, "failed"
                log.warning("alert e-mail failed: %s", exc.__class__.__name__)
            if count:
                count("email", outcome)
        if ok:
            sent.append(notice)
    return sent


def mark_sent(session: Session, sent: list[Notice], now: datetime | None = None) -> None:
    now = now or utcnow()
    for notice in sent:
        alert = session.get(Alert, notice.alert_id)
        if alert is None:
            continue
        if notice.recovery:
            alert.recovery_notified_at = now
        else:
            alert.notified_at = now


__all__ = ["KINDS", "Condition", "Notice", "alert_text", "check", "conditions", "deliver", "mark_sent", "pending",
           "webhook_body"]
