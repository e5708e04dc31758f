"""Turning results into text for people (rich) or JSON lines for scripts.

Commands return data; this module is the one place that decides how it looks.
With ``--json`` every object is printed as one line of JSON on stdout, so a
script can read a stream of them; the last line of ``start`` is the result.
Each kind of result a command returns (`cli.results`) has its text here, in
`show_text`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import singledispatch
from typing import IO, TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .cli.results import (
    Adjusted,
    BridgeNews,
    DaemonNews,
    DeviceList,
    DeviceReport,
    Failure,
    FaultCleared,
    Held,
    HeldAnswer,
    HistoryReport,
    Paired,
    ProfileListing,
    ProfileShown,
    Rated,
    Result,
    ScheduleAdded,
    ScheduleChanged,
    ScheduleListing,
    Stopped,
    Unpaired,
    Upcoming,
)
from .jsonout import emit_json as emit_json  # output has one home: here, text or JSON
from .jsonout import json_ready as json_ready
from .programs.profiles import BrokenProfile

if TYPE_CHECKING:
    # Hints only: `profiles` and `history` show what they read without the device,
    # the protocol or the program runner, and start the faster for it.
    from firmware_protocol import LinkStats

    from .history import Day, Entry, Hidden
    from .holder.door import Who
    from .journal import Rating, Session, Week
    from .models import DeviceInfo, DeviceStatus
    from .programs.profiles import Profile
    from .programs.runner import ProgramResult, Progress
    from .programs.supervisor import LinkNotice

BAR = " ▏▎▍▌▋▊▉█"


def console() -> Console:
    """The console for human output on stdout."""
    return _unwrapped_off_terminal(Console(highlight=False))


def errors() -> Console:
    """The console for notes and errors on stderr."""
    return _unwrapped_off_terminal(Console(stderr=True, highlight=False))


def _unwrapped_off_terminal(out: Console) -> Console:
    # Into a pipe or a file a sentence stays on one line: a width guessed for a
    # terminal that is not there would break it mid-phrase for grep and for a
    # reader whose window wraps by itself. Tables still fit the width they are given.
    out.soft_wrap = not out.is_terminal
    return out


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


class Phrases:
    """Short phrases on a line, a gap between them; a line breaks between phrases only.

    ``step 0:23 left   program 40:23 left   battery 99%`` on a narrow terminal
    becomes three lines, never ``program 40:23`` and ``left`` apart. Where lines
    are not wrapped at all (output to a pipe) the phrases stay on one line.
    """

    def __init__(self, *parts: str | Text, gap: int = 3) -> None:
        self.parts = [Text(p) if isinstance(p, str) else p for p in parts if p]
        self.gap = gap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """One `Text` per line, each as long as fits."""
        width = None if options.no_wrap else options.max_width
        line = Text()
        for part in self.parts:
            if line and width is not None and line.cell_len + self.gap + part.cell_len > width:
                yield line
                line = Text()
            if line:
                line.append(" " * self.gap)
            line.append_text(part)
        yield line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        """As narrow as the longest phrase, as wide as all on one line."""
        widest = max((p.cell_len for p in self.parts), default=0)
        whole = sum(p.cell_len for p in self.parts) + self.gap * max(0, len(self.parts) - 1)
        return Measurement(widest, whole).clamp(max_width=options.max_width)


class ChamberTable:
    """Pressure per chamber in mmHg, foot to thigh; laid out to fit the width it is given.

    Widest first: a row per leg with a bar per chamber; then a row per position
    (foot, calf ...) and a column per leg, with bars, then without; at the
    narrowest a line per chamber. No chamber is ever left out for want of room.
    """

    def __init__(self, info: DeviceInfo, status: DeviceStatus) -> None:
        self.info = info
        positions = sorted({(c.rank, c.position) for c in info.chambers})
        self.positions = [position for _, position in positions]
        self.legs: dict[str, list[float | None]] = {}
        for chamber, pressure in zip(info.chambers, status.pressures_mmhg, strict=False):
            cells = self.legs.setdefault(chamber.leg, [None for _ in positions])
            cells[chamber.rank] = pressure

    def _cell(self, pressure: float | None, bars: bool) -> str:
        if pressure is None:
            return ""
        style = "red" if pressure >= self.info.max_target_mmhg else "cyan"
        gauge = f"[{style}]{bar(pressure, self.info.ceiling_mmhg, 6)}[/] " if bars else ""
        return f"{gauge}{pressure:5.1f}"

    def _grid(self, columns: list[str]) -> Table:
        # The unit heads the first column, where it costs no width.
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("mmHg", no_wrap=True)
        for name in columns:
            table.add_column(name, no_wrap=True)
        return table

    def _layouts(self) -> list[Table]:
        """Every layout, widest first."""
        by_leg = self._grid(self.positions)
        for leg, cells in self.legs.items():
            by_leg.add_row(leg, *(self._cell(p, True) for p in cells))
        turned = []
        for bars in (True, False):
            table = self._grid(list(self.legs))
            for rank, position in enumerate(self.positions):
                table.add_row(position, *(self._cell(c[rank], bars) for c in self.legs.values()))
            turned.append(table)
        each = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
        each.add_column(no_wrap=True)
        each.add_column(no_wrap=True)
        for leg, cells in self.legs.items():
            for position, pressure in zip(self.positions, cells, strict=True):
                if pressure is not None:
                    each.add_row(f"{leg} {position}", f"{self._cell(pressure, False)} mmHg")
        return [by_leg, *turned, each]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The widest layout that fits."""
        *wider, narrowest = self._layouts()
        unbounded = options.update_width(10_000)  # a table measures no wider than it may be
        for table in wider:
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                yield table
                return
        yield narrowest

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        """From the narrowest layout to the widest."""
        layouts = self._layouts()
        return Measurement(
            Measurement.get(console, options, layouts[-1]).minimum,
            Measurement.get(console, options, layouts[0]).maximum,
        )


