"""A simulated massager with one rule of the protocol broken on purpose, to show each check fails.

``DeviceConfig(broken=RULE)`` (``massager-sim serve --broken RULE``,
``sim://?broken=RULE``) runs `BrokenFirmware`: the simulator's firmware, with
one rule of `RULES` broken and every other kept. Each rule names the check of
the conformance suite that must catch it; the test suite runs that check
against it and expects it to fail, naming its section.

The breaks are made here, from outside: byte-level ones before the bytes reach
the firmware, protocol-level ones in a `Connection` subclass, the rest in a
`Firmware` subclass or by announcing a value other than the one kept. They lean
on a few private methods of both (``_device_receive``, ``_refuse`` and the like):
this module is a test fixture, and breaking a rule means going where it is kept.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from dataclasses import replace

from firmware_protocol import (
    AUTHENTICATED,
    PROTOCOL_VERSION,
    URGENT,
    Ack,
    Connection,
    EndReason,
    ErrorCode,
    Frame,
    Hello,
    KeepAlive,
    LinkState,
    Message,
    MessageType,
    Mode,
    Nak,
    Pair,
    Pause,
    Resume,
    Role,
    SessionState,
    SetCycle,
    SetIntensity,
    SetMode,
    StartSource,
    Status,
    Stop,
    Unpair,
    Vent,
    cobs,
)
from firmware_protocol.connection import seq_newer
from firmware_protocol.errors import RemoteProtocolError
from firmware_protocol.framing import FLAG_AUTH, crc16
from firmware_protocol.session import Trigger

from ..config import DeviceConfig
from ..firmware import Firmware
from ..memory import DeviceMemory
from .rules import RULES


def _blocks(data: bytes) -> Iterator[tuple[bytes, bool]]:
    """The blocks of ``data`` between 0x00s, and whether each was ended by one."""
    pieces = data.split(b"\x00")
    for i, piece in enumerate(pieces):
        yield piece, i < len(pieces) - 1


def _is_frame(block: bytes) -> bool:
    try:
        Frame.from_bytes(cobs.decode(block))
    except RemoteProtocolError:
        return False
    return True


class BrokenConnection(Connection):
    """The device's `Connection` with one rule of sections 4, 7 or 12 broken (see `RULES`)."""

    rule = ""

    def send(self, message: Message, now: float) -> int:  # noqa: D102
        seq = super().send(message, now)
        if self.rule == "no-reply-cache":
            self._replies.clear()
        elif self.rule == "reply-cache-of-4":
            while len(self._replies) > 4:
                self._replies.popitem(last=False)
        return seq

    def _device_receive(self, frame: Frame, now: float, *, halted: bool = False) -> None:
        rule, kind, accepted = self.rule, frame.msg_type, self._accepted_seq
        if (
            rule == "preempts-refusals"
            and halted
            and kind not in URGENT
            and kind in MessageType._value2member_map_
            and kind < MessageType.ACK
            and kind not in (MessageType.HELLO, MessageType.KEEPALIVE)
        ):
            self._device_send(Nak(frame.seq, ErrorCode.PREEMPTED), now, sign=self._verified(frame))
            return
        ordinary = kind not in URGENT and kind not in (MessageType.HELLO, MessageType.KEEPALIVE)
        ready = self.state == LinkState.READY and accepted is not None
        if rule == "stale-accepted" and ready and ordinary and frame.seq not in self._replies:
            assert accepted is not None
            if not seq_newer(frame.seq, accepted):
                self._accepted_seq = (frame.seq - 1) % 0x10000
        elif rule == "no-seq-wrap" and ready and ordinary and frame.seq not in self._replies:
            assert accepted is not None
            if frame.seq < accepted:
                self._refuse(frame.seq, ErrorCode.STALE_SEQUENCE, now, self._verified(frame))
                return
        elif (
            rule == "no-hello-needed" and not ready and ordinary and kind != MessageType.GET_STATUS
        ):
            decoded = self._decode(frame)
            if isinstance(decoded, Message):
                self._received(decoded, frame.seq, False)
                return
        elif rule == "stop-needs-hello" and not ready and kind in URGENT:
            self._refuse(frame.seq, ErrorCode.NO_HELLO, now, False)
            return
        elif rule == "any-keepalive-feeds" and ready and kind == MessageType.KEEPALIVE:
            self._last_rx = now
            return
        elif (
            rule == "any-version-keepalive-feeds"
            and ready
            and kind == MessageType.KEEPALIVE
            and frame.version != PROTOCOL_VERSION
        ):
            decoded = self._decode(frame)
            if isinstance(decoded, KeepAlive):
                self._proof_of_life(frame, decoded, self._verified(frame))
                return
        elif (
            rule == "unsigned-accepted"
            and ready
            and kind in AUTHENTICATED
            and self.link_key_id is not None
            and not self._verified(frame)
        ):
            assert accepted is not None
            decoded = self._decode(frame)
            if isinstance(decoded, Message) and seq_newer(frame.seq, accepted):
                self._accepted_seq = frame.seq
                self._received(decoded, frame.seq, False)
                return
        super()._device_receive(frame, now, halted=halted)
        if rule == "keepalive-moves-seq" and kind == MessageType.KEEPALIVE and ready:
            assert accepted is not None
            if seq_newer(frame.seq, accepted):
                self._accepted_seq = frame.seq

    def _refuse(self, seq: int, error: ErrorCode, now: float, verified: bool) -> None:
        if self.rule == "unknown-type-ignored" and error == ErrorCode.UNKNOWN_MESSAGE:
            return
        super()._refuse(seq, error, now, verified)
        used = error in (ErrorCode.UNSUPPORTED_VERSION, ErrorCode.BAD_PAYLOAD)
        accepted = self._accepted_seq
        if self.rule == "refusals-use-seq" and used and accepted is not None:
            self._accepted_seq = seq if seq_newer(seq, accepted) else accepted

    def _decode(self, frame: Frame) -> Message | ErrorCode:
        decoded = super()._decode(frame)
        if (
            self.rule == "extra-bytes-refused"
            and isinstance(decoded, Message)
            and len(frame.payload) > len(decoded.encode_payload())
        ):
            return ErrorCode.BAD_PAYLOAD
        return decoded

    def _device_hello(self, frame: Frame, hello: Hello, now: float) -> None:
        keyless = frame.auth is not None and hello.key_id is None and self.pairings
        if self.rule == "keyless-hello-accepted" and keyless:
            assert self.pairings is not None
            found = next((p for p in self.pairings if frame.verify(p.key)), None)
            if found is not None:
                hello = Hello(hello.client_name, found.key_id)
        if self.rule == "hello-replay-accepted" and frame.auth is not None and self.pairings:
            pairing = self.pairings.get(hello.key_id)
            if pairing is not None and frame.verify(pairing.key):
                pairing.counter = min(pairing.counter, frame.auth.counter - 1)
        super()._device_hello(frame, hello, now)

    def _device_send(self, message: Message, now: float, *, sign: bool | None = None) -> int:
        if self.rule == "status-unsigned" and isinstance(message, Status):
            sign = False
        return super()._device_send(message, now, sign=sign)

    def _emit(self, message: Message, now: float, *, sign: bool = False) -> tuple[Frame, bytes]:
        if self.rule == "device-seq-skips" and isinstance(message, Status):
            self._tx_seq = (self._tx_seq + 1) % 0x10000
        return super()._emit(message, now, sign=sign)


