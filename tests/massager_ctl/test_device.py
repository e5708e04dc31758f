"""The Massager API against the simulator, over the real sim:// transport, in virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest

from firmware_protocol import Button, EndReason, ErrorCode, SessionState
from massager_ctl.device import Cycle, Massager
from massager_ctl.errors import (
    CommandPreempted,
    CommandRefused,
    ConnectFailed,
    DeviceRefused,
    LinkLost,
)
from massager_ctl.models import ButtonUpdate, DeviceStatus, SessionEndedUpdate
from massager_ctl.transports.sim import SimTransport, simulated_device
from massager_ctl.urls import SimAddress, parse_device_url
from simulator import Firmware


def connect() -> AbstractAsyncContextManager[Massager]:
    # Connect inside each test, not in an async fixture: looptime turns virtual time
    # on for the test function only, and a fixture's timers would run on real time.
    return Massager.connect("sim://?seed=1")


async def drain(updates: AsyncIterator[object]) -> None:
    """Read updates until the iterator raises."""
    async for _ in updates:
        pass


def firmware(m: Massager) -> Firmware:
    assert isinstance(m.transport, SimTransport)
    return m.transport.firmware


async def test_connect_reads_what_the_device_announces() -> None:
    async with connect() as massager:
        info = massager.info
        assert info.model == "AirLeg Sim 8"
        assert info.modes == {"wave": 1, "pulse": 2, "cycle": 0x80}
        assert [lv.target_mmhg for lv in info.levels] == [50, 80, 110]
        assert info.ceiling_mmhg == 130
        assert info.ranks == 4
        assert [(c.leg, c.position, c.rank) for c in info.chambers[:4]] == [
            ("left", "foot", 0), ("left", "calf", 1), ("left", "knee", 2), ("left", "thigh", 3),
        ]  # fmt: skip
        assert massager.status.state == "idle"
        assert massager.connected


async def test_commands_change_the_device() -> None:
    async with connect() as massager:
        fw = firmware(massager)
        await massager.start("wave", 2, duration_s=600)
        assert fw.state == SessionState.RUNNING
        await massager.set_mode("pulse")
        await massager.set_intensity(3)
        status = await massager.refresh()
        assert (status.state, status.mode, status.intensity) == ("running", "pulse", 3)
        assert status.seconds_left == 600
        await massager.pause()
        assert (await massager.refresh()).state == "paused"
        await massager.resume()
        await asyncio.sleep(8)
        assert massager.status.peak_mmhg > 100
        await massager.stop()
        vented = await massager.wait_vented()
        assert vented.last_end == "stopped"
        assert fw.last_end == EndReason.STOPPED


async def test_programmable_cycle_by_place() -> None:
    async with connect() as massager:
        cycle = Cycle(order="sequential", pressures_mmhg=(45, 38, 31, 24), inflate_s=3, hold_s=5,
                      release_s=6, rest_s=4)  # fmt: skip
        await massager.load_cycle(cycle)
        program = firmware(massager).program
        assert program is not None
        assert program.targets_dmmhg == (450, 380, 310, 240) * 2
        await massager.start("cycle", duration_s=60)
        assert massager.status.mode == "cycle"


async def test_leaving_the_block_stops_what_we_started() -> None:
    async with Massager.connect("sim://?seed=1") as m:
        fw = firmware(m)
        await m.start("wave", 1, duration_s=600)
    assert fw.state == SessionState.IDLE
    assert fw.last_end == EndReason.STOPPED


async def test_leaving_through_an_error_vents() -> None:
    seen: list[Firmware] = []

    async def fail_mid_session() -> None:
        async with Massager.connect("sim://?seed=1") as m:
            seen.append(firmware(m))
            await m.start("pulse", 3, duration_s=600)
            await asyncio.sleep(5)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_mid_session()
    [fw] = seen
    assert fw.last_end == EndReason.VENTED
    assert fw.snapshot().dump


async def test_leaving_does_not_stop_a_session_someone_else_started() -> None:
    host = simulated_device(SimAddress())
    host.press(Button.POWER)
    async with Massager.connect("sim://") as m:
        assert m.status.state == "running"
    assert host.firmware.state == SessionState.RUNNING


async def test_refusals_carry_the_reason() -> None:
    async with connect() as massager:
        with pytest.raises(
            CommandRefused, match="refused pause: it cannot do that in its current state"
        ):
            await massager.pause()


async def test_impossible_requests_are_refused_before_sending() -> None:
    async with connect() as massager:
        sent = massager.link_stats.frames_sent
        with pytest.raises(DeviceRefused, match="no mode 'knead'; it offers wave, pulse, cycle"):
            await massager.start("knead", 1, duration_s=60)
        with pytest.raises(DeviceRefused, match="no intensity 4; it offers 1, 2, 3"):
            await massager.start("wave", 4, duration_s=60)
        with pytest.raises(DeviceRefused, match=r"outside 1\.\.5400 s"):
            await massager.start("wave", 1, duration_s=6000)
        too_high = Cycle(
            pressures_mmhg=(150, 140, 130, 120), inflate_s=1, hold_s=1, release_s=1, rest_s=1
        )
        with pytest.raises(DeviceRefused, match="above this massager's limit of 120"):
            await massager.load_cycle(too_high)
        assert massager.link_stats.frames_sent == sent


async def test_stop_overtakes_a_waiting_command() -> None:
    async with connect() as massager:
        await massager.start("wave", 1, duration_s=600)
        waiting = asyncio.create_task(massager.set_intensity(3))
        await asyncio.sleep(0)  # it is sent and waits for its reply
        await massager.stop()
        with pytest.raises(CommandPreempted):
            await waiting
        assert firmware(massager).state == SessionState.IDLE


async def test_remote_buttons_reach_the_controller() -> None:
    async with connect() as massager:
        updates = massager.updates()
        assert isinstance(massager.transport, SimTransport)
        massager.transport.host.press(Button.POWER)
        massager.transport.host.press(Button.PLUS)
        seen = [await anext(updates) for _ in range(6)]
        buttons = [u.button for u in seen if isinstance(u, ButtonUpdate)]
        assert buttons == ["power", "plus"]
        last = [u for u in seen if isinstance(u, DeviceStatus)][-1]
        assert (last.state, last.intensity) == ("running", 2)
        assert not last.link_session


async def test_a_cut_link_is_reported_and_the_device_vents_by_itself() -> None:
    async with connect() as massager:
        fw = firmware(massager)
        await massager.start("pulse", 3, duration_s=600)
        await asyncio.sleep(5)
        updates = massager.updates()
        assert isinstance(massager.transport, SimTransport)
        massager.transport.cut()
        with pytest.raises(LinkLost):
            await drain(updates)
        with pytest.raises(LinkLost):
            await massager.stop()
        assert not massager.connected
        assert fw.last_end == EndReason.LINK_LOST
        await asyncio.sleep(3)
        assert max(fw.snapshot().pressures_mmhg) < 5


async def test_a_device_that_falls_silent_is_noticed() -> None:
    async with connect() as massager:
        assert isinstance(massager.transport, SimTransport)
        statuses = massager.statuses()
        massager.transport.host.stop()  # the device loses power
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LinkLost, match="went silent"):
            await drain(statuses)
        assert loop.time() - started <= 1.5 + 0.5


async def test_no_answer_at_connect_fails_with_the_address() -> None:
    simulated_device(SimAddress(name="off")).stop()
    with pytest.raises(ConnectFailed, match="no answer from a massager at sim://off"):
        async with Massager.connect(parse_device_url("sim://off"), timeout_s=2):
            pass


async def test_session_events_come_in_order() -> None:
    async with connect() as massager:
        updates = massager.updates()
        await massager.start("wave", 1, duration_s=10)
        ended = None
        while ended is None:
            update = await anext(updates)
            if isinstance(update, SessionEndedUpdate):
                ended = update
        assert ended == SessionEndedUpdate(reason="completed", pressure_s=10)
        assert massager.status.model_dump()["state"] == "idle"


async def test_connecting_takes_no_longer_than_the_handshake() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with connect() as massager:
        # The STATUS sent with CAPABILITIES is used at once, not the next periodic one.
        assert loop.time() - started < 0.01
        assert massager.status.uptime_s < 0.01


async def test_renew_changes_a_session_but_never_starts_one() -> None:
    async with connect() as massager:
        with pytest.raises(CommandRefused, match="cannot do that in its current state") as refused:
            await massager.renew("wave", 2, duration_s=60)
        assert refused.value.code == ErrorCode.BAD_STATE
        await massager.start("wave", 1, duration_s=60)
        await massager.renew("pulse", 3, duration_s=300)
        status = await massager.refresh()
        assert (status.mode, status.intensity, status.seconds_left) == ("pulse", 3, 300)


async def test_a_start_cancelled_in_flight_is_still_ended_on_leaving() -> None:
    seen: list[Firmware] = []

    async def give_up_mid_start() -> None:
        async with connect() as massager:
            seen.append(firmware(massager))
            start = asyncio.create_task(massager.start("pulse", 3, duration_s=600))
            await asyncio.sleep(0)  # START is on its way; its ACK is not read yet
            start.cancel()
            with pytest.raises(asyncio.CancelledError):
                await start
            await asyncio.sleep(0.1)
            assert seen[0].state == SessionState.RUNNING
            raise RuntimeError("the caller gives up")

    with pytest.raises(RuntimeError, match="gives up"):
        await give_up_mid_start()
    assert seen[0].last_end == EndReason.VENTED  # vented on the way out, not left to the watchdog