def status_view(
    info: DeviceInfo,
    status: DeviceStatus,
    address: str,
    link: LinkStats | None = None,
    auth: str | None = None,
) -> Group:
    """The whole picture of a device for ``massager-ctl status``; ``auth`` says how the link is."""
    head = Phrases(
        Text(info.model, style="bold"),
        Text(f"firmware {info.firmware}"),
        Text(f"serial {info.serial}"),
        Text(f"at {address}"),
        gap=2,
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
        from .models import explain_faults

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
    return Group(head, facts, ChamberTable(info, status))


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


class ProfileList:
    """The profiles, one a row: as a table where it fits, else each with its title below.

    A name is what one types, so it is never shortened: on a narrow terminal the
    list stacks rather than cut it.
    """

    TITLE_MIN = 24
    """The narrowest title column worth a table."""

    def __init__(self, profiles: list[Profile], broken: Iterable[BrokenProfile] = ()) -> None:
        # A broken file is listed in its place by name, with what is wrong in it.
        self.rows: list[Profile | BrokenProfile] = sorted(
            [*profiles, *broken], key=lambda row: row.name
        )

    @staticmethod
    def _broken(row: BrokenProfile) -> Text:
        return Text(f"broken: {row.file}: {row.error}", style="red", overflow="fold")

    def _table(self) -> Table:
        table = Table(box=None)
        table.add_column("name", no_wrap=True)
        table.add_column("min", no_wrap=True)
        table.add_column("title", min_width=self.TITLE_MIN)
        table.add_column("needs", no_wrap=True)
        for row in self.rows:
            if isinstance(row, BrokenProfile):
                table.add_row(escape(row.name), "", self._broken(row), "")
                continue
            needs = "programmable cycle" if row.needs_cycle else ""
            table.add_row(escape(row.name), f"{row.total_minutes:g}", escape(row.title), needs)
        return table

    def _stacked(self, wrap: bool) -> Iterable[RenderableType]:
        for row in self.rows:
            if isinstance(row, BrokenProfile):
                yield Text(row.name, style="bold")
                title = self._broken(row)
            else:
                needs = "needs a programmable cycle" if row.needs_cycle else ""
                yield Phrases(
                    Text(row.name, style="bold"), Text(f"{row.total_minutes:g} min"),
                    Text(needs), gap=2,
                )  # fmt: skip
                title = Text(row.title)
            # Indented where lines wrap; where they do not (a pipe), one line as it is.
            yield Padding(title, (0, 0, 0, 2)) if wrap else Text("  ") + title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The table if every name, and a title column worth reading, fit; else stacked."""
        table = self._table()
        widths = [
            self.TITLE_MIN
            if column.header == "title"
            else max(cell_len(str(text)) for text in [column.header, *column.cells])
            for column in table.columns
        ]
        if sum(widths) + 2 * len(widths) <= options.max_width:  # a space each side of a cell
            yield table
        else:
            yield from self._stacked(wrap=not options.no_wrap)


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


class QuietKeys:
    """While a live panel is up, the terminal neither echoes keys nor drops output on Ctrl-C.

    A live panel redraws itself by moving up as many lines as it drew. The ``^C``
    a terminal echoes (or any key typed) lands after the panel and can wrap onto a
    line the panel does not know of, which then tears every frame after it; and a
    terminal discards output still queued when Ctrl-C is pressed, part of a frame.
    Ctrl-C still signals the program. Nothing happens off a POSIX terminal.
    """

    def __init__(self, file: IO[str]) -> None:
        self._fd: int | None = None
        self._saved: list[Any] = []
        try:
            import termios
        except ImportError:
            return
        try:
            fd = file.fileno()
            saved = termios.tcgetattr(fd)
            quiet = list(saved)
            quiet[3] = (quiet[3] & ~termios.ECHO) | termios.NOFLSH
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except (termios.error, AttributeError, OSError, ValueError):
            return
        self._fd, self._saved = fd, saved

    def restore(self) -> None:
        """Put the terminal back as it was."""
        if self._fd is not None:
            import termios

            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._fd = None


class ProgramDisplay:
    """Shows a running program: a live panel on a terminal, lines otherwise, JSON for scripts.

    Feed it `link` notices and `progress` reports; the first notice (connected)
    brings the device's description that the panel needs. `pressed` hears of each
    Ctrl-C, and `finish` says how the program ended: on a terminal the panel is
    taken off the screen first, so that the ending is the last thing shown and no
    stale "running" panel is left above it.
    """

    def __init__(self, profile: Profile, *, json: bool) -> None:
        self.info: DeviceInfo | None = None
        self.profile = profile
        self.json = json
        self.out = console()
        self.live: Live | None = None
        self.presses = 0
        self.finished = False
        self._keys: QuietKeys | None = None
        self._last_progress: Progress | None = None
        self._last_line = -1.0
        self._last_step = 0

    def link(self, notice: LinkNotice) -> None:
        """Show what happened to the link (lost, back, given up)."""
        if notice.info is not None:
            self.info = notice.info
        if self.json:
            emit_json(notice)
        # Giving up is what the ending line (`finish`) says next: not twice in a row.
        elif notice.event not in ("connected", "gave_up"):
            style = "green" if notice.event == "back" else "yellow"
            self.out.print(f"[{style}]{escape(notice.message)}[/]")

    def progress(self, progress: Progress) -> None:
        """Show one progress report."""
        self._last_progress = progress
        if self.json:
            emit_json(progress)
        elif self.out.is_terminal and self.info is not None:
            self._show_panel()
        else:
            # Not a terminal: a line per step and per wall-clock 10 s is plenty for a log.
            now = time.monotonic()
            if progress.step != self._last_step or now - self._last_line >= 10:
                self._last_step, self._last_line = progress.step, now
                status = progress.status
                self.out.print(
                    f"step {progress.step}/{progress.steps} {progress.step_label}: "
                    f"{status.state}, {self._setting(progress)}, "
                    f"{clock(progress.step_left_s)} left in step, "
                    f"{clock(progress.program_left_s)} in program, "
                    f"peak {status.peak_mmhg:.0f} mmHg, battery {status.battery_pct}%"
                )

    def pressed(self, presses: int) -> None:
        """Ctrl-C was pressed ``presses`` times: say that the program is ending safely."""
        first = self.presses == 0
        self.presses = presses
        if self.finished:
            return  # the ending is said; nothing may follow it
        if self.live is not None:
            self._show_panel()  # the panel says it, where a line would tear it
        elif first and not self.json:
            errors().print("[yellow]ending: the massager is being vented[/]")
        elif not first:
            errors().print("[yellow]ending safely (the massager is being vented); one moment[/]")

    def close(self) -> None:
        """Take the live panel, if any, off the screen."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self._keys is not None:
            self._keys.restore()
            self._keys = None

    def finish(self, result: ProgramResult) -> None:
        """Show how the program ended."""
        self.close()
        self.finished = True
        if self.json:
            emit_json(result)
            return
        style = "green" if result.exit_code == 0 else "yellow"
        final = result.final_status
        vented = ""
        if final is not None:
            from .device import VENTED_MMHG  # loaded already: a program ran

            # Sensor noise reads about 1 mmHg in empty chambers: "0 mmHg" would not be so.
            vented = (
                f"; the chambers are empty ({final.peak_mmhg:.0f} mmHg at most)"
                if final.peak_mmhg < VENTED_MMHG
                else f"; a chamber still held {final.peak_mmhg:.0f} mmHg"
            )
        resumed = f", resumed {result.resumes}x after a lost link" if result.resumes else ""
        self.out.print(
            f"[{style}]{escape(self.profile.title)}: {escape(result.message)}[/] "
            f"({result.steps_done}/{result.steps} steps, {clock(result.pressure_s)} under pressure"
            f"{resumed}{vented})"
        )

    def _show_panel(self) -> None:
        if self._last_progress is None or self.info is None:
            return
        if self.live is None:
            self._keys = QuietKeys(self.out.file)
            # Transient: stopped, it leaves nothing behind for the ending to follow.
            self.live = Live(console=self.out, refresh_per_second=4, transient=True)
            self.live.start()
        self.live.update(self.panel(self._last_progress))

    def _setting(self, progress: Progress) -> str:
        """What the massager does now: its mode, intensity and their pressure."""
        status = progress.status
        if status.mode == "cycle" and 0 < progress.step <= len(self.profile.steps):
            return self.profile.steps[progress.step - 1].describe()
        levels = {lv.level: lv.target_mmhg for lv in self.info.levels} if self.info else {}
        target = f" ({levels[status.intensity]:g} mmHg)" if status.intensity in levels else ""
        return f"{status.mode}, intensity {status.intensity}{target}"

    def panel(self, progress: Progress) -> Panel:
        """The live panel for ``progress``: what runs, where in the program, each chamber."""
        assert self.info is not None
        status = progress.status
        if self.presses:
            state = Text("ending: the massager is being vented", style="bold yellow")
        else:
            state = Text(status.state, style="bold")
        lines: list[Any] = [
            Phrases(state, self._setting(progress)),
            Text(f"step {progress.step}/{progress.steps}: {progress.step_label}"),
            Phrases(
                f"step {clock(progress.step_left_s)} left",
                f"program {clock(progress.program_left_s)} left",
                f"battery {status.battery_pct}%",
            ),
        ]
        if self.presses > 1:
            lines.append(Text("still ending safely; one moment", style="yellow"))
        lines.append(ChamberTable(self.info, status))
        return Panel(Group(*lines), title=escape(self.profile.title), title_align="left")


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
    from .journal import Rating  # loaded already: the journal was read

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


# --- the commands' results: the text of each kind (`cli.results.show` prints the JSON) --


@singledispatch
def show_text(result: Result) -> None:
    """Show a command's result as text for a person: one function below per kind.

    Raises:
        TypeError: a result with no text here (a mistake in massager-ctl, not input).
    """
    raise TypeError(f"no text for a {type(result).__name__}")


FRESH_SIMULATOR = (
    "Nothing on this computer holds this simulator: a `massager-ctl start` on the same "
    "URL in another terminal would have been reached."
)
"""Said by every one-shot command on ``sim://`` (see `cli.device.fresh_simulator`)."""


def stopped_message(action: str, status: DeviceStatus) -> str:
    """What a stop or vent that emptied the chambers says (it waits until they are)."""
    return f"{action}: done; the chambers are empty ({status.peak_mmhg:.0f} mmHg at most)"


@show_text.register(Stopped)
def _stopped(result: Stopped) -> None:
    if result.fresh_simulator:
        console().print(
            f"{result.kind}: sent to a new built-in simulator, started for this command; "
            f"nothing was running on it. {FRESH_SIMULATOR}",
            markup=False,
            soft_wrap=True,
        )
    else:
        console().print(stopped_message(result.kind, result.status), markup=False)


def auth_line(authenticated: bool, problem: str | None) -> str:
    """How the link is in ``status``: paired, or why not and what still works."""
    if authenticated:
        return "authenticated: this controller is paired (start, mode and intensity allowed)"
    why = problem or "this controller is not paired with it"
    return f"[yellow]not authenticated[/]: {why}; only status, stop and vent work"


@show_text.register(HeldAnswer)
def _held_answer(result: HeldAnswer) -> None:
    console().print(
        f"{result.message} (through {result.held_by.says()})", markup=False, soft_wrap=True
    )


@show_text.register(Adjusted)
def _adjusted(result: Adjusted) -> None:
    console().print(f"{result.message}; the massager is {result.status.state}", markup=False)


def held_line(who: Who) -> str:
    """One held massager in a line: the device, who holds it, and what it is doing."""
    state = who.state
    doing = state.state
    if state.program is not None and state.step is not None:
        doing += f", step {state.step} of {state.steps}"
        if state.ends_at is not None:
            doing += f", ends {state.ends_at.astimezone():%H:%M}"
    elif state.mode is not None and state.state != "offline":
        doing += f", {state.mode} {state.intensity}"
    if state.pressures_mmhg:
        doing += f", up to {max(state.pressures_mmhg):.0f} mmHg"
    if state.fault:
        doing += f"; {state.fault}"
    return f"{who.device}: {doing}; held by {who.says()}"


@show_text.register(Held)
def _held(result: Held) -> None:
    out = console()
    if not result.held:
        out.print("nothing on this computer holds a massager", markup=False)
    for who in result.held:
        out.print(held_line(who), markup=False, soft_wrap=True)


@show_text.register(DeviceReport)
def _device_report(result: DeviceReport) -> None:
    out = console()
    auth = auth_line(result.authenticated, result.auth_problem)
    out.print(status_view(result.info, result.status, result.device, result.link, auth=auth))
    if result.fresh_simulator:
        out.print(
            "[yellow]This is a new built-in simulator, started for this command.[/] "
            + escape(FRESH_SIMULATOR),
            soft_wrap=True,
        )


def reset_message(cleared: tuple[str, ...], status: DeviceStatus) -> str:
    """What `reset` says: which faults it cleared, or that there was none."""
    if not cleared:
        return f"reset: there was no fault to clear; the massager is {status.state}"
    names = [name.replace("_", " ") for name in cleared]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    faults = "fault is" if len(names) == 1 else "faults are"
    return f"reset: the {listed} {faults} cleared; the massager is {status.state}"


@show_text.register(FaultCleared)
def _fault_cleared(result: FaultCleared) -> None:
    said = reset_message(result.cleared, result.status)
    if result.fresh_simulator:
        said += f" (a new built-in simulator, started for this command). {FRESH_SIMULATOR}"
    console().print(said, markup=False, soft_wrap=True)


@show_text.register(Paired)
def _paired(result: Paired) -> None:
    console().print(
        f"paired with {result.model} (serial {result.serial}) at {result.device} "
        f"as key {result.key_id}; the link is "
        + ("authenticated" if result.authenticated else "NOT authenticated")
    )


@show_text.register(Unpaired)
def _unpaired(result: Unpaired) -> None:
    device = result.device
    console().print(
        f"unpaired from {device}" if result.removed else f"no key for {device} was kept"
    )


@show_text.register(DeviceList)
def _device_list(result: DeviceList) -> None:
    entries = result.entries
    table = Table(box=None)
    table.add_column("device", no_wrap=True)
    for name in ("what", "id", "answer"):
        table.add_column(name)
    if not any(e.kind == "sim" for e in entries):
        table.add_row("sim://", "the built-in simulator", "", "always there")
    notes = [e for e in entries if e.answered is None and e.problem]
    for entry in entries:
        if entry in notes:
            continue
        what = " ".join(x for x in (entry.manufacturer, entry.description) if x)
        ident = entry.usb_id or (f"{entry.rssi} dBm" if entry.rssi is not None else "")
        if entry.answered is None:
            answer = "[dim]not probed[/]"
        elif entry.answered:
            answer = (
                f"[green]{entry.model}[/] firmware {entry.firmware}, serial {entry.device_serial}"
            )
        else:
            answer = f"[yellow]no massager[/] [dim]({entry.problem})[/]"
        table.add_row(entry.url, what, ident, answer)
    out = console()
    out.print(table)
    for entry in notes:
        out.print(f"[yellow]{escape(entry.url)}[/] {escape(entry.problem or '')}", soft_wrap=True)
    if not result.probed and entries:
        out.print("[dim]Add --probe to see which of them are massagers.[/]")


@show_text.register(ProfileListing)
def _profile_listing(result: ProfileListing) -> None:
    console().print(ProfileList([profile for profile, _ in result.found], result.broken))


@show_text.register(ProfileShown)
def _profile_shown(result: ProfileShown) -> None:
    console().print(profile_view(result.profile, result.path))


def warning(text: str) -> None:
    """Say a warning on stderr: a problem beside the result, which still stands."""
    errors().print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)


