"""Turning results into text for people (rich) or JSON lines for scripts.

Commands return data; this module is the one place that decides how it looks.
With ``--json`` every object is printed as one line of JSON on stdout, so a
script can read a stream of them; the last line of ``start`` is the result.
"""

from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from firmware_protocol import LinkStats

from .history import Day, Entry, Hidden
from .journal import Rating, Session, Week
from .models import DeviceInfo, DeviceStatus, explain_faults
from .profiles import Profile
from .programs import ProgramResult, Progress
from .supervisor import LinkNotice

BAR = " ▏▎▍▌▋▊▉█"


def console() -> Console:
    """The console for human output on stdout."""
    return Console(highlight=False)


def errors() -> Console:
    """The console for notes and errors on stderr."""
    return Console(stderr=True, highlight=False)


def emit_json(obj: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Print one JSON document on one line and flush, for scripts reading a stream."""
    if isinstance(obj, BaseModel):
        line = obj.model_dump_json()
    else:
        import json

        line = json.dumps(obj, default=_jsonable)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _jsonable(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def clock(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def bar(value: float, full: float, width: int = 10) -> str:
    """A horizontal bar of ``width`` cells, eighths included."""
    eighths = round(max(0.0, min(value / full, 1.0)) * width * 8) if full > 0 else 0
    whole, part = divmod(eighths, 8)
    return (BAR[-1] * whole + (BAR[part] if part else "")).ljust(width)


def chamber_table(info: DeviceInfo, status: DeviceStatus) -> Table:
    """Pressure per chamber, one row per leg, foot to thigh left to right."""
    positions = sorted({(c.rank, c.position) for c in info.chambers})
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("")
    for _, position in positions:
        table.add_column(position, justify="left", min_width=14)
    legs: dict[str, list[str]] = {}
    for chamber, pressure in zip(info.chambers, status.pressures_mmhg, strict=False):
        cells = legs.setdefault(chamber.leg, ["" for _ in positions])
        style = "red" if pressure >= info.max_target_mmhg else "cyan"
        cells[chamber.rank] = f"[{style}]{bar(pressure, info.ceiling_mmhg, 6)}[/] {pressure:5.1f}"
    for leg, cells in legs.items():
        table.add_row(leg, *cells)
    return table


def status_view(
    info: DeviceInfo,
    status: DeviceStatus,
    address: str,
    link: LinkStats | None = None,
    auth: str | None = None,
) -> Group:
    """The whole picture of a device for ``massager-ctl status``; ``auth`` says how the link is."""
    head = Text.assemble(
        (f"{info.model}", "bold"),
        f"  firmware {info.firmware}  serial {info.serial}  at {address}",
    )
    state = f"[bold]{status.state}[/]"
    if status.active:
        state += f"  {status.mode}, intensity {status.intensity}, {clock(status.seconds_left)} left"
    if status.faults:
        state += f"  [red]faults: {', '.join(status.faults)}[/]"
    battery = f"battery {status.battery_pct}%" + (" (charging)" if status.charging else "")
    facts = Table.grid(padding=(0, 2))
    facts.add_row("state", state)
    facts.add_row("last session", status.last_end.replace("_", " "))
    if status.faults:
        facts.add_row("fault", f"[red]{escape(explain_faults(status.faults))}[/]")
    facts.add_row("power", battery)
    levels = ", ".join(f"{lv.level}: {lv.target_mmhg:g}" for lv in info.levels)
    facts.add_row("modes", ", ".join(info.modes))
    facts.add_row("intensities", f"{levels} mmHg; ceiling {info.ceiling_mmhg:g} mmHg")
    facts.add_row("session cap", f"{info.session_cap_s // 60} min")
    if link is not None:
        facts.add_row("link", link_line(link))
    if auth is not None:
        facts.add_row("control", auth)
    return Group(head, facts, chamber_table(info, status))


def link_line(link: LinkStats) -> str:
    """The frame counters a person checks when a link misbehaves."""
    line = (
        f"{link.frames_sent} frames sent, {link.frames} received; "
        f"{link.crc_errors} CRC errors, {link.malformed} malformed, {link.resyncs} resyncs"
    )
    extras = {
        "retransmits": link.retransmits,
        "timeouts": link.timeouts,
        "lost": link.lost,
        "duplicates": link.duplicates,
    }
    more = [f"{count} {name}" for name, count in extras.items() if count]
    return line + (f"; {', '.join(more)}" if more else "")


def profile_view(profile: Profile, path: str) -> Group:
    """One profile in full for ``profiles show``."""
    head = Text.assemble(
        (profile.title, "bold"), f"  ({profile.name}, {profile.total_minutes:g} min)"
    )
    steps = Table("#", "min", "what", "", box=None)
    for index, step in enumerate(profile.steps, 1):
        steps.add_row(
            str(index), f"{step.minutes:g}", step.describe(), Text(step.note, style="dim")
        )
    parts: list[Any] = [
        head,
        Text(profile.description),
        Text.assemble(("Why: ", "bold"), profile.why),
    ]
    if profile.sources:
        parts.append(Text("Sources: " + "; ".join(profile.sources), style="dim"))
    parts += [steps, Text(f"file: {path}", style="dim")]
    return Group(*parts)


class ProgramDisplay:
    """Shows a running program: a live panel on a terminal, lines otherwise, JSON for scripts.

    Feed it `link` notices and `progress` reports; the first notice (connected)
    brings the device's description that the panel needs.
    """

    def __init__(self, profile: Profile, *, json: bool) -> None:
        self.info: DeviceInfo | None = None
        self.profile = profile
        self.json = json
        self.out = console()
        self.live: Live | None = None
        self._last_line = -1.0
        self._last_step = 0
        if not json and self.out.is_terminal:
            self.live = Live(console=self.out, refresh_per_second=4, transient=False)
            self.live.start()

    def link(self, notice: LinkNotice) -> None:
        """Show what happened to the link (lost, back, given up)."""
        if notice.info is not None:
            self.info = notice.info
        if self.json:
            emit_json(notice)
        elif notice.event != "connected":
            style = "green" if notice.event == "back" else "yellow"
            self.out.print(f"[{style}]{escape(notice.message)}[/]")

    def progress(self, progress: Progress) -> None:
        """Show one progress report."""
        if self.json:
            emit_json(progress)
        elif self.live is not None and self.info is not None:
            self.live.update(self._panel(progress))
        else:
            # Not a terminal: a line per step and per wall-clock 10 s is plenty for a log.
            now = time.monotonic()
            if progress.step != self._last_step or now - self._last_line >= 10:
                self._last_step, self._last_line = progress.step, now
                status = progress.status
                self.out.print(
                    f"step {progress.step}/{progress.steps} {progress.step_label}: "
                    f"{status.state}, {clock(progress.step_left_s)} left in step, "
                    f"{clock(progress.program_left_s)} in program, "
                    f"peak {status.peak_mmhg:.0f} mmHg, battery {status.battery_pct}%"
                )

    def close(self) -> None:
        """Stop the live panel, if any, leaving its last frame on the screen."""
        if self.live is not None:
            self.live.stop()
            self.live = None

    def finish(self, result: ProgramResult) -> None:
        """Show how the program ended."""
        self.close()
        if self.json:
            emit_json(result)
            return
        style = "green" if result.exit_code == 0 else "yellow"
        final = result.final_status
        vented = (
            f"; chambers at {final.peak_mmhg:.0f} mmHg or less"
            if final is not None else ""
        )  # fmt: skip
        resumed = f", resumed {result.resumes}x after a lost link" if result.resumes else ""
        self.out.print(
            f"[{style}]{escape(self.profile.title)}: {escape(result.message)}[/] "
            f"({result.steps_done}/{result.steps} steps, {clock(result.pressure_s)} under pressure"
            f"{resumed}{vented})"
        )

    def _panel(self, progress: Progress) -> Panel:
        assert self.info is not None
        status = progress.status
        title = (
            f"{self.profile.title} · step {progress.step}/{progress.steps}: {progress.step_label}"
        )
        line = Text.assemble(
            (status.state, "bold"),
            f"   step {clock(progress.step_left_s)} left"
            f"   program {clock(progress.program_left_s)} left"
            f"   battery {status.battery_pct}%",
        )
        return Panel(Group(line, chamber_table(self.info, status)), title=title, title_align="left")


SOURCES = {"schedule": "scheduled", "mqtt": "over MQTT"}
"""How a session's source shows in the history (one from the command line shows none)."""
DAY_NAMES = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")


def _felt(score: int | float) -> str:
    """The colour of a rating: 0 calm (green) .. 10 the worst (red)."""
    return "green" if score < 3.5 else "yellow" if score < 6.5 else "red"


def _legs(entry: Entry) -> Text:
    """How the legs felt before and after a session: ``7 → 3`` (``-`` for no rating)."""
    text = Text()
    for rating, end in ((entry.before, " → "), (entry.after, "")):
        if rating is None:
            text.append("-", style="dim")
        else:
            text.append(str(rating.score), style=_felt(rating.score))
        text.append(end)
    return text


def _program(session: Session) -> Text:
    """The program's name, and where it came from if not the command line."""
    program = Text(session.profile)
    tag = "demo" if session.demo else SOURCES.get(session.source)
    if tag:
        program.append(f" {tag}", style="dim")
    return program


def _notes(*ratings: Rating | None) -> str:
    return "; ".join(r.note for r in ratings if r is not None and r.note)


HISTORY_FIXED_WIDTH = 33
"""The history's columns but the program and the legs: day, time, ended, min and the gaps."""
NOTES_INLINE_WIDTH = 80
"""From this width on a rating's note follows its score; below, it takes a row of its own."""


def history_view(
    entries: list[Entry],
    ratings: list[Rating],
    weeks: list[Week],
    days: dict[date, Day],
    hidden: Hidden,
    today: date,
    width: int = NOTES_INLINE_WIDTH,
) -> Group:
    """Day by day the sessions and the ratings; then each week as a row of days.

    A session shows how the legs felt before and after it; a rating tied to none
    stands on its own row. ``width`` is the terminal's: on a narrow one a note gets
    a row of its own.
    """
    inline = width >= NOTES_INLINE_WIDTH
    rows: list[tuple[datetime, Entry | Rating]] = [(e.session.started_at, e) for e in entries]
    rows += [(r.at, r) for r in ratings]
    rows.sort(key=lambda row: row[0])
    # Fixed widths but for the last column, which takes what is left: rich crops a row
    # that its columns' own measures make wider than the terminal (at 60 columns, say).
    # A name is what one types: on its line whole up to 24 characters, folded beyond,
    # never cut; where it came from ("scheduled") wraps below it if the line is short.
    names = max((len(e.session.profile) for e in entries), default=0)
    tagged = max((len(_program(e.session)) for e in entries), default=0)
    room = width - HISTORY_FIXED_WIDTH - 12  # leave the legs column 12 at least
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("day", width=10)
    table.add_column("time", width=5)
    table.add_column("program", width=max(7, min(names, 24), min(tagged, room)), overflow="fold")
    table.add_column("ended", width=10, overflow="fold")
    table.add_column("min", justify="right", width=3)
    table.add_column("legs", overflow="fold")
    shown_day: date | None = None
    for moment, row in rows:
        local = moment.astimezone()
        day = "" if local.date() == shown_day else f"{local:%a %d %b}"
        shown_day = local.date()
        if isinstance(row, Rating):
            program, ended, minutes = Text("rated", style="dim"), "", ""
            legs, note = Text(str(row.score), style=_felt(row.score)), row.note
        else:
            session = row.session
            program = _program(session)
            ended, minutes = session.ended.replace("_", " "), f"{session.minutes:g}"
            legs, note = _legs(row), _notes(row.before, row.after)
        if note and inline:
            legs.append(" " + note, style="dim")
        table.add_row(day, f"{local:%H:%M}", program, ended, minutes, legs)
        if note and not inline:
            table.add_row("", "", Text(note, style="dim"))
    parts: list[Any] = [table if rows else Text("No sessions or ratings in these weeks.")]
    if entries:
        parts.append(Text("legs: how they felt within 4 hours before → after the session "
                          "(0 calm .. 10 worst)", style="dim"))  # fmt: skip
    if hidden:
        parts.append(Text(hidden.describe(), style="dim"))
    parts += [Text(""), week_table(weeks, days, today)]
    return Group(*parts)


def week_table(weeks: list[Week], days: dict[date, Day], today: date) -> Group:
    """Each week as a row of days (how the legs felt, ● for a session), against the goal."""
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("week of", no_wrap=True)
    table.add_column(" ".join(f"{name:>2} " for name in DAY_NAMES), no_wrap=True)
    for header in ("sessions", "min", "legs"):
        table.add_column(header, no_wrap=True, justify="left" if header == "sessions" else "right")
    for week in weeks:
        cells = Text()
        for offset in range(7):
            day = week.starts + timedelta(days=offset)
            if offset:
                cells.append(" ")
            seen = days.get(day)
            if day > today:
                cells.append("  ")
            elif seen is None or seen.rating is None:
                cells.append(" ·", style="dim")
            else:
                cells.append(f"{seen.rating:>2}", style=_felt(seen.rating))
            cells.append("●" if seen is not None and seen.sessions else " ", style="bold")
        standing = {"met": "green", "below": "yellow", "so far": "dim"}
        count = (
            Text("-", style="dim")
            if week.standing == "before first use"
            else Text(f"{week.sessions}/{week.goal} ").append(
                week.standing, style=standing[week.standing]
            )
        )
        mean = "" if week.mean_rating is None else f"{week.mean_rating:g}"
        minutes = f"{week.minutes:g}" if week.in_use else ""
        table.add_row(f"{week.starts:%d %b}", cells, count, minutes, mean)
    legend = Text(
        "A day shows how the legs felt (0 calm .. 10 worst, the day's mean); ● a session; "
        "- a week before the first session.",
        style="dim",
    )
    return Group(table, legend)
