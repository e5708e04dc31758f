"""The checks' registry, what they share (`Context`), and the run that makes the report.

Each check is an async function registered with `check`: the SPEC.md section
it checks, a short name, and the rule in words. It runs on a fresh link (a new
HELLO, signed when the suite holds a key, the device idle) unless it says
otherwise, raises `CheckFailed` to fail and `NotTested` to say why it could not
run, and leaves no session behind (the runner stops any).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from firmware_protocol import (
    Ack,
    Capabilities,
    ErrorCode,
    Feature,
    Frame,
    GetStatus,
    Hello,
    Message,
    MessageType,
    Mode,
    Nak,
    Pair,
    Paired,
    ResetFault,
    SessionState,
    SetIntensity,
    SetMode,
    Status,
    StatusFlag,
    Stop,
    Unpair,
    Vent,
)
from firmware_protocol.pairing import KeyPair
from massager_ctl.transports import Transport, TransportClosed, open_transport
from massager_ctl.urls import DeviceAddress, SerialAddress

from .hands import Hands
from .probe import CLOCK_TICK_S, HELLO_NAME, Keys, LinkGone, Probe, Record, describe

Outcome = Literal["pass", "fail", "not tested"]

HELLO_TIMEOUT_S = 1.5
"""Real seconds the first HELLO waits for CAPABILITIES, each of its tries."""
REPLY_TIMEOUT_S = 1.0
"""Real seconds a request waits for its reply before it is sent again."""
ATTEMPTS = 3
TRANSCRIPT_LINES = 60
VENTED_DMMHG = 100
"""SPEC §10.11: every chamber below 10 mmHg within 10 s of a session's end."""
VENT_WITHIN_S = 10.0
"""Device seconds §10.11 gives the chambers to empty after a session's end."""
TIMING_SLACK_S = 0.25
"""Device seconds a timed end may come late: one supervision period of the device."""

_SPEED = re.compile(r"\+(\d+(?:\.\d+)?)x$")


class CheckFailed(Exception):
    """The device broke the rule the check checks; the message says how."""


class NotTested(Exception):
    """The check could not run here; the message says why and what would let it."""


class SuiteError(Exception):
    """Nothing can be checked: the device cannot be reached, or does not answer HELLO.

    ``section`` and ``check`` say where the report (``--json``) puts it.
    """

    def __init__(self, message: str, *, section: str = "7.1", check: str = "hello") -> None:
        super().__init__(message)
        self.section = section
        self.check = check

    def as_result(self) -> Result:
        """The error as the one result of a run that could check nothing."""
        return Result(self.section, self.check, "", "fail", str(self))


class WontStop(Exception):
    """The device runs a session after the suite's STOP and VENT: nothing more is sent."""


@dataclass(frozen=True)
class Check:
    """One check: the section it names, its short name, the rule, and how to run it."""

    section: str
    name: str
    rule: str
    run: Callable[[Context], Awaitable[None]]
    inflate: bool = False
    """Whether it puts pressure on a leg (a START): only with --inflate."""
    fresh: bool = True
    """Whether the runner opens a fresh link for it first."""
    final: bool = False
    """Whether it runs after every other check, as the suite tidies up (UNPAIR)."""


CHECKS: list[Check] = []
"""Every check, in the order the suite runs them."""


def check(
    section: str,
    name: str,
    rule: str,
    *,
    inflate: bool = False,
    fresh: bool = True,
    final: bool = False,
) -> Callable[[Callable[[Context], Awaitable[None]]], Callable[[Context], Awaitable[None]]]:
    """Register the decorated coroutine as a check of ``section``."""

    def register(
        run: Callable[[Context], Awaitable[None]],
    ) -> Callable[[Context], Awaitable[None]]:
        CHECKS.append(Check(section, name, rule, run, inflate, fresh, final))
        return run

    return register


@dataclass
class Result:
    """What one check found."""

    section: str
    check: str
    rule: str
    result: Outcome
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        """The result as the ``--json`` report lists it."""
        detail = self.detail or self.rule
        return {
            "section": self.section,
            "check": self.check,
            "result": self.result,
            "detail": detail,
        }


@dataclass
class Options:
    """How the suite runs: what it may do to the device, and how long it may wait."""

    inflate: bool = False
    sections: tuple[str, ...] = ()
    speed: float | None = None
    """The device's clock against real time; None: what the device announces (simulator)."""
    patience_s: float = 30.0
    """Longest wait, in device seconds, for one timing rule (pause limit, session cap)."""

    def selects(self, section: str) -> bool:
        """Whether the checks of ``section`` run (``7`` selects 7.1 to 7.5)."""
        return not self.sections or any(
            section == wanted or section.startswith(wanted + ".") for wanted in self.sections
        )


def known_sections() -> list[str]:
    """Every section some check names, in order."""
    seen: list[str] = []
    for item in CHECKS:
        if item.section not in seen:
            seen.append(item.section)
    return seen


@dataclass
class Report:
    """The device as it introduced itself, and every result."""

    url: str
    caps: Capabilities | None = None
    speed: float = 1.0
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: str | None = None
    """The signal that interrupted the run (``SIGINT``), if one did."""
    halted: tuple[bool, str] | None = None
    """With --inflate, the STOP and VENT on the way out: whether the device confirmed, how."""

    @property
    def failed(self) -> bool:
        """Whether any check failed."""
        return any(r.result == "fail" for r in self.results)


