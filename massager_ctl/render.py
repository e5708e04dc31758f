"""Turning results into text for people (rich) or JSON lines for scripts.

Commands return data; this module is the one place that decides how it looks.
With ``--json`` every object is printed as one line of JSON on stdout, so a
script can read a stream of them; the last line of ``start`` is the result.
"""

from __future__ import annotations

import sys
import time
from datetime import date
from typing import Any

from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from firmware_protocol import LinkStats

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


SOURCES = {"schedule": "scheduled", "demo": "demo"}
"""How a session's source shows in the history (one from the command line shows none)."""


def history_view(sessions: list[Session], ratings: list[Rating], weeks: list[Week]) -> Group:
    """Day by day: sessions and how the legs felt (a bar per rating), then the weeks."""
    days: dict[date, tuple[list[Session], list[Rating]]] = {}
    for session in sessions:
        days.setdefault(session.started_at.astimezone().date(), ([], []))[0].append(session)
    for rating in ratings:
        days.setdefault(rating.at.astimezone().date(), ([], []))[1].append(rating)
    table = Table("day", "session", "ended", "min", "legs (0 calm .. 10 worst)", box=None)
    for day in sorted(days):
        ran, felt = days[day]
        lines = max(len(ran), len(felt), 1)
        for i in range(lines):
            session = ran[i] if i < len(ran) else None
            rating = felt[i] if i < len(felt) else None
            table.add_row(
                day.strftime("%a %d %b") if i == 0 else "",
                f"{session.started_at.astimezone():%H:%M} {session.profile}"
                + (
                    " [dim]demo[/]"
                    if session.demo
                    else f" [dim]{SOURCES[session.source]}[/]"
                    if session.source in SOURCES
                    else ""
                )
                if session
                else "",
                session.ended.replace("_", " ") if session else "",
                f"{session.minutes:g}" if session else "",
                f"{bar(rating.score, 10)} {rating.score}"
                + (f" [dim]{escape(rating.note)}[/]" if rating.note else "")
                if rating
                else "",
            )
    summary = Table("week of", "sessions", "min", "legs, mean", box=None)
    for week in weeks:
        mark = "[green]met[/]" if week.met else "[yellow]below[/]"
        mean = (
            "" if week.mean_rating is None else f"{bar(week.mean_rating, 10)} {week.mean_rating:g}"
        )
        summary.add_row(
            week.starts.strftime("%d %b"), f"{week.sessions}/{week.goal} {mark}",
            f"{week.minutes:g}", mean,
        )  # fmt: skip
    parts: list[Any] = [table if days else Text("No sessions or ratings in these weeks.")]
    return Group(*parts, Text(""), summary)
