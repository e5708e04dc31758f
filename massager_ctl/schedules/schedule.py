"""Bedtime schedules: which program runs on which evenings, and when the next runs are.

Schedules live in ``schedules.toml`` in the user's config folder, one
``[[schedule]]`` table each, written atomically (a new file renamed over the
old) so a crash mid-write leaves the old file whole. Each change (read, change,
write) holds a lock (``.schedules.toml.lock`` beside it), so changes made at
once are all kept, and is written with tomlkit, so what a person wrote in the
file (comments, order, layout) stays: only the values that changed, and the
tables added or removed, differ. A file damaged by hand is reported with its
path and line and is never overwritten: fix it, or move it away, and the next
change writes a fresh one.

A schedule starts at a wall-clock time in its own time zone (``--tz``, else
this computer's), either given (``--at 21:45``) or counted back from when
symptoms usually begin (``--before 22:30 --lead 60m`` starts at 21:30, as the
compression trial wore the wraps an hour before). Across daylight-saving
changes a start means the wall-clock time of that evening:

- on the night clocks spring forward, a start inside the skipped hour (02:30
  when 02:00 jumps to 03:00) runs at the same distance after the jump (03:30);
- on the night clocks fall back, a start inside the repeated hour (01:30 when
  02:00 goes back to 01:00) runs once, at its first occurrence.

>>> s = Schedule(id="a1", profile="evening-45", days=["mon"], at="21:45", tz="Europe/Berlin")
>>> [t.isoformat() for t in s.runs_after(datetime(2026, 11, 1, tzinfo=UTC), count=2)]
['2026-11-02T21:45:00+01:00', '2026-11-09T21:45:00+01:00']
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, MutableSequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomlkit
from filelock import FileLock, Timeout
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Comment, Item, Table

from ..errors import InputError
from ..folders import why_not_written
from ..tomlfiles import describe_errors, not_utf8, parse_toml

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LOCK_WAIT_S = 10.0
"""How long a change waits for another one to finish before it gives up and says so."""
HEADER = "massager-ctl schedules; edit with `massager-ctl schedule`, or by hand."


class ScheduleError(InputError):
    """A schedule that cannot be used, or a schedules file that cannot be read."""


def local_zone() -> str:
    """This computer's IANA time zone name (``TZ``, else /etc/localtime), else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name and _zone_ok(name):
        return name
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    match = re.search(r"zoneinfo/(.+)$", target)
    return match.group(1) if match and _zone_ok(match.group(1)) else "UTC"


def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _clock_time(value: object) -> object:
    """A TOML local time as it is, and ``"21:45"`` as that time; nothing else.

    Pydantic would read the number 21 as 00:00:21, and the daemon would start a
    program at midnight: a start time is never a number.
    """
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        # ASCII digits only: full-width or other scripts' digits are not refused in the
        # file and taken on the command line, or the other way round.
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip(), re.ASCII)
        if match:
            return time(int(match.group(1)), int(match.group(2)))
    shown = f"the number {value}" if isinstance(value, int | float) else repr(value)
    raise ValueError(f'must be a time of day, as 21:45:00 or "21:45", not {shown}')


ClockTime = Annotated[time, BeforeValidator(_clock_time), Strict()]
"""A local time of day: a TOML time (``21:45:00``) or an ``"HH:MM"`` string."""


