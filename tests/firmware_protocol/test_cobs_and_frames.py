"""COBS, CRC and frames: known values, round trips, and a decoder that survives anything."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import (
    Auth,
    Frame,
    FrameDecoder,
    LocalProtocolError,
    RemoteProtocolError,
    cobs,
)
from firmware_protocol.framing import MAX_ENCODED, MAX_PAYLOAD, crc16

COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS)
def test_cobs_known_encodings(raw: bytes, encoded: bytes) -> None:
    assert cobs.encode(raw) == encoded
    assert cobs.decode(encoded) == raw


@given(st.binary(max_size=700))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert cobs.decode(encoded) == data


@given(st.binary(max_size=300))
def test_cobs_decode_of_garbage_raises_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        cobs.decode(data)


def _decode_by_the_letter(data: bytes) -> bytes | None:
    """COBS decoding as the definition reads, one code byte at a time; None: not COBS."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        block = data[i + 1 : i + code]
        if code == 0 or i + code > len(data) or 0 in block:
            return None
        out += block
        i += code
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


@given(st.binary(max_size=300) | st.builds(cobs.encode, st.binary(max_size=600)))
def test_cobs_decode_takes_and_refuses_what_the_definition_does(data: bytes) -> None:
    # The decoder checks for a zero once per block instead of once per run.
    expected = _decode_by_the_letter(data)
    if expected is None:
        with pytest.raises(RemoteProtocolError):
            cobs.decode(data)
    else:
        assert cobs.decode(data) == expected


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


frames = st.builds(
    Frame,
    seq=st.integers(0, 0xFFFF),
    msg_type=st.integers(0, 0xFF),
    payload=st.binary(max_size=MAX_PAYLOAD),
    version=st.integers(0, 0xFF),
    auth=st.none() | st.builds(Auth, st.integers(0, 0xFFFFFFFF), st.binary(min_size=8, max_size=8)),
)


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    assert Frame.from_bytes(frame.to_bytes()) == frame
    assert FrameDecoder().feed(frame.encode()) == [frame]


@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_decoder_finds_frames_in_any_chunking(batch: list[Frame], data: st.DataObject) -> None:
    wire = b"".join(f.encode() for f in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    decoder = FrameDecoder()
    found: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        found += decoder.feed(wire[start:end])
    assert found == batch


def test_decoder_byte_by_byte() -> None:
    frame = Frame(seq=7, msg_type=0x02, payload=b"\x01\x02\x84\x03")
    decoder = FrameDecoder()
    found = [f for byte in frame.encode() for f in decoder.feed(bytes([byte]))]
    assert found == [frame]


@given(st.binary(max_size=600), frames)
def test_valid_frame_after_garbage_is_found(garbage: bytes, frame: Frame) -> None:
    decoder = FrameDecoder()
    # Whatever the garbage was, a delimiter ends it and the frame after it decodes.
    found = decoder.feed(garbage + b"\x00" + frame.encode())
    assert found[-1] == frame
    assert decoder.stats.frames == len(found)


@given(st.binary(max_size=2000))
def test_decoder_never_raises_on_random_bytes(data: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(data)
    for byte in data[:200]:
        decoder.feed(bytes([byte]))


@given(frames, st.integers(0, 300), st.integers(1, 255))
def test_any_single_byte_error_is_dropped_and_counted(
    frame: Frame, position: int, flip: int
) -> None:
    raw = bytearray(frame.to_bytes())
    raw[position % len(raw)] ^= flip
    decoder = FrameDecoder()
    # CRC-16 detects every error burst of up to 16 bits, so this frame can never pass.
    assert decoder.feed(cobs.encode(bytes(raw)) + b"\x00") == []
    assert decoder.stats.resyncs == 1
    assert decoder.feed(frame.encode()) == [frame]


def test_counters_name_each_kind_of_bad_block() -> None:
    good = Frame(seq=1, msg_type=0x0A)
    bad_crc = bytearray(good.to_bytes())
    bad_crc[-1] ^= 0xFF
    unknown_flag = Frame(seq=1, msg_type=0x0A).to_bytes()
    unknown_flag = bytes([unknown_flag[0], 0x80]) + unknown_flag[2:-2]
    unknown_flag += crc16(unknown_flag).to_bytes(2, "little")
    decoder = FrameDecoder()
    decoder.feed(cobs.encode(bytes(bad_crc)) + b"\x00")
    decoder.feed(cobs.encode(unknown_flag) + b"\x00")
    decoder.feed(b"\x05\x01\x00")  # COBS block with a zero inside
    decoder.feed(b"\x01" * (MAX_ENCODED + 10) + b"\x00")
    decoder.feed(good.encode())
    stats = decoder.stats
    assert (stats.crc_errors, stats.malformed, stats.oversized, stats.frames) == (1, 2, 1, 1)
    assert stats.resyncs == 4


def test_signed_frame_verifies_only_with_its_key() -> None:
    key = bytes(range(32))
    frame = Frame(seq=3, msg_type=0x02, payload=b"\x02\x01\x3c\x00").signed(key, counter=9)
    parsed = Frame.from_bytes(frame.to_bytes())
    assert parsed.auth == frame.auth
    assert parsed.verify(key)
    assert not parsed.verify(bytes(32))
    tampered = Frame(parsed.seq, parsed.msg_type, b"\x02\x03\x3c\x00", auth=parsed.auth)
    assert not tampered.verify(key)
    assert not Frame(seq=3, msg_type=0x02).verify(key)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seq": -1, "msg_type": 1},
        {"seq": 65536, "msg_type": 1},
        {"seq": 1, "msg_type": 256},
        {"seq": 1, "msg_type": 1, "payload": bytes(MAX_PAYLOAD + 1)},
    ],
)
def test_frame_rejects_out_of_range_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Frame(**kwargs)  # type: ignore[arg-type]
