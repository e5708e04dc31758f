"""Consistent Overhead Byte Stuffing (COBS), the framing of the byte stream.

COBS rewrites a frame so that it contains no zero byte; a single ``0x00`` then
marks the end of every frame on the wire. A receiver that starts mid-stream, or
sees corrupted bytes, loses at most the frame it is in: the next ``0x00`` is
always a frame boundary. The overhead is one byte per 254 bytes of frame, plus one.

>>> encode(bytes([0x11, 0x00, 0x22])).hex()
'02110222'
>>> decode(bytes.fromhex('02110222')).hex()
'110022'
"""

from __future__ import annotations

from .errors import RemoteProtocolError


def encode(data: bytes) -> bytes:
    """Return the COBS encoding of ``data`` (without the trailing delimiter)."""
    out = bytearray()
    # Each run of non-zero bytes becomes blocks of at most 254; a block shorter than
    # that stands for its run plus the zero after it (or the end of the data).
    for run in data.split(b"\x00"):
        while len(run) >= 0xFE:
            out.append(0xFF)
            out += run[:0xFE]
            run = run[0xFE:]
        out.append(len(run) + 1)
        out += run
    return bytes(out)


def decode(data: bytes) -> bytes:
    """Return the bytes that ``data`` (one COBS block, no delimiter) encodes.

    Raises:
        RemoteProtocolError: ``data`` is not a valid COBS encoding.
    """
    if 0 in data:  # once for the whole block, not once per run
        raise RemoteProtocolError("COBS block contains a zero byte")
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            raise RemoteProtocolError("COBS block is truncated")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
