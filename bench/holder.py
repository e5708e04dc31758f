"""The holder: what an idle massager costs while watched, and a stop knocked from another process.

**Idle.** A watching `Holder` (as the bridge holds each massager) keeps a quiet
link (SPEC 7.6): an unsigned HELLO, then nothing but the device's own reports
of what changes and a status read every two minutes. The baseline is how an
idle massager was watched before: a `Massager.connect` kept open, reading its
statuses (keepalives, challenges and status reports, every frame signed). Both
run one virtual hour each, one after the other, round after round, on the
jumping clock of `bench.clock` (sim:// only: nothing outside the process takes
part). The frames are counted by the simulated massager itself, both ways; the
CPU seconds are the process's (controller and simulated massager both).

**Key-file writes.** The same two ways of watching, on a paired massager served
on a TCP port in this process, in temporary config folders, on looptime (real
sockets need a clock that polls them): `KeyStore.reserve` (each call writes
``keys.json``) is counted over a virtual hour once connected, times 24.

**Stop from another process.** A holder in this process runs a program on a
paired massager served on a TCP port here; the stop comes through the holder's
local door from a second Python process that is already running, waiting for a
line on its standard input. The time runs from the moment this process writes
that line to the moment the served firmware takes the STOP (a hook on the bytes
it is fed), in real time. The baseline is the same stop asked of the holder by
a call in its own process. Each round starts the program again.

Every workload checks its work: the holder was available the whole hour, idle,
and a press of the remote at the end showed in its state; the kept link stayed
up, read at least a status a second, was idle and saw the press too (and, on the
paired massager, was signed and wrote the key file); each stop found the session
running, ended it as a STOP with the exhaust valves open, and its reply said ok.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import looptime

from firmware_protocol import Button, EndReason, SessionState
from massager_ctl.device import Massager
from massager_ctl.holder import Command, Holder, House, Reply
from massager_ctl.holder.door import holding, send_command
from massager_ctl.journal import Journal
from massager_ctl.keystore import KeyStore
from massager_ctl.paths import journal_file, user_profiles_dir
from massager_ctl.settings import Settings
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress, parse_device_url
from simulator import DeviceConfig, Firmware
from simulator.host import DeviceHost
from simulator.serve import TcpEndpoint

from . import clock
from .rows import Row, WorkloadFailed, check_intensity, latency_rows, p50, spread

HOUR_S = 3600.0
PER_DAY = 24
"""Idle hours in a day: the key-file row is one virtual hour, times this."""
PRESS_SHOWS_WITHIN_S = 30.0
"""A press of the remote at the end of the idle hour must show in this many virtual seconds."""
CONNECT_WITHIN_S = 30.0
"""For a link to answer, in virtual seconds (idle rows) or real ones (stop row)."""
STOP_WITHIN_S = 10.0
"""Real seconds a stop may take to reach the firmware before the round is refused."""
PROFILE = "evening-45"
"""The program each stop round starts: long enough that only the stop ends it."""
ROUNDS = 3
"""Idle hours per side in a full run (a quick run takes 1)."""
STOP_ROUNDS = 200
"""Stops per side in a full run, after one thrown away: two blocks of 100 (a quick run takes
20). Each round takes about 60 ms, most of it the chambers emptying before the stop's reply."""
ROOT = Path(__file__).resolve().parent.parent
"""The project's folder, which the second process imports `bench` from."""


@contextlib.contextmanager
def _private_dirs() -> Iterator[Path]:
    """Point XDG config, state and runtime folders into a new temporary folder, for the block.

    The bench reads and writes no file of the user's, and knocks on no door of theirs.
    """
    names = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")
    before = {name: os.environ.get(name) for name in names}
    # Short: a socket's path is at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="mc-bench-") as name:
        folder = Path(name)
        for env in names:
            path = folder / env.removeprefix("XDG_").lower()
            path.mkdir(mode=0o700)
            os.environ[env] = str(path)
        try:
            yield folder
        finally:
            for env, value in before.items():
                if value is None:
                    os.environ.pop(env, None)
                else:
                    os.environ[env] = value


def _house() -> House:
    """The holders of a bridge, with the bench's own folders."""
    return House(kind="bridge", settings=Settings(), journal=Journal(journal_file()),
                 profiles_dir=user_profiles_dir())  # fmt: skip


def _frames(firmware: Firmware) -> int:
    """Frames the simulated massager has received and sent, counted by itself."""
    stats = firmware.conn.stats
    return stats.frames + stats.frames_sent


