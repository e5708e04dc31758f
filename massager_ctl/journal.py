"""The journal: every session and every rating of how the legs feel, in SQLite.

It lives in the user's state folder (``journal.sqlite3``; platformdirs, so
``$XDG_STATE_HOME/massager-ctl`` on Linux). A session is written when it begins
and completed when it ends, each in its own transaction, so a controller killed
mid-program leaves a session marked as never finished rather than no trace, and
nothing already recorded is lost by an interrupted write (SQLite's journal
rolls a half-done transaction back). Times are stored in UTC and shown in local
time.

Ratings are 0 to 10 for how restless the legs are: 0 calm, 10 the worst; lower
is better, as on the severity scales used in trials.

>>> import tempfile, pathlib
>>> journal = Journal(pathlib.Path(tempfile.mkdtemp()) / "j.sqlite3")
>>> at = datetime(2026, 11, 2, 21, 0, tzinfo=UTC)
>>> sid = journal.begin("sim://", "evening-45", "cli", now=at)
>>> journal.end(sid, "completed", pressure_s=2700, message="ran to the end", now=at)
>>> [(s.profile, s.ended, s.minutes) for s in journal.sessions()]
[('evening-45', 'completed', 45.0)]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from .errors import InputError, MassagerError
from .printable import printable

Ended = Literal["completed", "stopped", "link_lost", "fault", "missed", "other", "unfinished"]

ENDINGS: dict[str, Ended] = {
    "completed": "completed",
    "lease_ended": "completed",
    "stopped": "stopped",
    "stopped_on_remote": "stopped",
    "interrupted": "stopped",
    "vented": "stopped",
    "link_lost": "link_lost",
    "fault": "fault",
    "missed": "missed",
    "refused": "missed",
    "busy": "missed",
    "unreachable": "link_lost",
}
"""How a program's outcome counts in the journal; anything else is "other"."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    device TEXT NOT NULL,
    profile TEXT NOT NULL,
    source TEXT NOT NULL,
    outcome TEXT,
    pressure_s REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ratings_at ON ratings (at);
"""
MIGRATIONS = {
    2: """
ALTER TABLE sessions ADD COLUMN planned_s REAL NOT NULL DEFAULT 0;
CREATE TABLE runs (
    schedule_id TEXT NOT NULL,
    due_at TEXT NOT NULL,
    taken_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    PRIMARY KEY (schedule_id, due_at)
);
CREATE TABLE marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
    3: """
ALTER TABLE sessions ADD COLUMN demo INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET demo = 1, source = 'cli' WHERE source = 'demo';
""",
}
"""Version n's changes to version n-1. ``runs`` holds every scheduled start the daemon
took (started, or journaled as missed): its key is what makes a run happen at most once,
across restarts and clock changes. ``marks`` holds how far the daemon has looked.
``demo`` marks a session on a simulator (before version 3 only ``--speed`` runs were
demos, journaled with the source ``demo``; they came from the command line)."""
VERSION = max(MIGRATIONS)

LOCK_WAIT_S = 0.5
"""How long a write waits for another writer. Short: the CLI writes from the event loop
that also keeps the massager's link alive, and a journal entry is never worth a vent."""


class JournalError(MassagerError):
    """The journal file cannot be read or written."""


class Session(BaseModel):
    """One session as the journal holds it."""

    model_config = ConfigDict(frozen=True)

    id: int
    started_at: datetime
    ended_at: datetime | None
    device: str
    profile: str
    source: str
    outcome: str | None
    pressure_s: float
    message: str
    planned_s: float = 0.0
    demo: bool = False
    """On a simulator: it squeezed no leg, so it counts toward no limit and no goal."""

    @model_validator(mode="before")
    @classmethod
    def _old_demo(cls, data: Any) -> Any:
        # Before the journal's version 3 a demo was told by its source alone.
        if isinstance(data, dict) and data.get("source") == "demo":
            return data | {"demo": True}
        return data

    @classmethod
    def starting(
        cls, *, device: str, profile: str, source: str, started_at: datetime, planned_s: float
    ) -> Session:
        """A session the journal does not hold yet (it is connecting), as the limits see it."""
        return cls(id=0, started_at=started_at, ended_at=None, device=device, profile=profile,
                   source=source, outcome=None, pressure_s=0.0, message="",
                   planned_s=planned_s)  # fmt: skip

    @property
    def ended(self) -> Ended:
        """How it ended, in the journal's few words."""
        if self.outcome is None:
            return "unfinished"
        return ENDINGS.get(self.outcome, "other")

    @property
    def minutes(self) -> float:
        """Minutes under pressure."""
        return round(self.pressure_s / 60, 1)


class Rating(BaseModel):
    """How the legs felt, 0 (calm) to 10 (the worst), with an optional note."""

    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    score: int
    note: str

    @field_validator("note", mode="after")
    @classmethod
    def _printable(cls, value: str) -> str:
        # Shown in a terminal and in a spreadsheet: no escape sequence reaches either.
        return printable(value)


