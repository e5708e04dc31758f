"""`history` worth looking at: ratings tied to sessions by time, the trend, a CSV for a doctor.

The journal is written directly, at chosen moments in this computer's local time,
and `massager-ctl history` is run as a person runs it.
"""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest

from massager_ctl.history import RATING_WINDOW, after_which, shown, tie, untied
from massager_ctl.journal import Journal, Rating, Session, weeks
from massager_ctl.paths import journal_file
from tests.massager_ctl.test_cli import ctl, json_lines

EVENING = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)  # a Monday


def session(sid: int, start: datetime, minutes: float, **fields: object) -> Session:
    """A session of ``minutes`` under pressure from ``start``."""
    values: dict[str, object] = {
        "id": sid, "started_at": start, "ended_at": start + timedelta(minutes=minutes),
        "device": "ble://AirLeg", "profile": "evening-45", "source": "cli",
        "outcome": "completed", "pressure_s": minutes * 60, "message": "",
        "planned_s": minutes * 60,
    }  # fmt: skip
    return Session.model_validate(values | fields)


def rating(rid: int, at: datetime, score: int, note: str = "") -> Rating:
    return Rating(id=rid, at=at, score=score, note=note)


def test_a_rating_within_4_hours_after_a_session_is_its_after_not_the_row_beside_it() -> None:
    one = session(1, EVENING, 45)  # 21:00 - 21:45
    felt = [
        rating(1, EVENING.replace(hour=8), 5, "morning"),  # that morning: no session near
        rating(2, EVENING - timedelta(minutes=10), 7, "restless"),  # before
        rating(3, EVENING + timedelta(minutes=20), 6),  # during: neither
        rating(4, EVENING + timedelta(hours=1), 3, "calmer"),  # after
        rating(5, EVENING + timedelta(hours=2), 2),  # a second one after: not the after
    ]
    [entry] = tie([one], felt)
    assert (entry.before, entry.after) == (felt[1], felt[3])
    assert [r.id for r in untied([entry], felt)] == [1, 3, 5]
    assert timedelta(hours=4) == RATING_WINDOW
    late = rating(6, one.ended_at + RATING_WINDOW + timedelta(minutes=1), 4)  # type: ignore[operator]
    assert tie([one], [late])[0].after is None
    assert after_which(late, [one]) is None
    assert after_which(felt[3], [one]) == one


def test_between_two_sessions_one_rating_is_the_first_ones_after_and_the_seconds_before() -> None:
    early = session(1, EVENING.replace(hour=18), 30)  # 18:00 - 18:30
    late = session(2, EVENING.replace(hour=21), 30)
    between = rating(1, EVENING.replace(hour=19), 4)
    first, second = tie([early, late], [between])
    assert (first.before, first.after) == (None, between)
    assert (second.before, second.after) == (between, None)
    # A session still running, or killed, has no end: its planned length stands in.
    unfinished = session(3, EVENING, 45, outcome=None, ended_at=None, pressure_s=0)
    [entry] = tie([unfinished], [rating(2, EVENING + timedelta(minutes=50), 2)])
    assert entry.after is not None


def test_demos_and_starts_that_put_no_pressure_are_hidden_and_tied_to_nothing() -> None:
    real = session(1, EVENING, 45)
    demo = session(2, EVENING + timedelta(hours=1), 5, demo=True)
    refused = session(3, EVENING + timedelta(hours=2), 0, outcome="refused")
    after = rating(1, EVENING + timedelta(hours=2, minutes=30), 3)
    entries = tie([real, demo, refused], [after])
    assert [e.after for e in entries] == [after, None, None]
    kept, hidden = shown(entries, everything=False)
    assert [e.session.id for e in kept] == [1]
    assert (hidden.demos, hidden.no_pressure) == (1, 1)
    assert "1 demo (on a simulator) and 1 start that put no pressure" in hidden.describe()
    everything, none = shown(entries, everything=True)
    assert (len(everything), bool(none)) == (3, False)