class Context:
    """What checks share: the link, the device's capabilities, the key, the options."""

    def __init__(self, address: DeviceAddress, options: Options, hands: Hands) -> None:
        self.address = address
        self.options = options
        self.hands = hands
        self.transport: Transport | None = None
        self.probe: Probe | None = None
        self.keys: Keys | None = None
        self.caps: Capabilities | None = None
        self.speed = options.speed or 1.0
        self.quiet_s = 0.3
        """Real seconds the suite waits to be sure that no answer is coming."""
        self.control: str | None = None
        """Why the suite cannot send the commands that need a key, or None if it can."""
        self.pairing_log: list[str] = []
        self.pairing_failure: str | None = None
        self.pairing_skipped: str | None = None
        self.forgotten = False
        """Whether the device has forgotten us (its watchdog ran out) since our last HELLO."""
        self.notes: list[str] = []
        self.history: list[Record] = []
        """The records of links closed earlier in the run (a restart opens a new one)."""
        self.interrupted: str | None = None
        """The signal that interrupted the run, once one has."""
        self.pending_result: Result | None = None
        """The result of the check an interruption cut short."""
        self.began = False
        """Whether the checks have begun (sessions may have been started since)."""
        self.flooded: str | None = None
        """How the device flooded the link, once it has: the run ends."""

    # --- the link -------------------------------------------------------------------------

    @property
    def p(self) -> Probe:
        """The probe on the open link."""
        assert self.probe is not None, "the link is not open"
        return self.probe

    @property
    def c(self) -> Capabilities:
        """The device's capabilities, from the last HELLO."""
        assert self.caps is not None
        return self.caps

    async def open(self) -> None:
        """Open the transport and start a probe on it (its keys and counters carry over)."""
        transport = open_transport(self.address)
        try:
            await transport.open()
        except TransportClosed as error:
            raise SuiteError(str(error), section="2", check="reachable") from None
        except Exception as error:  # a transport's ConnectFailed and its kin: said plainly
            why = str(error) or type(error).__name__
            raise SuiteError(why, section="2", check="reachable") from None
        self.transport = transport
        probe = Probe(transport, speed=self.speed, keys=self.keys)
        probe.caps = self.caps
        probe.start()
        self.probe = probe

    async def close(self) -> None:
        """Stop the probe and close the transport."""
        if self.probe is not None:
            if self.probe.flooded:
                self.flooded = self.probe.closed
            await self.probe.stop()
            self.history += self.probe.records
            self.probe = None
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.close()
            self.transport = None

    def real(self, device_s: float) -> float:
        """Real seconds for ``device_s`` of the device's time."""
        return device_s / self.speed

    async def sleep(self, device_s: float) -> None:
        """Wait ``device_s`` seconds of the device's time."""
        await asyncio.sleep(self.real(device_s))

    def strict_reads(self, wire_bytes: int) -> str | None:
        """Why one write of ``wire_bytes`` may reach the device in several reads, if it may.

        SPEC §7.4: a read is one TCP segment, one BLE write, or what a UART's
        buffer held when the firmware looked. A serial line may split anything.
        """
        if isinstance(self.address, SerialAddress):
            return "on a serial line the device may read the frames of one write one by one"
        mtu = getattr(self.transport, "mtu", None)
        if isinstance(mtu, int) and wire_bytes > mtu - 3:
            return f"the frames ({wire_bytes} bytes) do not fit one BLE write at ATT MTU {mtu}"
        return None

    # --- requests ------------------------------------------------------------------------

    async def send(self, frame: Frame, *, what: str, attempts: int = ATTEMPTS) -> Record:
        """Write ``frame`` and wait for its reply, sending it again unchanged if none comes."""
        p = self.p
        start = len(p.records)
        for _ in range(attempts):
            p.write(frame)
            reply = await p.reply(frame, after=start, within_s=REPLY_TIMEOUT_S)
            if reply is not None:
                return reply
        raise CheckFailed(f"{what}: no reply in {attempts} tries of {REPLY_TIMEOUT_S:g} s")

    async def request(
        self, message: Message, *, what: str = "", sign: bool | None = None, seq: int | None = None
    ) -> Record:
        """Send ``message`` as a request and return the reply's record."""
        frame = self.p.build(message, sign=sign, seq=seq)
        return await self.send(frame, what=what or describe(message))

    async def ack(self, message: Message, what: str = "", **kwargs: object) -> Record:
        """Send ``message``; fail unless it is answered ACK."""
        reply = await self.request(message, what=what, **kwargs)  # type: ignore[arg-type]
        if not isinstance(reply.message, Ack):
            raise CheckFailed(
                f"{what or describe(message)}: answered {describe(reply.message or '')}, not ACK"
            )
        return reply

    async def nak(
        self, message: Message, error: ErrorCode, what: str = "", **kwargs: object
    ) -> Record:
        """Send ``message``; fail unless it is answered NAK ``error``."""
        reply = await self.request(message, what=what, **kwargs)  # type: ignore[arg-type]
        self.expect_nak(reply, error, what or describe(message))
        return reply

    def expect_nak(self, reply: Record | None, error: ErrorCode, what: str) -> None:
        """Fail unless ``reply`` is NAK ``error``."""
        if reply is None:
            raise CheckFailed(f"{what}: no answer, where NAK {error.name} was due")
        message = reply.message
        if not isinstance(message, Nak) or message.error != error:
            raise CheckFailed(f"{what}: answered {describe(message or '')}, not NAK {error.name}")

    async def mode_still(self, mode: int, ran: str) -> None:
        """Fail, saying ``ran``, unless the device's mode is still ``mode``."""
        now = (await self.status()).mode
        if now != mode:
            raise CheckFailed(f"{ran}: the mode is {now}, not {mode}")

    async def status(self, *, sign: bool | None = None) -> Status:
        """Ask for a STATUS (GET_STATUS: ACK, then STATUS) and return it."""
        p = self.p
        reply = await self.request(GetStatus(), what="GET_STATUS", sign=sign)
        if not isinstance(reply.message, Ack):
            raise CheckFailed(f"GET_STATUS: answered {describe(reply.message or '')}, not ACK")
        found = await p.wait_for(
            lambda r: isinstance(r.message, Status), after=reply.index, within_s=REPLY_TIMEOUT_S
        )
        if found is None or not isinstance(found.message, Status):
            raise CheckFailed("GET_STATUS: no STATUS after its ACK (SPEC §7.5)")
        found.note = found.note or "answering GET_STATUS"
        return found.message

    async def silent(self, frames: list[Frame], *, after: int, what: str) -> None:
        """Fail if any of ``frames`` is answered within the quiet period."""
        seqs = {f.seq for f in frames}
        answer = await self.p.wait_for(
            lambda r: any(self.p.reply_to(s)(r) for s in seqs), after=after, within_s=self.quiet_s
        )
        if answer is not None:
            raise CheckFailed(
                f"{what}: answered {describe(answer.message or '')}, where nothing was due"
            )

    # --- opening links -------------------------------------------------------------------

    async def hello(
        self, *, signed: bool = True, seq: int = 1, within_s: float = REPLY_TIMEOUT_S
    ) -> tuple[Frame, Capabilities]:
        """Say HELLO (after a 0x00, SPEC §3.2), signed when the suite has a key.

        Returns the HELLO and the CAPABILITIES that answered it.
        """
        p = self.p
        sign = signed and self.keys is not None
        counter = self.keys.next_counter() if sign and self.keys else None
        hello = Hello(HELLO_NAME, self.keys.key_id if sign and self.keys else None)
        frame = p.build(hello, seq=seq, sign=sign, counter=counter)
        p.seq = seq
        p.opening(frame, counter)
        start = len(p.records)
        reply: Record | None = None
        answers = p.reply_to(seq)

        def answered(record: Record) -> bool:
            # A CAPABILITIES that cannot be read answers too: no use asking again.
            unread = record.frame is not None and record.frame.msg_type == MessageType.CAPABILITIES
            return answers(record) or (unread and isinstance(record.message, str))

        for _ in range(ATTEMPTS):
            p.write(b"\x00", frame, note="0x00 before HELLO")
            reply = await p.wait_for(answered, after=start, within_s=within_s)
            if reply is not None:
                break
        if reply is None:
            raise CheckFailed(f"HELLO (seq {seq}): no CAPABILITIES in {ATTEMPTS} tries")
        caps = reply.message
        if not isinstance(caps, Capabilities):
            raise CheckFailed(
                f"HELLO (seq {seq}): answered {describe(caps or '')}, not CAPABILITIES"
            )
        if sign and caps.link_nonce is None:
            raise CheckFailed(
                "a signed HELLO with the suite's key was answered without a link nonce: "
                "the device did not take the key (SPEC §12.3)"
            )
        p.opened(frame, caps)
        self.caps = caps
        self.forgotten = False
        return frame, caps

    def unreadable_capabilities(self) -> str | None:
        """Why the last CAPABILITIES from the device could not be read, if one could not."""
        for record in reversed(self.p.records if self.probe is not None else []):
            frame = record.frame
            if not record.sent and frame is not None and frame.msg_type == MessageType.CAPABILITIES:
                message = record.message
                return (
                    message.removeprefix("unreadable (").removesuffix(")")
                    if isinstance(message, str)
                    else None
                )
        return None

    async def fresh(self) -> Status:
        """A fresh link (signed when the suite has a key), answering challenges, device idle."""
        p = self.p
        p.answering = True
        await self.hello()
        state = await self.status()
        if state.state in (SessionState.RUNNING, SessionState.PAUSED):
            await self.stop_session()
            state = await self.status()
        return state

    async def stop_session(self) -> None:
        """Stop whatever session runs (a STOP is taken from anyone, SPEC §7.4)."""
        p = self.p
        with contextlib.suppress(CheckFailed):
            await self.request(Stop(), what="STOP", sign=p.authenticated)

    # --- stopping ------------------------------------------------------------------

    def emergency_stop(self) -> None:
        """Write a STOP and a VENT at once, in one write, without waiting (SPEC §7.4)."""
        p = self.probe
        if p is None or p.closed is not None:
            return
        with contextlib.suppress(Exception):  # whatever state the link is in: try
            # A 0x00 first ends a frame the interruption cut short (SPEC §3.2).
            p.write(b"\x00", p.build(Stop()), p.build(Vent()), note="the suite stops the device")

    async def vented(self, since_uptime_s: float | None = None) -> str | None:
        """Wait until every chamber reads below 10 mmHg, or a fault is latched (SPEC §10.11).

        Waits up to 10 s of the device's time from ``since_uptime_s`` (its
        uptime when the session ended; default: now). Returns None once
        vented, otherwise what the last STATUS showed.
        """
        deadline: float | None = since_uptime_s
        while True:
            state = await self.status(sign=self.p.authenticated)
            uptime = state.uptime_ms / 1000
            if deadline is None:
                deadline = uptime
            highest = max(state.pressures_dmmhg, default=0)
            if state.state == SessionState.FAULT or highest < VENTED_DMMHG:
                return None
            if uptime > deadline + VENT_WITHIN_S + TIMING_SLACK_S:
                return (
                    f"a chamber still reads {highest / 10:g} mmHg {uptime - deadline:.1f} s after "
                    "the end, and no fault is latched (SPEC §10.11)"
                )
            await self.sleep(0.5)

    async def halt(self) -> tuple[bool, str]:
        """STOP and VENT, then confirm: no session, the dump valve open, the chambers empty.

        The way out of every run with --inflate, interrupted or not. Bounded: a
        few request timeouts, and the 10 s of §10.11 for the chambers.
        """
        if self.probe is None or self.p.closed is not None:
            with contextlib.suppress(Exception):
                await self.close()
                await self.open()
        if self.probe is None:
            return False, "the link is gone, so nothing could be sent"
        if self.flooded:  # nothing can be read back: sent once, for what it is worth
            self.emergency_stop()
            return False, f"{self.flooded}, so nothing could be read back"
        p = self.p
        try:
            stop, vent = p.build(Stop()), p.build(Vent())
            start = len(p.records)
            for _ in range(ATTEMPTS):
                p.write(b"\x00", stop, vent, note="the suite stops the device")
                acks = [
                    await p.reply(f, after=start, within_s=REPLY_TIMEOUT_S) for f in (stop, vent)
                ]
                if all(a is not None and isinstance(a.message, Ack) for a in acks):
                    break
            else:
                return False, "STOP and VENT were not both answered ACK"
            state = await self.status(sign=p.authenticated)
            if state.state in (SessionState.RUNNING, SessionState.PAUSED):
                return False, f"the device still shows a session ({state.state.name})"
            if not state.flags & StatusFlag.DUMP_OPEN and state.state != SessionState.FAULT:
                return False, "VENT did not open the dump valve (its STATUS flag is clear)"
            problem = await self.vented()
        except (CheckFailed, LinkGone) as error:
            return False, str(error)
        if problem is not None:
            return False, problem
        return True, (
            f"the device is {state.state.name}, its dump valve open, every chamber below "
            f"{VENTED_DMMHG / 10:g} mmHg"
        )

    def need_control(self) -> None:
        """Raise `NotTested` unless the suite may send the commands that need a key."""
        if self.control is not None:
            raise NotTested(self.control)

    def need_keys(self) -> Keys:
        """The suite's key, or `NotTested` with what would give it one."""
        if self.keys is None:
            raise NotTested(self.pairing_skipped or self.control or "the suite holds no key")
        return self.keys

    def lowest_level(self) -> int:
        """The level the suite starts sessions at: 1 (SPEC: levels count from 1)."""
        return 1

    def other_mode(self, mode: int) -> int:
        """WAVE or PULSE, whichever ``mode`` is not (both are always offered, SPEC §5.2)."""
        return Mode.PULSE if mode != Mode.PULSE else Mode.WAVE

    def unoffered_mode(self) -> int:
        """A mode number the device does not offer."""
        offered = {m.mode for m in self.c.modes}
        return next(m for m in range(0x7F, 0, -1) if m not in offered)

    # --- the watchdog ----------------------------------------------------------------

    def watchdog_s(self) -> float:
        """The device's announced watchdog, in its seconds."""
        return self.c.watchdog_ms / 1000

    def timing(self, name: str, times: float) -> float:
        """The announced ``name`` (``watchdog_ms``) in seconds, for a check waiting ``times`` it.

        Raises:
            NotTested: it is 0, or the wait would be longer than --patience: no
                check waits longer than that for one rule.
        """
        value = getattr(self.c, name) / 1000
        if value == 0:
            raise NotTested(f"the device announces {name} 0: there is nothing to time (see 5.2)")
        wait = value * times
        if wait > self.options.patience_s:
            raise NotTested(
                f"{name} is {getattr(self.c, name)}: the check would wait {wait:g} s, longer than "
                f"--patience {self.options.patience_s:g}: run with --patience {wait + 10:.0f}"
            )
        return value

    async def go_silent_until_forgotten(self, *, feed: Callable[[], None] | None = None) -> str:
        """Stop answering challenges and wait until the device must have forgotten us.

        Returns how long after the last answered challenge the device was seen
        without a present controller, in words. Raises `CheckFailed` if a STATUS
        still shows one after the watchdog. ``feed`` is called every eighth of
        the watchdog meanwhile (frames that must not keep the link, §7.3).
        """
        p = self.p
        watchdog = self.timing("watchdog_ms", 2)
        self.timing("status_interval_ms", 2)
        p.answering = False
        last = p.answered[-1][1] if p.answered else None
        sent_uptime, exact = self._sent_uptime(last)
        tolerance = max(0.05 * watchdog, 0.05) + (0 if exact else self.c.status_interval_ms / 1000)
        due_uptime = None if sent_uptime is None else sent_uptime + watchdog + tolerance
        since = last.at if last is not None else p.now
        start = len(p.records)
        # One status interval more: a STATUS the device sends past the due moment shows
        # whether it still counts us present (it need send none once it does not).
        deadline_real = since + self.real(watchdog + tolerance + self.c.status_interval_ms / 1000)
        late: Status | None = None
        while deadline_real - p.now > CLOCK_TICK_S:
            if feed is not None:
                feed()
            found = await p.wait_for(
                lambda r: (
                    isinstance(r.message, Status)
                    and due_uptime is not None
                    and _uptime_after(r.message.uptime_ms, due_uptime)
                ),
                after=start,
                within_s=min(self.real(watchdog / 8), max(0.0, deadline_real - p.now)),
            )
            if found is not None and isinstance(found.message, Status):
                late = found.message
                found.note = "after the watchdog"
                break
        if late is not None and late.flags & StatusFlag.CONTROLLER_PRESENT:
            raise CheckFailed(
                f"a STATUS {(late.uptime_ms / 1000 - (sent_uptime or 0)):.2f} s after the last "
                f"challenge the suite answered still shows a present controller "
                f"(watchdog_ms {self.c.watchdog_ms})"
            )
        p.forgotten()
        for _ in range(4):
            state = await self.status(sign=False)
            if not state.flags & StatusFlag.CONTROLLER_PRESENT:
                self.forgotten = True
                if sent_uptime is None:
                    return f"forgotten within {watchdog + tolerance:g} s"
                return (
                    f"a STATUS {(state.uptime_ms / 1000 - sent_uptime):.2f} s after the last "
                    f"challenge the suite answered shows no present controller (watchdog "
                    f"{watchdog:g} s)"
                )
            if sent_uptime is not None and _uptime_after(
                state.uptime_ms, sent_uptime + watchdog + tolerance
            ):
                break
            await self.sleep(watchdog / 4)  # the device's clock is behind ours: give it time
        raise CheckFailed(
            f"the device still shows a present controller {watchdog + tolerance:.2f} s after the "
            f"last challenge the suite answered (watchdog_ms {self.c.watchdog_ms}, SPEC §7.3)"
        )

    def _sent_uptime(self, challenge: Record | None) -> tuple[float | None, bool]:
        """The device's uptime, in seconds, when ``challenge`` was sent; and whether exact."""
        if challenge is None:
            return None, False
        uptime = getattr(challenge.message, "uptime_ms", 0)
        if uptime:
            return uptime / 1000, True
        before = [
            r.message for r in self.p.records[: challenge.index] if isinstance(r.message, Status)
        ]
        return (before[-1].uptime_ms / 1000, False) if before else (None, False)

    async def forget(self) -> None:
        """Make sure the device has no present controller (go silent until its watchdog)."""
        if self.forgotten:
            return
        try:
            await self.go_silent_until_forgotten()
        except CheckFailed as error:
            raise NotTested(
                f"the device did not forget the silent suite ({error}); see section 7.3"
            ) from None

    # --- pairing ---------------------------------------------------------------------

    async def pair(self) -> None:
        """Pair with the device if its window is open, and open an authenticated link."""
        caps = self.c
        if not caps.features & Feature.PAIRING:
            self.pairing_skipped = "the device does not announce PAIRING (SPEC §6)"
            return
        await self.hands.open_pairing()
        log = self.pairing_log
        zero = Pair(bytes(32), HELLO_NAME)
        reply = await self.request(zero, what="PAIR with an all-zero public key", sign=False)
        log.append(f"PAIR with an unusable (all-zero) public key: {describe(reply.message or '')}")
        if _is_nak(reply, ErrorCode.PAIRING_CLOSED):
            self.pairing_skipped = (
                "the pairing window is not open: hold the pairing button and run again"
            )
            return
        if not _is_nak(reply, ErrorCode.BAD_PAYLOAD):
            self.pairing_failure = (
                "PAIR with a public key that gives an all-zero secret was answered "
                f"{describe(reply.message or '')}, not NAK BAD_PAYLOAD (SPEC §12.2)"
            )
        ours = KeyPair.generate()
        reply = await self.request(Pair(ours.public, HELLO_NAME), what="PAIR", sign=False)
        log.append(f"PAIR: {describe(reply.message or '')}")
        paired = reply.message
        if _is_nak(reply, ErrorCode.PAIRING_CLOSED) or _is_nak(reply, ErrorCode.PAIRING_FULL):
            why = (
                "full: unpair a controller" if _is_nak(reply, ErrorCode.PAIRING_FULL) else "closed"
            )
            self.pairing_skipped = (
                f"the pairing window is {why} (it answered {describe(paired or '')}); "
                "hold the pairing button and run again"
            )
            if self.pairing_failure:  # the window closed after the unusable key
                self.pairing_skipped = None
            return
        if not isinstance(paired, Paired):
            self.pairing_failure = f"PAIR was answered {describe(paired or '')}, not PAIRED"
            return
        self.keys = Keys(paired.key_id, ours.controller_key(paired))
        self.p.keys = self.keys
        await self._still_unauthenticated(log)
        try:
            await self.hello()
        except CheckFailed as error:
            self.pairing_failure = f"the key from PAIRED does not open a link: {error}"
            self.keys = self.p.keys = None
            await self.hello(signed=False)
            return
        log.append("a HELLO signed with the derived key opened an authenticated link")
        # The window closes once a controller has paired (SPEC §12.2).
        second = KeyPair.generate()
        reply = await self.request(Pair(second.public, HELLO_NAME), what="a second PAIR")
        log.append(f"a second PAIR: {describe(reply.message or '')}")
        if isinstance(reply.message, Paired):
            self.pairing_failure = (
                "the window paired a second controller: it must close after one (SPEC §12.2)"
            )
            await self._unpair_other(second, reply.message)
        elif not _is_nak(reply, ErrorCode.PAIRING_CLOSED):
            self.pairing_failure = (
                f"a second PAIR was answered {describe(reply.message or '')}, "
                "not NAK PAIRING_CLOSED (SPEC §12.2)"
            )

    async def _still_unauthenticated(self, log: list[str]) -> None:
        """Pairing leaves the link unauthenticated until a signed HELLO (SPEC §12.2 step 4).

        A SET_MODE of the mode the device has, signed with the new key (there is no
        link nonce yet), must be refused NOT_AUTHENTICATED.
        """
        mode = (await self.status(sign=False)).mode
        what = "a SET_MODE signed with the new key, after PAIRED and before a signed HELLO"
        reply = await self.request(SetMode(mode), what=what, sign=True)
        log.append(f"{what}: {describe(reply.message or '')}")
        if not _is_nak(reply, ErrorCode.NOT_AUTHENTICATED):
            self.pairing_failure = (
                f"{what} was answered {describe(reply.message or '')}, not NAK "
                "NOT_AUTHENTICATED: pairing leaves the link unauthenticated (SPEC §12.2 step 4)"
            )

    async def _unpair_other(self, pair: KeyPair, paired: Paired) -> None:
        """Unpair a key the device should not have given (it would hold a slot for ever)."""
        mine = self.keys
        other = Keys(paired.key_id, pair.controller_key(paired))
        self.keys = self.p.keys = other
        with contextlib.suppress(CheckFailed):
            await self.hello()
            await self.request(Unpair(), what="UNPAIR of the second key")
        self.keys = self.p.keys = mine
        await self.hello()

    async def find_control(self, state: Status) -> None:
        """Whether the commands that need a key can be sent: signed, or to an open device."""
        if self.keys is not None:
            return
        reply = await self.request(
            SetIntensity(state.intensity or 1), what="an unsigned SET_INTENSITY", sign=False
        )
        message = reply.message
        if isinstance(message, Ack) or _is_nak(reply, ErrorCode.FAULT_LATCHED):
            self.notes.append(
                "the device takes commands from a controller that has not paired: a "
                "development device (SPEC §12.3); a device sold must not"
            )
            return
        self.control = (
            self.pairing_skipped
            or self.pairing_failure
            or "the device takes these commands only from a paired controller"
        ) + f" (an unsigned SET_INTENSITY was answered {describe(message or '')})"


