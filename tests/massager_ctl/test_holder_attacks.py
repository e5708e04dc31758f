"""The holder and its local door, attacked as a stranger would: each attack, and what holds.

What is looked for: a leg squeezed when it should not be, a stop that does not
reach, a traceback that reaches a user, a bad request with no clear answer. The
attacks that find something are marked ``xfail`` (strict) with what they found;
the mark goes when the holder is mended. The others stay as guards.

Real parts wherever they matter: ``massager-ctl`` in processes of its own, as
terminals run it; the massager served on a TCP port in this process (so that
what it does is seen at once), behind TCP relays that slow, drop or forge its
frames; the local door's real Unix socket; real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_protocol import (
    Button,
    ButtonPressed,
    Frame,
    FrameDecoder,
    MessageType,
    SessionStarted,
    SessionState,
    StartSource,
    Status,
    StatusFlag,
)
from massager_ctl.device import Massager
from massager_ctl.holder import Command, Holder, House
from massager_ctl.holder import holder as holder_module
from massager_ctl.holder.door import (
    HeldElsewhere,
    LocalDoor,
    door_paths,
    holding,
    send_command,
)
from massager_ctl.journal import Journal
from massager_ctl.paths import journal_file, user_profiles_dir
from massager_ctl.settings import Settings
from massager_ctl.transports.serial import SerialTransport
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import parse_device_url
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import TcpEndpoint
from tests.massager_ctl.test_bridge import a_bridge
from tests.served import pair_in_process

pytestmark = pytest.mark.looptime(False)

ADHOC = ("--mode", "wave", "--intensity", "2")
SQUEEZING_MMHG = 20.0


# --- the parts ------------------------------------------------------------------------


class Relay:
    """A TCP relay between the controller and the massager, which a test bends.

    ``delay_s`` holds the massager's bytes back that long (a slow radio link);
    ``mute`` drops them (a broken receive wire); ``deaf`` drops the controller's.
    `forge` puts frames on the line toward the controller, as anyone on it can.
    ``sent`` lists the type of every frame the controller sent.
    """

    def __init__(self, target_port: int, *, delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.mute = False
        self.deaf = False
        self.sent: list[int] = []
        self.status_seen: Frame | None = None
        self._seen: dict[tuple[int, int], asyncio.Event] = {}
        self._controllers: list[asyncio.StreamWriter] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    def saw(self, msg_type: int, times: int = 1) -> asyncio.Event:
        """Set once the controller has sent ``times`` frames of ``msg_type``."""
        event = self._seen.setdefault((msg_type, times), asyncio.Event())
        if self.sent.count(msg_type) >= times:
            event.set()
        return event

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"socket://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        """End every connection through the relay (the controller sees its link close)."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self._controllers.clear()

    def forge(self, *frames: Frame) -> None:
        """Put ``frames`` on the line toward every controller connected."""
        for writer in self._controllers:
            for frame in frames:
                writer.write(frame.encode())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        device_reader, device_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, device_writer]
        self._controllers.append(writer)
        back = asyncio.ensure_future(self._back(device_reader, writer))
        self._tasks.add(back)
        back.add_done_callback(self._tasks.discard)
        decoder = FrameDecoder()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                for frame in decoder.feed(data):
                    self.sent.append(frame.msg_type)
                    times = self.sent.count(frame.msg_type)
                    for (kind, wanted), event in self._seen.items():
                        if kind == frame.msg_type and times >= wanted:
                            event.set()
                if not self.deaf:
                    device_writer.write(data)
        device_writer.close()

    async def _back(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        decoder = FrameDecoder()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                for frame in decoder.feed(data):
                    if frame.msg_type == MessageType.STATUS and frame.auth is None:
                        self.status_seen = frame
                if self.mute:
                    continue
                if self.delay_s:
                    timer = loop.call_later(self.delay_s, self._put, writer, data)
                    self._timers.add(timer)
                else:
                    writer.write(data)

    @staticmethod
    def _put(writer: asyncio.StreamWriter, data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)


@dataclasses.dataclass
class Served:
    """A massager served on TCP in this process, and the URL the controller uses."""

    host: DeviceHost
    endpoint: TcpEndpoint
    url: str
    relay: Relay | None

    def state(self) -> tuple[SessionState, float]:
        """What the massager does now: its state and its highest chamber pressure."""
        self.host.sync()
        snapshot = self.host.firmware.snapshot()
        return self.host.firmware.state, max(snapshot.pressures_mmhg)

    def squeezing(self) -> bool:
        """Whether a session runs or a chamber holds pressure."""
        state, peak = self.state()
        return state is SessionState.RUNNING or peak > SQUEEZING_MMHG

    async def until_squeezing(self, timeout_s: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.squeezing():
            assert loop.time() < deadline, "the massager never squeezed"
            await asyncio.sleep(0.1)

    async def never_squeezes(self, for_s: float) -> None:
        """Assert that for ``for_s`` seconds no session runs and no chamber fills."""
        loop = asyncio.get_running_loop()
        until = loop.time() + for_s
        while loop.time() < until:
            assert not self.squeezing(), f"squeezing: {self.state()}"
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def served(*, relay: Relay | None = None, **config: Any) -> AsyncIterator[Served]:
    """A paired massager on TCP, behind ``relay`` if one is given (its port is filled in)."""
    host = DeviceHost(DeviceConfig(seed=1, **config))
    host.start()
    endpoint = TcpEndpoint(host)
    url = await endpoint.open("127.0.0.1", 0)
    if relay is not None:
        relay.target_port = int(url.rsplit(":", 1)[1])
        url = await relay.start()
    try:
        await pair_in_process(host, url)
        yield Served(host, endpoint, url, relay)
    finally:
        if relay is not None:
            await relay.stop()
        await endpoint.close()
        host.stop()


class Terminal:
    """``massager-ctl ARGS`` in a process of its own, its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out = bytearray()
        self.err = bytearray()
        assert process.stdout is not None
        assert process.stderr is not None
        # Read at once: a holder whose terminal stops reading blocks on its writes.
        self._readers = [
            asyncio.ensure_future(self._drain(process.stdout, self.out)),
            asyncio.ensure_future(self._drain(process.stderr, self.err)),
        ]

    @classmethod
    async def run(cls, *args: str, preexec: Callable[[], None] | None = None,
                  prefix: tuple[str, ...] = ()) -> Terminal:  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-m", "massager_ctl", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=preexec,
        )  # fmt: skip
        return cls(process)

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into += chunk

    async def ended(self, timeout_s: float = 60) -> int:
        """Its exit status, once it has ended and said everything."""
        code = await asyncio.wait_for(self.process.wait(), timeout_s)
        await asyncio.gather(*self._readers)
        return code

    def said(self) -> str:
        return self.out.decode(errors="replace") + self.err.decode(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


@contextlib.asynccontextmanager
async def terminal(*args: str, **options: Any) -> AsyncIterator[Terminal]:
    """`Terminal.run`, killed if the test ends first."""
    running = await Terminal.run(*args, **options)
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            running.signal(signal.SIGCONT)  # a test may have left it stopped
        await running.kill()


async def ctl(*args: str, timeout_s: float = 60, **options: Any) -> tuple[int, str]:
    """Run ``massager-ctl ARGS`` to its end: its exit status and all it said."""
    async with terminal(*args, **options) as running:
        code = await running.ended(timeout_s)
        return code, running.said()


def a_house(kind: Any = "bridge") -> House:
    return House(kind=kind, settings=Settings(), journal=Journal(journal_file()),
                 profiles_dir=user_profiles_dir())  # fmt: skip


async def knock_raw(address_url: str, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` on the door of ``address_url``'s holder as it is; the line answered."""
    sock, _ = door_paths(parse_device_url(address_url))
    reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 20)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.readline(), 15)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def short_profile(name: str, minutes: float) -> None:
    folder = user_profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(
        f'title = "{name}"\ndescription = "test"\nwhy = "test"\n\n'
        f'[[steps]]\nmode = "wave"\nintensity = 2\nminutes = {minutes}\n',
        encoding="utf-8",
    )


