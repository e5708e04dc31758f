"""The link between a controller and a device: one `Connection` class for both ends.

Theory of operation
-------------------
A `Connection` turns bytes into events and messages into bytes. It does no I/O
and never reads a clock: the caller passes ``now`` (seconds, any monotonic
origin) and asks `get_timer` when the connection next needs `handle_timer`.

    bytes in  -> receive_data(data, now) -> next_event() / events()
    send(message, now)                   -> data_to_send() -> bytes out
    get_timer() -> when to call          -> handle_timer(now)

Both ends run the same class with a different `Role`, so the controller and the
simulated firmware are held to the same rules: which messages each side may
send, how sequence numbers move, when the link counts as lost.

The controller says HELLO and waits for CAPABILITIES; the link is then READY.
Every command but KEEPALIVE is a request: it stays pending until an ACK, NAK or
CAPABILITIES quotes its sequence number, and is re-sent unchanged (same seq) on
a timeout, up to ``attempts`` times, then fails. While READY the controller sends
KEEPALIVE whenever it has sent nothing else for ``keepalive_s``, and reports the
device silent when nothing has arrived for ``silence_s``. Sending STOP or VENT
fails every other pending request at once (`FailReason.PREEMPTED`): nothing
queued before a stop may run after it.

The device answers what the protocol alone can decide: NAK for an unknown type,
a malformed payload, a wrong version, a command before HELLO, or a sequence
number that is not newer than the last one accepted; such a NAK is not
remembered. A re-sent command whose seq it already answered gets the same
answer again and does not run twice.
Within one `receive_data` call STOP and VENT are handled before anything else,
and they are accepted from anyone, in any state, whatever their seq; a command of
the session table read with one of them is refused PREEMPTED, whoever signed it,
so that nothing that arrived with a stop runs after it. Every
valid frame is proof of life; when none arrives for ``watchdog_s`` the device
forgets the controller (it must say HELLO again) and reports `LinkLost`.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from enum import Enum

from .auth import AUTHENTICATED, Pairing, PairingTable, Signer
from .enums import PROTOCOL_VERSION, ErrorCode, MessageType, Role
from .errors import LocalProtocolError, RemoteProtocolError
from .framing import DeframerStats, Frame, FrameDecoder
from .messages import (
    COMMANDS,
    PREEMPTIBLE,
    REPLIES,
    URGENT,
    Ack,
    Capabilities,
    DeviceEvent,
    Hello,
    KeepAlive,
    Message,
    Nak,
    Paired,
    Status,
    UnknownMessageType,
    decode_message,
)

SEQ_MODULO = 0x10000
REPLY_CACHE_SIZE = 8
RECENT_FRAMES = 32
_DEVICE_TYPES = frozenset(REPLIES) | {MessageType.EVENT}


def seq_newer(seq: int, than: int) -> bool:
    """Whether ``seq`` comes after ``than`` in 16-bit serial-number arithmetic (RFC 1982).

    >>> seq_newer(1, 0), seq_newer(0, 65535), seq_newer(5, 5), seq_newer(4, 5)
    (True, True, False, False)
    """
    return 0 < (seq - than) % SEQ_MODULO < SEQ_MODULO // 2


class LinkState(Enum):
    """Where a connection is in its life.

    The controller goes NEW -> HELLO_SENT -> READY -> CLOSED; the device goes
    WAITING -> READY, and back to WAITING when it loses the controller.
    """

    NEW = "new"
    HELLO_SENT = "hello sent"
    READY = "ready"
    WAITING = "waiting for hello"
    CLOSED = "closed"


class FailReason(Enum):
    """Why a request will get no reply."""

    TIMEOUT = "no reply after every attempt"
    PREEMPTED = "a stop or vent was sent after it"
    LINK_DOWN = "the link went down"


@dataclass(frozen=True, slots=True)
class Timing:
    """Timing rules of the link, in seconds.

    The device announces its watchdog and status interval in CAPABILITIES; a
    controller adopts them when the link becomes READY: its keepalive goes to a
    quarter of the watchdog (or stays shorter if set so here), and, unless
    ``silence_s`` is set here, its silence limit becomes three status intervals.
    Before READY only the request timeouts watch the device.
    """

    watchdog_s: float = 1.0
    keepalive_s: float = 0.25
    request_timeout_s: float = 0.4
    attempts: int = 3
    silence_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("watchdog_s", "keepalive_s", "request_timeout_s", "silence_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise LocalProtocolError(f"{name} must be positive")
        if self.attempts < 1:
            raise LocalProtocolError("attempts must be at least 1")


# --- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A message from the peer that is not the reply to one of our requests."""

    message: Message
    seq: int


