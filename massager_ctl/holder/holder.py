"""The holder: the one object through which this computer reaches one massager.

A massager has one link (a serial port, one TCP connection, one Bluetooth
central), so every front door (a `start` in a terminal, a `stop` in another,
the daemon's schedules, the MQTT bridge, the web page) goes through the holder
of that massager, never to the link itself. The holder:

- **watches** the massager while idle, if asked to (the bridge does): over a
  quiet link (SPEC §7.6), which costs a battery device nothing and reserves no
  counter in the key file; a status read every `IDLE_POLL_S` tells a massager
  that went away, and the massager itself says what changes (a button on the
  remote) at once;
- **runs programs**, one at a time, each a `JournaledProgram` (held to the
  safety limits, journaled with its source): a door that runs one in its own
  task (the CLI's `start`, the daemon) holds the link with `Holder.program`; a
  door that only sends commands (MQTT, the web page) asks for ``start``;
- **takes commands** (`Holder.command`) with the same rules from every door:
  stop and vent first and at once (a start on its way is called off), a command
  with an id runs once, an old one is refused, every answer says ok or what
  was wrong;
- **publishes one stream of state** (`DeviceState`), which every door renders.

Stop and vent on a running program go out on the program's own link at once
and the program ends by itself, saying so ("a stop command ended the
program"); if it does not within `HALT_SETTLE_S`, or its link is down, its task
is cancelled, which vents. On an idle massager they go out on the quiet link,
or on a link opened for them if there is none; a massager takes both from
anyone, signed or not (SPEC §7.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ..device import VENTED_MMHG, Massager
from ..errors import CalledOff, CommandPreempted, DeviceFault, InputError, MassagerError
from ..models import DeviceInfo, DeviceStatus, explain_fault, explain_faults
from ..programs.runner import SETTLED, VENT_WAIT_S
from ..urls import DeviceAddress
from .commands import HALTS, Command, CommandMemory, Reply, check_age
from .state import DeviceState, link_quality

if TYPE_CHECKING:
    from ..programs.journaled import JournaledProgram
    from ..programs.runner import Progress
    from .house import House

IDLE_POLL_S = 120.0
"""How often a quiet watch asks an idle massager with empty chambers how it is (SPEC §7.6)."""
BUSY_POLL_S = 1.0
"""How often it asks while something happens the massager reports only when asked (a
session started on the remote: its pressures)."""
POLL_TIMEOUT_S = 5.0
"""A status read that takes longer than this means the massager is gone."""
HALT_SETTLE_S = 20.0
"""How long a program stopped from a door may take to end by itself before it is cancelled."""
PRESSURE_EVERY_S = 1.0
"""How often a state with only new pressures is published."""
PRESSURE_STEP_MMHG = 1.0
"""How far a chamber's pressure must move for a state with only new pressures."""
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0

Change = Literal["state", "availability", "info"]
"""What changed, for a holder's listeners."""


