"""The daemon in virtual time: a year of evenings, restarts, clocks set, collisions.

Each test runs the real daemon, journal, supervisor and in-process simulator;
only the wall clock is `VirtualWallClock`, on looptime's virtual loop clock,
so a year passes in seconds and a test can set the clock as NTP would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from time import tzset
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from massager_ctl.journal import Journal, Session
from massager_ctl.paths import journal_file, schedules_file, user_profiles_dir
from massager_ctl.schedules.daemon import RETRY_S, Daemon, DaemonEvent
from massager_ctl.schedules.schedule import Schedule, ScheduleBook
from massager_ctl.settings import Settings
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import parse_device_url
from simulator.clock import VirtualWallClock
from tests.massager_ctl.test_envelope import REAL

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

SHORT = """
title = "Check, {minutes} minutes"
description = "A short program for tests."
why = "Tests."
[[steps]]
minutes = {minutes}
mode = "wave"
intensity = 1
"""

DAYS = 365
ROOMY = {"sessions_per_day": 12, "minutes_per_day": 720, "rest_minutes": 0}


def short_profile(name: str, minutes: float) -> str:
    """A user profile of ``minutes`` of gentle waves."""
    folder = user_profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(SHORT.format(minutes=minutes), encoding="utf-8")
    return name


def schedules(*entries: dict[str, Any]) -> list[Schedule]:
    """Write the schedules file; every entry runs ``check-1`` unless it says otherwise."""
    made = [Schedule.model_validate({"profile": "check-1", "days": ["mon"]} | e) for e in entries]
    ScheduleBook(schedules_file()).save(made)
    return made


def every_evening() -> None:
    """The usual schedule: a one-minute program every evening at 21:45 in Berlin."""
    short_profile("check-1", 1)
    schedules({"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"})


class Running:
    """A daemon running in a task, with everything it said."""

    def __init__(self, clock: VirtualWallClock, **settings: Any) -> None:
        self.events: list[DaemonEvent] = []
        self.daemon = Daemon(
            book=ScheduleBook(schedules_file()),
            journal=Journal(journal_file()),
            clock=clock,
            settings=Settings.model_validate(settings),
            profiles_dir=user_profiles_dir(),
            on_event=self.events.append,
        )
        self.task = asyncio.create_task(self.daemon.run())

    async def stop(self) -> None:
        """Cancel it as SIGTERM does, and wait until its programs have ended."""
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def said(self, event: str) -> list[DaemonEvent]:
        """The events of one kind."""
        return [e for e in self.events if e.event == event]


def sessions() -> list[Session]:
    """Everything in the journal."""
    return Journal(journal_file()).sessions()


def beyond_194_days() -> None:
    """Let this loop's virtual clock run past 2**24 s (194 days) without stalling.

    Beyond 2**24 a float's step (3.7e-9 s) exceeds asyncio's clock resolution
    (1e-9 s, the monotonic clock's), so ``now + resolution == now`` and a timer
    due exactly now is never run; real time moves on, looptime's clock waits
    for that timer. looptime's own resolution is 1e-6 s; asyncio must use it.
    """
    asyncio.get_running_loop()._clock_resolution = 1e-6  # type: ignore[attr-defined]


async def until(clock: VirtualWallClock, moment: datetime) -> None:
    """Let virtual time pass up to ``moment``."""
    await asyncio.sleep((moment - clock.now()).total_seconds())


def local(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


async def test_a_year_of_evenings_in_two_zones_runs_each_start_once_on_time() -> None:
    beyond_194_days()
    short_profile("check-1", 0.1)
    schedules(
        {"id": "berlin", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
         "at": "02:30", "tz": "Europe/Berlin", "device": "sim://?seed=1&battery=false"},
        {"id": "newyork", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
         "at": "01:30", "tz": "America/New_York", "device": "sim://?seed=2&battery=false"},
    )  # fmt: skip
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = VirtualWallClock(start)
    running = Running(clock, limits=ROOMY)
    await until(clock, start + timedelta(days=DAYS))
    await running.stop()

    journal = sessions()
    assert not running.said("error")
    assert not running.said("missed")
    for name, zone, hour in (("berlin", BERLIN, 2), ("newyork", NEW_YORK, 1)):
        device = (
            "sim://?seed=1&battery=false" if name == "berlin" else "sim://?seed=2&battery=false"
        )
        runs = [s for s in journal if s.device == device]
        assert all(s.ended == "completed" and s.source == "schedule" for s in runs)
        days = [s.started_at.astimezone(zone).date() for s in runs]
        assert len(days) == len(set(days)) == 365, name
        for session in runs:
            started = session.started_at.astimezone(zone)
            expected = local(started.date(), hour, 30, zone)
            if (name, started.date()) == ("berlin", date(2026, 3, 29)):
                # 02:00 jumps to 03:00: 02:30 runs 30 minutes after the jump.
                expected = datetime(2026, 3, 29, 3, 30, tzinfo=zone)
            late = session.started_at - expected
            assert timedelta(0) <= late < timedelta(seconds=5), (name, started)
    # The repeated hour: once, at its first occurrence (summer time still).
    berlin_fall = [s for s in journal if s.device == "sim://?seed=1&battery=false"
                   and s.started_at.astimezone(BERLIN).date() == date(2026, 10, 25)]  # fmt: skip
    assert [s.started_at.astimezone(BERLIN).utcoffset() for s in berlin_fall] == [
        timedelta(hours=2)
    ]
    ny_fall = [s for s in journal if s.device == "sim://?seed=2&battery=false"
               and s.started_at.astimezone(NEW_YORK).date() == date(2026, 11, 1)]  # fmt: skip
    assert [s.started_at.astimezone(NEW_YORK).utcoffset() for s in ny_fall] == [timedelta(hours=-4)]


EVENING = datetime(2026, 11, 23, 21, 0, tzinfo=BERLIN)  # a Monday
DAILY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


async def test_a_restart_mid_evening_never_starts_a_run_twice() -> None:
    short_profile("half-hour", 30)
    schedules({"id": "evening", "profile": "half-hour", "days": DAILY, "at": "21:45",
               "tz": "Europe/Berlin"})  # fmt: skip
    clock = VirtualWallClock(EVENING)
    first = Running(clock)
    await until(clock, EVENING.replace(minute=55))  # ten minutes into the program
    assert len(first.said("started")) == 1
    await first.stop()  # SIGTERM: the program ends, vented, and is journaled
    [stopped] = sessions()
    assert stopped.ended == "stopped"
    assert 9 * 60 < stopped.pressure_s < 10 * 60
    assert first.said("stopping")

    await until(clock, EVENING.replace(minute=57))
    second = Running(clock)
    await until(clock, EVENING + timedelta(days=1, minutes=50))
    await second.stop()
    started = [s.started_at.astimezone(BERLIN) for s in sessions()]
    assert [(t.day, t.hour, t.minute) for t in started] == [(23, 21, 45), (24, 21, 45)]
    assert not second.said("missed")


async def test_a_run_due_while_the_daemon_was_down_starts_within_grace_else_is_missed() -> None:
    every_evening()
    clock = VirtualWallClock(EVENING)
    first = Running(clock)
    await until(clock, EVENING.replace(minute=30))
    await first.stop()
    await until(clock, EVENING.replace(minute=52))  # 7 minutes late: within the grace
    second = Running(clock)
    await asyncio.sleep(120)
    await second.stop()
    [late] = sessions()
    assert late.ended == "completed"
    assert late.started_at - EVENING.replace(minute=45) == timedelta(minutes=7)

    # Down for two evenings, back at 22:00 on the third: each run it missed is journaled.
    await until(clock, EVENING + timedelta(days=3, hours=1))
    third = Running(clock)
    await asyncio.sleep(60)
    await third.stop()
    missed = [s for s in sessions() if s.ended == "missed"]
    assert [s.started_at.astimezone(BERLIN).day for s in missed] == [24, 25, 26]
    assert "past the 10 min grace window" in missed[-1].message
    assert "15 min late" in missed[-1].message
    assert all(s.pressure_s == 0 for s in missed)


async def test_a_schedule_added_after_its_time_waits_for_the_next_day() -> None:
    short_profile("check-1", 1)
    clock = VirtualWallClock(EVENING.replace(minute=50))
    running = Running(clock)
    await asyncio.sleep(1)
    schedules({"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin",
               "created": clock.now()})  # fmt: skip
    running.daemon.reload()
    await asyncio.sleep(60)
    assert sessions() == []
    assert running.said("next")[-1].due == EVENING.replace(minute=45) + timedelta(days=1)
    await until(clock, EVENING + timedelta(days=1, minutes=50))
    await running.stop()
    assert [s.started_at.astimezone(BERLIN).day for s in sessions()] == [24]


async def test_the_wall_clock_set_forward_and_back() -> None:
    every_evening()
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await asyncio.sleep(60)
    # Forward past the start, within the grace: the daemon wakes at once and starts it.
    clock.set(EVENING.replace(minute=50))
    await asyncio.sleep(1)
    assert len(running.said("started")) == 1
    await asyncio.sleep(120)
    # Back before the start (NTP after a bad clock): the run is not started again.
    clock.set(EVENING.replace(minute=40))
    await until(clock, EVENING.replace(hour=23))
    assert len(running.said("started")) == 1
    # Forward past the next evening's start and its grace: journaled as missed, not started.
    clock.set(EVENING + timedelta(days=1, minutes=45 + 25))
    await asyncio.sleep(1)
    [done, missed] = sessions()
    assert done.ended == "completed"
    assert done.started_at == EVENING.replace(minute=50)
    assert missed.ended == "missed"
    assert "25 min late" in missed.message
    assert missed.started_at == EVENING.replace(minute=45) + timedelta(days=1)
    await running.stop()


async def test_two_schedules_colliding_on_one_device_run_one_program() -> None:
    # (The limits are per person: another device may start only once this program
    # ended, so dd starts after aa ends.)
    short_profile("half-hour", 30)
    short_profile("check-1", 1)
    schedules(
        {"id": "aa", "profile": "half-hour", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"},
        {"id": "bb", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"},
        {"id": "cc", "days": DAILY, "at": "22:00", "tz": "Europe/Berlin"},
        {"id": "dd", "days": DAILY, "at": "22:20", "tz": "Europe/Berlin",
         "device": "sim://other"},
    )  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock, limits=ROOMY)
    await until(clock, EVENING.replace(hour=23))
    await running.stop()
    by_profile = {(s.profile, s.device): s for s in sessions()}
    assert by_profile["half-hour", "sim://"].ended == "completed"
    assert by_profile["check-1", "sim://other"].ended == "completed"
    busy = [s for s in sessions() if s.outcome == "busy"]
    assert len(busy) == 2
    assert all("sim:// was running schedule aa (half-hour)" in s.message for s in busy)
    assert {e.schedule for e in running.said("busy")} == {"bb", "cc"}


@pytest.fixture
def berlin_computer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This computer's local time is Berlin's (messages speak local time)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    tzset()
    yield
    monkeypatch.undo()
    tzset()


@pytest.mark.usefixtures("berlin_computer")
async def test_the_safety_limits_refuse_a_scheduled_run_and_say_until_when() -> None:
    every_evening()
    journal = Journal(journal_file())
    # A session from the command line ended ten minutes before the schedule's start.
    began = journal.begin("sim://", "evening-45", "cli", planned_s=2700,
                          now=EVENING - timedelta(minutes=10))  # fmt: skip
    journal.end(began, "completed", pressure_s=2700, now=EVENING.replace(minute=35))
    clock = VirtualWallClock(EVENING)
    running = Running(clock, limits={"rest_minutes": 30}, device=REAL)
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    [refused] = running.said("refused")
    assert "rest at least 30 min between sessions" in refused.message
    assert "the last ended at 21:35); allowed from 22:05 (this limit is rest_minutes" in (
        refused.message
    )
    [_, journaled] = sessions()
    assert journaled.outcome == "refused"
    assert journaled.ended == "missed"
    assert journaled.started_at == EVENING.replace(minute=45)  # when it was due


@pytest.mark.usefixtures("berlin_computer")
async def test_a_scheduled_run_on_a_simulator_is_a_demo_that_no_limit_refuses() -> None:
    every_evening()
    journal = Journal(journal_file())
    began = journal.begin(REAL, "evening-45", "cli", planned_s=2700,
                          now=EVENING - timedelta(minutes=10))  # fmt: skip
    journal.end(began, "completed", pressure_s=2700, now=EVENING.replace(minute=35))
    clock = VirtualWallClock(EVENING)
    running = Running(clock, limits={"rest_minutes": 30})  # on sim://
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    assert not running.said("refused")
    [_, demo] = sessions()
    assert (demo.ended, demo.source, demo.demo) == ("completed", "schedule", True)


async def test_a_profile_the_massager_cannot_run_is_refused_before_the_limits() -> None:
    short_profile("check-1", 1)
    (user_profiles_dir() / "check-1.toml").write_text(
        SHORT.format(minutes=1).replace("intensity = 1", "intensity = 7"), encoding="utf-8"
    )
    schedules({"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"})
    journal = Journal(journal_file())
    journal.begin(REAL, "evening-45", "cli", planned_s=2700, now=EVENING.replace(minute=40))
    clock = VirtualWallClock(EVENING)
    running = Running(clock, device=REAL)  # a session is running: the limits would refuse
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    [refused] = running.said("refused")
    assert "this massager has no intensity 7; it offers 1, 2, 3" in refused.message
    [_, journaled] = sessions()
    assert (journaled.outcome, journaled.pressure_s) == ("refused", 0)


async def test_a_journal_that_cannot_be_used_starts_nothing_until_it_can() -> None:
    every_evening()
    path = journal_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage " * 200)
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await until(clock, EVENING.replace(hour=22))
    assert not running.said("started")
    assert "no run is started until the journal can be used" in running.said("error")[-1].message
    assert path.read_bytes() == b"garbage " * 200  # left as it is
    path.unlink()  # the person moved it away
    await until(clock, EVENING + timedelta(days=1, hours=1))
    await running.stop()
    ran = [s.started_at.astimezone(BERLIN) for s in sessions() if s.ended == "completed"]
    assert [(t.day, t.hour, t.minute) for t in ran] == [(24, 21, 45)]


async def test_a_run_is_taken_once_even_without_the_mark_and_by_two_daemons() -> None:
    every_evening()
    clock = VirtualWallClock(EVENING)
    one, two = Running(clock), Running(clock)  # two daemons on one journal
    await until(clock, EVENING.replace(minute=50))
    await one.stop()
    await two.stop()
    assert len(one.said("started")) + len(two.said("started")) == 1
    # Killed between taking the run and noting how far it had looked: the runs table
    # alone keeps the run from starting again.
    with contextlib.closing(sqlite3.connect(journal_file())) as db, db:
        db.execute("DELETE FROM marks")
    three = Running(clock)
    await asyncio.sleep(120)
    await three.stop()
    assert not three.said("started")
    assert len(sessions()) == 1


async def test_the_clock_set_back_past_many_taken_runs_still_finds_the_next() -> None:
    every_evening()
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await asyncio.sleep(60)
    clock.set(EVENING + timedelta(days=10, hours=1))  # a bad clock, ten days ahead ...
    await asyncio.sleep(1)
    clock.set(EVENING + timedelta(minutes=2))  # ... put right by NTP
    await until(clock, EVENING + timedelta(days=12))
    await running.stop()
    ran = sorted(s.started_at.astimezone(BERLIN).date() for s in sessions()
                 if s.ended == "completed")  # fmt: skip
    # The eleven evenings the clock jumped over were missed and are not redone.
    assert ran == [date(2026, 12, 4)]
    assert len([s for s in sessions() if s.ended == "missed"]) == 11


async def test_limits_count_programs_still_connecting_on_other_devices() -> None:
    short_profile("check-1", 1)
    schedules(
        {"id": "aa", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"},
        {"id": "bb", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin",
         "device": "sim://b?firmware=2.1.0"},
    )  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock, limits={"sessions_per_day": 1}, device=REAL)
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    assert [s.device for s in sessions() if s.pressure_s > 0] == [REAL]
    [refused] = running.said("refused")
    assert refused.schedule == "bb"
    assert "a session is still running" in refused.message


async def test_a_retry_checks_the_limits_again() -> None:
    short_profile("check-1", 1)
    schedules({"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin"})
    simulated_device(parse_device_url(REAL)).stop()  # the massager is off
    clock = VirtualWallClock(EVENING)
    running = Running(clock, device=REAL)
    await until(clock, EVENING.replace(minute=45, second=10))
    assert running.said("unreachable")
    # Meanwhile the person starts a session on another massager from the command line,
    # and switches this one on.
    Journal(journal_file()).begin(REAL, "evening-45", "cli", planned_s=2700, now=clock.now())
    simulated_device(parse_device_url(REAL)).start()
    await until(clock, EVENING.replace(hour=22))
    await running.stop()
    assert "a session is still running" in running.said("refused")[-1].message
    assert [(s.outcome, s.pressure_s) for s in sessions()] == [("refused", 0), (None, 0)]


@pytest.mark.looptime(False)
async def test_the_journal_locked_by_another_process_delays_the_run_within_grace() -> None:
    every_evening()
    Journal(journal_file()).sessions()  # it exists
    clock = VirtualWallClock(EVENING.replace(minute=44, second=59))
    with contextlib.closing(sqlite3.connect(journal_file(), isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # e.g. a backup copying it
        running = Running(clock)
        await asyncio.sleep(2)
        assert "locked" in running.said("error")[-1].message
        assert not running.said("started")
        other.execute("COMMIT")
    clock.set(clock.now() + timedelta(seconds=RETRY_S))  # the retry is due
    await asyncio.sleep(1)
    await running.stop()
    [ran] = running.said("started")
    assert ran.schedule == "evening"
    assert Journal(journal_file()).taken_runs(EVENING) == {
        ("evening", EVENING.replace(minute=45).astimezone(UTC))
    }


async def test_a_bad_schedule_is_reported_and_the_others_run() -> None:
    every_evening()
    with schedules_file().open("a", encoding="utf-8") as out:
        out.write('\n[[schedule]]\nid = "typo"\nprofile = "check-1"\ndays = ["mon"]\n'
                  'at = 21:50:00\ndevice = "bluetooth://nowhere"\n')  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await asyncio.sleep(60)
    [problem] = running.said("error")
    assert "(the table at line 11): device: 'bluetooth://nowhere'" in problem.message
    assert "device" in problem.message
    # Then the whole file is damaged by an editor: what was read before keeps running.
    schedules_file().write_bytes(b"\xff\xfe[[schedule]]\n")
    running.daemon.reload()
    await until(clock, EVENING.replace(hour=22))
    assert "not UTF-8 text" in running.said("error")[-1].message
    assert not running.task.done()
    await running.stop()
    assert [s.ended for s in sessions()] == ["completed"]


async def test_the_next_run_announced_is_one_it_will_take() -> None:
    short_profile("check-1", 1)
    # Added while the computer's clock ran two days ahead: its first run is after that.
    schedules({"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin",
               "created": EVENING + timedelta(days=2)})  # fmt: skip
    clock = VirtualWallClock(EVENING)
    running = Running(clock)
    await asyncio.sleep(60)
    await running.stop()
    assert running.said("next")[0].due == EVENING.replace(minute=45) + timedelta(days=2)


class _NoTimers(VirtualWallClock):
    """A clock whose timers cannot be set (the process is out of file descriptors)."""

    async def sleep_until(self, moment: datetime) -> None:
        raise OSError(24, "timerfd_create: Too many open files")


async def test_a_timer_that_cannot_be_set_is_reported_without_spinning() -> None:
    every_evening()
    clock = _NoTimers(EVENING)
    running = Running(clock)
    await asyncio.sleep(10 * RETRY_S)
    await running.stop()
    failures = [e for e in running.said("error") if "Too many open files" in e.message]
    assert 8 <= len(failures) <= 11  # one a RETRY_S, not a spin