# --- bytes on the door ------------------------------------------------------------------

COMMAND = b'{"op": "command", "command": '
"""The start of a command request; each hostile command below ends it."""

HOSTILE_REQUESTS = {
    "not JSON": b"hello\n",
    "not UTF-8": b'{"op": "\xff\xfe"}\n',
    "nested deep": b"[" * 5000 + b"]" * 5000 + b"\n",
    "a line longer than allowed": b"a" * 100_000 + b"\n",
    "an empty line": b"\n",
    "null": b"null\n",
    "an unknown op": b'{"op": "open-valves"}\n',
    "a command without its command": b'{"op": "command"}\n',
    "an unknown action": COMMAND + b'{"action": "inflate"}}\n',
    "intensity true": COMMAND + b'{"action": "intensity", "intensity": true}}\n',
    "intensity as text": COMMAND + b'{"action": "intensity", "intensity": "9"}}\n',
    "intensity 1e400": COMMAND + b'{"action": "intensity", "intensity": 1e400}}\n',
    "intensity 11": COMMAND + b'{"action": "intensity", "intensity": 11}}\n',
    "a profile that is a path": COMMAND + b'{"action": "start", "profile": "../../etc/pw"}}\n',
    "a profile that does not exist": COMMAND + b'{"action": "start", "profile": "nope"}}\n',
    "a mode it does not have": COMMAND + b'{"action": "mode", "mode": "zz"}}\n',
    "a stop with a value": COMMAND + b'{"action": "stop", "intensity": 10}}\n',
    "an extra field": COMMAND + b'{"action": "stop", "force": true}}\n',
    "stamped in year 9999": COMMAND + b'{"action": "pause", "at": "9999-12-31T23:59:59-23:59"}}\n',
    "stamped in year 1": COMMAND + b'{"action": "pause", "at": "0001-01-01T00:00:00+23:59"}}\n',
    "resume when nothing is paused": COMMAND + b'{"action": "resume"}}\n',
}