def _utc(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("journal times must be aware")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _insert_not_run(db: sqlite3.Connection, device: str, profile: str, source: str,
                    outcome: str, message: str, at: datetime) -> int:  # fmt: skip
    """Insert a session that was due at ``at`` and did not run; returns its id."""
    cursor = db.execute(
        "INSERT INTO sessions (started_at, ended_at, device, profile, source, outcome, message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_utc(at), _utc(at), device, profile, source, outcome, message),
    )
    return int(cursor.lastrowid or 0)


class Journal:
    """The journal file; each call opens it, does one transaction, and closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on the journal; a ``write`` first checks the whole file.

        SQLite writes happily into the whole pages of a partly damaged file; a
        write would then add to a journal that no longer holds what it says.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=LOCK_WAIT_S)) as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > VERSION:
                    raise JournalError(
                        f"the journal {self.path} was written by a newer massager-ctl "
                        f"(version {version}); it is left as it is"
                    )
                if version < VERSION:
                    self._upgrade(db)
                with db:  # one transaction: all of it is written, or none
                    if write:
                        # The write lock first, so no one changes the file between the
                        # check and the write.
                        db.execute("BEGIN IMMEDIATE")
                        self._check_whole(db)
                    yield db
        except sqlite3.DatabaseError as error:
            raise JournalError(f"the journal {self.path} cannot be used: {error}") from None
        except OSError as error:
            raise JournalError(f"the journal {self.path} cannot be opened: {error}") from None

    def _check_whole(self, db: sqlite3.Connection) -> None:
        """Refuse to write to a damaged file (`PRAGMA quick_check`, a few ms for years of use).

        Raises:
            JournalError: what SQLite found first; the file is left as it is.
        """
        found = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
        if found != ["ok"]:
            raise JournalError(
                f"the journal {self.path} is damaged ({found[0] if found else 'unreadable'}); "
                "it is left as it is: move it away, and a new one is started"
            )

    def _upgrade(self, db: sqlite3.Connection) -> None:
        # One transaction that holds the write lock from the start: a crash mid-upgrade
        # leaves the old version whole, and of two processes upgrading at once the
        # second finds the work done.
        with db:
            db.execute("BEGIN IMMEDIATE")
            self._check_whole(db)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            steps = [SCHEMA] if version == 0 else []
            steps += [MIGRATIONS[n] for n in sorted(MIGRATIONS) if max(version, 1) < n]
            for statement in ";".join(steps).split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {VERSION}")

    def begin(
        self,
        device: str,
        profile: str,
        source: str,
        *,
        planned_s: float = 0.0,
        demo: bool = False,
        now: datetime | None = None,
    ) -> int:
        """Record a session that begins now; returns its id for `end`.

        ``planned_s`` is the program's length: until the session ends, the safety
        limits count it as running that long. A ``demo`` (on a simulator) counts
        toward nothing.
        """
        with self._db(write=True) as db:
            cursor = db.execute(
                "INSERT INTO sessions (started_at, device, profile, source, planned_s, demo) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_utc(now), device, profile, source, planned_s, int(demo)),
            )
            return int(cursor.lastrowid or 0)

    def not_run(
        self, device: str, profile: str, source: str, outcome: str, message: str, *, at: datetime
    ) -> int:
        """Record a session that was due at ``at`` and did not run (missed, refused)."""
        with self._db(write=True) as db:
            return _insert_not_run(db, device, profile, source, outcome, message, at)

    def take_run(
        self,
        schedule_id: str,
        due_at: datetime,
        outcome: str,
        *,
        not_run: tuple[str, str, str] | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Claim the run of ``schedule_id`` due at ``due_at``; False if it was taken before.

        The claim is written before the program starts, so a run is started at most
        once even if the daemon is killed while starting it. For a run that does not
        start, ``not_run`` (device, profile, why) is journaled as a session ending
        with ``outcome``, in the same transaction as the claim.
        """
        with self._db(write=True) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs (schedule_id, due_at, taken_at, outcome) "
                "VALUES (?, ?, ?, ?)",
                (schedule_id, _utc(due_at), _utc(now), outcome),
            )
            if cursor.rowcount != 1:
                return False
            if not_run is not None:
                device, profile, message = not_run
                _insert_not_run(db, device, profile, "schedule", outcome, message, due_at)
            return True

    def taken_runs(self, since: datetime) -> set[tuple[str, datetime]]:
        """The (schedule id, due time) of every run taken that was due at or after ``since``."""
        with self._db() as db:
            rows = db.execute(
                "SELECT schedule_id, due_at FROM runs WHERE due_at >= ?", (_utc(since),)
            ).fetchall()
        return {(row[0], datetime.fromisoformat(row[1])) for row in rows}

    def mark(self, name: str) -> datetime | None:
        """The moment last stored under ``name``, if any."""
        with self._db() as db:
            row = db.execute("SELECT value FROM marks WHERE name = ?", (name,)).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def set_mark(self, name: str, moment: datetime) -> None:
        """Store ``moment`` under ``name``."""
        with self._db(write=True) as db:
            db.execute(
                "INSERT INTO marks (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, _utc(moment)),
            )

    def end(
        self,
        session_id: int,
        outcome: str,
        *,
        pressure_s: float,
        message: str = "",
        now: datetime | None = None,
    ) -> None:
        """Complete the session with how it ended and its time under pressure."""
        with self._db(write=True) as db:
            db.execute(
                "UPDATE sessions SET ended_at = ?, outcome = ?, pressure_s = ?, message = ? "
                "WHERE id = ?",
                (_utc(now), outcome, pressure_s, message, session_id),
            )

    def rate(self, score: int, note: str = "", *, now: datetime | None = None) -> Rating:
        """Record how the legs feel, 0 (calm) to 10 (the worst).

        Raises:
            InputError: the score is not 0 to 10.
        """
        if not 0 <= score <= 10:
            raise InputError(f"a rating is 0 (calm) to 10 (the worst), not {score}")
        at = _utc(now)
        with self._db(write=True) as db:
            cursor = db.execute(
                "INSERT INTO ratings (at, score, note) VALUES (?, ?, ?)", (at, score, note)
            )
            rating_id = int(cursor.lastrowid or 0)
        return Rating(id=rating_id, at=datetime.fromisoformat(at), score=score, note=note)

    def sessions(self, since: datetime | None = None) -> list[Session]:
        """Sessions that began at or after ``since`` (all by default), oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, started_at, ended_at, device, profile, source, outcome, pressure_s, "
                "message, planned_s, demo FROM sessions WHERE started_at >= ? "
                "ORDER BY started_at, id",
                (_utc(since) if since else "",),
            ).fetchall()
        keys = ("id", "started_at", "ended_at", "device", "profile", "source", "outcome",
                "pressure_s", "message", "planned_s", "demo")  # fmt: skip
        return [
            Session.model_validate(
                dict(zip(keys, row, strict=True))
                | {"started_at": _parse(row[1]), "ended_at": _parse(row[2]), "demo": bool(row[10])}
            )
            for row in rows
        ]

    def first_use(self) -> datetime | None:
        """When the first session that put the legs under pressure began (no demo)."""
        with self._db() as db:
            row = db.execute(
                "SELECT MIN(started_at) FROM sessions WHERE pressure_s > 0 AND demo = 0 "
                "AND source != 'demo'"
            ).fetchone()
        return _parse(row[0])

    def ratings(self, since: datetime | None = None) -> list[Rating]:
        """Ratings at or after ``since`` (all by default), oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, at, score, note FROM ratings WHERE at >= ? ORDER BY at, id",
                (_utc(since) if since else "",),
            ).fetchall()
        return [
            Rating(id=r[0], at=datetime.fromisoformat(r[1]), score=r[2], note=r[3]) for r in rows
        ]