class Schedule(BaseModel):
    """One bedtime schedule.

    Numbers, times and flags are strict: ``at = 21`` or ``enabled = 1`` is an
    error naming the field, never read as 00:00:21 or true.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9]{2,12}$")
    profile: str = Field(min_length=1)
    days: list[Day] = Field(min_length=1)
    at: ClockTime | None = None
    """The start, local wall-clock time; or give `before` and `lead_s`."""
    before: ClockTime | None = None
    """When symptoms usually begin; the program starts `lead_s` earlier."""
    lead_s: float | None = Field(None, gt=0, le=12 * 3600, strict=True)
    device: str | None = None
    tz: str = Field(default_factory=local_zone)
    enabled: bool = Field(True, strict=True)
    created: datetime | None = Field(None, strict=True)
    """When it was added; the daemon never takes a run due before (none: always there)."""

    @field_validator("days")
    @classmethod
    def _each_day_once(cls, days: list[Day]) -> list[Day]:
        return sorted(set(days), key=DAYS.index)

    @field_validator("created")
    @classmethod
    def _aware(cls, moment: datetime | None) -> datetime | None:
        if moment is not None and moment.tzinfo is None:
            raise ValueError("created needs a time zone offset, as in 2026-11-21T20:00:00Z")
        return moment

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if not _zone_ok(name):
            raise ValueError(f"{name!r} is not a time zone name such as Europe/Berlin")
        return name

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str | None) -> str | None:
        if value is not None:
            from ..urls import parse_device_url

            parse_device_url(value)
        return value

    @model_validator(mode="after")
    def _one_way_to_start(self) -> Schedule:
        if (self.at is None) == (self.before is None):
            raise ValueError("give either at (a start time) or before with lead")
        if self.before is not None and self.lead_s is None:
            raise ValueError("before needs lead (how long before)")
        if self.at is not None and self.lead_s is not None:
            raise ValueError("lead goes with before, not with at")
        return self

    @property
    def start(self) -> time:
        """The local start time."""
        if self.at is not None:
            return self.at
        assert self.before is not None
        assert self.lead_s is not None
        moment = datetime.combine(date(2000, 1, 3), self.before) - timedelta(seconds=self.lead_s)
        return moment.time()

    @property
    def starts_day_before(self) -> bool:
        """Whether the lead reaches back past midnight (symptoms at 00:30, lead 2 h)."""
        if self.before is None or self.lead_s is None:
            return False
        return datetime.combine(date(2000, 1, 3), self.before) - timedelta(
            seconds=self.lead_s
        ) < datetime(2000, 1, 3)

    def run_on(self, evening: date) -> datetime:
        """The start on the evening of ``evening`` (a configured day), as an aware time.

        A start in a skipped hour (spring forward) lands that far after the jump; a
        start in a repeated hour (fall back) is its first occurrence.
        """
        zone = ZoneInfo(self.tz)
        day = evening - timedelta(days=1) if self.starts_day_before else evening
        naive = datetime.combine(day, self.start)
        # fold=0 is the first occurrence of a repeated time; for a skipped time it is
        # read with the offset from before the jump, i.e. that far after it.
        return naive.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)

    def runs_after(self, moment: datetime, *, count: int) -> list[datetime]:
        """The next ``count`` starts strictly after ``moment`` (aware)."""
        return [run for run, _ in zip(self.upcoming(moment), range(count), strict=False)]

    def runs_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every start after ``start`` and at or before ``end``, oldest first."""
        return list(itertools.takewhile(lambda run: run <= end, self.upcoming(start)))

    def upcoming(self, moment: datetime) -> Iterator[datetime]:
        """Every start after ``moment``, soonest first, without end (in the schedule's zone).

        Compare them as UTC: Python never finds a time in a repeated hour (01:30
        on the night clocks fall back) equal to a time in another zone.
        """
        zone = ZoneInfo(self.tz)
        day = moment.astimezone(zone).date() - timedelta(days=1)
        while True:
            if DAYS[day.weekday()] in self.days:
                run = self.run_on(day)
                if run > moment:
                    yield run
            day += timedelta(days=1)

    def same_runs(self, other: Schedule) -> bool:
        """Whether ``other`` runs the same program on the same device at the same times.

        ``--at 21:30`` and ``--before 22:30 --lead 60m`` are the same start.
        """

        def runs(s: Schedule) -> tuple[object, ...]:
            return (s.profile, s.device, s.tz, s.days, s.start, s.starts_day_before)

        return runs(self) == runs(other)

    @property
    def days_text(self) -> str:
        """``daily``, ``weekdays``, ``weekends`` or the days, as ``mon, thu``."""
        named = {DAYS: "daily", DAYS[:5]: "weekdays", DAYS[5:]: "weekends"}
        return named.get(tuple(self.days), ", ".join(self.days))

    def describe(self) -> str:
        """``mon, thu at 21:45 (Europe/Berlin)``, ``daily at 21:45 (...)``, or with ``before``."""
        days = self.days_text
        if self.at is not None:
            when = f"at {self.at:%H:%M}"
        else:
            assert self.before is not None
            assert self.lead_s is not None
            when = f"at {self.start:%H:%M}, {self.lead_s / 60:g} min before {self.before:%H:%M}"
        return f"{days} {when} ({self.tz})"


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule: list[Schedule] = Field(default_factory=list)


