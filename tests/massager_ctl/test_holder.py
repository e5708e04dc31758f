"""The holder: a quiet watch that costs an idle massager nothing, and the rules of every door.

Driven on the in-process simulator and on a paired simulator on a real TCP port,
in virtual time (an idle hour takes no time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from firmware_protocol import Button
from massager_ctl.holder import Command, Holder, House
from massager_ctl.holder.door import door_paths, send_command
from massager_ctl.holder.holder import IDLE_POLL_S
from massager_ctl.journal import Journal
from massager_ctl.keystore import KeyStore
from massager_ctl.paths import journal_file, keys_file, user_profiles_dir
from massager_ctl.programs.profiles import find_profile
from massager_ctl.settings import Settings
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import parse_device_url
from tests.massager_ctl.test_daemon import short_profile
from tests.massager_ctl.test_key_damage import a_paired_device

HOUR_S = 3600.0
FRAMES_PER_IDLE_HOUR = 120
"""The most an idle massager's link may carry in an hour, both ways (issue: idle costs nothing)."""


def a_house(log: list[str] | None = None) -> House:
    """The holders of a bridge-like process, with this test's folders."""
    return House(kind="bridge", settings=Settings(), journal=Journal(journal_file()),
                 profiles_dir=user_profiles_dir(),
                 log=(log.append if log is not None else lambda line: None))  # fmt: skip


@contextlib.asynccontextmanager
async def watching(url: str) -> AsyncIterator[Holder]:
    """A watching holder of ``url``, once the massager has answered."""
    holder = a_house().hold(parse_device_url(url), watch=True)
    holder.begin()
    await asyncio.sleep(1)
    assert holder.available
    try:
        yield holder
    finally:
        await holder.end()


def frames_on(holder: Holder) -> int:
    """Frames the quiet watch's link carried, both ways."""
    link = holder._watch_link
    assert link is not None, "the watch is connected"
    stats = link.link_stats
    return stats.frames + stats.frames_sent


async def test_an_idle_hour_costs_at_most_120_frames_and_a_remote_press_shows_at_once() -> None:
    async with watching("sim://idle") as holder:
        await asyncio.sleep(HOUR_S)
        assert holder.state.state == "idle"
        idle = frames_on(holder)
        assert idle <= FRAMES_PER_IDLE_HOUR, idle
        # It does read now and then: a massager that went away would be noticed.
        assert idle >= HOUR_S / IDLE_POLL_S, idle
        states: list[str] = []
        holder.listen(lambda h, change: states.append(h.state.state))
        device = simulated_device(parse_device_url("sim://idle"))  # type: ignore[arg-type]
        device.press(Button.POWER)  # someone starts a session on the remote
        await asyncio.sleep(1)
        assert "running" in states, states  # told by the massager, not found by a read
        device.press(Button.POWER)
        await asyncio.sleep(30)
        assert holder.state.state == "idle"
        assert max(holder.state.pressures_mmhg) < 10, holder.state


async def test_a_watched_paired_massager_never_writes_the_key_file_while_idle() -> None:
    async with a_paired_device() as device:
        before = keys_file().read_bytes(), keys_file().stat().st_mtime_ns
        async with watching(device.url) as holder:
            await asyncio.sleep(600)
            assert frames_on(holder) <= FRAMES_PER_IDLE_HOUR / 6 + 10
            assert holder.state.state == "idle"
        assert (keys_file().read_bytes(), keys_file().stat().st_mtime_ns) == before


async def test_a_stop_from_idle_reaches_a_session_started_on_the_remote_and_empties_it() -> None:
    async with watching("sim://remote") as holder:
        device = simulated_device(parse_device_url("sim://remote"))  # type: ignore[arg-type]
        device.press(Button.POWER)
        await asyncio.sleep(20)
        assert holder.state.state == "running"
        loop = asyncio.get_running_loop()
        asked = loop.time()
        reply = await holder.command(Command(action="stop"), source="cli")
        assert reply.ok, reply
        assert str(reply.message).startswith("stop: done"), reply
        assert loop.time() - asked < 15
        assert device.firmware.snapshot().state.name == "IDLE"


async def test_an_adjustment_from_idle_goes_out_on_a_signed_link_and_the_watch_goes_on() -> None:
    async with watching("sim://adjust") as holder:
        reply = await holder.command(Command(action="mode", mode="pulse"), source="mqtt")
        assert reply.ok, reply
        await asyncio.sleep(2)
        assert holder.state.mode == "pulse"
        assert holder._watch_link is not None
        assert holder._watch_link.quiet