async def _until(what: str, done: Callable[[], bool], within_s: float, step_s: float = 0.1) -> None:
    """Wait until ``done()`` holds, looking every ``step_s`` seconds.

    Raises:
        WorkloadFailed: it did not within ``within_s`` seconds (``what`` says what it was).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not done():
        if loop.time() > deadline:
            raise WorkloadFailed(f"{what}: not within {within_s:g} s")
        await asyncio.sleep(step_s)


@dataclass(frozen=True)
class IdleHour:
    """What one virtual idle hour cost: frames on the link (both ways), and CPU seconds."""

    frames: int
    cpu_s: float


class _Availability:
    """Counts a holder's changes of availability after it first answered."""

    def __init__(self, holder: Holder) -> None:
        self.changes = 0
        holder.listen(self._heard)

    def _heard(self, holder: Holder, change: str) -> None:
        if change == "availability":
            self.changes += 1


async def _holder_hour(name: str) -> IdleHour:
    """A watching holder of ``sim://NAME`` for one virtual hour once it answered.

    Raises:
        WorkloadFailed: it did not answer, was unavailable or reconnected in the
            hour, was not idle, or did not show a press of the remote in time.
    """
    address = parse_device_url(f"sim://{name}?seed=1")
    assert isinstance(address, SimAddress)
    device = simulated_device(address)
    holder = _house().hold(address, watch=True)
    holder.begin()
    try:
        await _until("the holder's watch answering", lambda: holder.available, CONNECT_WITHIN_S)
        heard = _Availability(holder)
        frames, cpu = _frames(device.firmware), time.process_time()
        await asyncio.sleep(HOUR_S)
        cpu, frames = time.process_time() - cpu, _frames(device.firmware) - frames
        if heard.changes or not holder.available:
            raise WorkloadFailed(
                f"the holder was not available the whole hour ({heard.changes} changes)"
            )
        if holder.state.state != "idle":
            raise WorkloadFailed(f"the holder's massager is {holder.state.state}, not idle")
        device.press(Button.POWER)  # someone starts a session on the remote
        await _until("a press of the remote showing in the holder's state",
                     lambda: holder.state.state == "running", PRESS_SHOWS_WITHIN_S)  # fmt: skip
    finally:
        await holder.end()
    return IdleHour(frames, cpu)


async def _kept_link_hour(name: str) -> IdleHour:
    """A bare `Massager.connect` to ``sim://NAME`` kept open, reading statuses, for the hour.

    Raises:
        WorkloadFailed: it read no status, lost its link, was not idle, or did not
            see a press of the remote in time.
    """
    address = parse_device_url(f"sim://{name}?seed=1")
    assert isinstance(address, SimAddress)
    device = simulated_device(address)
    async with Massager.connect(address) as massager:
        statuses = massager.statuses()
        loop = asyncio.get_running_loop()
        frames, cpu = _frames(device.firmware), time.process_time()
        read, end = 0, loop.time() + HOUR_S
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(end):
                while True:
                    await anext(statuses)
                    read += 1
        cpu, frames = time.process_time() - cpu, _frames(device.firmware) - frames
        if not massager.connected or read < HOUR_S:
            raise WorkloadFailed(f"the kept link read {read} statuses in the hour")
        if massager.status.state != "idle":
            raise WorkloadFailed(f"the kept link's massager is {massager.status.state}")
        device.press(Button.POWER)
        try:
            await massager.wait_for(lambda s: s.state == "running", timeout_s=PRESS_SHOWS_WITHIN_S)
        except TimeoutError:
            raise WorkloadFailed(
                f"a press of the remote did not show on the kept link within "
                f"{PRESS_SHOWS_WITHIN_S:g} s"
            ) from None
    return IdleHour(frames, cpu)


def holder_hour() -> IdleHour:
    """`_holder_hour` on the jumping clock."""
    with _private_dirs():
        result: IdleHour = clock.run(_holder_hour("watched"), limit_s=2 * HOUR_S)
        return result


def kept_link_hour() -> IdleHour:
    """`_kept_link_hour` on the jumping clock."""
    result: IdleHour = clock.run(_kept_link_hour("kept"), limit_s=2 * HOUR_S)
    return result


# --- key-file writes -------------------------------------------------------------------