@dataclass(frozen=True)
class BrokenSchedule:
    """A ``[[schedule]]`` table that is not a schedule: where it is, and what is wrong."""

    file: Path
    line: int | None
    """The line its table begins on, if found."""
    id: str | None
    """Its id, if it has a readable one."""
    profile: str | None
    """The profile it names, if readable."""
    error: str
    """Each field at fault, as ``at: must be a time of day ...``."""

    def __str__(self) -> str:
        where = f" (the table at line {self.line})" if self.line else ""
        return f"{self.file}{where}: {self.error}"

    def as_json(self) -> dict[str, object]:
        """``{"file": ..., "line": ..., "id": ..., "profile": ..., "error": ...}``."""
        return {"file": str(self.file), "line": self.line, "id": self.id,
                "profile": self.profile, "error": self.error}  # fmt: skip


def _text(table: object, key: str) -> str | None:
    """``table[key]`` if ``table`` is a table and that is text, else None."""
    value = table.get(key) if isinstance(table, dict) else None
    return value if isinstance(value, str) else None


def _line_of_table(text: str, index: int) -> int | None:
    """The line on which the ``index``-th ``[[schedule]]`` table begins (1-based)."""
    found = -1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().replace(" ", "") == "[[schedule]]":
            found += 1
            if found == index:
                return number
    return None


