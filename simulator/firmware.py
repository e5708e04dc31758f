"""The massager's firmware in software: protocol, patterns, regulation and safety.

Theory of operation
-------------------
`Firmware` is sans-IO like the protocol under it: bytes and button presses come
in with the time they happened, bytes go out through `data_to_send`, and
`next_deadline` says when it must next run. Whoever hosts it (an asyncio task
for ``sim://``, a test driving virtual time) calls `advance` at that time.

Between two moments of attention the plant evolves exactly (see `physics`), so
the firmware only wakes when something can change: every ``control_period_s``
while the pump runs, every ``supervise_period_s`` during a session otherwise, at
pattern phase boundaries, at the end of a lease, cap or pause limit, to send
STATUS, and when the link's watchdog is due.

Safety rules, all enforced here and nowhere above:

- Ceiling: every sample compares each chamber with ``ceiling - trip_margin``; a
  chamber at or above it latches OVERPRESSURE, ends the session and vents with
  the dump valve. A mechanical relief valve (in the plant) holds every chamber
  at or below the ceiling between samples. Only RESET_FAULT clears the latch,
  and only once the chambers have vented.
- Lease: a START carries the seconds it may run; the session ends by itself
  when they are spent. Paused time does not spend them.
- Proof of life: a session started over the link ends and vents when the link
  reports `ControllerGone` (no valid frame for ``watchdog_ms``, or the link dropped).
- No self-resume: after any ending, only a fresh START (or the remote's power
  button, pressed by the person wearing it) starts pressure again.
- Stop and vent: accepted from anyone in every state, ahead of anything queued
  (the `Connection` delivers them first, and refuses whatever of the session
  table came in the same read).
- Session cap: pressure time in one session never exceeds ``session_cap_s``.
- No pressure outside a session: the chambers are watched in every state (see
  `diagnostics`); one that does not empty after a session latches a fault,
  which opens the dump valve.
- Pairing: a controller pairs only while the pairing window is open (a button
  held on the remote; `open_pairing` here), one per opening. Once the device
  requires pairing, or has paired anyone, the commands that start or change
  pressure are taken only in authenticated frames (the `Connection` checks them
  against `DeviceMemory`, which survives a restart).
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass, replace

from firmware_protocol import (
    Ack,
    Button,
    ButtonPressed,
    Capabilities,
    Challenge,
    ChamberInfo,
    Connection,
    ControllerGone,
    EndReason,
    ErrorCode,
    Fault,
    FaultRaised,
    Feature,
    GetStatus,
    Hello,
    LevelInfo,
    LinkState,
    Message,
    Mode,
    ModeInfo,
    Nak,
    Pair,
    Paired,
    Pause,
    Received,
    Renew,
    ResetFault,
    Resume,
    Role,
    SessionEnded,
    SessionStarted,
    SessionState,
    SetCycle,
    SetIntensity,
    SetMode,
    Start,
    StartSource,
    Status,
    StatusFlag,
    Stop,
    Timing,
    Unpair,
    Vent,
)
from firmware_protocol.errors import RemoteProtocolError
from firmware_protocol.messages import status_flags
from firmware_protocol.pairing import KeyPair
from firmware_protocol.session import (
    END_REASON_OF_COMMAND,
    TRIGGER_RULES,
    Trigger,
    command_outcome,
)

from . import patterns
from .config import DeviceConfig
from .diagnostics import Diagnostics
from .memory import DeviceMemory
from .physics import Plant

EPSILON = 1e-9
RESET_BELOW_MMHG = 20.0
"""A latched fault can be reset only once every chamber reads below this (SPEC 8.3)."""

IDLE, RUNNING, PAUSED, FAULT = (
    SessionState.IDLE,
    SessionState.RUNNING,
    SessionState.PAUSED,
    SessionState.FAULT,
)


_CHARGING = int(StatusFlag.CHARGING)
_PUMP_ON = int(StatusFlag.PUMP_ON)
_CYCLE_LOADED = int(StatusFlag.CYCLE_LOADED)
_LINK_SESSION = int(StatusFlag.LINK_SESSION)
_DUMP_OPEN = int(StatusFlag.DUMP_OPEN)
_CONTROLLER_PRESENT = int(StatusFlag.CONTROLLER_PRESENT)
_STOP_SINCE_END = int(StatusFlag.STOP_SINCE_END)


def _whole_seconds(seconds: float) -> int:
    # Elapsed time is a sum of many float steps; 29.999999 seconds are 30.
    return min(int(seconds + 1e-6), 0xFFFF)


@dataclass
class _Session:
    source: StartSource
    lease_left: float
    elapsed: float = 0.0
    paused_since: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The device's true state at one moment, for displays and tests (not sent on the wire)."""

    uptime_s: float
    state: SessionState
    mode: int
    intensity: int
    pressures_mmhg: tuple[float, ...]
    inlets: tuple[bool, ...]
    exhausts: tuple[bool, ...]
    pump: bool
    dump: bool
    battery_pct: float
    charging: bool
    faults: Fault
    lease_left_s: float
    elapsed_s: float
    last_end: EndReason
    controller_present: bool


