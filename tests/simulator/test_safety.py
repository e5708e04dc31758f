"""Every safety rule of DESIGN.md and SPEC.md section 10, proved on the simulated firmware."""

from __future__ import annotations

import pytest

import firmware_protocol as fp
from firmware_protocol import EndReason, ErrorCode, Fault, Mode, SessionState

from .rig import Rig

WAVE, PULSE = Mode.WAVE, Mode.PULSE


@pytest.fixture
def rig() -> Rig:
    r = Rig()
    r.connect()
    return r


ACK = "ack"


def nak(code: ErrorCode) -> str:
    return f"nak {code.name}"


def ended(rig: Rig) -> list[EndReason]:
    return [e.reason for e in rig.events_of(fp.SessionEnded)]


# --- ceiling ----------------------------------------------------------------------


def test_ceiling_trips_latches_and_vents_with_a_runaway_pump(rig: Rig) -> None:
    assert rig.command(fp.Start(WAVE, 3, 600)) == ACK
    rig.run(20)
    faults = rig.plant.faults
    faults.pump_stuck_on = True
    faults.inlet_stuck_open = {0}
    faults.exhaust_stuck_shut = {0}  # nothing the firmware does can hold chamber 0 down
    trip = rig.fw.config.trip_mmhg
    over_since = None
    while rig.fw.state != SessionState.FAULT and rig.now < 40:
        rig.run(0.01, step=0.01)
        if over_since is None and rig.pressures()[0] >= trip:
            over_since = rig.now
    assert over_since is not None
    # Tripped within one sampling period of the chamber passing the trip level.
    assert rig.now - over_since <= rig.fw.config.supervise_period_s + 0.01
    rig.run(10)
    assert rig.fw.state == SessionState.FAULT
    assert [e.faults for e in rig.events_of(fp.FaultRaised)] == [Fault.OVERPRESSURE]
    assert ended(rig) == [EndReason.FAULT]
    assert rig.plant.max_pressure_seen <= rig.fw.config.ceiling_mmhg
    snapshot = rig.fw.snapshot()
    assert snapshot.dump
    assert all(snapshot.exhausts)
    assert not any(snapshot.inlets[1:])  # chamber 0's inlet is the stuck one
    # Latched: no start, and no reset while the stuck pump keeps a chamber up.
    assert rig.command(fp.Start(WAVE, 1, 60)) == nak(ErrorCode.FAULT_LATCHED)
    assert rig.command(fp.ResetFault()) == nak(ErrorCode.FAULT_PERSISTS)
    faults.pump_stuck_on = False
    faults.inlet_stuck_open = set()
    faults.exhaust_stuck_shut = set()
    rig.run(5)
    assert rig.command(fp.ResetFault()) == ACK
    rig.run(5)
    # Reset never restarts anything.
    assert rig.fw.state == SessionState.IDLE
    assert max(rig.pressures()) < 1.0


def test_no_chamber_ever_exceeds_the_ceiling_in_normal_use(rig: Rig) -> None:
    for mode in (WAVE, PULSE):
        rig.command(fp.Start(mode, 3, 600))
        rig.run(120)
    assert rig.plant.max_pressure_seen < rig.fw.config.trip_mmhg
    assert rig.fw.faults == Fault.NONE


def test_cycle_targets_above_the_limit_are_refused(rig: Rig) -> None:
    too_high = fp.SetCycle(fp.CycleOrder.SIMULTANEOUS, 20, 50, 30, 10, (1210,) * 8)
    assert rig.command(too_high) == nak(ErrorCode.OVER_PRESSURE_LIMIT)
    wrong_count = fp.SetCycle(fp.CycleOrder.SIMULTANEOUS, 20, 50, 30, 10, (300,) * 4)
    assert rig.command(wrong_count) == nak(ErrorCode.BAD_PAYLOAD)


# --- lease ------------------------------------------------------------------------


def test_session_ends_when_its_lease_is_spent(rig: Rig) -> None:
    rig.command(fp.Start(WAVE, 2, 30))
    rig.run(29.75)
    assert rig.fw.state == SessionState.RUNNING
    rig.run(0.5)
    assert rig.fw.state == SessionState.IDLE
    assert rig.events_of(fp.SessionEnded) == [fp.SessionEnded(EndReason.COMPLETED, 30)]
    rig.run(8)
    assert max(rig.pressures()) < 1.0


@pytest.mark.parametrize("lease", [0, 5401, 0xFFFF])
def test_leases_beyond_the_maximum_are_refused(rig: Rig, lease: int) -> None:
    assert rig.command(fp.Start(WAVE, 1, lease)) == nak(ErrorCode.LEASE_OUT_OF_RANGE)
    assert rig.fw.state == SessionState.IDLE


# --- proof of life ----------------------------------------------------------------


