"""The safety envelope: limits on how much compression a day that no start may exceed.

Every start is checked against the journal before anything is sent to the
massager: from the command line, from a schedule, and (later) from MQTT. The
limits are in ``config.toml``::

    [limits]
    sessions_per_day = 3      # sessions in any 24 hours
    minutes_per_day = 120     # minutes under pressure in any 24 hours
    rest_minutes = 30         # from the end of one session to the start of the next

"A day" is any 24 hours, not the calendar day, so a session at 23:30 and
another at 00:15 are two sessions in one evening, as the legs feel them.
A session counts if it put the legs under pressure; one still running (or whose
controller was killed, so it never said how it ended) counts as running its
whole planned length. A session on a simulator (a demo, at any speed) squeezes
no leg: it is neither counted nor checked. A refusal names the setting behind it
and the file to change it in.

>>> from datetime import UTC, datetime, timedelta
>>> from ..journal import Session
>>> at = datetime(2026, 11, 2, 21, 0, tzinfo=UTC)
>>> last = Session(id=1, started_at=at, ended_at=at + timedelta(minutes=45), device="sim://",
...                profile="evening-45", source="cli", outcome="completed", pressure_s=2700,
...                message="", planned_s=2700)
>>> try:
...     check([last], planned_s=1800, now=at + timedelta(minutes=50), limits=SafetyLimits())
... except LimitReached as refusal:
...     print(refusal.allowed_at)
2026-11-02 22:15:00+00:00
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from ..errors import MassagerError
from ..journal import Journal, Session

WINDOW = timedelta(hours=24)


class SafetyLimits(BaseModel):
    """The limits in the config file's ``[limits]`` table (strict numbers: never ``"3"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    sessions_per_day: int = Field(3, ge=1, le=12)
    minutes_per_day: float = Field(120, gt=0, le=720)
    rest_minutes: float = Field(30, ge=0, le=720)


class LimitReached(MassagerError):
    """A start that would go beyond a limit; says which, and from when it is allowed."""

    exit_code = 3

    def __init__(self, message: str, allowed_at: datetime | None, setting: str = "") -> None:
        super().__init__(message)
        self.allowed_at = allowed_at
        """When the start would be allowed, or None if this program never fits."""
        self.setting = setting
        """The key in ``[limits]`` behind the refusal (``rest_minutes``, say)."""


@dataclass(frozen=True)
class _Use:
    """One session as the limits see it."""

    start: datetime
    end: datetime
    pressure_s: float


def _uses(sessions: list[Session], now: datetime) -> list[_Use]:
    uses = []
    for s in sessions:
        if s.outcome is None:
            # Still running, or its controller was killed: assume the whole program.
            use = _Use(s.started_at, s.started_at + timedelta(seconds=s.planned_s),
                       max(s.planned_s, s.pressure_s))  # fmt: skip
        elif s.pressure_s > 0 and s.ended_at is not None:
            use = _Use(s.started_at, s.ended_at, s.pressure_s)
        else:
            continue
        if use.start > now:
            # Journaled while the clock ran ahead, and it has since been set back: the
            # legs had it all the same, so it counts as if it had begun just now.
            ahead = use.start - now
            use = _Use(now, use.end - ahead, use.pressure_s)
        uses.append(use)
    return sorted(uses, key=lambda u: u.start)


def counted(session: Session) -> bool:
    """Whether a session counts toward the limits (demos squeeze no leg)."""
    return not session.demo


def _in_window(use: _Use, at: datetime) -> float:
    """Seconds under pressure of ``use`` within the 24 hours before ``at`` (at most)."""
    overlap = (min(use.end, at) - max(use.start, at - WINDOW)).total_seconds()
    return max(0.0, min(use.pressure_s, overlap))