@contextlib.contextmanager
def _counting_reserves() -> Iterator[list[int]]:
    """Every `KeyStore.reserve` (each one writes the key file) noted in the list, for the block."""
    calls: list[int] = []
    reserve = KeyStore.reserve

    def counted(self: KeyStore, device: str, count: int, key: bytes | None = None) -> int:
        calls.append(count)
        return reserve(self, device, count, key)

    KeyStore.reserve = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        KeyStore.reserve = reserve  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def _paired_device(host: DeviceHost) -> AsyncIterator[TcpEndpoint]:
    """``host`` served on a loopback TCP port, paired with the bench's key file."""
    host.start()
    endpoint = TcpEndpoint(host)
    url = await endpoint.open("127.0.0.1", 0)
    try:
        host.open_pairing()
        async with Massager.connect(url) as massager:
            await massager.pair("bench")
            if not massager.authenticated:
                raise WorkloadFailed(f"pairing with {url} left the link unauthenticated")
        yield endpoint
    finally:
        await endpoint.close()
        host.stop()


@dataclass(frozen=True)
class Writes:
    """Key-file writes in one virtual idle hour, by the holder and by a kept signed link."""

    holder: int
    kept: int


async def _writes_in_an_hour() -> Writes:
    """Key-file writes of the holder's quiet watch, then of a kept signed link, an hour each.

    Raises:
        WorkloadFailed: the holder was not available and idle the whole hour, the
            kept link was not signed or went down, or it wrote the file not once.
    """
    host = _Served()
    async with _paired_device(host) as device:
        address = parse_device_url(device.url)
        holder = _house().hold(address, watch=True)
        holder.begin()
        try:
            await _until("the holder's watch answering", lambda: holder.available,
                         CONNECT_WITHIN_S)  # fmt: skip
            heard = _Availability(holder)
            with _counting_reserves() as by_holder:
                await asyncio.sleep(HOUR_S)
            if heard.changes or not holder.available or holder.state.state != "idle":
                raise WorkloadFailed(
                    f"the holder of the paired massager was not available and idle the whole "
                    f"hour ({heard.changes} changes, {holder.state.state})"
                )
        finally:
            await holder.end()
        await _until("the massager seeing the watch hang up", host.free.is_set, 5.0)
        async with Massager.connect(address) as massager:
            if not massager.authenticated:
                raise WorkloadFailed("the kept link to the paired massager is not signed")
            with _counting_reserves() as by_link:
                await asyncio.sleep(HOUR_S)
            if not massager.connected:
                raise WorkloadFailed("the kept link to the paired massager went down")
    if not by_link:
        raise WorkloadFailed("the kept signed link wrote the key file not once in an hour")
    return Writes(len(by_holder), len(by_link))


def writes_in_an_hour() -> Writes:
    """`_writes_in_an_hour` on looptime, in temporary folders (a key file of the bench's own)."""
    with _private_dirs():
        loop = looptime.new_event_loop(noop_cycles=1, end=4 * HOUR_S)
        try:
            return loop.run_until_complete(_writes_in_an_hour())
        finally:
            loop.close()


# --- stop from another process -----------------------------------------------------------


class _Served(DeviceHost):
    """A served massager that says when its link is free (a controller hung up)."""

    def __init__(self) -> None:
        super().__init__(DeviceConfig(seed=1))
        self.free = asyncio.Event()
        self.free.set()

    def attach(self, on_bytes: Callable[[bytes], None]) -> None:
        """A controller connected."""
        self.free.clear()
        super().attach(on_bytes)

    def detach(self) -> None:
        """The controller hung up."""
        super().detach()
        self.free.set()


