"""Every message: round trips, validation on construction, and hostile payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import firmware_protocol as fp
from firmware_protocol import LocalProtocolError, MessageType, RemoteProtocolError, decode_message
from firmware_protocol.messages import COMMANDS, EVENTS, REPLIES

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
text = st.text(max_size=32).filter(lambda t: len(t.encode()) <= 32)
name = text.filter(bool)
chambers = st.lists(
    st.builds(fp.ChamberInfo, st.sampled_from(fp.Leg), st.sampled_from(fp.Position)),
    min_size=1,
    max_size=16,
)


def flags(enum: type) -> st.SearchStrategy[int]:
    return st.lists(st.sampled_from(list(enum)), max_size=4).map(
        lambda members: enum(sum({m.value for m in members}))
    )


MESSAGES: dict[type, st.SearchStrategy[fp.Message]] = {
    fp.Hello: st.builds(fp.Hello, text, st.none() | u8),
    fp.Pair: st.builds(fp.Pair, st.binary(min_size=32, max_size=32), text),
    fp.Unpair: st.just(fp.Unpair()),
    fp.Paired: st.builds(fp.Paired, u16, u8, st.binary(min_size=32, max_size=32)),
    fp.Start: st.builds(fp.Start, u8, u8, u16),
    fp.Renew: st.builds(fp.Renew, u8, u8, u16),
    fp.SetMode: st.builds(fp.SetMode, u8),
    fp.SetIntensity: st.builds(fp.SetIntensity, u8),
    fp.SetCycle: st.builds(
        fp.SetCycle,
        st.sampled_from(fp.CycleOrder),
        st.integers(1, 0xFFFF),
        u16,
        u16,
        u16,
        st.lists(u16, min_size=1, max_size=16).map(tuple),
    ),
    fp.Pause: st.just(fp.Pause()),
    fp.Resume: st.just(fp.Resume()),
    fp.Stop: st.just(fp.Stop()),
    fp.Vent: st.just(fp.Vent()),
    fp.KeepAlive: st.builds(fp.KeepAlive, st.none() | st.integers(0, 0xFFFFFFFF)),
    fp.GetStatus: st.just(fp.GetStatus()),
    fp.ResetFault: st.just(fp.ResetFault()),
    fp.Ack: st.builds(fp.Ack, u16),
    fp.Nak: st.builds(fp.Nak, u16, st.sampled_from(fp.ErrorCode)),
    fp.Capabilities: st.builds(
        fp.Capabilities,
        ref_seq=u16,
        model=text,
        firmware=text,
        serial=text,
        features=flags(fp.Feature),
        ceiling_dmmhg=st.just(1300),
        max_target_dmmhg=st.integers(0, 1300),
        session_cap_s=u16,
        max_lease_s=u16,
        watchdog_ms=u16,
        status_interval_ms=u16,
        pause_limit_s=u16,
        chambers=chambers.map(tuple),
        modes=st.lists(
            st.builds(fp.ModeInfo, st.integers(1, 255), name), min_size=1, max_size=32
        ).map(tuple),
        levels=st.lists(
            st.builds(fp.LevelInfo, st.integers(1, 255), u16), min_size=1, max_size=16
        ).map(tuple),
    ),
    fp.Status: st.builds(
        fp.Status,
        uptime_ms=st.integers(0, 0xFFFFFFFF),
        state=st.sampled_from(fp.SessionState),
        mode=u8,
        intensity=u8,
        flags=flags(fp.StatusFlag),
        seconds_left=u16,
        session_elapsed_s=u16,
        battery_pct=st.integers(0, 100),
        faults=flags(fp.Fault),
        last_end=st.sampled_from(fp.EndReason),
        inlet_mask=u16,
        exhaust_mask=u16,
        pressures_dmmhg=st.lists(u16, max_size=16).map(tuple),
    ),
    fp.ButtonPressed: st.builds(fp.ButtonPressed, st.sampled_from(fp.Button)),
    fp.Challenge: st.builds(fp.Challenge, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)),
    fp.FaultRaised: st.builds(fp.FaultRaised, flags(fp.Fault)),
    fp.SessionEnded: st.builds(
        fp.SessionEnded,
        st.sampled_from([r for r in fp.EndReason if r != fp.EndReason.NONE]),
        u16,
    ),
    fp.SessionStarted: st.builds(fp.SessionStarted, st.sampled_from(fp.StartSource), u8, u8, u16),
}


def test_every_message_has_a_strategy() -> None:
    # A message added without a round-trip test fails here.
    assert set(MESSAGES) == set(COMMANDS.values()) | set(REPLIES.values()) | set(EVENTS.values())


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip(cls: type, data: st.DataObject) -> None:
    message = data.draw(MESSAGES[cls])
    assert decode_message(message.TYPE, message.encode_payload()) == message
    # Bytes appended by a later protocol revision are ignored. (A HELLO without its
    # key id is the exception: the key id is the field appended there.)
    if not (isinstance(message, fp.Hello) and message.key_id is None):
        assert decode_message(message.TYPE, message.encode_payload() + b"\x99\x00") == message


@given(st.integers(0, 255), st.binary(max_size=260))
def test_random_payloads_raise_only_remote_errors(msg_type: int, payload: bytes) -> None:
    try:
        message = decode_message(msg_type, payload)
    except RemoteProtocolError:
        return
    assert msg_type == message.TYPE


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_truncated_payloads_are_remote_errors(cls: type, data: st.DataObject) -> None:
    payload = data.draw(MESSAGES[cls]).encode_payload()
    if not payload:
        return
    cut = data.draw(st.integers(0, len(payload) - 1))
    try:
        shorter = decode_message(cls.TYPE, payload[:cut])
    except RemoteProtocolError:
        return
    # Only a prefix that is itself a complete message (a shorter list, say) may decode.
    assert isinstance(shorter, cls)


@pytest.mark.parametrize(
    ("build", "complaint"),
    [
        (lambda: fp.Start(1, 256, 10), "intensity=256"),
        (lambda: fp.Hello("x" * 33), "at most 32"),
        (lambda: fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 0, 1, 1, 1, (100,)), "inflate_ds"),
        (lambda: fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 1, 1, 1, 1, ()), "targets_dmmhg"),
        (lambda: fp.Nak(1, 256), "error=256"),
        (lambda: fp.SessionEnded(fp.EndReason.NONE, 1), "ends for a reason"),
        (lambda: fp.FaultRaised(1 << 16), "faults=65536"),  # type: ignore[arg-type]
        (lambda: fp.Status(0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ()), "not a valid SessionState"),  # type: ignore[arg-type]
        (lambda: fp.ModeInfo(0, "none"), "cannot be offered"),
    ],
)
def test_construction_validates(build: object, complaint: str) -> None:
    with pytest.raises(LocalProtocolError, match=complaint):
        build()  # type: ignore[operator]


def test_codes_and_bits_of_a_later_revision_still_decode() -> None:
    # SPEC.md §13: new codes and flag bits may appear without a new version.
    nak = decode_message(MessageType.NAK, b"\x01\x00\x63")
    assert nak == fp.Nak(1, 99)
    ended = decode_message(MessageType.EVENT, b"\x03\x0a\x05\x00")
    assert ended == fp.SessionEnded(10, 5)
    fault = decode_message(MessageType.EVENT, b"\x02\x00\x81")
    assert isinstance(fault, fp.FaultRaised)
    assert int(fault.faults) == 0x8100
    assert fp.Fault.OVERPRESSURE not in fault.faults
    status = fp.Status(0, fp.SessionState.IDLE, 1, 1, fp.StatusFlag(0x40), 0, 0, 100,
                       fp.Fault(0x100), 10, 0, 0, ())  # fmt: skip
    assert decode_message(MessageType.STATUS, status.encode_payload()) == status


def test_what_a_revision_cannot_change_is_still_refused() -> None:
    status = fp.Status(0, fp.SessionState.IDLE, 1, 1, fp.StatusFlag.NONE, 0, 0, 100,
                       fp.Fault.NONE, fp.EndReason.NONE, 0, 0, ())  # fmt: skip
    payload = bytearray(status.encode_payload())
    payload[4] = 9  # a session state no one defined
    with pytest.raises(RemoteProtocolError, match="SessionState"):
        decode_message(MessageType.STATUS, bytes(payload))
    with pytest.raises(RemoteProtocolError, match="CycleOrder"):
        decode_message(MessageType.SET_CYCLE, b"\x07" + bytes(8) + b"\x01\x00\x00")
    with pytest.raises(RemoteProtocolError, match="unknown event kind"):
        decode_message(MessageType.EVENT, b"\x63")
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        decode_message(MessageType.HELLO, b"\x02\xff\xfe")