def _refusal(uses: list[_Use], planned_s: float, at: datetime,
             limits: SafetyLimits) -> tuple[str, datetime | None, str] | None:  # fmt: skip
    """The first limit a start at ``at`` would break: why, when it clears, and its setting."""
    running = [u for u in uses if u.start <= at < u.end]
    rest = timedelta(minutes=limits.rest_minutes)
    if running:
        allowed = max(u.end for u in running) + rest
        return (
            f"a session is still running (since {_local(running[0].start, at)}); the next "
            f"may start {limits.rest_minutes:g} min after it ends",
            allowed,
            "rest_minutes",
        )
    ended = [u.end for u in uses if u.end <= at]
    if ended and at < max(ended) + rest:
        return (
            f"rest at least {limits.rest_minutes:g} min between sessions (the last ended "
            f"at {_local(max(ended), at)})",
            max(ended) + rest,
            "rest_minutes",
        )
    day = [u for u in uses if at - WINDOW < u.start <= at]
    if len(day) >= limits.sessions_per_day:
        return (
            f"at most {limits.sessions_per_day} sessions in 24 hours, and {len(day)} began "
            f"since {_local(at - WINDOW, at)}",
            day[len(day) - limits.sessions_per_day].start + WINDOW,
            "sessions_per_day",
        )
    wanted = limits.minutes_per_day * 60
    if planned_s > wanted:
        return (
            f"this program is {planned_s / 60:g} min, longer than the limit of "
            f"{limits.minutes_per_day:g} min under pressure in 24 hours; choose a shorter one",
            None,
            "minutes_per_day",
        )
    used = sum(_in_window(u, at) for u in uses)
    if used + planned_s > wanted + 1e-6:
        # The first moment a session's pressure has all left the 24 hours and enough
        # is free: a little later than the exact moment, never earlier.
        allowed_at: datetime | None = next(
            (
                u.end + WINDOW
                for u in sorted(uses, key=lambda u: u.end)
                if u.end + WINDOW > at
                and sum(_in_window(v, u.end + WINDOW) for v in uses) + planned_s <= wanted
            ),
            None,
        )
        return (
            f"at most {limits.minutes_per_day:g} min under pressure in 24 hours: "
            f"{used / 60:.0f} min used and this program is {planned_s / 60:g} min",
            allowed_at,
            "minutes_per_day",
        )
    return None


def check(
    sessions: list[Session],
    *,
    planned_s: float,
    now: datetime,
    limits: SafetyLimits,
    config: str = "config.toml",
) -> None:
    """Refuse a start of a ``planned_s`` program at ``now`` that would exceed ``limits``.

    ``sessions`` are the journal's sessions of at least the last two days (a
    session begun before the last 24 hours may still be running). The moment a
    refusal names is when every limit allows the start, not only the first one.
    ``config`` is the file the limits come from, named in the refusal.

    Raises:
        LimitReached: which limit, and when the start would be allowed.
    """
    uses = _uses([s for s in sessions if counted(s)], now)
    refusal = _refusal(uses, planned_s, now, limits)
    if refusal is None:
        return
    why, allowed, setting = refusal
    # Each step lets a limit clear or a session leave, so this ends; a moment not
    # verified to pass every limit is never named.
    for _ in range(4 * len(uses) + 8):
        if allowed is None:
            break
        later = _refusal(uses, planned_s, allowed, limits)
        if later is None:
            break
        allowed = later[1] if later[1] is not None and later[1] > allowed else None
    else:
        allowed = None
    when = f"allowed from {_local(allowed, now)}" if allowed else "not allowed with these limits"
    raise LimitReached(
        f"{why}; {when} (this limit is {setting} in [limits] of {config}: change it there)",
        allowed,
        setting,
    )


def check_journal(
    journal: Journal,
    *,
    planned_s: float,
    now: datetime,
    limits: SafetyLimits,
    starting: Iterable[Session] = (),
    config: str = "config.toml",
) -> None:
    """`check` against the journal's sessions, and ``starting`` ones it does not hold yet.

    Reads two windows back: a session that began before the last 24 hours may
    still be running.

    Raises:
        LimitReached: which limit, and when the start would be allowed.
        JournalError: the journal cannot be read.
    """
    sessions = journal.sessions(now - 2 * WINDOW)
    check([*sessions, *starting], planned_s=planned_s, now=now, limits=limits, config=config)


def _local(moment: datetime, now: datetime) -> str:
    """A moment in this computer's local time, with the day if it is not that of ``now``."""
    local = moment.astimezone()
    same_day = local.date() == now.astimezone().date()
    return f"{local:%H:%M}" if same_day else f"{local:%a %d %b %H:%M}"
