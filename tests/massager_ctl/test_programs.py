"""Running profiles end to end on the simulator, in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from firmware_protocol import Button, EndReason, Fault, SessionState
from massager_ctl.device import Massager
from massager_ctl.errors import ProfileRefused
from massager_ctl.programs.profiles import Profile, find_profile
from massager_ctl.programs.runner import Outcome, ProgramRunner, Progress, run_program
from massager_ctl.transports.sim import SimTransport
from simulator import Firmware


def firmware(m: Massager) -> Firmware:
    assert isinstance(m.transport, SimTransport)
    return m.transport.firmware


def short(*steps: dict[str, object]) -> Profile:
    return Profile.model_validate(
        {"name": "short", "title": "Short", "description": "d", "why": "w", "steps": list(steps)}
    )


async def test_the_evening_program_runs_whole() -> None:
    reports: list[Progress] = []
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await run_program(m, find_profile("evening-45"), on_progress=reports.append)
        took = loop.time() - started
    assert result.outcome == Outcome.COMPLETED
    assert result.exit_code == 0
    assert (result.steps_done, result.steps) == (5, 5)
    assert result.pressure_s == pytest.approx(45 * 60, abs=2)
    assert 45 * 60 <= took <= 45 * 60 + 20
    assert result.final_status is not None
    assert result.final_status.peak_mmhg < 5
    assert [r.step for r in reports] == sorted(r.step for r in reports)
    assert {r.step for r in reports} == {1, 2, 3, 4, 5}
    lefts = [r.program_left_s for r in reports]
    assert lefts == sorted(lefts, reverse=True)
    assert fw.plant.max_pressure_seen < fw.config.trip_mmhg
    assert fw.last_end == EndReason.STOPPED


async def test_a_last_step_as_long_as_the_massagers_lease_runs_whole() -> None:
    # `start --duration 1h30m` on a massager whose lease and session cap are 90 min.
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        result = await run_program(m, short({"mode": "wave", "intensity": 1, "minutes": 90}))
    assert result.outcome == Outcome.COMPLETED
    assert result.pressure_s == pytest.approx(90 * 60, abs=2)
    assert fw.last_end in (EndReason.COMPLETED, EndReason.STOPPED)


async def test_the_trial_program_squeezes_gently_once_a_minute() -> None:
    profile = find_profile("trial-compression-60")
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        task = asyncio.create_task(run_program(m, profile))
        peaks = []
        for _ in range(6 * 60):
            await asyncio.sleep(1)
            peaks.append(max(fw.snapshot().pressures_mmhg))
        program = fw.program
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert program is not None
    assert set(program.targets_dmmhg) == {290}
    assert 26 < max(peaks) < 33
    squeezing = sum(1 for p in peaks if p > 20)
    assert 6 * 5 <= squeezing <= 6 * 8  # about five seconds in every minute


async def test_ramps_raise_and_lower_the_cycle_pressures() -> None:
    profile = find_profile("wind-down-30")
    foot: list[float] = []
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        task = asyncio.create_task(run_program(m, profile))
        for _ in range(30):
            await asyncio.sleep(60)
            assert fw.program is not None
            foot.append(fw.program.targets_dmmhg[0] / 10)
        result = await task
    assert result.outcome == Outcome.COMPLETED
    assert foot[0] < foot[2] < foot[4]  # ramping in
    assert max(foot) == pytest.approx(45)
    assert foot[-1] < foot[-3] < 45  # ramping out
    assert min(foot) >= 45 * 0.5 - 0.1


async def test_stop_on_the_remote_ends_the_program() -> None:
    async with Massager.connect("sim://?seed=1") as m:
        assert isinstance(m.transport, SimTransport)
        host = m.transport.host
        asyncio.get_running_loop().call_later(90, host.press, Button.POWER)
        result = await run_program(m, find_profile("effleurage-wave-30"))
    assert result.outcome == Outcome.STOPPED_ON_REMOTE
    assert result.exit_code == 0
    assert result.steps_done == 0
    assert result.pressure_s == pytest.approx(90, abs=1)
    assert result.message == "stopped with the remote's power button"


async def test_a_pause_on_the_remote_stops_the_program_clock() -> None:
    profile = short({"mode": "wave", "intensity": 1, "minutes": 5})
    async with Massager.connect("sim://?seed=1") as m:
        assert isinstance(m.transport, SimTransport)
        host = m.transport.host
        loop = asyncio.get_running_loop()
        loop.call_later(60, host.press, Button.PAUSE)
        loop.call_later(180, host.press, Button.PAUSE)
        started = loop.time()
        result = await run_program(m, profile)
        took = loop.time() - started
    assert result.outcome == Outcome.COMPLETED
    assert result.pressure_s == pytest.approx(300, abs=1.5)
    assert took == pytest.approx(300 + 120, abs=3)


async def test_a_fault_ends_the_program_and_says_so() -> None:
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)

        def break_the_pump() -> None:
            fw.plant.faults.pump_stuck_on = True
            fw.plant.faults.inlet_stuck_open = {2}
            fw.plant.faults.exhaust_stuck_shut = {2}

        asyncio.get_running_loop().call_later(120, break_the_pump)
        result = await run_program(m, find_profile("evening-45"))
    assert result.outcome == Outcome.FAULT
    assert result.exit_code == 5
    assert fw.state == SessionState.FAULT
    assert fw.faults == Fault.OVERPRESSURE
    assert result.final_status is not None
    assert "overpressure" in result.final_status.faults


async def test_a_profile_the_device_cannot_run_is_refused_before_anything_is_sent() -> None:
    async with Massager.connect("sim://nocycle?cycle=false") as m:
        fw = firmware(m)
        sent = m.link_stats.frames_sent
        with pytest.raises(ProfileRefused, match="needs the programmable cycle"):
            await run_program(m, find_profile("wind-down-30"))
        assert m.link_stats.frames_sent == sent
    assert fw.last_end == EndReason.NONE


async def test_a_cut_link_ends_the_program_and_the_device_vents() -> None:
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        assert isinstance(m.transport, SimTransport)
        asyncio.get_running_loop().call_later(200, m.transport.cut)
        result = await run_program(m, find_profile("deep-pressure-30"))
    assert result.outcome == Outcome.LINK_LOST
    assert result.exit_code == 4
    assert fw.last_end == EndReason.LINK_LOST
    assert result.final_status is not None  # the last one known


async def test_an_interrupted_program_vents_and_reports() -> None:
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        runner = ProgramRunner(m, find_profile("deep-pressure-30"))
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(400)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = await runner.interrupted()
    assert result.outcome == Outcome.INTERRUPTED
    assert result.exit_code == 130
    assert result.steps_done == 1
    assert result.final_status is not None
    assert result.final_status.peak_mmhg < 5
    assert fw.last_end == EndReason.VENTED


async def test_a_flat_battery_ends_the_program() -> None:
    async with Massager.connect("sim://weak?battery_pct=11&seed=1") as m:
        result = await run_program(m, find_profile("deep-pressure-30"))
    assert result.outcome == Outcome.BATTERY
    assert result.message.startswith("the battery ran too low to go on")
    assert result.steps_done >= 1


async def test_the_end_is_noticed_even_when_its_event_is_lost() -> None:
    from firmware_protocol import EventKind, FrameDecoder, MessageType

    async with Massager.connect("sim://?seed=1") as m:
        assert isinstance(m.transport, SimTransport)
        transport = m.transport
        decoder = FrameDecoder()

        def lose_events(data: bytes) -> None:
            # Below the transport, where a noisy wire would be: drop every EVENT frame
            # but the challenges (without answers to them the link itself would go).
            kept = [
                f
                for f in decoder.feed(data)
                if f.msg_type != MessageType.EVENT or f.payload[:1] == bytes([EventKind.CHALLENGE])
            ]
            if kept:
                transport._incoming.put_nowait(b"".join(f.encode() for f in kept))

        transport.host.attach(lose_events)
        asyncio.get_running_loop().call_later(60, transport.host.press, Button.POWER)
        result = await asyncio.wait_for(run_program(m, find_profile("effleurage-wave-30")), 120)
    assert result.outcome == Outcome.STOPPED_ON_REMOTE


async def test_a_stop_on_the_remote_at_a_step_boundary_is_never_undone() -> None:
    from massager_ctl.device import Updates

    profile = short({"mode": "wave", "intensity": 1, "minutes": 1},
                    {"mode": "pulse", "intensity": 2, "minutes": 1})  # fmt: skip
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        assert isinstance(m.transport, SimTransport)
        host = m.transport.host
        # Press stop on the remote just as step 1 ends, after the runner's last look
        # at its updates: only the device can refuse to restart what the person ended.
        original = Updates.pending
        pressed: list[float] = []

        def press_then_look(self: Updates) -> list:  # type: ignore[type-arg]
            if not pressed:
                pressed.append(asyncio.get_running_loop().time())
                host.press(Button.POWER)
            return original(self)

        Updates.pending = press_then_look  # type: ignore[method-assign]
        try:
            result = await run_program(m, profile)
        finally:
            Updates.pending = original  # type: ignore[method-assign]
        assert pressed == [pytest.approx(60, abs=1)]
        assert result.outcome == Outcome.STOPPED_ON_REMOTE
        assert result.steps_done == 1
        await asyncio.sleep(30)
        assert fw.state == SessionState.IDLE  # nothing started pressure again
    assert fw.last_end == EndReason.REMOTE
