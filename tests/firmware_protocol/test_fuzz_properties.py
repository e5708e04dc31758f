"""The decoders under arbitrary input: properties beyond the round trips of the other tests.

`tools.invariants.check_decoder` holds a stream's decoding, in any chunking, to
SPEC 3.3: frames found are exactly the blocks that are frames, each re-encodes to
its block, and every other block is one counted drop. `check_message` holds
`decode_message` to raising only `RemoteProtocolError`, and to reading back its
own encoding. `tools.fuzz` runs the same rules coverage-guided.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import Frame, FrameDecoder, cobs
from tests.firmware_protocol.test_cobs_and_frames import frames
from tests.firmware_protocol.test_messages import MESSAGES
from tools.invariants import MAX_BLOCK, check_decoder, check_message, pieces, reencodes_to
from tools.invariants import crc16_ccitt_false as crc16


def with_crc(body: bytes) -> bytes:
    """``body`` with a good CRC, COBS-encoded and delimited: a block that passes step 4."""
    return cobs.encode(body + crc16(body).to_bytes(2, "little")) + b"\x00"


cuts = st.lists(st.integers(0, 3000), max_size=40)
# The corners of SPEC 3.3 steps 3, 5 and 6, which random bodies seldom hit: AUTH and
# reserved flag bits, and just enough or one too many bytes after the type byte for
# a trailer, a payload of 236, or a frame of 255.
corners = st.builds(
    lambda head, flags, after: with_crc(head[:1] + bytes([flags]) + head[1:] + after),
    st.binary(min_size=4, max_size=4),
    st.sampled_from([0x00, 0x01, 0x02, 0x80, 0x81]),
    st.sampled_from([0, 11, 12, 236, 237, 248, 249]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
)
blocks = st.one_of(
    st.binary(max_size=300),  # garbage, zeros and all
    st.binary(max_size=270).map(lambda raw: cobs.encode(raw) + b"\x00"),  # COBS, CRC by luck
    st.binary(min_size=5, max_size=253).map(with_crc),  # a good CRC over any header and payload
    corners,
    frames.map(Frame.encode),
    st.integers(MAX_BLOCK - 2, MAX_BLOCK + 40).map(lambda n: b"\x01" * n),
)


@given(st.binary(max_size=3000), cuts)
def test_any_bytes_in_any_chunking_keep_the_deframing_rules(stream: bytes, at: list[int]) -> None:
    check_decoder(stream, at)


@given(st.lists(blocks, max_size=12), cuts)
def test_streams_of_frames_near_misses_and_long_blocks_keep_the_rules(
    parts: list[bytes], at: list[int]
) -> None:
    stream = b"".join(parts)
    found = check_decoder(stream, at)
    # The chunking changes nothing, whatever the rules say: byte by byte, a decoder
    # finds the same frames and counts the same drops as one fed these pieces.
    chunked, bytewise = FrameDecoder(), FrameDecoder()
    assert [f for s, e in pieces(len(stream), at) for f in chunked.feed(stream[s:e])] == found
    assert [f for i in range(len(stream)) for f in bytewise.feed(stream[i : i + 1])] == found
    assert asdict(bytewise.stats) == asdict(chunked.stats)


@given(st.lists(corners, min_size=1, max_size=8), cuts)
def test_blocks_at_the_limits_of_flags_trailer_and_payload_keep_the_rules(
    parts: list[bytes], at: list[int]
) -> None:
    check_decoder(b"".join(parts), at)


@given(st.lists(st.tuples(st.binary(max_size=400), frames), min_size=1, max_size=6),
       st.binary(max_size=300), cuts)  # fmt: skip
def test_frames_between_garbage_are_all_found(
    batch: list[tuple[bytes, Frame]], tail: bytes, at: list[int]
) -> None:
    # Garbage of any length (zeros, runs past the buffer) before each frame, with a
    # delimiter between; garbage after the last.
    stream = b"".join(garbage + b"\x00" + frame.encode() for garbage, frame in batch) + tail
    found = iter(check_decoder(stream, at))
    # Every frame is found, in order (garbage could hold a frame too: only by luck).
    assert all(any(f == frame for f in found) for _, frame in batch)


def test_a_partial_block_too_long_for_the_buffer_is_one_drop_however_it_arrives() -> None:
    frame = Frame(seq=3, msg_type=0x0B)
    stream = b"\x07" * (3 * MAX_BLOCK) + b"\x00" + frame.encode()
    for at in ([], range(0, len(stream), 100), range(len(stream))):
        assert check_decoder(stream, at) == [frame]
    decoder = FrameDecoder()
    decoder.feed(stream)
    assert (decoder.stats.oversized, decoder.stats.resyncs) == (1, 1)


def test_a_full_last_cobs_group_may_leave_off_its_0x01() -> None:
    # The one other spelling COBS allows: a decoder must take it, and `reencodes_to`
    # must not call it a different block. Version 0 puts the only zero first.
    body = next(
        b for k in range(256)
        if (b := bytes([0, 1, 5, 5, 11]) + bytes((i + k) % 255 + 1 for i in range(248)))
        and cobs.encode(b + crc16(b).to_bytes(2, "little"))[-256] == 0xFF
    )  # fmt: skip
    raw = body + crc16(body).to_bytes(2, "little")
    encoded = cobs.encode(raw)
    assert encoded.endswith(b"\x01")
    frame = Frame.from_bytes(raw)
    assert check_decoder(encoded[:-1] + b"\x00") == [frame]
    assert reencodes_to(frame, encoded[:-1])
    assert not reencodes_to(frame, encoded[:-2])


@pytest.mark.parametrize(("length", "at", "expected"), [
    (10, [], [(0, 10)]),
    (10, [0, 10, 20, -1], [(0, 10)]),
    (10, [7, 3, 3], [(0, 3), (3, 7), (7, 10)]),
    (0, [5], [(0, 0)]),
])  # fmt: skip
def test_pieces_cover_the_stream_once(length: int, at: list[int], expected: list[tuple]) -> None:
    assert pieces(length, at) == expected


def mutate(payload: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (what, where, value) edits: overwrite, insert, delete, or truncate."""
    data = bytearray(payload)
    for what, where, value in edits:
        i = where % (len(data) + 1)
        if what == 0 and data:
            data[i % len(data)] = value
        elif what == 1:
            data.insert(i, value)
        elif what == 2 and data:
            del data[i % len(data)]
        else:
            del data[i:]
    return bytes(data)


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300), st.sampled_from(
    [0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF])), min_size=1, max_size=4)  # fmt: skip


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_payloads_near_valid_ones_decode_soundly_or_raise_only_remote_errors(
    cls: type, data: st.DataObject
) -> None:
    # Counts that lie, strings cut short, codes out of range, fields past the end:
    # the corners random bytes rarely reach.
    message = data.draw(MESSAGES[cls])
    payload = mutate(message.encode_payload(), data.draw(edits))
    check_message(message.TYPE, payload)
    check_message(data.draw(st.integers(0, 0xFF)), payload)


@given(st.integers(0, 0xFF), st.binary(max_size=300))
def test_what_decodes_reads_back_its_own_encoding(msg_type: int, payload: bytes) -> None:
    check_message(msg_type, payload)
