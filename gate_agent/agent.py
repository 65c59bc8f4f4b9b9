"""The gate agent: readers feed one decision worker, which shows the decision, drives the turnstile and
stores the passage; the link forwards it, and the central's config, commands and cache changes flow in.

    reader threads ──Attempt──► decision queue ──► worker: resolve, decide, show, open, wait, record
    GateAgent.present() ───────────┘                                              │
                                                              store (usage + outbox, one transaction)
    MQTT link ◄── drainer (outbox, QoS 1, kept until the central's EventAck) ◄────┘
       │
       └─► config (validate, apply, ack) · commands · deltas / snapshots · site events (usage) · occupancy

    monitor thread: heartbeat status, controller alarms, mode on the controller, free-passage
                    counting, systemd watchdog
    counts thread:  the day's counts after passages (twice a second at most), at connect, at the roll-over

`GateAgent` builds the collaborators, wires them and runs the decision loop; each of them lives in its
own module and none imports this one:

    decider      resolve a credential against the store, run the shared rules (`protocol.rules`)
    claims       claim the entry at the central first where the site asks for it (claim = central)
    arm          the turnstile: controller client, mode, passing once, alarms, free-passage counts
    passages     the one builder of PassageEvents; the note of a passage under way and its recovery
    counts       the gate's own passage counts of the park day, retained on `.../counts` (the light path)
    announcer    what the visitor sees and hears
    faces        1:1 against a holder's face, the 1:N index for face-only entry
    fingerprints the module's slots in step with the store's templates
    cache_sync   deltas, snapshots, the site's other gates' usage, occupancy
    health       status, device tests, the monitor loop and the systemd watchdog
    link         MQTT: subscriptions, the outbox's sender
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from protocol import host, topics
from protocol import messages as m
from protocol.clock import park_now
from protocol.errors import MessageError
from protocol.reasons import Reason
from protocol.rules import Biometric, Verdict, id_face_check, refused

from . import config_state
from .announcer import Announcer, TicketNote
from .arm import Arm, TurnstileUnavailable
from .cache_sync import CacheSync
from .claim_client import ClaimClient
from .config import GateFileConfig
from .counts import DayCounts
from .decider import KINDS, ActiveConfig, Attempt, Decider, Outcome, Resolved, ZoneTracker
from .display import ConsoleDisplay, Display
from .faces import FaceMatcher
from .fingerprints import FingerprintSync
from .fire import FireWatch
from .health import AGENT_VERSION, Health
from .id_key import save_id_salt
from .kiosk import make_display
from .link import Link
from .metrics import GateMetrics
from .passages import PENDING_PASSAGE, Passages
from .readers import FingerprintReader, Reader, build_readers, run_reader
from .speaker import Speaker
from .staff_help import Pending, StaffHelp
from .store import Store
from .template_key import load_template_cipher

if TYPE_CHECKING:
    from .control import ControlServer

log = logging.getLogger(__name__)

QUEUE_LIMIT = 32
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
    action: Callable[[], Handled] | None = None  # work for the decision worker besides a reader's attempt


class GateAgent:
    """One gate: start(), stop(), present(); everything else runs in its threads."""

    def __init__(self, cfg: GateFileConfig, *, display: Display | None = None, store: Store | None = None) -> None:
        self.file_cfg = cfg
        self.site, self.gate = cfg.site, cfg.gate_id
        self.store = store or Store(cfg.store_path, cipher=load_template_cipher(cfg))
        self.active: ActiveConfig | None = None
        self._lock = threading.RLock()  # the config and the mode
        self.zones = ZoneTracker()
        self.link = Link(cfg, self.store, on_connect=self._on_connect)
        # The fire latch first: the mode (and so the arm) reads it.
        self.fire = FireWatch(self.store, self.site, self.gate,
                              zone=lambda: self.active.cfg.zone if self.active else 0,
                              scope=lambda: self.active.cfg.fire_scope if self.active else "gate",
                              publish=self.link.publish, emergency=self._on_fire)
        # The module's slots mirror the store's fingerprint templates (synced in the reader's thread).
        self.fingerprints = FingerprintSync(self.store) if cfg.devices.fingerprint else None
        self.faces = FaceMatcher(self.store, cfg.devices.camera,
                                 lambda: self.active.cfg.face_threshold if self.active else None)
        self.decider = Decider(self.store, self.zones, self.faces)
        self._display_fault: str | None = None
        try:
            self.display: Display = display or make_display(
                cfg.devices.display.kind, self.gate, cfg.devices.display.voice,
                listen=cfg.devices.display.listen_address(), language=self._language)
        except OSError as exc:  # the kiosk's address is taken: the gate still decides, the fault shows
            log.error("display: the kiosk page cannot listen on %s: %s", cfg.devices.display.listen, exc)
            self._display_fault = f"kiosk page cannot listen on {cfg.devices.display.listen}: {exc}"[:200]
            self.display = ConsoleDisplay(self.gate, voice=cfg.devices.display.voice)
        # The voice module speaks from its own thread; a failing one is a fault on the status, never a wait.
        self.speaker = Speaker(cfg.devices.voice, lambda: self.health.dirty.set()) if cfg.devices.voice else None
        self.announcer = Announcer(self.display, self._language,
                                   lambda: self.active.cfg.timezone if self.active else None, voice=self.speaker)
        self.arm = Arm(cfg.devices.turnstile, lambda: self.mode)
        self.counts = DayCounts(self.store, self.site, self.gate, timezone=self._timezone, publish=self.link.publish,
                                connected=lambda: self.link.connected)
        self.passages = Passages(self.store, self.zones, self.site, self.gate,
                                 zone=lambda: self.active.cfg.zone if self.active else 0,
                                 connected=lambda: self.link.connected, wake=self.link.wake,
                                 timezone=self._timezone, counted=self.counts.changed)
        self.sync = CacheSync(self.store, self.zones, self.site, self.gate, publish=self.link.publish,
                              after_changes=self._after_changes, after_snapshot=self._after_snapshot)
        self.health = Health(site=self.site, gate=self.gate, store=self.store, link=self.link, arm=self.arm,
                             mode=lambda: self.mode, heartbeat_s=cfg.gate.heartbeat_s,
                             config_version=lambda: self.active.cfg.version if self.active else 0)
        if self.speaker is not None:
            self.health.devices.append(self.speaker.health)
        if self._display_fault is not None:
            fault = self._display_fault
            self.health.devices.append(lambda: m.ReaderHealth(name="display", ok=False, detail=fault))
        self.health.after_purge = self._after_purge
        self.sync.on_finger_binding = self._after_purge  # another gate took a ticket's finger: load it here
        self.claims = ClaimClient(self.link, self.site, self.gate)
        self.metrics = GateMetrics(self.site, self.gate)
        self.metrics.watch(outbox=self.store.outbox_depth, devices=self._device_states,
                           connected=lambda: self.link.connected)
        self.help = StaffHelp(self.site, self.gate, self.link.publish, self._camera_view,
                              first_photo=self.store.first_entry_photo)
        self._subscribe()
        self._queue: queue.Queue[_Job] = queue.Queue(QUEUE_LIMIT)
        self._recent: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.readers: list[Reader] = []
        self.control: ControlServer | None = None
        self.metrics_port: int | None = None
        self._load_saved_config()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> GateAgent:
        self.readers, self.faces.camera, broken = build_readers(self.file_cfg.devices, self._slot_holder,
                                                                self.fingerprints)
        self.health.readers, self.health.broken_readers = self.readers, broken
        if self.faces.camera is not None:
            self.faces.camera.on_encode = self.metrics.face_encode.observe
        address = self.file_cfg.metrics.address()
        if address is not None:
            try:
                self.metrics_port = self.metrics.serve(*address)
            except OSError as exc:  # the gate admits visitors without its metrics: say so, go on
                log.error("metrics not served on %s:%s: %s", *address, exc.strerror or exc.__class__.__name__)
        self.arm.rebuild(self._hardware())
        self.passages.recover(self.arm)  # else the next passage settles it, before the arm opens again
        self.faces.load()
        self._spawn("decide", self._worker)
        if self.speaker is not None:
            self._spawn("voice", self.speaker.run, self._stop)
        for reader in self.readers:
            self._spawn(f"reader-{reader.name}", run_reader, reader, self.submit, self._stop)
        self._spawn("monitor", self.health.monitor, self._stop, self._tick)
        self._spawn("counts", self.counts.run, self._stop)
        self.link.start()
        from .control import ControlServer

        self.control = ControlServer(self, self.file_cfg.control_socket)
        self.control.start()
        host.notify("READY=1")
        log.info("gate %s/%s started: %d readers, turnstile %s", self.site, self.gate, len(self.readers),
                 self.arm.port)
        return self

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"{self.gate}-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        host.notify("STOPPING=1")
        self._stop.set()
        self.counts.wake()  # its last change goes out before the link closes
        if self.control:
            self.control.stop()
        for thread in self._threads:
            thread.join(3)
        self.link.stop(publish_offline=self.health.status(online=False))
        self.metrics.close()
        self.arm.close()
        close = getattr(self.display, "close", None)
        if close is not None:
            close()
        self.store.close()

    def __enter__(self) -> GateAgent:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def turnstile(self):
        """The controller client (None until a profile is known)."""
        return self.arm.control

    @property
    def camera(self):
        """The camera reader, when one is fitted."""
        return self.faces.camera

    # -- configuration and mode ----------------------------------------------------------------

    @property
    def mode(self) -> m.Mode:
        if self.fire.active:
            return "emergency"  # the fire alarm, here or at a gate of the zone/site, until it is ended
        override = self.store.meta("mode_override")
        if override:
            return override  # type: ignore[return-value]
        return self.active.cfg.mode if self.active else "locked"

    def _language(self) -> str:
        return self.active.cfg.language if self.active else self.file_cfg.gate.language

    def _timezone(self) -> str | None:
        return self.active.cfg.timezone if self.active else None

    def _hardware(self) -> m.HardwareParams:
        return self.active.cfg.hardware if self.active else m.HardwareParams()

    def _load_saved_config(self) -> None:
        self.active = config_state.saved(self.store, self.file_cfg)

    def apply_config(self, payload: bytes) -> m.ConfigAck:
        """Validate and apply a GateConfig without a restart; the ack says applied or why not."""
        cfg = config_state.check(payload, self.file_cfg)
        if isinstance(cfg, m.ConfigAck):
            return cfg  # refused, with the reason
        with self._lock:
            current = self.active.cfg.version if self.active else 0
            if cfg.version < current:
                return m.ConfigAck(self.gate, cfg.version, False, f"$.version: older than the applied {current}")
            changed = self.active is None or self.active.payload != payload
            active = ActiveConfig(cfg, payload)
            if changed:
                self.arm.rebuild(cfg.hardware)  # before the worker can see the new config
            if changed and cfg.emergency_ended_at is not None:
                self.fire.end(cfg.emergency_ended_at)  # the central ended the emergency: the fire too
            self.active = active
            if changed:
                save_id_salt(self.file_cfg, cfg.id_salt)  # first: the store's copy is saved without it
                self.store.save_config(payload, cfg.version)
                if cfg.version != current:
                    self.store.set_meta("mode_override", None)  # a new config sets the mode afresh
        if changed:
            log.info("config version %s applied (mode %s)", cfg.version, cfg.mode)
            self.arm.apply_mode()
            self.health.dirty.set()
        return m.ConfigAck(self.gate, cfg.version, True, None)

    def set_mode(self, mode: m.Mode) -> None:
        """A technician's or the central's mode (kept until the next config version); it ends a fire
        emergency too (the technician at the box decides)."""
        if mode != "emergency":
            self.fire.end()
        self.store.set_meta("mode_override", mode)
        self.arm.apply_mode()
        self.health.dirty.set()

    # -- deciding ------------------------------------------------------------------------------

    def submit(self, attempt: Attempt) -> _Job:
        job = _Job(attempt, time.monotonic())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("decision queue full: %s attempt dropped", attempt.kind)
            job.result = Handled(attempt, ignored="queue full")
            job.done.set()
        return job

    def present(self, kind: str, value: object, direction: m.Direction = "in", *, timeout: float = 30.0,
                photo: bytes | None = None) -> Handled:
        """Enter the same decision path as a reader and wait for the outcome (tests, demo)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        # The kind was checked against KINDS just above; a str does not narrow to the Literal.
        job = self.submit(Attempt(kind, value, direction, "present", photo))  # type: ignore[arg-type]
        if not job.done.wait(timeout) or job.result is None:
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
        if job.action is not None:
            return job.action()
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
        started = time.perf_counter()
        now = park_now()
        offline = not self.link.connected
        active, mode = self.active, self.mode
        claim_id, alone = None, False
        if active is None:
            outcome = Outcome(Resolved(attempt.kind), refused(Reason.GATE_LOCKED))
        else:
            outcome = self.decider.decide(attempt, active, now=now, mode=mode, capture=self._capture)
            # Site policy claim=central: the central grants the entry first (gate_agent.claim_client).
            settled = self.claims.settle(active, attempt, outcome, mode, now)
            outcome, claim_id, alone = settled.outcome, settled.claim_id, settled.alone
            offline = offline or alone
        verdict = outcome.verdict
        note = self._ticket_note(outcome)
        self.announcer.tell(verdict.reason, verdict.retry_at, verdict.passages, note)
        self.metrics.decision.observe(time.perf_counter() - started)  # decided and shown: the arm opens next
        (self.metrics.granted if verdict.granted else self.metrics.refused).inc()
        handled = Handled(attempt, outcome)
        record = functools.partial(self.passages.attempt, attempt, mode=mode, claim_id=claim_id)
        if not verdict.granted or active is None:  # a gate with no configuration has refused above
            handled.events.append(record(outcome, now=now, passed=False, offline=offline))
            if self.help.needed(outcome):  # a pass refused for its biometric: staff compare the faces
                self.help.ask(attempt, outcome)
                self.announcer.staff_called(verdict.reason)
            return handled
        return self._let_through(handled, active, mode, now, offline, claim_id, alone, note)

    def _let_through(self, handled: Handled, active: ActiveConfig, mode: m.Mode, now: datetime, offline: bool,
                     claim_id: str | None, alone: bool, note: TicketNote | None) -> Handled:
        """A granted decision: turn the arm once per passage allowed, recording each confirmed one."""
        attempt, outcome = handled.attempt, handled.outcome
        assert outcome is not None
        verdict = outcome.verdict
        record = functools.partial(self.passages.attempt, attempt, mode=mode, claim_id=claim_id)
        if mode in ("free", "emergency"):
            return handled  # the arm is free: the controller's counters record who passes (monitor)
        direction = attempt.direction
        timeout = active.cfg.hardware.passage_timeout_s
        fault = False
        for turn in range(verdict.passages):
            if not self.arm.configured:
                passed = True  # a check point without an arm: the decision is the passage
            else:
                try:
                    if not self.passages.recover(self.arm):
                        raise TurnstileUnavailable("an interrupted passage is not settled yet")
                    passed = self.arm.pass_once(direction, timeout, mode, functools.partial(
                        self.passages.mark, outcome, direction, mode, claim_id))
                except TurnstileUnavailable:  # no usable profile, or the controller is away
                    self.announcer.tell_staff()
                    passed, fault = False, True
            if not passed:
                break  # the note stays: a controller that went silent mid-passage may have counted the visitor
            handled.passed += 1
            if note is not None and note.headcount > 1:  # a group: the count moves with each visitor
                self.announcer.count(dataclasses.replace(note, entered=note.entered + handled.passed))
            binding = outcome.probe if (verdict.bind and turn == 0) else None
            handled.events.append(record(outcome, now=park_now(), passed=True,
                                         offline=alone or not self.link.connected, binding=binding,
                                         photo=outcome.resolved.first_photo if binding else None))
        if handled.passed == 0:
            # Nobody walked through: the entry is kept (a claim is released), the attempt recorded. When the
            # arm could not be driven, the attempt is a refusal for the gate's fault, with that reason.
            if fault:
                outcome = Outcome(outcome.resolved, refused(Reason.CONTROLLER_FAULT), outcome.biometric)
            handled.events.append(record(outcome, now=now, passed=False, offline=offline))
        return handled

    def _admit_by_staff(self, pending: Pending) -> Handled:
        """Staff at the gate admit once a pass the biometric refused: one passage, recorded as any other."""
        active, mode, now = self.active, self.mode, park_now()
        outcome = Outcome(pending.outcome.resolved, Verdict(granted=True, reason=Reason.OK, passages=1,
                                                            reasons=(Reason.OK,)), pending.outcome.biometric)
        handled = Handled(pending.attempt, outcome)
        if active is None:
            return handled
        self.announcer.tell(Reason.OK)
        return self._let_through(handled, active, mode, now, not self.link.connected, None, False, None)

    def _camera_view(self) -> bytes | None:
        camera = self.faces.camera
        return camera.view() if camera is not None else None

    @staticmethod
    def _ticket_note(outcome: Outcome) -> TicketNote | None:
        """What the screen says of the ticket beyond the decision: a type staff must check, a group's count."""
        resolved = outcome.resolved
        rules, credential = resolved.rules, resolved.credential
        if rules is None or credential is None:
            return None
        if not rules.staff_check and credential.headcount <= 1:
            return None
        return TicketNote(type_name=rules.name, staff_check=rules.staff_check, headcount=credential.headcount,
                          entered=min(resolved.usage.entries, credential.headcount))

    def _capture(self, step: str, resolved: Resolved, active: ActiveConfig) -> tuple[Biometric | None, bytes | None]:
        """The 1:1 biometric step; (None, None) when nothing usable was captured."""
        if step in ("face", "either") and self.faces.camera is not None:
            if resolved.credential is not None and id_face_check(resolved.credential, resolved.rules, active.policy):
                return self.faces.verify_card_photo(resolved.card_photo, active)  # 人证核验
            return self.faces.verify(resolved, active)
        if step in ("fingerprint", "either"):
            reader = next((r for r in self.readers if isinstance(r, FingerprintReader)), None)
            owner = resolved.holder_id
            if owner is None and resolved.rules is not None and resolved.rules.bind_finger:
                owner = resolved.ref  # 人票绑定: the ticket's own finger, taken at its first entry
                if reader is not None and not resolved.usage.bound:
                    data = reader.take_finger(owner, FINGER_WAIT_S,
                                              prompt=lambda: self.announcer.tell(Reason.FINGER_NEEDED))
                    if not data:
                        return None, None
                    resolved.first_photo = self._camera_view()  # for staff, should the finger not be read later
                    return Biometric(kind="fingerprint", matched=True), data
            if reader is None or owner is None:
                return None, None
            # The prompt; the decision follows on the display.
            holder = reader.expect(FINGER_WAIT_S, prompt=lambda: self.announcer.tell(Reason.FINGER_NEEDED))
            if holder is None:
                return None, None  # no finger in time
            # A finger the module does not know, or another holder's, is not this pass's (or ticket's) owner.
            return Biometric(kind="fingerprint", matched=holder == owner), None
        return None, None

    def load_faces(self, force: bool = False):
        """The 1:N face index, built now (`gate_agent.faces`)."""
        return self.faces.load(force)

    def _after_changes(self, changes) -> None:
        """Faces and the fingerprint module follow the cache changes just applied."""
        self.faces.after_changes(changes)
        fingers = any(isinstance(ch, m.HolderForget) or (isinstance(ch, m.TemplateChange) and ch.kind != "face")
                      for ch in changes)
        if fingers and self.fingerprints is not None:
            self.fingerprints.request()

    def _after_purge(self) -> None:
        """Bindings changed (a ticket's finger came from another gate, or expired ones went): the module follows."""
        if self.fingerprints is not None:
            self.fingerprints.request()

    def _after_snapshot(self) -> None:
        self.faces.load()  # a snapshot may drop anyone: rebuild the index, resync the module
        if self.fingerprints is not None:
            self.fingerprints.request()
        self.health.dirty.set()

    def _on_fire(self) -> None:
        """The fire latch closed (here or at a gate in scope): open the arm, say so, report it now."""
        self.arm.apply_mode()
        self.health.dirty.set()
        self.announcer.tell(Reason.EMERGENCY)

    def _slot_holder(self, slot: int) -> str | None:
        return self.fingerprints.holder(slot) if self.fingerprints else self.store.fp_slot_holder(slot)

    # -- MQTT ----------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        s, g = self.site, self.gate
        self.link.subscribe(topics.config(s, g), lambda t, p: self._on_config(p))
        self.link.subscribe(topics.command(s, g), lambda t, p: self._on_command(p))
        self.link.subscribe(topics.site_command(s), lambda t, p: self._on_command(p))
        self.link.subscribe(topics.deltas(s), lambda t, p: self.sync.on_delta(p))
        self.link.subscribe(topics.sync(s, g), lambda t, p: self.sync.on_sync(p))
        self.link.subscribe(topics.all_events(s), self.sync.on_site_event)
        self.link.subscribe(topics.occupancy(s), lambda t, p: self.sync.on_occupancy(p))
        self.link.subscribe(topics.all_of_kind("fire", s), self.fire.on_alarm)

    def _on_connect(self, session_present: bool) -> None:
        self.health.publish_status()
        self.counts.changed()  # a gate back from offline tells its day's counts at once
        self.fire.reannounce()
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
                self.arm.open_once(cmd.direction)
            elif cmd.kind == "set_mode":
                if cmd.mode is None:
                    raise ValueError("set_mode needs a mode")
                self.set_mode(cmd.mode)
            elif cmd.kind == "resync":
                self.resync("command")
            elif cmd.kind in ("staff_admit", "staff_refuse"):
                ok, error = self._staff_answer(cmd)
            elif cmd.kind == "test_devices":
                failures = [f"{name}: {detail}" for name, good, detail in self.test_devices() if not good]
                ok, error = not failures, "; ".join(failures)[:256] or None
        except (TurnstileUnavailable, ValueError) as exc:
            ok, error = False, str(exc)[:256]
        ack = m.CommandAck(cmd.id, self.gate, ok, error)
        self.link.publish(topics.command_ack(self.site, self.gate), m.encode(ack))

    def _staff_answer(self, cmd: m.Command) -> tuple[bool, str | None]:
        """Staff answered a HelpRequest: admit once (through the decision worker, in turn) or refuse."""
        pending = self.help.take(cmd.help_id)
        if pending is None:
            return False, "no open help request with this id (answered, or the visitor left)"
        if cmd.kind == "staff_refuse":
            self.announcer.tell(pending.outcome.verdict.reason)
            return True, None
        job = _Job(pending.attempt, time.monotonic(), action=functools.partial(self._admit_by_staff, pending))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False, "the gate is busy: try again"
        return True, None

    def resync(self, reason: str = "") -> bool:
        """Ask the central for a full snapshot; deltas wait until it has been applied."""
        return self.sync.resync(reason)

    # -- health --------------------------------------------------------------------------------

    def _tick(self) -> None:
        """The monitor's work each tick: the controller, free-passage counts, a snapshot that did not come."""
        polled = self.arm.poll()
        if polled.alarms_changed:
            self.health.dirty.set()
        self.fire.input("fire" in self.arm.alarms)
        mode = self.mode
        for direction, count in polled.passed.items():
            self.passages.free(direction, count, mode)  # type: ignore[arg-type]
        self.sync.check(self.link.connected)

    def reader_health(self) -> list[m.ReaderHealth]:
        return self.health.reader_health()

    def _device_states(self) -> list[tuple[str, bool]]:
        """(device, works) for /metrics: the turnstile's controller when fitted, then each reader."""
        states = [("turnstile", self.arm.healthy)] if self.arm.configured else []
        return states + [(r.name, r.ok) for r in self.health.reader_health()]

    @property
    def alarms(self) -> frozenset[str]:
        return self.arm.alarms

    def status_dict(self) -> dict:
        return self.health.status_dict(self.sync.resyncing)

    def test_devices(self, name: str | None = None) -> list[tuple[str, bool, str]]:
        """(device, ok, detail) for the turnstile (open once in) and each reader's health."""
        return self.health.test_devices(name)


__all__ = ["AGENT_VERSION", "PENDING_PASSAGE", "ConsoleDisplay", "GateAgent", "Handled"]