class _StopWatch(_Served):
    """A served massager that notes the moment its session ends, and whether its valves opened."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.ended_at: float | None = None
        self.valves_open = False
        """Whether every exhaust valve was open at `ended_at`."""
        self.ended = asyncio.Event()

    def arm(self) -> None:
        """Note the next moment the running session ends."""
        self.ended.clear()
        self.ended_at, self.armed = None, True

    def feed(self, data: bytes) -> None:
        """Bytes arrive; a STOP among them ends the session before this returns."""
        super().feed(data)
        self._look()

    def detach(self) -> None:
        """The controller hung up: a running session vents (noted too, and refused later)."""
        super().detach()
        self._look()

    def _look(self) -> None:
        if self.armed and self.running and self.firmware.state != SessionState.RUNNING:
            self.ended_at, self.armed = time.perf_counter(), False
            self.valves_open = all(self.firmware.plant.exhausts)
            self.ended.set()


def _knocker(url: str) -> None:
    """The second process: on each line read, knock ``stop`` on the holder's door.

    Prints one JSON line per knock: when it knocked (``time.perf_counter``, the
    same clock in every process) and the reply.
    """
    address = parse_device_url(url)
    loop = asyncio.new_event_loop()
    print("ready", flush=True)
    while sys.stdin.readline():
        knocked = time.perf_counter()
        reply = loop.run_until_complete(send_command(address, Command(action="stop")))
        answer = None if reply is None else reply.payload()
        print(json.dumps({"knocked": knocked, "reply": answer}), flush=True)
    loop.close()


class _Knocker:
    """The second process, started once and kept waiting for lines."""

    async def open(self, url: str) -> None:
        """Start it, for the holder of ``url``, and wait until it is ready to knock.

        Raises:
            WorkloadFailed: it did not say it was ready.
        """
        root = str(ROOT)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.holder", url, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        if await self._line() != "ready":
            raise WorkloadFailed("the second process did not start")

    async def _line(self) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(CONNECT_WITHIN_S):
            return (await self.process.stdout.readline()).decode().strip()

    async def stop(self) -> tuple[Reply | None, float]:
        """Tell it to knock ``stop``; its reply, and when it knocked."""
        assert self.process.stdin is not None
        self.process.stdin.write(b"knock\n")
        line = await self._line()
        if not line:
            raise WorkloadFailed(f"the second process exited ({await self.process.wait()})")
        said: dict[str, Any] = json.loads(line)
        reply = said["reply"]
        return (None if reply is None else Reply.model_validate(reply)), said["knocked"]

    async def close(self) -> None:
        """End it: its standard input closes, and it ends (or is killed if it hangs)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(CONNECT_WITHIN_S):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class Stops:
    """Seconds from asking for a stop to the firmware taking it, one per round."""

    told: list[float]
    """This process writes the line that tells the second to knock -> the firmware took the STOP."""
    knocked: list[float]
    """The second process knocks (its own reading of the clock) -> the firmware took the STOP."""
    local: list[float]
    """``holder.command(stop)`` called in the holder's process -> the firmware took the STOP."""


async def _stop_round(
    holder: Holder, host: _StopWatch, stop: Callable[[], Awaitable[Reply | None]], side: str
) -> tuple[float, float]:
    """Start the program, then ask for a stop by ``stop``: when it was asked, when it was taken.

    Both are `time.perf_counter` readings, the clock every process on this machine shares.

    Raises:
        WorkloadFailed: the program did not start, the session was not running
            when the stop was asked, it did not end by a STOP with its valves open,
            or the reply was not ok.
    """
    await _until(f"{side}: the massager's line free", host.free.is_set, CONNECT_WITHIN_S, 0.01)
    started = await holder.command(Command(action="start", profile=PROFILE), source="bench")
    if not started.ok:
        raise WorkloadFailed(f"{side}: the program did not start: {started.error}")
    await _until(f"{side}: the program running", lambda: holder.state.state == "running"
                 and host.running and host.firmware.state == SessionState.RUNNING,
                 CONNECT_WITHIN_S, step_s=0.01)  # fmt: skip
    host.arm()
    asked = time.perf_counter()
    reply = await stop()
    try:
        await asyncio.wait_for(host.ended.wait(), STOP_WITHIN_S)
    except TimeoutError:
        raise WorkloadFailed(
            f"{side}: the session did not end within {STOP_WITHIN_S:g} s"
        ) from None
    if host.firmware.last_end != EndReason.STOPPED:
        ended = host.firmware.last_end.name
        raise WorkloadFailed(f"{side}: the session ended {ended}, not STOPPED")
    if not host.valves_open:
        raise WorkloadFailed(f"{side}: the session ended, but the exhaust valves were not open")
    if reply is None or not reply.ok:
        raise WorkloadFailed(f"{side}: the stop's reply was not ok: {reply}")
    await _until(f"{side}: the program letting go", lambda: holder.running is None,
                 CONNECT_WITHIN_S, step_s=0.01)  # fmt: skip
    assert host.ended_at is not None
    return asked, host.ended_at


async def _stops(rounds: int) -> Stops:
    """``rounds`` stops from the second process and from this one, in turn, after one each."""
    host = _StopWatch()
    async with _paired_device(host) as device:
        knocker = _Knocker()
        await knocker.open(device.url)
        try:
            async with holding(_house(), parse_device_url(device.url)) as holder:
                got = Stops([], [], [])
                knocked_at = 0.0

                async def remote() -> Reply | None:
                    nonlocal knocked_at
                    reply, knocked_at = await knocker.stop()
                    return reply

                async def local() -> Reply:
                    return await holder.command(Command(action="stop"), source="bench")

                for i in range(1 + rounds):  # the first of each warms up, and is thrown away
                    told, ended = await _stop_round(holder, host, remote, "the second process")
                    asked, ended_here = await _stop_round(holder, host, local, "its own process")
                    if i:
                        got.told.append(ended - told)
                        got.knocked.append(ended - knocked_at)
                        got.local.append(ended_here - asked)
                return got
        finally:
            await knocker.close()


