"""Authenticated control: which commands need a key, the device's table of paired controllers.

Theory of operation
-------------------
Pairing (see `firmware_protocol.pairing` and SPEC §12) leaves the controller and
the device with one shared 32-byte key per controller, named on the device by a
small key id. A paired controller signs its HELLO with that key and names the
key id in it; the device checks the tag and the counter and, if both are good,
marks the link authenticated with that key. On that link every command in
`AUTHENTICATED` must then carry a good tag under the same key and a counter
higher than any the device ever accepted from that key, across links and
restarts. STOP, VENT, KEEPALIVE, GET_STATUS, HELLO and PAIR need no key: stopping
is the safe direction, and anyone may look.

A device that `PairingTable.required` (every real one, and a served simulator
unless told otherwise) refuses the commands in `AUTHENTICATED` on a link that
is not authenticated. A table that is not required (a development device)
accepts them unsigned only until its first controller pairs: once paired it
never falls back.

The checks live in `Connection` (device role), before the sequence number is
looked at, so a frame with a bad tag or an old counter changes nothing: not the
newest accepted seq, not the reply cache, not the counter.

>>> table = PairingTable()
>>> key_id = table.add("phone", bytes(32))
>>> table.get(key_id).counter
0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .enums import MessageType
from .errors import LocalProtocolError

KEY_SIZE = 32
MAX_PAIRINGS = 8
"""How many controllers a device remembers; a ninth must wait until one is unpaired."""
MAX_COUNTER = 0xFFFFFFFF

AUTHENTICATED: frozenset[MessageType] = frozenset(
    {
        MessageType.START,
        MessageType.RENEW,
        MessageType.SET_MODE,
        MessageType.SET_INTENSITY,
        MessageType.SET_CYCLE,
        MessageType.PAUSE,
        MessageType.RESUME,
        MessageType.RESET_FAULT,
        MessageType.UNPAIR,
    }
)
"""Commands a paired device takes only in authenticated frames.

Everything that can start pressure or change it (RESUME restarts the pattern),
clear a fault, or forget a key. PAUSE is in it too: it keeps a session alive
that a stranger should not be able to hold."""


@dataclass(slots=True)
class Pairing:
    """One paired controller as the device remembers it."""

    key_id: int
    key: bytes = field(repr=False)
    name: str = ""
    counter: int = 0
    """The highest counter accepted from this key; the next must be higher."""


@dataclass
class PairingTable:
    """The paired controllers of one device, with the counters they have used.

    The device keeps it in memory that survives a restart (flash on hardware).
    ``on_change`` is called after every change, so its owner can save it.
    """

    required: bool = True
    pairings: dict[int, Pairing] = field(default_factory=dict)
    ever_paired: bool = False
    """Whether any controller ever paired: a development device never opens up again."""
    on_change: Callable[[], None] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Pairing]:
        return iter(self.pairings.values())

    def __len__(self) -> int:
        return len(self.pairings)

    @property
    def enforced(self) -> bool:
        """Whether commands in `AUTHENTICATED` need an authenticated frame."""
        return self.required or self.ever_paired or bool(self.pairings)

    def get(self, key_id: int | None) -> Pairing | None:
        """The pairing with ``key_id``, if there is one."""
        return None if key_id is None else self.pairings.get(key_id)

    def add(self, name: str, key: bytes) -> int:
        """Remember a new controller's key; return the key id it was given.

        Raises:
            LocalProtocolError: the table is full, or the key is not 32 bytes.
        """
        if len(key) != KEY_SIZE:
            raise LocalProtocolError(f"a key is {KEY_SIZE} bytes")
        key_id = self.free_id()
        if key_id is None:
            raise LocalProtocolError(f"already {MAX_PAIRINGS} controllers paired")
        self.pairings[key_id] = Pairing(key_id, key, name)
        self.ever_paired = True
        self._changed()
        return key_id

    def free_id(self) -> int | None:
        """The key id the next pairing gets, or None when the table is full."""
        if len(self.pairings) >= MAX_PAIRINGS:
            return None
        return next(i for i in range(1, MAX_PAIRINGS + 1) if i not in self.pairings)

    def remove(self, key_id: int) -> bool:
        """Forget a controller; whether it was there."""
        if self.pairings.pop(key_id, None) is None:
            return False
        self._changed()
        return True

    def accept(self, pairing: Pairing, counter: int) -> None:
        """Record ``counter`` as the newest used with ``pairing``'s key."""
        pairing.counter = counter
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


@dataclass(slots=True)
class Signer:
    """The controller's side: its key, its key id, and where its counters come from.

    ``next_counter`` must never return a value it returned before for this key,
    in this process or any earlier one (the controller reserves blocks of
    counters in storage before it uses them).
    """

    key_id: int
    key: bytes = field(repr=False)
    next_counter: Callable[[], int] = field(repr=False)