class BrokenFirmware(Firmware):
    """The simulator's firmware with the rule ``config.broken`` broken (see `RULES`)."""

    def __init__(
        self,
        config: DeviceConfig | None = None,
        *,
        now: float = 0.0,
        memory: DeviceMemory | None = None,
    ) -> None:
        super().__init__(config, now=now, memory=memory)
        cfg = self.config
        self.rule = rule = cfg.broken
        old = self.conn
        conn = BrokenConnection(
            Role.DEVICE,
            timing=old.timing,
            pairings=old.pairings,
            device_signs=old.device_signs,
            chambers=None if rule == "cycle-count-uses-seq" else old.chambers,
        )
        conn.rule = rule
        self.conn = conn
        self._partial = False
        self._hush_status = False
        # What it announces stays as configured; what it keeps is another value.
        kept = {
            "slow-challenges": {"watchdog_ms": cfg.watchdog_ms * 2},
            "slow-status": {"status_interval_ms": cfg.status_interval_ms * 3},
            "no-pause-limit": {"pause_limit_s": 0xFFFF},
            "no-session-cap": {"session_cap_s": 0xFFFF},
        }.get(rule)
        if kept is not None:
            self.config = cfg.model_copy(update=kept)
        if rule == "watchdog-too-slow":
            conn.timing = dataclasses.replace(conn.timing, watchdog_s=3 * cfg.watchdog_ms / 1000)
        elif rule == "counters-forgotten":
            for pairing in self.memory.pairings:
                pairing.counter = 0
        elif rule == "cycle-mode-unlisted":
            modes = tuple(m for m in self.capabilities.modes if m.mode != Mode.CYCLE)
            self.capabilities = replace(self.capabilities, modes=modes)

    # --- bytes ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:  # noqa: D102
        rule, partial = self.rule, self._partial
        self._partial = not data.endswith(b"\x00") if data else partial
        if rule == "stop-not-first":
            start = 0
            while (end := data.find(0, start)) >= 0:
                super().receive_data(data[start : end + 1], now)
                start = end + 1
            if start < len(data):
                super().receive_data(data[start:], now)
            return
        if rule == "chunk-is-frame":
            data = b"\x00" + data
        elif rule in ("crc-ignored", "no-resync", "flagged-keepalive-feeds"):
            data = self._rewrite(data, partial)
        super().receive_data(data, now)

    def _rewrite(self, data: bytes, partial: bool) -> bytes:
        out = []
        drop_next = False
        for i, (block, ended) in enumerate(_blocks(data)):
            whole = ended and block and not (i == 0 and partial)
            if whole and self.rule == "crc-ignored":
                block = _fix_crc(block)
            elif whole and self.rule == "flagged-keepalive-feeds":
                block = _unflag_keepalive(block)
            elif whole and drop_next:
                block, drop_next = b"", False
            elif whole and not _is_frame(block):
                drop_next = True
            out.append(block)
        return b"\x00".join(out)

    # --- commands ---------------------------------------------------------------------

    def _on_command(self, message: Message, seq: int, key_id: int | None = None) -> None:
        rule, state = self.rule, self.state
        if rule == "pause-in-idle" and isinstance(message, Pause) and state == SessionState.IDLE:
            self._send(Ack(seq))
            return
        if (
            rule == "resume-while-running"
            and isinstance(message, Resume)
            and state == SessionState.RUNNING
        ):
            self._send(Ack(seq))
            self._resume()
            self._send_status()
            return
        if (
            rule == "fault-not-latched"
            and isinstance(message, SetMode | SetIntensity)
            and state == SessionState.FAULT
        ):
            self._send(Ack(seq))
            self._apply(message)
            return
        if (
            rule == "stop-ignored"
            and isinstance(message, Stop | Vent)
            and state in (SessionState.RUNNING, SessionState.PAUSED)
        ):
            self._send(Ack(seq))
            return
        if rule == "unpair-keeps-key" and isinstance(message, Unpair):
            self._send(Ack(seq))
            return
        if rule == "no-status-after-hello" and isinstance(message, Hello):
            self._hush_status = True
        super()._on_command(message, seq, key_id)

    def _send_status(self) -> None:
        if self._hush_status:
            self._hush_status = False
            self._next_status = self._t + self.config.status_interval_ms / 1000
            return
        super()._send_status()

    def _check(self, message: Message) -> ErrorCode | None:
        if (
            self.rule == "cycle-count-uses-seq"
            and isinstance(message, SetCycle)
            and len(message.targets_dmmhg) != self.config.chamber_count
        ):
            return ErrorCode.BAD_PAYLOAD
        if (
            self.rule == "cycle-target-unchecked"
            and isinstance(message, SetCycle)
            and self.config.cycle
            and len(message.targets_dmmhg) == self.config.chamber_count
        ):
            return None
        return super()._check(message)

    def _begin(self, source: StartSource, mode: int, intensity: int, lease_s: int) -> None:
        super()._begin(source, mode, intensity, lease_s)
        if self.rule == "lease-ignored" and self.session is not None:
            self.session.lease_left += 3600

    def _trigger(self, trigger: Trigger) -> None:
        if self.rule == "session-outlives-link" and trigger == Trigger.LINK_LOST:
            return
        if self.rule == "no-status-after-link-loss" and trigger == Trigger.LINK_LOST:
            self._hush_status = self.session is not None  # the STATUS after its end
        super()._trigger(trigger)

    def _pair(self, message: Pair, seq: int) -> None:
        until = self.pairing_until
        before = {pairing.key_id for pairing in self.memory.pairings}
        super()._pair(message, seq)
        if self.rule == "window-stays-open":
            self.pairing_until = until
        new = {pairing.key_id for pairing in self.memory.pairings} - before
        if self.rule == "paired-link-authenticated" and new:
            # The link takes the new key at once, with no nonce: PAIR was never signed.
            self.conn.link_key_id = new.pop()

    def status(self) -> Status:  # noqa: D102
        status = super().status()
        if self.rule == "idle-exhausts-closed" and status.state == SessionState.IDLE:
            return replace(status, exhaust_mask=0)
        if (
            self.rule == "air-after-stop"
            and status.state == SessionState.IDLE
            and status.last_end == EndReason.STOPPED
        ):
            return replace(
                status, pressures_dmmhg=tuple(max(p, 200) for p in status.pressures_dmmhg)
            )
        return status


def _fix_crc(block: bytes) -> bytes:
    """``block`` with its CRC made right, if it is a COBS block long enough to have one."""
    try:
        raw = cobs.decode(block)
    except RemoteProtocolError:
        return block
    if len(raw) < 7 or crc16(raw[:-2]) == int.from_bytes(raw[-2:], "little"):
        return block
    return cobs.encode(raw[:-2] + struct.pack("<H", crc16(raw[:-2])))


def _unflag_keepalive(block: bytes) -> bytes:
    """``block`` with the reserved flag bits cleared, if it is a KEEPALIVE with any set."""
    try:
        raw = bytearray(cobs.decode(block))
    except RemoteProtocolError:
        return block
    if len(raw) < 7 or raw[4] != MessageType.KEEPALIVE or not raw[1] & ~FLAG_AUTH & 0xFF:
        return block
    raw[1] &= FLAG_AUTH
    body = bytes(raw[:-2])
    return cobs.encode(body + struct.pack("<H", crc16(body)))


def describe_rules() -> str:
    """One line per rule, for ``massager-sim broken``."""
    return "\n".join(
        f"{name}: {rule.does} (caught by {rule.check}, section {rule.section})"
        for name, rule in RULES.items()
    )
