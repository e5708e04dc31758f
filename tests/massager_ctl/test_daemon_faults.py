"""The daemon when its journal fails or a program breaks, in virtual time.

A real locked journal is in `test_daemon`; the failures here (a write that
fails once, a journal that cannot be written at all, a bug in a program) cannot
be made for real in a test running as root, so they are injected at the
journal's and the supervisor's methods: below the daemon, where the disk and
the code under it would fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from massager_ctl.errors import ProfileRefused
from massager_ctl.journal import Journal, JournalError
from massager_ctl.paths import journal_file
from massager_ctl.programs import supervisor
from massager_ctl.programs.supervisor import LinkNotice
from massager_ctl.schedules.daemon import MARK, RETRY_S
from simulator.clock import VirtualWallClock
from tests.massager_ctl.test_daemon import (
    DAILY,
    EVENING,
    Running,
    every_evening,
    schedules,
    sessions,
    short_profile,
    until,
)
from tests.massager_ctl.test_envelope import REAL


def fails_first(method: Callable[..., Any], error: str) -> Callable[..., Any]:
    """``method``, raising JournalError(``error``) the first time it is called."""
    calls = []

    def flaky(self: Journal, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise JournalError(error)
        return method(self, *args, **kwargs)

    return flaky


async def test_a_failed_read_for_the_limits_delays_the_run_and_does_not_refuse_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_evening()
    monkeypatch.setattr(Journal, "sessions", fails_first(Journal.sessions, "database is locked"))
    clock = VirtualWallClock(EVENING)
    running = Running(clock, device=REAL)
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    assert "database is locked; trying again in 30 s" in running.said("error")[0].message
    [done] = sessions()
    assert done.ended == "completed"
    assert done.started_at - EVENING.replace(minute=45) == timedelta(seconds=RETRY_S)


async def test_a_missed_run_and_its_record_are_written_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_evening()
    Journal(journal_file()).set_mark(MARK, EVENING)  # the daemon was last up at 21:00
    monkeypatch.setattr(Journal, "take_run", fails_first(Journal.take_run, "disk I/O error"))
    clock = VirtualWallClock(EVENING.replace(hour=23))
    running = Running(clock)
    await asyncio.sleep(3 * RETRY_S)
    await running.stop()
    [missed] = sessions()
    assert missed.ended == "missed"
    assert "or the journal unusable until then" in missed.message


async def test_a_journal_that_cannot_be_written_is_reported_once_a_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_evening()

    def read_only(self: Journal, *args: Any, **kwargs: Any) -> bool:
        raise JournalError("attempt to write a readonly database")

    monkeypatch.setattr(Journal, "take_run", read_only)
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await until(clock, EVENING + timedelta(days=3))
    await running.stop()
    errors = [e for e in running.said("error") if "readonly" in e.message]
    assert len(errors) == 3  # one for each evening's run, not one every 30 s
    assert not running.said("started")


@pytest.mark.parametrize("began", [True, False])
async def test_a_bug_in_a_program_is_reported_and_journaled(
    monkeypatch: pytest.MonkeyPatch, began: bool
) -> None:
    async def broken(self: supervisor.ProgramSupervisor) -> None:
        if began:
            assert self.on_link is not None
            self.on_link(LinkNotice(event="connected", message="connected"))
            await asyncio.sleep(300)
        raise RuntimeError("a bug")

    monkeypatch.setattr(supervisor.ProgramSupervisor, "run", broken)
    short_profile("check-10", 10)
    schedules({"id": "evening", "profile": "check-10", "days": DAILY, "at": "21:45",
               "tz": "Europe/Berlin"})  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await until(clock, EVENING.replace(hour=22))
    assert not running.task.done()
    await running.stop()
    assert "RuntimeError('a bug')" in running.said("error")[-1].message
    [session] = sessions()
    assert session.outcome == "error"
    # Began: its five minutes count as under pressure, so the limits err on the safe side.
    assert session.pressure_s == (300 if began else 0)


async def test_a_program_whose_session_was_not_journaled_still_counts_for_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short_profile("check-10", 10)
    schedules(
        {"id": "aa", "profile": "check-10", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"},
        {"id": "bb", "profile": "check-10", "days": DAILY, "at": "21:50", "tz": "Europe/Berlin",
         "device": "sim://b?firmware=2.1.0"},
    )  # fmt: skip
    monkeypatch.setattr(Journal, "begin", fails_first(Journal.begin, "disk I/O error"))
    clock = VirtualWallClock(EVENING)
    running = Running(clock, device=REAL)
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    [refused] = running.said("refused")
    assert refused.schedule == "bb"
    assert "a session is still running" in refused.message
    assert [s.pressure_s for s in sessions()] == [0]  # bb's refusal; aa's never journaled


async def test_a_schedule_created_in_the_far_future_does_not_stop_the_others() -> None:
    short_profile("check-1", 1)
    schedules(
        {"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"},
        {"id": "typo", "days": ["mon"], "at": "21:50", "tz": "Europe/Berlin",
         "created": datetime(9999, 12, 30, tzinfo=UTC)},
    )  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await until(clock, EVENING.replace(hour=22))
    assert not running.task.done()
    await running.stop()
    assert [s.ended for s in sessions()] == ["completed"]
    assert "schedule typo has no start after 9999-12-30" in running.said("error")[0].message


async def test_a_profile_refused_after_the_program_began_is_an_error_not_a_refused_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a lost link another massager's firmware (fewer modes, say) can refuse the
    # profile on the resume: the session ran, and is not journaled again as refused.
    async def refused_on_resume(self: supervisor.ProgramSupervisor) -> None:
        assert self.on_link is not None
        self.on_link(LinkNotice(event="connected", message="connected"))
        await asyncio.sleep(60)
        raise ProfileRefused("check-10", ["step 1 needs mode 'wave'; the device offers pulse"])

    monkeypatch.setattr(supervisor.ProgramSupervisor, "run", refused_on_resume)
    short_profile("check-10", 10)
    schedules({"id": "evening", "profile": "check-10", "days": DAILY, "at": "21:45",
               "tz": "Europe/Berlin"})  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    assert not running.said("refused")
    assert "needs mode 'wave'" in running.said("error")[-1].message
    [session] = sessions()
    assert (session.outcome, session.pressure_s) == ("error", 60)