def _is_nak(reply: Record | None, error: ErrorCode) -> bool:
    message = None if reply is None else reply.message
    return isinstance(message, Nak) and message.error == error


def _uptime_after(uptime_ms: int, seconds: float) -> bool:
    """Whether ``uptime_ms`` (a wrapping u32) is past ``seconds`` of uptime."""
    return uptime_ms / 1000 >= seconds


SPEEDS = (0.1, 1000.0)
"""The device speeds the suite keeps time with (as ``--speed`` takes)."""


def announced_speed(caps: Capabilities) -> float | None:
    """The speed a served simulator announces after its firmware version (``+20x``).

    1 when none is announced; None when the one announced is outside `SPEEDS`
    (a ``+0x`` would stop the suite's clock).
    """
    match = _SPEED.search(caps.firmware)
    if match is None:
        return 1.0
    speed = float(match.group(1))
    return speed if SPEEDS[0] <= speed <= SPEEDS[1] else None


def transcript(ctx: Context, start: int) -> str:
    """What went to the device and came back since record ``start``, for a failure."""
    p = ctx.probe
    if p is None:
        return ""
    records = p.records[start:]
    shown = [
        r
        for r in records
        if not r.background and not (not r.sent and isinstance(r.message, Status) and not r.note)
    ]
    hidden = len(records) - len(shown)
    lines = [r.line(p.origin, p.speed) for r in shown[-TRANSCRIPT_LINES:]]
    if len(shown) > TRANSCRIPT_LINES:
        lines.insert(0, f"(the first {len(shown) - TRANSCRIPT_LINES} frames are not shown)")
    if hidden:
        lines.append(f"({hidden} KEEPALIVE, CHALLENGE and periodic STATUS frames not shown)")
    return "\n".join(lines)


