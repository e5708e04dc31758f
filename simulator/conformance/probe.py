"""The suite's end of the link: frames built by hand, written whole, and every frame recorded.

A `Probe` is a controller that keeps no rules of its own: it numbers, signs and
writes exactly the frames a check asks for (malformed, replayed, stale, several
in one write), and records every frame in both directions, with the moment it
went or came, so that a failed check can show what was said. It answers each
CHALLENGE at once with a KEEPALIVE (SPEC §7.3) while it is present and told to;
a check that wants the controller silent says so.

It uses `firmware_protocol` for frames and messages, and none of its
`Connection`: the suite must not share the rules it checks with the simulator
it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_protocol import (
    Ack,
    Capabilities,
    Challenge,
    Frame,
    FrameDecoder,
    Hello,
    KeepAlive,
    Message,
    MessageType,
    Mode,
    Nak,
    Paired,
    Renew,
    Start,
    cobs,
    decode_message,
)
from firmware_protocol.errors import RemoteProtocolError
from firmware_protocol.framing import crc16
from massager_ctl.transports import Transport, TransportClosed

HELLO_NAME = "conformance"
"""The name the suite says in HELLO and PAIR."""

CLOCK_TICK_S = 1e-5
"""A wait shorter than this is no wait: a loop whose clock counts whole microseconds
(looptime, in the tests) may fire a timer a tick early and never reach the deadline."""


FLOOD_PER_S = 1000
"""Frames a second from the device (at real speed) past which it floods the link: a STATUS
every status_interval_ms, a CHALLENGE every quarter watchdog and the answers are dozens."""


class LinkGone(Exception):
    """The transport closed under the suite: the device went away, or hung up."""


def raw_frame(
    msg_type: int,
    payload: bytes = b"",
    *,
    seq: int,
    version: int = 1,
    flags: int = 0,
    good_crc: bool = True,
) -> bytes:
    """The wire bytes of a frame built field by field, right or wrong as asked.

    >>> raw_frame(0x0B, seq=1) == Frame(1, 0x0B).encode()
    True
    >>> raw_frame(0x0B, seq=1, good_crc=False) == Frame(1, 0x0B).encode()
    False
    """
    body = struct.pack("<BBHB", version, flags, seq, msg_type) + payload
    crc = crc16(body) ^ (0 if good_crc else 0xFFFF)
    return cobs.encode(body + struct.pack("<H", crc)) + b"\x00"


def with_flags(frame: Frame, extra: int) -> bytes:
    """The wire bytes of ``frame`` with the flag bits ``extra`` set too, its CRC made right.

    A signed frame's tag does not cover the flags byte (SPEC §12.1), so only the
    flag keeps the block from being a good frame.

    >>> with_flags(Frame(1, 0x0A), 2) == raw_frame(0x0A, seq=1, flags=2)
    True
    """
    raw = bytearray(frame.to_bytes()[:-2])
    raw[1] |= extra
    return cobs.encode(bytes(raw) + struct.pack("<H", crc16(bytes(raw)))) + b"\x00"


def gentle(message: Message) -> None:
    """Refuse to build a START or RENEW above intensity 1, or of the CYCLE mode.

    The suite's one promise to the person at the device (``--inflate``): no
    session of its own ever runs above the lowest level. A check that asks for
    more is a bug of the suite, stopped here before a byte goes out.

    Raises:
        RuntimeError: ``message`` would start or renew a session above the lowest level.
    """
    if isinstance(message, Start | Renew) and (message.intensity > 1 or message.mode == Mode.CYCLE):
        raise RuntimeError(
            f"the suite never starts a session above intensity 1: refused {describe(message)}"
        )


def read_message(frame: Frame) -> Message | str:
    """The message a device's frame carries, or why it cannot be read.

    A CHALLENGE of four bytes (the table of SPEC §5.4) is read as well as one
    that carries the device's uptime after the challenge.
    """
    try:
        return decode_message(frame.msg_type, frame.payload)
    except RemoteProtocolError as error:
        payload = frame.payload
        if frame.msg_type == MessageType.EVENT and payload[:1] == b"\x05" and len(payload) >= 5:
            return Challenge(struct.unpack_from("<I", payload, 1)[0], 0)
        return f"unreadable ({error})"


def _name(value: object) -> str:
    if isinstance(value, enum.Enum):
        return value.name or str(int(value.value))
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple) and len(value) > 4 and all(isinstance(v, int) for v in value):
        return "(" + " ".join(map(str, value)) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def _mode(value: int) -> str:
    return Mode(value).name if value in Mode._value2member_map_ else str(value)


def describe(message: Message | str) -> str:
    """A message in a few words for a person: its name, then its fields.

    >>> describe(Nak(5, 19))
    'NAK ref_seq=5 error=19'
    """
    if isinstance(message, str):
        return message
    kind = getattr(message, "KIND", None)
    label = f"EVENT {kind.name}" if kind is not None else message.TYPE.name
    if isinstance(message, Capabilities):
        return (
            f"{label} ref_seq={message.ref_seq} model={message.model!r} "
            f"firmware={message.firmware!r} watchdog_ms={message.watchdog_ms} "
            f"status_interval_ms={message.status_interval_ms} "
            f"nonce={'yes' if message.link_nonce else 'none'}"
        )
    parts = []
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        parts.append(f"{f.name}={_mode(value) if f.name == 'mode' else _name(value)}")
    return " ".join([label, *parts])


def hexdump(data: bytes, limit: int = 40) -> str:
    """``data`` as spaced hex, cut after ``limit`` bytes."""
    text = data[:limit].hex(" ")
    return text + f" ... ({len(data)} bytes)" if len(data) > limit else text


@dataclass
class Record:
    """One frame (or block of raw bytes) that went to the device or came from it."""

    index: int
    at: float
    """Loop time when it was written or read."""
    sent: bool
    wire: bytes
    frame: Frame | None = None
    message: Message | str | None = None
    note: str = ""
    signed: bool | None = None
    """Received: whether it is signed for the present link (None: not signed at all)."""
    background: bool = False
    """A KEEPALIVE the probe sent on its own, or a CHALLENGE: shown only when asked."""

    def line(self, origin: float, speed: float) -> str:
        """One line of a transcript."""
        arrow = "->" if self.sent else "<-"
        when = f"{(self.at - origin) * speed:7.3f}s"
        if self.frame is not None:
            frame = self.frame
            auth = f" signed#{frame.auth.counter}" if frame.auth else ""
            if not self.sent and self.signed is False:
                auth += " (tag NOT valid for the link)"
            what = f"seq={frame.seq}{auth} {describe(self.message or '')}"
        else:
            what = self.note or "raw bytes"
        note = f"  [{self.note}]" if self.note and self.frame is not None else ""
        return f"{when} {arrow} {what}{note}\n             {hexdump(self.wire)}"


@dataclass
class Keys:
    """The suite's key with the device, once paired, and the counters it has used."""

    key_id: int
    key: bytes = field(repr=False)
    counter: int = 0
    """The last counter used; the next frame takes one more (SPEC §12.1)."""

    def next_counter(self) -> int:
        """A counter never used before with this key."""
        self.counter += 1
        return self.counter


