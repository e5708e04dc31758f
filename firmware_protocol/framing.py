"""Frames: the header, the optional authentication trailer, the CRC, and the deframer.

A frame, before COBS encoding (all integers little-endian)::

    offset  size  field
    0       1     version      protocol version, 1
    1       1     flags        bit 0 AUTH: the auth trailer is present; bits 1-7 zero
    2       2     seq          the sender's sequence number, +1 per frame, wraps at 65536
    4       1     type         `MessageType`
    5       n     payload      0..236 bytes, layout per message type
    5+n     4     counter      AUTH only: the sender's authentication counter
    9+n     8     tag          AUTH only: HMAC-SHA256(key, bytes 0..8+n)[:8]
    end-2   2     crc          CRC-16/CCITT-FALSE over every byte before it

On the wire each frame is COBS-encoded and followed by one ``0x00``. The
`FrameDecoder` finds frames in any byte stream: garbage, truncated frames and
bad CRCs are dropped and counted, and decoding resumes at the next ``0x00``.

>>> frame = Frame(seq=1, msg_type=0x0A)
>>> frame.to_bytes().hex()
'010001000a272d'
>>> frame.encode().hex()
'02010201040a272d00'
>>> decoder = FrameDecoder()
>>> decoder.feed(b'garbage' + bytes(1) + frame.encode()) == [frame]
True
>>> decoder.stats.malformed
1
"""

from __future__ import annotations

import binascii
import hmac
import struct
from dataclasses import dataclass, field

from . import cobs
from .enums import PROTOCOL_VERSION
from .errors import LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct("<BBHB")
AUTH_TRAILER = struct.Struct("<I8s")
CRC = struct.Struct("<H")

FLAG_AUTH = 0x01
KNOWN_FLAGS = FLAG_AUTH