async def run(
    address: DeviceAddress,
    url: str,
    options: Options,
    hands: Hands,
    *,
    signals: tuple[signal.Signals, ...] = (),
    say: Callable[[str], None] = lambda text: None,
) -> Report:
    """Run every selected check against the device at ``address``.

    Each of ``signals`` interrupts the run: with --inflate a STOP and a VENT go
    at once, and the report comes back marked interrupted, with whether the
    device confirmed it is stopped and vented (`Report.halted`). A second one
    stops waiting for that. ``say`` tells a person what happens meanwhile.

    Raises:
        SuiteError: the device cannot be reached or does not answer HELLO.
    """
    ctx = Context(address, options, hands)
    report = Report(url)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def interrupt(signum: signal.Signals) -> None:
        if options.inflate:
            ctx.emergency_stop()  # first, before anything can wait
        if ctx.interrupted is None:
            ctx.interrupted = report.interrupted = signum.name
            say(
                f"interrupted ({signum.name})"
                + (
                    ": STOP and VENT sent; waiting for the device to confirm (up to "
                    f"{VENT_WITHIN_S + 3 * ATTEMPTS * REPLY_TIMEOUT_S:g} s; interrupt again to "
                    "stop waiting)"
                    if options.inflate
                    else ""
                )
            )
        task.cancel()

    for signum in signals:
        loop.add_signal_handler(signum, interrupt, signum)
    try:
        return await _run(ctx, report, url)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _run(ctx: Context, report: Report, url: str) -> Report:
    options = ctx.options
    task = asyncio.current_task()
    assert task is not None
    try:
        await ctx.open()
    except asyncio.CancelledError:
        if ctx.interrupted is None:
            raise
        task.uncancel()
        return report
    try:
        try:
            _, caps = await ctx.hello(signed=False, within_s=HELLO_TIMEOUT_S)
        except (CheckFailed, LinkGone) as error:
            unreadable = ctx.unreadable_capabilities()
            if unreadable is not None:
                raise SuiteError(
                    f"{url} answered HELLO with a CAPABILITIES that cannot be read: {unreadable} "
                    "(SPEC §5.2)",
                    section="5.2",
                    check="capabilities",
                ) from None
            why = "" if isinstance(error, CheckFailed) else f" ({error})"
            raise SuiteError(
                f"{url} did not answer HELLO in {ATTEMPTS} tries of {HELLO_TIMEOUT_S:g} s{why}: "
                "is it a massager, switched on, and at this address (and baud rate)?"
            ) from None
        report.caps = caps
        speed = announced_speed(caps)
        if speed is None and options.speed is None:
            ctx.notes.append(
                f"the device announces the speed in {caps.firmware!r}, outside "
                f"{SPEEDS[0]:g}x to {SPEEDS[1]:g}x: the suite keeps real time (--speed sets one)"
            )
        ctx.speed = options.speed or speed or 1.0
        ctx.p.speed = report.speed = ctx.speed
        hello_at = next(r.at for r in ctx.p.records if r.sent and r.frame is not None)
        answered_at = next(r.at for r in ctx.p.records if isinstance(r.message, Capabilities))
        ctx.quiet_s = min(max(0.3, 5 * (answered_at - hello_at)), 2.0)
        _round_trip(ctx, url, answered_at - hello_at)
        try:
            preset = await _prepare(ctx, report)
        except (CheckFailed, LinkGone) as error:
            raise SuiteError(
                f"{url} failed before the checks could start: {error}", check="start"
            ) from None
        await _run_checks(ctx, report)
        await _tidy(ctx, report, preset)
    except asyncio.CancelledError:
        if ctx.interrupted is None:
            raise
        task.uncancel()
        _not_run(ctx, report, f"the run was interrupted ({ctx.interrupted})")
    finally:
        report.notes.extend(ctx.notes)
        try:
            if options.inflate and (ctx.began or ctx.interrupted):
                # Interrupted, stopped on an error, or done: no session of ours may go on.
                report.halted = await _halt(ctx)
        finally:
            await ctx.close()
    return report


