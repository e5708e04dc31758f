"""The local door: how another terminal reaches the holder of a massager on this computer.

Whoever holds a massager (a `start` in a terminal, the daemon, the bridge)
listens on a Unix socket in the user's runtime folder (``$XDG_RUNTIME_DIR/
massager-ctl``, made 0700). Only the same user may knock: the folder is
theirs alone, and on Linux the peer's credentials are checked as well. Beside
each socket a lock file is held for as long as the holder lives; the system
lets go of it when the process ends however it ends, so a holder that died
leaves nothing that blocks the next one: its socket, left behind, is found
stale (its lock is free) and removed.

One request per connection, one line of JSON each way:

- ``{"op": "who"}``: answered with a `Who` (the device, the holder, its
  program and state);
- ``{"op": "command", "command": {...}}``: a `Command`, answered with its
  `Reply` once it is done (a stop once the chambers are empty).

A request longer than `MAX_REQUEST` bytes, or not sent within
`REQUEST_TIMEOUT_S`, or not valid, is answered with a `Reply` that says what was
wrong; the holder goes on.

On Windows there is no such door (asyncio has no Unix sockets there): a
massager is then reached only from the process that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import stat
import struct
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from filelock import BaseFileLock

from ..errors import ConfigError, MassagerError
from ..paths import runtime_dir
from ..tomlfiles import describe_errors
from ..urls import DeviceAddress
from .commands import Command, Reply
from .holder import Holder
from .house import House, device_key
from .state import DeviceState

MAX_REQUEST = 16 * 1024
"""The longest request line taken, in bytes."""
REQUEST_TIMEOUT_S = 5.0
"""How long a door waits for a request line."""
ANSWER_TIMEOUT_S = 60.0
"""How long a knock waits for its answer (a stop waits for a program to end and vent)."""
ANSWER_GRACE_S = 2.0
"""How long a closing door lets the answers it owes go out (a stop that ended the program)."""
MAX_SOCKET_PATH = 107
"""The longest path a Unix socket may have (Linux; 103 on macOS, where the folder is short)."""
MAX_KNOCKS = 512
"""Knocks served at once at most (a quarter of the open files allowed, if fewer): past
it the oldest silent knock gives way, so that a flood cannot use up the holder's files."""


