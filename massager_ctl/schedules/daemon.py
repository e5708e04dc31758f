"""The daemon: starts each schedule's program when it is due, once, and never late.

It sleeps until the next start on a wall-clock timer (`wallclock`), and wakes
early only when told the schedules changed (`Daemon.reload`: the schedules file
was written, or SIGHUP) or when the wall clock was set. On every wake it reads
the schedules again and decides from the clock and the journal alone:

- **Once.** Before a program starts, its run (schedule id, due time) is written
  to the journal's ``runs`` table, whose key refuses a second claim. A restart,
  a clock set back, or a second daemon therefore never starts a run again.
- **Never late.** A run found more than the grace window late (default 10
  minutes, ``grace_minutes`` in config.toml), because the computer was asleep
  or off, the daemon was not running, or the clock jumped forward, is not
  started: it is journaled as missed, with why.
- **Looking back.** The journal keeps how far the daemon has looked; after a
  restart it looks back from there (at most `LOOKBACK`), so the runs it was
  not there for are journaled as missed. Runs due before their schedule was
  added (``created``) never count.
- **One program per device.** A run due while its device is busy with another
  schedule's program is journaled as missed ("busy") rather than queued.
- **Within the limits.** A run the safety envelope refuses, or whose profile
  the massager cannot run, is journaled as refused with why. Both are checked
  once the massager has answered (the profile first), so a massager that is a
  simulator (a demo: it squeezes no leg) is neither refused nor counted.
- **Ending.** Cancelling `Daemon.run` (SIGTERM) ends every running program the
  way Ctrl-C ends `start`: at once, with the massager vented, journaled.

- **Mistakes are said, not fatal.** A bad schedule is reported and the others
  run; while the journal cannot be used no run starts, and it is tried again
  every `RETRY_S` (a run that passes its grace meanwhile is journaled as missed).

Daylight-saving changes are the schedule's business (`schedule`): the daemon
compares runs in UTC, since Python never finds a time in a repeated hour equal
to a time in another zone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from ..errors import CalledOff, MassagerError, ProfileRefused
from ..holder import House
from ..holder.door import HeldElsewhere, holding
from ..journal import Journal, JournalError, Session
from ..paths import config_file
from ..programs.journaled import JournaledProgram
from ..programs.limits import LimitReached, check_journal
from ..programs.profiles import Profile, find_profile
from ..programs.runner import ProgramResult
from ..programs.supervisor import ResumePolicy
from ..settings import Settings
from ..urls import DEFAULT_DEVICE, DeviceAddress, parse_device_url
from .schedule import Schedule, ScheduleBook
from .wallclock import WallClock

LOOKBACK = timedelta(days=31)
"""How far back a restarted daemon journals the runs it missed."""

MARK = "daemon.looked_until"

RETRY_S = 30.0
"""How soon a scheduled start tries again when the massager did not answer (within the
grace window only)."""

DaemonEventKind = Literal[
    "watching", "next", "started", "ended", "missed", "refused", "busy", "unreachable", "error",
    "stopping",
]  # fmt: skip


class DaemonEvent(BaseModel):
    """One line of what the daemon did, for its log (text or JSON)."""

    model_config = ConfigDict(frozen=True)

    kind: str = "daemon"
    event: DaemonEventKind
    message: str
    schedule: str | None = None
    profile: str | None = None
    device: str | None = None
    due: datetime | None = None


@dataclass
class _Program:
    """A scheduled program the daemon runs now."""

    schedule: Schedule
    started: datetime
    planned_s: float
    task: asyncio.Task[None] | None = None
    program: JournaledProgram | None = None

    def as_session(self, device: str) -> Session | None:
        """How the limits see it when the journal does not: it began, but was not journaled.

        One still connecting is not counted: its own check of the limits comes when
        its massager answers, with no pause before the session is journaled, and
        sees every session begun before it.
        """
        program = self.program
        if program is None or not program.began or program.demo:
            return None
        if program.session_id is not None:
            return None  # the journal holds its session
        return Session.starting(device=device, profile=self.schedule.profile, source="schedule",
                                started_at=self.started, planned_s=self.planned_s)  # fmt: skip


class Daemon:
    """Runs due schedules from ``book``, journaling to ``journal``, on ``clock``'s time."""

    def __init__(
        self,
        *,
        book: ScheduleBook,
        journal: Journal,
        clock: WallClock,
        settings: Settings,
        profiles_dir: Path,
        on_event: Callable[[DaemonEvent], None] = lambda event: None,
        house: House | None = None,
    ) -> None:
        self.book = book
        if house is None:
            house = House(kind="daemon", settings=settings, journal=journal,
                          profiles_dir=profiles_dir, config=str(config_file()))  # fmt: skip
        elif house.kind == "bridge":
            house.kind = "daemon --bridge"
        self.house = house
        """The holders of this process: the bridge's too, when the daemon hosts one. A
        massager the bridge watches is run through its holder; any other is held (its
        local door open) only while its program runs, so a daemon with nothing due
        holds nothing and costs nothing."""
        self._stopping = False
        self.journal = journal
        self.clock = clock
        self.settings = settings
        self.profiles_dir = profiles_dir
        self.on_event = on_event
        self.grace = timedelta(minutes=settings.grace_minutes)
        self.policy = ResumePolicy(window_s=settings.resume_window_s)
        self.programs: dict[str, _Program] = {}
        """What runs now, by device URL."""
        self._schedules: list[Schedule] = []
        self._problems: list[str] = []
        self._said: set[tuple[object, ...]] = set()
        self._wake: asyncio.Event | None = None
        self._announced: tuple[str, datetime] | None = None

    def reload(self) -> None:
        """Wake now and read the schedules again (they changed, or SIGHUP)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Run schedules until cancelled; then end every running program, vented."""
        self._wake = asyncio.Event()
        self._say("watching", f"watching {self.book.path}; grace {self.grace_text}")
        try:
            while True:
                await self._sleep(self.tick())
        finally:
            await self._end_programs()

    @property
    def grace_text(self) -> str:
        """The grace window in words."""
        return f"{self.grace.total_seconds() / 60:g} min"

    def tick(self) -> datetime | None:
        """Take every run now due; returns when to wake next (None: nothing ahead)."""
        now = self.clock.now()
        self._load()
        retry = now + timedelta(seconds=RETRY_S)
        try:
            looked = self.journal.mark(MARK)
            since = max(now - LOOKBACK, min(looked, now) if looked else now - self.grace)
            taken = self.journal.taken_runs(since - timedelta(days=1))
        except JournalError as error:
            # Without the journal a run could start twice: start none, and try again
            # soon (a run that passes its grace meanwhile is journaled as missed then).
            self._say("error", f"{error}; no run is started until the journal can be used")
            return retry
        due = sorted(
            (
                (run.astimezone(UTC), s)
                for s in self._schedules
                if s.enabled
                for run in s.runs_between(since, now)
                if self._counts(s, run, taken)
            ),
            key=lambda pair: (pair[0], pair[1].id),
        )
        claimed = all([self._take(schedule, run, now) for run, schedule in due])
        if not claimed:
            return retry  # the mark stays, so those runs are looked at again
        try:
            self.journal.set_mark(MARK, now)
        except JournalError as error:
            self._say("error", f"{error}; the journal will be tried again")
        return self._next(now, taken)

    @staticmethod
    def _counts(schedule: Schedule, run: datetime, taken: set[tuple[str, datetime]]) -> bool:
        """Whether a run is the daemon's to take: not taken, and not before its schedule."""
        utc = run.astimezone(UTC)
        return (schedule.id, utc) not in taken and (
            schedule.created is None or utc > schedule.created
        )

    def _load(self) -> None:
        try:
            schedules, broken = self.book.load_each()
            problems = [str(entry) for entry in broken]
        except MassagerError as error:
            # Keep what was read last: a file half-edited by hand must not stop bedtime.
            problems = [f"{error}; running the schedules read before"]
        else:
            self._schedules = schedules
        if problems != self._problems:  # said once, not on every wake
            for problem in problems:
                self._say("error", problem)
        self._problems = problems

    def _next(self, now: datetime, taken: set[tuple[str, datetime]]) -> datetime | None:
        upcoming = []
        for s in self._schedules:
            if s.enabled:
                # Lazily: after the clock was set back, many runs ahead may be taken.
                start = max(now, s.created) if s.created else now
                try:
                    runs = (r for r in s.upcoming(start) if self._counts(s, r, taken))
                    upcoming.append((next(runs), s))
                except (OverflowError, ValueError):  # created in the year 9999, say
                    why = f"schedule {s.id} has no start after {start:%Y-%m-%d}"
                    self._say_once(("no-next", s.id), "error", why, s)
        if not upcoming:
            return None
        run, schedule = min(upcoming, key=lambda pair: (pair[0].astimezone(UTC), pair[1].id))
        if self._announced != (schedule.id, run):
            self._announced = (schedule.id, run)
            self._say("next", f"next: {schedule.profile} at {run:%a %d %b %H:%M %Z}",
                      schedule, run)  # fmt: skip
        return run

    async def _sleep(self, until: datetime | None) -> None:
        assert self._wake is not None
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep_until(until)))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._wake.clear()
        failed = [w.exception() for w in done if not w.cancelled() and w.exception()]
        if failed:
            # A timer that cannot be set (no file descriptors left): say so, and do not
            # spin; the next wake is at most RETRY_S late.
            self._say("error", f"waiting for the next run failed: {failed[0]}")
            await asyncio.sleep(RETRY_S)

    def _device(self, schedule: Schedule) -> DeviceAddress:
        return parse_device_url(schedule.device or self.settings.device or DEFAULT_DEVICE)

    def _limits(self, profile: Profile, now: datetime, device: str | None = None) -> None:
        """Check the limits, counting the programs this daemon is starting (but ``device``'s).

        Raises:
            LimitReached: which limit, and when.
            JournalError: the journal cannot be read.
        """
        starting = [p.as_session(d) for d, p in self.programs.items() if d != device]
        starting += self.house.starting_sessions()  # the bridge's, still connecting
        check_journal(self.journal, planned_s=profile.total_minutes * 60, now=now,
                      limits=self.settings.limits, config=str(config_file()),
                      starting=[s for s in starting if s is not None])  # fmt: skip

    def _take(self, schedule: Schedule, run: datetime, now: datetime) -> bool:
        """Start the run, or journal why not; either way it is taken, once.

        Returns False if the journal could not be used (the run is then not taken,
        and is looked at again on the next wake).
        """
        address = self._device(schedule)
        device = str(address)
        late = now - run
        profile: Profile | None = None
        try:
            if late > self.grace:
                outcome, why = "missed", (
                    f"not started: found {_minutes(late)} late, past the {self.grace_text} "
                    "grace window (the computer asleep or off, the daemon not running, the "
                    "clock set forward, or the journal unusable until then)"
                )  # fmt: skip
            elif device in self.programs:
                other = self.programs[device].schedule
                outcome, why = "busy", (
                    f"not started: {device} was running schedule {other.id} ({other.profile})"
                )  # fmt: skip
            else:
                # The limits are checked once the massager answered (`_program`).
                try:
                    profile = find_profile(schedule.profile, self.profiles_dir)
                    outcome, why = "started", ""
                except MassagerError as error:  # a profile gone or broken
                    outcome, why = "refused", f"not started: {error}"
            not_run = None if outcome == "started" else (device, schedule.profile, why)
            if not self.journal.take_run(schedule.id, run, outcome, not_run=not_run, now=now):
                return True  # another daemon took it
        except JournalError as error:
            when = run.astimezone(ZoneInfo(schedule.tz))
            self._say_once(("journal", schedule.id, run), "error",
                           f"{error}; the run of {when:%a %d %b %H:%M %Z} is not started yet",
                           schedule, run)  # fmt: skip
            return False
        if outcome != "started":
            self._say(outcome, why, schedule, run)  # type: ignore[arg-type]
            return True
        assert profile is not None
        entry = _Program(schedule, started=now, planned_s=profile.total_minutes * 60)
        self.programs[device] = entry
        entry.task = asyncio.create_task(self._program(entry, run, address, profile))
        entry.task.add_done_callback(lambda _: self.programs.pop(device, None))
        return True

    async def _program(
        self, entry: _Program, run: datetime, address: DeviceAddress, profile: Profile
    ) -> None:
        """Run the program; a massager that does not answer is tried until the grace ends."""
        schedule = entry.schedule
        while True:
            late = self.clock.now() - run
            self._say("started", f"starting {profile.name} on {address} ({_minutes(late)} late)",
                      schedule, run)  # fmt: skip
            program = entry.program = JournaledProgram(
                address,
                profile,
                journal=self.journal,
                source="schedule",
                policy=self.policy,
                on_journal_error=lambda error: self._say("error", f"{error}; not journaled"),
                limits=lambda: self._limits(profile, self.clock.now(), device=str(address)),
                now=self.clock.now,
            )
            try:
                result = await self._held(address, program)
            except asyncio.CancelledError:
                ended = program.interrupted_result
                why = ended.message if ended else "it had not begun"
                by = "as the daemon stops" if self._stopping else "by a stop or vent"
                self._say("ended", f"ended {by}: {why}", schedule, run)
                raise
            except HeldElsewhere as error:  # a person runs it from a terminal: not queued
                why = f"not started: {error}"
                with contextlib.suppress(JournalError):
                    self.journal.not_run(str(address), profile.name, "schedule", "busy",
                                         why, at=run)  # fmt: skip
                self._say("busy", why, schedule, run)
                return
            except CalledOff as error:  # a person said stop: not tried again
                with contextlib.suppress(JournalError):
                    self.journal.not_run(str(address), profile.name, "schedule", "stopped",
                                         f"not started: {error}", at=run)  # fmt: skip
                self._say("ended", str(error), schedule, run)
                return
            except (LimitReached, ProfileRefused) as error:
                if program.began:  # a resume on a massager that cannot run it any more
                    self._say("error", str(error), schedule, run)
                    return
                why = f"not started: {error}"  # refused before anything was sent
                with contextlib.suppress(JournalError):
                    self.journal.not_run(str(address), profile.name, "schedule", "refused",
                                         why, at=run)  # fmt: skip
                self._say("refused", why, schedule, run)
                return
            except JournalError as error:  # the limits could not be checked: not started
                if await self._retry(entry, run, address, profile, error, "error"):
                    continue
                return
            except MassagerError as error:
                if program.began:
                    self._say("error", str(error), schedule, run)
                    return
                if await self._retry(entry, run, address, profile, error):
                    continue
                return
            except Exception as error:  # a bug or the system: said, journaled, not fatal
                if not program.began:
                    with contextlib.suppress(JournalError):
                        self.journal.not_run(str(address), profile.name, "schedule", "error",
                                             f"not started: {error!r}", at=run)  # fmt: skip
                self._say("error", f"the program failed: {error!r}", schedule, run)
                return
            self._say("ended", f"{result.outcome}: {result.message}", schedule, run)
            return

    async def _held(self, address: DeviceAddress, program: JournaledProgram) -> ProgramResult:
        """Run ``program`` through the holder of its massager: the bridge's, or one held for it.

        Raises:
            HeldElsewhere: another program on this computer holds the massager.
        """
        holder = self.house.get(address)
        if holder is not None:  # the bridge's, in this process: it watches the massager
            async with holder.program(program, source="schedule"):
                return await program.run()
        async with (
            holding(self.house, address) as held,
            held.program(program, source="schedule"),
        ):
            return await program.run()

    async def _retry(self, entry: _Program, run: datetime, address: DeviceAddress,
                     profile: Profile, error: MassagerError,
                     outcome: Literal["unreachable", "error"] = "unreachable") -> bool:  # fmt: skip
        """After a failed try: wait and say True, or journal why not and say False.

        A try fails when the massager did not answer (``unreachable``), or when the
        journal could not be read to check the limits (``error``). Each try checks
        the limits again once the massager answers (a session may have begun
        meanwhile, from the command line say); all of it within the grace window.
        """
        schedule = entry.schedule
        why = f"not started: {error}"
        if self.clock.now() + timedelta(seconds=RETRY_S) - run <= self.grace:
            self._say(outcome, f"{why}; trying again in {RETRY_S:g} s", schedule, run)
            await asyncio.sleep(RETRY_S)
            return True
        with contextlib.suppress(JournalError):
            self.journal.not_run(str(address), profile.name, "schedule", outcome, why, at=run)
        self._say(outcome, why, schedule, run)
        return False

    async def _end_programs(self) -> None:
        self._stopping = True
        tasks = [p.task for p in self.programs.values() if p.task is not None]
        if tasks:
            self._say("stopping", f"stopping {len(tasks)} program(s); the massagers vent")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _say_once(
        self,
        key: tuple[object, ...],
        event: DaemonEventKind,
        message: str,
        schedule: Schedule | None = None,
        due: datetime | None = None,
    ) -> None:
        """`_say`, but only the first time for ``key`` (a failure repeated every wake)."""
        if key not in self._said:
            self._said.add(key)
            self._say(event, message, schedule, due)

    def _say(
        self,
        event: DaemonEventKind,
        message: str,
        schedule: Schedule | None = None,
        due: datetime | None = None,
    ) -> None:
        self.on_event(
            DaemonEvent(
                event=event,
                message=message,
                schedule=schedule.id if schedule else None,
                profile=schedule.profile if schedule else None,
                device=str(self._device(schedule)) if schedule else None,
                due=due,
            )
        )


def _minutes(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds:.0f} s" if abs(seconds) < 120 else f"{seconds / 60:.0f} min"