def stops(rounds: int) -> Stops:
    """`_stops` in real time, in temporary folders (the door's socket among them)."""
    with _private_dirs():
        return asyncio.run(_stops(rounds))


# --- a command from idle ---------------------------------------------------------------------


@dataclass
class FromIdle:
    """Seconds from asking for an intensity to the massager's ACK, one per round."""

    holder: list[float]
    """Through a watching holder, whose link is quiet: it wakes the link with a signed HELLO."""
    kept: list[float]
    """On a signed link kept open (keepalives and all), as before the quiet watch."""


async def _from_idle(rounds: int) -> FromIdle:
    """``rounds`` intensity changes from idle through the holder, then on a kept link.

    Raises:
        WorkloadFailed: a command was refused, or the massager is not at the level asked.
    """
    host = _Served()
    got = FromIdle([], [])
    async with _paired_device(host) as device:
        address = parse_device_url(device.url)
        holder = _house().hold(address, watch=True)
        holder.begin()
        try:
            await _until("the holder's watch answering", lambda: holder.available,
                         CONNECT_WITHIN_S)  # fmt: skip
            for i in range(1 + rounds):  # the first warms up, and is thrown away
                level = 1 + i % 3
                # Idle again: the watch's link has lapsed since the last command.
                await asyncio.sleep(1.5)
                asked = time.perf_counter()
                reply = await holder.command(Command(action="intensity", intensity=level),
                                             source="bench")  # fmt: skip
                took = time.perf_counter() - asked
                if not reply.ok:
                    raise WorkloadFailed(f"the holder's intensity {level} failed: {reply.error}")
                check_intensity(host.firmware, level)
                link = holder._watch_link
                if link is None or not link.quiet:
                    raise WorkloadFailed("the holder's link did not go quiet after the command")
                if i:
                    got.holder.append(took)
        finally:
            await holder.end()
        await _until("the massager seeing the watch hang up", host.free.is_set, 5.0)
        async with Massager.connect(address) as massager:
            if not massager.authenticated:
                raise WorkloadFailed("the kept link to the paired massager is not signed")
            for i in range(1 + rounds):
                level = 1 + i % 3
                await asyncio.sleep(0.1)
                asked = time.perf_counter()
                await massager.set_intensity(level)
                took = time.perf_counter() - asked
                check_intensity(host.firmware, level)
                if i:
                    got.kept.append(took)
    return got


def from_idle(rounds: int) -> FromIdle:
    """`_from_idle` in real time, in temporary folders (the bench's own key file)."""
    with _private_dirs():
        return asyncio.run(_from_idle(rounds))


# --- the rows ------------------------------------------------------------------------------


def measure(rounds: int, stop_rounds: int) -> list[Row]:
    """The holder's rows: ``rounds`` idle hours per side in turn, and ``stop_rounds`` stops."""
    watched: list[IdleHour] = []
    kept: list[IdleHour] = []
    for _ in range(rounds):
        watched.append(holder_hour())
        kept.append(kept_link_hour())

    def idle_row(name: str, unit: str, figure: Callable[[IdleHour], float]) -> Row:
        ours, theirs = [figure(h) for h in watched], [figure(h) for h in kept]
        return Row(f"idle massager, one hour: {name} (median of {rounds})", p50(ours), unit,
                   p50(theirs), "a bare Massager.connect kept open, reading statuses, in turn",
                   spread([a / b for a, b in zip(ours, theirs, strict=True)]))  # fmt: skip

    writes = writes_in_an_hour()
    stopped = stops(stop_rounds)
    idle_commands = from_idle(max(5, stop_rounds // 10))
    return [
        idle_row("frames on the link", "frames", lambda h: h.frames),
        idle_row("CPU seconds", "s", lambda h: h.cpu_s),
        Row("key-file writes per day, one idle paired massager (one virtual hour x 24)",
            writes.holder * PER_DAY, "writes", writes.kept * PER_DAY,
            "a kept signed Massager.connect, the hour after"),
        Row(f"intensity from idle over TCP -> the massager's ACK "
            f"(median of {len(idle_commands.holder)})", p50(idle_commands.holder) * 1e3, "ms",
            p50(idle_commands.kept) * 1e3, "the same on a signed link kept open, after",
            spread([a / b for a, b in zip(idle_commands.holder, idle_commands.kept,
                                          strict=True)])),
        *latency_rows(f"stop from a second process -> valves open, {stop_rounds} rounds",
                      stopped.told, stopped.local,
                      "stop from the holder's own process, rounds in turn", scale=1e3, unit="ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    _knocker(sys.argv[1])