def _max_knocks() -> int:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return MAX_KNOCKS
    return MAX_KNOCKS if soft <= 0 else max(8, min(MAX_KNOCKS, soft // 4))


LET_GO_WAIT_S = 3.0
"""How long a knock on a door that just closed waits for its holder to let go (its lock)."""
KNOCK_TIMEOUT_S = 3.0
"""How long a knock waits to be let in."""
SUPPORTED = sys.platform != "win32" and hasattr(socket, "AF_UNIX")
"""Whether this system has local doors (not Windows)."""


class HeldElsewhere(MassagerError):
    """Another program on this computer holds the massager."""

    exit_code = 4

    def __init__(self, message: str, who: Who | None = None) -> None:
        super().__init__(message)
        self.who = who


class Who(BaseModel):
    """Who holds a massager, and what it is doing: the answer to ``{"op": "who"}``."""

    kind: str = "held"
    device: str
    name: str
    holder: str
    """What holds it: ``start`` (a terminal), ``daemon``, ``bridge``, ``daemon --bridge``."""
    pid: int
    since: datetime
    program: str | None = None
    source: str | None = None
    """Which door started the program: ``cli``, ``schedule``, ``mqtt``."""
    state: DeviceState

    def says(self) -> str:
        """Who holds it, in words: ``massager-ctl start (pid 4242, since 21:03), running X``."""
        since = self.since.astimezone().strftime("%H:%M")
        held = f"massager-ctl {self.holder} (pid {self.pid}, since {since})"
        if self.program is not None:
            held += f", running {self.program}"
        return held


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    op: Literal["who", "command"]
    command: Command | None = None


def _private_dir() -> Path:
    """The runtime folder, made if missing and checked to be this user's alone.

    Raises:
        ConfigError: it is not a folder of this user's, or cannot be made private.
    """
    folder = runtime_dir()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise ConfigError(
                f"{folder} is not a folder of this user's; massager-ctl keeps the sockets "
                "that other terminals reach a running program through there: remove it"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            folder.chmod(0o700)  # loosened by someone: others must not knock
    except OSError as error:
        raise ConfigError(f"{folder}: {error.strerror or error}") from None
    return folder


def door_paths(address: DeviceAddress) -> tuple[Path, Path]:
    """The socket and the lock file of the massager at ``address``'s door."""
    digest = hashlib.sha256(device_key(address).encode()).hexdigest()[:16]
    folder = runtime_dir()
    return folder / f"{digest}.sock", folder / f"{digest}.lock"


class LocalDoor:
    """Serves ``holder`` on its socket, for as long as the ``async with`` block runs.

    Entering claims the massager for this process: if another program holds
    it, `HeldElsewhere` says who, and how to stop it.
    """

    def __init__(self, holder: Holder, house: House) -> None:
        self.holder = holder
        self.house = house
        self._lock: BaseFileLock | None = None
        self._server: asyncio.Server | None = None
        self._socket: Path | None = None
        self._inode: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._silent: dict[asyncio.Task[None], None] = {}
        """The knocks that have not said their request yet, oldest first."""

    async def __aenter__(self) -> LocalDoor:
        if not SUPPORTED:
            return self
        from filelock import FileLock, Timeout

        _private_dir()
        sock, lock_path = door_paths(self.holder.address)
        lock = FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            who = await find_holder(self.holder.address)
            raise held_elsewhere(self.holder.address, who) from None
        except OSError as error:
            raise ConfigError(f"{lock_path}: {error.strerror or error}") from None
        self._lock = lock
        try:
            sock.unlink(missing_ok=True)  # a dead holder's: its lock was free
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(sock), limit=MAX_REQUEST
            )
            sock.chmod(0o600)
            self._socket, self._inode = sock, sock.stat().st_ino
        except OSError as error:
            lock.release()
            self._lock = None
            too_long = len(os.fsencode(sock)) > MAX_SOCKET_PATH
            why = (
                f"its path is longer than the {MAX_SOCKET_PATH} bytes a socket's may be"
                if too_long
                else (error.strerror or str(error))
            )
            raise ConfigError(
                f"{sock}: the local door other terminals stop a program through cannot be "
                f"opened ({why}); set XDG_RUNTIME_DIR to a short folder of yours"
            ) from None
        except BaseException:
            lock.release()
            self._lock = None
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._handlers:
            # A stop that ended the program is answering through this door: let it.
            await asyncio.wait(set(self._handlers), timeout=ANSWER_GRACE_S)
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                if self._socket.stat().st_ino == self._inode:
                    self._socket.unlink()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def who(self) -> Who:
        """What this door says of its holder."""
        holder = self.holder
        running = holder.running
        return Who(
            device=str(holder.address), name=holder.name, holder=self.house.kind,
            pid=os.getpid(), since=holder.since,
            program=running.profile.name if running is not None else None,
            source=holder.source, state=holder.state,
        )  # fmt: skip

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._handlers) >= _max_knocks():
            # A flood: the oldest knock that has still said nothing gives way, so that
            # the open files last and a stop, which says its line at once, gets in.
            if not self._silent:
                writer.close()
                return
            oldest = next(iter(self._silent))
            del self._silent[oldest]
            oldest.cancel()
        self._handlers.add(task)
        self._silent[task] = None
        try:
            if not _same_user(writer):
                return  # not answered: a stranger learns nothing
            answer = await self._answer(reader)
            writer.write(answer.encode() + b"\n")
            await writer.drain()
        except OSError:
            pass  # the knocker went away; the holder goes on
        except asyncio.CancelledError:
            # The door is closing. Ended quietly: asyncio's stream callback would
            # otherwise log a cancelled handler as an error, in the user's terminal.
            pass
        finally:
            self._handlers.discard(task)
            self._silent.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> str:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                line = await reader.readuntil(b"\n")
            self._silent.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        except asyncio.IncompleteReadError as ended:
            line = ended.partial  # the knocker closed its side: what it sent is the request
            if not line:
                return _refused("an empty request")
        except TimeoutError:
            return _refused(f"no request within {REQUEST_TIMEOUT_S:g} s")
        except asyncio.LimitOverrunError:
            return _refused(f"a request is at most {MAX_REQUEST:,} bytes")
        try:
            request = _Request.model_validate_json(line)
        except ValidationError as error:
            return _refused(describe_errors(error, "request"))
        if request.op == "who":
            return self.who().model_dump_json()
        if request.command is None:
            return _refused("a command request needs its command")
        try:
            reply = await self.holder.command(request.command, source="cli")
        except Exception as error:  # a bug: the knocker still gets an answer, the holder goes on
            said = f"an unexpected error ({type(error).__name__}: {error}); please report it"
            self.house.log(f"{self.holder.name}: {said}")
            reply = Reply(ok=False, action=request.command.action, error=said)
        return reply.as_json()


def _refused(error: str) -> str:
    return Reply(ok=False, error=error).as_json()


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """Whether the other end runs as this user (checked where the system says: Linux).

    Both ways: a door answers only this user, and a knock trusts only a door of
    this user's.
    """
    peercred = getattr(socket, "SO_PEERCRED", None)
    sock = writer.get_extra_info("socket")
    if peercred is None or sock is None:
        return True  # the folder, 0700, is the check
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", raw)
    return bool(uid == os.getuid())


def held_elsewhere(address: DeviceAddress, who: Who | None) -> HeldElsewhere:
    """The error for a massager another program holds: who, and how to stop it."""
    url = str(address)
    if who is None:
        return HeldElsewhere(
            f"{url} is held by another massager-ctl on this computer that does not answer; "
            "if it hangs, end it (its massager vents within a second of it going)"
        )
    how = {
        "start": f"`massager-ctl stop --device {url}`, or Ctrl-C in its terminal",
        "daemon": f"`massager-ctl stop --device {url}` (the daemon holds it only while "
        "its program runs)",
    }.get(who.holder, f"`massager-ctl stop --device {url}`, or end the {who.holder}")
    return HeldElsewhere(f"{url} is held by {who.says()}; to stop it: {how}", who)


async def knock(
    address: DeviceAddress, request: dict[str, object], *, timeout_s: float = ANSWER_TIMEOUT_S
) -> str | None:
    """Send ``request`` to the door of ``address``'s holder; its answer line, or None if no door.

    A socket left by a holder that died is removed on the way.

    Raises:
        HeldElsewhere: a holder lives but does not answer.
        ConfigError: the runtime folder cannot be used.
    """
    if not SUPPORTED:
        return None
    try:
        sock, lock_path = door_paths(address)
    except OSError:
        return None  # a runtime folder that cannot be read has no door of ours
    if not _ours(sock):
        return None  # no door, or not one of this user's: never trusted with a stop
    loop = asyncio.get_running_loop()
    let_go_by = loop.time() + LET_GO_WAIT_S
    while True:
        try:
            async with asyncio.timeout(KNOCK_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 20)
            break
        except (TimeoutError, OSError):
            if _stale(sock, lock_path):
                return None
            if loop.time() >= let_go_by:
                raise held_elsewhere(address, None) from None
            # Its door shut and its lock still held: a holder letting go, most often.
            await asyncio.sleep(0.1)
    if not _same_user(writer):
        writer.close()
        return None  # someone else's program answers there: not a holder of ours
    try:
        writer.write(_encode(request))
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            line = await reader.readline()
    except (OSError, TimeoutError):
        line = b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not line:
        raise held_elsewhere(address, None)
    return line.decode("utf-8", errors="replace")


def _ours(sock: Path) -> bool:
    """Whether ``sock`` is a socket of this user's, in a folder of this user's alone.

    Where there is no runtime folder the doors are in the system's temporary
    folder, where anyone may make a folder of that name first: a door there that
    is not this user's would answer a stop with "done" and keep it from the
    massager. Such a door is not knocked on: the stop goes to the massager.
    """
    try:
        folder = sock.parent.lstat()
        info = sock.lstat()
    except OSError:
        return False
    uid = os.getuid()
    return (
        stat.S_ISDIR(folder.st_mode)
        and folder.st_uid == uid
        and not stat.S_IMODE(folder.st_mode) & 0o077
        and stat.S_ISSOCK(info.st_mode)
        and info.st_uid == uid
    )


def _encode(request: dict[str, object]) -> bytes:
    import json

    return json.dumps(request, default=str).encode() + b"\n"


def _stale(sock: Path, lock_path: Path) -> bool:
    """Whether ``sock`` was left by a holder that is gone (then it is removed)."""
    from filelock import FileLock, Timeout  # only when a door does not answer

    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError):
        return False
    try:
        sock.unlink(missing_ok=True)
    finally:
        lock.release()
    return True