async def _halt(ctx: Context) -> tuple[bool, str]:
    task = asyncio.current_task()
    assert task is not None
    try:
        return await ctx.halt()
    except asyncio.CancelledError:
        if ctx.interrupted is None:
            raise
        task.uncancel()
        return False, "interrupted again before the device confirmed"


def _not_run(ctx: Context, report: Report, why: str) -> None:
    """Every selected check without a result yet: not tested, and ``why``."""
    done = {r.check for r in report.results}
    for item in CHECKS:
        if ctx.options.selects(item.section) and item.name not in done:
            report.results.append(Result(item.section, item.name, item.rule, "not tested", why))


def _round_trip(ctx: Context, url: str, real_s: float) -> None:
    """Whether an answer to a challenge can reach the device before its watchdog runs out.

    The watchdog runs from when the challenge was sent (SPEC §7.3), and the next
    challenge comes up to a quarter watchdog later: an answer must be back within
    three quarters of the watchdog, or the device loses every controller and no
    check could hold one.

    Raises:
        SuiteError: the HELLO's round trip is three quarters of the watchdog or more.
    """
    device_s = real_s * ctx.speed
    watchdog = ctx.watchdog_s()
    said = f"the link's round trip is {real_s:.2f} s" + (
        f" ({device_s:.2f} s of the device's time)" if ctx.speed != 1 else ""
    )
    if watchdog and device_s >= 0.75 * watchdog:
        raise SuiteError(
            f"{url}: {said}, too long for the device's watchdog ({watchdog:g} s): it forgets "
            "the suite before the answers to its challenges can reach it, a quarter watchdog "
            "apart (SPEC §7.3). Check it over a quicker link",
            section="7.3",
            check="watchdog",
        )
    if watchdog and device_s >= watchdog / 2:
        ctx.notes.append(
            f"{said}, over half the device's watchdog ({watchdog:g} s): a challenge's "
            "answer may come too late, and the timing checks say so"
        )


