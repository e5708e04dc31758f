"""The asyncio host runs the firmware on loop time; the scaled loop keeps timers in order."""

from __future__ import annotations

import asyncio
import time

import pytest

import firmware_protocol as fp
from firmware_protocol import Button, EndReason, SessionState
from simulator import DeviceConfig
from simulator.clock import ScaledTimeLoop
from simulator.host import DeviceHost


async def test_host_runs_a_remote_session_to_its_timer_in_virtual_time() -> None:
    host = DeviceHost(DeviceConfig(seed=1, remote_session_s=900))
    host.start()
    host.press(Button.POWER)
    await asyncio.sleep(899)
    assert host.firmware.state == SessionState.RUNNING
    await asyncio.sleep(2)
    assert host.firmware.last_end == EndReason.COMPLETED
    host.stop()


async def test_host_answers_a_link_and_notices_it_go() -> None:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    received = bytearray()
    host.attach(received.extend)
    controller = fp.Connection(fp.Role.CONTROLLER)
    controller.send(fp.Hello("t"), asyncio.get_running_loop().time())
    host.feed(controller.data_to_send())
    controller.receive_data(bytes(received), asyncio.get_running_loop().time())
    assert controller.state == fp.LinkState.READY
    await asyncio.sleep(1.01)  # the controller says nothing more: the watchdog forgets it
    assert host.firmware.conn.state == fp.LinkState.WAITING
    received.clear()
    await asyncio.sleep(5)
    assert received == b""  # no controller, no status reports
    host.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = host.firmware


def test_scaled_loop_runs_faster_and_keeps_timer_order() -> None:
    order: list[str] = []

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0, w0 = loop.time(), time.monotonic()
        loop.call_later(1.0, order.append, "watchdog")
        loop.call_later(0.25, lambda: loop.call_soon(order.append, "keepalive"))
        time.sleep(0.05)  # noqa: ASYNC251 - a busy process: 2.5 s of loop time at 50x
        await asyncio.sleep(2.0)
        return loop.time() - t0, time.monotonic() - w0

    with asyncio.Runner(loop_factory=lambda: ScaledTimeLoop(50)) as runner:
        loop_elapsed, wall = runner.run(main())
    assert 2.0 <= loop_elapsed <= wall * 50 + 0.01
    assert wall < 0.5
    # The callback queued by the earlier timer ran before the later timer fired.
    assert order == ["keepalive", "watchdog"]


def test_scaled_loop_rejects_a_silly_speed() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledTimeLoop(0)


async def test_every_timer_wake_does_the_work_it_was_armed_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # looptime counts whole microseconds and the loop fires a timer up to one tick
    # before its float deadline. A side that then ran only to the loop's time found
    # nothing due and asked the loop again: two wakes for one deadline, 19,000 of
    # them in a 45-minute program. Each wake must now reach its deadline.
    from massager_ctl.device import Massager

    empty: list[str] = []
    host_on_timer, massager_on_timer = DeviceHost._on_timer, Massager._on_timer

    def host_wake(host: DeviceHost) -> None:
        armed_for = host.firmware.next_deadline()
        host_on_timer(host)
        if host.running and host.firmware.now < armed_for:
            empty.append(f"device at {host.firmware.now!r} for {armed_for!r}")

    def massager_wake(massager: Massager) -> None:
        armed_for = massager._conn.get_timer()
        massager_on_timer(massager)
        after = massager._conn.get_timer()
        if armed_for is not None and after is not None and after <= armed_for:
            empty.append(f"controller for {armed_for!r}, next {after!r}")

    monkeypatch.setattr(DeviceHost, "_on_timer", host_wake)
    monkeypatch.setattr(Massager, "_on_timer", massager_wake)
    async with Massager.connect("sim://wakes?seed=1") as massager:
        await massager.start("wave", 2, duration_s=120)
        await asyncio.sleep(90)
        status = await massager.refresh()
        assert status.state == "running"
        await massager.stop()
    assert empty == []


async def test_neither_link_sees_its_clock_go_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A wake runs the firmware to the deadline it was armed for, a hair past the
    # loop's time; bytes arriving next, at the loop's time, must not take the
    # device's connection back before what it already did (its `now` is monotonic).
    # The controller's timer wakes the same way, and keeps its connection's clock too.
    from massager_ctl.device import Massager

    backwards: list[str] = []
    latest: dict[int, float] = {}

    def watched(name: str) -> None:
        real = getattr(fp.Connection, name)

        def spy(conn: fp.Connection, *args: object) -> object:
            now = args[-1] if name != "send" else args[1]
            assert isinstance(now, float)
            if now < latest.get(id(conn), now):
                backwards.append(f"{conn.role.name} {name} at {now!r} after {latest[id(conn)]!r}")
            latest[id(conn)] = max(now, latest.get(id(conn), now))
            return real(conn, *args)

        monkeypatch.setattr(fp.Connection, name, spy)

    for name in ("receive_data", "handle_timer", "link_down", "send"):
        watched(name)
    async with Massager.connect("sim://clock?seed=1") as massager:
        await massager.start("wave", 2, duration_s=120)
        for i in range(20):
            await asyncio.sleep(1.0)
            await massager.set_intensity(1 + i % 3)
        await massager.stop()
    assert backwards == []
