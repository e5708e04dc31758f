"""What the simulated massager does: patterns, regulation, remote, telemetry."""

from __future__ import annotations

import pytest

import firmware_protocol as fp
from firmware_protocol import Button, CycleOrder, EndReason, Mode, SessionState

from .rig import Rig


def first_time_above(rig: Rig, threshold: float, seconds: float) -> list[float]:
    """When each chamber first passes ``threshold`` mmHg, sampling every 50 ms."""
    reached = [float("inf")] * rig.fw.config.chamber_count
    start = rig.now
    while rig.now - start < seconds:
        rig.run(0.05, step=0.05)
        for i, p in enumerate(rig.pressures()):
            if p > threshold and reached[i] == float("inf"):
                reached[i] = rig.now - start
    return reached


def test_wave_fills_from_the_foot_toward_the_heart() -> None:
    rig = Rig()
    rig.connect()
    rig.command(fp.Start(Mode.WAVE, 2, 600))
    reached = first_time_above(rig, 20.0, 15.0)
    left, right = reached[:4], reached[4:]
    assert left == sorted(left)
    assert right == sorted(right)
    assert left[3] - left[0] >= 3 * rig.fw.config.wave_stage_s - 0.5
    assert left == pytest.approx(right, abs=0.06)  # both legs move together


def test_pulse_squeezes_every_chamber_together() -> None:
    rig = Rig()
    rig.connect()
    rig.command(fp.Start(Mode.PULSE, 1, 600))
    reached = first_time_above(rig, 20.0, 8.0)
    assert max(reached) - min(reached) < 0.2


@pytest.mark.parametrize("level", [1, 2, 3])
def test_each_level_holds_its_target_pressure(level: int) -> None:
    rig = Rig()
    rig.connect()
    target = rig.fw.config.levels_mmhg[level - 1]
    rig.command(fp.Start(Mode.PULSE, level, 600))
    rig.run(8.5, step=0.05)  # near the end of the 9 s squeeze
    pressures = rig.pressures()
    assert min(pressures) > target - 5
    assert max(pressures) < target + 8


def test_graded_cycle_keeps_the_foot_highest() -> None:
    rig = Rig()
    rig.connect()
    targets = (450, 380, 310, 240) * 2
    rig.command(fp.SetCycle(CycleOrder.SEQUENTIAL, 30, 50, 60, 40, targets))
    rig.command(fp.Start(Mode.CYCLE, 0, 600))
    rig.run(14, step=0.05)  # four 3 s fills, then into the hold
    pressures = rig.pressures()
    for got, want in zip(pressures, targets, strict=True):
        assert got == pytest.approx(want / 10, abs=4)
    assert pressures[0] > pressures[1] > pressures[2] > pressures[3]


def test_trial_cycle_is_five_seconds_in_every_minute() -> None:
    rig = Rig()
    rig.connect()
    rig.command(fp.SetCycle(CycleOrder.SIMULTANEOUS, 20, 50, 30, 500, (290,) * 8))
    rig.command(fp.Start(Mode.CYCLE, 0, 600))
    above = 0.0
    for _ in range(int(180 / 0.1)):
        rig.run(0.1, step=0.1)
        if min(rig.pressures()) > 20:
            above += 0.1
    # Three minutes: about 5-7 s of squeeze (hold plus the top of fill and release) per minute.
    assert 3 * 5 <= above <= 3 * 7.5


def test_a_new_cycle_waits_for_the_next_cycle_boundary() -> None:
    rig = Rig()
    rig.connect()
    rig.command(fp.SetCycle(CycleOrder.SIMULTANEOUS, 20, 50, 30, 100, (300,) * 8))
    rig.command(fp.Start(Mode.CYCLE, 0, 600))
    rig.run(3, step=0.05)
    rig.command(fp.SetCycle(CycleOrder.SIMULTANEOUS, 20, 50, 30, 100, (600,) * 8))
    rig.run(3, step=0.05)
    assert max(rig.pressures()) < 35  # still the old cycle mid-squeeze
    rig.run(20 - 6 + 5, step=0.05)  # past the 20 s boundary, into the next squeeze
    assert min(rig.pressures()) > 50


def test_lowering_the_intensity_bleeds_down_to_the_new_target() -> None:
    rig = Rig()
    rig.connect()
    rig.command(fp.Start(Mode.PULSE, 3, 600))
    rig.run(7, step=0.05)
    rig.command(fp.SetIntensity(1))
    rig.run(1.5, step=0.05)
    assert max(rig.pressures()) < 50 + 6