async def _prepare(ctx: Context, report: Report) -> tuple[int, int]:
    """Stop a session, pair if the window is open, clear a fault; the preset mode and level."""
    state = await ctx.status()
    if state.state in (SessionState.RUNNING, SessionState.PAUSED):
        await ctx.stop_session()
        report.notes.append("a session was running: the suite stopped it")
    await ctx.pair()
    state = await ctx.status()
    await ctx.find_control(state)
    if state.state == SessionState.FAULT and ctx.control is None:
        await ctx.request(ResetFault(), what="RESET_FAULT of the fault the device had")
        state = await ctx.status()
    if state.state == SessionState.FAULT:
        raise SuiteError(
            f"the device has a fault latched ({state.faults!r}): clear it (its remote's power "
            "button, or RESET_FAULT) and run again",
            section="10.8",
            check="start",
        )
    return state.mode, state.intensity


async def _run_checks(ctx: Context, report: Report) -> None:
    from . import checks  # noqa: F401  (registers them)

    options = ctx.options
    ctx.began = True
    for item in CHECKS:
        if options.selects(item.section) and not item.final:
            try:
                report.results.append(await _run_one(ctx, item))
            except asyncio.CancelledError:
                if ctx.pending_result is not None:
                    report.results.append(ctx.pending_result)
                raise
            except WontStop as error:
                report.results.append(
                    Result(item.section, item.name, item.rule, "fail", f"{error}: the run ends")
                )
                _not_run(ctx, report, "the device did not stop: the run ended (see above)")
                return
            if ctx.flooded:
                _not_run(ctx, report, f"{ctx.flooded}: the run ended")
                return