class Probe:
    """A hand-driven controller on one transport: see the module docstring."""

    def __init__(
        self, transport: Transport, *, speed: float = 1.0, keys: Keys | None = None
    ) -> None:
        self.transport = transport
        self.speed = speed
        self.keys = keys
        self.records: list[Record] = []
        self.decoder = FrameDecoder()
        self.seq = 0
        """The seq of the last frame sent (a KEEPALIVE repeats it, SPEC §4)."""
        self.caps: Capabilities | None = None
        self.present = False
        """Whether the device has a present controller in us (after our HELLO)."""
        self.answering = True
        """Whether the probe answers challenges (and keeps the link) while present."""
        self.link_nonce: bytes | None = None
        self.hello_counter: int | None = None
        self.hello_wire = b""
        """The bytes of the signed HELLO that opened the present link."""
        self.challenge: int | None = None
        self.answered: list[tuple[float, Record]] = []
        """(when, the CHALLENGE record) for every challenge the probe answered."""
        self.closed: str | None = None
        self.flooded = False
        """Whether the device sent more than `FLOOD_PER_S` frames in a second: the probe
        stopped reading (each frame is kept, and a flood would fill the memory)."""
        self._window = (0.0, 0)
        self._pending_hello: tuple[int, int] | None = None
        self._contexts: list[bytes] = []
        self._waiters: set[asyncio.Event] = set()
        self._challenged = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._holding = False
        self._held = False
        self.origin = asyncio.get_running_loop().time()

    # --- life -----------------------------------------------------------------------

    def start(self) -> None:
        """Start reading the link and answering challenges."""
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="conformance-reader"),
            asyncio.create_task(self._keepalive_loop(), name="conformance-keepalive"),
        ]

    async def stop(self) -> None:
        """Stop reading and answering (the transport stays open)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def now(self) -> float:
        """The loop's time."""
        return asyncio.get_running_loop().time()

    def real(self, device_s: float) -> float:
        """Seconds of real time that ``device_s`` seconds of the device's time take."""
        return device_s / self.speed

    async def sleep(self, device_s: float) -> None:
        """Wait ``device_s`` seconds of the device's time."""
        await asyncio.sleep(self.real(device_s))

    # --- sending ----------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        """Whether the present link was opened with a signed HELLO the device took."""
        return self.link_nonce is not None and self.keys is not None

    def next_seq(self) -> int:
        """The seq of the next frame: one more than the last, round 16 bits."""
        self.seq = (self.seq + 1) % 0x10000
        return self.seq

    def build(
        self,
        message: Message,
        *,
        seq: int | None = None,
        sign: bool | None = None,
        counter: int | None = None,
        nonce: bytes | None = None,
        key: bytes | None = None,
        version: int = 1,
    ) -> Frame:
        """Number ``message`` (a KEEPALIVE repeats the last seq) and sign it as asked.

        ``sign`` defaults to: everything on an authenticated link. ``counter``,
        ``nonce`` and ``key`` override what a signature is made with (to replay,
        or to sign for another link); ``version`` is the frame's (the tag covers it).
        """
        gentle(message)
        if seq is None:
            seq = self.seq if isinstance(message, KeepAlive) else self.next_seq()
        frame = Frame(seq, message.TYPE, message.encode_payload(), version)
        if sign is None:
            sign = self.authenticated
        if sign:
            if self.keys is None:
                raise RuntimeError("no key to sign with")
            if counter is None:
                counter = self.keys.next_counter()
            if nonce is None:
                nonce = b"" if isinstance(message, Hello) else (self.link_nonce or b"")
            frame = frame.signed(key or self.keys.key, counter, nonce)
        return frame

    def write(
        self, *parts: Frame | bytes | tuple[bytes, str], note: str = "", background: bool = False
    ) -> None:
        """Write every part in one write to the transport, recording each.

        A `Frame` is recorded as a frame; raw bytes as one record described by
        ``note``, or by the text paired with them.
        """
        at = self.now
        data = bytearray()
        for part in parts:
            if isinstance(part, Frame):
                wire = part.encode()
                self._record(at, True, wire, part, read_message(part), background=background)
            else:
                wire, what = part if isinstance(part, tuple) else (part, note or "raw bytes")
                self._record(at, True, wire, note=what)
            data += wire
        self._write(bytes(data))

    def build_raw(self, msg_type: int, payload: bytes = b"", *, seq: int | None = None) -> Frame:
        """A frame of any type with any payload, numbered and signed as `build` does."""
        if seq is None:
            seq = self.next_seq()
        frame = Frame(seq, msg_type, payload)
        if self.authenticated and self.keys is not None:
            frame = frame.signed(self.keys.key, self.keys.next_counter(), self.link_nonce or b"")
        return frame

    def _write(self, data: bytes) -> None:
        if self.closed is not None:
            raise LinkGone(self.closed)
        try:
            self.transport.write(data)
        except TransportClosed as error:
            self.closed = str(error)
            raise LinkGone(self.closed) from None

    async def write_cut(self, frames: list[Frame], cuts: list[int]) -> None:
        """Write ``frames`` cut at the byte offsets ``cuts``: one write per piece.

        Each piece is its own write, a moment after the one before, so that the
        device reads them apart (SPEC §2: nothing depends on chunking). The probe's
        own KEEPALIVEs wait until the last piece is out (one between the pieces
        would break the frame), and the pieces go fast enough that the wait stays
        well inside a quarter of the watchdog.
        """
        data = b"".join(frame.encode() for frame in frames)
        bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
        quarter = self.real(self.caps.watchdog_ms / 4000) if self.caps else 0.25
        gap_s = min(0.005, quarter / 4 / len(bounds))
        at = self.now
        note = f"written in {len(bounds) - 1} pieces"
        for frame in frames:
            self._record(at, True, frame.encode(), frame, read_message(frame), note=note)
        self._holding = True
        try:
            for begin, end in itertools.pairwise(bounds):
                self._write(data[begin:end])
                await asyncio.sleep(gap_s)
        finally:
            self._holding = False
            if self._held:
                self._held = False
                self.keepalive()

    # --- receiving --------------------------------------------------------------------

    def _record(
        self,
        at: float,
        sent: bool,
        wire: bytes,
        frame: Frame | None = None,
        message: Message | str | None = None,
        *,
        note: str = "",
        signed: bool | None = None,
        background: bool = False,
    ) -> Record:
        record = Record(len(self.records), at, sent, wire, frame, message, note, signed, background)
        self.records.append(record)
        return record

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.transport.read()
                at = self.now
                frames = self.decoder.feed(data)
                if self._flooding(at, len(frames)):
                    return
                for frame in frames:
                    self._received(frame, at)
                self._wake()
        except TransportClosed as error:
            self.closed = str(error) or "the link closed"
            self.present = False
            self._wake()

    def _flooding(self, at: float, count: int) -> bool:
        """Count ``count`` frames read at ``at``; past `FLOOD_PER_S` in a second, stop."""
        since, seen = self._window
        if at - since >= 1.0:
            since, seen = at, 0
        seen += count
        self._window = (since, seen)
        limit = FLOOD_PER_S * max(1.0, self.speed)
        if seen <= limit:
            return False
        self.flooded = True
        self.closed = (
            f"the device floods the link: more than {limit:g} frames in a second (a STATUS "
            "every status_interval_ms, the challenges and the answers are a few dozen)"
        )
        self.present = False
        self._wake()
        return True

    def _received(self, frame: Frame, at: float) -> None:
        message = read_message(frame)
        signed = self._verify(frame, message)
        background = isinstance(message, Challenge)
        self._record(
            at, False, frame.encode(), frame, message, signed=signed, background=background
        )
        if isinstance(message, Challenge) and self.present:
            self.challenge = message.challenge
            if self.answering:
                self._challenged.set()

    def _verify(self, frame: Frame, message: Message | str) -> bool | None:
        """Whether a device frame is signed for our newest link (SPEC §12.3)."""
        if frame.auth is None:
            return None
        if self.keys is None:
            return False
        pending = self._pending_hello
        if (
            isinstance(message, Capabilities)
            and pending is not None
            and message.ref_seq == pending[0]
            and message.link_nonce is not None
        ):
            context = pending[1].to_bytes(4, "little") + message.link_nonce
            if frame.verify(self.keys.key, context):
                self._contexts.append(context)
                return True
            return False
        return any(frame.verify(self.keys.key, c) for c in reversed(self._contexts[-1:]))

    def _wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def wait_for(
        self, wanted: Callable[[Record], bool], *, after: int, within_s: float
    ) -> Record | None:
        """The first frame from the device after record ``after`` that is ``wanted``.

        Waits up to ``within_s`` real seconds; None if none came. Raises `LinkGone`
        if the link closes meanwhile.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        index = after
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            while True:
                while index < len(self.records):
                    record = self.records[index]
                    index += 1
                    if not record.sent and record.frame is not None and wanted(record):
                        return record
                if self.closed is not None:
                    raise LinkGone(self.closed)
                remaining = deadline - loop.time()
                if remaining <= CLOCK_TICK_S:
                    return None
                waiter.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.wait()
        finally:
            self._waiters.discard(waiter)

    def received(self, after: int = 0) -> list[Record]:
        """The frames from the device since record ``after``."""
        return [r for r in self.records[after:] if not r.sent and r.frame is not None]

    # --- answering challenges -----------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        # A KEEPALIVE at once for each CHALLENGE, and one every quarter watchdog at
        # least whatever happens (SPEC §7.3: the controller's MUST).
        while True:
            quarter = self.caps.watchdog_ms / 4000 if self.caps and self.caps.watchdog_ms else 0.25
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.real(quarter)):
                    await self._challenged.wait()
            self._challenged.clear()
            if self.present and self.answering and self.closed is None:
                self.keepalive()

    def keepalive(self, challenge: int | None = -1, *, background: bool = True) -> Frame | None:
        """Send a KEEPALIVE naming ``challenge`` (default: the newest received).

        While a frame is being written in pieces it waits, and goes after it.
        """
        if self._holding and background:
            self._held = True
            return None
        named = self.challenge if challenge == -1 else challenge
        frame = self.build(KeepAlive(named))
        if named is not None and named == self.challenge:
            last = next(
                (r for r in reversed(self.records) if isinstance(r.message, Challenge)), None
            )
            if last is not None:
                self.answered.append((self.now, last))
        with contextlib.suppress(LinkGone):
            self.write(frame, background=background)
        return frame

    # --- requests ------------------------------------------------------------------------

    def reply_to(self, seq: int) -> Callable[[Record], bool]:
        """A test for the reply (ACK, NAK, CAPABILITIES, PAIRED) that quotes ``seq``."""

        def wanted(record: Record) -> bool:
            message = record.message
            return isinstance(message, Ack | Nak | Capabilities | Paired) and message.ref_seq == seq

        return wanted

    async def reply(self, frame: Frame, *, after: int, within_s: float) -> Record | None:
        """The device's reply to ``frame`` after record ``after``, if one comes in time."""
        return await self.wait_for(self.reply_to(frame.seq), after=after, within_s=within_s)

    def opening(self, hello: Frame, counter: int | None) -> None:
        """Note a HELLO about to go: its CAPABILITIES opens a link signed under ``counter``."""
        self.present = False
        self.challenge = None
        self.link_nonce = None
        self._pending_hello = None if counter is None else (hello.seq, counter)

    def opened(self, hello: Frame, caps: Capabilities) -> None:
        """The device answered ``hello``: the link is present, authenticated if signed."""
        self.caps = caps
        self.present = True
        if hello.auth is not None and caps.link_nonce is not None:
            self.link_nonce = caps.link_nonce
            self.hello_counter = hello.auth.counter
            self.hello_wire = hello.encode()
        else:
            self.link_nonce = None
            self.hello_counter = None
        self._pending_hello = None

    def forgotten(self) -> None:
        """The device has forgotten us (its watchdog): not present until the next HELLO."""
        self.present = False
        self.link_nonce = None
        self.challenge = None