def test_remote_buttons_drive_the_device_and_the_controller_sees_them() -> None:
    rig = Rig()
    rig.connect()
    rig.fw.press(Button.POWER, rig.now)
    rig.fw.press(Button.PLUS, rig.now)
    rig.fw.press(Button.MODE, rig.now)
    rig.exchange()
    snapshot = rig.fw.snapshot()
    assert (snapshot.state, snapshot.mode, snapshot.intensity) == (
        SessionState.RUNNING,
        Mode.PULSE,
        2,
    )
    rig.fw.press(Button.PAUSE, rig.now)
    assert rig.fw.state == SessionState.PAUSED
    rig.fw.press(Button.PAUSE, rig.now)
    rig.fw.press(Button.POWER, rig.now)
    rig.exchange()
    assert rig.fw.state == SessionState.IDLE
    presses = [e.button for e in rig.events_of(fp.ButtonPressed)]
    assert presses == [
        Button.POWER,
        Button.PLUS,
        Button.MODE,
        Button.PAUSE,
        Button.PAUSE,
        Button.POWER,
    ]
    [started] = rig.events_of(fp.SessionStarted)
    assert started == fp.SessionStarted(fp.StartSource.REMOTE, Mode.WAVE, 1, 900)
    assert [e.reason for e in rig.events_of(fp.SessionEnded)] == [EndReason.REMOTE]


def test_a_remote_session_ends_on_its_own_timer() -> None:
    rig = Rig(remote_session_s=120)
    rig.fw.press(Button.POWER, 0.0)
    rig.fw.advance(119.9)
    assert rig.fw.state == SessionState.RUNNING
    rig.fw.advance(120.1)
    assert rig.fw.last_end == EndReason.COMPLETED


def test_status_flows_while_a_controller_is_present_and_stops_without_one() -> None:
    rig = Rig()
    rig.connect()
    rig.run(10)
    assert len(rig.events_of(fp.Status)) == pytest.approx(21, abs=1)  # one at HELLO, then 2 Hz
    rig.run(3, keepalive=False)
    count = len(rig.events_of(fp.Status))
    rig.run(5, keepalive=False)
    assert len(rig.events_of(fp.Status)) == count
    assert rig.events_of(fp.Status)[-1].flags & fp.StatusFlag.CONTROLLER_PRESENT


def test_get_status_is_answered_without_a_controller_present() -> None:
    rig = Rig()
    rig.fw.receive_data(fp.Frame(seq=3, msg_type=fp.MessageType.GET_STATUS).encode(), 0.0)
    frames = fp.FrameDecoder().feed(rig.fw.data_to_send())
    ack, status = (fp.decode_message(f.msg_type, f.payload) for f in frames)
    assert ack == fp.Ack(3)
    assert isinstance(status, fp.Status)
    assert not status.flags & fp.StatusFlag.CONTROLLER_PRESENT


def test_status_tells_the_truth_about_valves_and_pump() -> None:
    rig = Rig()
    rig.connect()
    rig.command(fp.Start(Mode.WAVE, 3, 600))
    rig.run(0.25, step=0.05)
    status = rig.events_of(fp.Status)[-1]
    snapshot = rig.fw.snapshot()
    assert status.inlet_mask == sum(1 << i for i, on in enumerate(snapshot.inlets) if on)
    assert status.inlet_mask == 0b00010001  # the two foot chambers fill first
    assert status.flags & fp.StatusFlag.PUMP_ON
    assert status.seconds_left == 600


def test_forty_five_minutes_run_whole_in_virtual_time() -> None:
    rig = Rig()
    rig.connect()
    for mode, level, minutes in [(Mode.WAVE, 1, 5), (Mode.WAVE, 2, 12), (Mode.PULSE, 2, 8),
                                 (Mode.WAVE, 3, 12), (Mode.WAVE, 1, 8)]:  # fmt: skip
        rig.command(fp.Start(mode, level, minutes * 60 + 5))
        rig.run(minutes * 60)
    rig.command(fp.Stop())
    assert rig.events_of(fp.SessionEnded) == [fp.SessionEnded(EndReason.STOPPED, 45 * 60)]
    assert rig.plant.max_pressure_seen < rig.fw.config.trip_mmhg
    assert 80 < rig.fw.snapshot().battery_pct < 100


def test_a_phase_boundary_closer_than_the_clock_can_tell_still_moves_on() -> None:
    from simulator.patterns import SLIVER, wave

    rig = Rig()
    pattern = wave(rig.fw.config, rig.fw.ranks, 50.0)
    first = pattern.phases[0].duration_s
    phase, left = pattern.at(first - 1e-12)  # a sliver before the boundary
    assert phase is pattern.phases[1]
    assert left >= SLIVER
    phase, left = pattern.at(pattern.period_s - 1e-12)
    assert phase is pattern.phases[0]
    assert left == pattern.phases[0].duration_s
    # On a clock at 100000 s a 1e-12 s remainder would vanish: the deadline never moved.
    assert 100_000.0 + left > 100_000.0