async def test_every_hostile_request_gets_a_clear_answer_and_the_holder_goes_on() -> None:
    url = "sim://door"
    async with holding(a_house(), parse_device_url(url), watch=True) as holder:
        await asyncio.sleep(1)
        answers = {name: await knock_raw(url, data) for name, data in HOSTILE_REQUESTS.items()}
        for name, line in answers.items():
            answer = json.loads(line)
            assert answer["ok"] is False, (name, answer)
            assert answer["error"], (name, answer)
            assert "unexpected error" not in answer["error"], (name, answer)
        who = json.loads(await knock_raw(url, b'{"op": "who"}\n'))
        assert (who["holder"], who["state"]["state"]) == ("bridge", "idle")
        assert holder.available
        device = simulated_device(parse_device_url(url))  # type: ignore[arg-type]
        assert device.firmware.snapshot().state is SessionState.IDLE


async def test_a_request_that_ends_without_a_newline_is_answered() -> None:
    url = "sim://eof"
    async with holding(a_house(), parse_device_url(url), watch=True):
        await asyncio.sleep(1)
        line = await knock_raw(url, b'{"op": "who"}', half_close=True)
        assert line, "no answer at all"


async def test_slow_writers_and_a_crowd_at_the_door_do_not_hold_a_stop_back() -> None:
    short_profile("short", 2)
    url = "sim://crowd"
    sock, _ = door_paths(parse_device_url(url))
    async with holding(a_house(), parse_device_url(url), watch=True) as holder:
        await asyncio.sleep(1)
        assert (await holder.command(Command(action="start", profile="short"), source="x")).ok
        await asyncio.sleep(3)
        assert holder.state.state == "running"
        crowd: list[asyncio.StreamWriter] = []
        for _ in range(300):  # connect and say nothing
            _, writer = await asyncio.open_unix_connection(str(sock))
            crowd.append(writer)

        async def slowloris() -> None:
            _, writer = await asyncio.open_unix_connection(str(sock))
            crowd.append(writer)
            with contextlib.suppress(ConnectionError):
                for byte in b'{"op": "who"':
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.5)

        slow = [asyncio.ensure_future(slowloris()) for _ in range(30)]
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        asked = loop.time()
        reply = await send_command(parse_device_url(url), Command(action="stop"))
        took = loop.time() - asked
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        for writer in crowd:
            writer.close()
        assert reply is not None
        assert reply.ok, reply
        assert reply.message == "stop: the program ended; the chambers are empty"
        assert took < 5, took
        device = simulated_device(parse_device_url(url))  # type: ignore[arg-type]
        assert device.firmware.snapshot().state is SessionState.IDLE


