"""Random sequences of Massager API calls against the simulator, checked against a model.

The model predicts every reply from the shared session table and keeps its own
account of the lease, the session cap and the pause limit; the invariants hold
at every step: no chamber above the ceiling, nothing running past its lease or
cap, the pump off whenever no session runs, and the device in the state the
model expects. A hardware fault (a runaway pump) can be switched on and off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import looptime
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware_protocol import ErrorCode, MessageType, SessionState
from firmware_protocol.session import command_outcome
from massager_ctl.device import Cycle, Massager
from massager_ctl.errors import CommandRefused
from massager_ctl.transports.sim import SimTransport

MODES = st.sampled_from(["wave", "pulse"])
LEVELS = st.integers(1, 3)
LEASES = st.integers(5, 600)
CAP_S = 900
PAUSE_LIMIT_S = 120
URL = f"sim://?seed=7&charging=true&session_cap_s={CAP_S}&max_lease_s=600&pause_limit_s={PAUSE_LIMIT_S}"


class MassagerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = looptime.new_event_loop(noop_cycles=1)
        self.context = Massager.connect(URL)
        self.m: Massager = self.run(self.context.__aenter__)
        assert isinstance(self.m.transport, SimTransport)
        self.host = self.m.transport.host
        self.fw = self.host.firmware
        self.state = SessionState.IDLE
        self.lease_left = 0.0
        self.elapsed = 0.0
        self.paused_for = 0.0
        self.broken = False
        self.ever_broken = False
        self.cycle_loaded = False

    def run(self, make: Callable[[], Awaitable[Any]]) -> Any:
        async def call() -> Any:
            return await make()

        return self.loop.run_until_complete(call())

    def teardown(self) -> None:
        self.run(lambda: self.context.__aexit__(None, None, None))
        self.loop.close()

    # --- commands, each predicted from the session table ----------------------------

    def adopt_fault(self) -> None:
        """Broken hardware may trip the device whenever it samples, not only in a wait."""
        self.device_now()
        if self.fw.state == SessionState.FAULT and self.state != SessionState.FAULT:
            assert self.broken, "a fault with no hardware fault to explain it"
            self.state = SessionState.FAULT

    def command(self, kind: MessageType, call: Callable[[], Awaitable[None]]) -> bool:
        self.adopt_fault()
        expected = command_outcome(self.state, kind)
        if isinstance(expected, ErrorCode):
            with pytest.raises(CommandRefused) as refused:
                self.run(call)
            assert refused.value.code == expected
            return False
        self.run(call)
        self.state = expected
        return True

    @rule(mode=MODES, level=LEVELS, seconds=LEASES)
    def start(self, mode: str, level: int, seconds: int) -> None:
        self._start(mode, level, seconds)

    @rule(mode=MODES, level=LEVELS, seconds=LEASES)
    def start_again(self, mode: str, level: int, seconds: int) -> None:
        self._start(mode, level, seconds)  # a second rule: starting matters more than most

    @rule(mode=MODES, level=LEVELS, seconds=LEASES)
    def renew(self, mode: str, level: int, seconds: int) -> None:
        if self.command(MessageType.RENEW, lambda: self.m.renew(mode, level, duration_s=seconds)):
            self.lease_left = float(seconds)  # a paused session stays paused, its clock too

    @precondition(lambda self: self.cycle_loaded)
    @rule(seconds=st.integers(5, 600))
    def start_cycle(self, seconds: int) -> None:
        self._start("cycle", None, seconds)

    def _start(self, mode: str, level: int | None, seconds: int) -> None:
        fresh = self.state == SessionState.IDLE
        if self.command(MessageType.START, lambda: self.m.start(mode, level, duration_s=seconds)):
            self.lease_left = float(seconds)
            self.paused_for = 0.0
            if fresh:
                self.elapsed = 0.0

    @rule(pressure=st.floats(10, 120), order=st.sampled_from(["sequential", "simultaneous"]))
    def load_cycle(self, pressure: float, order: str) -> None:
        cycle = Cycle(order=order, pressures_mmhg=(pressure,) * 4, inflate_s=2, hold_s=3,  # type: ignore[arg-type]
                      release_s=3, rest_s=2)  # fmt: skip
        if self.command(MessageType.SET_CYCLE, lambda: self.m.load_cycle(cycle)):
            self.cycle_loaded = True

    @rule(mode=st.sampled_from(["wave", "pulse"]))
    def set_mode(self, mode: str) -> None:
        self.command(MessageType.SET_MODE, lambda: self.m.set_mode(mode))

    @rule(level=st.integers(1, 3))
    def set_intensity(self, level: int) -> None:
        self.command(MessageType.SET_INTENSITY, lambda: self.m.set_intensity(level))

    @rule()
    def pause(self) -> None:
        if self.command(MessageType.PAUSE, self.m.pause):
            self.paused_for = 0.0

    @rule()
    def resume(self) -> None:
        self.command(MessageType.RESUME, self.m.resume)

    @rule()
    def stop(self) -> None:
        self.command(MessageType.STOP, self.m.stop)

    @rule()
    def vent(self) -> None:
        self.command(MessageType.VENT, self.m.vent)

    @rule()
    def reset_fault(self) -> None:
        self.adopt_fault()
        if self.state != SessionState.FAULT:
            self.command(MessageType.RESET_FAULT, self.m.reset_fault)
            return
        # The device resets only once vented; the model cannot know the pressures.
        self.device_now()
        vented = max(self.fw.snapshot().pressures_mmhg) < 15 and not self.broken
        try:
            self.run(self.m.reset_fault)
            self.state = SessionState.IDLE
        except CommandRefused as refused:
            code = refused.code
        else:
            code = None
        if vented:
            assert code is None, "a vented device with no fault left refused to reset"
        elif code is not None:
            assert code == ErrorCode.FAULT_PERSISTS

    # --- the world ------------------------------------------------------------------

    @rule(ms=st.integers(100, 90_000))
    def wait_long(self, ms: int) -> None:
        self.wait(ms)

    @rule(ms=st.integers(100, 90_000))
    def wait(self, ms: int) -> None:
        # Whole milliseconds: looptime keeps time in microseconds, the model in floats.
        seconds = ms / 1000
        self.run(lambda: asyncio.sleep(seconds))
        if self.state == SessionState.RUNNING:
            spent = min(seconds, self.lease_left, CAP_S - self.elapsed)
            self.lease_left -= spent
            self.elapsed += spent
            if self.lease_left <= 1e-4 or self.elapsed >= CAP_S - 1e-4:
                self.state = SessionState.IDLE
        elif self.state == SessionState.PAUSED:
            self.paused_for += seconds
            if self.paused_for >= PAUSE_LIMIT_S - 1e-4:
                self.state = SessionState.IDLE
        self.adopt_fault()

    @rule()
    def break_the_pump(self) -> None:
        self.broken = self.ever_broken = True
        self.fw.plant.faults.pump_stuck_on = True
        self.fw.plant.faults.inlet_stuck_open = {1}
        self.fw.plant.faults.exhaust_stuck_shut = {1}

    @rule()
    def mend_the_pump(self) -> None:
        self.broken = False
        self.fw.plant.faults.pump_stuck_on = False
        self.fw.plant.faults.inlet_stuck_open = set()
        self.fw.plant.faults.exhaust_stuck_shut = set()

    # --- what must always hold ------------------------------------------------------

    def device_now(self) -> None:
        self.host.sync()  # the firmware wakes lazily; read it as of this moment

    @invariant()
    def no_chamber_ever_exceeds_the_ceiling(self) -> None:
        self.device_now()
        plant = self.fw.plant
        assert plant.max_pressure_seen <= self.fw.config.ceiling_mmhg
        if not self.ever_broken:
            # Working hardware never needs the relief valve, nor comes near the trip.
            assert plant.relief_events == 0
            assert plant.max_pressure_seen < self.fw.config.trip_mmhg

    @invariant()
    def the_device_is_where_the_model_says(self) -> None:
        self.adopt_fault()
        assert self.fw.state == self.state

    @invariant()
    def nothing_runs_past_its_lease_or_cap(self) -> None:
        # A broken pump can trip the device at the very sample that starts a session;
        # the model learns of it first, as the other invariants do.
        self.adopt_fault()
        snapshot = self.fw.snapshot()
        if self.state == SessionState.RUNNING:
            assert snapshot.lease_left_s == pytest.approx(self.lease_left, abs=1e-4)
            assert snapshot.elapsed_s <= CAP_S
        else:
            assert not self.fw.plant.pump, "the firmware runs the pump with no session"

    @invariant()
    def the_controller_sees_the_truth(self) -> None:
        if self.m.connected:
            assert self.m.status.state == self.fw.state.name.lower()


MassagerMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
test_massager_state_machine = MassagerMachine.TestCase