async def _run_one(ctx: Context, item: Check) -> Result:
    result = Result(item.section, item.name, item.rule, "pass")
    if item.inflate and not ctx.options.inflate:
        result.result, result.detail = "not tested", "needs --inflate (take the wraps off the legs)"
        return result
    if ctx.probe is None:
        result.result, result.detail = "not tested", "the link was lost earlier in the run"
        return result
    start = len(ctx.p.records)
    try:
        if item.fresh:
            await ctx.fresh()
        await item.run(ctx)
    except asyncio.CancelledError:
        if ctx.interrupted is not None:
            result.result = "not tested"
            result.detail = f"interrupted ({ctx.interrupted}) during this check"
            ctx.pending_result = result
        raise
    except CheckFailed as error:
        result.result = "fail"
        result.detail = f"{error}\n{transcript(ctx, start)}"
    except NotTested as error:
        result.result, result.detail = "not tested", str(error)
    except LinkGone as error:
        result.result = "fail"
        result.detail = f"the link closed during the check: {error}\n{transcript(ctx, start)}"
        await _reopen(ctx)
    except WontStop:
        raise
    except Exception as error:  # what the device said took the suite where it cannot go on
        result.result = "fail"
        result.detail = (
            f"the suite could not go on with this check: {type(error).__name__}: {error} "
            f"(after what the device said, below)\n{transcript(ctx, start)}"
        )
    finally:
        if ctx.interrupted is None:
            await _no_session_left(ctx, result)
    return result