@dataclass(frozen=True, slots=True)
class Replied:
    """The reply (ACK, NAK, CAPABILITIES or PAIRED) to the request we sent with ``seq``."""

    request: Message
    seq: int
    reply: Ack | Nak | Capabilities | Paired


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The request we sent with ``seq`` will get no reply."""

    request: Message
    seq: int
    reason: FailReason


@dataclass(frozen=True, slots=True)
class PeerSilent:
    """Controller: nothing has arrived from the device for ``silent_s`` seconds."""

    silent_s: float


@dataclass(frozen=True, slots=True)
class LinkLost:
    """Device: the controller is gone (watchdog or link down); it must say HELLO again."""

    reason: str


Event = Received | Replied | RequestFailed | PeerSilent | LinkLost


@dataclass
class LinkStats(DeframerStats):
    """Live counters of one connection; copy them for a snapshot.

    Inherits the deframer's counts of frames and bytes received, CRC errors,
    malformed and oversized blocks, and resyncs.
    """

    frames_sent: int = 0
    bytes_sent: int = 0
    rejected: int = 0
    version_errors: int = 0
    retransmits: int = 0
    timeouts: int = 0
    duplicates: int = 0
    stale: int = 0
    unmatched_replies: int = 0
    not_authenticated: int = 0
    replayed: int = 0
    preempted: int = 0
    lost: int = 0
    silences: int = 0
    watchdog_trips: int = 0


@dataclass(slots=True)
class _Pending:
    message: Message
    wire: bytes
    attempts: int
    deadline: float


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame in the ring buffer of recent traffic, for diagnostics."""

    at: float
    direction: str
    frame: Frame

    def __str__(self) -> str:
        try:
            name = MessageType(self.frame.msg_type).name
        except ValueError:
            name = f"0x{self.frame.msg_type:02x}"
        frame = self.frame
        return f"{self.at:12.3f} {self.direction} seq={frame.seq:<5} {name} {frame.payload.hex()}"


