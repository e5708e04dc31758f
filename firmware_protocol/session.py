"""The session state machine: what each command does in each state, as tables.

Theory of operation
-------------------
A device is in one of four states. IDLE: no pressure is applied. RUNNING: a
session is on and chambers follow the mode's pattern. PAUSED: the session holds
its place but chambers are released and its clock is stopped. FAULT: a fault is
latched, the device has vented and it stays vented until RESET_FAULT.

The device owns the state. The firmware looks every command up in
`COMMAND_RULES` before doing anything: the entry is either the state the command
leads to or the `ErrorCode` to refuse it with. Value checks (is the mode offered,
the lease in range, the battery charged) come after the state check. Things that
happen without a command (a lease ends, the watchdog fires, a fault) are the
`Trigger` rows of `TRIGGER_RULES`; a trigger that has no row for the current state
does nothing. The controller uses the same tables to predict what the device
will do, and the tests check both sides against them.

>>> command_outcome(SessionState.IDLE, MessageType.START)
<SessionState.RUNNING: 1>
>>> command_outcome(SessionState.FAULT, MessageType.START)
<ErrorCode.FAULT_LATCHED: 7>
"""

from __future__ import annotations

from enum import Enum

from .enums import EndReason, ErrorCode, MessageType, SessionState

IDLE, RUNNING, PAUSED, FAULT = (
    SessionState.IDLE,
    SessionState.RUNNING,
    SessionState.PAUSED,
    SessionState.FAULT,
)
RUN, PAUSE = RUNNING, PAUSED  # short names keep the table below one screen wide
_BAD = ErrorCode.BAD_STATE
_LTCH = ErrorCode.FAULT_LATCHED

STATEFUL_COMMANDS = (
    MessageType.START,
    MessageType.RENEW,
    MessageType.SET_MODE,
    MessageType.SET_INTENSITY,
    MessageType.SET_CYCLE,
    MessageType.PAUSE,
    MessageType.RESUME,
    MessageType.STOP,
    MessageType.VENT,
    MessageType.RESET_FAULT,
)
"""Commands that are looked up in `COMMAND_RULES`. HELLO, KEEPALIVE and GET_STATUS
are accepted in every state and change none."""

_ROWS: dict[SessionState, tuple[SessionState | ErrorCode, ...]] = {
    #         START  RENEW  MODE   LEVEL  CYCLE  PAUSE  RESUME STOP   VENT   RESET
    IDLE:    (RUN,   _BAD,  IDLE,  IDLE,  IDLE,  _BAD,  _BAD,  IDLE,  IDLE,  IDLE),
    RUNNING: (RUN,   RUN,   RUN,   RUN,   RUN,   PAUSE, _BAD,  IDLE,  IDLE,  _BAD),
    PAUSED:  (RUN,   PAUSE, PAUSE, PAUSE, PAUSE, _BAD,  RUN,   IDLE,  IDLE,  _BAD),
    FAULT:   (_LTCH, _LTCH, _LTCH, _LTCH, _LTCH, _LTCH, _LTCH, FAULT, FAULT, IDLE),
}  # fmt: skip

COMMAND_RULES: dict[tuple[SessionState, MessageType], SessionState | ErrorCode] = {
    (state, command): outcome
    for state, row in _ROWS.items()
    for command, outcome in zip(STATEFUL_COMMANDS, row, strict=True)
}
"""(state, command) -> the next state, or the error the device refuses with."""


def command_outcome(state: SessionState, command: MessageType) -> SessionState | ErrorCode:
    """What ``command`` does in ``state``: the next state, or the `ErrorCode` to refuse with.

    Commands outside `STATEFUL_COMMANDS` leave the state as it is.
    """
    return COMMAND_RULES.get((state, command), state)


class Trigger(Enum):
    """Things that change the state without a command from the link."""

    LEASE_ENDED = "lease ended"
    SESSION_CAP = "session cap reached"
    LINK_LOST = "no proof of life from the controller that started the session"
    PAUSE_TIMEOUT = "paused for longer than the pause limit"
    BATTERY_LOW = "battery too low to go on"
    FAULT = "a fault was detected"
    REMOTE_POWER = "power button on the remote"
    REMOTE_PAUSE = "pause button on the remote"


TRIGGER_RULES: dict[tuple[SessionState, Trigger], tuple[SessionState, EndReason]] = {
    (RUNNING, Trigger.LEASE_ENDED): (IDLE, EndReason.COMPLETED),
    (RUNNING, Trigger.SESSION_CAP): (IDLE, EndReason.SESSION_CAP),
    (RUNNING, Trigger.LINK_LOST): (IDLE, EndReason.LINK_LOST),
    (PAUSED, Trigger.LINK_LOST): (IDLE, EndReason.LINK_LOST),
    (PAUSED, Trigger.PAUSE_TIMEOUT): (IDLE, EndReason.PAUSE_TIMEOUT),
    (RUNNING, Trigger.BATTERY_LOW): (IDLE, EndReason.BATTERY),
    (PAUSED, Trigger.BATTERY_LOW): (IDLE, EndReason.BATTERY),
    (IDLE, Trigger.FAULT): (FAULT, EndReason.NONE),
    (RUNNING, Trigger.FAULT): (FAULT, EndReason.FAULT),
    (PAUSED, Trigger.FAULT): (FAULT, EndReason.FAULT),
    (IDLE, Trigger.REMOTE_POWER): (RUNNING, EndReason.NONE),
    (RUNNING, Trigger.REMOTE_POWER): (IDLE, EndReason.REMOTE),
    (PAUSED, Trigger.REMOTE_POWER): (IDLE, EndReason.REMOTE),
    (RUNNING, Trigger.REMOTE_PAUSE): (PAUSED, EndReason.NONE),
    (PAUSED, Trigger.REMOTE_PAUSE): (RUNNING, EndReason.NONE),
}
"""(state, trigger) -> (next state, the end reason if it ends a session, else NONE).

LINK_LOST applies only to sessions a controller started over the link; a session
started on the remote has no controller to lose. FAULT from FAULT adds fault bits
but is not a transition.
"""

END_REASON_OF_COMMAND: dict[MessageType, EndReason] = {
    MessageType.STOP: EndReason.STOPPED,
    MessageType.VENT: EndReason.VENTED,
}
"""Why a session ended when a command ended it."""