MAX_FRAME = 255
"""Largest frame in bytes before COBS encoding, header and CRC included."""
MAX_PAYLOAD = MAX_FRAME - HEADER.size - AUTH_TRAILER.size - CRC.size
"""Largest payload; the same with or without the auth trailer, so signing never overflows."""
MAX_ENCODED = MAX_FRAME + 2
"""Largest COBS block a receiver must buffer (one code byte per 254, plus one)."""
TAG_SIZE = 8


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no xor-out.

    >>> hex(crc16(b'123456789'))
    '0x29b1'
    """
    return binascii.crc_hqx(data, 0xFFFF)


def compute_tag(key: bytes, signed: bytes) -> bytes:
    """The authentication tag of a frame: the first 8 bytes of HMAC-SHA256(key, signed)."""
    return hmac.digest(key, signed, "sha256")[:TAG_SIZE]  # the one-shot C path of hmac


@dataclass(frozen=True, slots=True)
class Auth:
    """The authentication trailer: a counter that never goes back, and a tag over the frame."""

    counter: int
    tag: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.counter <= 0xFFFFFFFF:
            raise LocalProtocolError(f"auth counter {self.counter} is not a u32")
        if len(self.tag) != TAG_SIZE:
            raise LocalProtocolError(f"auth tag must be {TAG_SIZE} bytes, not {len(self.tag)}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: header fields, payload bytes and, when signed, the auth trailer."""

    seq: int
    msg_type: int
    payload: bytes = b""
    version: int = PROTOCOL_VERSION
    auth: Auth | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 0xFFFF:
            raise LocalProtocolError(f"seq {self.seq} is not a u16")
        if not 0 <= self.msg_type <= 0xFF:
            raise LocalProtocolError(f"message type {self.msg_type} is not a u8")
        if not 0 <= self.version <= 0xFF:
            raise LocalProtocolError(f"version {self.version} is not a u8")
        if len(self.payload) > MAX_PAYLOAD:
            raise LocalProtocolError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")

    def _signed_part(self, counter: int) -> bytes:
        head = HEADER.pack(self.version, FLAG_AUTH, self.seq, self.msg_type)
        return head + self.payload + struct.pack("<I", counter)

    def signed(self, key: bytes, counter: int, nonce: bytes = b"") -> Frame:
        """Return this frame with an auth trailer for ``counter`` under ``key``.

        ``nonce`` is the link's nonce (SPEC §12.3): the tag covers it, so a frame
        signed for one link is worth nothing on another. HELLO has none.
        """
        tag = compute_tag(key, nonce + self._signed_part(counter))
        return Frame(self.seq, self.msg_type, self.payload, self.version, Auth(counter, tag))

    def verify(self, key: bytes, nonce: bytes = b"") -> bool:
        """Whether the auth trailer is present and its tag is right for ``key`` and ``nonce``."""
        if self.auth is None:
            return False
        expected = compute_tag(key, nonce + self._signed_part(self.auth.counter))
        return hmac.compare_digest(expected, self.auth.tag)

    def to_bytes(self) -> bytes:
        """The frame before COBS: header, payload, auth trailer if any, CRC."""
        flags = FLAG_AUTH if self.auth is not None else 0
        body = HEADER.pack(self.version, flags, self.seq, self.msg_type) + self.payload
        if self.auth is not None:
            body += AUTH_TRAILER.pack(self.auth.counter, self.auth.tag)
        return body + CRC.pack(crc16(body))

    def encode(self) -> bytes:
        """The frame as it goes on the wire: COBS-encoded, then one 0x00."""
        return cobs.encode(self.to_bytes()) + b"\x00"

    @classmethod
    def from_bytes(cls, raw: bytes) -> Frame:
        """Parse a frame (already COBS-decoded).

        Raises:
            CrcError: the CRC does not match.
            MalformedFrame: too short, too long, or unknown flags.
        """
        if len(raw) > MAX_FRAME:
            raise OversizedFrame(f"frame of {len(raw)} bytes exceeds {MAX_FRAME}")
        if len(raw) < HEADER.size + CRC.size:
            raise MalformedFrame(f"frame of {len(raw)} bytes is shorter than a header and CRC")
        body, (crc,) = raw[:-2], CRC.unpack_from(raw, len(raw) - 2)
        if crc16(body) != crc:
            raise CrcError("CRC mismatch")
        version, flags, seq, msg_type = HEADER.unpack_from(body)
        if flags & ~KNOWN_FLAGS:
            raise MalformedFrame(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:02x}")
        payload = body[HEADER.size :]
        auth = None
        if flags & FLAG_AUTH:
            if len(payload) < AUTH_TRAILER.size:
                raise MalformedFrame("AUTH flag set but the auth trailer is missing")
            counter, tag = AUTH_TRAILER.unpack_from(payload, len(payload) - AUTH_TRAILER.size)
            payload = payload[: -AUTH_TRAILER.size]
            auth = Auth(counter, tag)
        if len(payload) > MAX_PAYLOAD:
            raise OversizedFrame(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        return cls(seq, msg_type, payload, version, auth)


class MalformedFrame(RemoteProtocolError):
    """A block between delimiters is not a frame (bad COBS, too short, unknown flags)."""


class OversizedFrame(MalformedFrame):
    """More bytes arrived between two delimiters than any frame may have."""


class CrcError(RemoteProtocolError):
    """A frame whose CRC does not match its bytes."""


@dataclass
class DeframerStats:
    """Live counters of a `FrameDecoder`; copy them for a snapshot."""

    frames: int = 0
    bytes: int = 0
    crc_errors: int = 0
    malformed: int = 0
    oversized: int = 0
    resyncs: int = 0


@dataclass
class FrameDecoder:
    """Finds frames in a byte stream that may split, merge or corrupt them.

    Feed it whatever arrived, in any chunking; it returns the whole frames found.
    A bad block (garbage, bad COBS, bad CRC, too long) is dropped and counted, and
    each drop counts one resync: decoding starts over at the next delimiter.
    """

    stats: DeframerStats = field(default_factory=DeframerStats)
    _buffer: bytearray = field(default_factory=bytearray)
    _discarding: bool = False

    def feed(self, data: bytes) -> list[Frame]:
        """Take bytes from the stream and return the frames they complete."""
        self.stats.bytes += len(data)
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._keep(data[start:])
                return frames
            chunk = data[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if self._buffer:
                self._buffer += chunk
                block = bytes(self._buffer)
                self._buffer.clear()
            else:
                block = chunk
            if not block:
                continue  # an empty frame is a harmless separator
            frame = self._parse(block)
            if frame is not None:
                frames.append(frame)

    def _keep(self, partial: bytes) -> None:
        if self._discarding or not partial:
            return
        self._buffer += partial
        if len(self._buffer) > MAX_ENCODED:
            self._buffer.clear()
            self._discarding = True
            self.stats.oversized += 1
            self.stats.resyncs += 1

    def _parse(self, block: bytes) -> Frame | None:
        try:
            if len(block) > MAX_ENCODED:
                raise OversizedFrame(f"block of {len(block)} bytes")
            frame = Frame.from_bytes(cobs.decode(block))
        except CrcError:
            self.stats.crc_errors += 1
        except OversizedFrame:
            self.stats.oversized += 1
        except RemoteProtocolError:
            self.stats.malformed += 1
        else:
            self.stats.frames += 1
            return frame
        self.stats.resyncs += 1
        return None