@dataclass
class Connection:
    """One end of a link. See the module docstring for the theory of operation."""

    role: Role
    timing: Timing = field(default_factory=Timing)
    stats: LinkStats = field(default_factory=LinkStats)
    state: LinkState = LinkState.NEW
    capabilities: Capabilities | None = None
    recent: deque[FrameRecord] = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))
    pairings: PairingTable | None = None
    """Device: the paired controllers; None for a device without pairing (no checks)."""
    signer: Signer | None = None
    """Controller: signs HELLO and the commands in `AUTHENTICATED`; None for an unpaired one."""
    link_key_id: int | None = None
    """The key the link was opened with (both roles); None while it is not authenticated."""
    link_nonce: bytes | None = None
    """The device's nonce for this authenticated link; every tag after HELLO covers it."""

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder(self.stats)
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._tx_seq = 0
        self._rx_seq: int | None = None
        self._last_rx: float | None = None
        # controller
        self._pending: dict[int, _Pending] = {}
        self._next_keepalive: float | None = None
        self._silent = False
        # device
        self._accepted_seq: int | None = None
        self._replies: OrderedDict[int, bytes] = OrderedDict()
        self._unanswered: dict[int, Frame] = {}
        """Accepted commands whose reply has not gone out yet (the firmware is on them)."""
        self._hello_counter: int | None = None
        self._alive_counter = 0
        self._uncached: set[int] = set()
        if self.role == Role.DEVICE:
            self.state = LinkState.WAITING

    # --- the public surface -------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Take bytes from the link; the events they produce wait in `next_event`."""
        frames = self._decoder.feed(data)
        if not frames:
            return
        halted = False
        if self.role == Role.DEVICE and len(frames) > 1:
            # Stop and vent jump the queue: a stable sort keeps the rest in order.
            frames.sort(key=lambda f: f.msg_type not in URGENT)
            halted = any(f.msg_type in URGENT and f.version == PROTOCOL_VERSION for f in frames)
        for frame in frames:
            self.recent.append(FrameRecord(now, "rx", frame))
            if self.role == Role.DEVICE:
                self._device_receive(frame, now, halted=halted)
            else:
                self._controller_receive(frame, now)

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Take every waiting event, oldest first."""
        taken = list(self._events)
        self._events.clear()
        return taken

    def send(self, message: Message, now: float) -> int:
        """Queue ``message`` for the wire and return the sequence number it goes with.

        Raises:
            LocalProtocolError: this role may not send it, or not now.
        """
        if self.role == Role.CONTROLLER:
            return self._controller_send(message, now)
        return self._device_send(message, now)

    def data_to_send(self) -> bytes:
        """Every byte queued for the wire since the last call."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called, or None if nothing is timed."""
        times: list[float] = []
        if self.role == Role.DEVICE:
            if self.state == LinkState.READY and self._last_rx is not None:
                times.append(self._last_rx + self.timing.watchdog_s)
        else:
            times.extend(p.deadline for p in self._pending.values())
            if self._next_keepalive is not None and self.state == LinkState.READY:
                times.append(self._next_keepalive)
            silent_at = self._silent_at()
            if silent_at is not None:
                times.append(silent_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Do what is due at ``now``: re-send, give up, keep alive, or notice silence."""
        if self.role == Role.DEVICE:
            if (
                self.state == LinkState.READY
                and self._last_rx is not None
                and now >= self._last_rx + self.timing.watchdog_s
            ):
                self.stats.watchdog_trips += 1
                self._forget_controller(
                    f"no frame from the controller for {self.timing.watchdog_s:g} s"
                )
            return
        for seq, pending in list(self._pending.items()):
            if now < pending.deadline:
                continue
            if pending.attempts >= self.timing.attempts:
                del self._pending[seq]
                self.stats.timeouts += 1
                self._events.append(RequestFailed(pending.message, seq, FailReason.TIMEOUT))
            else:
                pending.attempts += 1
                pending.deadline = now + self.timing.request_timeout_s
                self.stats.retransmits += 1
                self._write(pending.wire)
        if (
            self.state == LinkState.READY
            and self._next_keepalive is not None
            and now >= self._next_keepalive
        ):
            self.send(KeepAlive(), now)
        silent_at = self._silent_at()
        if silent_at is not None and now >= silent_at:
            assert self._last_rx is not None
            self._silent = True
            self.stats.silences += 1
            self._events.append(PeerSilent(now - self._last_rx))

    def link_down(self, now: float, reason: str = "the link went down") -> None:
        """The transport says the link is gone (port closed, BLE disconnected)."""
        if self.role == Role.DEVICE:
            if self.state == LinkState.READY:
                self._forget_controller(reason)
            return
        self.state = LinkState.CLOSED
        self._next_keepalive = None
        for seq, pending in self._pending.items():
            self._events.append(RequestFailed(pending.message, seq, FailReason.LINK_DOWN))
        self._pending.clear()

    @property
    def pending(self) -> dict[int, Message]:
        """Requests still waiting for a reply, by sequence number."""
        return {seq: p.message for seq, p in self._pending.items()}

    def recent_frames(self) -> str:
        """The last frames in both directions, one per line, for a failure report."""
        return "\n".join(str(record) for record in self.recent)

    # --- shared helpers -----------------------------------------------------------

    def _write(self, wire: bytes) -> None:
        self._out += wire
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(wire)

    def _emit(self, message: Message, now: float) -> tuple[int, bytes]:
        if not isinstance(message, KeepAlive):
            # A KEEPALIVE repeats the last seq (SPEC section 4): it is no request, and
            # a long quiet step must not walk the numbers round their 16 bits.
            self._tx_seq = (self._tx_seq + 1) % SEQ_MODULO
        frame = Frame(self._tx_seq, message.TYPE, message.encode_payload())
        signer = self.signer
        if signer is not None and (
            message.TYPE in AUTHENTICATED
            or isinstance(message, Hello)
            or (self.role == Role.CONTROLLER and self.link_key_id is not None)
        ):
            # On an authenticated link everything is signed, keepalives too: only
            # signed frames keep the device's watchdog fed (SPEC §12.3).
            nonce = b"" if isinstance(message, Hello) else self.link_nonce or b""
            frame = frame.signed(signer.key, signer.next_counter(), nonce)
        self.recent.append(FrameRecord(now, "tx", frame))
        wire = frame.encode()
        if isinstance(message, Hello):
            # A 0x00 first ends whatever noise the device's buffer holds from before
            # (a port just opened, a cable just plugged in), so the HELLO is not
            # glued to it and lost (SPEC §3.2).
            wire = b"\x00" + wire
        self._write(wire)
        return self._tx_seq, wire

    def _track_peer_seq(self, seq: int) -> None:
        if self._rx_seq is not None:
            gap = (seq - self._rx_seq - 1) % SEQ_MODULO
            if gap < SEQ_MODULO // 2:
                self.stats.lost += gap
        self._rx_seq = seq

    def _decode(self, frame: Frame) -> Message | ErrorCode:
        try:
            return decode_message(frame.msg_type, frame.payload)
        except UnknownMessageType:
            self.stats.rejected += 1
            return ErrorCode.UNKNOWN_MESSAGE
        except RemoteProtocolError:
            self.stats.rejected += 1
            return ErrorCode.BAD_PAYLOAD

    # --- controller ---------------------------------------------------------------

    def _controller_send(self, message: Message, now: float) -> int:
        if message.TYPE not in COMMANDS:
            raise LocalProtocolError(f"a controller does not send {message.TYPE.name}")
        if self.state == LinkState.CLOSED:
            raise LocalProtocolError("the link is closed")
        urgent = message.TYPE in URGENT
        if self.state != LinkState.READY and not (urgent or isinstance(message, Hello)):
            raise LocalProtocolError(f"{message.TYPE.name} before the device answered HELLO")
        if isinstance(message, Hello):
            self.state = LinkState.HELLO_SENT
            self.link_key_id = self.link_nonce = None
            if self.signer is not None:
                message = replace(message, key_id=self.signer.key_id)
        if urgent:
            for seq, pending in self._pending.items():
                self._events.append(RequestFailed(pending.message, seq, FailReason.PREEMPTED))
            self._pending.clear()
        seq, wire = self._emit(message, now)
        if not isinstance(message, KeepAlive):
            self._pending[seq] = _Pending(message, wire, 1, now + self.timing.request_timeout_s)
        if self.state == LinkState.READY:
            # Any frame proves we are alive; the keepalive only fills silence.
            self._next_keepalive = now + self.timing.keepalive_s
        return seq

    def _controller_receive(self, frame: Frame, now: float) -> None:
        if frame.version != PROTOCOL_VERSION:
            self.stats.version_errors += 1
            return
        # Any frame that passed its CRC proves the device alive, even one we cannot read.
        self._last_rx = now
        self._silent = False
        if frame.msg_type in COMMANDS:
            self.stats.rejected += 1
            return
        decoded = self._decode(frame)
        if isinstance(decoded, ErrorCode):
            return
        self._track_peer_seq(frame.seq)
        if isinstance(decoded, Ack | Nak | Capabilities | Paired):
            pending = self._pending.pop(decoded.ref_seq, None)
            if pending is None:
                self.stats.unmatched_replies += 1
                return
            if isinstance(decoded, Capabilities) and isinstance(pending.message, Hello):
                self._adopt(decoded, now)
                # Authenticated only with the device's nonce to sign under: a device
                # that answers a signed HELLO without one did not take the key.
                if pending.message.key_id is not None and decoded.link_nonce is not None:
                    self.link_key_id = pending.message.key_id
                    self.link_nonce = decoded.link_nonce
            self._events.append(Replied(pending.message, decoded.ref_seq, decoded))
        elif isinstance(decoded, Status | DeviceEvent):
            self._events.append(Received(decoded, frame.seq))

    def _adopt(self, capabilities: Capabilities, now: float) -> None:
        self.capabilities = capabilities
        self.state = LinkState.READY
        # A device that announces 0 for either gets our defaults, not a crash.
        watchdog = capabilities.watchdog_ms / 1000 or self.timing.watchdog_s
        status = capabilities.status_interval_ms / 1000
        silence = self.timing.silence_s
        if silence is None and status > 0:
            silence = 3 * status
        self.timing = Timing(
            watchdog_s=watchdog,
            keepalive_s=min(self.timing.keepalive_s, watchdog / 4),
            request_timeout_s=self.timing.request_timeout_s,
            attempts=self.timing.attempts,
            silence_s=silence,
        )
        self._next_keepalive = now + self.timing.keepalive_s

    def _silent_at(self) -> float | None:
        """When the controller will call the device silent, if it is watching."""
        if (
            self.role != Role.CONTROLLER
            or self.state != LinkState.READY
            or self.timing.silence_s is None
            or self._last_rx is None
            or self._silent
        ):
            return None
        return self._last_rx + self.timing.silence_s

    # --- device -------------------------------------------------------------------

    def _device_send(self, message: Message, now: float) -> int:
        if message.TYPE in COMMANDS:
            raise LocalProtocolError(f"a device does not send {message.TYPE.name}")
        if isinstance(message, Capabilities):
            # A new link: our numbering starts again at 1 (SPEC §4) with the answer
            # to its HELLO, after any reply still owed to frames read before it.
            self._tx_seq = 0
        seq, wire = self._emit(message, now)
        if isinstance(message, Ack | Nak | Capabilities | Paired):
            if message.ref_seq in self._uncached:
                # The answer to a frame that did not prove itself on an authenticated
                # link: never kept, or the real controller's frame with that seq
                # would get it as a re-send.
                self._uncached.discard(message.ref_seq)
                return seq
            self._replies[message.ref_seq] = wire
            self._unanswered.pop(message.ref_seq, None)
            while len(self._replies) > REPLY_CACHE_SIZE:
                self._replies.popitem(last=False)
        return seq

    def _device_receive(self, frame: Frame, now: float, *, halted: bool = False) -> None:
        if frame.msg_type in _DEVICE_TYPES:
            self.stats.rejected += 1  # a device's message sent to a device: nothing to answer
            return
        verified = self._verified(frame)
        if self.state == LinkState.READY and (
            self.link_key_id is None or (verified and self._fresh(frame))
        ):
            # Proof of life: every frame that passed its CRC; on an authenticated link
            # only a fresh signed one, or a stranger could hold a session up.
            self._last_rx = now
        if frame.version != PROTOCOL_VERSION:
            self.stats.version_errors += 1
            self._refuse(frame.seq, ErrorCode.UNSUPPORTED_VERSION, now)
            return
        decoded = self._decode(frame)
        if isinstance(decoded, ErrorCode):
            self._refuse(frame.seq, decoded, now)
            return
        if isinstance(decoded, Hello):
            self._device_hello(frame, decoded, now)
            return
        if isinstance(decoded, KeepAlive):
            return  # proof of life only (counted above); its seq means nothing
        urgent = frame.msg_type in URGENT
        if self.state != LinkState.READY:
            if urgent or frame.msg_type == MessageType.GET_STATUS:
                self._events.append(Received(decoded, frame.seq))
            else:
                self._refuse(frame.seq, ErrorCode.NO_HELLO, now)
            return
        if self.link_key_id is not None and not verified and frame.msg_type not in AUTHENTICATED:
            # Not from the link's controller: stop, vent and a look are for anyone,
            # but they move no seq and leave no reply to be taken for another's.
            self.stats.not_authenticated += 1
            self._uncached.add(frame.seq)
            self._events.append(Received(decoded, frame.seq))
            return
        pairing: Pairing | None = None
        if (
            frame.msg_type in AUTHENTICATED
            and self.pairings is not None
            and (self.pairings.enforced or self.link_key_id is not None)
        ):
            # Checked before the seq: a forged frame must not move the newest seq or
            # fill the reply cache, or the real controller's next frame with that seq
            # would be taken for a re-send.
            pairing = self.pairings.get(self.link_key_id)
            if pairing is None or not verified:
                self.stats.not_authenticated += 1
                self._refuse(frame.seq, ErrorCode.NOT_AUTHENTICATED, now)
                return
        assert self._accepted_seq is not None
        if not seq_newer(frame.seq, self._accepted_seq):
            if urgent:
                # Run again whatever its seq, so its ACK is never wanted from the cache,
                # where it would take the place of the reply owed to that seq's command.
                self._uncached.add(frame.seq)
                self._events.append(Received(decoded, frame.seq))
            elif frame.seq in self._replies:
                self.stats.duplicates += 1
                self._write(self._replies[frame.seq])
            elif self._unanswered.get(frame.seq) == frame:
                # A re-send that arrived in the same read as its original: the original
                # is being handled and its reply is on the way. A STALE_SEQUENCE now
                # would reach the controller first and fail a command that ran. Only
                # the same bytes: another frame with that seq is no re-send (SPEC §4).
                self.stats.duplicates += 1
            else:
                self.stats.stale += 1
                self._refuse(frame.seq, ErrorCode.STALE_SEQUENCE, now)
            return
        if pairing is not None:
            assert frame.auth is not None
            assert self.pairings is not None
            if frame.auth.counter <= pairing.counter:
                self.stats.replayed += 1
                self._refuse(frame.seq, ErrorCode.REPLAYED, now)
                return
            self.pairings.accept(pairing, frame.auth.counter)
        self._track_peer_seq(frame.seq)
        self._accepted_seq = frame.seq
        if halted and frame.msg_type in PREEMPTIBLE:
            # A stop or vent came with it and went first (SPEC 7.4): it must not run
            # after them, whoever signed which. Taken, so that its seq and counter are
            # used up, and refused, so that neither it nor a re-send of it ever runs.
            self.stats.preempted += 1
            self._device_send(Nak(frame.seq, ErrorCode.PREEMPTED), now)
            return
        self._unanswered[frame.seq] = frame
        self._events.append(Received(decoded, frame.seq))

    def _device_hello(self, frame: Frame, hello: Hello, now: float) -> None:
        key_id: int | None = None
        counter = 0
        if frame.auth is not None and self.pairings is not None:
            pairing = self.pairings.get(hello.key_id)
            if pairing is None or not frame.verify(pairing.key):
                self.stats.not_authenticated += 1
                self._refuse(frame.seq, ErrorCode.NOT_AUTHENTICATED, now)
                return
            counter = frame.auth.counter
            if (
                counter == self._hello_counter
                and self.state == LinkState.READY
                and frame.seq == self._accepted_seq
            ):
                # The same HELLO again (its CAPABILITIES was lost, or is on its way when
                # both copies came in one read): answer it again, or let the answer
                # come. The counter check below would call it a replay.
                self.stats.duplicates += 1
                if frame.seq in self._replies:
                    self._write(self._replies[frame.seq])
                return
            if counter <= pairing.counter:
                self.stats.replayed += 1
                self._refuse(frame.seq, ErrorCode.REPLAYED, now)
                return
            self.pairings.accept(pairing, counter)
            key_id, self._hello_counter = pairing.key_id, counter
        else:
            self._hello_counter = None
        if (
            self.state == LinkState.READY
            and self.link_key_id is not None
            and (key_id != self.link_key_id)
        ):
            # Someone else took the link of an authenticated controller: as if that
            # controller went away, its session ends and vents (nothing is left running
            # that its owner can no longer adjust).
            self._events.append(LinkLost("another controller opened the link"))
        self.state = LinkState.READY
        self.link_key_id = key_id
        self.link_nonce = secrets.token_bytes(8) if key_id is not None else None
        self._alive_counter = counter if key_id is not None else 0
        self._uncached.clear()
        self._last_rx = now
        self._accepted_seq = frame.seq
        self._replies.clear()
        self._unanswered.clear()
        self._rx_seq = frame.seq
        self._events.append(Received(hello, frame.seq))

    def _verified(self, frame: Frame) -> bool:
        """Whether ``frame`` is signed under this authenticated link's key and nonce."""
        if self.link_key_id is None or self.pairings is None:
            return False
        pairing = self.pairings.get(self.link_key_id)
        return pairing is not None and frame.verify(pairing.key, self.link_nonce or b"")

    def _fresh(self, frame: Frame) -> bool:
        """Whether verified ``frame`` has a counter above any this link has seen: proof of life."""
        assert frame.auth is not None
        if frame.auth.counter <= self._alive_counter:
            return False
        self._alive_counter = frame.auth.counter
        return True

    def forget_key(self, key_id: int) -> None:
        """Device: ``key_id`` was unpaired; a link opened with it is no longer authenticated."""
        if self.link_key_id == key_id:
            self.link_key_id = None

    def _refuse(self, seq: int, error: ErrorCode, now: float) -> None:
        """NAK a frame the link did not accept, leaving the reply cache as it was.

        The cache is keyed by seq: a refused frame (a stranger's, a bad version,
        an unreadable payload) that reused the seq of an accepted command would
        otherwise replace that command's reply, and its re-send would get the NAK.
        """
        self._emit(Nak(seq, error), now)

    def _forget_controller(self, reason: str) -> None:
        self.state = LinkState.WAITING
        self.link_key_id = self.link_nonce = None
        self._hello_counter = None
        self._accepted_seq = None
        self._replies.clear()
        self._unanswered.clear()
        self._last_rx = None
        self._events.append(LinkLost(reason))


__all__ = [
    "Connection",
    "Event",
    "FailReason",
    "FrameRecord",
    "LinkLost",
    "LinkState",
    "LinkStats",
    "PeerSilent",
    "Received",
    "Replied",
    "RequestFailed",
    "Timing",
    "seq_newer",
]