def mark_halted(address: DeviceAddress) -> None:
    """Leave word that a stop or vent went to ``address`` directly (nothing held it).

    A `start` that began before it but had not yet opened its door, so that the
    stop could not find it, reads this once its door is open and calls itself
    off: a stop wins over a start asked for before it, wherever it was on its way.
    Never raises: a stop must not depend on a local folder.
    """
    if not SUPPORTED:
        return
    with contextlib.suppress(OSError, ConfigError):
        _private_dir()
        sock, _ = door_paths(address)
        sock.with_suffix(".halted").touch()
        os.utime(sock.with_suffix(".halted"))


def halted_since(address: DeviceAddress, moment: float) -> bool:
    """Whether a stop or vent went to ``address`` directly at or after ``moment`` (epoch s)."""
    if not SUPPORTED:
        return False
    try:
        sock, _ = door_paths(address)
        info = sock.with_suffix(".halted").lstat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and info.st_mtime >= moment


def process_started_at() -> float:
    """When this process began (epoch seconds): from the system on Linux, else a close guess.

    A stop given while a `start` was still loading counts against that start.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # starttime, field 22, in clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # From the uptime, to the hundredth (the boot time is kept to the second only).
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()


async def find_holder(address: DeviceAddress) -> Who | None:
    """Who holds ``address`` on this computer, if anyone does.

    Raises:
        HeldElsewhere: a holder lives but does not answer.
    """
    line = await knock(address, {"op": "who"}, timeout_s=KNOCK_TIMEOUT_S)
    if line is None:
        return None
    try:
        return Who.model_validate_json(line)
    except ValidationError:
        raise held_elsewhere(address, None) from None


async def send_command(address: DeviceAddress, command: Command) -> Reply | None:
    """Hand ``command`` to the holder of ``address``; its reply, or None if nothing holds it.

    Raises:
        HeldElsewhere: a holder lives but does not answer.
    """
    body = command.model_dump(mode="json", exclude_none=True)
    line = await knock(address, {"op": "command", "command": body})
    if line is None:
        return None
    try:
        return Reply.model_validate_json(line)
    except ValidationError:
        raise held_elsewhere(address, None) from None


async def everything_held() -> list[Who]:
    """What this computer holds: every live holder's answer (stale sockets are removed)."""
    if not SUPPORTED:
        return []
    found: list[Who] = []
    try:
        folder = runtime_dir()
        sockets = sorted(folder.glob("*.sock"))
    except OSError:
        return []
    for sock in sockets:
        lock_path = sock.with_suffix(".lock")
        if not _ours(sock):
            continue
        try:
            async with asyncio.timeout(KNOCK_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 20)
        except (OSError, TimeoutError):
            _stale(sock, lock_path)
            continue
        try:
            if not _same_user(writer):
                continue
            writer.write(_encode({"op": "who"}))
            await writer.drain()
            async with asyncio.timeout(KNOCK_TIMEOUT_S):
                line = await reader.readline()
            found.append(Who.model_validate_json(line))
        except (OSError, TimeoutError, ValidationError):
            continue
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return found


@contextlib.asynccontextmanager
async def holding(
    house: House, address: DeviceAddress, *, name: str | None = None, watch: bool = False
) -> AsyncIterator[Holder]:
    """Hold ``address`` in ``house`` with its local door open, for the block.

    Raises:
        HeldElsewhere: another program on this computer holds it.
    """
    holder = house.hold(address, name=name, watch=watch)
    try:
        async with LocalDoor(holder, house):
            holder.begin()
            try:
                yield holder
            finally:
                await holder.end()
    finally:
        house.let_go(holder)
