"""The link rules SPEC.md states for a maker, one test each, on a bare device `Connection`.

Each test names the section it holds the reference to. The device here is the
link alone: the firmware's part (the state table, the values) is in
tests/simulator/test_spec_rules.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

import firmware_protocol as fp
from firmware_protocol import Connection, ErrorCode, Frame, FrameDecoder, Received, Role
from firmware_protocol.messages import NO_NONCE
from tests.firmware_protocol.test_connection import CAPS as CONNECTION_CAPS

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


# --- SPEC 13: the fields pairing appended, and the fields after them --------------------

CAPS = replace(CONNECTION_CAPS, ref_seq=1, features=fp.Feature.PAIRING)
LATER = b"\x42\x43"  # a field some later revision appends


def test_fields_after_the_nonce_are_ignored_and_eight_zero_bytes_are_no_nonce() -> None:
    nonce = bytes.fromhex("a0a1a2a3a4a5a6a7")
    with_nonce = replace(CAPS, link_nonce=nonce).encode_payload() + LATER
    assert fp.Capabilities.decode_payload(with_nonce).link_nonce == nonce
    held_place = CAPS.encode_payload() + NO_NONCE + LATER
    assert fp.Capabilities.decode_payload(held_place) == CAPS
    with pytest.raises(fp.LocalProtocolError):
        replace(CAPS, link_nonce=NO_NONCE)  # a device never sends it as a nonce


def test_a_device_never_draws_the_nonce_that_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware_protocol import connection

    draws = iter([NO_NONCE, NO_NONCE, b"\x01" * 8])
    monkeypatch.setattr(connection.secrets, "token_bytes", lambda n: next(draws))
    assert connection._fresh_nonce() == b"\x01" * 8


def test_key_id_comes_right_after_the_name_and_fields_after_it_are_ignored() -> None:
    payload = fp.Hello("c").encode_payload() + b"\x00" + LATER
    assert fp.Hello.decode_payload(payload) == fp.Hello("c", key_id=0)
    conn = device()
    # Unsigned, key id 0 (no key has it), a later field: an unauthenticated link.
    sent, events = answers(conn, Frame(5, fp.MessageType.HELLO, payload))
    assert sent == []
    assert [e.message for e in events if isinstance(e, Received)] == [fp.Hello("c", 0)]
    assert conn.link_key_id is None


KEY = bytes(range(32))


@pytest.mark.parametrize("key_id", [None, 0, 2], ids=["no key_id", "key_id 0", "unknown key_id"])
def test_a_signed_hello_without_a_key_the_device_holds_is_refused_and_changes_nothing(
    key_id: int | None,
) -> None:
    """SPEC 12.3: NOT_AUTHENTICATED; not the present controller, not the newest seq."""
    table = fp.PairingTable()
    assert table.add("c", KEY) == 1
    conn = Connection(Role.DEVICE, pairings=table)
    conn.receive_data(Frame(1, fp.MessageType.HELLO, fp.Hello("c").encode_payload()).encode(), 0.0)
    conn.events()
    conn.data_to_send()
    hello = fp.Hello("x", key_id)
    signed = Frame(7, hello.TYPE, hello.encode_payload()).signed(KEY, 5)
    sent, events = answers(conn, signed)
    assert sent == [fp.Nak(7, ErrorCode.NOT_AUTHENTICATED)]
    assert events == []
    assert conn.state is fp.LinkState.READY
    assert conn._accepted_seq == 1
    assert table.get(1).counter == 0  # type: ignore[union-attr]


# --- SPEC 7.3: what proves the other end alive -----------------------------------------


def with_flags(frame: Frame, flags: int) -> bytes:
    """``frame`` on the wire with its flags byte set to ``flags`` and a good CRC."""
    body = bytearray(frame.to_bytes()[:-2])
    body[1] = flags
    return fp.cobs.encode(bytes(body) + fp.framing.crc16(bytes(body)).to_bytes(2, "little")) + b"\0"


def ready_controller() -> Connection:
    """A controller whose link is READY at t=0; it calls the device silent after 1.5 s."""
    ctl = Connection(Role.CONTROLLER)
    ctl.send(fp.Hello("c"), 0.0)
    ctl.data_to_send()
    ctl.receive_data(Frame(1, fp.MessageType.CAPABILITIES, CAPS.encode_payload()).encode(), 0.0)
    assert ctl.state is fp.LinkState.READY
    ctl.events()
    return ctl


STATUS = fp.Status(
    0, fp.SessionState.IDLE, 1, 1, fp.StatusFlag(0), 0, 0, 100, fp.Fault.NONE,
    fp.EndReason.NONE, 0, 0, (0,),
)  # fmt: skip
NOT_ALIVE = {
    "version 2": Frame(2, fp.MessageType.STATUS, STATUS.encode_payload(), 2).encode(),
    "a reserved flag bit": with_flags(Frame(2, fp.MessageType.STATUS, STATUS.encode_payload()), 2),
    "a bad CRC": Frame(2, fp.MessageType.STATUS, STATUS.encode_payload()).encode()[:-3] + b"\1\0",
}
ALIVE = {
    "a STATUS": Frame(2, fp.MessageType.STATUS, STATUS.encode_payload()).encode(),
    "a type it does not know": Frame(2, 0x9F, b"\x01").encode(),
    "an event kind it does not know": Frame(2, fp.MessageType.EVENT, b"\x7f").encode(),
    "a payload it cannot read": Frame(2, fp.MessageType.STATUS, b"\x01").encode(),
}


@pytest.mark.parametrize("wire", NOT_ALIVE.values(), ids=list(NOT_ALIVE))
def test_the_controller_takes_no_frame_of_another_version_or_flag_for_life(wire: bytes) -> None:
    ctl = ready_controller()
    ctl.receive_data(wire, 1.0)
    ctl.handle_timer(1.5)
    assert any(isinstance(e, fp.PeerSilent) for e in ctl.events())


@pytest.mark.parametrize("wire", ALIVE.values(), ids=list(ALIVE))
def test_the_controller_takes_any_version_1_frame_for_life(wire: bytes) -> None:
    ctl = ready_controller()
    ctl.receive_data(wire, 1.0)
    ctl.handle_timer(1.5)
    assert not any(isinstance(e, fp.PeerSilent) for e in ctl.events())
    ctl.handle_timer(2.5)
    assert any(isinstance(e, fp.PeerSilent) for e in ctl.events())


def challenged_device() -> tuple[Connection, int]:
    """A device link opened at t=0 that sent a challenge at t=0.5 (its watchdog: 1 s)."""
    conn = device()
    conn.send(fp.Challenge(0xC0FFEE, 500), 0.5)
    conn.data_to_send()
    return conn, 0xC0FFEE


@pytest.mark.parametrize(
    "how", ["answered", "version 2", "a reserved flag bit", "no challenge", "another challenge"]
)
def test_only_a_version_1_keepalive_answering_a_challenge_feeds_the_watchdog(how: str) -> None:
    conn, challenge = challenged_device()
    answer = fp.KeepAlive(challenge)
    frame = Frame(1, answer.TYPE, answer.encode_payload())
    wire = {
        "answered": frame.encode(),
        "version 2": replace(frame, version=2).encode(),
        "a reserved flag bit": with_flags(frame, 4),
        "no challenge": Frame(1, fp.MessageType.KEEPALIVE).encode(),
        "another challenge": Frame(1, answer.TYPE, fp.KeepAlive(7).encode_payload()).encode(),
    }[how]
    conn.receive_data(wire, 0.9)
    conn.handle_timer(1.2)  # a watchdog after the HELLO, before one after the challenge
    lost = [e for e in conn.events() if isinstance(e, fp.ControllerGone)]
    assert (not lost) == (how == "answered")
