"""``schedule``: which program runs on which evenings (the daemon runs them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..errors import MassagerError
from .app import complete_profile, current_settings, device_option, json_option, parse_duration
from .results import ScheduleAdded, ScheduleChanged, ScheduleListing, Upcoming, show

if TYPE_CHECKING:
    from ..schedules.schedule import Clash, Schedule


@click.group()
def schedule() -> None:
    """Bedtime schedules: which program runs on which evenings (`daemon` runs them)."""


@schedule.command("add")
@click.argument("profile", shell_complete=complete_profile)
@click.option("--days", required=True, help="mon,thu or daily, weekdays, weekends.")
@click.option("--at", "at", metavar="HH:MM", help="Start at this local time.")
@click.option("--before", metavar="HH:MM", help="When symptoms usually begin ...")
@click.option("--lead", metavar="DURATION", help="... and how long before it to start: 60m, "
              "1h (a bare number is minutes).")  # fmt: skip
@device_option
@click.option("--tz", help="IANA time zone, e.g. Europe/Berlin [default: this computer's].")
@json_option
def schedule_add(
    profile: str,
    days: str,
    at: str | None,
    before: str | None,
    lead: str | None,
    device: str | None,
    tz: str | None,
    as_json: bool,
) -> int:
    """Add a schedule: PROFILE on --days, --at a time or --before/--lead symptoms.

    The same program at the same times is refused; one that would keep another
    schedule from running (closer than a program and the rest after it) is
    added with a warning that names the other.
    """
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from ..paths import schedules_file, user_profiles_dir
    from ..programs.profiles import find_profile
    from ..schedules.schedule import (
        Schedule,
        ScheduleBook,
        ScheduleError,
        new_id,
        parse_clock,
        parse_days,
    )
    from ..tomlfiles import describe_errors

    find_profile(profile, user_profiles_dir())  # a typo is caught now, not at bedtime
    limits = current_settings().limits  # a broken config file is said before anything is added
    fields: dict[str, Any] = {
        "id": new_id(),
        "profile": profile,
        "days": parse_days(days),
        "created": datetime.now(UTC).replace(microsecond=0),
    }
    if at is not None:
        fields["at"] = parse_clock(at, "--at")
    if before is not None:
        fields["before"] = parse_clock(before, "--before")
    if lead is not None:
        fields["lead_s"] = parse_duration(lead, "--lead")
    if device is not None:
        fields["device"] = device
    if tz is not None:
        fields["tz"] = tz
    book = ScheduleBook(schedules_file())
    try:
        added = book.add(Schedule.model_validate(fields))
    except ValidationError as error:
        raise ScheduleError(describe_errors(error, "schedule").replace("lead_s", "lead")) from None
    warnings = [
        f"{clash.describe()}; added all the same"
        for clash in _clashes(added, book.load_each()[0], limits.rest_minutes)
    ]
    show(ScheduleAdded(added, warnings), as_json=as_json)
    return 0


def _clashes(added: Schedule, schedules: list[Schedule], rest_minutes: float) -> list[Clash]:
    """The schedules ``added`` would keep from running, or that would keep it."""
    from datetime import UTC, datetime, timedelta

    from ..paths import user_profiles_dir
    from ..programs.profiles import find_profile
    from ..schedules.schedule import clashes

    minutes: dict[str, float] = {}
    for name in {s.profile for s in schedules} | {added.profile}:
        try:
            minutes[name] = find_profile(name, user_profiles_dir()).total_minutes
        except MassagerError:
            continue  # gone or broken: the daemon refuses its runs, which keep nothing away
    others = [s for s in schedules if s.id != added.id]
    return clashes(added, others, minutes=minutes, rest=timedelta(minutes=rest_minutes),
                   after=datetime.now(UTC))  # fmt: skip


@schedule.command("list")
@json_option
def schedule_list(as_json: bool) -> int:
    """Every schedule, with its next start."""
    from datetime import UTC, datetime

    from ..paths import schedules_file
    from ..schedules.schedule import ScheduleBook

    # One table that is not a schedule is listed as broken: the others still run.
    schedules, broken = ScheduleBook(schedules_file()).load_each()
    show(ScheduleListing(schedules, broken, datetime.now(UTC)), as_json=as_json)
    return 0


def _book_change(schedule_id: str, change: str, as_json: bool) -> int:
    from ..paths import schedules_file
    from ..schedules.schedule import ScheduleBook

    book = ScheduleBook(schedules_file())
    changed = (
        book.remove(schedule_id) if change == "removed"
        else book.set_enabled(schedule_id, change == "enabled")
    )  # fmt: skip
    show(ScheduleChanged(change, changed), as_json=as_json)
    return 0


@schedule.command("remove")
@click.argument("schedule_id", metavar="ID")
@json_option
def schedule_remove(schedule_id: str, as_json: bool) -> int:
    """Remove a schedule."""
    return _book_change(schedule_id, "removed", as_json)


@schedule.command("enable")
@click.argument("schedule_id", metavar="ID")
@json_option
def schedule_enable(schedule_id: str, as_json: bool) -> int:
    """Enable a schedule."""
    return _book_change(schedule_id, "enabled", as_json)


@schedule.command("disable")
@click.argument("schedule_id", metavar="ID")
@json_option
def schedule_disable(schedule_id: str, as_json: bool) -> int:
    """Disable a schedule (kept, but it does not run)."""
    return _book_change(schedule_id, "disabled", as_json)


@schedule.command("next")
@click.option("--count", type=click.IntRange(1, 366), default=5, show_default=True)
@json_option
def schedule_next(count: int, as_json: bool) -> int:
    """The next starts of the enabled schedules, in this computer's local time."""
    from datetime import UTC, datetime

    from ..paths import schedules_file
    from ..schedules.schedule import ScheduleBook, next_runs

    schedules, broken = ScheduleBook(schedules_file()).load_each()
    for entry in broken:  # the others run: say which does not
        from ..render import errors, escape

        errors().print(f"[yellow]warning:[/] {escape(str(entry))}; it does not run", soft_wrap=True)
    show(Upcoming(next_runs(schedules, datetime.now(UTC), count=count)), as_json=as_json)
    return 0