async def test_a_command_id_runs_once_and_an_old_command_is_refused() -> None:
    short_profile("short", 1)
    async with watching("sim://rules") as holder:
        first = await holder.command(Command(action="start", profile="short", id="a"), source="x")
        again = await holder.command(Command(action="start", profile="short", id="a"), source="x")
        assert (first.ok, first.duplicate) == (True, None), first
        assert (again.ok, again.duplicate, again.message) == (True, True, first.message), again
        await asyncio.sleep(2)
        assert (holder.state.state, holder.state.program) == ("running", "short")
        old = datetime.now(UTC) - timedelta(minutes=1)
        stale = await holder.command(Command(action="stop", at=old), source="x")
        assert not stale.ok
        assert "60 s ago" in str(stale.error), stale
        stopped = await holder.command(Command(action="stop"), source="x")
        assert stopped.message == "stop: the program ended; the chambers are empty", stopped
        await asyncio.sleep(1)
        assert holder.running is None
    [session] = Journal(journal_file()).sessions()
    assert (session.source, session.ended) == ("x", "stopped")


async def test_a_45_minute_program_on_a_paired_massager_writes_the_key_file_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    reserve = KeyStore.reserve

    def counted(store: KeyStore, device: str, count: int, key: bytes | None = None) -> int:
        writes.append(count)
        return reserve(store, device, count, key)

    async with a_paired_device() as device:
        monkeypatch.setattr(KeyStore, "reserve", counted)
        house = a_house()
        holder = house.hold(parse_device_url(device.url))
        program = house.journaled(holder, find_profile("evening-45"), source="cli")
        async with holder.program(program, source="cli"):
            result = await program.run()
    assert result.outcome == "completed", result
    assert len(writes) == 1, writes


async def test_a_stop_overtakes_an_idle_mode_change_on_the_one_link() -> None:
    async with watching("sim://overtaken") as holder:
        device = simulated_device(parse_device_url("sim://overtaken"))  # type: ignore[arg-type]
        device.press(Button.POWER)  # a session from the remote, which the stop must end
        await asyncio.sleep(5)
        moving = asyncio.create_task(
            holder.command(Command(action="mode", mode="pulse"), source="x")
        )
        await asyncio.sleep(0)  # the quiet link is being woken for it
        stopped = await holder.command(Command(action="stop"), source="x")
        moved = await moving
        assert stopped.ok, stopped
        assert device.firmware.snapshot().state.name == "IDLE"
        # Either it ran before the stop (and the stop ended the session), or the stop
        # overtook it: never after.
        assert moved.ok or "overtaken by a stop" in str(moved.error), moved
        await asyncio.sleep(2)
        assert holder._watch_link is not None
        assert holder._watch_link.quiet


async def test_a_stop_while_the_watch_reconnects_is_sent_on_a_link_of_its_own() -> None:
    async with watching("sim://cut") as holder:
        link = holder._watch_link
        assert link is not None
        link.transport.cut()  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)
        assert holder._watch_link is None  # waiting to connect again
        stopped = await holder.command(Command(action="stop"), source="x")
        assert stopped.ok, stopped
        assert str(stopped.message).startswith("stop: done"), stopped
        await asyncio.sleep(10)
        assert holder.available  # watching again


@pytest.mark.looptime(False)
async def test_a_door_in_a_folder_others_may_write_is_never_trusted_with_a_stop() -> None:
    # Where there is no runtime folder the doors live in the temporary folder, where
    # someone else could make the folder first and answer a stop "done" without
    # sending it: such a door is not knocked on, and the stop goes to the massager.
    address = parse_device_url("sim://tmp")
    sock, _ = door_paths(address)
    sock.parent.mkdir(mode=0o700, exist_ok=True)

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b'{"ok": true, "action": "stop", "id": null, "message": "stop: done"}\n')
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(liar, path=str(sock))
    try:
        trusted = await send_command(address, Command(action="stop"))
        assert trusted is not None  # this user's own folder and socket: knocked on
        sock.parent.chmod(0o777)
        assert await send_command(address, Command(action="stop")) is None
        sock.parent.chmod(0o700)
        sock.chmod(0o600)
        assert await send_command(address, Command(action="stop")) is not None
    finally:
        server.close()
        sock.parent.chmod(0o700)
