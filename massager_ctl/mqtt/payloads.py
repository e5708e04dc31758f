"""What may be sent to the bridge, and every JSON it publishes, as models (pure).

A command on ``<base>/<device>/set`` and its answer are the holder's `Command`
and `Reply` (`massager_ctl.holder.commands`): the same for every door. Here are
the bridge's own: a `Request` on ``<base>/bridge/request/<op>`` and its
`RequestReply` (with `DeviceEntry`, `ProfileEntry`, `BrokenProfile` or
`SchedulesData` as its data), and the retained `Availability` and `BridgeState`.

`Payload.as_json` writes what the bus has always carried: ``json.dumps``'s
spacing and ASCII escapes, fields in their declared order, and a field the
answer does not have left out rather than sent as null. The massager's state is
the holder's `DeviceState`, published as its own ``model_dump_json``.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from ..schedules.schedule import Schedule

MAX_TRANSACTION = 64
"""The longest transaction string echoed; a longer one is refused, not sent back."""


def _transaction(value: object) -> object:
    """A transaction short enough to echo: a string of `MAX_TRANSACTION` or a 64-bit number.

    Raises:
        ValueError: what is wrong with it (one message, not one per type of the union).
    """
    if value is None:
        return value
    if isinstance(value, str):
        if len(value) > MAX_TRANSACTION:
            raise ValueError(f"at most {MAX_TRANSACTION} characters, not {len(value):,}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValueError("a whole number of at most 64 bits")
        return value
    raise ValueError(f"a string or a whole number, not {json.dumps(value)[:20]}")


Transaction = Annotated[str | int | None, BeforeValidator(_transaction)]
"""A request's transaction, bounded (see `_transaction`)."""


class Request(BaseModel):
    """What may be sent to ``<base>/bridge/request/<op>`` (an empty payload too)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transaction: Transaction = None
    """Echoed in the response, to pair it with its request."""


class Payload(BaseModel):
    """A JSON the bridge publishes."""

    def as_json(self) -> str:
        """The payload as the bus carries it (see the module's docstring)."""
        return json.dumps(self.model_dump(mode="json", exclude=self._left_out()))

    def _left_out(self) -> set[str]:
        """The fields this payload does not carry."""
        return set()


class Availability(Payload):
    """Whether a massager answers, on ``<base>/<device>/availability`` (retained)."""

    state: Literal["online", "offline"]

    @classmethod
    def of(cls, available: bool) -> Availability:
        """Online or offline."""
        return cls(state="online" if available else "offline")


class BridgeState(Availability):
    """Whether the bridge is connected, on ``<base>/bridge/state`` (retained; its last will)."""


class DeviceEntry(BaseModel):
    """One massager, in the answer to ``devices``."""

    name: str
    address: str
    available: bool
    state: str
    """What its state topic says: idle, running, paused, fault or offline."""
    model: str | None
    """What it announced when it last answered (null until it has)."""
    serial: str | None


class ProfileEntry(BaseModel):
    """One profile, in the answer to ``profiles``."""

    name: str
    title: str
    minutes: float
    steps: int


class BrokenProfile(BaseModel):
    """A profile that cannot be read, in the answer to ``profiles``: why."""

    name: str
    error: str


class SchedulesData(BaseModel):
    """The answer to ``schedules``: the valid schedules, and what is wrong with the others."""

    schedules: list[Schedule]
    problems: list[str]


RequestData = list[DeviceEntry] | list[ProfileEntry | BrokenProfile] | SchedulesData
"""What a request asks for, by its op."""


class RequestReply(Payload):
    """The answer on ``<base>/bridge/response/<op>``.

    ``transaction`` once the request was read (null if it had none); ``data``
    when ok, ``error`` when not.

    >>> RequestReply(ok=False, error="a retained request").as_json()
    '{"ok": false, "error": "a retained request"}'
    >>> RequestReply(ok=True, transaction=None, data=[]).as_json()
    '{"ok": true, "transaction": null, "data": []}'
    """

    ok: bool
    transaction: str | int | None = None
    data: RequestData | None = None
    error: str | None = None

    def _left_out(self) -> set[str]:
        left = {name for name in ("data", "error") if getattr(self, name) is None}
        if "transaction" not in self.model_fields_set:
            left.add("transaction")
        return left
