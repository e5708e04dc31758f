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
forgets the controller (it must say HELLO again) and reports `ControllerGone`.
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
    NO_NONCE,
    NONCE_SIZE,
    PREEMPTIBLE,
    REPLIES,
    URGENT,
    Ack,
    Capabilities,
    Challenge,
    DeviceEvent,
    Hello,
    KeepAlive,
    Message,
    Nak,
    Paired,
    SetCycle,
    Status,
    UnknownMessageType,
    decode_message,
)

SEQ_MODULO = 0x10000
_TxLink = tuple[int, bytes, bytes] | None
"""Device: the key id, key and context (HELLO counter, nonce) a link's frames are signed under."""

_HelloLink = tuple[int | None, bytes | None, _TxLink]
"""Device: a link a HELLO opened, not answered yet: its key id, nonce and `_TxLink`."""

REPLY_CACHE_SIZE = 8
CHALLENGES_KEPT = 16
"""Device: how many of its last challenges a KEEPALIVE may name (SPEC §7.3)."""
RECENT_FRAMES = 32
_DEVICE_TYPES = frozenset(REPLIES) | {MessageType.EVENT}


def _fresh_nonce() -> bytes:
    """A random link nonce; never eight zero bytes, which mean no nonce (SPEC §13)."""
    while (nonce := secrets.token_bytes(NONCE_SIZE)) == NO_NONCE:
        pass
    return nonce


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
    key_id: int | None = None
    """Device: the key the frame was signed under, for the link it came on; None if unsigned.

    Taken when the frame is read: a HELLO later in the same read may open another
    link (under another key, or none) before the firmware acts on it, and an UNPAIR
    must forget the key that signed it, not the next link's (SPEC 12.4)."""


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
class ControllerGone:
    """Device: the controller is gone (watchdog or link down); it must say HELLO again."""

    reason: str