class Week(BaseModel):
    """One week (Monday to Sunday, local time) of the history."""

    model_config = ConfigDict(frozen=True)

    starts: date
    sessions: int
    """Sessions that put the legs under pressure, however they ended."""
    minutes: float
    goal: int
    mean_rating: float | None
    in_use: bool = True
    """False for a week that ended before the first session ever: it is not judged."""
    current: bool = False
    """This week, still going: not below the goal yet."""

    @property
    def met(self) -> bool:
        """Whether the week reached the goal."""
        return self.sessions >= self.goal

    @property
    def standing(self) -> Literal["met", "below", "so far", "before first use"]:
        """The week against the goal, in the words `history` shows."""
        if self.met:
            return "met"
        if not self.in_use:
            return "before first use"
        return "so far" if self.current else "below"


def counts(session: Session) -> bool:
    """Whether a session counts toward the weekly goal: it put legs under pressure (no demo)."""
    return session.pressure_s > 0 and not session.demo


def weeks(
    sessions: list[Session],
    ratings: list[Rating],
    *,
    goal: int,
    first: date,
    last: date,
    first_use: date | None = date.min,
    today: date | None = None,
) -> list[Week]:
    """Weekly totals from the Monday on or before ``first`` to the week of ``last``.

    A week that ended before ``first_use`` (the day of the first session ever;
    None: there has been none) is not judged against the goal, and the week of
    ``today`` is not below it yet.
    """
    monday = first - timedelta(days=first.weekday())
    result = []
    while monday <= last:
        sunday = monday + timedelta(days=7)
        these = [s for s in sessions if monday <= s.started_at.astimezone().date() < sunday]
        scores = [r.score for r in ratings if monday <= r.at.astimezone().date() < sunday]
        result.append(
            Week(
                starts=monday,
                sessions=sum(1 for s in these if counts(s)),
                minutes=round(sum(s.pressure_s for s in these if counts(s)) / 60, 1),
                goal=goal,
                mean_rating=round(sum(scores) / len(scores), 1) if scores else None,
                in_use=first_use is not None and first_use < sunday,
                current=today is not None and monday <= today < sunday,
            )
        )
        monday = sunday
    return result