async def test_a_knocker_that_hangs_up_mid_stop_still_stops_and_a_second_stop_is_answered() -> None:
    short_profile("short", 2)
    url = "sim://hangup"
    address = parse_device_url(url)
    async with holding(a_house(), address, watch=True) as holder:
        await asyncio.sleep(1)
        assert (await holder.command(Command(action="start", profile="short"), source="x")).ok
        await asyncio.sleep(3)
        sock, _ = door_paths(address)
        _, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b'{"op": "command", "command": {"action": "stop"}}\n')
        await writer.drain()
        writer.close()  # gone before the answer
        second = await send_command(address, Command(action="stop"))
        assert second is not None
        assert second.ok, second
        await asyncio.sleep(1)
        device = simulated_device(address)  # type: ignore[arg-type]
        assert device.firmware.snapshot().state is SessionState.IDLE
        assert holder.running is None
        who = json.loads(await knock_raw(url, b'{"op": "who"}\n'))
        assert who["state"]["state"] == "idle"  # the holder goes on


def _few_files() -> None:
    """A holder with the open-files limit most systems give a login (1024)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def test_a_flood_at_the_door_neither_prints_tracebacks_nor_keeps_a_stop_out() -> None:
    async with served() as device:
        program = ("start", *ADHOC, "--duration", "5m", "--device", device.url)
        async with terminal(*program, preexec=_few_files) as running:
            await device.until_squeezing()
            sock, _ = door_paths(parse_device_url(device.url))
            flooding = True
            crowd: list[socket.socket] = []

            def flood() -> None:  # as a runaway script of the same user would
                while flooding and len(crowd) < 1500:
                    knocker = socket.socket(socket.AF_UNIX)
                    knocker.setblocking(False)
                    try:
                        knocker.connect(str(sock))
                        crowd.append(knocker)
                    except OSError:
                        knocker.close()
                        time.sleep(0.001)

            flooder = threading.Thread(target=flood)
            flooder.start()
            try:
                await asyncio.sleep(3)
                code, said = await ctl("stop", "--device", device.url)
            finally:
                flooding = False
                flooder.join()
                for knocker in crowd:
                    knocker.close()
            await asyncio.sleep(1)
            assert code == 0, said
            assert not device.squeezing()
            assert await running.ended() == 0  # the stop got in, and ended the program
            assert "Traceback" not in running.said()


# --- the runtime folder ---------------------------------------------------------------


def _unreadable(folder: Path) -> tuple[str, ...]:
    """Make ``folder`` one this user cannot look into; the prefix that runs a command so.

    As another user's runtime folder is after `su` keeps XDG_RUNTIME_DIR: there,
    but closed. Root reads every folder, so root runs the command without the
    capabilities that let it (setpriv).
    """
    if os.geteuid() != 0:
        folder.chmod(0)
        return ()
    os.chown(folder, 65534, 65534)
    folder.chmod(0o700)
    caps = "-dac_override,-dac_read_search"
    return ("setpriv", "--bounding-set", caps, "--inh-caps", caps)


@pytest.mark.parametrize("folder", ["another user's runtime folder", "a name too long"])
async def test_stop_reaches_the_massager_whatever_the_runtime_folder_is(
    folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix: tuple[str, ...] = ()
    if folder == "a name too long":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / ("r" * 300)))
    else:
        theirs = tmp_path / "theirs"
        (theirs / "massager-ctl").mkdir(parents=True)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(theirs))
        prefix = _unreadable(theirs)
    async with served() as device:
        device.host.press(Button.POWER)  # a session started on the remote
        await device.until_squeezing()
        code, said = await ctl("stop", "--device", device.url, prefix=prefix)
        assert "Traceback" not in said, said
        assert code == 0, said
        await asyncio.sleep(1)
        assert not device.squeezing()


async def test_a_runtime_folder_another_user_made_cannot_answer_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again, as a new process does
    async with served() as device:
        sock, _ = door_paths(parse_device_url(device.url))
        sock.parent.mkdir()  # made first, by someone else, open to all
        sock.parent.chmod(0o777)
        if os.geteuid() == 0:
            os.chown(sock.parent, 65534, 65534)

        async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = json.loads(await reader.readline())
            if request["op"] == "who":
                answer: dict[str, Any] = {
                    "device": device.url, "name": device.url, "holder": "start", "pid": 1,
                    "since": "2026-01-01T00:00:00Z", "state": {"state": "running"},
                }  # fmt: skip
            else:
                answer = {"ok": True, "id": None, "action": "stop",
                          "message": "stop: the program ended; the chambers are empty"}  # fmt: skip
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(impostor, path=str(sock))
        try:
            device.host.press(Button.POWER)  # a session started on the remote
            await device.until_squeezing()
            _, said = await ctl("stop", "--device", device.url)
            await asyncio.sleep(1)
            assert not device.squeezing(), f"still squeezing after: {said}"
        finally:
            server.close()
            await server.wait_closed()


async def test_a_runtime_folder_too_deep_for_a_socket_is_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    async with served() as device:
        code, said = await ctl("start", *ADHOC, "--duration", "2s", "--device", device.url)
    assert "Traceback" not in said, said
    assert code in (0, 2), said


@pytest.mark.looptime(noop_cycles=1)
async def test_the_bridge_watches_even_when_no_door_can_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    bridge = a_bridge("mqtt://127.0.0.1:1", {"bed": "sim://bed"})
    agent = bridge.agents["bed"]
    agent.begin()
    try:
        await asyncio.sleep(2)
        assert agent.available
    finally:
        await agent.end()


@pytest.mark.parametrize(
    "damage", ["a file for the folder", "a folder for the lock", "a loose folder", "a dead socket"]
)
async def test_a_damaged_runtime_folder_never_keeps_stop_from_the_massager(damage: str) -> None:
    async with served() as device:
        sock, lock = door_paths(parse_device_url(device.url))
        folder = sock.parent
        if damage == "a file for the folder":
            folder.write_text("not a folder")
        else:
            folder.mkdir(mode=0o700)
        if damage == "a folder for the lock":
            lock.mkdir()
            sock.touch()
        elif damage == "a loose folder":
            folder.chmod(0o777)
        elif damage == "a dead socket":
            dead = socket.socket(socket.AF_UNIX)
            dead.bind(str(sock))
            dead.close()
        device.host.press(Button.POWER)
        await device.until_squeezing()
        code, said = await ctl("stop", "--device", device.url)
        assert (code, "Traceback" in said) == (0, False), said
        assert "stop: done" in said
        await asyncio.sleep(0.5)
        assert not device.squeezing()
        code, said = await ctl("start", *ADHOC, "--duration", "2s", "--device", device.url)
        assert "Traceback" not in said, said
        if damage in ("a loose folder", "a dead socket"):
            assert code == 0, said
            assert folder.stat().st_mode & 0o077 == 0
        else:  # refused before anything was sent, saying which file is in the way
            assert code == 2, said
            assert str(folder) in said


# --- two programs at once -----------------------------------------------------------------


async def test_two_starts_at_once_run_one_program() -> None:
    async with served() as device:
        program = ("start", *ADHOC, "--duration", "3s", "--device", device.url)
        async with terminal(*program) as first, terminal(*program) as second:
            codes = sorted([await first.ended(), await second.ended()])
            said = first.said() + second.said()
    assert codes == [0, 4], said
    assert f"{device.url} is held by" in said
    assert len(Journal(journal_file()).sessions()) == 1


async def test_a_start_while_the_bridge_holds_the_massager_is_told_so() -> None:
    async with served() as device:
        bridge = a_bridge("mqtt://127.0.0.1:1", {"bed": device.url})
        agent = bridge.agents["bed"]
        agent.begin()
        try:
            await asyncio.sleep(2)
            assert agent.available
            code, said = await ctl("start", *ADHOC, "--duration", "1m", "--device", device.url)
            assert code == 4, said
            assert f"{device.url} is held by massager-ctl bridge (pid {os.getpid()}" in said
            await device.never_squeezes(2)
        finally:
            await agent.end()


async def test_the_daemon_does_not_take_a_massager_a_start_holds() -> None:
    async with served() as device:
        program = ("start", *ADHOC, "--duration", "5m", "--device", device.url)
        async with terminal(*program) as running:
            await device.until_squeezing()
            with pytest.raises(HeldElsewhere) as held:
                async with holding(a_house("daemon"), parse_device_url(device.url)):
                    pass
            assert held.value.who is not None
            assert (held.value.who.holder, held.value.who.pid) == ("start", running.process.pid)
            running.signal(signal.SIGTERM)
            await running.ended()


async def _stop_while_the_start_connects() -> tuple[str, str, Served]:
    """A stop from another terminal while a start's link is still being opened.

    The massager's answers come 3 s late, so the start's handshake is under way.
    Returns what the stop said, what the start said, and the massager.
    """
    async with served(relay=Relay(0), watchdog_ms=10_000) as device:
        assert device.relay is not None
        device.relay.delay_s = 3.0
        hellos = device.relay.sent.count(MessageType.HELLO)  # the pairing's
        program = ("start", *ADHOC, "--duration", "1m", "--device", device.url, "--json")
        async with terminal(*program) as running:
            await device.relay.saw(MessageType.HELLO, hellos + 1).wait()
            code, stopped = await ctl("stop", "--device", device.url)
            assert code == 0, stopped
            await running.ended()
            started = running.said()
        await device.never_squeezes(5)
        assert not {MessageType.START, MessageType.RENEW} & set(device.relay.sent)
        return stopped, started, device


async def test_a_stop_while_the_start_is_connecting_calls_the_start_off() -> None:
    stopped, started, _ = await _stop_while_the_start_connects()
    assert "Traceback" not in stopped + started
    assert "nothing was started" in started


async def test_a_stop_that_called_off_a_start_says_so() -> None:
    stopped, _, _ = await _stop_while_the_start_connects()
    assert "vented" not in stopped, stopped


async def test_a_stop_given_before_the_start_opened_its_door_still_calls_it_off() -> None:
    async with served() as device:
        program = ("start", *ADHOC, "--duration", "1m", "--device", device.url)
        async with terminal(*program) as running:
            running.signal(signal.SIGSTOP)  # a slow machine: the start is on its way
            code, said = await ctl("stop", "--device", device.url)
            assert code == 0, said
            running.signal(signal.SIGCONT)
            await device.never_squeezes(8)


# --- a panicking user ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def a_program_and_a_stop_under_way() -> AsyncIterator[tuple[Served, Terminal, Terminal]]:
    """A start running, and a stop from another terminal whose STOP has just gone out.

    The massager's answers come 0.4 s late (its watchdog is longer, as over a slow
    radio), so the stop is still waiting for its answer.
    """
    async with served(relay=Relay(0), watchdog_ms=5000) as device:
        assert device.relay is not None
        device.relay.delay_s = 0.4
        stops = device.relay.sent.count(MessageType.STOP)
        program = ("start", *ADHOC, "--duration", "5m", "--device", device.url, "--json")
        async with terminal(*program) as running:
            await device.until_squeezing()
            async with terminal("stop", "--device", device.url) as stopping:
                await device.relay.saw(MessageType.STOP, stops + 1).wait()
                await asyncio.sleep(0.1)
                yield device, running, stopping


async def test_ctrl_c_on_a_stop_waiting_for_the_holder_still_stops_and_says_so() -> None:
    async with a_program_and_a_stop_under_way() as (device, running, stopping):
        stopping.signal(signal.SIGINT)
        assert await stopping.ended() == 130
        assert await running.ended() == 0
        assert "it may have reached the program that holds" in stopping.said()
        assert "Traceback" not in stopping.said() + running.said()
        assert json.loads(running.out.splitlines()[-1])["outcome"] == "stopped"
        await asyncio.sleep(1)
        assert not device.squeezing()


async def test_ctrl_c_on_the_start_while_a_stop_is_carried_out() -> None:
    async with a_program_and_a_stop_under_way() as (device, running, stopping):
        running.signal(signal.SIGINT)
        assert await running.ended() == 130
        assert await stopping.ended() == 0, stopping.said()
        assert "Traceback" not in stopping.said() + running.said()
        await asyncio.sleep(1)
        assert not device.squeezing()


async def test_a_second_stop_as_the_program_ends_is_no_alarm() -> None:
    short_profile("short", 5)
    async with served(relay=Relay(0), watchdog_ms=5000) as device:
        relay = device.relay
        assert relay is not None
        relay.delay_s = 0.3  # the massager's answers come a little late: a radio link
        log: list[str] = []
        house = a_house()
        house.log = log.append
        holder = house.hold(parse_device_url(device.url))
        try:
            assert (await holder.command(Command(action="start", profile="short"), source="x")).ok
            await device.until_squeezing()
            before = relay.sent.count(MessageType.STOP)
            first = asyncio.ensure_future(holder.command(Command(action="stop"), source="cli"))
            # The first STOP is the stop's; the second the program's own, as it ends.
            await relay.saw(MessageType.STOP, before + 2).wait()
            second = await holder.command(Command(action="stop"), source="cli")
            assert (await first).ok
            assert second.ok, second
            await asyncio.sleep(1)
        finally:
            await holder.end()
        assert not device.squeezing()
        [ended] = [line for line in log if "stopped" in line or "not_vented" in line]
        assert "not_vented" not in ended, ended


async def test_a_stop_as_the_holder_lets_go_waits_for_the_link_instead_of_failing() -> None:
    async with served() as device:
        address = parse_device_url(device.url)
        holder = a_house("start").hold(address)
        door = LocalDoor(holder, holder.house)
        async with Massager.connect(address) as link:  # the program's link, as it ends
            await link.start("wave", 2, duration_s=600)
            await device.until_squeezing()
            await door.__aenter__()
            assert door._server is not None
            door._server.close()  # the door shuts first; the lock and the link go next
            stopping = asyncio.ensure_future(ctl("stop", "--device", device.url))
            await asyncio.sleep(1.5)
            await link.vent()
        await door.__aexit__(None, None, None)
        code, said = await stopping
        assert (code, "Traceback" in said) == (0, False), said
        assert not device.squeezing()


# --- the quiet watch -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def watched(device: Served) -> AsyncIterator[Holder]:
    """A bridge's holder watching ``device`` quietly, once the massager has answered."""
    holder = a_house().hold(parse_device_url(device.url), watch=True)
    holder.begin()
    await asyncio.sleep(2)
    assert holder.available
    try:
        yield holder
    finally:
        await holder.end()


