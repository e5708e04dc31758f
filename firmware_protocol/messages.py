"""Messages: small frozen dataclasses, validated on construction, one per payload layout.

The same classes are used to send and to receive. Building one with a value out
of range raises `LocalProtocolError`; `decode_message` turns any such failure on
bytes from a peer into `RemoteProtocolError`, so untrusted input raises only that.

Payload layouts are little-endian and listed field by field in SPEC.md. A
receiver ignores bytes after the fields it knows, so a later protocol revision
may append fields without breaking older peers.

>>> msg = Start(mode=Mode.WAVE, intensity=2, lease_s=900)
>>> msg.encode_payload().hex()
'01028403'
>>> decode_message(MessageType.START, bytes.fromhex('01028403')) == msg
True
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from .enums import (
    Button,
    CycleOrder,
    EndReason,
    ErrorCode,
    EventKind,
    Fault,
    Feature,
    Leg,
    MessageType,
    Mode,
    Position,
    SessionState,
    StartSource,
    StatusFlag,
)
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

MAX_CHAMBERS = 16
MAX_STRING = 32
PUBLIC_KEY_SIZE = 32
"""An X25519 public key, as PAIR and PAIRED carry it."""
NONCE_SIZE = 8
"""The link nonce a device gives an authenticated link in CAPABILITIES."""
NO_NONCE = bytes(NONCE_SIZE)
"""Eight zero bytes where the nonce goes: no nonce (SPEC §13). No device draws it."""


# --- checks used on construction -------------------------------------------------


def _u8(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"{name}={value!r} is not an integer 0..255")


def _u16(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"{name}={value!r} is not an integer 0..65535")


def _u32(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{name}={value!r} is not an integer 0..2**32-1")


def _key(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_SIZE:
        raise LocalProtocolError(f"{name} must be {PUBLIC_KEY_SIZE} bytes")


def _text(name: str, value: str) -> None:
    if not isinstance(value, str) or len(value.encode()) > MAX_STRING:
        raise LocalProtocolError(f"{name} must be text of at most {MAX_STRING} UTF-8 bytes")


_ENUM_VALUES: dict[type, frozenset[int]] = {}
E = TypeVar("E", bound=IntEnum)


def _values(enum: type[IntEnum]) -> frozenset[int]:
    values = _ENUM_VALUES.get(enum)
    if values is None:
        values = _ENUM_VALUES[enum] = frozenset(member.value for member in enum)
    return values


def _member(name: str, enum: type, value: object) -> None:
    if value not in _values(enum):
        raise LocalProtocolError(f"{name}={value!r} is not a valid {enum.__name__}")


def _code(enum: type[E], value: int) -> E | int:
    """A code read from the wire: its enum member if known, else the bare number.

    Codes are extension points (SPEC.md §13): a peer of a later revision may send
    one this version does not know, and the rest of the message still counts.
    """
    return enum(value) if value in _values(enum) else value


# --- reading untrusted bytes ------------------------------------------------------


class _Reader:
    """Reads fields off a payload; running out of bytes is the peer's error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: struct.Struct) -> tuple[int, ...]:
        try:
            values = fmt.unpack_from(self.data, self.pos)
        except struct.error:
            raise RemoteProtocolError("payload is too short") from None
        self.pos += fmt.size
        return values

    def u8(self) -> int:
        return self._take(_U8)[0]

    def u16(self) -> int:
        return self._take(_U16)[0]

    def u32(self) -> int:
        return self._take(_U32)[0]

    def raw(self, size: int) -> bytes:
        data = self.data[self.pos : self.pos + size]
        if len(data) != size:
            raise RemoteProtocolError("payload is too short")
        self.pos += size
        return data

    def text(self) -> str:
        length = self.u8()
        raw = self.data[self.pos : self.pos + length]
        if len(raw) != length:
            raise RemoteProtocolError("payload is too short for its string")
        self.pos += length
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise RemoteProtocolError("string is not valid UTF-8") from None


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _pack_text(value: str) -> bytes:
    raw = value.encode()
    return bytes([len(raw)]) + raw


