"""Numbers with names: message types, modes, states, error codes, faults, reasons.

Every value here is part of the wire format and is listed in SPEC.md; a value
never changes meaning once released. Unknown values from a peer are a
`RemoteProtocolError` when decoding, never a crash.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

PROTOCOL_VERSION = 1
"""The protocol version this package speaks; byte 0 of every frame."""


class Role(IntEnum):
    """Which end of the link a `Connection` plays."""

    CONTROLLER = 0
    DEVICE = 1


class MessageType(IntEnum):
    """Byte 4 of every frame. Commands go controller to device, replies and telemetry back."""

    # controller -> device
    HELLO = 0x01
    START = 0x02
    SET_MODE = 0x03
    SET_INTENSITY = 0x04
    SET_CYCLE = 0x05
    PAUSE = 0x06
    RESUME = 0x07
    STOP = 0x08
    VENT = 0x09
    KEEPALIVE = 0x0A
    GET_STATUS = 0x0B
    RESET_FAULT = 0x0C
    RENEW = 0x0D
    PAIR = 0x10
    UNPAIR = 0x11
    # device -> controller
    ACK = 0x80
    CAPABILITIES = 0x81
    NAK = 0x82
    STATUS = 0x83
    EVENT = 0x84
    PAIRED = 0x85


class Mode(IntEnum):
    """Massage modes. 1-127 are fixed patterns; `CYCLE` runs the loaded programmable cycle."""

    NONE = 0
    WAVE = 1
    PULSE = 2
    CYCLE = 0x80


class SessionState(IntEnum):
    """The device's session state (see `firmware_protocol.session`)."""

    IDLE = 0
    RUNNING = 1
    PAUSED = 2
    FAULT = 3


class ErrorCode(IntEnum):
    """Why a device refused a command, carried in a NAK."""

    UNKNOWN_MESSAGE = 1
    BAD_PAYLOAD = 2
    BAD_STATE = 3
    UNSUPPORTED_MODE = 4
    UNSUPPORTED_INTENSITY = 5
    LEASE_OUT_OF_RANGE = 6
    FAULT_LATCHED = 7
    OVER_PRESSURE_LIMIT = 8
    NO_CYCLE = 9
    NOT_AUTHENTICATED = 10
    REPLAYED = 11
    BATTERY_LOW = 12
    UNSUPPORTED_VERSION = 13
    NO_HELLO = 14
    STALE_SEQUENCE = 15
    FAULT_PERSISTS = 16
    PAIRING_CLOSED = 17
    PAIRING_FULL = 18
    PREEMPTED = 19
    """A STOP or VENT read with it came first (SPEC 7.4); it never runs."""


class Fault(IntFlag):
    """Fault flags; a latched fault stays set until RESET_FAULT succeeds."""

    NONE = 0
    OVERPRESSURE = 1 << 0
    SENSOR = 1 << 1
    PUMP = 1 << 2
    VALVE = 1 << 3
    LEAK = 1 << 4
    BATTERY_EMPTY = 1 << 5
    OVERHEAT = 1 << 6
    INTERNAL = 1 << 7


class EndReason(IntEnum):
    """Why a session ended, in the SESSION_ENDED event and in every STATUS."""

    NONE = 0
    COMPLETED = 1
    STOPPED = 2
    VENTED = 3
    REMOTE = 4
    LINK_LOST = 5
    FAULT = 6
    SESSION_CAP = 7
    BATTERY = 8
    PAUSE_TIMEOUT = 9


class EventKind(IntEnum):
    """The first payload byte of an EVENT message."""

    BUTTON = 1
    FAULT = 2
    SESSION_ENDED = 3
    SESSION_STARTED = 4
    CHALLENGE = 5


class Button(IntEnum):
    """Buttons of the handheld remote."""

    POWER = 1
    MODE = 2
    PLUS = 3
    MINUS = 4
    PAUSE = 5


class StartSource(IntEnum):
    """Who started a session: the link (a controller, under a lease) or the remote."""

    LINK = 0
    REMOTE = 1


class Feature(IntFlag):
    """Optional features a device announces in CAPABILITIES."""

    NONE = 0
    CYCLE = 1 << 0
    BATTERY = 1 << 1
    REMOTE = 1 << 2
    PAIRING = 1 << 3
    SIGNED_LINK = 1 << 4
    """On an authenticated link it signs every frame of its own (SPEC §12.3)."""


class CycleOrder(IntEnum):
    """How a programmable cycle fills its chambers."""

    SEQUENTIAL = 0
    SIMULTANEOUS = 1


class Leg(IntEnum):
    """Which limb a chamber sits on."""

    LEFT = 0
    RIGHT = 1
    BOTH = 2


class Position(IntEnum):
    """Where on the limb a chamber sits, from the far end toward the heart."""

    FOOT = 0
    ANKLE = 1
    CALF = 2
    KNEE = 3
    THIGH = 4
    HIP = 5


class StatusFlag(IntFlag):
    """Bits of the STATUS flags byte."""

    NONE = 0
    CHARGING = 1 << 0
    PUMP_ON = 1 << 1
    CYCLE_LOADED = 1 << 2
    LINK_SESSION = 1 << 3
    DUMP_OPEN = 1 << 4
    CONTROLLER_PRESENT = 1 << 5
    STOP_SINCE_END = 1 << 6
    """A STOP or VENT arrived while no session ran, since the last session ended."""