async def test_forged_reports_on_the_quiet_watch_never_raise_pressure() -> None:
    async with served(relay=Relay(0)) as device, watched(device) as holder:
        relay = device.relay
        assert relay is not None
        assert relay.status_seen is not None
        template = relay.status_seen
        real = Status.decode_payload(template.payload)
        forged = dataclasses.replace(
            real, state=SessionState.RUNNING, flags=StatusFlag.PUMP_ON | StatusFlag.LINK_SESSION,
            seconds_left=3600, pressures_dmmhg=tuple(2000 for _ in real.pressures_dmmhg),
        )  # fmt: skip
        lies = [
            Frame(template.seq, MessageType.STATUS, forged.encode_payload()),
            Frame(template.seq, MessageType.EVENT,
                  SessionStarted(StartSource.REMOTE, 1, 10, 3600).encode_payload()),
            Frame(template.seq, MessageType.EVENT, ButtonPressed(Button.PLUS).encode_payload()),
        ]  # fmt: skip
        shown: list[str] = []
        holder.listen(lambda h, change: shown.append(h.state.state))
        before = len(relay.sent)
        for _ in range(10):
            relay.forge(*lies)
            await asyncio.sleep(0.3)
        await device.never_squeezes(2)
        sent = {MessageType(kind).name for kind in relay.sent[before:]}
        assert sent <= {"GET_STATUS"}, sent  # it asked, and nothing more
        assert "running" in shown  # the lies reached it: shown, never acted on
        assert holder.available