@show_text.register(ScheduleAdded)
def _schedule_added(result: ScheduleAdded) -> None:
    added = result.schedule
    upcoming = added.runs_after(datetime.now(UTC), count=1)[0].astimezone()
    console().print(
        f"added {added.id}: {added.profile} {added.describe()}; first run "
        f"{upcoming:%a %d %b %H:%M} (`massager-ctl daemon` runs it)",
        markup=False,
    )
    for text in result.warnings:
        warning(text)


@show_text.register(ScheduleChanged)
def _schedule_changed(result: ScheduleChanged) -> None:
    changed = result.schedule
    console().print(f"{result.change} {changed.id}: {changed.profile} {changed.describe()}")


@show_text.register(ScheduleListing)
def _schedule_listing(result: ScheduleListing) -> None:
    table = Table("id", "profile", "when", "device", "next", box=None)
    for s in result.schedules:
        upcoming = s.runs_after(result.now, count=1)[0].astimezone()
        table.add_row(s.id, s.profile, s.describe(), s.device or "(default)",
                      f"{upcoming:%a %d %b %H:%M}" if s.enabled else "disabled")  # fmt: skip
    for entry in result.broken:
        when = Text(f"broken: {entry}", style="red", overflow="fold")
        table.add_row(entry.id or "?", entry.profile or "", when, "", "not run")
    empty = not result.schedules and not result.broken
    console().print("No schedules yet; add one with `schedule add`." if empty else table)


