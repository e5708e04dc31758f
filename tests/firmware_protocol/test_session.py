"""The session state tables: complete, and saying what SPEC.md says."""

from __future__ import annotations

from firmware_protocol import ErrorCode, MessageType, SessionState
from firmware_protocol.session import COMMAND_RULES, STATEFUL_COMMANDS, command_outcome


def test_table_covers_every_state_and_command() -> None:
    assert set(COMMAND_RULES) == {(s, c) for s in SessionState for c in STATEFUL_COMMANDS}


def test_stop_and_vent_are_accepted_in_every_state() -> None:
    for state in SessionState:
        for command in (MessageType.STOP, MessageType.VENT):
            assert isinstance(command_outcome(state, command), SessionState)


def test_nothing_but_reset_leaves_fault() -> None:
    for command in STATEFUL_COMMANDS:
        outcome = command_outcome(SessionState.FAULT, command)
        if command == MessageType.RESET_FAULT:
            assert outcome == SessionState.IDLE
        else:
            assert outcome in (SessionState.FAULT, ErrorCode.FAULT_LATCHED)


def test_stateless_commands_change_nothing() -> None:
    for state in SessionState:
        for command in (MessageType.HELLO, MessageType.KEEPALIVE, MessageType.GET_STATUS):
            assert command_outcome(state, command) == state


def test_spec_table_matches_the_code() -> None:
    from .spec_vectors import SPEC

    rows = {}
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(STATEFUL_COMMANDS) + 1 and cells[0] in SessionState.__members__:
            rows[SessionState[cells[0]]] = cells[1:]
    assert set(rows) == set(SessionState)
    for state, cells in rows.items():
        for command, cell in zip(STATEFUL_COMMANDS, cells, strict=True):
            outcome = command_outcome(state, command)
            assert cell == outcome.name, (state, command)