# --- the messages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message; subclasses set `TYPE` and their payload layout."""

    TYPE: ClassVar[MessageType]

    def encode_payload(self) -> bytes:
        """The payload bytes of this message (empty for messages without fields)."""
        return b""

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:
        """Build the message from payload bytes (raises `RemoteProtocolError` if malformed)."""
        return cls()


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Controller to device: opens a session on the link; the device answers CAPABILITIES.

    A paired controller names its key with ``key_id`` and signs the HELLO with it
    (SPEC §12): the link is then authenticated. Without ``key_id`` the field is
    left off the wire, as in the first revision.
    """

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    client_name: str = ""
    key_id: int | None = None

    def __post_init__(self) -> None:
        _text("client_name", self.client_name)
        if self.key_id is not None:
            _u8("key_id", self.key_id)

    def encode_payload(self) -> bytes:  # noqa: D102
        name = _pack_text(self.client_name)
        return name if self.key_id is None else name + bytes([self.key_id])

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        reader = _Reader(data)
        name = reader.text()
        return cls(name, reader.u8() if reader.pos < len(data) else None)


@dataclass(frozen=True, slots=True)
class Pair(Message):
    """Controller to device: pair with this X25519 public key, while the pairing window is open.

    The device answers PAIRED with its own public key and the key id it gave the
    controller, or NAK PAIRING_CLOSED / PAIRING_FULL (SPEC §12.2).
    """

    TYPE: ClassVar[MessageType] = MessageType.PAIR
    public_key: bytes
    controller_name: str = ""

    def __post_init__(self) -> None:
        _key("public_key", self.public_key)
        _text("controller_name", self.controller_name)

    def encode_payload(self) -> bytes:  # noqa: D102
        return self.public_key + _pack_text(self.controller_name)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        reader = _Reader(data)
        key = reader.raw(PUBLIC_KEY_SIZE)
        return cls(key, reader.text())


@dataclass(frozen=True, slots=True)
class Unpair(Message):
    """Controller to device, authenticated: forget the key this link was opened with."""

    TYPE: ClassVar[MessageType] = MessageType.UNPAIR


@dataclass(frozen=True, slots=True)
class Paired(Message):
    """The device paired the controller that sent PAIR with ``ref_seq``.

    ``key_id`` names the controller's key in every later HELLO; ``public_key`` is
    the device's X25519 public key for this pairing.
    """

    TYPE: ClassVar[MessageType] = MessageType.PAIRED
    ref_seq: int
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        _u16("ref_seq", self.ref_seq)
        _u8("key_id", self.key_id)
        _key("public_key", self.public_key)

    def encode_payload(self) -> bytes:  # noqa: D102
        return struct.pack("<HB", self.ref_seq, self.key_id) + self.public_key

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        reader = _Reader(data)
        ref, key_id = reader.u16(), reader.u8()
        return cls(ref, key_id, reader.raw(PUBLIC_KEY_SIZE))


@dataclass(frozen=True, slots=True)
class _Lease(Message):
    """Mode, intensity and a lease in seconds: the payload of START and RENEW.

    For `Mode.CYCLE` the intensity is 0: the loaded cycle carries its pressures.
    The device, not the decoder, judges the lease (0 is LEASE_OUT_OF_RANGE).
    """

    mode: int
    intensity: int
    lease_s: int

    def __post_init__(self) -> None:
        _u8("mode", self.mode)
        _u8("intensity", self.intensity)
        _u16("lease_s", self.lease_s)

    def encode_payload(self) -> bytes:
        return struct.pack("<BBH", self.mode, self.intensity, self.lease_s)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:
        r = _Reader(data)
        return cls(r.u8(), r.u8(), r.u16())


@dataclass(frozen=True, slots=True)
class Start(_Lease):
    """Start a session (or change the one that is on): mode, intensity, lease."""

    TYPE: ClassVar[MessageType] = MessageType.START


@dataclass(frozen=True, slots=True)
class Renew(_Lease):
    """Change the session that is on to a new mode, intensity and lease.

    Refused when no session is on, so that a session a person has just ended
    (on the remote, say) is never started again by a controller moving on to
    its next step. A paused session stays paused.
    """

    TYPE: ClassVar[MessageType] = MessageType.RENEW


@dataclass(frozen=True, slots=True)
class SetMode(Message):
    """Change the mode of the running session, or the preset for the next one."""

    TYPE: ClassVar[MessageType] = MessageType.SET_MODE
    mode: int

    def __post_init__(self) -> None:
        _u8("mode", self.mode)

    def encode_payload(self) -> bytes:  # noqa: D102
        return bytes([self.mode])

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        return cls(_Reader(data).u8())


@dataclass(frozen=True, slots=True)
class SetIntensity(Message):
    """Change the intensity level (1..n as announced)."""

    TYPE: ClassVar[MessageType] = MessageType.SET_INTENSITY
    level: int

    def __post_init__(self) -> None:
        _u8("level", self.level)

    def encode_payload(self) -> bytes:  # noqa: D102
        return bytes([self.level])

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        return cls(_Reader(data).u8())


@dataclass(frozen=True, slots=True)
class SetCycle(Message):
    """Load the programmable cycle: per-chamber targets and four phase times.

    Times are in tenths of a second. A target of 0 leaves that chamber empty.
    Loaded while a cycle runs, it takes effect at the start of the next cycle.
    """

    TYPE: ClassVar[MessageType] = MessageType.SET_CYCLE
    order: CycleOrder
    inflate_ds: int
    hold_ds: int
    release_ds: int
    rest_ds: int
    targets_dmmhg: tuple[int, ...]

    def __post_init__(self) -> None:
        _member("order", CycleOrder, self.order)
        for name in ("inflate_ds", "hold_ds", "release_ds", "rest_ds"):
            _u16(name, getattr(self, name))
        if self.inflate_ds == 0:
            raise LocalProtocolError("inflate_ds must be at least 1")
        if not isinstance(self.targets_dmmhg, tuple) or not (
            1 <= len(self.targets_dmmhg) <= MAX_CHAMBERS
        ):
            raise LocalProtocolError(f"targets_dmmhg must be a tuple of 1..{MAX_CHAMBERS}")
        for target in self.targets_dmmhg:
            _u16("target", target)

    def encode_payload(self) -> bytes:  # noqa: D102
        head = struct.pack(
            "<BHHHHB",
            self.order,
            self.inflate_ds,
            self.hold_ds,
            self.release_ds,
            self.rest_ds,
            len(self.targets_dmmhg),
        )
        return head + struct.pack(f"<{len(self.targets_dmmhg)}H", *self.targets_dmmhg)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        r = _Reader(data)
        order = r.u8()
        times = (r.u16(), r.u16(), r.u16(), r.u16())
        targets = tuple(r.u16() for _ in range(r.u8()))
        _member("order", CycleOrder, order)
        return cls(CycleOrder(order), *times, targets)


@dataclass(frozen=True, slots=True)
class Pause(Message):
    """Pause the session: chambers release, the lease clock stops."""

    TYPE: ClassVar[MessageType] = MessageType.PAUSE


@dataclass(frozen=True, slots=True)
class Resume(Message):
    """Resume a paused session from the start of its pattern."""

    TYPE: ClassVar[MessageType] = MessageType.RESUME


@dataclass(frozen=True, slots=True)
class Stop(Message):
    """End the session and release all chambers. Accepted from anyone, at any time."""

    TYPE: ClassVar[MessageType] = MessageType.STOP


@dataclass(frozen=True, slots=True)
class Vent(Message):
    """Emergency: end the session and dump all pressure as fast as the valves allow."""

    TYPE: ClassVar[MessageType] = MessageType.VENT


@dataclass(frozen=True, slots=True)
class KeepAlive(Message):
    """Proof of life from the controller; never answered.

    ``challenge`` echoes the newest `Challenge` the controller has received: only
    a KEEPALIVE that answers a challenge proves that the controller is there now
    (SPEC §7.3), so that a relay that holds keepalives back cannot keep a session
    alive. Without it (as in the first revision) a KEEPALIVE proves nothing.
    """

    TYPE: ClassVar[MessageType] = MessageType.KEEPALIVE
    challenge: int | None = None

    def __post_init__(self) -> None:
        if self.challenge is not None:
            _u32("challenge", self.challenge)

    def encode_payload(self) -> bytes:  # noqa: D102
        return b"" if self.challenge is None else _U32.pack(self.challenge)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        # Fewer than 4 bytes: no challenge (an older controller), not an error.
        return cls(_Reader(data).u32() if len(data) >= 4 else None)


@dataclass(frozen=True, slots=True)
class GetStatus(Message):
    """Ask for a STATUS now (answered by an ACK, then the STATUS)."""

    TYPE: ClassVar[MessageType] = MessageType.GET_STATUS


@dataclass(frozen=True, slots=True)
class ResetFault(Message):
    """Clear a latched fault once its cause is gone; the device returns to IDLE."""

    TYPE: ClassVar[MessageType] = MessageType.RESET_FAULT


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """The device accepted the command with sequence number `ref_seq`."""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    ref_seq: int

    def __post_init__(self) -> None:
        _u16("ref_seq", self.ref_seq)

    def encode_payload(self) -> bytes:  # noqa: D102
        return struct.pack("<H", self.ref_seq)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        return cls(_Reader(data).u16())


@dataclass(frozen=True, slots=True)
class Nak(Message):
    """The device refused the command with sequence number `ref_seq`, and why."""

    TYPE: ClassVar[MessageType] = MessageType.NAK
    ref_seq: int
    error: ErrorCode | int

    def __post_init__(self) -> None:
        _u16("ref_seq", self.ref_seq)
        _u8("error", int(self.error))

    def encode_payload(self) -> bytes:  # noqa: D102
        return struct.pack("<HB", self.ref_seq, self.error)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        r = _Reader(data)
        ref, error = r.u16(), r.u8()
        return cls(ref, _code(ErrorCode, error))


@dataclass(frozen=True, slots=True)
class ChamberInfo:
    """Where one chamber sits."""

    leg: Leg | int
    position: Position | int

    def __post_init__(self) -> None:
        _u8("leg", int(self.leg))
        _u8("position", int(self.position))


@dataclass(frozen=True, slots=True)
class ModeInfo:
    """A mode the device offers, with its display name."""

    mode: int
    name: str

    def __post_init__(self) -> None:
        _u8("mode", self.mode)
        if self.mode == Mode.NONE:
            raise LocalProtocolError("mode 0 means 'none' and cannot be offered")
        _text("name", self.name)
        if not self.name:
            raise LocalProtocolError("a mode needs a name")


@dataclass(frozen=True, slots=True)
class LevelInfo:
    """An intensity level and its target peak pressure."""

    level: int
    target_dmmhg: int

    def __post_init__(self) -> None:
        _u8("level", self.level)
        if self.level == 0:
            raise LocalProtocolError("intensity levels count from 1")
        _u16("target_dmmhg", self.target_dmmhg)


@dataclass(frozen=True, slots=True)
class Capabilities(Message):
    """The device's answer to HELLO: what it is and what it can do.

    Pressures are in tenths of mmHg. ``ceiling_dmmhg`` is the pressure no chamber
    may ever exceed (the device trips below it); ``max_target_dmmhg`` the highest
    target it accepts in a cycle.
    """

    TYPE: ClassVar[MessageType] = MessageType.CAPABILITIES
    ref_seq: int
    model: str
    firmware: str
    serial: str
    features: Feature
    ceiling_dmmhg: int
    max_target_dmmhg: int
    session_cap_s: int
    max_lease_s: int
    watchdog_ms: int
    status_interval_ms: int
    pause_limit_s: int
    chambers: tuple[ChamberInfo, ...]
    modes: tuple[ModeInfo, ...]
    levels: tuple[LevelInfo, ...]
    link_nonce: bytes | None = None
    """Answering a signed HELLO: the link's nonce, which every later tag covers (§12.3).

    The first field appended after the levels: a later revision that appends more
    writes `NO_NONCE` here on a link that is not authenticated, and a receiver
    reads those eight zero bytes as no nonce (SPEC §13)."""

    _NUMBERS: ClassVar[struct.Struct] = struct.Struct("<HHHHHHHH")

    def __post_init__(self) -> None:
        _u16("ref_seq", self.ref_seq)
        for name in ("model", "firmware", "serial"):
            _text(name, getattr(self, name))
        _u16("features", int(self.features))  # only the width: bits may be added (§13)
        for name in (
            "ceiling_dmmhg",
            "max_target_dmmhg",
            "session_cap_s",
            "max_lease_s",
            "watchdog_ms",
            "status_interval_ms",
            "pause_limit_s",
        ):
            _u16(name, getattr(self, name))
        if self.max_target_dmmhg > self.ceiling_dmmhg:
            raise LocalProtocolError("max_target_dmmhg is above ceiling_dmmhg")
        for name, limit in (("chambers", MAX_CHAMBERS), ("modes", 32), ("levels", 16)):
            items = getattr(self, name)
            if not isinstance(items, tuple) or not 1 <= len(items) <= limit:
                raise LocalProtocolError(f"{name} must be a tuple of 1..{limit}")
        if self.link_nonce is not None and len(self.link_nonce) != NONCE_SIZE:
            raise LocalProtocolError(f"link_nonce must be {NONCE_SIZE} bytes")
        if self.link_nonce == NO_NONCE:
            raise LocalProtocolError("eight zero bytes mean no nonce: say None")

    def encode_payload(self) -> bytes:  # noqa: D102
        out = bytearray(struct.pack("<H", self.ref_seq))
        for text in (self.model, self.firmware, self.serial):
            out += _pack_text(text)
        out += self._NUMBERS.pack(
            self.features,
            self.ceiling_dmmhg,
            self.max_target_dmmhg,
            self.session_cap_s,
            self.max_lease_s,
            self.watchdog_ms,
            self.status_interval_ms,
            self.pause_limit_s,
        )
        out.append(len(self.chambers))
        for chamber in self.chambers:
            out += bytes([chamber.leg, chamber.position])
        out.append(len(self.modes))
        for mode in self.modes:
            out.append(mode.mode)
            out += _pack_text(mode.name)
        out.append(len(self.levels))
        for level in self.levels:
            out += struct.pack("<BH", level.level, level.target_dmmhg)
        if self.link_nonce is not None:
            out += self.link_nonce
        return bytes(out)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        r = _Reader(data)
        ref = r.u16()
        model, firmware, serial = r.text(), r.text(), r.text()
        features, ceiling, max_target, cap, lease, watchdog, interval, pause = (
            r.u16() for _ in range(8)
        )
        chambers = []
        for _ in range(r.u8()):
            leg, position = r.u8(), r.u8()
            chambers.append(ChamberInfo(_code(Leg, leg), _code(Position, position)))
        modes = tuple(ModeInfo(r.u8(), r.text()) for _ in range(r.u8()))
        levels = tuple(LevelInfo(r.u8(), r.u16()) for _ in range(r.u8()))
        nonce = r.raw(NONCE_SIZE) if len(data) - r.pos >= NONCE_SIZE else None
        if nonce == NO_NONCE:
            nonce = None  # held in place for fields a later revision appends (SPEC §13)
        return cls(
            ref, model, firmware, serial, Feature(features), ceiling, max_target, cap,
            lease, watchdog, interval, pause,
            chambers=tuple(chambers), modes=modes, levels=levels, link_nonce=nonce,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Status(Message):
    """Telemetry: sent every status interval and at once on any change of state.

    Pressures are measured values in tenths of mmHg, one per announced chamber.
    Bit i of a valve mask is chamber i (inlet: filling from the pump; exhaust:
    open to the air).
    """

    TYPE: ClassVar[MessageType] = MessageType.STATUS
    uptime_ms: int
    state: SessionState
    mode: int
    intensity: int
    flags: StatusFlag
    seconds_left: int
    session_elapsed_s: int
    battery_pct: int
    faults: Fault
    last_end: EndReason | int
    inlet_mask: int
    exhaust_mask: int
    pressures_dmmhg: tuple[int, ...]

    _HEAD: ClassVar[struct.Struct] = struct.Struct("<IBBBBHHBHBHHB")

    def __post_init__(self) -> None:
        # STATUS is the hottest message: one struct.pack checks every integer's type
        # and range in C; the per-field checks below run only to name the culprit.
        if not isinstance(self.pressures_dmmhg, tuple) or not (
            0 <= len(self.pressures_dmmhg) <= MAX_CHAMBERS
        ):
            raise LocalProtocolError(f"pressures_dmmhg must be a tuple of 0..{MAX_CHAMBERS}")
        try:
            self.encode_payload()
        except (struct.error, TypeError):
            self._name_the_bad_field()
            raise LocalProtocolError("a STATUS field is out of range") from None
        _member("state", SessionState, self.state)
        if self.battery_pct > 100:
            raise LocalProtocolError("battery_pct is above 100")

    def _name_the_bad_field(self) -> None:
        _u32("uptime_ms", self.uptime_ms)
        for name in ("mode", "intensity", "flags", "battery_pct", "state", "last_end"):
            _u8(name, int(getattr(self, name)))
        for name in ("seconds_left", "session_elapsed_s", "faults", "inlet_mask", "exhaust_mask"):
            _u16(name, int(getattr(self, name)))
        for pressure in self.pressures_dmmhg:
            _u16("pressure", pressure)

    def encode_payload(self) -> bytes:  # noqa: D102
        head = self._HEAD.pack(
            self.uptime_ms,
            self.state,
            self.mode,
            self.intensity,
            self.flags,
            self.seconds_left,
            self.session_elapsed_s,
            self.battery_pct,
            self.faults,
            self.last_end,
            self.inlet_mask,
            self.exhaust_mask,
            len(self.pressures_dmmhg),
        )
        return head + struct.pack(f"<{len(self.pressures_dmmhg)}H", *self.pressures_dmmhg)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        r = _Reader(data)
        head = r._take(cls._HEAD)
        (uptime, state, mode, intensity, flags, left, elapsed, battery, faults, end,
         inlets, exhausts, count) = head  # fmt: skip
        pressures = r._take(_u16s(count))
        _member("state", SessionState, state)
        return cls(
            uptime, SessionState(state), mode, intensity, status_flags(flags), left, elapsed,
            battery, _faults(faults), _code(EndReason, end), inlets, exhausts, pressures,
        )  # fmt: skip


# STATUS is built and decoded after every command and twice a second: its flag
# fields are looked up, not built (an IntFlag call costs as much as the rest).
@functools.lru_cache(maxsize=256)
def status_flags(bits: int) -> StatusFlag:
    """The `StatusFlag` of the flag byte ``bits``, made once per value."""
    return StatusFlag(bits)


@functools.lru_cache(maxsize=256)
def _faults(bits: int) -> Fault:
    return Fault(bits)


@functools.lru_cache(maxsize=256)
def _u16s(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}H")


@dataclass(frozen=True, slots=True)
class DeviceEvent(Message):
    """Base of the EVENT message kinds; the first payload byte is the `EventKind`."""

    TYPE: ClassVar[MessageType] = MessageType.EVENT
    KIND: ClassVar[EventKind]


@dataclass(frozen=True, slots=True)
class ButtonPressed(DeviceEvent):
    """A button on the handheld remote was pressed; the device acts on it next."""

    KIND: ClassVar[EventKind] = EventKind.BUTTON
    button: Button | int

    def __post_init__(self) -> None:
        _u8("button", int(self.button))

    def encode_payload(self) -> bytes:  # noqa: D102
        return bytes([self.KIND, self.button])

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        return cls(_code(Button, _Reader(data[1:]).u8()))


@dataclass(frozen=True, slots=True)
class Challenge(DeviceEvent):
    """A challenge for the controller's next KEEPALIVE to answer (SPEC §7.3).

    Sent every quarter of the watchdog while a controller is present. ``challenge``
    is drawn at random, so that nobody can know it before the device sends it; a
    KEEPALIVE that names it proves that the controller was there after that moment,
    whenever the KEEPALIVE arrives. ``uptime_ms`` says when it was sent.
    """

    KIND: ClassVar[EventKind] = EventKind.CHALLENGE
    challenge: int
    uptime_ms: int = 0

    def __post_init__(self) -> None:
        _u32("challenge", self.challenge)
        _u32("uptime_ms", self.uptime_ms)

    def encode_payload(self) -> bytes:  # noqa: D102
        return bytes([self.KIND]) + _U32.pack(self.challenge) + _U32.pack(self.uptime_ms)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        reader = _Reader(data[1:])
        return cls(reader.u32(), reader.u32())


@dataclass(frozen=True, slots=True)
class FaultRaised(DeviceEvent):
    """Faults were latched; the device has vented and refuses START until reset."""

    KIND: ClassVar[EventKind] = EventKind.FAULT
    faults: Fault

    def __post_init__(self) -> None:
        _u16("faults", int(self.faults))  # only the width: bits may be added (§13)

    def encode_payload(self) -> bytes:  # noqa: D102
        return struct.pack("<BH", self.KIND, self.faults)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        return cls(Fault(_Reader(data[1:]).u16()))


@dataclass(frozen=True, slots=True)
class SessionEnded(DeviceEvent):
    """A session ended, why, and how many seconds it ran under pressure."""

    KIND: ClassVar[EventKind] = EventKind.SESSION_ENDED
    reason: EndReason | int
    pressure_s: int

    def __post_init__(self) -> None:
        _u8("reason", int(self.reason))
        if self.reason == EndReason.NONE:
            raise LocalProtocolError("a session ends for a reason")
        _u16("pressure_s", self.pressure_s)

    def encode_payload(self) -> bytes:  # noqa: D102
        return struct.pack("<BBH", self.KIND, self.reason, self.pressure_s)

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        r = _Reader(data[1:])
        reason, seconds = r.u8(), r.u16()
        return cls(_code(EndReason, reason), seconds)


@dataclass(frozen=True, slots=True)
class SessionStarted(DeviceEvent):
    """A session started from the link or the remote, with its mode, level and length."""

    KIND: ClassVar[EventKind] = EventKind.SESSION_STARTED
    source: StartSource | int
    mode: int
    intensity: int
    lease_s: int

    def __post_init__(self) -> None:
        _u8("source", int(self.source))
        _u8("mode", self.mode)
        _u8("intensity", self.intensity)
        _u16("lease_s", self.lease_s)

    def encode_payload(self) -> bytes:  # noqa: D102
        return struct.pack(
            "<BBBBH", self.KIND, self.source, self.mode, self.intensity, self.lease_s
        )

    @classmethod
    def decode_payload(cls, data: bytes) -> Self:  # noqa: D102
        r = _Reader(data[1:])
        source, mode, intensity, lease = r.u8(), r.u8(), r.u8(), r.u16()
        return cls(_code(StartSource, source), mode, intensity, lease)


COMMANDS: dict[MessageType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello, Start, SetMode, SetIntensity, SetCycle, Pause, Resume, Stop, Vent,
        KeepAlive, GetStatus, ResetFault, Renew, Pair, Unpair,
    )
}  # fmt: skip
"""Messages a controller sends, by type."""

REPLIES: dict[MessageType, type[Message]] = {
    cls.TYPE: cls for cls in (Ack, Nak, Capabilities, Status, Paired)
}
"""Messages a device sends other than events, by type."""

EVENTS: dict[EventKind, type[DeviceEvent]] = {
    cls.KIND: cls for cls in (ButtonPressed, Challenge, FaultRaised, SessionEnded, SessionStarted)
}
"""EVENT message kinds, by kind."""

URGENT: frozenset[MessageType] = frozenset({MessageType.STOP, MessageType.VENT})
"""Commands that go ahead of anything queued, from anyone, in any state."""

PREEMPTIBLE: frozenset[MessageType] = frozenset(
    {
        MessageType.START,
        MessageType.RENEW,
        MessageType.SET_MODE,
        MessageType.SET_INTENSITY,
        MessageType.SET_CYCLE,
        MessageType.PAUSE,
        MessageType.RESUME,
        MessageType.RESET_FAULT,
    }
)
"""Commands refused PREEMPTED when a STOP or VENT arrives in the same read (SPEC 7.4).

