"""Schedules: starts across a year and both daylight-saving changes, and the schedules file."""

from __future__ import annotations

import itertools
import os
import subprocess
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from massager_ctl.schedules.schedule import (
    DAYS,
    BrokenSchedule,
    Schedule,
    ScheduleBook,
    ScheduleError,
    clashes,
    next_runs,
    parse_days,
)
from tests.folders import read_only, run_cli
from tests.massager_ctl.test_cli import CLI, ctl, json_lines

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def daily(at: str, tz: str, **extra: object) -> Schedule:
    return Schedule.model_validate({"id": "t1", "profile": "evening-45", "days": list(DAYS),
                                    "at": at, "tz": tz, **extra})  # fmt: skip


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
@pytest.mark.parametrize("at", ["21:45", "02:30", "01:30"])
def test_a_year_of_evenings_runs_each_once_at_its_wall_clock_time(tz: str, at: str) -> None:
    schedule = daily(at, tz)
    zone = ZoneInfo(tz)
    runs = schedule.runs_after(datetime(2026, 1, 1, tzinfo=zone), count=365)
    days = [run.astimezone(zone).date() for run in runs]
    assert len(set(days)) == 365  # every evening exactly once
    assert days[0] == date(2026, 1, 1)
    assert all(b > a for a, b in itertools.pairwise(runs))
    wanted = time.fromisoformat(at)
    shifted = [run for run in runs if run.astimezone(zone).time() != wanted]
    # Only a start inside the skipped hour of the spring-forward night moves, one hour on.
    spring = {BERLIN: date(2026, 3, 29), NEW_YORK: date(2026, 3, 8)}[tz]
    skipped = at == "02:30"
    assert [r.astimezone(zone).date() for r in shifted] == ([spring] if skipped else [])
    if skipped:
        assert shifted[0].astimezone(zone).time() == time(3, 30)


def test_a_start_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    # New York falls back on 1 Nov 2026: 01:00-02:00 happens twice.
    schedule = daily("01:30", NEW_YORK)
    [run] = [r for r in schedule.runs_after(datetime(2026, 10, 31, 12, tzinfo=UTC), count=3)
             if r.astimezone(ZoneInfo(NEW_YORK)).date() == date(2026, 11, 1)]  # fmt: skip
    assert run.utcoffset() == timedelta(hours=-4)  # EDT: the first 01:30
    # Berlin falls back on 25 Oct 2026: 02:00-03:00 happens twice.
    berlin = daily("02:30", BERLIN)
    [run] = [r for r in berlin.runs_after(datetime(2026, 10, 24, 12, tzinfo=UTC), count=3)
             if r.astimezone(ZoneInfo(BERLIN)).date() == date(2026, 10, 25)]  # fmt: skip
    assert run.utcoffset() == timedelta(hours=2)  # CEST: the first 02:30


def test_before_and_lead_count_back_even_past_midnight() -> None:
    trial = Schedule(id="t2", profile="trial-compression-60", days=["mon"], before="22:30",
                     lead_s=3600, tz=BERLIN)  # fmt: skip
    [run] = trial.runs_after(datetime(2026, 11, 1, tzinfo=UTC), count=1)
    assert run.isoformat() == "2026-11-02T21:30:00+01:00"
    late = Schedule(id="t3", profile="evening-45", days=["mon"], before="00:30",
                    lead_s=7200, tz=BERLIN)  # fmt: skip
    [run] = late.runs_after(datetime(2026, 11, 1, tzinfo=UTC), count=1)
    assert run.isoformat() == "2026-11-01T22:30:00+01:00"  # Sunday evening, for Monday's night


@given(after=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                          timezones=st.just(UTC)),
       days=st.lists(st.sampled_from(DAYS), min_size=1, unique=True))  # fmt: skip
