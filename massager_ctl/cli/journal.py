"""The journal's commands and the safety note: ``history``, ``rate``, ``safety``."""

from __future__ import annotations

import sys

import click

from ..errors import InputError
from .app import current_settings, journaled, json_option
from .results import HistoryReport, Rated, SafetyNote, show


@click.command()
@click.option(
    "--weeks",
    type=click.IntRange(1, 520),
    default=4,
    show_default=True,
    help="How many weeks back, this one included.",
)
@click.option(
    "--goal",
    type=click.IntRange(1, 21),
    help="Sessions a week to aim for [default: weekly_goal in the config file, else 2].",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also list demos (on a simulator) and starts that put no pressure on the legs.",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Print a CSV for a spreadsheet or a doctor: one row per session, with how the legs "
    "felt before and after.",
)
@json_option
def history(weeks: int, goal: int | None, everything: bool, as_csv: bool, as_json: bool) -> int:
    """The sessions and ratings of recent weeks, and each week against the goal.

    A rating made within 4 hours after a session is that session's "after", and
    one made within 4 hours before it its "before". Each week shows as a row of
    days: how the legs felt, and a mark for a session.
    """
    from datetime import datetime, timedelta

    from ..history import by_day, shown, tie, untied
    from ..journal import Journal
    from ..journal import weeks as by_week
    from ..paths import journal_file

    if as_csv and as_json:
        raise InputError("choose one of --csv and --json")
    goal = goal or current_settings().weekly_goal
    today = datetime.now().astimezone().date()
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first, datetime.min.time()).astimezone()
    journal = Journal(journal_file())
    sessions, ratings = journal.sessions(since), journal.ratings(since)
    began = journal.first_use()
    summary = by_week(sessions, ratings, goal=goal, first=first, last=today, today=today,
                      first_use=began.astimezone().date() if began else None)  # fmt: skip
    entries, hidden = shown(tie(sessions, ratings), everything=everything)
    if as_csv:
        from ..history import write_csv

        write_csv(entries, sys.stdout)
    else:
        show(HistoryReport(goal, everything, entries, ratings, untied(entries, ratings), summary,
                           by_day(sessions, ratings), hidden, today), as_json=as_json)  # fmt: skip
    return 0


# A score of -1 is a number to say is out of range, not an option click does not know.
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("score", type=int, metavar="N")
@click.option("--note", default="", help="A few words: what helped, what did not.")
@json_option
def rate(score: int, note: str, as_json: bool) -> int:
    """Record how restless the legs are: 0 calm ... 10 the worst (lower is better).

    Made within 4 hours after a session, it is that session's "after" in
    `history`; within 4 hours before one, its "before".
    """
    from datetime import UTC, datetime

    from ..history import RATING_WINDOW, after_which
    from ..journal import Journal
    from ..paths import journal_file

    journal = Journal(journal_file())
    rating = journal.rate(score, note)
    recent = journaled(lambda: journal.sessions(datetime.now(UTC) - 2 * RATING_WINDOW), "rating")
    show(Rated(rating, after_which(rating, recent or [])), as_json=as_json)
    return 0


@click.command()
@json_option
def safety(as_json: bool) -> int:
    """Who should not use compression, and when to stop."""
    from ..config import SAFETY_NOTE

    show(SafetyNote(SAFETY_NOTE), as_json=as_json)
    return 0
