"""The link rules SPEC.md states for a maker, one test each, on a bare device `Connection`.

Each test names the section it holds the reference to. The device here is the
link alone: the firmware's part (the state table, the values) is in
tests/simulator/test_spec_rules.py.
"""

from __future__ import annotations

import pytest

import firmware_protocol as fp
from firmware_protocol import Connection, ErrorCode, Frame, FrameDecoder, Received, Role

CHAMBERS = 2


def device() -> Connection:
    """A device link with a present controller (its HELLO had seq 1)."""
    conn = Connection(Role.DEVICE, chambers=CHAMBERS)
    conn.receive_data(Frame(1, fp.MessageType.HELLO, fp.Hello("c").encode_payload()).encode(), 0.0)
    [hello] = conn.events()
    assert isinstance(hello, Received)
    conn.data_to_send()
    return conn


def answers(conn: Connection, *frames: Frame) -> tuple[list[fp.Message], list[fp.Event]]:
    """Feed ``frames`` in one read; what the link answered itself, and what it handed on."""
    conn.receive_data(b"".join(f.encode() for f in frames), 0.0)
    sent = [
        fp.decode_message(f.msg_type, f.payload) for f in FrameDecoder().feed(conn.data_to_send())
    ]
    return sent, conn.events()


def cycle(targets: int) -> bytes:
    return fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 10, 10, 10, 10, (300,) * targets).encode_payload()


GOOD_CYCLE = cycle(CHAMBERS)
MALFORMED = {
    "payload too short": (fp.MessageType.START, b"\x01"),
    "string of 33 bytes": (fp.MessageType.PAIR, bytes(32) + bytes([33]) + b"x" * 33),
    "string not UTF-8": (fp.MessageType.PAIR, bytes(32) + b"\x01\xff"),
    "unknown cycle order": (fp.MessageType.SET_CYCLE, b"\x07" + GOOD_CYCLE[1:]),
    "inflate_ds of 0": (fp.MessageType.SET_CYCLE, GOOD_CYCLE[:1] + bytes(2) + GOOD_CYCLE[3:]),
    "one target per chamber, not one more": (fp.MessageType.SET_CYCLE, cycle(CHAMBERS + 1)),
    "one target per chamber, not one fewer": (fp.MessageType.SET_CYCLE, cycle(CHAMBERS - 1)),
}  # fmt: skip


@pytest.mark.parametrize(("msg_type", "payload"), MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_payload_is_refused_before_its_seq_and_forgotten(
    msg_type: int, payload: bytes
) -> None:
    """SPEC 4.1: BAD_PAYLOAD is a check of the link; the frame is not taken."""
    conn = device()
    bad = Frame(2, msg_type, payload)
    for _ in range(2):  # sent again: refused again, not answered from a cache
        sent, events = answers(conn, bad)
        assert sent == [fp.Nak(2, ErrorCode.BAD_PAYLOAD)]
        assert events == []
    # Its seq was not used up: a good frame with it is taken.
    good = Frame(2, fp.MessageType.SET_CYCLE, GOOD_CYCLE)
    sent, events = answers(conn, good)
    assert sent == []
    assert [e.message for e in events if isinstance(e, Received)] == [
        fp.decode_message(good.msg_type, good.payload)
    ]