class Firmware:
    """One simulated massager's firmware and the plant it drives."""

    _diagnostics: Diagnostics | None = None

    def __init__(
        self,
        config: DeviceConfig | None = None,
        *,
        now: float = 0.0,
        memory: DeviceMemory | None = None,
    ) -> None:
        self.config = config or DeviceConfig()
        cfg = self.config
        self.plant = Plant(cfg, random.Random(cfg.seed))
        self.memory = memory or DeviceMemory()
        self.memory.pairings.required = cfg.pairing_required
        self.conn = Connection(
            Role.DEVICE,
            timing=Timing(watchdog_s=cfg.watchdog_ms / 1000),
            pairings=self.memory.pairings,
            device_signs=cfg.signs,
            chambers=cfg.chamber_count,
        )
        self.pairing_until: float | None = None
        """While the device time is before this, a controller may pair."""
        positions = len(cfg.positions)
        self.ranks = tuple(i % positions for i in range(cfg.chamber_count))
        self.capabilities = self._capabilities()
        self.offered_modes = tuple(info.mode for info in self.capabilities.modes)

        self.state = IDLE
        self.mode: int = Mode.WAVE
        self.intensity = 1
        self.program: SetCycle | None = None
        self.faults = Fault.NONE
        self.last_end = EndReason.NONE
        self.stop_since_end = False
        self.session: _Session | None = None

        self._boot = now
        self._t = now
        self._pattern: patterns.Pattern | None = None
        self._fixed_patterns: dict[tuple[int, int], patterns.Pattern] = {}
        """Wave and pulse at each level, built once: a change of intensity rebuilds none."""
        self._pattern_t0 = now
        self._next_pattern: patterns.Pattern | None = None
        self._swap_at: float | None = None
        self._phase_end = math.inf
        self._next_sample = now
        self._next_status = now
        self._next_challenge = now
        self._readings: list[float] = []
        self._sampled_at = now

    # --- inputs -------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes arrived from the link at ``now``."""
        self.advance(now)
        self._wake_up()
        # At the firmware's own time, never before it: the host may have run it to a
        # timer's deadline a clock tick past ``now``, and the link's clock must not go back.
        self.conn.receive_data(data, self._t)
        self._handle_link_events()

    def press(self, button: Button, now: float) -> None:
        """A button on the handheld remote was pressed at ``now``."""
        self.advance(now)
        self._wake_up()
        if not self.config.remote:
            return
        self._send(ButtonPressed(button))
        if button == Button.POWER:
            if self.state == FAULT:
                if self._fault_cleared():
                    self._reset_fault()
            elif self.state != IDLE or self._battery_ok():
                self._trigger(Trigger.REMOTE_POWER)
        elif button == Button.PAUSE:
            self._trigger(Trigger.REMOTE_PAUSE)
        elif button == Button.MODE:
            fixed = [m for m in self.offered_modes if m != Mode.CYCLE]
            at = fixed.index(self.mode) + 1 if self.mode in fixed else 0
            self._apply_mode(fixed[at % len(fixed)])
        elif button in (Button.PLUS, Button.MINUS):
            step = 1 if button == Button.PLUS else -1
            level = min(max(self.intensity + step, 1), len(self.config.levels_mmhg))
            self._apply_intensity(level)
        self._control()
        self._send_status()

    def open_pairing(self, now: float) -> None:
        """The pairing button was held at ``now``: one controller may pair within the window."""
        self.advance(now)
        self.pairing_until = self._t + self.config.pairing_window_s

    @property
    def pairing_open(self) -> bool:
        """Whether a controller may pair now."""
        return self.pairing_until is not None and self._t < self.pairing_until

    def link_down(self, now: float) -> None:
        """The transport lost the link at ``now`` (port closed, BLE disconnected)."""
        self.advance(now)
        self.conn.link_down(self._t)  # never before the firmware's own time, as above
        self._handle_link_events()

    def advance(self, now: float) -> None:
        """Run the firmware and the physics up to ``now``."""
        stuck = 0
        while True:
            due = self.next_deadline()
            if due > now:
                break
            stuck = stuck + 1 if due <= self._t else 0
            if stuck > 1000:  # a deadline that never moves is a bug: fail, never hang
                raise RuntimeError(f"firmware made no progress at t={self._t}: {self.snapshot()}")
            self._run_to(due)
            self._on_due()
        self._run_to(now)

    # --- outputs ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes for the link, queued since the last call."""
        return self.conn.data_to_send()

    def next_deadline(self) -> float:
        """When `advance` must next be called even if nothing arrives."""
        due = min(self._next_sample, self._phase_end)
        if self.conn.state == LinkState.READY:
            due = min(due, self._next_status, self._next_challenge)
        timer = self.conn.get_timer()
        if timer is not None:
            due = min(due, timer)
        if self._swap_at is not None:
            due = min(due, self._swap_at)
        session = self.session
        if session is not None:
            if self.state == RUNNING:
                due = min(
                    due,
                    self._t + session.lease_left,
                    self._t + self.config.session_cap_s - session.elapsed,
                )
            elif session.paused_since is not None:
                due = min(due, session.paused_since + self.config.pause_limit_s)
        return max(due, self._t)

    def snapshot(self) -> Snapshot:
        """The true state now, including true (not measured) pressures."""
        plant = self.plant
        session = self.session
        return Snapshot(
            uptime_s=self._t - self._boot,
            state=self.state,
            mode=self.mode,
            intensity=self.intensity,
            pressures_mmhg=tuple(plant.pressures),
            inlets=tuple(plant.open_inlets()),
            exhausts=tuple(plant.exhausts),
            pump=plant.pump_running,
            dump=plant.dump,
            battery_pct=plant.battery_pct,
            charging=plant.charging,
            faults=self.faults,
            lease_left_s=session.lease_left if session else 0.0,
            elapsed_s=session.elapsed if session else 0.0,
            last_end=self.last_end,
            controller_present=self.conn.state == LinkState.READY,
        )

    @property
    def now(self) -> float:
        """The firmware's clock: the last time it was advanced to."""
        return self._t

    # --- time ---------------------------------------------------------------------

    def _run_to(self, t: float) -> None:
        dt = t - self._t
        if dt <= 0:
            return
        session = self.session
        if session is not None and self.state == RUNNING:
            session.lease_left = max(0.0, session.lease_left - dt)
            session.elapsed += dt
        self.plant.advance(dt)
        self._t = t

    def _on_due(self) -> None:
        t = self._t
        timer = self.conn.get_timer()
        if timer is not None and timer <= t:
            self.conn.handle_timer(t)
            self._handle_link_events()
        session = self.session
        if session is not None and self.state == RUNNING:
            if session.lease_left <= EPSILON:
                self._trigger(Trigger.LEASE_ENDED)
            elif session.elapsed >= self.config.session_cap_s - EPSILON:
                self._trigger(Trigger.SESSION_CAP)
        elif (
            session is not None
            and session.paused_since is not None
            and t >= session.paused_since + self.config.pause_limit_s - EPSILON
        ):
            self._trigger(Trigger.PAUSE_TIMEOUT)
        if self._swap_at is not None and t >= self._swap_at:
            self._pattern, self._pattern_t0 = self._next_pattern, self._swap_at
            self._next_pattern = self._swap_at = None
        if t >= self._next_sample or t >= self._phase_end:
            self._control()
        if self.conn.state == LinkState.READY and t >= self._next_status:
            self._send_status()
        if self.conn.state == LinkState.READY and t >= self._next_challenge:
            self._send_challenge()

    # --- the control loop ---------------------------------------------------------

    def _control(self) -> None:
        """Sample every sensor, enforce the ceiling, and set pump and valves."""
        cfg = self.config
        plant = self.plant
        t = self._t
        readings = plant.read_all()
        if self.state != FAULT and max(readings) >= cfg.trip_mmhg:
            self._latch(Fault.OVERPRESSURE)
            return
        # Broken parts the ceiling does not catch, judged from what the firmware senses.
        found = self._diagnosis.observe(t, readings, self.state)
        if found:
            self._latch(found)
            return
        if self.state == RUNNING and self._pattern is not None:
            phase, remaining = self._pattern.at(t - self._pattern_t0)
            targets = phase.targets
            self._phase_end = t + remaining
        else:
            targets = None
            self._phase_end = math.inf
        fast = False
        hysteresis = cfg.hysteresis_mmhg
        previous, since = self._readings, t - self._sampled_at
        # Half a sampling period ahead: the pressure a filling chamber will have
        # reached by the middle of the next interval, from its rise since the last
        # sample. Closing on it keeps the overshoot to about half a period's rise
        # instead of a whole one (6 mmHg at a lone chamber's top fill rate).
        ahead = cfg.control_period_s / 2 / since if since > 0 else 0.0
        for i, reading in enumerate(readings):
            target = targets[i] if targets is not None else 0.0
            if target <= 0.0:
                plant.inlets[i] = False
                plant.exhausts[i] = True
                continue
            # Fill with hysteresis so the valve does not chatter; bleed if far above
            # (after the intensity was lowered) and watch closely while doing so.
            if plant.inlets[i]:
                rising = max(reading - previous[i], 0.0) if previous else 0.0
                plant.inlets[i] = reading + rising * ahead < target
            else:
                plant.inlets[i] = reading < target - hysteresis
            bleeding = reading > target + 2 * hysteresis
            plant.exhausts[i] = bleeding
            fast = fast or bleeding
        if targets is not None:
            # A chamber filling in vain, alone: a moment of air into another shows
            # whether the pump delivers, before its fill check blames one or the other.
            probe = self._diagnosis.probe(t, readings)
            if probe is not None:
                plant.inlets[probe] = True
        self._readings, self._sampled_at = readings, t
        plant.pump = any(plant.inlets)
        self._diagnosis.record(t, readings)
        if plant.pump or fast:
            period = cfg.control_period_s
        elif self.session is not None:
            period = cfg.supervise_period_s
        elif self._asleep(readings):
            # Idle, alone and empty: like a battery device, sleep until a byte arrives
            # or a button is pressed. Nothing can change meanwhile, and a year of
            # evenings in virtual time then costs nothing between the sessions.
            period = math.inf
        else:
            period = cfg.status_interval_ms / 1000
        self._next_sample = t + period
        if self.session is not None and not self._battery_ok(low=True):
            self._trigger(Trigger.BATTERY_LOW)

    # --- commands -----------------------------------------------------------------

    def _handle_link_events(self) -> None:
        for event in self.conn.events():
            if isinstance(event, Received):
                self._on_command(event.message, event.seq, event.key_id)
            elif isinstance(event, ControllerGone):
                session = self.session
                if session is not None and session.source == StartSource.LINK:
                    self._trigger(Trigger.LINK_LOST)

    def _on_command(self, message: Message, seq: int, key_id: int | None = None) -> None:
        if isinstance(message, Hello):
            nonce = self.conn.link_nonce_for(seq)
            self._send(replace(self.capabilities, ref_seq=seq, link_nonce=nonce))
            self._send_status()
            self._send_challenge()
            return
        if isinstance(message, GetStatus):
            self._send(Ack(seq))
            self._send(self.status())  # with or without a present controller
            return
        if isinstance(message, Pair):
            self._pair(message, seq)
            return
        if isinstance(message, Unpair):
            # The ACK first: the last frame signed under the key (SPEC 12.4). The key
            # that signed the UNPAIR, not the present link's: a HELLO in the same read
            # may have opened another link since, with another key or none.
            self._send(Ack(seq))
            if key_id is not None:
                self.memory.pairings.remove(key_id)
                self.conn.forget_key(key_id)
            return
        outcome = command_outcome(self.state, message.TYPE)
        if isinstance(outcome, ErrorCode):
            self._send(Nak(seq, outcome))
            return
        error = self._check(message)
        if error is not None:
            self._send(Nak(seq, error))
            return
        self._send(Ack(seq))
        self._apply(message)
        self._control()
        self._send_status()

    def _check(self, message: Message) -> ErrorCode | None:
        """Value checks, after the state table has allowed the command."""
        cfg = self.config
        if isinstance(message, Start | Renew | SetMode):
            if message.mode not in self.offered_modes:
                return ErrorCode.UNSUPPORTED_MODE
            if message.mode == Mode.CYCLE and self.program is None:
                return ErrorCode.NO_CYCLE
        if isinstance(message, Start | Renew):
            if message.mode != Mode.CYCLE and not 1 <= message.intensity <= len(cfg.levels_mmhg):
                return ErrorCode.UNSUPPORTED_INTENSITY
            if not 1 <= message.lease_s <= cfg.max_lease_s:
                return ErrorCode.LEASE_OUT_OF_RANGE
            if not self._battery_ok():
                return ErrorCode.BATTERY_LOW
        if isinstance(message, SetIntensity) and not 1 <= message.level <= len(cfg.levels_mmhg):
            return ErrorCode.UNSUPPORTED_INTENSITY
        if isinstance(message, SetCycle):
            if not cfg.cycle:
                return ErrorCode.UNSUPPORTED_MODE
            if max(message.targets_dmmhg) > self.capabilities.max_target_dmmhg:
                return ErrorCode.OVER_PRESSURE_LIMIT
        if isinstance(message, ResetFault) and self.state == FAULT and not self._fault_cleared():
            return ErrorCode.FAULT_PERSISTS
        return None

    def _apply(self, message: Message) -> None:
        if isinstance(message, Start):
            self._begin(StartSource.LINK, message.mode, message.intensity, message.lease_s)
        elif isinstance(message, Renew):
            paused_since = self.session.paused_since if self.session else None
            self._begin(StartSource.LINK, message.mode, message.intensity, message.lease_s)
            if paused_since is not None:  # a paused session stays paused, its pause clock too
                assert self.session is not None
                self.session.paused_since = paused_since
                self.state = PAUSED
        elif isinstance(message, SetMode):
            self._apply_mode(message.mode)
        elif isinstance(message, SetIntensity):
            self._apply_intensity(message.level)
        elif isinstance(message, SetCycle):
            self.program = message
            if self.mode == Mode.CYCLE and self._pattern is not None:
                # A new cycle starts at the next cycle boundary, never mid-squeeze.
                self._next_pattern = patterns.cycle(self.ranks, message)
                period = self._pattern.period_s
                loops = math.ceil((self._t - self._pattern_t0) / period - EPSILON)
                self._swap_at = self._pattern_t0 + max(loops, 1) * period
        elif isinstance(message, Pause):
            self._pause()
        elif isinstance(message, Resume):
            self._resume()
        elif isinstance(message, Stop | Vent):
            # In FAULT both change nothing: the fault already vented, dump valve open.
            if self.state != FAULT:
                if self.session is None:
                    # Nothing to end, but remember that someone asked: a controller
                    # whose link was down must not resume over it (SPEC section 6).
                    self.stop_since_end = True
                self._end(END_REASON_OF_COMMAND[message.TYPE], IDLE)
        elif isinstance(message, ResetFault) and self.state == FAULT:
            self._reset_fault()

    def _pair(self, message: Pair, seq: int) -> None:
        table = self.memory.pairings
        if not self.pairing_open:
            self._send(Nak(seq, ErrorCode.PAIRING_CLOSED))
            return
        key_id = table.free_id()
        if key_id is None:
            self._send(Nak(seq, ErrorCode.PAIRING_FULL))
            return
        ours = KeyPair.generate()
        try:
            key = ours.derive(
                message.public_key,
                controller=message.public_key,
                device=ours.public,
                key_id=key_id,
            )
        except RemoteProtocolError:
            self._send(Nak(seq, ErrorCode.BAD_PAYLOAD))
            return
        table.add(message.controller_name, key)
        self.pairing_until = None  # one controller per press of the button
        self._send(Paired(seq, key_id, ours.public))

    # --- sessions -----------------------------------------------------------------

    def _begin(self, source: StartSource, mode: int, intensity: int, lease_s: int) -> None:
        session = self.session
        fresh = session is None
        if session is None:
            session = self.session = _Session(source, float(lease_s))
            self.stop_since_end = False
        else:
            session.lease_left = float(lease_s)
            session.paused_since = None
            if source == StartSource.LINK:
                session.source = source
        self.state = RUNNING
        self.mode = mode
        if mode != Mode.CYCLE:
            self.intensity = intensity
        self.plant.dump = False
        self._restart_pattern()
        if fresh:
            self._send(SessionStarted(source, mode, self.intensity, lease_s))

    def _end(self, reason: EndReason, state: SessionState) -> None:
        session = self.session
        if session is not None:
            self._send(SessionEnded(reason, _whole_seconds(session.elapsed)))
            self.last_end = reason
        self.session = None
        self.state = state
        self._pattern = self._next_pattern = self._swap_at = None
        if reason in (EndReason.VENTED, EndReason.LINK_LOST, EndReason.FAULT) or state == FAULT:
            # Emergencies open the dump valve; only a new start or a fault reset closes it.
            self.plant.dump = True

    def _trigger(self, trigger: Trigger) -> None:
        rule = TRIGGER_RULES.get((self.state, trigger))
        if rule is None:
            return
        state, reason = rule
        session = self.session
        if state == RUNNING and session is None:
            cfg = self.config
            self._begin(StartSource.REMOTE, self.mode, self.intensity, cfg.remote_session_s)
        elif state == RUNNING and session is not None:
            self._resume()
        elif state == PAUSED and session is not None:
            self._pause()
        else:
            self._end(reason, state)
        self._control_after_change()

    def _pause(self) -> None:
        assert self.session is not None
        self.session.paused_since = self._t
        self.state = PAUSED

    def _resume(self) -> None:
        assert self.session is not None
        self.session.paused_since = None
        self.state = RUNNING
        self._restart_pattern()

    def _wake_up(self) -> None:
        """After a sleep (see `_asleep`), sample again from now on; awake, change nothing."""
        if self._next_sample == math.inf:
            self._next_sample = self._t

    def _asleep(self, readings: list[float]) -> bool:
        """Whether nothing needs watching: no session, no controller, empty, no fault."""
        plant = self.plant
        # Sleeping is the simulator's shortcut, not the firmware's judgement: a real device
        # keeps a slow watch. With hardware broken, or about to break, the simulation keeps
        # sampling so that the firmware meets the fault when it would.
        return (
            self.state == IDLE
            and self.conn.state != LinkState.READY
            and not plant.pump_running
            and max(readings) <= 0.0
            and not plant.faults.active
            and not plant.pending
        )

    def _control_after_change(self) -> None:
        # Called from inside _control too (battery); only re-run it when valves may change.
        if self.state != RUNNING:
            plant = self.plant
            plant.inlets = [False] * len(plant.inlets)
            plant.exhausts = [True] * len(plant.exhausts)
            plant.pump = False
            self._phase_end = math.inf
        else:
            self._next_sample = self._t
        self._send_status()

    def _latch(self, faults: Fault) -> None:
        new = faults & ~self.faults
        self.faults |= faults
        if new:
            self._send(FaultRaised(new))
        self._trigger(Trigger.FAULT)
        self.state = FAULT
        self.plant.dump = True  # also when already in FAULT, where the trigger has no row
        self._diagnosis.forget()

    def _fault_cleared(self) -> bool:
        plant = self.plant
        # The pump's current is sensed: running while commanded off, its cause is still there.
        pump_runs_away = plant.pump_running and not plant.pump
        readings = plant.read_all()
        vented = all(reading < RESET_BELOW_MMHG for reading in readings)
        if not vented or pump_runs_away:
            return False
        # What else a fault's cause leaves to see: a stuck sensor, an empty battery, or a
        # failed self-test of the pump and the valves (see `diagnostics`).
        return self._diagnosis.cause_gone(self.faults, self._t, readings)

    @property
    def _diagnosis(self) -> Diagnostics:
        """The fault detection (made on first use: it watches from the first sample)."""
        diagnostics = self._diagnostics
        if diagnostics is None:
            diagnostics = self._diagnostics = Diagnostics(self.config, self.plant)
        return diagnostics

    @property
    def diagnostics(self) -> Diagnostics:
        """The fault detection, for tests and displays (see `simulator.diagnostics`)."""
        return self._diagnosis

    def _reset_fault(self) -> None:
        self.faults = Fault.NONE
        self.state = IDLE
        self.plant.dump = False

    def _apply_mode(self, mode: int) -> None:
        if mode == Mode.CYCLE and self.program is None:
            return
        self.mode = mode
        if self.session is not None:
            self._restart_pattern()

    def _apply_intensity(self, level: int) -> None:
        self.intensity = level
        if self.session is not None and self.mode != Mode.CYCLE:
            # Keep the pattern's place; only the pressures change.
            t0 = self._pattern_t0
            self._restart_pattern()
            self._pattern_t0 = t0

    def _restart_pattern(self) -> None:
        cfg = self.config
        if self.mode == Mode.CYCLE:
            assert self.program is not None
            self._pattern = patterns.cycle(self.ranks, self.program)
        else:
            key = (self.mode, self.intensity)
            pattern = self._fixed_patterns.get(key)
            if pattern is None:
                level = cfg.levels_mmhg[self.intensity - 1]
                build = patterns.pulse if self.mode == Mode.PULSE else patterns.wave
                pattern = self._fixed_patterns[key] = build(cfg, self.ranks, level)
            self._pattern = pattern
        self._pattern_t0 = self._t
        self._next_pattern = self._swap_at = None
        self._next_sample = self._t

    def _battery_ok(self, *, low: bool = False) -> bool:
        cfg = self.config
        if not cfg.battery or self.plant.charging:
            return True
        limit = cfg.low_battery_pct if low else cfg.min_start_battery_pct
        return self.plant.battery_pct > limit

    # --- messages out -------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self.conn.send(message, self._t)

    def _send_status(self) -> None:
        # After every change, with or without a present controller (SPEC 7.5): the one
        # whose link the watchdog just ended may be listening still, as SESSION_ENDED
        # supposes, and it is the STATUS that says the chambers are venting. Only the
        # periodic report waits for a present controller (`_on_due`).
        self._next_status = self._t + self.config.status_interval_ms / 1000
        self._send(self.status())

    def _send_challenge(self) -> None:
        # Every quarter of the watchdog: a live controller may miss two in a row on a
        # noisy line and still answer one in time (SPEC 7.3).
        self._next_challenge = self._t + self.config.watchdog_ms / 4000
        # Drawn at random: a relay that could foresee it could gather the controller's
        # answers in advance and hand them over after the controller has gone.
        uptime = int((self._t - self._boot) * 1000) & 0xFFFFFFFF
        self._send(Challenge(secrets.randbits(32), uptime))

    def status(self) -> Status:
        """The STATUS message for this moment (pressures as the sensors read them)."""
        plant = self.plant
        session = self.session
        # Plain ints, made a StatusFlag once: IntFlag arithmetic builds a new member
        # at every |=, and STATUS is built twice a second and after every command.
        flags = (
            (_CHARGING if plant.charging else 0)
            | (_PUMP_ON if plant.pump_running else 0)
            | (_CYCLE_LOADED if self.program is not None else 0)
            | (_LINK_SESSION if session is not None and session.source == StartSource.LINK else 0)
            | (_DUMP_OPEN if plant.dump else 0)
            | (_CONTROLLER_PRESENT if self.conn.state == LinkState.READY else 0)
            | (_STOP_SINCE_END if self.stop_since_end else 0)
        )
        inlet_mask = exhaust_mask = 0
        for i, (inlet, exhaust) in enumerate(zip(plant.open_inlets(), plant.exhausts, strict=True)):
            if inlet:
                inlet_mask |= 1 << i
            if exhaust:
                exhaust_mask |= 1 << i
        pressures = tuple(min(round(reading * 10), 0xFFFF) for reading in plant.read_all())
        return Status(
            uptime_ms=int((self._t - self._boot) * 1000) & 0xFFFFFFFF,
            state=self.state,
            mode=self.mode,
            intensity=self.intensity,
            flags=status_flags(flags),
            seconds_left=min(math.ceil(session.lease_left - EPSILON), 0xFFFF) if session else 0,
            session_elapsed_s=_whole_seconds(session.elapsed) if session else 0,
            battery_pct=round(plant.battery_pct) if self.config.battery else 100,
            faults=self.faults,
            last_end=self.last_end,
            inlet_mask=inlet_mask,
            exhaust_mask=exhaust_mask,
            pressures_dmmhg=pressures,
        )

    def _capabilities(self) -> Capabilities:
        cfg = self.config
        features = Feature.NONE
        if cfg.cycle:
            features |= Feature.CYCLE
        if cfg.battery:
            features |= Feature.BATTERY
        if cfg.remote:
            features |= Feature.REMOTE
        features |= Feature.PAIRING
        if self.conn.device_signs:
            features |= Feature.SIGNED_LINK
        modes = [ModeInfo(Mode.WAVE, "wave"), ModeInfo(Mode.PULSE, "pulse")]
        if cfg.cycle:
            modes.append(ModeInfo(Mode.CYCLE, "cycle"))
        return Capabilities(
            ref_seq=0,
            model=cfg.model,
            firmware=cfg.firmware,
            serial=cfg.serial,
            features=features,
            ceiling_dmmhg=round(cfg.ceiling_mmhg * 10),
            max_target_dmmhg=round(cfg.max_target_mmhg * 10),
            session_cap_s=cfg.session_cap_s,
            max_lease_s=cfg.max_lease_s,
            watchdog_ms=cfg.watchdog_ms,
            status_interval_ms=cfg.status_interval_ms,
            pause_limit_s=cfg.pause_limit_s,
            chambers=tuple(ChamberInfo(leg, pos) for leg in cfg.legs for pos in cfg.positions),
            modes=tuple(modes),
            levels=tuple(
                LevelInfo(i + 1, round(level * 10)) for i, level in enumerate(cfg.levels_mmhg)
            ),
        )