def test_device_vents_within_a_second_when_the_controller_goes_quiet(rig: Rig) -> None:
    rig.command(fp.Start(WAVE, 3, 600))
    rig.run(25)
    assert max(rig.pressures()) > 80
    quiet_since = rig.now  # the controller's last keepalive went out at most 0.25 s before
    while rig.fw.state == SessionState.RUNNING and rig.now < quiet_since + 5:
        rig.run(0.01, keepalive=False, step=0.01)
    silent_for = rig.now - quiet_since
    # The watchdog fires one second after the last frame: not before, not later.
    assert 1.0 - 0.25 <= silent_for <= 1.0 + 0.01
    assert ended(rig) == [EndReason.LINK_LOST]
    assert rig.fw.snapshot().dump
    rig.run(2.0, keepalive=False)
    assert max(rig.pressures()) < 2.0  # near zero two seconds later


def test_a_dropped_link_ends_the_session_at_once(rig: Rig) -> None:
    rig.command(fp.Start(PULSE, 2, 600))
    rig.run(5)
    rig.fw.link_down(rig.now)
    assert rig.fw.state == SessionState.IDLE
    assert rig.fw.last_end == EndReason.LINK_LOST


def test_never_resumes_on_its_own_after_link_loss(rig: Rig) -> None:
    rig.command(fp.Start(WAVE, 2, 600))
    rig.run(5)
    rig.run(2, keepalive=False)
    rig.ctl = fp.Connection(fp.Role.CONTROLLER)  # the controller comes back
    rig.connect()
    rig.run(30)
    assert rig.fw.state == SessionState.IDLE
    assert rig.command(fp.Resume()) == nak(ErrorCode.BAD_STATE)
    assert rig.command(fp.Start(WAVE, 2, 600)) == ACK
    assert rig.fw.state == SessionState.RUNNING


def test_a_remote_session_survives_the_controller_going_away(rig: Rig) -> None:
    rig.fw.press(fp.Button.POWER, rig.now)
    rig.run(3, keepalive=False)
    assert rig.fw.state == SessionState.RUNNING
    assert rig.fw.snapshot().lease_left_s == pytest.approx(900 - 3)


# --- stop and vent ----------------------------------------------------------------


def test_stop_goes_ahead_of_a_start_queued_before_it(rig: Rig) -> None:
    start_seq = rig.ctl.send(fp.Start(WAVE, 3, 600), rig.now)
    rig.ctl.send(fp.Stop(), rig.now)
    rig.exchange()  # both frames reach the device in one read
    rig.run(5)
    assert rig.fw.state == SessionState.IDLE
    assert rig.events_of(fp.SessionStarted) == []
    assert start_seq not in rig.replies
    assert rig.fw.conn.stats.stale == 1


def test_stop_and_vent_are_taken_from_anyone_with_any_seq(rig: Rig) -> None:
    rig.command(fp.Start(WAVE, 2, 600))
    rig.run(5)
    assert rig.fw.conn.stats.frames > 10  # the accepted seq is well past 1 by now
    stranger = fp.Frame(seq=1, msg_type=fp.MessageType.VENT).encode()  # a stale seq
    rig.fw.receive_data(stranger, rig.now)
    assert rig.fw.state == SessionState.IDLE
    assert rig.fw.last_end == EndReason.VENTED
    assert rig.fw.snapshot().dump


def test_stop_is_taken_before_any_hello() -> None:
    rig = Rig()  # no controller has said HELLO
    rig.fw.press(fp.Button.POWER, 0.0)
    rig.fw.advance(3.0)
    rig.fw.receive_data(fp.Frame(seq=7, msg_type=fp.MessageType.STOP).encode(), 3.0)
    assert rig.fw.state == SessionState.IDLE
    assert rig.fw.last_end == EndReason.STOPPED


def test_stop_is_accepted_in_fault_and_keeps_the_fault(rig: Rig) -> None:
    rig.fw._latch(Fault.SENSOR)
    assert rig.command(fp.Stop()) == ACK
    assert rig.fw.state == SessionState.FAULT


# --- session cap ------------------------------------------------------------------


def test_session_cap_holds_whatever_the_controller_asks() -> None:
    rig = Rig(session_cap_s=120, max_lease_s=100)
    rig.connect()
    rig.command(fp.Start(WAVE, 1, 100))
    rig.run(90)
    rig.command(fp.Start(PULSE, 1, 100))  # renews the lease, not the cap
    rig.run(29.75)
    assert rig.fw.state == SessionState.RUNNING
    rig.run(0.5)
    assert rig.events_of(fp.SessionEnded) == [fp.SessionEnded(EndReason.SESSION_CAP, 120)]