@pytest.mark.parametrize("line", ["answers lost", "nothing gets through"])
async def test_a_stop_from_idle_that_the_massager_does_not_answer_says_so(line: str) -> None:
    async with served(relay=Relay(0)) as device, watched(device) as holder:
        relay = device.relay
        assert relay is not None
        device.host.press(Button.POWER)
        await device.until_squeezing()
        relay.mute = True
        relay.deaf = line == "nothing gets through"
        reply = await holder.command(Command(action="stop"), source="cli")
        assert not reply.ok, reply
        assert "did not answer" in str(reply.error), reply


async def test_a_stop_from_idle_while_the_watch_reconnects_reaches_the_massager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(holder_module, "backoff", lambda attempt: 1.0)
    slow_open_s = 0.0
    open_link = SerialTransport.open

    async def slowly(transport: SerialTransport) -> None:  # as a radio that scans first
        await asyncio.sleep(slow_open_s)
        await open_link(transport)

    monkeypatch.setattr(SerialTransport, "open", slowly)
    async with served() as device, watched(device) as holder:
        device.host.press(Button.POWER)
        await device.until_squeezing()
        slow_open_s = 2.0
        device.endpoint.drop_client()  # the watch's link drops
        await asyncio.sleep(1.5)  # the watch is opening its new link
        assert holder._watch_link is None
        reply = await holder.command(Command(action="stop"), source="cli")
        assert reply.ok, reply
        await asyncio.sleep(1)
        assert not device.squeezing()