def test_weeks_before_the_first_session_are_not_below_the_goal() -> None:
    ran = [session(1, EVENING, 45)]  # Monday 23 Nov
    summary = weeks(ran, [], goal=2, first=date(2026, 11, 9), last=date(2026, 12, 1),
                    first_use=date(2026, 11, 23), today=date(2026, 12, 1))  # fmt: skip
    assert [(w.starts.day, w.standing) for w in summary] == [
        (9, "before first use"),
        (16, "before first use"),
        (23, "below"),
        (30, "so far"),  # this week, still going
    ]
    never = weeks([], [], goal=2, first=date(2026, 11, 9), last=date(2026, 11, 15), first_use=None)
    assert [w.standing for w in never] == ["before first use"]
    assert not never[0].met


# --- on the command line -------------------------------------------------------------

TODAY = datetime.now().astimezone().date()
LAST_MONDAY = TODAY - timedelta(days=TODAY.weekday() + 7)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A moment in this computer's local time."""
    return datetime.combine(day, time(hour, minute)).astimezone()


def a_month_of_use() -> None:
    """Last week two sessions (the first ever) with ratings; a demo and a refusal this week."""
    journal = Journal(journal_file())
    for day, before, after, note in [(LAST_MONDAY, 7, 3, "calmer"),
                                     (LAST_MONDAY + timedelta(days=3), 6, 2, "")]:  # fmt: skip
        journal.rate(before, "restless", now=at(day, 20, 50))
        began = journal.begin("ble://AirLeg", "trial-compression-60", "schedule",
                              planned_s=3600, now=at(day, 21))  # fmt: skip
        journal.end(began, "completed", pressure_s=3600, now=at(day, 22))
        journal.rate(after, note, now=at(day, 22, 30))
    journal.rate(5, "a morning", now=at(LAST_MONDAY + timedelta(days=5), 8))
    earlier = datetime.now(UTC) - timedelta(minutes=30)
    demo = journal.begin("sim://", "evening-45", "cli", planned_s=60, demo=True, now=earlier)
    journal.end(demo, "completed", pressure_s=60, now=earlier + timedelta(minutes=1))
    journal.not_run("ble://AirLeg", "evening-45", "schedule", "refused", "not started: rest",
                    at=earlier + timedelta(minutes=5))  # fmt: skip


def narrow(columns: int = 60) -> dict[str, str]:
    """The environment of a terminal ``columns`` wide (piped: rich reads COLUMNS)."""
    return dict(os.environ, COLUMNS=str(columns))


def test_history_shows_each_session_with_before_and_after_and_hides_demos() -> None:
    a_month_of_use()
    shown_text = ctl("history", env=narrow(100))
    assert shown_text.returncode == 0, shown_text.stderr
    out = shown_text.stdout
    rows = [line for line in out.splitlines() if "trial-compression-60" in line]
    assert len(rows) == 2
    assert re.search(r"completed\s+60 7 → 3 restless; calmer", rows[0]), out
    assert re.search(r"completed\s+60 6 → 2 restless", rows[1]), out
    assert re.search(r"08:00 rated\s+5 a morning", out), out  # tied to no session
    assert "evening-45" not in out
    assert "Not shown: 1 demo (on a simulator) and 1 start that put no pressure" in out
    everything = ctl("history", "--all", env=narrow(100)).stdout
    assert "evening-45 demo" in everything
    assert re.search(r"evening-45 scheduled\s+missed", everything), everything


