"""The safety envelope: each limit refuses with when the start would be allowed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import tzset

import pytest

from massager_ctl.journal import Journal, Session
from massager_ctl.programs.limits import LimitReached, SafetyLimits, check
from tests.massager_ctl.test_cli import ctl

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REAL = "sim://?firmware=2.1.0"
"""The simulator announcing a firmware of its own, not ``sim-...``: for the safety limits
a real massager (a start on it is held to them and counted), with nothing to plug in."""


@pytest.fixture(autouse=True)
def utc_computer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Messages speak this computer's local time: make it UTC."""
    monkeypatch.setenv("TZ", "UTC")
    tzset()
    yield
    monkeypatch.undo()
    tzset()


def session(start_h: float, minutes: float, *, outcome: str | None = "completed",
            source: str = "cli", planned_min: float | None = None) -> Session:  # fmt: skip
    """A session that began ``start_h`` hours before noon and lasted ``minutes``."""
    start = NOON - timedelta(hours=start_h)
    return Session(
        id=1, started_at=start,
        ended_at=None if outcome is None else start + timedelta(minutes=minutes),
        device="sim://", profile="p", source=source, outcome=outcome,
        pressure_s=0 if outcome is None else minutes * 60, message="",
        planned_s=(planned_min if planned_min is not None else minutes) * 60,
    )  # fmt: skip


def refusal(sessions: list[Session], planned_min: float, **limits: float) -> LimitReached:
    with pytest.raises(LimitReached) as caught:
        check(sessions, planned_s=planned_min * 60, now=NOON,
              limits=SafetyLimits.model_validate(limits))  # fmt: skip
    return caught.value


def test_within_every_limit_a_start_is_allowed() -> None:
    sessions = [session(20, 45), session(3, 45)]
    check(sessions, planned_s=1800, now=NOON, limits=SafetyLimits())
    # Sessions that put no pressure on the legs, and demos, do not count.
    idle = [session(h, 0) for h in (1, 2, 4, 5)] + [session(0.5, 10, source="demo")]
    check(idle, planned_s=1800, now=NOON, limits=SafetyLimits())


def test_rest_between_sessions() -> None:
    error = refusal([session(1, 45)], 30, rest_minutes=30)  # ended 11:45
    assert "rest at least 30 min between sessions (the last ended at 11:45)" in str(error)
    assert error.allowed_at == NOON + timedelta(minutes=15)
    check([session(1, 45)], planned_s=1800, now=NOON, limits=SafetyLimits(rest_minutes=15))


def test_a_running_or_killed_session_counts_for_its_planned_length() -> None:
    error = refusal([session(0.5, 0, outcome=None, planned_min=45)], 30)
    assert "a session is still running (since 11:30)" in str(error)
    assert error.allowed_at == NOON + timedelta(minutes=15 + 30)
    # Killed long ago: over, and counted as its planned 45 minutes of the day.
    error = refusal([session(5, 0, outcome=None, planned_min=45)] * 2, 45, minutes_per_day=120)
    assert "90 min used" in str(error)


def test_sessions_per_day_count_any_24_hours() -> None:
    sessions = [session(23, 30), session(10, 30), session(4, 30)]
    error = refusal(sessions, 30, sessions_per_day=3)
    assert "at most 3 sessions in 24 hours, and 3 began since" in str(error)
    assert error.allowed_at == NOON + timedelta(hours=1)  # when the one of 13:00 leaves
    check(sessions[1:], planned_s=1800, now=NOON, limits=SafetyLimits(sessions_per_day=3))


def test_minutes_per_day() -> None:
    sessions = [session(20, 60), session(6, 45)]
    error = refusal(sessions, 30, minutes_per_day=120)
    assert "at most 120 min under pressure in 24 hours: 105 min used" in str(error)
    # When the session of 16:00-17:00 yesterday has left the 24 hours entirely.
    assert error.allowed_at == NOON + timedelta(hours=5)
    # A session across the window's edge counts with the part inside it.
    straddling = [session(24 + 5 / 60, 120)]  # began 24 h 5 min ago: 115 min inside
    error = refusal(straddling, 120, minutes_per_day=120)
    assert "115 min used" in str(error)
    assert error.allowed_at == NOON + timedelta(minutes=115)
    never = refusal([], 150, minutes_per_day=120)
    assert "this program is 150 min, longer than the limit of 120 min" in str(never)
    assert never.allowed_at is None


def test_the_moment_named_is_when_every_limit_allows_it() -> None:
    # Rest would allow 12:20, but the second session of the day then still blocks.
    sessions = [session(22, 30), session(0.5, 20)]  # 14:00 yesterday, 11:30 today
    error = refusal(sessions, 30, sessions_per_day=2, rest_minutes=30)
    assert "rest at least 30 min" in str(error)
    assert error.allowed_at == NOON - timedelta(hours=22) + timedelta(hours=24)
    check(sessions, planned_s=1800, now=error.allowed_at,
          limits=SafetyLimits(sessions_per_day=2, rest_minutes=30))  # fmt: skip


def test_a_refused_start_on_the_command_line_names_the_limit(user_dirs: dict[str, Path]) -> None:
    journal = Journal(user_dirs["XDG_STATE_HOME"] / "massager-ctl" / "journal.sqlite3")
    now = datetime.now(UTC)
    began = journal.begin("sim://", "evening-45", "cli", planned_s=2700,
                          now=now - timedelta(minutes=50))  # fmt: skip
    journal.end(began, "completed", pressure_s=2700, now=now - timedelta(minutes=5))
    config = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "config.toml"
    refused = ctl("start", "wind-down-30", "--device", REAL)
    assert refused.returncode == 3
    assert "rest at least 30 min between sessions" in refused.stderr
    assert "allowed from" in refused.stderr
    assert f"(this limit is rest_minutes in [limits] of {config}: change it there)" in (
        refused.stderr
    )
    assert len(journal.sessions()) == 1  # nothing started, nothing journaled
    # A demo at --speed squeezes no leg: neither refused nor counted.
    demo = ctl("start", "--mode", "wave", "--intensity", "1", "--duration", "1m",
               "--speed", "100")  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[limits]\nrest_minutes = 90\n")
    assert "allowed from" in ctl("start", "wind-down-30", "--device", REAL).stderr
    config.write_text("[limits]\nrest_minutes = 0\nminutes_per_day = 30\n")
    too_long = ctl("start", "evening-45", "--device", REAL)
    assert (
        "choose a shorter one; not allowed with these limits (this limit is "
        "minutes_per_day in [limits]" in too_long.stderr
    )
    config.write_text("[limits]\nrest_minutes = -1\n")
    bad = ctl("start", "wind-down-30")
    assert bad.returncode == 2
    assert "limits.rest_minutes" in bad.stderr


def test_sessions_journaled_while_the_clock_ran_ahead_still_count() -> None:
    # Journaled at 12:06, 13:00 and 14:00 by a clock two hours fast, now set right.
    ahead = [session(-h, 45) for h in (0.1, 1, 2)]
    error = refusal(ahead, 45)
    assert "a session is still running" in str(error)
    assert error.allowed_at is not None
    check(ahead, planned_s=45 * 60, now=error.allowed_at,
          limits=SafetyLimits(sessions_per_day=4, minutes_per_day=180))  # fmt: skip
