"""SPEC 3's deframing, held against `FrameDecoder`.

`check_decoder` feeds a byte stream to a `FrameDecoder` in given pieces and
compares what it found with a one-block-at-a-time reading of the same stream:
the frames found, in order, are exactly those of the blocks that are frames on
their own, and every other block is one counted drop, however the stream is cut
into reads. That reading follows the steps of SPEC 3.3 and is written out here
from the spec (the CRC bit by bit, COBS from its definition, the limits as
numbers), not imported from `firmware_protocol.framing`: a mistake copied into
both would pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

from firmware_protocol import Auth, Frame, FrameDecoder, cobs


def pieces(length: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    """The (start, end) pieces of a stream of ``length`` bytes cut at ``cuts`` (any order)."""
    points = sorted({min(max(c, 0), length) for c in cuts} - {0, length})
    return list(pairwise([0, *points, length])) or [(0, 0)]


def reencodes_to(frame: Frame, block: bytes) -> bool:
    """Whether ``frame`` encodes back to ``block`` (one COBS block, delimiter removed).

    COBS has exactly one second spelling: a block whose last run is a full 0xFF
    group may leave off the 0x01 that the encoder writes after it. The decoder
    (like the spec's reference C) accepts both, so both count.
    """
    encoded = cobs.encode(frame.to_bytes())
    return encoded in (block, block + b"\x01")


# The limits of SPEC 3, written out here rather than imported from the framing
# module: the decoder is checked against the spec, not against a copy of itself.
MAX_BLOCK = 257  # SPEC 3.2 and 3.3 step 1: the longest encoded block a receiver buffers
MIN_FRAME, MAX_FRAME = 7, 255  # SPEC 3.3 step 3 (3.1: 5 bytes of header, 2 of CRC)
MAX_PAYLOAD = 236  # SPEC 3.1 and 3.3 step 6, with or without the auth trailer
AUTH_TRAILER = 12  # SPEC 3.1 and 3.3 step 5: a u32 counter and an 8-byte tag


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE as SPEC 3.1 defines it, bit by bit.

    Polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.

    >>> hex(crc16_ccitt_false(b"123456789"))
    '0x29b1'
    """
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def cobs_decode(block: bytes) -> bytes | None:
    """The bytes one COBS block (delimiter removed) stands for, or None if it is no COBS.

    From the definition: a code byte ``c`` (never 0) is followed by ``c - 1``
    data bytes (never 0) and then, unless ``c`` is 0xFF or the block ends there,
    by a zero in the decoded bytes.
    """
    out = bytearray()
    i = 0
    while i < len(block):
        code = block[i]
        data = block[i + 1 : i + code]
        if code == 0 or len(data) < code - 1 or 0 in data:
            return None
        out += data
        i += code
        if code != 0xFF and i < len(block):
            out.append(0)
    return bytes(out)


def _classify(block: bytes) -> Frame | str:
    """What one whole block is, read on its own: a frame or the counter its drop goes to.

    The steps of SPEC 3.3, in its order. Step 3 names no counter: a frame longer
    than any frame may be is counted oversized, like the too-long blocks and
    payloads of steps 1 and 6; one too short to be a frame is malformed.
    """
    if len(block) > MAX_BLOCK:
        return "oversized"  # step 1
    raw = cobs_decode(block)
    if raw is None:
        return "malformed"  # step 2
    if len(raw) > MAX_FRAME:
        return "oversized"  # step 3
    if len(raw) < MIN_FRAME:
        return "malformed"  # step 3
    body = raw[:-2]
    if crc16_ccitt_false(body) != int.from_bytes(raw[-2:], "little"):
        return "crc_errors"  # step 4
    version, flags, seq, msg_type = body[0], body[1], int.from_bytes(body[2:4], "little"), body[4]
    rest = body[5:]  # the bytes after the type byte, up to the CRC
    if flags & 0xFE:
        return "malformed"  # step 5: flag bits 1-7 are reserved (SPEC 3.1)
    auth = None
    if flags & 0x01:
        if len(rest) < AUTH_TRAILER:
            return "malformed"  # step 5: AUTH with no room for its trailer
        rest, trailer = rest[:-AUTH_TRAILER], rest[-AUTH_TRAILER:]
        auth = Auth(int.from_bytes(trailer[:4], "little"), trailer[4:])
    if len(rest) > MAX_PAYLOAD:
        return "oversized"  # step 6
    return Frame(seq, msg_type, rest, version, auth)


def check_decoder(stream: bytes, cuts: Iterable[int] = ()) -> list[Frame]:
    """Feed ``stream`` to a fresh `FrameDecoder` cut at ``cuts``; assert the deframing rules.

    The rules (SPEC 3.3): feeding never raises; the frames found, in order, are
    exactly those of the 0x00-delimited blocks that are frames on their own, each
    re-encoding to its block; every other nonempty block is exactly one counted
    drop (and one resync), whatever the chunking; a partial block that outgrows
    the receive buffer is one drop as soon as it does.

    Returns:
        The frames found.
    """
    decoder = FrameDecoder()
    found: list[Frame] = []
    for start, end in pieces(len(stream), cuts):
        found += decoder.feed(stream[start:end])

    *whole, tail = stream.split(b"\x00")
    blocks = [block for block in whole if block]
    expected: list[Frame] = []
    drops: Counter[str] = Counter()
    for block in blocks:
        outcome = _classify(block)
        if isinstance(outcome, Frame):
            assert reencodes_to(outcome, block), f"{outcome} does not re-encode to {block.hex()}"
            expected.append(outcome)
        else:
            drops[outcome] += 1
    if len(tail) > MAX_BLOCK:
        drops["oversized"] += 1  # the decoder gives up on it without waiting for its 0x00
    assert found == expected, f"found {found}, the blocks hold {expected}"

    stats = decoder.stats
    counted = {"crc_errors": stats.crc_errors, "malformed": stats.malformed,
               "oversized": stats.oversized}  # fmt: skip
    assert counted == {name: drops[name] for name in counted}, f"{counted} != {dict(drops)}"
    assert stats.frames == len(found), f"{stats.frames} frames counted, {len(found)} found"
    blocks_seen = len(blocks) + (len(tail) > MAX_BLOCK)
    assert stats.frames + sum(counted.values()) == blocks_seen, "a block is neither frame nor drop"
    assert stats.resyncs == sum(counted.values()), "one resync per dropped block"
    assert stats.bytes == len(stream), f"{stats.bytes} bytes counted of {len(stream)}"
    return found
