"""What the commands return, and the one way each is shown: `show`, as text or as JSON.

A command builds one of these and hands it to `show`; with ``--json`` it is the
JSON line of `as_json` (`jsonout.emit_json`), else the text `render.show_text`
draws for its kind. The JSON keys keep their order here: scripts read them.

Nothing here imports pydantic or rich: the types below are hints only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from datetime import date, datetime
    from pathlib import Path

    from pydantic import BaseModel

    from firmware_protocol import LinkStats

    from ..discovery import Found
    from ..history import Day, Entry, Hidden
    from ..holder.door import Who
    from ..journal import Rating, Session, Week
    from ..models import DeviceInfo, DeviceStatus
    from ..programs.profiles import BrokenProfile, Profile
    from ..schedules.daemon import DaemonEvent
    from ..schedules.schedule import BrokenSchedule, Schedule


class Result:
    """What a command found or did, for `show`."""

    def as_json(self) -> Mapping[str, Any] | BaseModel:
        """The JSON line: an object that says its ``kind`` first."""
        raise NotImplementedError


def show(result: Result, *, as_json: bool) -> None:
    """Show ``result``: its JSON line with ``--json``, else its text for a person."""
    if as_json:
        from ..jsonout import emit_json

        emit_json(result.as_json())
    elif isinstance(result, SafetyNote):
        # Plain text, without rich: the note must come at once (see `prose`).
        import click

        from ..prose import fill

        click.echo(fill(result.note))
    else:
        from ..render import show_text

        show_text(result)


@dataclass
class Stopped(Result):
    """A stop or vent that emptied the chambers."""

    kind: str
    """``stop`` or ``vent``: what was sent."""
    device: str
    status: DeviceStatus
    fresh_simulator: bool
    """Sent to a built-in simulator started for this command (see `device.fresh_simulator`)."""
    warnings: list[str]
    """What is wrong beside the massager (a damaged key or config file)."""

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "stop", "device", "status", "fresh_simulator", "warnings"}``."""
        return {"kind": self.kind, "device": self.device, "status": self.status,
                "fresh_simulator": self.fresh_simulator, "warnings": self.warnings}  # fmt: skip


@dataclass
class HeldAnswer(Result):
    """A command a holder on this computer carried out: who holds the massager, and its answer."""

    kind: str
    """The command: ``stop``, ``vent``, ``pause``, ``resume``, ``mode``, ``intensity``."""
    device: str
    held_by: Who
    message: str

    def as_json(self) -> dict[str, Any]:
        """``{"kind", "device", "held_by", "message"}``."""
        return {"kind": self.kind, "device": self.device, "held_by": self.held_by,
                "message": self.message}  # fmt: skip


@dataclass
class Held(Result):
    """What this computer holds: the answer of every holder (``status`` with no device)."""

    kind: ClassVar[str] = "held"
    held: list[Who]

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "held", "held": [...]}``: each a holder's `Who`."""
        return {"kind": self.kind, "held": self.held}


@dataclass
class Adjusted(Result):
    """A pause, resume, mode or intensity sent over a link opened for it (nothing held it)."""

    kind: str
    device: str
    message: str
    status: DeviceStatus

    def as_json(self) -> dict[str, Any]:
        """``{"kind", "device", "message", "status"}``."""
        return {"kind": self.kind, "device": self.device, "message": self.message,
                "status": self.status}  # fmt: skip


@dataclass
class DeviceReport(Result):
    """What a massager is and what it is doing, for ``status``."""

    kind: ClassVar[str] = "device"
    device: str
    info: DeviceInfo
    status: DeviceStatus
    link: LinkStats
    authenticated: bool
    auth_problem: str | None
    fresh_simulator: bool

    def as_json(self) -> dict[str, Any]:
        """The device, what it announced, its status, the link's counters, the pairing."""
        return {
            "kind": self.kind,
            "device": self.device,
            "info": self.info,
            "status": self.status,
            "link": vars(self.link),
            "authenticated": self.authenticated,
            "auth_problem": self.auth_problem,
            "fresh_simulator": self.fresh_simulator,
        }


