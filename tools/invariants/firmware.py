"""`CheckedFirmware`: a simulated firmware with every rule checked after every input.

`CheckedFirmware` wraps a `simulator.Firmware`. Every input goes through one
of its methods (`feed`, `advance`, `press`, `link_down`, `inject`), and after
each one it checks the safety rules of SPEC section 10 on the device's true
state, the link rules of sections 4 and 7 on what the device sent back, and
the state machine of section 8. It keeps a small model of the link (is a
controller present, which seq is the newest accepted, which replies the device
must still remember) to know what the reply to a lone frame must be. No
deviation of the code under test is tolerated.

A device may be fuzzed paired (``CheckedFirmware(config, paired=True)``): it
then holds `FUZZ_KEY` and enforces section 12. The model does not follow an
authenticated link's numbering (it checks the rules of every read there, not
the seq rules), but on every read it checks what authentication is for. No
session begins, and nothing that `AUTHENTICATED` guards changes, without a
command for that change in the same read that carries a good tag under a held
key, the link's nonce and a counter above any that key used. A key's counter
never goes back, and moves only to the counter of such a frame. On a link that
is not authenticated every guarded command is refused NOT_AUTHENTICATED. An
authenticated link dies a watchdog after its last fresh signed frame; each one
gets a new nonce; a signed HELLO with a stale counter changes nothing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from firmware_protocol import (
    AUTHENTICATED,
    PROTOCOL_VERSION,
    Ack,
    Button,
    ButtonPressed,
    Capabilities,
    Challenge,
    EndReason,
    ErrorCode,
    Fault,
    Frame,
    FrameDecoder,
    Hello,
    KeepAlive,
    Message,
    MessageType,
    Mode,
    Nak,
    RemoteProtocolError,
    Renew,
    SessionEnded,
    SessionStarted,
    SessionState,
    SetCycle,
    SetIntensity,
    SetMode,
    Start,
    StartSource,
    Status,
    StatusFlag,
)
from firmware_protocol.connection import LinkState, seq_newer
from firmware_protocol.messages import COMMANDS, PREEMPTIBLE, REPLIES, URGENT, decode_message
from firmware_protocol.session import STATEFUL_COMMANDS, command_outcome
from simulator import DeviceConfig, Firmware, Snapshot

from .configs import fuzz_memory

IDLE, RUNNING, PAUSED, FAULT = (
    SessionState.IDLE,
    SessionState.RUNNING,
    SessionState.PAUSED,
    SessionState.FAULT,
)
IN_SESSION = frozenset({RUNNING, PAUSED})

DEVICE_TYPES = frozenset(REPLIES) | {MessageType.EVENT}
"""Types a device sends; a device drops them silently when they come to it (SPEC 7.2)."""
REPLY_TYPES = frozenset(
    t for t, cls in REPLIES.items() if "ref_seq" in getattr(cls, "__dataclass_fields__", {})
)
"""Replies that quote the seq of the request they answer (ACK, NAK, CAPABILITIES, ...)."""
NEED_HELLO = frozenset(STATEFUL_COMMANDS) - URGENT
"""Commands refused with NO_HELLO while no controller is present (SPEC 7.2)."""
LINK_ERRORS = frozenset(
    {ErrorCode.UNKNOWN_MESSAGE, ErrorCode.UNSUPPORTED_VERSION, ErrorCode.NO_HELLO,
     ErrorCode.STALE_SEQUENCE}
)  # fmt: skip
"""Refusals that the link decides; a command the link accepted never gets one."""
AUTH_ERRORS = frozenset({ErrorCode.NOT_AUTHENTICATED, ErrorCode.REPLAYED})
"""Refusals of a frame's authentication (SPEC 12.3)."""

PAUSE_CLOCK = frozenset({MessageType.START, MessageType.PAUSE, MessageType.RESUME})
"""Commands after which a paused session's pause clock may have started again."""

ENDED_BY_TIME = frozenset(
    {EndReason.COMPLETED, EndReason.SESSION_CAP, EndReason.LINK_LOST, EndReason.PAUSE_TIMEOUT,
     EndReason.BATTERY, EndReason.FAULT}
)  # fmt: skip
ENDED_BY_COMMAND = frozenset({EndReason.STOPPED, EndReason.VENTED, EndReason.FAULT,
                              EndReason.BATTERY})  # fmt: skip
ENDED_BY_BUTTON = frozenset({EndReason.REMOTE, EndReason.FAULT, EndReason.BATTERY})
ENDED_BY_LINK_DOWN = frozenset({EndReason.LINK_LOST})
ENDED_BY_TAKEOVER = ENDED_BY_COMMAND | ENDED_BY_LINK_DOWN
"""A read whose HELLO replaces an authenticated link ends its session as a lost link (SPEC 12.3)."""

EMPTIED_MMHG = 10.0
VENTED_WITHIN_S = 10.0
"""SPEC 10.11: outside a session every chamber is below `EMPTIED_MMHG` this long after it was
told to empty, or a fault is latched."""

CHALLENGE_TICK_S = 0.001
"""The device's uptime, its challenge, is in whole ms: the model knows when it was sent to this."""
CHALLENGES_KEPT = 16
"""How many challenges the device holds (as `firmware_protocol.connection`)."""

TOLERANCE_S = 1e-6
"""Clock sums are float sums of many steps; the firmware itself allows 1e-9 per deadline."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One frame the device sent: the frame, its message, and whether it was new.

    A frame that is not new is one sent before, sent again (a remembered reply).
    """

    frame: Frame
    message: Message
    new: bool = True

    @property
    def wire(self) -> bytes:
        """The frame as the device encoded it, without its tag.

        The device writes canonical COBS; a reply sent again is signed anew (SPEC 12.3).
        """
        return replace(self.frame, auth=None).encode()


def _ref_seq(reply: Message) -> int:
    """The seq a reply quotes (every message of `REPLY_TYPES` has one)."""
    return reply.ref_seq  # type: ignore[attr-defined]


def _plain_hello(frame: Frame, message: Message | None) -> bool:
    # An unsigned HELLO opens an unauthenticated link on a device that does not
    # require pairing; a signed one depends on the keys the device holds
    # (`CheckedFirmware._hello_refused`).
    return isinstance(message, Hello) and frame.version == PROTOCOL_VERSION and frame.auth is None


def _decoded(frame: Frame, chambers: int) -> Message | None:
    """The command ``frame`` carries, or None when the link refuses it before the seq.

    A SET_CYCLE whose number of targets is not the device's number of chambers is
    malformed (SPEC 5.1), refused with the other payloads that do not decode.
    """
    if frame.version != PROTOCOL_VERSION or frame.msg_type not in COMMANDS:
        return None
    try:
        message = decode_message(frame.msg_type, frame.payload)
    except RemoteProtocolError:
        return None
    if isinstance(message, SetCycle) and len(message.targets_dmmhg) != chambers:
        return None
    return message