@show_text.register(Upcoming)
def _upcoming(result: Upcoming) -> None:
    table = Table("local time", "schedule", "profile", "in its zone", box=None)
    for run, s in result.runs:
        table.add_row(f"{run.astimezone():%a %d %b %H:%M}", s.id, s.profile,
                      f"{run:%H:%M} {s.tz}")  # fmt: skip
    console().print(table if result.runs else "Nothing scheduled; add one with `schedule add`.")


@show_text.register(Rated)
def _rated(result: Rated) -> None:
    rating, after = result.rating, result.after
    tied = ""
    if after is not None:
        tied = f", after {after.profile} (began {after.started_at.astimezone():%H:%M})"
    console().print(f"rated {rating.score}/10{tied}" + (f": {rating.note}" if rating.note
                    else ""), markup=False)  # fmt: skip


@show_text.register(HistoryReport)
def _history_report(result: HistoryReport) -> None:
    out = console()
    out.print(history_view(result.entries, result.untied, result.weeks, result.days,
                           result.hidden, result.today, out.width))  # fmt: skip


@show_text.register(BridgeNews)
def _bridge_news(result: BridgeNews) -> None:
    errors().print(result.message, markup=False, highlight=False, soft_wrap=True)


DAEMON_STYLES = {"error": "red", "missed": "yellow", "refused": "yellow", "busy": "yellow",
                 "unreachable": "yellow"}  # fmt: skip
"""The colour of a daemon's line by its event; the others are plain."""


@show_text.register(DaemonNews)
def _daemon_news(result: DaemonNews) -> None:
    event = result.event
    style = DAEMON_STYLES.get(event.event, "")
    when = datetime.now().astimezone()
    message = escape(event.message)
    line = f"{when:%Y-%m-%d %H:%M:%S} " + (f"[{style}]{message}[/]" if style else message)
    if event.schedule:
        line += f" [dim](schedule {event.schedule})[/]"
    errors().print(line, soft_wrap=True, highlight=False)


@show_text.register(Failure)
def _failure(result: Failure) -> None:
    first, *rest = result.message.splitlines() or [""]
    errors().print(f"[red]error:[/] {escape(first)}", soft_wrap=True)
    for line in rest:
        errors().print(line, soft_wrap=True, markup=False)
