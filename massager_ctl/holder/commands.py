"""What a front door may ask of a holder, and what it is answered: the same for every door.

A `Command` is the one vocabulary of the MQTT ``set`` topic, the local socket
that `massager-ctl stop` knocks on, and the web page. The rules that come with
it are the holder's, not a door's: stop and vent first; a command with an ``id``
runs once however often it is delivered (`CommandMemory`); one sent longer ago
than `MAX_AGE_S` is refused (`check_age`); every command gets a `Reply` that
says ok or what was wrong.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import InputError

PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
"""A profile as a door may name it: a name, never a path."""
MAX_AGE_S = 10.0
"""A command sent longer ago than this is refused: the moment it was meant for has passed."""
REMEMBERED_IDS = 1000
"""How many command ids a holder remembers, to run each once."""

Action = Literal["start", "program", "mode", "intensity", "pause", "resume", "stop", "vent"]
HALTS: frozenset[str] = frozenset({"stop", "vent"})
"""The actions that go first, at once, whatever else is on its way."""

ACTIONS_WITH: dict[str, str] = {
    "start": "profile", "program": "profile", "mode": "mode", "intensity": "intensity",
}  # fmt: skip
"""The actions that take a value, and its field (``start``'s is optional)."""


class Command(BaseModel):
    """One thing asked of a massager's holder, from any front door.

    ``start`` takes a ``profile`` (else the one chosen with ``program``),
    ``program`` a ``profile`` (chosen for a later start; nothing runs), ``mode``
    a ``mode`` and ``intensity`` an ``intensity``; ``pause``, ``resume``,
    ``stop`` and ``vent`` take nothing. Types are strict: ``"intensity": true``
    or ``"3"`` is refused, never run as 1 or 3.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Action
    profile: str | None = Field(None, pattern=PROFILE_NAME.pattern, max_length=40)
    """A profile by name (never a path: a door must not name files to read)."""
    mode: str | None = Field(None, min_length=1, max_length=32)
    """The mode to switch to (for ``mode``): the running session's, or the preset."""
    intensity: int | None = Field(None, ge=1, le=10)
    """The intensity level (for ``intensity``)."""
    id: str | None = Field(None, min_length=1, max_length=64)
    """Echoed in the answer; a command with an id runs once, however often delivered."""
    at: datetime | None = None
    """When it was sent; a command older than `MAX_AGE_S` (or as far ahead) is refused."""

    @model_validator(mode="after")
    def _value_for_action(self) -> Command:
        needed = ACTIONS_WITH.get(self.action)
        for field in ACTIONS_WITH.values():
            given = getattr(self, field) is not None
            if field == needed and not given and self.action != "start":
                raise ValueError(f"{self.action} needs {field}")
            if field != needed and given:
                raise ValueError(f"{self.action} takes no {field}")
        return self


class Reply(BaseModel):
    """The answer to a `Command`: ok and what was done, or not ok and what was wrong."""

    ok: bool
    id: str | None = None
    action: str | None = None
    message: str | None = None
    """What was done (when ok)."""
    duplicate: bool | None = None
    """True when the command's id ran before: it was not run again, and this is its answer."""
    error: str | None = None
    """What was wrong (when not ok), in words a person can act on."""

    def payload(self) -> dict[str, object]:
        """The reply as a door sends it.

        ``id`` and ``action`` once the command was read (``id`` null if it had
        none), then what is set of the rest.
        """
        body: dict[str, object] = {"ok": self.ok}
        if self.action is not None:
            body.update(id=self.id, action=self.action)
        for name in ("message", "duplicate", "error"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body

    def as_json(self) -> str:
        """`payload` as one line of JSON."""
        return json.dumps(self.payload())


def check_age(command: Command, now: datetime | None = None) -> None:
    """Refuse a command sent too long ago (or stamped too far ahead).

    Raises:
        InputError: how old it is.
    """
    if command.at is None:
        return
    sent = command.at if command.at.tzinfo else command.at.replace(tzinfo=UTC)
    age = ((now or datetime.now(UTC)) - sent).total_seconds()
    if abs(age) > MAX_AGE_S:
        when = "sent" if age > 0 else "stamped"
        raise InputError(
            f"the command was {when} {abs(age):.0f} s {'ago' if age > 0 else 'ahead'}; "
            f"commands older than {MAX_AGE_S:g} s are refused (check the clocks)"
        )


class CommandMemory:
    """The ids of the last `REMEMBERED_IDS` commands and what each did, to run each once."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()

    def seen(self, command_id: str) -> str | None:
        """What a command with this id did before, if it came already."""
        return self._seen.get(command_id)

    def remember(self, command_id: str, outcome: str) -> None:
        """Remember what the command with this id did."""
        self._seen[command_id] = outcome
        self._seen.move_to_end(command_id)
        while len(self._seen) > REMEMBERED_IDS:
            self._seen.popitem(last=False)

    def forget(self, command_id: str) -> None:
        """Forget a command id (its command failed, so a retry should run)."""
        self._seen.pop(command_id, None)