@pytest.mark.looptime(noop_cycles=1)
async def test_a_stop_as_a_cycle_is_loaded_never_lets_the_start_follow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = parse_device_url("sim://cycle")
    holder = a_house().hold(address, watch=True)
    holder.begin()
    await asyncio.sleep(1)
    stops: list[asyncio.Task[Any]] = []
    stopping = asyncio.Event()
    load_cycle = Massager.load_cycle

    async def loaded_as_a_stop_comes(massager: Massager, cycle: Any) -> None:
        await load_cycle(massager, cycle)
        if not stops:  # the stop's knock was read in the same turn as the cycle's ACK
            stops.append(asyncio.create_task(holder.command(Command(action="stop"), source="cli")))
            stopping.set()
            for _ in range(5):
                await asyncio.sleep(0)

    monkeypatch.setattr(Massager, "load_cycle", loaded_as_a_stop_comes)
    try:
        started = await holder.command(Command(action="start", profile="wind-down-30"), source="x")
        assert started.ok, started
        await stopping.wait()
        device = simulated_device(address)  # type: ignore[arg-type]
        await asyncio.sleep(1)  # the stop has gone out and been answered
        running = []
        while not stops[0].done():
            running.append(device.firmware.snapshot().state is SessionState.RUNNING)
            await asyncio.sleep(0.5)
        assert not any(running), f"ran {sum(running) / 2:g} s after the stop"
    finally:
        await holder.end()