Event = Received | Replied | RequestFailed | PeerSilent | ControllerGone


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
    unsigned_dropped: int = 0
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
    device_signs: bool = True
    """Whether the device signs its frames on an authenticated link (SPEC §12.3).

    Device: it does. Controller: it expects so, and drops every frame from the
    device on such a link that is not signed (an older device, paired knowing
    it does not sign, is the one reason to set it False)."""
    chambers: int | None = None
    """Device: its number of chambers. A SET_CYCLE with another number of targets is
    malformed (SPEC §5.1) and refused BAD_PAYLOAD by the link, as a payload too short
    is: not taken, its seq not used up, its NAK not remembered (SPEC §4.1)."""

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
        self._quiet = False
        # device
        self._accepted_seq: int | None = None
        self._replies: OrderedDict[int, Frame] = OrderedDict()
        self._unanswered: dict[int, Frame] = {}
        """Accepted commands whose reply has not gone out yet (the firmware is on them)."""
        self._hello_counter: int | None = None
        """Both roles: the counter of the signed HELLO that opened this link."""
        self._tx_counter = 0
        """Device: the counter of its last signed frame on this link."""
        self._tx_link: _TxLink = None
        """Device: the key id, key and context its frames are signed under (SPEC 12.3), or None.

        Switched with the CAPABILITIES that opens a link, not with the HELLO: what the
        device still says of the link before (a reply owed to it, the end of its
        session) is signed for that link, whose controller may still be listening."""
        self._hello_links: OrderedDict[int, deque[_HelloLink]] = OrderedDict()
        """Device: for each HELLO still to be answered (by seq, oldest first), its key id,
        the nonce of the link it opened and what that link's frames are signed under.

        Two HELLOs in one read open two links, one after the other: the firmware
        answers each after the whole read, and each CAPABILITIES must carry, and be
        signed for, the link its own HELLO opened, not the last one. Two HELLOs with
        one seq (two controllers, or one that restarted) are two links too: each seq
        holds its HELLOs in the order they came, as `_reply_signed` does, and the
        firmware answers them in that order."""
        self._challenges: OrderedDict[int, float] = OrderedDict()
        """Device: its last challenges, and when each was sent."""
        self._reply_signed: dict[int, deque[bool]] = {}
        """Device: for each seq, whether the replies still owed to it are to be signed."""
        # controller
        self._device_counter = 0
        self._challenge: int | None = None
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
        # Asked after every frame and every wake on both sides: no list is built.
        if self.role == Role.DEVICE:
            if self.state == LinkState.READY and self._last_rx is not None:
                return self._last_rx + self.timing.watchdog_s
            return None
        due: float | None = None
        for pending in self._pending.values():
            if due is None or pending.deadline < due:
                due = pending.deadline
        keepalive = (
            self._next_keepalive if self.state == LinkState.READY and not self._quiet else None
        )
        if keepalive is not None and (due is None or keepalive < due):
            due = keepalive
        silent_at = self._silent_at()
        if silent_at is not None and (due is None or silent_at < due):
            due = silent_at
        return due

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
            and not self._quiet
            and self._next_keepalive is not None
            and now >= self._next_keepalive
        ):
            self.send(KeepAlive(self._challenge), now)
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

    def go_quiet(self) -> None:
        """Controller: let the link lapse while no session of ours runs (SPEC §7.6).

        No KEEPALIVE goes out and the device's silence is not watched: the device
        forgets this controller at its watchdog, and from then on sends only what
        changes (§7.5) and the answers to STOP, VENT and GET_STATUS, which it takes
        from anyone. Requests still time out as always, so a GET_STATUS now and then
        is how a quiet controller learns that the device is gone. The next HELLO
        ends the quiet.

        Raises:
            LocalProtocolError: not a controller, or the link is not open.
        """
        if self.role != Role.CONTROLLER or self.state != LinkState.READY:
            raise LocalProtocolError("only a controller's open link can go quiet")
        self._quiet = True

    @property
    def quiet(self) -> bool:
        """Controller: whether the link was let lapse (`go_quiet`) and no HELLO came since."""
        return self._quiet

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

    def _emit(self, message: Message, now: float, *, sign: bool = False) -> tuple[Frame, bytes]:
        """Number, sign as the role does, encode and queue ``message``.

        ``sign``: the device signs this frame under the link's key (SPEC §12.3).
        Returns the frame as numbered, before any signing, and its wire bytes.
        """
        if not isinstance(message, KeepAlive):
            # A KEEPALIVE repeats the last seq (SPEC section 4): it is no request, and
            # a long quiet step must not walk the numbers round their 16 bits.
            self._tx_seq = (self._tx_seq + 1) % SEQ_MODULO
        frame = Frame(self._tx_seq, message.TYPE, message.encode_payload())
        return frame, self._put(frame, now, sign=sign)

    def _put(self, frame: Frame, now: float, *, sign: bool = False) -> bytes:
        """Sign ``frame`` as the role does, then encode and queue it; its wire bytes."""
        signer = self.signer
        if self.role == Role.DEVICE:
            if sign:
                frame = self._device_signed(frame)
        elif signer is not None and (
            frame.msg_type in AUTHENTICATED
            or frame.msg_type == MessageType.HELLO
            or self.link_key_id is not None
        ):
            # On an authenticated link everything is signed, keepalives too: only
            # signed frames keep the device's watchdog fed (SPEC §12.3).
            hello = frame.msg_type == MessageType.HELLO
            nonce = b"" if hello else self.link_nonce or b""
            counter = signer.next_counter()
            if hello:
                self._hello_counter = counter
            frame = frame.signed(signer.key, counter, nonce)
        self.recent.append(FrameRecord(now, "tx", frame))
        wire = frame.encode()
        if frame.msg_type == MessageType.HELLO:
            # A 0x00 first ends whatever noise the device's buffer holds from before
            # (a port just opened, a cable just plugged in), so the HELLO is not
            # glued to it and lost (SPEC §3.2).
            wire = b"\x00" + wire
        self._write(wire)
        return wire

    def _device_context(self, nonce: bytes | None = None) -> bytes:
        """What a device's tag covers before the frame: the HELLO's counter and the nonce.

        The counter binds every frame of the link to the HELLO that opened it (a
        controller never uses a counter twice), so that frames, CAPABILITIES among
        them, recorded on another link are worth nothing on this one (SPEC §12.3).
        """
        counter = self._hello_counter or 0
        return counter.to_bytes(4, "little") + (nonce or self.link_nonce or b"")

    def _track_peer_seq(self, seq: int) -> None:
        if self._rx_seq is not None:
            gap = (seq - self._rx_seq - 1) % SEQ_MODULO
            if gap < SEQ_MODULO // 2:
                self.stats.lost += gap
        self._rx_seq = seq

    def _decode(self, frame: Frame) -> Message | ErrorCode:
        try:
            message = decode_message(frame.msg_type, frame.payload)
        except UnknownMessageType:
            self.stats.rejected += 1
            return ErrorCode.UNKNOWN_MESSAGE
        except RemoteProtocolError:
            self.stats.rejected += 1
            return ErrorCode.BAD_PAYLOAD
        if (
            isinstance(message, SetCycle)
            and self.chambers is not None
            and len(message.targets_dmmhg) != self.chambers
        ):
            # Part of the layout (one target per chamber), so refused with the other
            # malformed payloads, before the seq: one rule for every BAD_PAYLOAD.
            self.stats.rejected += 1
            return ErrorCode.BAD_PAYLOAD
        return message

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
            self._quiet = False
            self.link_key_id = self.link_nonce = self._hello_counter = self._challenge = None
            self._device_counter = 0
            if self.signer is not None:
                message = replace(message, key_id=self.signer.key_id)
        if urgent:
            for seq, pending in self._pending.items():
                self._events.append(RequestFailed(pending.message, seq, FailReason.PREEMPTED))
            self._pending.clear()
        frame, wire = self._emit(message, now)
        seq = frame.seq
        if not isinstance(message, KeepAlive):
            self._pending[seq] = _Pending(message, wire, 1, now + self.timing.request_timeout_s)
        elif self.state == LinkState.READY:
            # Only a KEEPALIVE is proof of life (SPEC §7.3): it goes out on its own
            # rhythm, whatever else is sent meanwhile.
            self._next_keepalive = now + self.timing.keepalive_s
        return seq

    def _controller_receive(self, frame: Frame, now: float) -> None:
        if frame.version != PROTOCOL_VERSION:
            self.stats.version_errors += 1
            return
        if self.link_key_id is not None and self.device_signs and not self._from_device(frame):
            # On an authenticated link the device signs everything it sends: this is
            # someone else's word (SPEC §12.3). Not believed, not even as a sign of life.
            self.stats.unsigned_dropped += 1
            return
        decoded = None if frame.msg_type in COMMANDS else self._decode(frame)
        if isinstance(decoded, Capabilities) and not self._capabilities_for_us(frame, decoded):
            # The answer to our signed HELLO must be signed for this HELLO: one that
            # is not comes from an older device or from someone else on the line.
            self.stats.unsigned_dropped += 1
            return
        # Any frame that passed its checks proves the device alive, even one we cannot read.
        self._last_rx = now
        self._silent = False
        if decoded is None:
            self.stats.rejected += 1  # a command, echoed or sent by someone else
            return
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
                    self._device_counter = frame.auth.counter if frame.auth else 0
            if isinstance(decoded, Ack) and pending.message.TYPE == MessageType.UNPAIR:
                # The device forgot the key with its ACK: the link goes on unsigned (§12.4).
                self.link_key_id = self.link_nonce = None
            self._events.append(Replied(pending.message, decoded.ref_seq, decoded))
        elif isinstance(decoded, Challenge):
            if self.state == LinkState.READY:
                # Answered at once (SPEC §7.3), so that the device's watchdog runs from a
                # moment as recent as the link allows. The link's business, not the caller's.
                self._challenge = decoded.challenge
                self._next_keepalive = now
        elif isinstance(decoded, Status | DeviceEvent):
            self._events.append(Received(decoded, frame.seq))

    def _capabilities_for_us(self, frame: Frame, capabilities: Capabilities) -> bool:
        """Whether ``capabilities`` may answer our HELLO: signed for it, if it was signed."""
        pending = self._pending.get(capabilities.ref_seq)
        if pending is None or not isinstance(pending.message, Hello):
            return True  # it answers nothing of ours: counted as unmatched
        if pending.message.key_id is None or not self.device_signs:
            return True
        return self._from_device(frame, capabilities.link_nonce or b"")

    def _from_device(self, frame: Frame, nonce: bytes | None = None) -> bool:
        """Controller: whether ``frame`` is signed by the device for this link, and fresh.

        ``nonce``: the link's nonce as a CAPABILITIES announces it, before the link
        has one. A good frame's counter becomes the newest seen on the link.
        """
        signer = self.signer
        auth = frame.auth
        if signer is None or auth is None:
            return False
        if not frame.verify(signer.key, self._device_context(nonce)):
            return False
        if nonce is None and auth.counter <= self._device_counter:
            return False  # a frame of this link played again
        self._device_counter = auth.counter
        return True

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
            or self._quiet
        ):
            return None
        return self._last_rx + self.timing.silence_s

    # --- device -------------------------------------------------------------------

    def _device_send(self, message: Message, now: float, *, sign: bool | None = None) -> int:
        if message.TYPE in COMMANDS:
            raise LocalProtocolError(f"a device does not send {message.TYPE.name}")
        if isinstance(message, Capabilities):
            # A new link: our numbering starts again at 1 (SPEC §4) with the answer
            # to its HELLO, after any reply still owed to frames read before it.
            self._tx_seq = 0
            opened = self._opened_by(message.ref_seq, take=True)
            next_link = None if opened is None else opened[2]
        ref: int | None = getattr(message, "ref_seq", None)
        if sign is None:
            owed = self._reply_signed.get(ref) if ref is not None else None
            if owed:
                sign = owed.popleft()
                if not owed:
                    del self._reply_signed[ref]  # type: ignore[arg-type]
            else:
                sign = True  # the device's own word: its status and events
        if isinstance(message, Capabilities):
            self._tx_link, self._tx_counter = next_link, 0
        frame, _ = self._emit(message, now, sign=sign and self._signing())
        seq = frame.seq
        if isinstance(message, Challenge):
            # A KEEPALIVE that names it proves the controller was there after now (§7.3).
            self._challenges[message.challenge] = now
            self._challenges.move_to_end(message.challenge)
            while len(self._challenges) > CHALLENGES_KEPT:
                self._challenges.popitem(last=False)
        if isinstance(message, Ack | Nak | Capabilities | Paired):
            if message.ref_seq in self._uncached:
                # The answer to a frame that did not prove itself on an authenticated
                # link: never kept, or the real controller's frame with that seq
                # would get it as a re-send.
                self._uncached.discard(message.ref_seq)
                return seq
            self._replies[message.ref_seq] = frame  # unsigned: a re-send is signed anew
            self._unanswered.pop(message.ref_seq, None)
            while len(self._replies) > REPLY_CACHE_SIZE:
                self._replies.popitem(last=False)
        return seq

    def _device_receive(self, frame: Frame, now: float, *, halted: bool = False) -> None:
        if frame.msg_type in _DEVICE_TYPES:
            self.stats.rejected += 1  # a device's message sent to a device: nothing to answer
            return
        verified = self._verified(frame)
        if frame.version != PROTOCOL_VERSION:
            self.stats.version_errors += 1
            self._refuse(frame.seq, ErrorCode.UNSUPPORTED_VERSION, now, verified)
            return
        decoded = self._decode(frame)
        if isinstance(decoded, ErrorCode):
            self._refuse(frame.seq, decoded, now, verified)
            return
        if isinstance(decoded, Hello):
            self._device_hello(frame, decoded, now)
            return
        if isinstance(decoded, KeepAlive):
            self._proof_of_life(frame, decoded, verified)
            return  # its seq means nothing
        urgent = frame.msg_type in URGENT
        if self.state != LinkState.READY:
            if urgent or frame.msg_type == MessageType.GET_STATUS:
                self._received(decoded, frame.seq, verified)
            else:
                self._refuse(frame.seq, ErrorCode.NO_HELLO, now, verified)
            return
        if self.link_key_id is not None and not verified and frame.msg_type not in AUTHENTICATED:
            # Not from the link's controller: stop, vent and a look are for anyone,
            # but they move no seq and leave no reply to be taken for another's.
            self.stats.not_authenticated += 1
            self._uncached.add(frame.seq)
            self._received(decoded, frame.seq, verified)
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
                self._refuse(frame.seq, ErrorCode.NOT_AUTHENTICATED, now, verified)
                return
        assert self._accepted_seq is not None
        if not seq_newer(frame.seq, self._accepted_seq):
            if urgent:
                # Run again whatever its seq, so its ACK is never wanted from the cache,
                # where it would take the place of the reply owed to that seq's command.
                self._uncached.add(frame.seq)
                self._received(decoded, frame.seq, verified)
            elif frame.seq in self._replies:
                self.stats.duplicates += 1
                self._send_again(frame.seq, now)
            elif self._unanswered.get(frame.seq) == frame:
                # A re-send that arrived in the same read as its original: the original
                # is being handled and its reply is on the way. A STALE_SEQUENCE now
                # would reach the controller first and fail a command that ran. Only
                # the same bytes: another frame with that seq is no re-send (SPEC §4).
                self.stats.duplicates += 1
            else:
                self.stats.stale += 1
                self._refuse(frame.seq, ErrorCode.STALE_SEQUENCE, now, verified)
            return
        if pairing is not None:
            assert frame.auth is not None
            assert self.pairings is not None
            if frame.auth.counter <= pairing.counter:
                self.stats.replayed += 1
                self._refuse(frame.seq, ErrorCode.REPLAYED, now, verified)
                return
            self.pairings.accept(pairing, frame.auth.counter)
        self._track_peer_seq(frame.seq)
        self._accepted_seq = frame.seq
        if halted and frame.msg_type in PREEMPTIBLE:
            # A stop or vent came with it and went first (SPEC 7.4): it must not run
            # after them, whoever signed which. Taken, so that its seq and counter are
            # used up, and refused, so that neither it nor a re-send of it ever runs.
            self.stats.preempted += 1
            self._device_send(Nak(frame.seq, ErrorCode.PREEMPTED), now, sign=verified)
            return
        self._unanswered[frame.seq] = frame
        self._received(decoded, frame.seq, verified)

    def _received(self, message: Message, seq: int, verified: bool) -> None:
        """Hand ``message`` to the firmware, noting whether the reply it owes is signed.

        Only a reply to a frame signed under the link's key is signed: a stranger's
        STOP gets its ACK unsigned, so that the controller can never take it for the
        reply to its own frame with that seq (SPEC §12.3).
        """
        self._reply_signed.setdefault(seq, deque()).append(verified)
        self._events.append(Received(message, seq, self.link_key_id if verified else None))

    def _proof_of_life(self, frame: Frame, keepalive: KeepAlive, verified: bool) -> None:
        """Feed the watchdog from a KEEPALIVE that answers a recent challenge (SPEC §7.3).

        The watchdog then runs from when the challenge was sent, not from when its
        answer arrived: a relay that holds keepalives back gains nothing by it, and
        no session outlives the controller by more than the watchdog.
        """
        if self.state != LinkState.READY or self._last_rx is None:
            return
        if self.link_key_id is not None and not (verified and self._fresh(frame)):
            return  # on an authenticated link only the controller's own, fresh, counts
        issued = None if keepalive.challenge is None else self._challenges.get(keepalive.challenge)
        if issued is not None and issued > self._last_rx:
            self._last_rx = issued

    def _send_again(self, seq: int, now: float) -> None:
        """Send the remembered reply to ``seq`` again: same seq, same words, a new tag."""
        self._put(self._replies[seq], now, sign=self._signing())

    def _signing(self) -> bool:
        """Device: whether the frames it sends now are signed (for an authenticated link)."""
        return self.device_signs and self._tx_link is not None

    def _device_signed(self, frame: Frame) -> Frame:
        """``frame`` signed by the device for its link, with its next counter."""
        assert self._tx_link is not None
        _, key, context = self._tx_link
        self._tx_counter += 1
        return frame.signed(key, self._tx_counter, context)

    def _device_hello(self, frame: Frame, hello: Hello, now: float) -> None:
        key_id: int | None = None
        counter = 0
        if frame.auth is not None and self.pairings is not None:
            pairing = self.pairings.get(hello.key_id)
            if pairing is None or not frame.verify(pairing.key):
                self.stats.not_authenticated += 1
                self._refuse(frame.seq, ErrorCode.NOT_AUTHENTICATED, now, False)
                return
            counter = frame.auth.counter
            if (
                counter == self._hello_counter
                and self.state == LinkState.READY
                and frame.seq == self._accepted_seq
                and pairing.key_id == self.link_key_id
            ):
                # The same HELLO again (its CAPABILITIES was lost, or is on its way when
                # both copies came in one read): answer it again, or let the answer
                # come. The counter check below would call it a replay. Under the same
                # key: another key's HELLO with that seq and counter opens its own link.
                self.stats.duplicates += 1
                if frame.seq in self._replies:
                    self._send_again(frame.seq, now)
                return
            if counter <= pairing.counter:
                self.stats.replayed += 1
                self._refuse(frame.seq, ErrorCode.REPLAYED, now, False)
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
            self._events.append(ControllerGone("another controller opened the link"))
        self.state = LinkState.READY
        self.link_key_id = key_id
        self.link_nonce = _fresh_nonce() if key_id is not None else None
        tx_link = None
        if key_id is not None and self.pairings is not None:
            pairing = self.pairings.get(key_id)
            assert pairing is not None
            tx_link = (key_id, pairing.key, self._device_context())
        self._hello_links.setdefault(frame.seq, deque()).append((key_id, self.link_nonce, tx_link))
        self._hello_links.move_to_end(frame.seq)
        while len(self._hello_links) > REPLY_CACHE_SIZE:
            self._hello_links.popitem(last=False)
        self._alive_counter = counter if key_id is not None else 0
        # Not the replies owed to frames read before this HELLO (`_reply_signed`): they
        # still go out, for the link before, signed as those frames deserve.
        self._uncached.clear()
        self._last_rx = now
        self._accepted_seq = frame.seq
        self._replies.clear()
        self._unanswered.clear()
        self._rx_seq = frame.seq
        # Its CAPABILITIES is signed for the new link when the link is authenticated.
        self._received(hello, frame.seq, key_id is not None)

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

    def link_nonce_for(self, hello_seq: int) -> bytes | None:
        """Device: the nonce its CAPABILITIES to the HELLO ``hello_seq`` carries (SPEC 12.3).

        That of the link this HELLO opened, which is not the present one when
        another HELLO came after it in the same read.
        """
        opened = self._opened_by(hello_seq, take=False)
        return None if opened is None else opened[1]

    def _opened_by(self, hello_seq: int, *, take: bool) -> _HelloLink | None:
        """Device: the oldest link the HELLO ``hello_seq`` opened and is not answered; ``take`` it.

        None when no such HELLO is waiting (more came in one read than are kept):
        its CAPABILITIES then goes out unsigned and without a nonce, which a
        controller takes for an unauthenticated link, never for another's.
        """
        links = self._hello_links.get(hello_seq)
        if not links:
            return None
        if not take:
            return links[0]
        opened = links.popleft()
        if not links:
            del self._hello_links[hello_seq]
        return opened

    def use_key(self, signer: Signer | None, *, device_signs: bool | None = None) -> None:
        """Controller: sign from the next frame with ``signer`` (None: send unsigned).

        ``device_signs``, when given, says whether the device must sign its own
        frames on links under this key (it was paired as one that signs). The
        link stays as it is until a HELLO opens the next one (SPEC 12.3).
        """
        self.signer = signer
        if device_signs is not None:
            self.device_signs = device_signs

    def key_gone(self) -> None:
        """Controller: the key is gone (unpaired, or unusable): nothing more is signed.

        The link is no longer authenticated from here on; the device would take
        no unsigned command of the authenticated set on it anyway.
        """
        self.signer = None
        self.link_key_id = None

    def forget_key(self, key_id: int) -> None:
        """Device: ``key_id`` was unpaired; nothing more is signed under it (SPEC 12.4).

        Neither the present link, nor the link the device still signs for (the
        UNPAIR's may be the link before, when a HELLO came in the same read), nor
        a link a HELLO opened with it and whose CAPABILITIES has not gone out.
        """
        if self.link_key_id == key_id:
            self.link_key_id = None
        if self._tx_link is not None and self._tx_link[0] == key_id:
            self._tx_link = None
        for links in self._hello_links.values():
            for i, (held, _, _) in enumerate(links):
                if held == key_id:  # opened with it, not answered yet: unauthenticated now
                    links[i] = (None, None, None)

    def _refuse(self, seq: int, error: ErrorCode, now: float, verified: bool) -> None:
        """NAK a frame the link did not accept, leaving the reply cache as it was.

        The cache is keyed by seq: a refused frame (a stranger's, a bad version,
        an unreadable payload) that reused the seq of an accepted command would
        otherwise replace that command's reply, and its re-send would get the NAK.
        The NAK is signed only if the frame was signed under the link's key.
        """
        self._emit(Nak(seq, error), now, sign=verified and self._signing())

    def _forget_controller(self, reason: str) -> None:
        self.state = LinkState.WAITING
        self.link_key_id = self.link_nonce = None
        self._hello_counter = None
        self._accepted_seq = None
        self._replies.clear()
        self._unanswered.clear()
        self._reply_signed.clear()
        self._last_rx = None
        self._events.append(ControllerGone(reason))


__all__ = [
    "Connection",
    "ControllerGone",
    "Event",
    "FailReason",
    "FrameRecord",
    "LinkState",
    "LinkStats",
    "PeerSilent",
    "Received",
    "Replied",
    "RequestFailed",
    "Timing",
    "seq_newer",
]
