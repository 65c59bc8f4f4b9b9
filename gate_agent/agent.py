"""The gate agent: readers feed one decision worker, which shows the decision, drives the turnstile and
stores the passage; the link forwards it, and the central's config, commands and cache changes flow in.

    reader threads ──Attempt──► decision queue ──► worker: resolve, decide, show, open, wait, record
    GateAgent.present() ───────────┘                                              │
                                                              store (usage + outbox, one transaction)
    MQTT link ◄── drainer (outbox, QoS 1, delete on PUBACK) ◄─────────────────────┘
       │
       └─► config (validate, apply, ack) · commands · deltas / snapshots · site events (usage) · occupancy

    monitor thread: heartbeat status, controller alarms, mode on the controller, free-passage
                    counting, systemd watchdog
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec

from protocol import messages as m
from protocol import topics
from protocol.errors import MessageError
from protocol.ids import new_event_id
from protocol.reasons import Reason, visitor_text
from protocol.rules import Biometric, refused

from .claims import ClaimClient
from .config import GateFileConfig
from .decider import KINDS, ActiveConfig, Attempt, ConfigInvalid, Decider, Outcome, Resolved, ZoneTracker, validate
from .display import ConsoleDisplay, Display, colour_for, make_display
from .fingerprints import FingerprintSync
from .id_key import id_key_file, load_id_salt, save_id_salt
from .link import Link
from .readers import Camera, Reader, build_readers, run_reader
from .store import NO_SALT, Store
from .template_key import load_template_cipher
from .turnstile import TurnstileControl, TurnstileUnavailable

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
QUEUE_LIMIT = 32
PENDING_PASSAGE = "pending_passage"  # store meta: a passage under way (see GateAgent._mark_passage)
STALE_ATTEMPT_S = 15.0
FINGER_WAIT_S = 8.0  # card + fingerprint: how long the gate waits for the finger after the card


@dataclass
class Handled:
    """What became of one attempt: the decision, the passages confirmed, the events written."""

    attempt: Attempt
    outcome: Outcome | None = None
    passed: int = 0
    events: list[m.PassageEvent] = field(default_factory=list)
    ignored: str | None = None  # "repeat", "stale", "queue full", "stopped"

    @property
    def granted(self) -> bool:
        return self.outcome is not None and self.outcome.verdict.granted

    @property
    def reason(self) -> str | None:
        return str(self.outcome.verdict.reason) if self.outcome else None


@dataclass
class _Job:
    attempt: Attempt
    queued_at: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Handled | None = None


class GateAgent:
    """One gate: start(), stop(), present(); everything else runs in its threads."""

    def __init__(self, cfg: GateFileConfig, *, display: Display | None = None, store: Store | None = None) -> None:
        self.file_cfg = cfg
        self.site, self.gate = cfg.site, cfg.gate_id
        self.store = store or Store(cfg.store_path, cipher=load_template_cipher(cfg))
        # The module's slots mirror the store's fingerprint templates (synced in the reader's thread).
        self.fingerprints = FingerprintSync(self.store) if cfg.devices.fingerprint else None
        self.display: Display = display or make_display(cfg.devices.display.kind, self.gate,
                                                        cfg.devices.display.voice)
        self.zones = ZoneTracker()
        self.decider = Decider(self.store, self.zones)
        self.decider.load_faces = lambda: self.load_faces(force=True)  # 1:N built on the first face attempt
        self.active: ActiveConfig | None = None
        self.turnstile: TurnstileControl | None = None
        self._turnstile_key: tuple | None = None
        self._no_turnstile: str | None = None  # why a configured turnstile cannot be driven (an alarm)
        self.readers: list[Reader] = []
        self.camera: Camera | None = None
        self._broken_readers: list[m.ReaderHealth] = []
        self.alarms: frozenset[str] = frozenset()
        self._controller_mode: str | None = None
        self._mode_lock = threading.RLock()  # held while a locked gate lets one exit through
        self._queue: queue.Queue[_Job] = queue.Queue(QUEUE_LIMIT)
        self._recent: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.RLock()  # config, mode and resync state
        self._resyncing = False
        self._resync_asked_at = 0.0
        self._snap_next = 0
        self._buffered: dict[int, m.Delta] = {}
        self._counters_seen = None
        self._status_dirty = threading.Event()
        self.link = Link(cfg, self.store, on_connect=self._on_connect)
        self._subscribe()
        self.claims = ClaimClient(self.link, self.site, self.gate)
        self.control = None
        self._load_saved_config()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> GateAgent:
        self.readers, self.camera, self._broken_readers = build_readers(self.file_cfg.devices, self._slot_holder,
                                                                         self.fingerprints)
        self._rebuild_turnstile()
        self._recover_passage()  # else the next passage settles it, before the arm opens again
        self.load_faces()
        self._spawn("decide", self._worker)
        for reader in self.readers:
            self._spawn(f"reader-{reader.name}", run_reader, reader, self.submit, self._stop)
        self._spawn("monitor", self._monitor)
        self.link.start()
        from .control import ControlServer

        self.control = ControlServer(self, self.file_cfg.control_socket)
        self.control.start()
        _sd_notify("READY=1")
        log.info("gate %s/%s started: %d readers, turnstile %s", self.site, self.gate, len(self.readers),
                 self.turnstile.port if self.turnstile else "none")
        return self

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"{self.gate}-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        _sd_notify("STOPPING=1")
        self._stop.set()
        if self.control:
            self.control.stop()
        for thread in self._threads:
            thread.join(3)
        self.link.stop(publish_offline=self._status(online=False))
        if self.turnstile:
            self.turnstile.close()
        self.store.close()

    def __enter__(self) -> GateAgent:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------------

    @property
    def mode(self) -> m.Mode:
        override = self.store.meta("mode_override")
        if override:
            return override  # type: ignore[return-value]
        return self.active.cfg.mode if self.active else "locked"

    def _load_saved_config(self) -> None:
        """The last good config: the store's, with the site's ID-number salt from its own key file."""
        payload = self.store.saved_config()
        if payload is None:
            return
        try:
            cfg = m.decode(m.GateConfig, payload)
        except MessageError as exc:
            log.error("the saved config is unusable (%s); waiting for the central's", exc)
            return
        if cfg.id_salt != NO_SALT:
            # A store written before the salt had a file of its own: move the salt out of it.
            save_id_salt(self.file_cfg, cfg.id_salt)
            self.store.save_config(payload, cfg.version)
            self.store.checkpoint()
            log.info("the ID-number salt moved from the store to %s", id_key_file(self.file_cfg))
        else:
            salt = load_id_salt(self.file_cfg)
            if salt is None:
                log.error("the ID-number salt file %s is missing; waiting for the central's config",
                          id_key_file(self.file_cfg))
                return
            cfg = msgspec.structs.replace(cfg, id_salt=salt)
        try:
            validate(cfg, self.site, self.gate)
        except ConfigInvalid as exc:
            log.error("the saved config is unusable (%s); waiting for the central's", exc)
            return
        # As the central sends it: the retained config that arrives at connect then changes nothing.
        self.active = ActiveConfig(cfg, m.encode(cfg))
        log.info("using the last good config, version %s", cfg.version)

    def apply_config(self, payload: bytes) -> m.ConfigAck:
        """Validate and apply a GateConfig without a restart; the ack says applied or why not."""
        try:
            # The payload is kept as text (store meta); msgspec skips unknown fields without checking
            # them, so a stray non-UTF-8 byte would pass decoding and fail half-way through applying.
            bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            return m.ConfigAck(self.gate, 0, False, "malformed: the payload is not UTF-8")
        try:
            cfg = m.decode(m.GateConfig, payload)
        except MessageError as exc:
            error = f"{exc.reason}: {exc.field or exc.detail}"[:256]
            return m.ConfigAck(self.gate, _peek_version(payload), False, error)
        try:
            turnstile = self.file_cfg.devices.turnstile
            check = _profile_check(turnstile.profile_dirs if turnstile else ())
            validate(cfg, self.site, self.gate, profile_check=check)
        except ConfigInvalid as exc:
            log.warning("config version %s refused: %s", cfg.version, exc)
            return m.ConfigAck(self.gate, cfg.version, False, str(exc)[:256])
        with self._lock:
            current = self.active.cfg.version if self.active else 0
            if cfg.version < current:
                return m.ConfigAck(self.gate, cfg.version, False, f"$.version: older than the applied {current}")
            changed = self.active is None or self.active.payload != payload
            active = ActiveConfig(cfg, payload)
            if changed:
                self._rebuild_turnstile(cfg.hardware)  # before the worker can see the new config
            self.active = active
            if changed:
                save_id_salt(self.file_cfg, cfg.id_salt)  # first: the store's copy is saved without it
                self.store.save_config(payload, cfg.version)
                if cfg.version != current:
                    self.store.set_meta("mode_override", None)  # a new config sets the mode afresh
        if changed:
            log.info("config version %s applied (mode %s)", cfg.version, cfg.mode)
            self._apply_mode()
            self._status_dirty.set()
        return m.ConfigAck(self.gate, cfg.version, True, None)

    def _rebuild_turnstile(self, hw: m.HardwareParams | None = None) -> None:
        t = self.file_cfg.devices.turnstile
        if t is None:
            return
        if hw is None:
            hw = self.active.cfg.hardware if self.active else m.HardwareParams()
        profile = t.profile or hw.controller_profile
        unit_id = t.unit_id if t.unit_id is not None else hw.unit_id
        key = (profile, unit_id)
        if not profile or key == self._turnstile_key:
            if not profile:
                self._no_turnstile = "controller_profile_missing"  # neither gate.toml nor the central names one
            return
        from drivers.turnstile import ProfileError

        try:
            control = TurnstileControl(
                profile=profile, tcp=t.tcp_address(), serial=t.serial, baudrate=t.baudrate, unit_id=unit_id,
                timeout_s=t.timeout_s, retries=t.retries, profile_dirs=t.profile_dirs)
        except ProfileError as exc:
            log.error("the turnstile cannot be driven: %s", exc)
            control, self._no_turnstile = None, "controller_profile_unknown"
        else:
            self._no_turnstile = None
        old, self.turnstile = self.turnstile, control
        self._turnstile_key = key
        self._controller_mode = None
        self._counters_seen = None
        if old is not None:
            old.close()

    def _apply_mode(self) -> None:
        if self.turnstile is None:
            return
        if not self._mode_lock.acquire(blocking=False):
            self._controller_mode = None  # an exit is passing a locked gate: its end applies the mode
            return
        try:
            mode = self.mode
            self.turnstile.set_mode(mode)
            self._controller_mode = mode
            # Free passage: from now on the controller's counters say who passes.
            self._counters_seen = self.turnstile.counters() if mode in ("free", "emergency") else None
        except TurnstileUnavailable:
            self._controller_mode = None  # the monitor tries again
        finally:
            self._mode_lock.release()

    def _pass_once(self, direction: m.Direction, timeout: float, mode: m.Mode, opened=None) -> bool:
        """One turn of the arm. A locked controller ignores open commands, yet exits are never refused
        (nobody is trapped inside): for an exit the controller goes to normal mode, where the arm stays
        locked until this one open command, and back to the gate's mode once the visitor is out."""
        if not (mode == "locked" and direction == "out"):
            return self.turnstile.pass_once(direction, timeout, opened).passed
        with self._mode_lock:
            try:
                self.turnstile.set_mode("normal")
                self._controller_mode = "normal"
                return self.turnstile.pass_once(direction, timeout, opened).passed
            finally:
                self._apply_mode()  # locked again, or whatever mode was set meanwhile

    def set_mode(self, mode: m.Mode) -> None:
        """A technician's or the central's mode (kept until the next config version)."""
        self.store.set_meta("mode_override", mode)
        self._apply_mode()
        self._status_dirty.set()

    # -- deciding ------------------------------------------------------------------------------

    def submit(self, attempt: Attempt) -> _Job | None:
        job = _Job(attempt, time.monotonic())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("decision queue full: %s attempt dropped", attempt.kind)
            job.result = Handled(attempt, ignored="queue full")
            job.done.set()
        return job

    def present(self, kind: str, value: object, direction: m.Direction = "in", *, timeout: float = 30.0) -> Handled:
        """Enter the same decision path as a reader and wait for the outcome (tests, demo)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        job = self.submit(Attempt(kind, value, direction, "present"))  # type: ignore[arg-type]
        if not job.done.wait(timeout):
            raise TimeoutError(f"no decision within {timeout} s")
        return job.result

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                job.result = self._handle(job)
            except Exception:
                log.exception("deciding a %s attempt failed", job.attempt.kind)
                job.result = Handled(job.attempt, ignored="error")
            finally:
                job.done.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            job.result = Handled(job.attempt, ignored="stopped")
            job.done.set()

    def _is_repeat(self, attempt: Attempt) -> bool:
        window = self.active.cfg.hardware.repeat_scan_s if self.active else 1.5
        now = time.monotonic()
        key = attempt.repeat_key
        last = self._recent.get(key)
        if len(self._recent) > 1000:
            self._recent = {k: v for k, v in self._recent.items() if now - v < 60}
        return last is not None and now - last < window

    def _handle(self, job: _Job) -> Handled:
        attempt = job.attempt
        if time.monotonic() - job.queued_at > STALE_ATTEMPT_S:
            return Handled(attempt, ignored="stale")
        if self._is_repeat(attempt):
            log.debug("repeated %s scan ignored", attempt.kind)
            return Handled(attempt, ignored="repeat")
        key = attempt.repeat_key
        self._recent[key] = time.monotonic()
        try:
            return self._decide_and_act(attempt)
        finally:
            self._recent[key] = time.monotonic()  # the window counts from the end of the passage

    def _decide_and_act(self, attempt: Attempt) -> Handled:
        now = datetime.now(UTC)
        offline = not self.link.connected
        active, mode = self.active, self.mode
        claim_id, alone = None, False
        if active is None:
            outcome = Outcome(Resolved(attempt.kind), refused(Reason.GATE_LOCKED))
        else:
            outcome = self.decider.decide(attempt, active, now=now, mode=mode, capture=self._capture)
            # Site policy claim=central: the central grants the entry first (gate_agent.claims).
            settled = self.claims.settle(active, attempt, outcome, mode, now)
            outcome, claim_id, alone = settled.outcome, settled.claim_id, settled.alone
            offline = offline or alone
        verdict = outcome.verdict
        self._tell(verdict.reason, verdict.retry_at, verdict.passages)
        handled = Handled(attempt, outcome)
        if not verdict.granted:
            handled.events.append(self._record(attempt, outcome, now=now, passed=False, offline=offline, mode=mode,
                                               claim_id=claim_id))
            return handled
        if mode in ("free", "emergency"):
            return handled  # the arm is free: the controller's counters record who passes (monitor)
        direction = attempt.direction
        timeout = active.cfg.hardware.passage_timeout_s
        fault = False
        for turn in range(verdict.passages):
            if self.file_cfg.devices.turnstile is None:
                passed = True  # a check point without an arm: the decision is the passage
            elif self.turnstile is None:  # no usable controller profile
                self._tell_staff()
                passed, fault = False, True
            else:
                try:
                    if not self._recover_passage():
                        raise TurnstileUnavailable("an interrupted passage is not settled yet")
                    passed = self._pass_once(direction, timeout, mode, functools.partial(
                        self._mark_passage, outcome, direction, mode, claim_id))
                except TurnstileUnavailable:
                    self._tell_staff()
                    passed, fault = False, True
            if not passed:
                break  # the note stays: a controller that went silent mid-passage may have counted the visitor
            handled.passed += 1
            binding = outcome.probe if (verdict.bind and turn == 0) else None
            handled.events.append(self._record(attempt, outcome, now=datetime.now(UTC), passed=True,
                                               offline=alone or not self.link.connected, mode=mode, binding=binding,
                                               claim_id=claim_id))
        if handled.passed == 0:
            # Nobody walked through: the entry is kept (a claim is released), the attempt recorded. When the
            # arm could not be driven, the attempt is a refusal for the gate's fault, with that reason.
            record = outcome
            if fault:
                record = Outcome(outcome.resolved, refused(Reason.CONTROLLER_FAULT), outcome.biometric)
            handled.events.append(self._record(attempt, record, now=now, passed=False, offline=offline, mode=mode,
                                               claim_id=claim_id))
        return handled

    def _mark_passage(self, outcome: Outcome, direction: m.Direction, mode: m.Mode, claim_id: str | None,
                      before: int | None) -> None:
        """As the arm opens, note the passage and the controller's counter before it: a process that dies
        between the visitor's passage and `_record` finds it at restart (`_recover_passage`)."""
        credential = outcome.resolved.credential
        # Written without waiting for the disk: it must survive the process dying (the case it exists
        # for), and a power cut stops the turnstile with it; an fsync here would be most of a decision.
        self.store.set_meta(PENDING_PASSAGE, json.dumps({
            "direction": direction, "before": before, "kind": outcome.resolved.kind, "ref": outcome.resolved.ref,
            "ticket_type": credential.ticket_type if credential else None, "mode": mode, "claim_id": claim_id,
            "zone": self.active.cfg.zone if self.active else 0}), fsync=False)

    def _recover_passage(self) -> bool:
        """Settle a passage noted before the arm opened and not recorded: the process died, or the
        controller went silent while the visitor walked through. If the controller's counter moved since,
        record the passage now (once: `Store.record` clears the note in the same transaction); runs at
        start and before the next opening. False if the controller is away."""
        text = self.store.meta(PENDING_PASSAGE)
        if not text:
            return True
        if self.turnstile is None:
            return False
        note = json.loads(text)
        try:
            moved = self.turnstile.counters().get(note["direction"]) != note["before"]
        except TurnstileUnavailable:
            return False
        if not moved:
            self.store.set_meta(PENDING_PASSAGE, None)  # the visitor never went through
            return True
        event = m.PassageEvent(
            id=new_event_id(), site=self.site, gate=self.gate, zone=note["zone"], at=datetime.now(UTC),
            direction=note["direction"], credential_kind=note["kind"], credential_ref=note["ref"], decision="granted",
            reason=str(Reason.OK), passed=True, offline=not self.link.connected, mode=note["mode"],
            ticket_type=note["ticket_type"], claim_id=note["claim_id"])
        self.store.record(event, topics.event(self.site, self.gate))
        self.zones.passage(event)
        self.link.wake()
        log.warning("a passage interrupted by a restart was recorded from the controller's counter")
        return True

    def _record(self, attempt: Attempt, outcome: Outcome, *, now: datetime, passed: bool, offline: bool,
                mode: m.Mode, binding: bytes | None = None, claim_id: str | None = None) -> m.PassageEvent:
        verdict, resolved = outcome.verdict, outcome.resolved
        credential = resolved.credential
        event = m.PassageEvent(
            id=new_event_id(), site=self.site, gate=self.gate, zone=self.active.cfg.zone if self.active else 0,
            at=now, direction=attempt.direction, credential_kind=resolved.kind, credential_ref=resolved.ref,
            decision="granted" if verdict.granted else "refused", reason=str(verdict.reason), passed=passed,
            headcount=1, offline=offline, mode=mode,
            ticket_type=credential.ticket_type if credential else None, binding=binding,
            face_distance=outcome.biometric.distance if outcome.biometric else None, claim_id=claim_id,
        )
        self.store.record(event, topics.event(self.site, self.gate))
        self.zones.passage(event)
        self.link.wake()
        return event

    def _tell(self, reason: Reason, retry_at: datetime | None, passages: int = 1) -> None:
        language = self.active.cfg.language if self.active else self.file_cfg.gate.language
        if retry_at is not None and self.active:
            retry_at = retry_at.astimezone(ZoneInfo(self.active.cfg.timezone))
        text = visitor_text(reason, language, retry_at)
        if passages > 1:
            text = f"{text} ×{passages}"
        try:
            self.display.show(text, colour_for(reason), str(reason))
            self.display.speak(text)
        except Exception:
            log.exception("display failed")

    def _tell_staff(self) -> None:
        language = self.active.cfg.language if self.active else self.file_cfg.gate.language
        text = visitor_text(Reason.CONTROLLER_FAULT, language)
        try:
            self.display.show(text, "red", str(Reason.CONTROLLER_FAULT))
        except Exception:
            log.exception("display failed")

    def _capture(self, step: str, resolved: Resolved, active: ActiveConfig) -> tuple[Biometric | None, bytes | None]:
        """The 1:1 biometric step; (None, None) when nothing usable was captured."""
        if step in ("face", "either") and self.camera is not None:
            probe = self.camera.probe(2.0)
            if probe is None:
                return None, None
            from biometrics.face import FaceTemplate, verify

            bound: list[bytes] = []
            if resolved.holder_id:
                bound = self.store.templates(resolved.holder_id, "face")
            elif resolved.binding:
                bound = [resolved.binding]
            if not bound:
                return Biometric(kind="face", matched=True), probe.to_bytes()  # first entry: bind this face
            best = min((verify(FaceTemplate.from_bytes(b), probe, active.cfg.face_threshold) for b in bound),
                       key=lambda match: match.distance)
            return Biometric(kind="face", matched=best.ok, distance=best.distance), probe.to_bytes()
        if step in ("fingerprint", "either") and resolved.holder_id:
            reader = next((r for r in self.readers if r.kind == "fingerprint"), None)
            if reader is None:
                return None, None
            # The prompt; the decision follows on the display.
            holder = reader.expect(FINGER_WAIT_S, prompt=lambda: self._tell(Reason.FINGER_NEEDED, None))
            if holder is None:
                return None, None  # no finger in time
            # A finger the module does not know, or another holder's, is not this pass's holder.
            return Biometric(kind="fingerprint", matched=holder == resolved.holder_id), None
        return None, None

    def load_faces(self, force: bool = False):
        """The 1:N index of enrolled holders' faces, decrypted from the store into memory.

        Built at start for face-only entry (`[devices.camera] identify`), else on the first face attempt
        (`force`); once built it follows template changes and forgets (`_after_changes`)."""
        camera = self.file_cfg.devices.camera
        if not force and self.decider.faces is None and (camera is None or not camera.identify):
            return None
        from biometrics.face import DEFAULT_THRESHOLD, FaceIndex, FaceTemplate

        threshold = (self.active.cfg.face_threshold if self.active else None) or DEFAULT_THRESHOLD
        # Sized once for what the store holds (plus room to grow): no doubling copies at load.
        index = FaceIndex(threshold, capacity=self.store.count_templates("face") + 1024)
        for holder_id, _finger, _version, data in self.store.iter_templates("face"):
            try:
                index.add(holder_id, FaceTemplate.from_bytes(data))
            except ValueError:
                log.warning("a stored face template of the wrong size was skipped")
        self.decider.faces = index
        return index

    def _after_changes(self, changes) -> None:
        """Keep the in-memory face index and the fingerprint module in step with applied cache changes."""
        from biometrics.erasure import forget_holder

        faces: set[str] = set()
        fingers = False
        for ch in changes:
            if isinstance(ch, m.HolderForget):
                forgotten = forget_holder(ch.holder_id, face_index=self.decider.faces)
                log.info("holder forgotten: %d face templates dropped from memory", forgotten.face_templates)
                faces.discard(ch.holder_id)
                fingers = True
            elif isinstance(ch, m.TemplateChange):
                if ch.kind == "face":
                    faces.add(ch.holder_id)
                else:
                    fingers = True
        index = self.decider.faces
        if index is not None and faces:
            from biometrics.face import FaceTemplate

            for holder_id in faces:
                templates = [FaceTemplate.from_bytes(t) for t in self.store.templates(holder_id, "face")
                             if len(t) == 512]
                index.replace(holder_id, templates)
        if fingers and self.fingerprints is not None:
            self.fingerprints.request()

    def _slot_holder(self, slot: int) -> str | None:
        return self.fingerprints.holder(slot) if self.fingerprints else self.store.fp_slot_holder(slot)

    # -- MQTT ----------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        s, g = self.site, self.gate
        self.link.subscribe(topics.config(s, g), lambda t, p: self._on_config(p))
        self.link.subscribe(topics.command(s, g), lambda t, p: self._on_command(p))
        self.link.subscribe(topics.site_command(s), lambda t, p: self._on_command(p))
        self.link.subscribe(topics.deltas(s), lambda t, p: self._on_delta(p))
        self.link.subscribe(topics.sync(s, g), lambda t, p: self._on_sync(p))
        self.link.subscribe(topics.all_events(s), self._on_site_event)
        self.link.subscribe(topics.occupancy(s), lambda t, p: self._on_occupancy(p))

    def _on_connect(self, session_present: bool) -> None:
        self.link.publish(topics.status(self.site, self.gate), m.encode(self._status()), retain=True)
        if self.store.meta("snapshot_id") is None:
            self.resync("first start")

    def _on_config(self, payload: bytes) -> None:
        if not payload:
            return  # a retained config being cleared
        ack = self.apply_config(payload)
        self.link.publish(topics.config_ack(self.site, self.gate), m.encode(ack))

    def _on_command(self, payload: bytes) -> None:
        try:
            cmd = m.decode(m.Command, payload)
        except MessageError as exc:
            log.warning("command refused: %s", exc)
            return
        ok, error = True, None
        try:
            if cmd.kind == "open_once":
                if self.turnstile is None:
                    raise TurnstileUnavailable("no turnstile configured")
                self.turnstile.open_once(cmd.direction)
            elif cmd.kind == "set_mode":
                if cmd.mode is None:
                    raise ValueError("set_mode needs a mode")
                self.set_mode(cmd.mode)
            elif cmd.kind == "resync":
                self.resync("command")
            elif cmd.kind == "test_devices":
                failures = [f"{name}: {detail}" for name, good, detail in self.test_devices() if not good]
                ok, error = not failures, "; ".join(failures)[:256] or None
        except (TurnstileUnavailable, ValueError) as exc:
            ok, error = False, str(exc)[:256]
        ack = m.CommandAck(cmd.id, self.gate, ok, error)
        self.link.publish(topics.command_ack(self.site, self.gate), m.encode(ack))

    def resync(self, reason: str = "") -> bool:
        """Ask the central for a full snapshot; deltas wait until it has been applied."""
        with self._lock:
            self._resyncing = True
            self._snap_next = 0
            self._resync_asked_at = time.monotonic()
        request = m.SnapshotRequest(self.gate, self.store.seq, reason[:256])
        log.info("asking for a snapshot (%s)", reason)
        return self.link.publish(topics.sync_request(self.site, self.gate), m.encode(request))

    def _on_delta(self, payload: bytes) -> None:
        try:
            delta = m.decode(m.Delta, payload)
        except MessageError as exc:
            log.warning("delta refused: %s", exc)
            return
        if delta.site != self.site:
            return
        with self._lock:
            last = self.store.seq
            if delta.seq <= last:
                return
            if self._resyncing:
                self._buffered[delta.seq] = delta
                return
            if delta.seq == last + 1:
                self.store.apply_delta(delta)
                self._after_changes(delta.changes)
                self._apply_buffered()
                return
            self._buffered[delta.seq] = delta
        self.resync(f"gap: have {last}, got {delta.seq}")

    def _apply_buffered(self) -> None:
        last = self.store.seq
        for seq in sorted(self._buffered):
            delta = self._buffered.pop(seq)
            if seq <= last:
                continue
            if seq != last + 1:
                self._buffered[seq] = delta
                break
            self.store.apply_delta(delta)
            self._after_changes(delta.changes)
            last = seq

    def _on_sync(self, payload: bytes) -> None:
        try:
            chunk = m.decode(m.SnapshotChunk, payload)
        except MessageError as exc:
            log.warning("snapshot chunk refused: %s", exc)
            return
        if chunk.gate != self.gate or chunk.site != self.site:
            return
        with self._lock:
            if chunk.index != self._snap_next and chunk.index != 0:
                log.warning("snapshot chunk %s out of order (expected %s)", chunk.index, self._snap_next)
                retry = True
            else:
                retry = False
                self.store.snapshot_chunk(chunk)
                self._snap_next = chunk.index + 1
                if chunk.last:
                    self._resyncing = False
                    self._snap_next = 0
                    log.info("snapshot %s applied at seq %s", chunk.snapshot_id, chunk.seq)
                    self._apply_buffered()
                    self.load_faces()  # a snapshot may drop anyone: rebuild the index, resync the module
                    if self.fingerprints is not None:
                        self.fingerprints.request()
                    self._status_dirty.set()
        if retry:
            self.resync("snapshot chunk out of order")

    def _on_site_event(self, topic: str, payload: bytes) -> None:
        try:
            _, gate, _ = topics.parse_gate_topic(topic)
        except ValueError:
            return
        if gate == self.gate:
            return
        try:
            event = m.decode(m.PassageEvent, payload)
        except MessageError:
            return
        if not event.passed or not _plausible_remote(event):
            return
        if self.store.apply_remote(event):
            self.zones.passage(event)

    def _on_occupancy(self, payload: bytes) -> None:
        try:
            self.zones.occupancy(m.decode(m.Occupancy, payload))
        except MessageError as exc:
            log.warning("occupancy refused: %s", exc)

    # -- health --------------------------------------------------------------------------------

    def reader_health(self) -> list[m.ReaderHealth]:
        return [r.health() for r in self.readers] + list(self._broken_readers)

    def _status(self, online: bool = True) -> m.GateStatus:
        return m.GateStatus(
            site=self.site, gate=self.gate, online=online, at=datetime.now(UTC), mode=self.mode,
            config_version=self.active.cfg.version if self.active else 0, store_seq=self.store.seq,
            outbox=self.store.outbox_depth(), readers=self.reader_health(),
            controller_ok=self.turnstile.healthy if self.turnstile else True, alarms=sorted(self.alarms),
            agent_version=AGENT_VERSION,
        )

    def status_dict(self) -> dict:
        status = msgspec.to_builtins(self._status())
        status["connected"] = self.link.connected
        status["resyncing"] = self._resyncing
        status["published"] = self.link.published
        return status

    def test_devices(self, name: str | None = None) -> list[tuple[str, bool, str]]:
        """(device, ok, detail) for the turnstile (open once in) and each reader's health."""
        results: list[tuple[str, bool, str]] = []
        if name in (None, "turnstile"):
            if self.turnstile is None:
                results.append(("turnstile", name is None, "not configured"))
            else:
                try:
                    self.turnstile.open_once("in")
                    results.append(("turnstile", True, "opened once"))
                except TurnstileUnavailable as exc:
                    results.append(("turnstile", False, str(exc)))
        for health in self.reader_health():
            if name in (None, health.name):
                results.append((health.name, health.ok, health.detail))
        return results

    def _monitor(self) -> None:
        heartbeat = self.file_cfg.gate.heartbeat_s
        next_beat = 0.0
        next_prune = time.monotonic() + 3600
        watchdog = _watchdog_interval()
        while not self._stop.wait(0.25):
            now = time.monotonic()
            self._poll_controller()
            if self._resyncing and now - self._resync_asked_at > 30 and self.link.connected:
                self.resync("no snapshot within 30 s")
            if now >= next_beat or self._status_dirty.is_set():
                self._status_dirty.clear()
                next_beat = now + heartbeat
                try:
                    self.link.publish(topics.status(self.site, self.gate), m.encode(self._status()), retain=True)
                except Exception:
                    log.exception("status")
            if watchdog:
                _sd_notify("WATCHDOG=1")
            if now >= next_prune:
                next_prune = now + 3600
                self.store.prune_applied()
                self.store.purge_bindings()

    def _poll_controller(self) -> None:
        t = self.turnstile
        if t is None:
            # A turnstile that cannot be driven (no profile, or one this box does not have) is a fault.
            fault = self._no_turnstile if self.file_cfg.devices.turnstile is not None else None
            alarms = frozenset({fault}) if fault else frozenset()
            if alarms != self.alarms:
                self.alarms = alarms
                self._status_dirty.set()
            return
        try:
            if self._controller_mode != self.mode:
                self._apply_mode()
            alarms = t.alarms()
        except TurnstileUnavailable:
            if self.alarms != frozenset({"controller_unreachable"}):
                self.alarms = frozenset({"controller_unreachable"})
                self._status_dirty.set()
            return
        if alarms != self.alarms:
            log.warning("controller alarms: %s", ", ".join(sorted(alarms)) or "cleared")
            self.alarms = alarms
            self._status_dirty.set()
        if self.mode in ("free", "emergency"):
            self._count_free_passages(t)
        else:
            self._counters_seen = None

    def _count_free_passages(self, t: TurnstileControl) -> None:
        """In free passage the arm is open: the controller's counters say who went through."""
        try:
            counters = t.counters()
        except TurnstileUnavailable:
            return
        seen, self._counters_seen = self._counters_seen, counters
        if seen is None:
            return
        modulus = t.modulus
        for direction in ("in", "out"):
            moved = (counters.get(direction) - seen.get(direction)) % modulus
            for _ in range(min(moved, 1000)):
                event = m.PassageEvent(
                    id=new_event_id(), site=self.site, gate=self.gate, zone=self.active.cfg.zone if self.active else 0,
                    at=datetime.now(UTC), direction=direction, credential_kind="none", decision="granted",
                    reason=str(Reason.EMERGENCY if self.mode == "emergency" else Reason.FREE_PASSAGE), passed=True,
                    offline=not self.link.connected, mode=self.mode)
                self.store.record(event, topics.event(self.site, self.gate))
                self.zones.passage(event)
        self.link.wake()