async def _no_session_left(ctx: Context, result: Result) -> None:
    """After a check with --inflate: no session runs, and the chambers are empty.

    A session left running is stopped (a STOP is taken from anyone), then
    vented if the STOP did not end it. A device that keeps a session after
    both, or keeps air in a chamber past §10.11's 10 s, fails the check: the
    suite never passes it silently. One that will not stop ends the run.
    """
    if not ctx.options.inflate or ctx.probe is None or ctx.p.closed is not None:
        return
    problem: str | None = None
    try:
        state = await ctx.status(sign=ctx.p.authenticated)
        for urgent in (Stop(), Vent()):
            if state.state not in (SessionState.RUNNING, SessionState.PAUSED):
                break
            await ctx.request(urgent, what=f"the suite's {urgent.TYPE.name} after the check")
            state = await ctx.status(sign=ctx.p.authenticated)
            if state.state in (SessionState.RUNNING, SessionState.PAUSED):
                problem = f"a session ran on after the suite's {urgent.TYPE.name} (SPEC §7.4)"
        if state.state in (SessionState.RUNNING, SessionState.PAUSED):
            raise WontStop(problem)
        vented = await ctx.vented()
        if vented is not None:
            problem = f"after the check, {vented}"
    except (CheckFailed, LinkGone) as error:
        problem = f"the device did not answer the suite's look after the check: {error}"
    if problem is not None:
        detail = f"{problem}\n{transcript(ctx, len(ctx.p.records) - 12)}"
        result.result = "fail"
        result.detail = f"{result.detail}\n{detail}" if result.detail else detail


async def _reopen(ctx: Context) -> None:
    with contextlib.suppress(Exception):
        await ctx.close()
    if ctx.flooded:
        return  # the run ends
    try:
        await ctx.open()
        await ctx.hello()
    except (SuiteError, CheckFailed, LinkGone):
        await ctx.close()


async def _tidy(ctx: Context, report: Report, preset: tuple[int, int]) -> None:
    """Put the preset back, then run the final checks (UNPAIR: the suite's key is forgotten)."""
    if ctx.probe is None:
        return
    with contextlib.suppress(CheckFailed, LinkGone):
        await ctx.fresh()
        if ctx.control is None:
            await ctx.request(SetMode(preset[0]), what="SET_MODE back to the preset")
            await ctx.request(SetIntensity(preset[1]), what="SET_INTENSITY back to the preset")
    for item in CHECKS:
        if not item.final:
            continue
        try:
            result = await _run_one(ctx, item)
        except WontStop as error:
            result = Result(item.section, item.name, item.rule, "fail", f"{error}: the run ends")
        if ctx.options.selects(item.section):
            report.results.append(result)
    if ctx.keys is not None:
        report.notes.append(
            f"the suite's key (key id {ctx.keys.key_id}, named {HELLO_NAME!r}) may still be "
            "paired on the device: unpair it there"
        )


__all__ = [
    "CHECKS",
    "Check",
    "CheckFailed",
    "Context",
    "NotTested",
    "Options",
    "Report",
    "Result",
    "SuiteError",
    "check",
    "run",
]