def test_the_weeks_show_as_rows_of_days_and_none_before_first_use_is_below() -> None:
    a_month_of_use()
    out = ctl("history", env=narrow(60)).stdout
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    last_week = lines[f"{LAST_MONDAY:%d %b}"]
    # Monday and Thursday: the day's mean rating (7 and 3: 5; 6 and 2: 4) and a session.
    assert last_week.startswith(f"{LAST_MONDAY:%d %b}   5●  ·   ·   4●  ·   5   · ")
    assert "2/2 met" in last_week
    for back in (2, 3):
        before = lines[f"{LAST_MONDAY - timedelta(weeks=back - 1):%d %b}"]
        assert "below" not in before
        assert before.rstrip().endswith("-")
    this_week = lines[f"{LAST_MONDAY + timedelta(weeks=1):%d %b}"]
    assert "0/2 so far" in this_week  # the demo and the refusal do not count
    assert "● a session; - a week before the first session." in out.replace("\n", " ")


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_history_fits_the_terminal_and_is_plain_text_when_piped(columns: int) -> None:
    a_month_of_use()
    out = ctl("history", "--all", env=narrow(columns)).stdout
    assert "\x1b[" not in out  # piped: no colours, no cursor movement
    # The tables fit; a sentence under them stays whole on its line, as all piped prose.
    legends = ("legs: how they felt within 4 hours", "A day shows how the legs felt")
    prose = [line for line in out.splitlines() if line.startswith(legends)]
    assert len(prose) == 2, prose
    assert all(line.endswith((")", ".")) for line in prose), prose
    assert max(len(line) for line in out.splitlines() if line not in prose) <= columns
    assert "…" not in out  # nothing cut short: a name is folded if it must be
    assert out.count("trial-compression-60") == 2
    assert "7 → 3" in out


def test_history_as_csv_for_a_doctor() -> None:
    a_month_of_use()
    made = ctl("history", "--csv")
    assert made.returncode == 0, made.stderr
    header, *rows = list(csv.reader(io.StringIO(made.stdout)))
    assert header == ["date", "start", "program", "minutes under pressure", "outcome",
                      "legs before (0 calm - 10 worst)", "legs after (0 calm - 10 worst)",
                      "notes"]  # fmt: skip
    assert rows == [
        [f"{LAST_MONDAY:%Y-%m-%d}", "21:00", "trial-compression-60", "60", "completed", "7", "3",
         "before: restless; after: calmer"],
        [f"{LAST_MONDAY + timedelta(days=3):%Y-%m-%d}", "21:00", "trial-compression-60", "60",
         "completed", "6", "2", "before: restless"],
    ]  # fmt: skip
    everything = list(csv.DictReader(io.StringIO(ctl("history", "--csv", "--all").stdout)))
    assert [row["outcome"] for row in everything][2:] == [
        "completed (demo on a simulator)",
        "missed",
    ]
    both = ctl("history", "--csv", "--json")
    assert both.returncode == 2
    assert json_lines(both.stdout)[-1]["message"] == "choose one of --csv and --json"


def test_history_as_json_keeps_its_kind_and_ties_the_ratings() -> None:
    a_month_of_use()
    history = json_lines(ctl("history", "--json").stdout)[-1]
    assert history["kind"] == "history"
    assert history["all"] is False
    assert history["hidden"] == {"demos": 1, "no_pressure": 1}
    first, second = history["sessions"]
    assert (first["rating_before"]["score"], first["rating_after"]["score"]) == (7, 3)
    assert (second["rating_before"]["score"], second["rating_after"]["score"]) == (6, 2)
    assert first["ended"] == "completed"
    assert [w["standing"] for w in history["weeks"]] == [
        "before first use",
        "before first use",
        "met",
        "so far",
    ]
    assert len(history["ratings"]) == 5
    everything = json_lines(ctl("history", "--json", "--all").stdout)[-1]
    assert [s["demo"] for s in everything["sessions"]] == [False, False, True, False]


def test_rate_says_which_session_it_follows() -> None:
    journal = Journal(journal_file())
    ended = datetime.now(UTC) - timedelta(minutes=20)
    began = journal.begin("ble://AirLeg", "wind-down-30", "cli", planned_s=1800,
                          now=ended - timedelta(minutes=30))  # fmt: skip
    journal.end(began, "completed", pressure_s=1800, now=ended)
    rated = ctl("rate", "3", "--note", "calmer")
    assert rated.returncode == 0, rated.stderr
    began_at = (ended - timedelta(minutes=30)).astimezone()
    assert rated.stdout == f"rated 3/10, after wind-down-30 (began {began_at:%H:%M}): calmer\n"
    as_json = json_lines(ctl("rate", "2", "--json").stdout)[-1]
    assert (as_json["kind"], as_json["after_session"]) == ("rating", began)