class ScheduleBook:
    """The schedules file: read it, change it, write it back atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Schedule]:
        """Every schedule in the file (none if there is no file).

        Raises:
            ScheduleError: the file is unreadable, not TOML, or breaks the schema; the
                message names the file and the line.
        """
        text, data = self._read()
        try:
            return _File.model_validate(data).schedule
        except ValidationError as problem:
            first = problem.errors()[0]["loc"]
            index = first[1] if len(first) > 1 and isinstance(first[1], int) else None
            line = _line_of_table(text, index) if index is not None else None
            where = f" (the table at line {line})" if line else ""
            raise ScheduleError(
                f"{self.path}{where}: {describe_errors(problem, 'schedule')}; fix it or "
                "move it away (it is never overwritten while damaged)"
            ) from None

    def _read(self) -> tuple[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "", {}
        except UnicodeDecodeError as problem:
            raise ScheduleError(
                f"{self.path}: {not_utf8(problem)}; fix it or move it away (it is never "
                "overwritten while damaged)"
            ) from None
        except OSError as problem:
            raise ScheduleError(f"{self.path}: cannot read it: {problem.strerror}") from None
        try:
            return text, parse_toml(text)
        except tomllib.TOMLDecodeError as problem:
            raise ScheduleError(
                f"{self.path}: not valid TOML: {problem}; fix it or move it away "
                "(it is never overwritten while damaged)"
            ) from None

    def load_each(self) -> tuple[list[Schedule], list[BrokenSchedule]]:
        """The schedules that are valid, and each table that is not.

        A mistake in one schedule must not stop the others (the daemon runs them),
        nor hide them (``schedule list`` shows them).

        Raises:
            ScheduleError: the file as a whole cannot be read (not TOML, not UTF-8).
        """
        text, data = self._read()
        tables = data.get("schedule", [])
        if not isinstance(tables, list) or set(data) - {"schedule"}:
            self.load()  # raises, naming what is wrong with the file's shape
        good: list[Schedule] = []
        broken: list[BrokenSchedule] = []
        for index, table in enumerate(tables):
            try:
                good.append(Schedule.model_validate(table))
            except ValidationError as problem:
                broken.append(BrokenSchedule(
                    file=self.path, line=_line_of_table(text, index),
                    id=_text(table, "id"), profile=_text(table, "profile"),
                    error=describe_errors(problem, "schedule"),
                ))  # fmt: skip
        return good, broken

    @property
    def lock_path(self) -> Path:
        """The lock file that one change at a time holds (beside the schedules file)."""
        return self.path.with_name(f".{self.path.name}.lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock for a change: two changes at once would each write without the other.

        Raises:
            ScheduleError: another change holds it for `LOCK_WAIT_S`, or it cannot be made.
        """
        lock = FileLock(self.lock_path, timeout=LOCK_WAIT_S)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            raise ScheduleError(
                f"{self.path}: another massager-ctl has been changing it for {LOCK_WAIT_S:g} s "
                f"(its lock is {self.lock_path}); nothing was changed, try again"
            ) from None
        except OSError as problem:
            raise self._unwritable(problem) from None
        try:
            yield
        finally:
            lock.release()

    def save(self, schedules: list[Schedule]) -> None:
        """Write exactly ``schedules``, keeping what a person wrote around them.

        A table whose schedule is unchanged is left as it is, comments and all; a
        changed one gets only its changed values; a table whose schedule is not in
        ``schedules`` goes; a new schedule is a table at the end.

        Raises:
            ScheduleError: the file is damaged (it is never overwritten then), or
                cannot be locked or written.
        """
        with self._locked():
            self._write(self.load(), schedules)

    def _write(self, before: list[Schedule], schedules: list[Schedule]) -> None:
        """Change the file from ``before`` (as `load` read it, under the lock) to ``schedules``."""
        document = self._document()
        tables = document.get("schedule")
        if tables is not None and not before and not isinstance(tables, AoT) and not tables:
            # ``schedule = []``: an older massager-ctl wrote that after its last remove.
            document.remove("schedule")
            tables = None
        if tables is None:
            tables = tomlkit.aot()
            document.append("schedule", tables)
        if not isinstance(tables, AoT) or len(tables) != len(before):
            raise ScheduleError(
                f"{self.path}: its schedules are not written as [[schedule]] tables, which "
                "massager-ctl can change keeping the rest; nothing was changed"
            )
        wanted = {schedule.id: schedule for schedule in schedules}
        # `before` is what `load` read from these very tables, in their order.
        for index in reversed(range(len(tables))):
            old = before[index]
            if old.id not in wanted:
                _drop_comments_above(tables, index)
                del tables[index]
            elif wanted[old.id] != old:
                _update(tables[index], old, wanted[old.id])
        known = {schedule.id for schedule in before}
        for schedule in schedules:
            if schedule.id not in known:
                table = tomlkit.table()
                for key, value in _fields(schedule).items():
                    table.add(key, value)
                if len(tables) and not tables[-1].as_string().endswith("\n\n"):
                    tables[-1].add(tomlkit.nl())  # a blank line between tables, as a person would
                tables.append(table)
        if not len(tables):
            # An empty array of tables is written `schedule = []`, which reads back as no
            # tables at all: the next add would be refused. No schedules: no key.
            document.remove("schedule")
        self._replace(tomlkit.dumps(document))

    def _document(self) -> tomlkit.TOMLDocument:
        """The file as tomlkit reads it (comments and layout kept); a new one if none."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            document = tomlkit.document()
            document.add(tomlkit.comment(HEADER))
            document.add(tomlkit.nl())
            return document
        try:
            return tomlkit.parse(text)
        except (TOMLKitError, RecursionError) as problem:
            # Read whole by tomllib a moment ago: say so rather than lose what is there.
            raise ScheduleError(
                f"{self.path}: cannot be rewritten as it is ({problem}); nothing was changed"
            ) from None

    def _unwritable(self, problem: OSError) -> ScheduleError:
        return ScheduleError(
            f"{self.path}: cannot write it: {why_not_written(self.path, problem)}; nothing "
            "was changed"
        )

    def _replace(self, text: str) -> None:
        """Write ``text`` to a new file in the same folder, then rename it over the old.

        Raises:
            ScheduleError: it cannot be written (the old file is left as it was).
        """
        try:
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".schedules-")
        except OSError as problem:
            raise self._unwritable(problem) from None
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException as problem:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(problem, OSError):  # a full disk, say
                raise self._unwritable(problem) from None
            raise

    def add(self, schedule: Schedule) -> Schedule:
        """Add ``schedule`` (its id made unique) and write the file.

        Raises:
            ScheduleError: one already runs the same program at the same times
                (`Schedule.same_runs`), or as for `save`.
        """
        with self._locked():
            schedules = self.load()
            for other in schedules:
                if other.same_runs(schedule):
                    enable = f"massager-ctl schedule enable {other.id}"
                    state = "" if other.enabled else f", disabled (`{enable}`)"
                    raise ScheduleError(
                        f"schedule {other.id} already runs {other.profile} "
                        f"{other.describe()}{state}; nothing was added"
                    )
            taken = {s.id for s in schedules}
            while schedule.id in taken:
                schedule = schedule.model_copy(update={"id": new_id()})
            self._write(schedules, [*schedules, schedule])
        return schedule

    def remove(self, schedule_id: str) -> Schedule:
        """Remove the schedule ``schedule_id`` and write the file."""
        with self._locked():
            schedules = self.load()
            found = self._find(schedules, schedule_id)
            self._write(schedules, [s for s in schedules if s.id != found.id])
        return found

    def set_enabled(self, schedule_id: str, enabled: bool) -> Schedule:
        """Enable or disable the schedule ``schedule_id`` and write the file."""
        with self._locked():
            schedules = self.load()
            found = self._find(schedules, schedule_id)
            changed = found.model_copy(update={"enabled": enabled})
            self._write(schedules, [changed if s.id == found.id else s for s in schedules])
        return changed

    def _find(self, schedules: list[Schedule], schedule_id: str) -> Schedule:
        for schedule in schedules:
            if schedule.id == schedule_id:
                return schedule
        known = ", ".join(s.id for s in schedules) or "none yet"
        raise ScheduleError(f"there is no schedule {schedule_id!r} (schedules: {known})")


def new_id() -> str:
    """A short id a person can type."""
    return secrets.token_hex(2)


def _fields(schedule: Schedule) -> dict[str, Any]:
    """The values of one schedule table, as TOML types (a time is a TOML time)."""
    lead = schedule.lead_s
    values: dict[str, Any] = {
        "id": schedule.id,
        "profile": schedule.profile,
        "days": list(schedule.days),
        "at": schedule.at,
        "before": schedule.before,
        "lead_s": int(lead) if lead is not None and lead.is_integer() else lead,
        "device": schedule.device,
        "tz": schedule.tz,
        "enabled": schedule.enabled,
        "created": schedule.created.astimezone(UTC) if schedule.created else None,
    }
    return {key: value for key, value in values.items() if value is not None}


def _update(table: Table, old: Schedule, new: Schedule) -> None:
    """Change in ``table`` (which reads as ``old``) only the values in which ``new`` differs.

    A value replaced keeps its line's comment; one the table left to its default
    (say, no ``enabled``) is added only when it changes.
    """
    before, after = _fields(old), _fields(new)
    for key in before.keys() | after.keys():
        if before.get(key) == after.get(key):
            continue
        if key not in after:
            table.remove(key)
        elif key in table:
            table[key] = after[key]
        else:
            table.add(key, after[key])


def _drop_comments_above(tables: AoT, index: int) -> None:
    """Remove the comment lines just above table ``index`` (no blank line between): its own.

    tomlkit keeps them at the end of the table before, where they would come to
    describe the next one. The comments above the first table belong to the
    document's head, and are left alone.
    """
    if index == 0:
        return
    body: MutableSequence[tuple[Any, Item]] = tables[index - 1].value.body
    # Trailing items with no key come after every keyed one: removing them moves no index.
    while body and body[-1][0] is None and isinstance(body[-1][1], Comment):
        body.pop()


def next_runs(
    schedules: list[Schedule], moment: datetime, *, count: int
) -> list[tuple[datetime, Schedule]]:
    """The next ``count`` starts of the enabled schedules after ``moment``, soonest first."""
    runs = [
        (run, schedule)
        for schedule in schedules
        if schedule.enabled
        for run in schedule.runs_after(moment, count=count)
    ]
    return sorted(runs, key=lambda pair: (pair[0], pair[1].id))[:count]


@dataclass(frozen=True)
class Clash:
    """Two schedules whose runs come closer than a program and the rest after it.

    The daemon then starts the earlier and refuses the later (the limits' rest
    between sessions, or its device still busy).
    """

    this: Schedule
    """The schedule looked at."""
    other: Schedule
    """The schedule it clashes with."""
    earlier: Schedule
    earlier_at: datetime
    later: Schedule
    later_at: datetime
    minutes: float
    """The earlier's program, in minutes."""
    rest: timedelta

    def describe(self) -> str:
        """The clash in words, with its first day and times in this schedule's zone."""
        zone = ZoneInfo(self.this.tz)
        first, then = self.earlier_at.astimezone(zone), self.later_at.astimezone(zone)
        head = (
            f"this schedule and schedule {self.other.id} come too close: first on {first:%a %d %b}"
        )
        if first == then:
            return (
                f"{head}, {self.earlier.profile} and {self.later.profile} both start at "
                f"{first:%H:%M}, and only one would run"
            )
        rest = self.rest.total_seconds() / 60
        after = (
            f" and {rest:g} min of rest follow (rest_minutes in [limits] of config.toml)"
            if rest
            else ""
        )
        return (
            f"{head}, {self.later.profile} at {then:%H:%M} would not run, since "
            f"{self.earlier.profile} at {first:%H:%M} runs {self.minutes:g} min{after}"
        )