# --- the holder killed, or hung -----------------------------------------------------------


async def test_a_holder_killed_while_a_stop_waits_leaves_the_stop_true_and_ended() -> None:
    async with served() as device:
        program = ("start", *ADHOC, "--duration", "5m", "--device", device.url, "--json")
        async with terminal(*program) as running:
            await device.until_squeezing()
            running.signal(signal.SIGSTOP)  # hung: the stop's knock waits for an answer
            async with terminal("stop", "--device", device.url) as stopping:
                await asyncio.sleep(2)
                running.signal(signal.SIGKILL)
                code = await stopping.ended()
        said = stopping.said()
        assert (code, "Traceback" in said) == (0, False), said
        assert "the stop went to the massager directly" in said
        assert "stop: done" in said
        assert not device.squeezing()  # its watchdog vented it, and the stop found it empty


async def test_a_stop_at_a_hung_holder_goes_on_within_seconds() -> None:
    async with served() as device:
        program = ("start", *ADHOC, "--duration", "5m", "--device", device.url, "--json")
        async with terminal(*program) as running:
            await device.until_squeezing()
            running.signal(signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            asked = loop.time()
            code, said = await ctl("stop", "--device", device.url, timeout_s=90)
            took = loop.time() - asked
        assert "Traceback" not in said, said
        assert not device.squeezing()  # the massager's watchdog vented it
        assert took < 20, f"{took:.0f} s before the stop said anything ({code}): {said}"