@dataclass
class FaultCleared(Result):
    """What ``reset`` cleared (nothing, if no fault was latched), and the status after."""

    kind: ClassVar[str] = "reset"
    device: str
    cleared: tuple[str, ...]
    status: DeviceStatus
    fresh_simulator: bool

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "reset", "device", "cleared", "status", "fresh_simulator"}``."""
        return {"kind": self.kind, "device": self.device, "cleared": list(self.cleared),
                "status": self.status, "fresh_simulator": self.fresh_simulator}  # fmt: skip


@dataclass
class Paired(Result):
    """A massager this controller is now paired with."""

    kind: ClassVar[str] = "paired"
    device: str
    key_id: int
    model: str
    serial: str
    authenticated: bool
    """Whether the link is authenticated with the new key."""

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "paired", "device", "key_id", "model", "serial", "authenticated"}``."""
        return {"kind": self.kind, "device": self.device, "key_id": self.key_id,
                "model": self.model, "serial": self.serial,
                "authenticated": self.authenticated}  # fmt: skip


@dataclass
class Unpaired(Result):
    """A key deleted here (``removed``), or none that was kept."""

    kind: ClassVar[str] = "unpaired"
    device: str
    removed: bool

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "unpaired", "device", "removed"}``."""
        return {"kind": self.kind, "device": self.device, "removed": self.removed}


@dataclass
class DeviceList(Result):
    """The massagers, ports and URLs ``devices`` found; probed or not."""

    kind: ClassVar[str] = "devices"
    entries: list[Found]
    probed: bool

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "devices", "devices": [...]}``."""
        return {"kind": self.kind, "devices": [e.model_dump() for e in self.entries]}


@dataclass
class ProfileListing(Result):
    """Every profile by name, with its file; and the files that cannot be used."""

    kind: ClassVar[str] = "profiles"
    found: list[tuple[Profile, Path]]
    broken: list[BrokenProfile]

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "profiles", "profiles": [...], "broken": [...]}``."""
        return {"kind": self.kind, "profiles": [
            {"name": p.name, "title": p.title, "minutes": p.total_minutes,
             "needs_cycle": p.needs_cycle, "path": str(path)}
            for p, path in self.found
        ], "broken": [entry.as_json() for entry in self.broken]}  # fmt: skip


@dataclass
class ProfileShown(Result):
    """One profile in full, and where it was found."""

    kind: ClassVar[str] = "profile"
    profile: Profile
    path: str

    def as_json(self) -> dict[str, Any]:
        """The profile as its file has it, after ``"kind": "profile"``."""
        return {"kind": self.kind} | self.profile.model_dump(mode="json")


@dataclass
class ScheduleAdded(Result):
    """A schedule just added, and the others it comes too close to (``warnings``)."""

    kind: ClassVar[str] = "schedule"
    schedule: Schedule
    warnings: list[str]

    def as_json(self) -> dict[str, Any]:
        """The schedule, then its ``warnings``."""
        return ({"kind": self.kind} | self.schedule.model_dump(mode="json")
                | {"warnings": self.warnings})  # fmt: skip


@dataclass
class ScheduleChanged(Result):
    """A schedule removed, enabled or disabled (``change``)."""

    kind: ClassVar[str] = "schedule"
    change: str
    schedule: Schedule

    def as_json(self) -> dict[str, Any]:
        """The change, then the schedule as it is (or was, if removed)."""
        return {"kind": self.kind, "change": self.change} | self.schedule.model_dump(mode="json")


@dataclass
class ScheduleListing(Result):
    """Every schedule, and each table that is not one, as of ``now``."""

    kind: ClassVar[str] = "schedules"
    schedules: list[Schedule]
    broken: list[BrokenSchedule]
    now: datetime

    def as_json(self) -> dict[str, Any]:
        """Each schedule with its ``next`` start; then the broken tables."""
        return {"kind": self.kind, "schedules": [
            s.model_dump(mode="json") | {"next": next_start(s, self.now)} for s in self.schedules
        ], "broken": [entry.as_json() for entry in self.broken]}  # fmt: skip


def next_start(schedule: Schedule, now: datetime) -> str | None:
    """When ``schedule`` next starts (ISO 8601, in its zone), or None while it is disabled."""
    if not schedule.enabled:
        return None
    upcoming = schedule.runs_after(now, count=1)
    return upcoming[0].isoformat() if upcoming else None


@dataclass
class Upcoming(Result):
    """The next starts of the enabled schedules, soonest first."""

    kind: ClassVar[str] = "upcoming"
    runs: list[tuple[datetime, Schedule]]

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "upcoming", "runs": [{"at", "schedule", "profile"}, ...]}``."""
        return {"kind": self.kind, "runs": [
            {"at": run.isoformat(), "schedule": s.id, "profile": s.profile} for run, s in self.runs
        ]}  # fmt: skip