def test_next_runs_are_after_the_moment_in_order_and_on_chosen_days(
    after: datetime, days: list[str]
) -> None:
    one = Schedule(id="a1", profile="p", days=days, at="21:45", tz=BERLIN)
    two = Schedule(id="b2", profile="p", days=["sat"], at="08:00", tz=NEW_YORK)
    off = Schedule(id="c3", profile="p", days=list(DAYS), at="12:00", tz=BERLIN, enabled=False)
    runs = next_runs([one, two, off], after, count=10)
    assert len(runs) == 10
    assert all(run > after for run, _ in runs)
    assert [r for r, _ in runs] == sorted(r for r, _ in runs)
    assert all(s.id != "c3" for _, s in runs)
    for run, s in runs:
        assert DAYS[run.astimezone(ZoneInfo(s.tz)).weekday()] in s.days


def test_days_and_bad_schedules_are_plain_errors() -> None:
    assert parse_days("Mon, thu") == ["mon", "thu"]
    assert parse_days("weekdays") == ["mon", "tue", "wed", "thu", "fri"]
    assert parse_days("weekends") == ["sat", "sun"]
    with pytest.raises(ScheduleError, match="not a list of days"):
        parse_days("mon,someday")
    with pytest.raises(ValueError, match="either at"):
        Schedule(id="x1", profile="p", days=["mon"], tz=BERLIN)
    with pytest.raises(ValueError, match="before needs lead"):
        Schedule(id="x1", profile="p", days=["mon"], before="22:00", tz=BERLIN)
    with pytest.raises(ValueError, match="not a time zone"):
        Schedule(id="x1", profile="p", days=["mon"], at="22:00", tz="Mars/Base")


def test_the_file_is_written_whole_and_a_damaged_one_is_never_overwritten(tmp_path: Path) -> None:
    book = ScheduleBook(tmp_path / "book" / "schedules.toml")
    a = book.add(daily("21:45", BERLIN))
    b = book.add(daily("21:45", BERLIN, device="serial:///dev/ttyUSB0"))
    assert a.id != b.id  # ids made unique
    assert [s.id for s in book.load()] == [a.id, b.id]
    assert book.set_enabled(a.id, False).enabled is False
    assert book.load()[0].enabled is False
    book.remove(b.id)
    assert [s.id for s in book.load()] == [a.id]
    left = sorted(p.name for p in book.path.parent.iterdir())
    assert left == [".schedules.toml.lock", "schedules.toml"]  # no temporary file left
    with pytest.raises(ScheduleError, match="there is no schedule 'zz'"):
        book.remove("zz")

    damaged = book.path.read_text() + "\n[[schedule]]\nid = 'q9'\nprofile = 'p'\ndays = [mon]\n"
    book.path.write_text(damaged)
    with pytest.raises(ScheduleError, match=r"not valid TOML: .*line 1[0-9]"):
        book.load()
    with pytest.raises(ScheduleError, match="never overwritten"):
        book.add(daily("20:00", BERLIN))
    assert book.path.read_text() == damaged

    wrong = book.path.read_text().replace("days = [mon]", 'days = ["mon"]\nat = 25:00:00')
    book.path.write_text(wrong)
    with pytest.raises(ScheduleError, match="not valid TOML"):
        book.load()
    book.path.write_text(wrong.replace("at = 25:00:00", 'at = "soon"'))
    with pytest.raises(ScheduleError, match=r"\(the table at line 1[0-9]\): schedule\[1\]\.at"):
        book.load()