def backoff(attempt: int) -> float:
    """Seconds before reconnect ``attempt`` (1, 2, ...): doubling to a minute, with jitter."""
    ceiling = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** min(attempt - 1, 16))
    return random.uniform(ceiling / 2, ceiling)


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (its own clean-up, a vent, done).

    A task already being cancelled is not cancelled again (that would cut short
    the vent of its clean-up). A cancel of the caller itself still propagates.
    """
    if task is None or task is asyncio.current_task():
        return
    if not task.cancelling():
        task.cancel()
    await asyncio.wait({task})  # raises only if the caller is cancelled
    if not task.cancelled():
        task.exception()  # retrieved: its own code said what went wrong


async def settle(massager: Massager, action: str) -> DeviceStatus:
    """Send STOP or VENT on ``massager``'s link and wait (bounded) until the chambers are empty.

    On a quiet link the massager reports only changes, not its falling
    pressures, so it is asked now and then.

    Raises:
        DeviceFault: the massager reports a fault (emptied through its dump valve, or not).
        MassagerError: it still holds pressure after `VENT_WAIT_S`, with no fault to say why.
    """
    await (massager.stop() if action == "stop" else massager.vent())
    status = await _emptied(massager)
    if status.peak_mmhg < VENTED_MMHG and not status.active:
        if not status.faults:
            return status
        # Empty, through the dump valve a fault opened: a chamber that would not let
        # its air out, say (SPEC 10.11). The legs are free; the massager is not well.
        raise DeviceFault(
            f"{action} was taken and the chambers are empty, but the massager reports "
            f"a fault. {explain_faults(status.faults)}"
        )
    held = f"chambers still read up to {status.peak_mmhg:.0f} mmHg after {VENT_WAIT_S:g} s"
    if status.faults:
        raise DeviceFault(
            f"{action} was taken, but the massager reports {', '.join(status.faults)}; {held}"
        )
    raise MassagerError(f"{action} was taken, but {held}; check the wraps and the hoses")


async def _emptied(massager: Massager) -> DeviceStatus:
    def empty(status: DeviceStatus) -> bool:
        return not status.active and status.peak_mmhg < VENTED_MMHG

    if not massager.quiet:
        try:
            return await massager.wait_vented(timeout_s=VENT_WAIT_S)
        except TimeoutError:
            return massager.status
    loop = asyncio.get_running_loop()
    deadline = loop.time() + VENT_WAIT_S
    status = massager.status
    while not empty(status) and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await massager.wait_for(empty, timeout_s=min(0.5, deadline - loop.time()))
        with contextlib.suppress(CommandPreempted):  # another stop or vent: read again
            status = await massager.refresh()
    return status


class Holder:
    """The one way to the massager at ``address`` from this process (see the module text).

    ``watch`` keeps a quiet watch on it while no program runs (the bridge's
    holders do; a `start` or the daemon holds a massager only while its
    program runs). ``name`` is how doors call it (the bridge's topic word).
    """

    def __init__(
        self, address: DeviceAddress, house: House, *, name: str | None = None, watch: bool = False
    ) -> None:
        self.address = address
        self.house = house
        self.name = name or str(address)
        self.watch = watch
        self.since = datetime.now(UTC)
        """When this process began holding the massager."""
        self.state = DeviceState(state="offline")
        self.available = False
        """Whether the massager answers (on the quiet watch, or on a program's link)."""
        self.info: DeviceInfo | None = None
        """What the massager announced when it last answered."""
        self.chosen_program: str | None = None
        self.running: JournaledProgram | None = None
        """The program that holds the link now, whichever door started it."""
        self.memory = CommandMemory()
        self._program_task: asyncio.Task[Any] | None = None
        self._own_program = False
        self._released = asyncio.Event()
        """Set when the running program has let go of the link (made anew for each)."""
        self.halted_by: str | None = None
        """``stop`` or ``vent``, once one cancelled the running program (its link was down)."""
        self._watching: asyncio.Task[None] | None = None
        self._watch_link: Massager | None = None
        self._listeners: list[Callable[[Holder, Change], None]] = []
        self._shown_at = float("-inf")
        self._starting = asyncio.Lock()
        self._side = asyncio.Lock()
        """One idle command (a mode, a pause) at a time on the woken quiet link."""
        self._halts = 0
        self._ended = False
        self._reserved: tuple[str, float] | None = None
        self._started_at = datetime.now(UTC)
        self._source = ""
        self._checked = False  # the program starting was held to the limits before it connected

    # --- what doors see -------------------------------------------------------------

    def listen(self, listener: Callable[[Holder, Change], None]) -> Callable[[], None]:
        """Call ``listener`` on every change of state, availability or info; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _tell(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(self, change)

    @property
    def source(self) -> str | None:
        """Which door started the running program (``cli``, ``schedule``, ``mqtt``), if one runs."""
        return self._source if self.running is not None else None

    def busy(self) -> bool:
        """Whether a program holds the link, or a start is on its way."""
        task = self._program_task
        return (task is not None and not task.done()) or self._starting.locked()

    # --- lifetime ---------------------------------------------------------------------

    def begin(self) -> None:
        """Start the quiet watch, if this holder watches (not once it has ended)."""
        if self.watch and not self._ended and self._watching is None and not self._running_now():
            self._watching = asyncio.create_task(self._watch(), name=f"watch {self.name}")

    async def end(self) -> None:
        """Stop watching, and end a program a command started here (the massager vents).

        A program a door runs in its own task (`program`) is that door's to end.
        """
        self._ended = True
        if self._own_program:
            await cancelled(self._program_task)
        await self._stop_watching()

    async def _stop_watching(self) -> None:
        task, self._watching = self._watching, None
        await cancelled(task)

    async def _watch(self) -> None:
        attempt = 0
        while True:
            try:
                async with Massager.connect(self.address, quiet=True) as massager:
                    self._watch_link, attempt = massager, 0
                    self._answered(massager)
                    updates = massager.statuses()
                    while True:
                        self._show(massager.status, massager)
                        every = BUSY_POLL_S if _busy(massager.status) else IDLE_POLL_S
                        try:
                            async with asyncio.timeout(every):
                                await anext(updates)
                                continue  # the massager told a change
                        except TimeoutError:
                            pass
                        # A stop or vent sent meanwhile (by `halt`) overtakes the read: fine.
                        with contextlib.suppress(CommandPreempted):
                            async with asyncio.timeout(POLL_TIMEOUT_S):
                                await massager.refresh()
            except (MassagerError, TimeoutError) as error:
                self.house.log(f"{self.name}: {error or 'no answer to a status read'}")
            finally:
                self._watch_link = None
            self._set_available(False)
            attempt += 1
            await asyncio.sleep(backoff(attempt))

    def _answered(self, massager: Massager) -> None:
        if self.info != massager.info:
            self.info = massager.info
            self._tell("info")
        self._set_available(True)

    def _set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            self._tell("availability")
            if not available:
                self.state = DeviceState(state="offline", chosen_program=self.chosen_program)
                self._tell("state")

    def _show(
        self, status: DeviceStatus, massager: Massager | None, progress: Progress | None = None
    ) -> None:
        state = DeviceState(
            state=status.state, mode=status.mode, intensity=status.intensity,
            pressures_mmhg=[round(p, 1) for p in status.pressures_mmhg],
            battery_pct=status.battery_pct, faults=list(status.faults),
            fault=explain_fault(status.faults[0]) if status.faults else None,
            link_quality=link_quality(massager.link_stats) if massager is not None else None,
            chosen_program=self.chosen_program,
        )  # fmt: skip
        if progress is not None:
            ends = datetime.now(UTC) + timedelta(seconds=progress.program_left_s)
            state = state.model_copy(update={
                "program": progress.profile, "step": progress.step, "steps": progress.steps,
                "ends_at": ends.replace(microsecond=0),
            })  # fmt: skip
        # Pressures move with every report (4 a second): told at most once a second, and
        # only if a chamber moved by PRESSURE_STEP_MMHG (vented chambers read sensor noise);
        # everything else at once.
        now = asyncio.get_running_loop().time()
        others_changed = state.model_copy(update={"pressures_mmhg": []}) != (
            self.state.model_copy(update={"pressures_mmhg": []})
        )
        before = self.state.pressures_mmhg
        moved = len(before) != len(state.pressures_mmhg) or any(
            abs(a - b) >= PRESSURE_STEP_MMHG
            for a, b in zip(before, state.pressures_mmhg, strict=True)
        )
        if others_changed or (moved and now - self._shown_at >= PRESSURE_EVERY_S):
            self.state, self._shown_at = state, now
            self._tell("state")

    def choose(self, profile: str) -> None:
        """Choose the profile a ``start`` without one starts; it is shown in the state."""
        self.chosen_program = profile
        self.state = self.state.model_copy(update={"chosen_program": profile})
        self._tell("state")

    # --- commands -----------------------------------------------------------------------

    async def command(self, command: Command, *, source: str) -> Reply:
        """Carry out ``command`` from a door named ``source``, by the rules of every door.

        Never raises for what the command asked: the reply says what was wrong.
        A command with an id that ran before is not run again; its reply is the
        first one's, marked ``duplicate``. Stop and vent are never held back as
        repeats (twice does no harm).
        """
        reply = Reply(ok=False, id=command.id, action=command.action)
        once = command.id if command.action not in HALTS else None
        before = self.memory.seen(once) if once else None
        if before is not None:
            return reply.model_copy(update={"ok": True, "message": before, "duplicate": True})
        try:
            check_age(command)
            if once:
                self.memory.remember(once, "in progress")
            try:
                message = await self._act(command, source)
            except BaseException:
                if once:
                    self.memory.forget(once)  # failed: a retry with the same id runs
                raise
            if once:
                self.memory.remember(once, message)
            return reply.model_copy(update={"ok": True, "message": message})
        except MassagerError as error:
            return reply.model_copy(update={"error": str(error)})

    async def _act(self, command: Command, source: str) -> str:
        """Carry out a command; returns what happened.

        Raises:
            MassagerError: refused (a limit, a profile, the device), with why.
        """
        if command.action in HALTS:
            return await self.halt(command.action)
        if command.action == "program":
            assert command.profile is not None
            self.house.profile(command.profile)  # it must exist
            self.choose(command.profile)
            return f"program {command.profile} chosen; start starts it"
        if command.action == "start":
            profile = command.profile or self.chosen_program
            if profile is None:
                raise InputError(
                    "start needs a profile: name one, or choose one first with "
                    '{"action": "program", "profile": NAME}'
                )
            halts = self._halts  # before waiting: a stop meanwhile calls this start off
            return await self._start(profile, halts, source)
        return await self._adjust(command)

    async def halt(self, action: str) -> str:
        """Stop or vent, first and at once, whatever runs or is on its way; says what it did.

        Raises:
            MassagerError: the massager could not be reached, or still holds pressure.
        """
        self._halts += 1  # calls off a start still on its way (see `_claim`)
        task = self._program_task
        if task is not None and not task.done():
            program = self.running
            runner = program.supervisor.runner if program is not None else None
            released = self._released
            if runner is not None and runner.massager.connected:
                runner.massager.forbid_start()  # nothing it was about to send starts again
                with contextlib.suppress(MassagerError):
                    await _halt(runner.massager, action)
                # The program sees its session end and ends, saying so, once the chambers
                # are empty; one that does not (its link just failed) is cancelled, which
                # vents. Its end is awaited, not its task: the task may be the one that
                # closes the door this stop came through.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HALT_SETTLE_S):
                        await released.wait()
                if released.is_set():
                    ended = program.result if program is not None else None
                    if ended is None or ended.outcome in SETTLED:
                        return f"{action}: the program ended; the chambers are empty"
                    # It ended, but did not see the chambers empty, or found a fault.
                    raise MassagerError(f"{action}: the program ended: {ended.message}")
            began = self.running is not None and self.running.began
            if not task.cancelling():
                self.halted_by = action  # its task learns why it was cancelled
                task.cancel()  # connecting or reconnecting: called off, vented
            await released.wait()
            if not began:
                return f"{action}: the program was called off before it began"
            return f"{action}: the program ended, the massager vented"
        if self._starting.locked():
            # The link is being handed over; whatever it still reaches is told too.
            link = self._watch_link
            if link is not None:
                with contextlib.suppress(MassagerError):
                    await _halt(link, action)
            return f"{action}: the start on its way was called off"
        link = self._watch_link
        if link is not None and link.connected:
            status = await settle(link, action)
        else:
            # Not watching, or the watch is reconnecting: a link of its own, with the stop
            # or vent sent as it opens, before anything else can fail. A watch still
            # connecting would compete for the one link (a BLE massager serves one
            # central): it waits.
            watching = self._watching is not None
            await self._stop_watching()
            try:
                status = await halt_directly(self.address, action)
            finally:
                if watching:
                    self.begin()
        return f"{action}: done; the chambers are empty ({status.peak_mmhg:.0f} mmHg at most)"

    async def _adjust(self, command: Command) -> str:
        """Mode, intensity, pause or resume: on the program's link if one runs."""
        running = self.running
        runner = running.supervisor.runner if running is not None else None
        if runner is not None:
            if not runner.massager.connected:
                raise MassagerError(f"{self.name}'s link is down; the program is reconnecting")
            await _adjust(runner.massager, command, runner)
        elif self.busy():
            raise MassagerError(f"{self.name} is connecting; try again")
        elif not self.watch:
            raise MassagerError(f"{self.name} runs no program")
        else:
            # No program: the quiet link is woken with a signed HELLO for the command
            # alone, and let lapse again. One link only: a stop meanwhile goes out on it,
            # and overtakes the command.
            link = self._watch_link
            if link is None or not link.connected:
                raise MassagerError(f"{self.name} is offline; try again")
            async with self._side:
                await link.wake()
                try:
                    await _adjust(link, command, None)
                finally:
                    if link.connected:
                        link.go_quiet()
                self._show(link.status, link)
        if command.action in ("mode", "intensity"):
            value = command.mode if command.mode is not None else command.intensity
            return f"{command.action} {value}"
        return f"{command.action}: done"

    # --- programs ----------------------------------------------------------------------

    async def _start(self, profile_name: str, halts: int, source: str) -> str:
        profile = self.house.profile(profile_name)
        async with self._starting:  # one start at a time; stop and vent never wait for it
            if self._halts != halts:
                raise CalledOff("a stop or vent came first; the start was called off")
            now = datetime.now(UTC)
            # A simulator (a demo: it squeezes no leg) is not held to the limits. Whether
            # the massager is one is known for sure only once the program's own link
            # answers, where the limits are checked again; here they answer the command.
            demo = self.info is not None and self.info.is_simulator
            self._checked = not demo
            if self._running_now():
                raise MassagerError(self._busy_text())
            if not demo:
                self.house.check_limits(profile, now, holder=self)
                # Counted by the limits from the check on: another start meanwhile sees it.
                self._reserved, self._started_at = (profile.name, profile.total_minutes * 60), now
            try:
                program = self.house.journaled(
                    self, profile, source=source,
                    limits=lambda: self.house.check_limits(
                        profile, datetime.now(UTC), holder=self
                    ),
                )  # fmt: skip
                await self._claim_locked(program, halts, source)
            finally:
                self._reserved = None
            task = asyncio.create_task(self._run_own(program), name=f"program {self.name}")
            self._program_task, self._own_program = task, True
        # Clean-up in a callback: a task cancelled before its first step never runs `finally`.
        task.add_done_callback(lambda _: self._release(program))
        return f"started {profile.name}"

    async def _run_own(self, program: JournaledProgram) -> None:
        try:
            result = await program.run()
            self.house.log(f"{self.name}: {result.outcome}: {result.message}")
        except MassagerError as error:
            self.house.log(f"{self.name}: {error}")

    @contextlib.asynccontextmanager
    async def program(self, program: JournaledProgram, *, source: str) -> AsyncIterator[None]:
        """Hold the link for ``program``, which the caller runs in this task, within the block.

        While it runs, its state is published, every door's mode, intensity,
        pause and resume reach it, and a stop or vent ends it (see `halt`).

        Raises:
            MassagerError: another program holds the link.
            CalledOff: a stop or vent came while the link was being handed over.
        """
        await self._claim(program, self._halts, source)
        self._program_task, self._own_program = asyncio.current_task(), False
        try:
            yield
        finally:
            self._release(program)

    async def _claim(self, program: JournaledProgram, halts: int, source: str) -> None:
        """Take the link from the watch for ``program``; one program at a time.

        Raises:
            MassagerError: another program holds the link.
            CalledOff: a stop or vent came since ``halts`` was read; watching goes on.
        """
        async with self._starting:
            await self._claim_locked(program, halts, source)

    async def _claim_locked(self, program: JournaledProgram, halts: int, source: str) -> None:
        """`_claim`, with the start lock held."""
        if self._running_now():
            raise MassagerError(self._busy_text())
        await self._stop_watching()
        if self._halts != halts:
            self.begin()
            name = program.profile.name
            raise CalledOff(f"a stop or vent came first; {name} was not started")
        told = program.supervisor.on_progress
        program.supervisor.on_progress = _both(told, self._progress)
        self.running, self._source = program, source
        self._released = asyncio.Event()
        self.halted_by = None

    def _release(self, program: JournaledProgram) -> None:
        if self.running is not program:
            return
        self.running = self._program_task = None
        self._own_program = False
        self._released.set()
        if self.available and self.state.program is not None:
            self.state = self.state.model_copy(
                update={"program": None, "step": None, "steps": None, "ends_at": None}
            )
            self._tell("state")
        self.begin()  # watch again, with the link back

    def _running_now(self) -> bool:
        task = self._program_task
        return task is not None and not task.done()

    def _busy_text(self) -> str:
        running = self.running
        if running is None:
            return f"{self.name} is starting a program; stop it first"
        return (
            f"{self.name} is running {running.profile.name} (started from {self._source}); "
            "stop it first"
        )

    def starting_session(self) -> tuple[str, datetime, float, str] | None:
        """A program of this holder the journal does not hold yet: profile, start, planned, source.

        Counted by the safety limits of the other starts in this process.
        """
        running = self.running
        if running is not None and running.session_id is None and self._own_program:
            if running.demo or (not running.began and not self._checked):
                return None  # a demo: it squeezes no leg
            planned = running.profile.total_minutes * 60
            return running.profile.name, self._started_at, planned, self._source
        if self._reserved is not None:
            name, planned = self._reserved
            return name, self._started_at, planned, self._source or "mqtt"
        return None

    def _progress(self, progress: Progress) -> None:
        runner = self.running.supervisor.runner if self.running is not None else None
        massager = runner.massager if runner is not None else None
        if massager is not None:
            self._answered(massager)
        self._show(progress.status, massager, progress)


def _busy(status: DeviceStatus) -> bool:
    """Whether the massager is doing something it reports only when asked (its pressures)."""
    return status.active or status.peak_mmhg >= VENTED_MMHG


def _both(
    first: Callable[[Progress], None] | None, then: Callable[[Progress], None]
) -> Callable[[Progress], None]:
    if first is None:
        return then

    def both(progress: Progress) -> None:
        first(progress)
        then(progress)

    return both


async def _halt(massager: Massager, action: str) -> None:
    await (massager.stop() if action == "stop" else massager.vent())


async def _adjust(massager: Massager, command: Command, runner: Any) -> None:
    if command.action in ("mode", "intensity"):
        if runner is not None:
            await runner.adjust(mode=command.mode, intensity=command.intensity)
        elif command.mode is not None:
            await massager.set_mode(command.mode)
        else:
            assert command.intensity is not None
            await massager.set_intensity(command.intensity)
        return
    await (massager.pause() if command.action == "pause" else massager.resume())


async def halt_directly(
    address: DeviceAddress,
    action: str,
    *,
    went_out: Callable[[], None] | None = None,
) -> DeviceStatus:
    """Stop or vent the massager at ``address`` over a link opened for it, and wait until empty.

    The STOP or VENT goes out as soon as the link is open, before the HELLO, and
    again once the massager answered (SPEC §7.4): the first reaches it even when
    its answers cannot come back. No key is used, nor the key file opened: a
    massager takes both from anyone, and a damaged or locked file must neither
    stop nor delay them. ``went_out`` is called as soon as the first one is on
    the line.

    Raises:
        DeviceFault, MassagerError: as for `settle`.
        ConnectFailed: the link could not be opened.
    """
    from firmware_protocol import Stop, Vent

    first = Stop() if action == "stop" else Vent()
    async with Massager.connect(address, quiet=True, first=first, on_first=went_out) as massager:
        return await settle(massager, action)


__all__ = [
    "BUSY_POLL_S",
    "IDLE_POLL_S",
    "Holder",
    "backoff",
    "cancelled",
    "halt_directly",
    "settle",
]
