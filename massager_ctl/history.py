"""What `history` shows: each session with how the legs felt before and after, and a CSV.

A rating is tied to sessions by time, not by its place in a list: a rating made
within `RATING_WINDOW` (4 hours) after a session ended is that session's
"after" (the first such rating, and for the session that ended last before it),
and one made within 4 hours before a session began is its "before" (the last
such rating). So a rating between two sessions of one evening can be both the
first one's after and the second one's before; one made during a session, or
far from any, stands on its own. Four hours covers a session in the evening and
a rating at bedtime, and keeps a rating the next morning apart.

Only sessions that put the legs under pressure are shown, and tied to ratings,
unless all are asked for: a demo (on a simulator) and a start that put no
pressure on the legs (refused, missed, or lost before it began) are hidden.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 11, 2, 21, 0, tzinfo=UTC)
>>> evening = Session(id=1, started_at=at, ended_at=at + timedelta(minutes=45),
...                   device="sim://", profile="evening-45", source="cli",
...                   outcome="completed", pressure_s=2700, message="")
>>> felt = [Rating(id=1, at=at - timedelta(minutes=5), score=7, note=""),
...         Rating(id=2, at=at + timedelta(hours=1), score=3, note="calmer")]
>>> [(e.before.score, e.after.score) for e in tie([evening], felt)]
[(7, 3)]
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TextIO

from .journal import Rating, Session

RATING_WINDOW = timedelta(hours=4)
"""How long before a session a rating is its "before", and after it its "after"."""

CSV_HEADER = (
    "date",
    "start",
    "program",
    "minutes under pressure",
    "outcome",
    "legs before (0 calm - 10 worst)",
    "legs after (0 calm - 10 worst)",
    "notes",
)


def under_pressure(session: Session) -> bool:
    """Whether a session is shown by default: not a demo, and it may have squeezed the legs.

    One with no ending (still running, or its controller was killed) may have.
    """
    return not session.demo and (session.pressure_s > 0 or session.outcome is None)


def ended_at(session: Session) -> datetime:
    """When a session ended; one with no ending is taken to have run its planned length."""
    return session.ended_at or session.started_at + timedelta(seconds=session.planned_s)


@dataclass(frozen=True)
class Entry:
    """One session with the ratings tied to it."""

    session: Session
    before: Rating | None = None
    after: Rating | None = None

    def as_json(self) -> dict[str, Any]:
        """The session as JSON, with how it ended and its ratings (None where there is none)."""
        return self.session.model_dump(mode="json") | {
            "ended": self.session.ended,
            "under_pressure": under_pressure(self.session),
            "rating_before": None if self.before is None else self.before.model_dump(mode="json"),
            "rating_after": None if self.after is None else self.after.model_dump(mode="json"),
        }


def tie(
    sessions: list[Session], ratings: list[Rating], window: timedelta = RATING_WINDOW
) -> list[Entry]:
    """Every session (in order) with the ratings tied to it, as the module says."""
    tied = [s for s in sessions if under_pressure(s)]
    after: dict[int, Rating] = {}
    before: dict[int, Rating] = {}
    for rating in sorted(ratings, key=lambda r: r.at):
        ended = [s for s in tied if ended_at(s) <= rating.at <= ended_at(s) + window]
        if ended:
            after.setdefault(max(ended, key=ended_at).id, rating)  # the first one after it
        coming = [s for s in tied if s.started_at - window <= rating.at < s.started_at]
        if coming:
            before[min(coming, key=lambda s: s.started_at).id] = rating  # the last one before
    return [Entry(s, before.get(s.id), after.get(s.id)) for s in sessions]


def after_which(rating: Rating, sessions: list[Session]) -> Session | None:
    """The session a rating made now is the "after" of, if any."""
    for entry in reversed(tie(sessions, [rating])):
        if entry.after is not None:
            return entry.session
    return None


def untied(entries: Iterable[Entry], ratings: list[Rating]) -> list[Rating]:
    """The ratings tied to no session."""
    used = {r.id for e in entries for r in (e.before, e.after) if r is not None}
    return [r for r in ratings if r.id not in used]


@dataclass(frozen=True)
class Hidden:
    """What `history` leaves out unless all is asked for."""

    demos: int
    no_pressure: int

    def __bool__(self) -> bool:
        return bool(self.demos or self.no_pressure)

    def describe(self) -> str:
        """In words, for the line under the history."""
        parts = []
        if self.demos:
            parts.append(f"{self.demos} demo{'s' if self.demos > 1 else ''} (on a simulator)")
        if self.no_pressure:
            many = self.no_pressure > 1
            parts.append(
                f"{self.no_pressure} start{'s' if many else ''} that put no pressure on the legs "
                "(refused, missed, or ended before it began)"
            )
        return "Not shown: " + " and ".join(parts) + "; `history --all` lists them."


def shown(entries: list[Entry], *, everything: bool) -> tuple[list[Entry], Hidden]:
    """The entries to show, and what was left out."""
    if everything:
        return entries, Hidden(0, 0)
    kept = [e for e in entries if under_pressure(e.session)]
    demos = sum(1 for e in entries if e.session.demo)
    return kept, Hidden(demos, len(entries) - len(kept) - demos)


@dataclass(frozen=True)
class Day:
    """One day of the picture: how the legs felt (the day's mean, rounded) and sessions."""

    rating: int | None
    sessions: int


def by_day(sessions: list[Session], ratings: list[Rating]) -> dict[date, Day]:
    """Each local day that has a rating or a session that put the legs under pressure."""
    scores: dict[date, list[int]] = {}
    for rating in ratings:
        scores.setdefault(rating.at.astimezone().date(), []).append(rating.score)
    ran: dict[date, int] = {}
    for session in sessions:
        if under_pressure(session):
            day = session.started_at.astimezone().date()
            ran[day] = ran.get(day, 0) + 1
    return {
        day: Day(
            # Half up, as a person rounds: a 4.5 day reads 5.
            rating=int(sum(scores[day]) / len(scores[day]) + 0.5) if day in scores else None,
            sessions=ran.get(day, 0),
        )
        for day in sorted(scores.keys() | ran.keys())
    }


def _score(rating: Rating | None) -> str:
    return "" if rating is None else str(rating.score)


def write_csv(entries: list[Entry], out: TextIO) -> None:
    """One row per session, in this computer's local time, for a person or a doctor to read."""
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for entry in entries:
        session = entry.session
        began = session.started_at.astimezone()
        outcome = session.ended.replace("_", " ") + (" (demo on a simulator)" if session.demo
                                                      else "")  # fmt: skip
        notes = "; ".join(
            f"{when}: {r.note}"
            for when, r in (("before", entry.before), ("after", entry.after))
            if r is not None and r.note
        )
        writer.writerow(
            (
                f"{began:%Y-%m-%d}",
                f"{began:%H:%M}",
                session.profile,
                f"{session.minutes:g}",
                outcome,
                _score(entry.before),
                _score(entry.after),
                notes,
            )
        )