def test_paused_time_counts_toward_neither_lease_nor_cap() -> None:
    rig = Rig(session_cap_s=120, max_lease_s=100)
    rig.connect()
    rig.command(fp.Start(WAVE, 1, 100))
    rig.run(50)
    rig.command(fp.Pause())
    rig.run(300)
    snapshot = rig.fw.snapshot()
    assert snapshot.state == SessionState.PAUSED
    assert snapshot.lease_left_s == pytest.approx(50)
    assert max(snapshot.pressures_mmhg) < 1.0  # a pause releases the chambers
    rig.command(fp.Resume())
    rig.run(50.25)
    assert rig.events_of(fp.SessionEnded) == [fp.SessionEnded(EndReason.COMPLETED, 100)]


def test_a_pause_ends_at_the_pause_limit() -> None:
    rig = Rig(pause_limit_s=30)
    rig.connect()
    rig.command(fp.Start(WAVE, 1, 600))
    rig.command(fp.Pause())
    rig.run(30.25)
    assert rig.fw.last_end == EndReason.PAUSE_TIMEOUT


# --- battery ----------------------------------------------------------------------


def test_low_battery_refuses_start_unless_charging() -> None:
    rig = Rig(battery_pct=8.0)
    rig.connect()
    assert rig.command(fp.Start(WAVE, 1, 60)) == nak(ErrorCode.BATTERY_LOW)
    rig.plant.charging = True
    assert rig.command(fp.Start(WAVE, 1, 60)) == ACK


def test_a_session_ends_when_the_battery_runs_low() -> None:
    rig = Rig(battery_pct=5.4, min_start_battery_pct=5.2)
    rig.connect()
    rig.command(fp.Start(PULSE, 3, 3600))
    rig.run(120)
    assert rig.fw.last_end == EndReason.BATTERY
    assert rig.fw.state == SessionState.IDLE


# --- commands refused by state ----------------------------------------------------


def test_state_table_refusals_reach_the_controller(rig: Rig) -> None:
    assert rig.command(fp.Pause()) == nak(ErrorCode.BAD_STATE)
    assert rig.command(fp.Start(0x42, 1, 60)) == nak(ErrorCode.UNSUPPORTED_MODE)
    assert rig.command(fp.Start(Mode.CYCLE, 0, 60)) == nak(ErrorCode.NO_CYCLE)
    assert rig.command(fp.Start(WAVE, 4, 60)) == nak(ErrorCode.UNSUPPORTED_INTENSITY)
    assert rig.command(fp.SetIntensity(0)) == nak(ErrorCode.UNSUPPORTED_INTENSITY)


def test_a_device_without_the_cycle_refuses_it() -> None:
    rig = Rig(cycle=False)
    caps = rig.connect()
    assert not caps.features & fp.Feature.CYCLE
    assert [m.name for m in caps.modes] == ["wave", "pulse"]
    cycle = fp.SetCycle(fp.CycleOrder.SIMULTANEOUS, 20, 50, 30, 10, (290,) * 8)
    assert rig.command(cycle) == nak(ErrorCode.UNSUPPORTED_MODE)


# --- renew ----------------------------------------------------------------------


def test_renew_never_starts_a_session(rig: Rig) -> None:
    assert rig.command(fp.Renew(WAVE, 2, 600)) == nak(ErrorCode.BAD_STATE)
    rig.command(fp.Start(WAVE, 1, 600))
    rig.run(30)
    rig.fw.press(fp.Button.POWER, rig.now)  # the person stops it on the remote...
    assert rig.command(fp.Renew(PULSE, 2, 600)) == nak(ErrorCode.BAD_STATE)  # ...and it stays off
    assert rig.fw.state == SessionState.IDLE


def test_renew_changes_the_session_that_is_on(rig: Rig) -> None:
    rig.command(fp.Start(WAVE, 1, 60))
    rig.run(50)
    assert rig.command(fp.Renew(PULSE, 3, 120)) == ACK
    snapshot = rig.fw.snapshot()
    assert (snapshot.mode, snapshot.intensity, snapshot.lease_left_s) == (PULSE, 3, 120)
    assert len(rig.events_of(fp.SessionStarted)) == 1  # the same session goes on
    rig.run(119.75)
    assert rig.fw.state == SessionState.RUNNING
    rig.run(0.5)
    assert rig.events_of(fp.SessionEnded) == [fp.SessionEnded(EndReason.COMPLETED, 170)]


def test_renew_keeps_a_paused_session_paused_and_its_pause_clock() -> None:
    rig = Rig(pause_limit_s=60)
    rig.connect()
    rig.command(fp.Start(WAVE, 1, 600))
    rig.command(fp.Pause())
    rig.run(40)
    assert rig.command(fp.Renew(PULSE, 2, 300)) == ACK
    assert rig.fw.state == SessionState.PAUSED
    rig.run(20.25)
    assert rig.fw.last_end == EndReason.PAUSE_TIMEOUT