def _plausible_remote(event: m.PassageEvent) -> bool:
    """Whether another gate's passage may count here. Such events come straight from the broker, so the
    central's checks (`central.services.ingest`) cannot stop a forged one; these are the checks a gate
    can make alone: not dated ahead of this gate's clock (a far-future time would hold the ticket "too
    soon" and the zone count until then), and one passage per event for anything but a group ticket."""
    if (event.at - datetime.now(UTC)).total_seconds() > m.MAX_AHEAD_S:
        log.warning("a passage event from %s dated ahead of this gate's clock was ignored", event.gate)
        return False
    if event.headcount > 1 and not event.credential_ref.startswith("T"):
        log.warning("a passage event from %s for %d people without a group ticket was ignored", event.gate,
                    event.headcount)
        return False
    return True


def _profile_check(profile_dirs: tuple[str, ...]):
    def check(name: str) -> None:
        from drivers.turnstile import ControllerProfile

        ControllerProfile.load(name, profile_dirs)

    return check


def _peek_version(payload: bytes) -> int:
    try:
        value = msgspec.json.decode(payload).get("version", 0)
        return value if isinstance(value, int) and value >= 0 else 0
    except (msgspec.DecodeError, AttributeError):
        return 0


_notifier = None


def _sd_notify(state: str) -> None:
    """systemd's sd_notify when run as a Type=notify service; nothing otherwise."""
    global _notifier
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    if _notifier is None:
        import sdnotify

        _notifier = sdnotify.SystemdNotifier()
    _notifier.notify(state)


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2e6 if usec and usec.isdigit() else None


__all__ = ["ConsoleDisplay", "GateAgent", "Handled"]