@dataclass
class Rated(Result):
    """A rating just recorded, and the session it follows, if any."""

    kind: ClassVar[str] = "rating"
    rating: Rating
    after: Session | None

    def as_json(self) -> dict[str, Any]:
        """The rating, then ``after_session`` (its id, or null)."""
        return ({"kind": self.kind} | self.rating.model_dump(mode="json")
                | {"after_session": None if self.after is None else self.after.id})  # fmt: skip


@dataclass
class HistoryReport(Result):
    """The sessions and ratings of recent weeks, and each week against the goal."""

    kind: ClassVar[str] = "history"
    goal: int
    everything: bool
    """Demos and starts with no pressure listed too (``--all``)."""
    entries: list[Entry]
    ratings: list[Rating]
    untied: list[Rating]
    """The ratings tied to no session shown."""
    weeks: list[Week]
    days: dict[date, Day]
    hidden: Hidden
    today: date

    def as_json(self) -> dict[str, Any]:
        """The goal, the sessions, the ratings, the weeks and how many were not shown."""
        return {
            "kind": self.kind, "goal": self.goal, "all": self.everything,
            "sessions": [e.as_json() for e in self.entries],
            "ratings": [r.model_dump(mode="json") for r in self.ratings],
            "weeks": [w.model_dump(mode="json") | {"met": w.met, "standing": w.standing}
                      for w in self.weeks],
            "hidden": {"demos": self.hidden.demos, "no_pressure": self.hidden.no_pressure},
        }  # fmt: skip


@dataclass
class SafetyNote(Result):
    """Who should not use compression, and when to stop."""

    kind: ClassVar[str] = "safety"
    note: str

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "safety", "note": ...}``, a paragraph a line."""
        from ..prose import prose

        return {"kind": self.kind, "note": prose(self.note)}


@dataclass
class BridgeNews(Result):
    """One line of what the MQTT bridge did, for its log."""

    kind: ClassVar[str] = "bridge"
    message: str

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "bridge", "message": ...}``."""
        return {"kind": self.kind, "message": self.message}


@dataclass
class DaemonNews(Result):
    """One line of what the daemon did, for its log."""

    event: DaemonEvent

    def as_json(self) -> DaemonEvent:
        """The event as it is (``"kind": "daemon"``)."""
        return self.event


@dataclass
class Failure(Result):
    """What went wrong, by the name of its error: the last thing a failed command says."""

    kind: ClassVar[str] = "error"
    error: str
    message: str

    def as_json(self) -> dict[str, Any]:
        """``{"kind": "error", "error": "ProfileNotFound", "message": ...}``."""
        return {"kind": self.kind, "error": self.error, "message": self.message}