def _link_nonces(frames: Sequence[Frame], before: bytes | None,
                 after: bytes | None) -> list[set[bytes]]:  # fmt: skip
    """The link nonces each frame of a read may be signed under, as the device takes them.

    In the device's order (STOP and VENT first, SPEC 7.4): before the read's first
    HELLO, the link's nonce before the read; after its last, the nonce after the
    read; between two, either. No nonce where the link was not authenticated.
    """
    order = sorted(range(len(frames)), key=lambda i: frames[i].msg_type not in URGENT)
    hellos = [pos for pos, i in enumerate(order) if frames[i].msg_type == MessageType.HELLO]
    nonces: list[set[bytes]] = [set() for _ in frames]
    for pos, i in enumerate(order):
        if not hellos or pos < hellos[0]:
            allowed = {before}
        elif pos > hellos[-1]:
            allowed = {after}
        else:
            allowed = {before, after}
        nonces[i] = {n for n in allowed if n is not None}
    return nonces


def _signed_by(frame: Frame, key: bytes, counter: int, nonces: set[bytes]) -> bool:
    """Whether ``frame`` has a good tag under ``key`` and a counter above ``counter``.

    A HELLO is signed without a nonce, every later frame under one of ``nonces``
    (the link's when the device took it: see `_link_nonces`).
    """
    if frame.auth is None or frame.auth.counter <= counter:
        return False
    under = {b""} if frame.msg_type == MessageType.HELLO else nonces
    return any(frame.verify(key, nonce) for nonce in under)


def _allowed_after(expected: SessionState) -> set[SessionState]:
    # Right after any change the firmware samples: a fault may latch, or a low
    # battery end the session that just began.
    allowed = {expected, FAULT}
    if expected in IN_SESSION:
        allowed.add(IDLE)
    return allowed