def test_schedule_commands(user_dirs: dict[str, Path]) -> None:
    added = ctl("schedule", "add", "evening-45", "--days", "mon,thu", "--at", "21:45",
                "--tz", BERLIN, "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    first = json_lines(added.stdout)[-1]
    assert first["days"] == ["mon", "thu"]
    trial = ctl("schedule", "add", "trial-compression-60", "--days", "daily", "--before",
                "22:30", "--lead", "60m", "--tz", NEW_YORK, "--json")  # fmt: skip
    assert trial.returncode == 0, trial.stderr
    second = json_lines(trial.stdout)[-1]
    assert (
        ctl("schedule", "add", "no-such-profile", "--days", "mon", "--at", "21:00").returncode == 2
    )
    assert "is not a time of day" in ctl("schedule", "add", "evening-45", "--days", "mon",
                                         "--at", "9pm").stderr  # fmt: skip
    nxt = json_lines(ctl("schedule", "next", "--count", "9", "--json").stdout)[-1]["runs"]
    assert len(nxt) == 9
    assert {n["schedule"] for n in nxt} == {first["id"], second["id"]}
    assert ctl("schedule", "disable", second["id"]).returncode == 0
    nxt = json_lines(ctl("schedule", "next", "--json").stdout)[-1]["runs"]
    assert {n["schedule"] for n in nxt} == {first["id"]}
    assert ctl("schedule", "remove", first["id"]).returncode == 0
    listed = json_lines(ctl("schedule", "list", "--json").stdout)[-1]["schedules"]
    assert [(s["id"], s["enabled"]) for s in listed] == [(second["id"], False)]
    missing = ctl("schedule", "enable", "zz")
    assert missing.returncode == 2
    assert "there is no schedule 'zz'" in missing.stderr
    assert (user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "schedules.toml").exists()


# --- inputs mean what they say ------------------------------------------------------

A_TABLE = """\
[[schedule]]
id = "n1"
profile = "evening-45"
days = ["mon"]
{when}
tz = "Europe/Berlin"
"""


@pytest.mark.parametrize(
    ("when", "field"),
    [
        ("at = 21", "at: must be a time of day"),
        ("at = 21.75", "at: must be a time of day"),
        ('at = "21"', "at: must be a time of day"),
        ('at = "9pm"', "at: must be a time of day"),
        ("at = true", "at: must be a time of day"),
        ("before = 2230\nlead_s = 3600", "before: must be a time of day"),
        ('before = 22:30:00\nlead_s = "3600"', "lead_s: Input should be a valid"),
        ("before = 22:30:00\nlead_s = true", "lead_s: Input should be a valid"),
        ("at = 21:45:00\nenabled = 1", "enabled: Input should be a valid boolean"),
        ('at = 21:45:00\nenabled = "yes"', "enabled: Input should be a valid"),
        ('at = 21:45:00\ncreated = "2026-11-21T20:00:00Z"', "created: Input should"),
    ],
)
def test_a_number_time_or_flag_of_another_type_is_refused_naming_file_and_field(
    user_dirs: dict[str, Path], when: str, field: str
) -> None:
    path = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "schedules.toml"
    path.parent.mkdir(parents=True)
    path.write_text(A_TABLE.format(when=when), encoding="utf-8")
    # A change would rewrite the file: refused, naming the table and the field.
    added = ctl("schedule", "add", "evening-45", "--days", "sat", "--at", "21:00")
    assert added.returncode == 2, added.stdout
    assert f"{path} (the table at line 1): schedule[0].{field}" in added.stderr
    assert "Traceback" not in added.stderr
    # The daemon and `schedule list` read each table on its own: this one is reported,
    # never run.
    good, broken = ScheduleBook(path).load_each()
    assert good == []
    [problem] = broken
    assert (problem.line, problem.id) == (1, "n1")
    assert str(problem).startswith(f"{path} (the table at line 1): {field}")


@pytest.mark.parametrize("when", ["at = 21:45:00", 'at = "21:45"'])
def test_a_start_time_is_a_toml_time_or_an_hh_mm_string(tmp_path: Path, when: str) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(A_TABLE.format(when=when), encoding="utf-8")
    [schedule] = ScheduleBook(path).load()
    assert schedule.at == time(21, 45)


# --- nothing lost -------------------------------------------------------------------


def test_twelve_adds_at_once_keep_all_twelve(user_dirs: dict[str, Path]) -> None:
    def add(minute: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, "schedule", "add", "evening-45", "--days", "mon", "--at", f"21:{minute:02}",
             "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    adding = [add(minute) for minute in range(12)]
    said = []
    for process in adding:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        said.append(json_lines(out)[-1]["id"])
    kept = json_lines(ctl("schedule", "list", "--json").stdout)[-1]["schedules"]
    assert sorted(s["id"] for s in kept) == sorted(said)
    assert sorted(s["at"] for s in kept) == [f"21:{minute:02}:00" for minute in range(12)]


HAND_WRITTEN = """\
# My evenings. The physio said: never on Fridays.

# Weekdays, after the news.
[[schedule]]
id = "wk"
profile = "evening-45"
days = ["mon", "tue"]  # not wed: choir
at = 21:45:00
tz = "Europe/Berlin"
enabled = true  # keep on

# Sundays, longer.
[[schedule]]
id = "su"
profile = "trial-compression-60"
days = ["sun"]
before = 22:30:00
lead_s = 3600  # an hour, as in the trial
tz = "Europe/Berlin"
"""


def test_changing_schedules_keeps_what_a_person_wrote(user_dirs: dict[str, Path]) -> None:
    path = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "schedules.toml"
    path.parent.mkdir(parents=True)
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    added = ctl("schedule", "add", "wind-down-30", "--days", "sat", "--at", "20:00", "--json")
    assert added.returncode == 0, added.stderr
    new_id = json_lines(added.stdout)[-1]["id"]
    assert ctl("schedule", "disable", "wk").returncode == 0
    text = path.read_text(encoding="utf-8")
    # Every comment stays where it was; only the changed value and the new table differ.
    for line in HAND_WRITTEN.splitlines():
        if line != "enabled = true  # keep on":
            assert line in text.splitlines(), line
    assert "enabled = false  # keep on" in text.splitlines()
    assert f'id = "{new_id}"' in text
    assert ctl("schedule", "remove", "su").returncode == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# My evenings. The physio said: never on Fridays.\n")
    assert "# Weekdays, after the news." in text
    assert 'days = ["mon", "tue"]  # not wed: choir' in text
    assert 'id = "su"' not in text
    assert "# an hour, as in the trial" not in text  # went with its schedule
    listed = json_lines(ctl("schedule", "list", "--json").stdout)[-1]["schedules"]
    assert [(s["id"], s["enabled"]) for s in listed] == [("wk", False), (new_id, True)]


def test_a_schedules_file_nested_too_deep_is_one_line_and_never_overwritten(
    user_dirs: dict[str, Path],
) -> None:
    path = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "schedules.toml"
    path.parent.mkdir(parents=True)
    deep = "schedule = " + "[" * 5000 + "]" * 5000 + "\n"
    path.write_text(deep, encoding="utf-8")
    for args in (["list"], ["add", "evening-45", "--days", "mon", "--at", "21:00"]):
        ran = ctl("schedule", *args)
        assert ran.returncode == 2
        assert ran.stderr.startswith(f"error: {path}: not valid TOML: nested too deeply; fix it")
        assert len(ran.stderr.strip().splitlines()) == 1
    assert path.read_text(encoding="utf-8") == deep
    with pytest.raises(ScheduleError, match="nested too deeply"):
        ScheduleBook(path).load_each()


def test_a_time_of_day_is_written_in_ascii_digits_on_the_command_line_and_in_the_file() -> None:
    # Found by an attack: `schedule add --at` took full-width digits, the file did not.
    from massager_ctl.schedules.schedule import ScheduleError, parse_clock

    assert parse_clock("21:45", "--at") == time(21, 45)
    with pytest.raises(ScheduleError, match="not a time of day"):
        parse_clock("\uff12\uff11:\uff14\uff15", "--at")  # full-width 21:45


# --- files: a folder that cannot be written ---------------------------------------


def test_schedule_add_names_a_config_folder_that_cannot_be_written(
    user_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_home = user_dirs["XDG_CONFIG_HOME"]
    folder = config_home / "massager-ctl"
    add = ("schedule", "add", "evening-45", "--days", "mon", "--at", "21:00")
    # The config folder not made yet, in a folder that cannot be written.
    with read_only(config_home, monkeypatch):
        code, out, err = run_cli(capsys, *add)
    assert (code, out) == (2, "")
    assert err == (f"error: {folder / 'schedules.toml'}: cannot write it: the folder "
                   f"{config_home} is not writable by you (Permission denied); nothing was "
                   "changed\n")  # fmt: skip
    # Made, with a schedule and the lock from before, and then made read-only.
    assert run_cli(capsys, *add)[0] == 0
    before = (folder / "schedules.toml").read_text()
    with read_only(folder, monkeypatch):
        code, out, err = run_cli(capsys, *add[:-1], "22:00")
    assert (code, out) == (2, "")
    assert err == (f"error: {folder / 'schedules.toml'}: cannot write it: the folder {folder} "
                   "is not writable by you (Permission denied); nothing was changed\n")  # fmt: skip
    assert (folder / "schedules.toml").read_text() == before
    assert sorted(p.name for p in folder.iterdir()) == [".schedules.toml.lock", "schedules.toml"]


@pytest.mark.parametrize("under", ["", "cfg"])
def test_schedule_add_names_a_file_where_the_config_folder_should_be(
    tmp_path: Path, under: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    home = afile / under if under else afile
    env = dict(os.environ, XDG_CONFIG_HOME=str(home))
    added = ctl("schedule", "add", "evening-45", "--days", "mon", "--at", "21:00", env=env)
    assert added.returncode == 2
    path = home / "massager-ctl" / "schedules.toml"
    assert added.stderr == (f"error: {path}: cannot write it: {afile} is a file, not a folder; "
                            "nothing was changed\n")  # fmt: skip


# --- schedules that would not both run; what was given, said back --------------------


def at(id_: str, days: list[str], when: str, tz: str = BERLIN, **extra: object) -> Schedule:
    return Schedule.model_validate({"id": id_, "profile": "evening-45", "days": days,
                                    "at": when, "tz": tz, **extra})  # fmt: skip


def test_days_are_said_as_given_daily_weekdays_weekends_or_each() -> None:
    assert at("a1", list(DAYS), "21:00").describe() == "daily at 21:00 (Europe/Berlin)"
    assert at("a1", list(DAYS[:5]), "21:00").describe() == "weekdays at 21:00 (Europe/Berlin)"
    assert at("a1", ["sun", "sat"], "21:00").describe() == "weekends at 21:00 (Europe/Berlin)"
    assert at("a1", ["thu", "mon"], "21:00").describe() == "mon, thu at 21:00 (Europe/Berlin)"
    added = ctl("schedule", "add", "evening-45", "--days", "daily", "--at", "21:00", "--tz", BERLIN)
    assert added.returncode == 0, added.stderr
    said = " ".join(added.stdout.split())
    assert said.startswith("added ")
    assert ": evening-45 daily at 21:00 (Europe/Berlin); first run " in said
    listed = ctl("schedule", "list", env=dict(os.environ, COLUMNS="200"))
    assert "daily at 21:00 (Europe/Berlin)" in listed.stdout


def test_the_same_program_at_the_same_time_on_the_same_days_is_refused(
    user_dirs: dict[str, Path],
) -> None:
    args = ("schedule", "add", "evening-45", "--days", "mon,thu", "--at", "21:45", "--tz", BERLIN)
    first = json_lines(ctl(*args, "--json").stdout)[-1]["id"]
    refused = ctl(*args)
    assert refused.returncode == 2
    assert refused.stderr == (f"error: schedule {first} already runs evening-45 mon, thu at "
                              "21:45 (Europe/Berlin); nothing was added\n")  # fmt: skip
    # The same start said another way is the same schedule.
    again = ctl("schedule", "add", "evening-45", "--days", "thu,mon", "--before", "22:45",
                "--lead", "60m", "--tz", BERLIN)  # fmt: skip
    assert again.returncode == 2
    assert f"schedule {first} already runs" in again.stderr
    assert ctl("schedule", "disable", first).returncode == 0
    disabled = ctl(*args)
    assert disabled.returncode == 2
    assert disabled.stderr == (f"error: schedule {first} already runs evening-45 mon, thu at "
                               f"21:45 (Europe/Berlin), disabled (`massager-ctl schedule enable "
                               f"{first}`); nothing was added\n")  # fmt: skip
    listed = json_lines(ctl("schedule", "list", "--json").stdout)[-1]["schedules"]
    assert [s["id"] for s in listed] == [first]
    # Another program, time, day, device or zone is another schedule.
    for other in (("--days", "mon", "--at", "21:45"), ("--days", "mon,thu", "--at", "21:46"),
                  ("--days", "mon,thu", "--at", "21:45", "--device", "sim://other"),
                  ("--days", "mon,thu", "--at", "21:45", "--tz", NEW_YORK)):  # fmt: skip
        added = ctl("schedule", "add", "evening-45", "--tz", BERLIN, *other)
        assert added.returncode == 0, added.stderr


def test_schedules_closer_than_a_program_and_the_rest_after_it_are_found() -> None:
    minutes = {"evening-45": 45.0, "wind-down-30": 30.0}
    rest = timedelta(minutes=30)
    after = datetime(2026, 11, 1, tzinfo=UTC)  # a Sunday
    first = at("a1", ["mon"], "21:00")
    later = at("b2", ["mon", "fri"], "22:00", profile="wind-down-30")
    [clash] = clashes(later, [first], minutes=minutes, rest=rest, after=after)
    assert clash.other == first
    assert (clash.earlier, clash.later) == (first, later)
    assert clash.earlier_at == datetime(2026, 11, 2, 20, tzinfo=UTC)  # Monday 21:00 in Berlin
    assert clash.describe() == (
        "this schedule and schedule a1 come too close: first on Mon 02 Nov, wind-down-30 at "
        "22:00 would not run, since evening-45 at 21:00 runs 45 min and 30 min of rest follow "
        "(rest_minutes in [limits] of config.toml)"
    )
    # Exactly the program and the rest apart, on other days, or disabled: no clash.
    for fine in (at("c3", ["mon"], "22:15"), at("c3", ["tue"], "21:30"),
                 at("c3", ["mon"], "21:30", enabled=False)):  # fmt: skip
        assert clashes(fine, [first], minutes=minutes, rest=rest, after=after) == []
    assert clashes(later, [first], minutes=minutes, rest=timedelta(0), after=after) == []
    # The earlier may be the new one, and a start together is a clash too.
    [clash] = clashes(first, [later], minutes=minutes, rest=rest, after=after)
    assert (clash.earlier, clash.later) == (first, later)
    together = at("d4", ["mon"], "21:00", profile="wind-down-30")
    [clash] = clashes(together, [first], minutes=minutes, rest=rest, after=after)
    assert clash.describe() == (
        "this schedule and schedule a1 come too close: first on Mon 02 Nov, evening-45 and "
        "wind-down-30 both start at 21:00, and only one would run"
    )
    # Across zones and midnight: Sunday 23:30 in New York is Monday 05:30 in Berlin.
    night = at("e5", ["sun"], "23:30", tz=NEW_YORK)
    morning = at("f6", ["mon"], "06:00", profile="wind-down-30")
    [clash] = clashes(morning, [night], minutes=minutes, rest=rest, after=after)
    assert (clash.earlier, clash.later) == (night, morning)
    assert "first on Mon 02 Nov, wind-down-30 at 06:00 would not run, since evening-45 at " \
           "05:30 runs" in clash.describe()  # fmt: skip
    # A program whose length is not known (its profile gone) is left out.
    assert clashes(later, [first], minutes={}, rest=rest, after=after) == []


def test_schedule_add_warns_of_a_schedule_it_would_keep_from_running(
    user_dirs: dict[str, Path],
) -> None:
    first = json_lines(ctl("schedule", "add", "evening-45", "--days", "mon", "--at", "21:00",
                           "--tz", BERLIN, "--json").stdout)[-1]["id"]  # fmt: skip
    close = ctl("schedule", "add", "wind-down-30", "--days", "mon,fri", "--at", "22:00",
                "--tz", BERLIN)  # fmt: skip
    assert close.returncode == 0, close.stderr
    assert close.stdout.startswith("added ")
    said = " ".join(close.stderr.split())
    assert said.startswith(f"warning: this schedule and schedule {first} come too close: first on "
                           "Mon ")  # fmt: skip
    assert said.endswith(", wind-down-30 at 22:00 would not run, since evening-45 at 21:00 runs "
                         "45 min and 30 min of rest follow (rest_minutes in [limits] of "
                         "config.toml); added all the same")  # fmt: skip
    as_json = ctl("schedule", "add", "deep-pressure-30", "--days", "mon", "--at", "20:30",
                  "--tz", BERLIN, "--json")  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    [result] = json_lines(as_json.stdout)
    assert result["kind"] == "schedule"
    assert [w.split(":")[0] for w in result["warnings"]] == [
        f"this schedule and schedule {first} come too close"
    ]
    listed = json_lines(ctl("schedule", "list", "--json").stdout)[-1]["schedules"]
    assert len(listed) == 3  # all added
    config = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "config.toml"
    config.write_text("[limits]\nrest_minutes = 0\n")
    apart = ctl("schedule", "add", "wind-down-30", "--days", "fri", "--at", "21:30", "--tz", BERLIN)
    assert (apart.returncode, apart.stderr) == (0, "")  # it ends as the one at 22:00 begins


BROKEN_BESIDE_GOOD = """\
[[schedule]]
id = "g1"
profile = "evening-45"
days = ["mon"]
at = 21:45:00
tz = "Europe/Berlin"

[[schedule]]
id = "b2"
profile = "wind-down-30"
days = ["tue"]
at = 21
tz = "Europe/Berlin"
"""


def test_one_bad_schedule_is_listed_as_broken_beside_the_good(user_dirs: dict[str, Path]) -> None:
    path = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "schedules.toml"
    path.parent.mkdir(parents=True)
    path.write_text(BROKEN_BESIDE_GOOD, encoding="utf-8")
    error = 'at: must be a time of day, as 21:45:00 or "21:45", not the number 21'
    listed = ctl("schedule", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = json_lines(listed.stdout)[-1]
    [good], [broken] = listing["schedules"], listing["broken"]
    assert good["id"] == "g1"
    assert good["next"] is not None
    assert broken == {"file": str(path), "line": 8, "id": "b2", "profile": "wind-down-30",
                      "error": error}  # fmt: skip
    shown = ctl("schedule", "list", env=dict(os.environ, COLUMNS="300"))
    assert (shown.returncode, shown.stderr) == (0, "")
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in shown.stdout.splitlines()}
    assert rows["g1"].startswith("evening-45 mon at 21:45 (Europe/Berlin)")
    assert rows["b2"] == f"wind-down-30 broken: {path} (the table at line 8): {error} not run"
    upcoming = ctl("schedule", "next", "--json")
    assert upcoming.returncode == 0, upcoming.stderr
    assert {run["schedule"] for run in json_lines(upcoming.stdout)[-1]["runs"]} == {"g1"}
    assert upcoming.stderr == f"warning: {path} (the table at line 8): {error}; it does not run\n"
    [one] = ScheduleBook(path).load_each()[1]
    assert one == BrokenSchedule(file=path, line=8, id="b2", profile="wind-down-30", error=error)
    assert str(one) == f"{path} (the table at line 8): {error}"
    # A change would rewrite the file: it is refused while the file is damaged, as before.
    refused = ctl("schedule", "add", "evening-45", "--days", "sat", "--at", "21:00")
    assert refused.returncode == 2
    assert "never overwritten while damaged" in refused.stderr
    assert path.read_text(encoding="utf-8") == BROKEN_BESIDE_GOOD


def test_the_last_schedule_removed_leaves_a_file_the_next_add_can_change(tmp_path: Path) -> None:
    # Found in review: the last remove wrote `schedule = []`, and the next add was refused
    # as if a person had written the schedules some other way.
    book = ScheduleBook(tmp_path / "schedules.toml")
    evening = {"profile": "evening-45", "at": "21:00"}
    made = Schedule.model_validate({"id": "a1", "days": ["mon"], **evening})
    book.save([made])
    book.save([])
    assert "[[schedule]]" not in book.path.read_text(encoding="utf-8")
    assert "schedule = " not in book.path.read_text(encoding="utf-8")
    again = Schedule.model_validate({"id": "b2", "days": ["tue"], **evening})
    book.save([again])
    assert [s.days for s in book.load()] == [again.days]
    # A file an older version left that way is mended by the next add too.
    book.path.write_text("schedule = []\n", encoding="utf-8")
    book.save([made])
    assert [s.id for s in book.load()] == [made.id]