CLASH_HORIZON = timedelta(days=371)
"""How far ahead `clashes` looks: a year of weekdays, and both daylight-saving changes."""


def clashes(
    schedule: Schedule,
    others: list[Schedule],
    *,
    minutes: Mapping[str, float],
    rest: timedelta,
    after: datetime,
) -> list[Clash]:
    """The enabled ``others`` that ``schedule``'s runs would keep from running, or the reverse.

    A run keeps another from running when that one starts before the first has
    run its program (``minutes`` by profile name) and ``rest`` after it. Each
    clash is told once, at its first day after ``after``. A schedule whose
    program's length is not in ``minutes`` (its profile gone) is left out.
    """
    if not schedule.enabled or schedule.profile not in minutes:
        return []
    end = after + CLASH_HORIZON
    found = []
    for other in others:
        if not other.enabled or other.id == schedule.id or other.profile not in minutes:
            continue
        runs = sorted(
            (run.astimezone(UTC), s.id, s)
            for s in (schedule, other)
            for run in s.runs_between(after, end)
        )
        clash = _first_clash(runs, minutes, rest)
        if clash is not None:
            (earlier_at, _, earlier), (later_at, _, later) = clash
            found.append(Clash(this=schedule, other=other, earlier=earlier,
                               earlier_at=earlier_at, later=later, later_at=later_at,
                               minutes=minutes[earlier.profile], rest=rest))  # fmt: skip
    return found