class CheckedFirmware:
    """A `Firmware` whose every input goes through here, with every rule checked after it.

    Time moves only in `advance`; the other inputs happen at the current time.
    With ``paired`` the device holds `FUZZ_KEY` and takes guarded commands only
    in frames signed with it (see the module docstring).
    """

    def __init__(self, config: DeviceConfig, *, paired: bool = False) -> None:
        self.config = config
        self.fw = Firmware(config, now=0.0, memory=fuzz_memory(paired))
        self.enforced = paired or config.pairing_required
        """Whether the device must take guarded commands only in signed frames (SPEC 12):
        from what it was set up as, not from what it says of itself."""
        self.link_nonce: bytes | None = None
        """The nonce of the last CAPABILITIES the device sent: what a controller signs under."""
        self._counters = self._key_counters()
        self._taken_over = False
        """Whether the last read held a HELLO that replaced an authenticated link."""
        self._lone_signers: set[int] = set()
        """The held keys that sign the last read's frame, if it held one (with a fresh counter)."""
        self._lone_tx_known = False
        self._nonce_before: bytes | None = None
        self._signed_rx: float | None = None
        self._challenges: dict[int, float] = {}
        self._device_link: tuple[bytes, bytes] | None = None
        """The key and context the device must sign its own frames under, on a link opened
        with a held key (from the HELLO's counter and the CAPABILITIES' nonce)."""
        self._device_counter = 0
        self._hellos: dict[int, list[Frame]] = {}
        """The signed HELLO frames of the current read, by seq and in order: what a
        CAPABILITIES answers (two HELLOs with one seq open two links, SPEC 12.3)."""
        self._unpairs: set[int] = set()
        """The device's last challenges (its uptime in ms), oldest first, and when each was sent."""
        """When the last frame signed under a held key with a fresh counter arrived: an
        authenticated link's watchdog is fed by nothing else (SPEC 12.3)."""
        self.now = 0.0
        self.watchdog_s = config.watchdog_ms / 1000
        self._rx = FrameDecoder()  # the same bytes as the device's own decoder sees
        self._tx = FrameDecoder()  # the controller's end of what the device sends
        self._sent_replies: dict[int, set[bytes]] = {}
        # The ref_seqs of the replies sent since the link opened, oldest first, to know
        # which the device must still remember (the last 8, SPEC 4); None while the
        # model cannot tell. A re-sent reply keeps its old frame seq: ``_tx_next`` (the
        # seq of the device's next new frame) tells it from a new one.
        self._reply_log: list[int] | None = None
        self._uncached_here: set[int] = set()
        """Seqs of this read whose replies the device sends and forgets (SPEC 4)."""
        self._tx_next: int | None = None
        # The model of the link: a present controller, its newest accepted seq and
        # the time of its last frame. ``_certain`` is False after something the model
        # cannot follow (a signed HELLO the device may accept); it then takes presence
        # from the device and checks no seq rule until the next plain HELLO.
        self._present = False
        self._accepted: int | None = None
        self._last_rx = 0.0
        self._certain = True
        self._key_ids = self._paired_ids()
        """Key ids the device holds (before or after the current read)."""
        self._may_start = False
        """Whether the link may have let a START of the last read through (SPEC 4, 7.4)."""
        self._refused: set[int] = set()  # seqs the link refused since it opened
        self._paused_at: float | None = None
        self._idle_since: float | None = None
        """Since when the device has been seen idle (no session, no fault), unbroken."""
        self.sessions = 0
        """Sessions started so far (a measure of how deep an input went)."""
        self._check_state(self.fw.snapshot())

    # --- inputs ---------------------------------------------------------------------

    def advance(self, dt: float, *,
                keepalive: Callable[[int | None], bytes] | None = None) -> None:  # fmt: skip
        """Let ``dt`` seconds pass with nothing arriving, or only keepalives.

        ``keepalive`` makes the bytes of a KEEPALIVE that answers a challenge (the
        newest challenge the device sent, or None before any): on an authenticated
        link each must be signed anew. One arrives whenever 0.45 of the watchdog has
        passed, as from a live controller (with a challenge every quarter watchdog,
        that keeps the link; SPEC 7.3); no reply may come to it.
        """
        assert dt >= 0, "time runs forward"
        before = self.fw.snapshot()
        end = self.now + dt
        sent: list[Sent] = []
        if keepalive is None:
            self.now = end
            self.fw.advance(end)
        else:
            while self.now < end:
                self.now = min(self.now + 0.45 * self.watchdog_s, end)
                self.fw.advance(self.now)
                sent += self._drain()  # the challenges sent meanwhile, to be answered
                self._link_expiry()
                wire = keepalive(self.challenge)
                nonce = self.fw.conn.link_nonce
                self.fw.receive_data(wire, self.now)
                frames = self._rx.feed(wire)
                self._note_signed_keepalives(frames, {nonce} if nonce else set())
                _, may = self._follow_link(frames)
                assert not +may, "a KEEPALIVE is never answered"
        self._link_expiry()
        after = self.fw.snapshot()
        sent += self._drain()
        self._check_events(sent, before.state, after.state, ENDED_BY_TIME, may_start=False)
        assert not any(s.frame.msg_type in REPLY_TYPES for s in sent), "a reply to nothing"
        if before.state in IN_SESSION and after.state in IN_SESSION:
            # Nothing but a command or a button can pause or resume a session.
            assert after.state == before.state, f"{before.state.name} -> {after.state.name}"
            ran = after.elapsed_s - before.elapsed_s
            spent = before.lease_left_s - after.lease_left_s
            if before.state == RUNNING:
                assert abs(ran - dt) <= TOLERANCE_S, f"ran {ran} s of {dt} s"
                assert abs(spent - dt) <= TOLERANCE_S, f"spent {spent} s of lease in {dt} s"
            else:
                assert ran == 0, "paused time does not count toward the cap"
                assert spent == 0, "paused time does not spend the lease"
        self._check_state(after)

    def feed(self, data: bytes) -> None:
        """Bytes arrive from the link in one read."""
        self._settle()
        fw = self.fw
        before = fw.snapshot()
        present_before, accepted_before, certain_before = (
            self._present, self._accepted, self._certain)  # fmt: skip
        log_before = None if self._reply_log is None else list(self._reply_log)
        frames = self._rx.feed(data)
        keys_before = self._paired_ids()
        held, link_key, nonce_before = self._counters, fw.conn.link_key_id, fw.conn.link_nonce
        tx_known = self._tx_next is not None
        decoded_before = fw.conn.stats.frames
        self._hellos = {}
        for f in frames:
            if f.msg_type == MessageType.HELLO and f.auth is not None:
                self._hellos.setdefault(f.seq, []).append(f)
        self._unpairs = {
            f.seq for f in frames if f.msg_type == MessageType.UNPAIR and f.auth is not None
        }
        fw.receive_data(data, self.now)
        assert fw.conn.stats.frames - decoded_before == len(frames), "decoders disagree"
        # A pairing made or dropped within the read: a HELLO under either key may be good.
        self._key_ids = keys_before | self._paired_ids()
        if any(self._hello_opens(f, self._message(f)) for f in frames):
            # The device numbers its frames from 1 again, and its replies to the frames
            # of this read reach its new reply cache in an order the model does not
            # follow; a lone plain HELLO starts the log afresh below. (A HELLO it must
            # refuse changes neither.)
            self._tx_next = None
            self._reply_log = None
        after = fw.snapshot()
        must, may = self._follow_link(frames)
        sent = self._drain()
        self._uncached_here = set()
        answers = [s.message for s in sent if isinstance(s.message, Capabilities)]
        if answers and fw.conn.link_key_id is not None and fw.conn.device_signs:
            # SPEC 12.3: the link that remains is the last HELLO's, and what the device
            # says on it from now on is signed for it, from its CAPABILITIES on.
            assert answers[-1].link_nonce == fw.conn.link_nonce, (
                "the last CAPABILITIES is not the link's"
            )
            assert self._device_link is not None, "an authenticated link opened unsigned"
        replies = Counter(_ref_seq(s.message) for s in sent if s.frame.msg_type in REPLY_TYPES)
        # At most one reply to every command frame, and one to every request (SPEC 4).
        assert not replies - may, f"replies to {dict(replies)}, at most {dict(may)}"
        assert not must - replies, f"replies to {dict(replies)}, at least {dict(must)}"

        messages = [self._message(f) for f in frames]
        # Which held keys sign each frame, with a counter above the key's last.
        signers = [
            {key_id for key_id, (key, counter) in held.items() if _signed_by(f, key, counter, ns)}
            for f, ns in zip(frames, _link_nonces(frames, nonce_before, fw.conn.link_nonce),
                             strict=True)
        ]  # fmt: skip
        authentic = [f for f, ids in zip(frames, signers, strict=True) if ids]
        for f, ids in zip(frames, signers, strict=True):
            acked = any(isinstance(s.message, Ack) and s.message.ref_seq == f.seq and s.frame.auth
                        for s in sent)  # fmt: skip
            if f.msg_type == MessageType.UNPAIR and ids and acked:
                # SPEC 12.4: the key that signed an UNPAIR the device took is forgotten,
                # whatever link a HELLO in the same read opened since.
                assert not ids & self._paired_ids(), f"keys {ids} still held after their UNPAIR"
        if any(f.msg_type == MessageType.HELLO for f in authentic):
            self._signed_rx = self.now  # a link opened: its watchdog starts now
        self._note_signed_keepalives(authentic, None)
        if self.enforced:
            signed = {
                key_id: {f.auth.counter for f, ids in zip(frames, signers, strict=True)
                         if key_id in ids and f.auth is not None}
                for key_id in held
            }  # fmt: skip
            self._check_guarded(authentic, held, signed, before, after)
            # SPEC 12: a START must also carry a good tag and a fresh counter.
            self._may_start &= any(isinstance(self._message(f), Start) for f in authentic)
        # Only a START the link let through may begin a session: with STOP and VENT
        # taken first, one older than a stop of its read is refused (SPEC 4, 7.4).
        # A HELLO that takes an authenticated link ends its session (SPEC 12.3): a
        # plain one, or one signed anew under another key.
        takeover = link_key is not None and any(
            _plain_hello(f, m) or (isinstance(m, Hello) and bool(ids - {link_key}))
            for f, m, ids in zip(frames, messages, signers, strict=True)
        )
        self._taken_over = takeover
        self._lone_signers = signers[0] if len(frames) == 1 else set()
        self._lone_tx_known, self._nonce_before = tx_known, nonce_before
        self._check_events(sent, before.state, after.state,
                           ENDED_BY_TAKEOVER if takeover else ENDED_BY_COMMAND,
                           may_start=self._may_start, source=StartSource.LINK)  # fmt: skip
        halts = [m for m in messages if m is not None and m.TYPE in URGENT]
        if halts:
            # SPEC 7.4: a stop or vent wins over everything read with it, whoever
            # signed which: nothing of the session table runs, so no session is on
            # after the read, no fault unlatches, and no setting changes.
            assert after.state in (IDLE, FAULT), f"{after.state.name} after a stop"
            assert after.state == FAULT or before.state != FAULT, "a fault unlatched"
            assert (after.mode, after.intensity) == (before.mode, before.intensity), (
                "a setting changed in a read with a stop"
            )
            others = {f.seq for f in frames if f.msg_type not in PREEMPTIBLE}
            for item in sent:
                if (isinstance(item.message, Ack) and item.new
                        and item.message.ref_seq not in others):  # fmt: skip
                    raise AssertionError(f"{item.message}: a command read with a stop ran")
        if len(frames) == 1:
            self._check_lone_frame(frames[0], messages[0], sent, before, after,
                                   present_before, accepted_before, certain_before,
                                   log_before)  # fmt: skip
            if _plain_hello(frames[0], messages[0]):
                self._reply_log = [frames[0].seq]
        if not self._present:
            self._reply_log = None
        if any(m is not None and m.TYPE in PAUSE_CLOCK for m in messages):
            self._paused_at = None  # a pause may have begun afresh: its clock starts now
        self._check_state(after)

    @property
    def challenge(self) -> int | None:
        """The newest challenge the device sent (its uptime then): what a keepalive answers."""
        return next(reversed(self._challenges), None)

    def _issued(self, frame: Frame) -> float | None:
        """When the challenge a KEEPALIVE ``frame`` answers was sent, if it is one still held.

        To the millisecond below: the device sends its uptime in whole milliseconds.
        """
        if frame.version != PROTOCOL_VERSION or frame.msg_type != MessageType.KEEPALIVE:
            return None
        message = self._message(frame)
        assert message is None or isinstance(message, KeepAlive)
        if message is None or message.challenge is None:
            return None
        return self._challenges.get(message.challenge)

    def _note_signed_keepalives(self, frames: Iterable[Frame], nonces: set[bytes] | None) -> None:
        """An authenticated link lives from the challenges its signed keepalives answer.

        ``nonces``: check each frame's tag under these; None: they are known good.
        """
        for frame in frames:
            issued = self._issued(frame)
            if issued is None:
                continue
            if nonces is not None and not any(
                _signed_by(frame, key, counter, nonces) for key, counter in self._counters.values()
            ):
                continue
            if self._signed_rx is None or issued > self._signed_rx:
                self._signed_rx = issued

    def _signed_link(self, frame: Frame, capabilities: Capabilities) -> tuple[bytes, bytes] | None:
        """The key and context of a link that ``capabilities`` opens with a nonce, if any.

        SPEC 12.3: each CAPABILITIES is signed for the link its own HELLO opened; the
        HELLOs of one seq in a read are answered in the order they came (one refused,
        or a copy of the one before, gets none), so each is matched to the first
        of them it is signed for, and those before it are done with.
        """
        nonce = capabilities.link_nonce
        hellos = self._hellos.get(capabilities.ref_seq)
        if nonce is None or not hellos:
            return None if nonce is None else self._device_link  # sent again: the same link
        held = False
        for i, hello in enumerate(hellos):
            message = self._message(hello)
            assert isinstance(message, Hello)
            assert hello.auth is not None
            key = self._held_key(message.key_id)
            if key is None:
                continue
            held = True
            context = hello.auth.counter.to_bytes(4, "little") + nonce
            if frame.verify(key, context):
                del hellos[:i]  # this HELLO may be answered again (a copy of it later)
                self._device_counter = 0
                return key, context
        assert not held, (
            f"CAPABILITIES {capabilities.ref_seq} is not signed for its own HELLO's link"
        )
        return None

    def _held_key(self, key_id: int | None) -> bytes | None:
        for held_id, (key, _) in self._counters.items():
            if held_id == key_id:
                return key
        return None

    def signing_nonce(self, msg_type: int) -> bytes:
        """The nonce a controller signs a frame of ``msg_type`` under (SPEC 12.3).

        A HELLO is signed without one; every later frame under the nonce of the
        last CAPABILITIES, or none while the device has sent none.
        """
        return b"" if msg_type == MessageType.HELLO else self.link_nonce or b""

    def _check_guarded(self, authentic: list[Frame], held: dict[int, tuple[bytes, int]],
                       signed: dict[int, set[int]], before: Snapshot,
                       after: Snapshot) -> None:  # fmt: skip
        """SPEC 12 on a device that enforces it: what ``authentic`` frames may have done.

        ``signed`` holds, for each key held before the read, the counters of the
        read's frames signed under it (good tag, the link's nonce, a fresh counter).
        """
        now = self._key_counters()
        for key_id, (_, counter) in now.items():
            if key_id not in held:
                continue  # paired in this read (no fuzzed device opens its window)
            was = held[key_id][1]
            assert counter >= was, f"key {key_id}'s counter went back from {was} to {counter}"
            if counter != was:
                moved = f"key {key_id}'s counter moved to {counter} unsigned"
                assert counter in signed[key_id], moved
        self._counters = now
        # Each guarded change needs a signed command that makes it: stop, vent, a
        # fault or a takeover may end a session without one (SPEC 12, 7.4).
        kinds = {f.msg_type for f in authentic}
        T = MessageType
        if T.UNPAIR not in kinds:
            assert now.keys() == held.keys(), "a key forgotten with no signed UNPAIR"
        was, state = before.state, after.state
        if was == FAULT and state != FAULT:
            assert T.RESET_FAULT in kinds, f"a fault unlatched to {state.name} unsigned"
        if state in IN_SESSION and was != state:
            needs = {RUNNING: {T.START, T.RENEW, T.RESUME}, PAUSED: {T.PAUSE}}[state]
            assert kinds & needs, f"{was.name} -> {state.name} with no signed command for it"
        if state in IN_SESSION and was in IN_SESSION:
            if after.mode != before.mode:
                assert kinds & {T.START, T.RENEW, T.SET_MODE}, "mode changed unsigned"
            if after.intensity != before.intensity:
                assert kinds & {T.START, T.RENEW, T.SET_INTENSITY}, "intensity changed unsigned"
            if after.lease_left_s != before.lease_left_s:
                assert kinds & {T.START, T.RENEW}, "lease changed unsigned"

    def press(self, button: Button) -> None:
        """A button on the handheld remote is pressed."""
        self._settle()
        before = self.fw.snapshot()
        self.fw.press(button, self.now)
        after = self.fw.snapshot()
        sent = self._drain()
        if not self.config.remote:
            assert not sent, "a device without a remote sends nothing for a button"
            assert after == before, "a device without a remote has no buttons"
            return
        first = sent[0].message if sent else None
        assert isinstance(first, ButtonPressed), "BUTTON goes first"
        assert first.button == button, f"BUTTON {first.button!r} for {button!r}"
        self._check_events(sent, before.state, after.state, ENDED_BY_BUTTON,
                           may_start=button == Button.POWER, source=StartSource.REMOTE)  # fmt: skip
        state = before.state
        if button == Button.POWER:
            expected = {IDLE: RUNNING, RUNNING: IDLE, PAUSED: IDLE, FAULT: IDLE}[state]
            allowed = _allowed_after(expected) | {state if state in (IDLE, FAULT) else IDLE}
        elif button == Button.PAUSE:
            allowed = _allowed_after({RUNNING: PAUSED, PAUSED: RUNNING}.get(state, state))
        else:
            allowed = _allowed_after(state)
            assert 1 <= after.intensity <= len(self.config.levels_mmhg), "a level not offered"
            if button == Button.MODE:
                assert after.mode != Mode.CYCLE, "MODE steps through the fixed modes only"
        assert after.state in allowed, f"{button.name} in {state.name} led to {after.state.name}"
        if button in (Button.PAUSE, Button.POWER):
            self._paused_at = None  # a pause may have begun afresh: its clock starts now
        self._check_state(after)

    def link_down(self) -> None:
        """The transport reports the link down (port closed, BLE disconnected)."""
        self._settle()
        before = self.fw.snapshot()
        link_session = bool(self.fw.status().flags & StatusFlag.LINK_SESSION)
        self.fw.link_down(self.now)
        after = self.fw.snapshot()
        sent = self._drain()
        self._present, self._accepted, self._certain = False, None, True
        self._reply_log = None
        self._check_events(sent, before.state, after.state, ENDED_BY_LINK_DOWN, may_start=False)
        if link_session:
            assert after.state not in IN_SESSION, "a link session outlived its link"
            assert after.dump, "a session ended by link loss vents (SPEC 10.3)"
        self._check_state(after)

    def inject(self, *, pump_stuck_on: bool | None = None, sensor_offset_mmhg: float | None = None,
               inlet_stuck_open: Iterable[int] | None = None,
               exhaust_stuck_shut: Iterable[int] | None = None) -> None:  # fmt: skip
        """Break (or mend) the hardware under the firmware; None leaves a fault as it is."""
        faults = self.fw.plant.faults
        if pump_stuck_on is not None:
            faults.pump_stuck_on = pump_stuck_on
        if sensor_offset_mmhg is not None:
            faults.sensor_offset_mmhg = sensor_offset_mmhg
        chambers = self.config.chamber_count
        if inlet_stuck_open is not None:
            faults.inlet_stuck_open = {i % chambers for i in inlet_stuck_open}
        if exhaust_stuck_shut is not None:
            faults.exhaust_stuck_shut = {i % chambers for i in exhaust_stuck_shut}
        # A part that breaks now gets its own time to be vented or latched (SPEC 10.11).
        self._idle_since = None
        self._check_state(self.fw.snapshot())

    # --- the link model -------------------------------------------------------------

    def _settle(self) -> None:
        """Run what is due at the current time, so an input meets a device at rest."""
        before = self.fw.state
        self.fw.advance(self.now)
        self._link_expiry()
        sent = self._drain()
        self._check_events(sent, before, self.fw.state, ENDED_BY_TIME, may_start=False)

    def _link_expiry(self) -> None:
        present = self._device_sees_controller()
        if not self._certain:
            # The model does not follow an authenticated link: the device says when it
            # expired. Only a fresh signed frame feeds its watchdog (SPEC 12.3), and
            # every frame the device may count as one passes `_signed_by`.
            if present and self.fw.conn.link_key_id is not None:
                alive = self._signed_rx is not None and (
                    self.now < self._signed_rx + self.watchdog_s + CHALLENGE_TICK_S
                )
                assert alive, "an authenticated link outlived its last fresh signed frame"
            self._present = present
            if not present:
                self._accepted, self._certain, self._reply_log = None, True, None
            return
        assert self.fw.conn.link_key_id is None, "an authenticated link the model took as open"
        expiry = self._last_rx + self.watchdog_s
        if (
            self._present
            and self.now >= expiry
            and not (present and self.now < expiry + CHALLENGE_TICK_S)
        ):
            # SPEC 7.3: gone a watchdog after the newest challenge answered (the device
            # knows its moment to the tick; the model, from the uptime, to the ms below).
            self._present, self._accepted = False, None
            self._reply_log = None
        assert present == self._present, f"controller present: {present}, model {self._present}"

    def _device_sees_controller(self) -> bool:
        return self.fw.conn.state == LinkState.READY

    def _paired_ids(self) -> set[int]:
        """The key ids of the controllers the device holds a pairing for (SPEC 12.2)."""
        return set(self.fw.memory.pairings.pairings)

    def _key_counters(self) -> dict[int, tuple[bytes, int]]:
        """Each held key by id, with the highest counter the device accepted under it."""
        return {p.key_id: (p.key, p.counter) for p in self.fw.memory.pairings}

    def _hello_refused(self, frame: Frame, message: Message | None) -> bool:
        """Whether ``frame`` is a signed HELLO under a key the device does not hold.

        SPEC 12.3: the device answers it NAK NOT_AUTHENTICATED and changes nothing
        (not the present controller, not the newest seq), and the model stays
        certain. A HELLO under a key the device holds may open an authenticated link.
        """
        return (
            isinstance(message, Hello)
            and frame.auth is not None
            and self.fw.conn.pairings is not None
            and message.key_id not in self._key_ids
        )

    def _message(self, frame: Frame) -> Message | None:
        """The command ``frame`` carries to this device, or None if the link refuses it."""
        return _decoded(frame, self.config.chamber_count)

    def _hello_opens(self, frame: Frame, message: Message | None) -> bool:
        """Whether ``frame`` is a HELLO the device may take (it opens a new link)."""
        return isinstance(message, Hello) and not self._hello_refused(frame, message)

    def _follow_link(self, frames: Sequence[Frame]) -> tuple[Counter[int], Counter[int]]:
        """Move the link model through ``frames``; how many replies each seq must and may get.

        Every command frame but a KEEPALIVE gets exactly one reply (SPEC 4), with two
        exceptions: a re-send that arrives in the same read as its original gets
        none of its own (the original's reply answers both), and while the model is
        uncertain it cannot tell a re-send from a command.

        It also sets ``_may_start``: whether a START of ``frames`` may pass the link,
        taken in the device's order (STOP and VENT first, SPEC 7.4), so that one
        not newer than a stop's seq does not.
        """
        must: Counter[int] = Counter()
        may: Counter[int] = Counter()
        accepted_here: dict[int, Frame] = {}
        preempted_here: set[int] = set()
        uncached = self._uncached_here
        self._may_start = False
        # A read with a STOP or VENT refuses every command of the session table that
        # the link takes with it (PREEMPTED, remembered as its reply; SPEC 7.4).
        halted = len(frames) > 1 and any(
            f.msg_type in URGENT and f.version == PROTOCOL_VERSION for f in frames
        )
        # Within one read the device takes STOP and VENT first (SPEC 7.4).
        for frame in sorted(frames, key=lambda f: f.msg_type not in URGENT):
            if frame.msg_type in DEVICE_TYPES:
                continue  # dropped silently, and no proof of life
            message = self._message(frame)
            if frame.version == PROTOCOL_VERSION and frame.msg_type == MessageType.KEEPALIVE:
                # Proof of life only if it answers a challenge still held (SPEC 7.3);
                # the watchdog then runs from when that challenge was sent.
                issued = self._issued(frame)
                if self._present and self._certain and issued is not None:
                    self._last_rx = max(self._last_rx, issued)
                continue  # never answered
            seq = frame.seq
            may[seq] += 1
            if isinstance(message, Hello):
                must[seq] += 1
                if _plain_hello(frame, message):
                    self._present, self._accepted, self._certain = True, seq, True
                    self._last_rx = self.now
                    accepted_here.clear()
                    # The device empties its reply cache now, but answers the frames
                    # read with the HELLO only after it: those replies stay cached.
                    self._refused = {f.seq for f in frames}
                elif self._hello_refused(frame, message):
                    # Refused and forgotten (SPEC 12.3): the link stays as it was.
                    self._refused.add(seq)
                    uncached.add(seq)
                else:
                    self._certain = False  # a key the device holds: beyond the model
            elif (
                self.enforced and self._certain and self._present
                and message is not None and frame.msg_type in AUTHENTICATED
            ):  # fmt: skip
                # A link the model follows is not authenticated: the device refuses a
                # guarded command before it looks at the seq, which does not move.
                must[seq] += 1
                self._refused.add(seq)
                uncached.add(seq)
                continue
            elif message is None or frame.msg_type in URGENT or not self._present:
                must[seq] += 1  # refused by the link, or taken whatever the seq
                if isinstance(message, Start) and not self._certain:
                    self._may_start = True  # whether the device sees a controller is unknown
                if message is None:
                    self._refused.add(seq)
                    uncached.add(seq)  # a refusal is sent and forgotten
                elif self._accepted is not None and not seq_newer(seq, self._accepted):
                    uncached.add(seq)  # a stop run again: its ACK is not remembered
            elif not self._certain or self._accepted is None:
                # A re-send or not: the model cannot tell.
                self._may_start |= isinstance(message, Start)
            elif seq_newer(seq, self._accepted):
                must[seq] += 1
                if halted and frame.msg_type in PREEMPTIBLE:
                    # Refused at once and remembered: a re-send in this same read
                    # already finds its reply, unlike an accepted command's.
                    preempted_here.add(seq)
                self._may_start |= isinstance(message, Start)
            elif seq != self._accepted:
                must[seq] += 1  # its reply again, or STALE_SEQUENCE (not remembered)
                uncached.add(seq)
            elif accepted_here.get(seq) == frame and seq not in self._refused:
                may[seq] -= 1  # its original's reply is on its way
            else:
                # The newest accepted seq again: its reply again (from a read before) or
                # STALE_SEQUENCE (not the bytes of the frame accepted in this read, or
                # that frame's reply left the cache), which is not remembered.
                uncached.add(seq)
            # A newer seq becomes the newest accepted, a STOP's or VENT's too (SPEC 4).
            if (
                message is not None
                and not isinstance(message, Hello)
                and self._present
                and self._certain
                and self._accepted is not None
                and seq_newer(seq, self._accepted)
            ):
                self._accepted = seq
                if seq not in preempted_here:
                    accepted_here[seq] = frame
        present = self._device_sees_controller()
        if self._certain:
            assert present == self._present, f"controller present: {present}, model {self._present}"
        else:
            self._present = present
            if not present:
                self._accepted, self._certain = None, True
        if halted:
            self._may_start = False
        if uncached & (accepted_here.keys() | preempted_here):
            # A seq whose reply is remembered and another's not: which is which is
            # beyond the model, so it stops checking what the cache holds.
            self._reply_log = None
        return must, may

    # --- what the device sent -------------------------------------------------------

    def _drain(self) -> list[Sent]:
        """Take what the device sent since the last call; assert that it is all well formed."""
        data = self.fw.data_to_send()
        assert not data or data.endswith(b"\x00"), "the device sent part of a frame"
        stats = self._tx.stats
        drops = stats.resyncs
        sent = []
        for frame in self._tx.feed(data):
            assert frame.version == PROTOCOL_VERSION, f"the device sent version {frame.version}"
            assert frame.msg_type in DEVICE_TYPES, f"the device sent type 0x{frame.msg_type:02x}"
            # Decoding is fuzzed on its own (check_message); here it need only succeed.
            try:
                message = decode_message(frame.msg_type, frame.payload)
            except RemoteProtocolError as error:
                raise AssertionError(f"the device sent an unreadable {frame}: {error}") from None
            new = self._tx_next is None or frame.seq == self._tx_next
            if not isinstance(message, Challenge):
                # A challenge is the link's own business (SPEC 7.3): noted below, and
                # kept out of the answers the rules of each command judge.
                sent.append(Sent(frame, message, new))
            if new:
                self._tx_next = (frame.seq + 1) & 0xFFFF
            if isinstance(message, Capabilities):
                # New or sent again, it is the present link's: the device forgets its
                # replies at every HELLO.
                self.link_nonce = message.link_nonce
                self._device_link = self._signed_link(frame, message)
            elif self._device_link is not None and frame.msg_type not in REPLY_TYPES:
                # SPEC 12.3: on an authenticated link the device signs what it says of
                # itself, for that link, with a counter of its own that only goes up.
                # (A reply to a stranger's frame goes unsigned: those are not checked.)
                key, context = self._device_link
                assert frame.verify(key, context), f"the device's {message} is not signed"
                assert frame.auth is not None
                assert frame.auth.counter > self._device_counter, "a device counter went back"
            if frame.auth is not None:
                self._device_counter = max(self._device_counter, frame.auth.counter)
            if isinstance(message, Ack) and message.ref_seq in self._unpairs and frame.auth:
                self._device_link = None  # the key is forgotten after its ACK (SPEC 12.4)
            if isinstance(message, Challenge):
                challenges = self._challenges
                challenges.pop(message.challenge, None)
                challenges[message.challenge] = message.uptime_ms / 1000
                while len(challenges) > CHALLENGES_KEPT:
                    del challenges[next(iter(challenges))]
            if frame.msg_type in REPLY_TYPES:
                ref = _ref_seq(message)
                self._sent_replies.setdefault(ref, set()).add(Sent(frame, message).wire)
                if new and self._reply_log is not None and ref not in self._uncached_here:
                    self._reply_log.append(ref)
        assert stats.resyncs == drops, "the device sent a block that is not a frame"
        return sent

    def _check_events(self, sent: list[Sent], before: SessionState, after: SessionState,
                      may_end: frozenset[EndReason], *, may_start: bool,
                      source: StartSource | None = None) -> None:  # fmt: skip
        """Session events tell the truth: one start per session, one end per start.

        And every end is followed by a STATUS, with or without a present controller
        (SPEC 7.5, 8.4): the listener of a link just lost learns from it that the
        chambers vent.
        """
        on = before in IN_SESSION
        for at, item in enumerate(sent):
            message = item.message
            if isinstance(message, SessionStarted):
                # SPEC 10.4: no self-resume; only a START or the POWER button begins one.
                assert may_start, "a session began with no START the link took, nor POWER"
                assert not on, "SESSION_STARTED during a session"
                assert message.source == source, f"{message} here"
                on = True
                self.sessions += 1
            elif isinstance(message, SessionEnded):
                assert on, "SESSION_ENDED without a session"
                assert message.reason in may_end, f"a session ended {message.reason!r} here"
                assert message.pressure_s <= self.config.session_cap_s, f"{message} past the cap"
                assert any(isinstance(later.message, Status) for later in sent[at + 1 :]), (
                    f"{message} and no STATUS after it"
                )
                on = False
        assert on == (after in IN_SESSION), f"events say {on}, state {after.name}"

    def _check_lone_frame(self, frame: Frame, message: Message | None, sent: list[Sent],
                          before: Snapshot, after: Snapshot, present: bool,
                          accepted: int | None, certain: bool,
                          log: list[int] | None) -> None:  # fmt: skip
        """The answer to a read that held exactly one frame (SPEC 4, 7.2 and 8)."""
        seq, kind = frame.seq, frame.msg_type
        first = sent[0].message if sent else None
        # Signed under a held key with a fresh counter, and answered with a new reply
        # that is no refusal of the link or of the tag: a command the link took.
        refused = isinstance(first, Nak) and first.error in LINK_ERRORS | AUTH_ERRORS
        taken_signed = bool(self._lone_signers) and self._lone_tx_known and bool(sent) and (
            sent[0].new and not refused)  # fmt: skip

        def only_nak(error: ErrorCode) -> None:
            assert [s.message for s in sent] == [Nak(seq, error)], f"{sent} is not NAK {error!r}"
            assert after == before, f"NAK {error.name} changed the device"

        def ack_and_status() -> None:
            assert first == Ack(seq), f"{message} answered {first}"
            assert len(sent) == 2, f"{message} answered {sent}"
            assert isinstance(sent[1].message, Status), "ACK, then STATUS"

        if kind in DEVICE_TYPES:
            assert not sent, "a device's message sent to the device was answered"
            assert after == before, "a device's message sent to the device did something"
        elif frame.version != PROTOCOL_VERSION:
            only_nak(ErrorCode.UNSUPPORTED_VERSION)
        elif kind not in COMMANDS:
            only_nak(ErrorCode.UNKNOWN_MESSAGE)
        elif message is None:
            only_nak(ErrorCode.BAD_PAYLOAD)
        elif kind == MessageType.KEEPALIVE:
            assert not sent, "KEEPALIVE is never answered"
            assert after == before, "KEEPALIVE is proof of life only"
        elif isinstance(message, Hello):
            if self._hello_refused(frame, message):
                only_nak(ErrorCode.NOT_AUTHENTICATED)
            elif frame.auth is not None and message.key_id not in self._lone_signers:
                # Under a held key, but a replay or a bad tag: refused, or a duplicate
                # of the HELLO that opened this link answered again; nothing changes.
                assert after == before, "a signed HELLO without a fresh counter changed the device"
                assert self.fw.conn.link_nonce == self._nonce_before, "a stale HELLO opened a link"
                for item in sent:
                    again = item.message
                    nak = isinstance(again, Nak) and again.error in AUTH_ERRORS
                    resent = isinstance(again, Capabilities) and again.link_nonce == (
                        self._nonce_before) and again.ref_seq == seq  # fmt: skip
                    assert nak or resent, f"a stale signed HELLO answered {again}"
            else:
                ended = self._taken_over and isinstance(first, SessionEnded)
                if ended:
                    # The session of the authenticated link it took ends first, with
                    # its STATUS (the end itself is checked with the events).
                    statuses = [s.message for s in sent[1:2] if isinstance(s.message, Status)]
                    assert statuses, "SESSION_ENDED, then STATUS"
                    sent = sent[2:]
                    first = sent[0].message if sent else None
                assert isinstance(first, Capabilities), f"HELLO answered {first}"
                assert first.ref_seq == seq, f"CAPABILITIES for {first.ref_seq}, not {seq}"
                assert sent[0].frame.seq == 1, "a device answering a HELLO starts again at 1"
                assert len(sent) == 2, f"HELLO answered {sent}"
                assert isinstance(sent[1].message, Status), "CAPABILITIES, then one STATUS"
                if not ended:
                    assert after.state == before.state, "HELLO never changes the session"
                nonce = first.link_nonce
                if frame.auth is None:
                    assert nonce is None, "a link opened without a key has a nonce"
                else:  # SPEC 12.3: a fresh nonce, the one the device now checks tags under
                    assert nonce is not None, "an authenticated link without a nonce"
                    assert len(nonce) == 8, f"a nonce of {len(nonce)} bytes"
                    assert nonce == self.fw.conn.link_nonce, "CAPABILITIES gave another nonce"
                    assert nonce != self._nonce_before, "the nonce of the link before"
        elif kind in URGENT:
            assert first == Ack(seq), f"{message} answered {first}"
            if before.state == FAULT:
                assert after.state == FAULT, "STOP and VENT leave a latched fault latched"
            else:
                # A sample right after it may latch a fault; nothing else may follow.
                assert after.state in (IDLE, FAULT), f"{after.state.name} after {message}"
                if before.state not in IN_SESSION:
                    flags = self.fw.status().flags
                    assert flags & StatusFlag.STOP_SINCE_END, "a stop with no session is remembered"
            if kind == MessageType.VENT:
                assert after.dump, "VENT opens the dump valve"
        elif not present:
            if kind == MessageType.GET_STATUS:
                ack_and_status()
            elif kind in NEED_HELLO:
                only_nak(ErrorCode.NO_HELLO)
        elif certain and self.enforced and kind in AUTHENTICATED:
            only_nak(ErrorCode.NOT_AUTHENTICATED)  # the link is not authenticated
        elif certain and accepted is not None and not seq_newer(seq, accepted):
            # SPEC 4: a re-sent command never runs twice; its reply is sent again.
            assert after == before, f"a stale {message} changed the device"
            remembered = log is not None and len(set(log)) == len(log) and seq in log[-8:]
            assert len(sent) == 1, f"a stale {message} got {sent}"
            repeated = sent[0]
            assert repeated.message == Nak(seq, ErrorCode.STALE_SEQUENCE) or (
                repeated.wire in self._sent_replies.get(seq, set())
            ), f"a stale {message} got {repeated.message}, not a reply sent before"
            if remembered:
                # One reply per seq since the link opened, and this one among the
                # last 8: the device remembers it and must send it again.
                assert not repeated.new, f"the reply to {seq} was forgotten: {repeated.message}"
        elif not certain and kind in STATEFUL_COMMANDS and taken_signed:
            # The authenticated link's controller: a command its link took, held to
            # the state table as on an open link.
            self._check_command(message, sent, before, after)
        elif not certain:
            pass  # stale or not, the model cannot tell: only the rules of every read apply
        elif kind == MessageType.GET_STATUS:
            ack_and_status()
            assert after == before, "GET_STATUS changed the device"
        elif kind in STATEFUL_COMMANDS:
            self._check_command(message, sent, before, after)

    def _check_command(self, message: Message, sent: list[Sent], before: Snapshot,
                       after: Snapshot) -> None:  # fmt: skip
        """A command the link accepted: the state table and the value checks (SPEC 8)."""
        reply = sent[0].message if sent else None
        outcome = command_outcome(before.state, message.TYPE)
        if isinstance(reply, Nak):
            assert reply.error not in LINK_ERRORS, f"{message} accepted, then {reply.error!r}"
            if isinstance(outcome, ErrorCode):
                assert reply.error == outcome, f"{message} in {before.state.name}: {reply.error!r}"
            assert len(sent) == 1, f"refused {message}, and sent {sent}"
            assert after == before, f"refused {message} changed the device"
            return
        assert isinstance(reply, Ack), f"{message} answered {reply}"
        assert not isinstance(outcome, ErrorCode), f"{message} in {before.state.name} was taken"
        assert after.state in _allowed_after(outcome), f"{message}: {after.state.name}"
        if after.state not in IN_SESSION:
            return
        if isinstance(message, Start | Renew | SetMode):
            assert after.mode == message.mode, f"{message} left mode {after.mode}"
        if isinstance(message, Start | Renew) and message.mode != Mode.CYCLE:
            assert after.intensity == message.intensity, f"{message}: {after.intensity}"
        if isinstance(message, SetIntensity):
            assert after.intensity == message.level, f"{message}: {after.intensity}"
        if isinstance(message, Start | Renew):
            assert after.lease_left_s == message.lease_s, f"{message}: {after.lease_left_s} s"
            assert after.elapsed_s == before.elapsed_s, "a START renews the lease, not the cap"

    # --- the device's state -----------------------------------------------------------

    def _check_state(self, snap: Snapshot) -> None:
        """Rules on the true state that hold at every moment (SPEC 8 and 10)."""
        cfg = self.config
        plant = self.fw.plant
        ceiling = cfg.ceiling_mmhg
        # SPEC 10.1: no chamber ever exceeds the ceiling, whatever the firmware does.
        assert max(snap.pressures_mmhg) <= ceiling, f"{snap.pressures_mmhg} above {ceiling}"
        assert plant.max_pressure_seen <= ceiling, f"{plant.max_pressure_seen} above {ceiling}"
        # SPEC 10.6: the session cap; 10.2: the lease.
        assert snap.elapsed_s <= cfg.session_cap_s + TOLERANCE_S, f"{snap.elapsed_s} s > cap"
        assert 0.0 <= snap.lease_left_s <= max(cfg.max_lease_s, cfg.remote_session_s)
        state = snap.state
        if state in IN_SESSION:
            if self._paused_at is None and state == PAUSED:
                self._paused_at = self.now
            if state == RUNNING:
                self._paused_at = None
                assert snap.lease_left_s > 0.0, "running on a spent lease"
            else:
                # SPEC 8.4: a pause ends at the pause limit.
                assert self._paused_at is not None, "paused since when?"
                paused = self.now - self._paused_at
                assert paused < cfg.pause_limit_s + TOLERANCE_S, f"paused {paused} s: too long"
                assert not any(plant.inlets), "PAUSE releases every chamber"
                assert not plant.pump, "the pump runs in PAUSED"
        else:
            self._paused_at = None
            assert snap.elapsed_s == 0.0, f"elapsed time without a session in {state.name}"
            assert snap.lease_left_s == 0.0, f"a lease without a session in {state.name}"
            # SPEC 10.9: valves fail open in IDLE and FAULT.
            assert all(plant.exhausts), f"an exhaust shut in {state.name}"
            assert not any(plant.inlets), f"an inlet open in {state.name}"
            assert not plant.pump, f"the pump on in {state.name}"
        if state != IDLE:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = self.now
        elif self.now - self._idle_since >= VENTED_WITHIN_S:
            # SPEC 10.11: no pressure outside a session. Within its bound after a session
            # ends every chamber is vented, or a fault has latched (and the dump is open).
            limit = EMPTIED_MMHG + 3 * cfg.sensor_noise_mmhg
            assert max(snap.pressures_mmhg) <= limit, (
                f"{max(snap.pressures_mmhg):.1f} mmHg left {self.now - self._idle_since:.1f} s "
                "into IDLE, no fault latched"
            )
        if state == FAULT:
            # SPEC 10.8: a latched fault keeps its bits and the dump valve open.
            assert snap.faults != Fault.NONE, "FAULT without a fault"
            assert snap.dump, "FAULT with the dump valve shut"
        if state in IN_SESSION and not snap.controller_present:
            # SPEC 10.3: a session a controller started ends with its link. (STATUS is
            # dear to build, and the device sends one to a present controller anyway.)
            status = self.fw.status()
            assert not status.flags & StatusFlag.LINK_SESSION, "a link session, no controller"
            assert status.session_elapsed_s <= cfg.session_cap_s, "STATUS: elapsed past the cap"
        asleep = not math.isfinite(self.fw.next_deadline())
        assert state == IDLE or not asleep, f"asleep in {state.name}"
        # SPEC 12: only a signed frame moves a key's counter (checked in `feed`).
        assert self._key_counters() == self._counters, "a key's counter moved with no read"