Every command of the session table but stop and vent themselves: whatever a stop
overtakes, it must not run after it, whoever signed which."""


def decode_message(msg_type: int, payload: bytes) -> Message:
    """Build the message of type ``msg_type`` from its payload.

    Raises:
        RemoteProtocolError: unknown type or kind, or a malformed payload. Nothing else.
    """
    try:
        if msg_type == MessageType.EVENT:
            if not payload:
                raise RemoteProtocolError("EVENT without a kind")
            event_cls = EVENTS.get(payload[0])  # type: ignore[call-overload]
            if event_cls is None:
                raise RemoteProtocolError(f"unknown event kind {payload[0]}")
            return event_cls.decode_payload(payload)
        cls = COMMANDS.get(msg_type) or REPLIES.get(msg_type)  # type: ignore[call-overload]
        if cls is None:
            raise UnknownMessageType(f"unknown message type 0x{msg_type:02x}")
        return cls.decode_payload(payload)
    except RemoteProtocolError:
        raise
    except ProtocolError as error:
        raise RemoteProtocolError(f"invalid {_name(msg_type)}: {error}") from error


class UnknownMessageType(RemoteProtocolError):
    """A frame carried a message type this protocol version does not define."""


def _name(msg_type: int) -> str:
    try:
        return MessageType(msg_type).name
    except ValueError:
        return f"type 0x{msg_type:02x}"
