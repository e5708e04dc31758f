"""The journal: sessions and ratings in SQLite, weekly totals, and nothing lost to a crash."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from massager_ctl.errors import InputError
from massager_ctl.journal import SCHEMA, VERSION, Journal, JournalError, weeks
from tests.massager_ctl.test_cli import ctl, json_lines

MONDAY = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # noon UTC: the same day in any zone


def test_sessions_and_ratings_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    first = journal.begin("sim://", "evening-45", "cli", now=MONDAY)
    journal.end(first, "completed", pressure_s=2700, message="ran to the end", now=MONDAY)
    second = journal.begin("ble://AirLeg", "wind-down-30", "cli", now=MONDAY + timedelta(days=1))
    journal.end(second, "stopped_on_remote", pressure_s=600, now=MONDAY + timedelta(days=1))
    journal.begin("sim://", "evening-45", "cli", now=MONDAY + timedelta(days=2))  # never ended
    journal.rate(6, "restless at 22:00", now=MONDAY)
    sessions = journal.sessions()
    assert [(s.profile, s.ended, s.minutes) for s in sessions] == [
        ("evening-45", "completed", 45.0),
        ("wind-down-30", "stopped", 10.0),
        ("evening-45", "unfinished", 0.0),
    ]
    assert sessions[0].started_at == MONDAY
    assert sessions[1].device == "ble://AirLeg"
    [rating] = journal.ratings()
    assert (rating.score, rating.note, rating.at) == (6, "restless at 22:00", MONDAY)
    assert journal.sessions(since=MONDAY + timedelta(hours=1))[0].profile == "wind-down-30"
    with pytest.raises(InputError, match="0 \\(calm\\) to 10"):
        journal.rate(11)


def test_weeks_count_sessions_that_ran_against_the_goal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    for day, outcome, pressure in [(0, "completed", 2700), (3, "link_lost", 900),
                                   (4, "fault", 0), (8, "completed", 2700)]:  # fmt: skip
        sid = journal.begin("sim://", "evening-45", "cli", now=MONDAY + timedelta(days=day))
        journal.end(sid, outcome, pressure_s=pressure, now=MONDAY + timedelta(days=day))
    journal.rate(8, now=MONDAY)
    journal.rate(4, now=MONDAY + timedelta(days=6))
    summary = weeks(journal.sessions(), journal.ratings(), goal=2,
                    first=date(2026, 11, 4), last=date(2026, 11, 15))  # fmt: skip
    assert [w.starts for w in summary] == [date(2026, 11, 2), date(2026, 11, 9)]
    assert [(w.sessions, w.met) for w in summary] == [(2, True), (1, False)]
    assert summary[0].minutes == 60.0
    assert summary[0].mean_rating == 6.0
    assert summary[1].mean_rating is None


def test_a_write_killed_mid_transaction_loses_nothing_recorded(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    sid = journal.begin("sim://", "evening-45", "cli", now=MONDAY)
    journal.end(sid, "completed", pressure_s=2700, now=MONDAY)
    # Another process is killed half-way through writing: its rows are not committed.
    script = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.execute('BEGIN')\n"
        "db.execute(\"INSERT INTO ratings (at, score) VALUES ('2026-11-03T00:00:00+00:00', 3)\")\n"
        "db.execute(\"UPDATE sessions SET outcome = 'fault'\")\n"
        "os._exit(9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert killed.returncode == 9
    [session] = journal.sessions()
    assert session.ended == "completed"
    assert journal.ratings() == []
    journal.rate(2, now=MONDAY)  # and the journal goes on
    assert len(journal.ratings()) == 1


def test_a_damaged_or_newer_journal_is_an_error_and_left_as_it_is(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"this is not a database, " * 100)
    before = damaged.read_bytes()
    with pytest.raises(JournalError, match=f"the journal {damaged} cannot be used"):
        Journal(damaged).sessions()
    assert damaged.read_bytes() == before
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="written by a newer massager-ctl"):
        Journal(newer).rate(3)


def test_start_history_and_rate_on_the_command_line(user_dirs: dict[str, Path]) -> None:
    ran = ctl("start", "--mode", "wave", "--intensity", "2", "--duration", "2m",
              "--speed", "100", "--json")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ctl("rate", "4", "--note", "calmer").returncode == 0
    too_high = ctl("rate", "11")
    assert too_high.returncode == 2
    assert "0 (calm) to 10 (the worst)" in too_high.stderr
    history = json_lines(ctl("history", "--json", "--all").stdout)[-1]
    [session] = history["sessions"]
    assert session["ended"] == "completed"
    assert session["profile"] == "adhoc"
    assert session["device"] == "sim://"
    assert (session["source"], session["demo"]) == ("cli", True)  # on the simulator: a demo
    assert session["pressure_s"] == pytest.approx(120, abs=2)
    [rating] = history["ratings"]
    assert (rating["score"], rating["note"]) == (4, "calmer")
    assert history["goal"] == 2
    assert len(history["weeks"]) == 4
    assert history["weeks"][-1]["sessions"] == 0  # a demo squeezes no leg
    text = ctl("history", "--goal", "1", "--all").stdout
    assert "adhoc demo" in text
    assert "0/1" not in text  # no week is judged before the first session
    assert (user_dirs["XDG_STATE_HOME"] / "massager-ctl" / "journal.sqlite3").exists()


def test_a_journal_that_cannot_be_written_does_not_stop_the_program(
    user_dirs: dict[str, Path],
) -> None:
    path = user_dirs["XDG_STATE_HOME"] / "massager-ctl" / "journal.sqlite3"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage " * 200)
    ran = ctl("start", "--mode", "wave", "--intensity", "1", "--duration", "1m", "--speed", "100")
    assert ran.returncode == 0
    assert "this session is not journaled" in ran.stderr
    assert path.read_bytes() == b"garbage " * 200


def test_a_journal_of_the_first_version_is_upgraded_keeping_everything(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(SCHEMA)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO sessions (started_at, ended_at, device, profile, source, outcome,"
                   " pressure_s) VALUES ('2026-11-02T21:00:00+00:00', '2026-11-02T21:45:00+00:00',"
                   " 'sim://', 'evening-45', 'cli', 'completed', 2700)")  # fmt: skip
        db.execute("INSERT INTO sessions (started_at, ended_at, device, profile, source, outcome,"
                   " pressure_s) VALUES ('2026-11-03T21:00:00+00:00', '2026-11-03T21:45:00+00:00',"
                   " 'sim://', 'evening-45', 'demo', 'completed', 2700)")  # fmt: skip
    journal = Journal(path)
    [old, demo] = journal.sessions()
    assert (old.profile, old.minutes, old.planned_s, old.demo) == ("evening-45", 45.0, 0.0, False)
    # A --speed run was journaled with the source "demo": from the command line, a demo.
    assert (demo.source, demo.demo) == ("cli", True)
    assert journal.take_run("a1", MONDAY, "started")
    assert not journal.take_run("a1", MONDAY, "started")  # at most once
    assert journal.taken_runs(MONDAY) == {("a1", MONDAY)}
    journal.set_mark("daemon.looked_until", MONDAY)
    assert journal.mark("daemon.looked_until") == MONDAY
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == VERSION == 3


def partly_damaged(path: Path) -> bytes:
    """A journal of many sessions, one page of which (holding sessions, no table's root) is garbage.

    SQLite opens it and writes to the tables whose pages are whole: only a check
    of the whole file finds the damage.
    """
    journal = Journal(path)
    for day in range(200):
        at = MONDAY + timedelta(days=day)
        sid = journal.begin("sim://", "evening-45", "cli", planned_s=2700, now=at)
        journal.end(sid, "completed", pressure_s=2700, message="ran to the end " * 10, now=at)
    with contextlib.closing(sqlite3.connect(path)) as db:
        roots = {row[0] for row in db.execute("SELECT rootpage FROM sqlite_master")}
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    victim = next(page for page in range(pages, 1, -1) if page not in roots)
    data = bytearray(path.read_bytes())
    start = (victim - 1) * page_size
    data[start : start + page_size] = bytes([0x5A]) * page_size
    path.write_bytes(bytes(data))
    return bytes(data)


def test_rate_on_a_partly_damaged_journal_says_so_and_leaves_it_as_it_is(
    user_dirs: dict[str, Path],
) -> None:
    path = user_dirs["XDG_STATE_HOME"] / "massager-ctl" / "journal.sqlite3"
    path.parent.mkdir(parents=True)
    before = partly_damaged(path)
    rated = ctl("rate", "3")
    assert rated.returncode == 1, rated.stdout
    assert "rated" not in rated.stdout
    assert f"the journal {path} is damaged" in rated.stderr
    assert "it is left as it is" in rated.stderr
    assert "Traceback" not in rated.stderr
    assert path.read_bytes() == before
    # A program still runs, unjournaled, and the journal is still left alone.
    ran = ctl("start", "--mode", "wave", "--intensity", "1", "--duration", "1m", "--speed", "100")
    assert ran.returncode == 0, ran.stderr
    assert "this session is not journaled" in ran.stderr
    assert path.read_bytes() == before