def _first_clash(
    runs: list[tuple[datetime, str, Schedule]], minutes: Mapping[str, float], rest: timedelta
) -> tuple[tuple[datetime, str, Schedule], tuple[datetime, str, Schedule]] | None:
    """The first run of one schedule, and the run of the other it keeps from running."""
    for index, (start, _, schedule) in enumerate(runs):
        free = start + timedelta(minutes=minutes[schedule.profile]) + rest
        for next_run in runs[index + 1 :]:
            if next_run[0] >= free:
                break
            if next_run[2] is not schedule:
                return runs[index], next_run
    return None


def parse_days(text: str) -> list[Day]:
    """``mon,thu`` or ``daily`` or ``weekdays`` / ``weekends`` into day names.

    Raises:
        ScheduleError: a day that is not one of mon..sun.
    """
    words = [w.strip().lower()[:3] for w in text.split(",") if w.strip()]
    named = {"dai": list(DAYS), "wee": list(DAYS[:5])}
    if text.strip().lower() == "weekends":
        return ["sat", "sun"]
    days: list[Day] = []
    for word in words:
        if word in named and len(words) == 1:
            return named[word]
        if word not in DAYS:
            raise ScheduleError(
                f"{text!r} is not a list of days; write mon,thu (or daily, weekdays, weekends)"
            )
        days.append(word)
    if not days:
        raise ScheduleError("give at least one day, as in --days mon,thu")
    return days


def parse_clock(text: str, option: str) -> time:
    """``21:45`` into a time.

    Raises:
        ScheduleError: not HH:MM.
    """
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip(), re.ASCII)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ScheduleError(f"{option} {text!r} is not a time of day; write it as 21:45")
    return time(int(match.group(1)), int(match.group(2)))
