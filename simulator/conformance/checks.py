"""The checks, each one MUST of SPEC.md (firmware_protocol/SPEC.md), in the order they run.

Every check names its section and says its rule in one sentence; the report
groups them by section. The rules SPEC 1.1 stated where SPEC 1.0 left a maker
to guess (the order of the checks, one read, proof of life, what is sent with
no controller present, the two counters) are each in one named constant or
function below, with the section that states it, so that a new wording changes
one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Callable

from firmware_protocol import (
    Ack,
    Capabilities,
    Challenge,
    CycleOrder,
    EndReason,
    ErrorCode,
    FaultRaised,
    Feature,
    Frame,
    GetStatus,
    Hello,
    KeepAlive,
    Message,
    MessageType,
    Mode,
    Nak,
    Pause,
    Renew,
    ResetFault,
    Resume,
    SessionEnded,
    SessionStarted,
    SessionState,
    SetCycle,
    SetIntensity,
    SetMode,
    Start,
    Status,
    StatusFlag,
    Stop,
    Unpair,
    Vent,
    cobs,
)
from firmware_protocol.framing import crc16

from .probe import LinkGone, Record, describe, raw_frame, with_flags
from .suite import (
    REPLY_TIMEOUT_S,
    CheckFailed,
    Context,
    NotTested,
    SuiteError,
    check,
)

# --- rules SPEC 1.1 states where SPEC 1.0 left them open ----------------------------

REPLY_CACHE = 8
"""SPEC §4: the answers to at least the last 8 frames taken (vector V37)."""

REFUSED_BEFORE_SEQ = (
    ("a frame of version 2", ErrorCode.UNSUPPORTED_VERSION),
    ("a SET_INTENSITY without its payload", ErrorCode.BAD_PAYLOAD),
    ("a SET_CYCLE with one target more than the device has chambers", ErrorCode.BAD_PAYLOAD),
)
"""SPEC §4 and §4.1 (checks 2 and 4): a refusal of the link uses up no seq and is not
remembered; a SET_CYCLE whose ``n`` is not the number of chambers is one of them."""

REMEMBERED_REFUSAL = ErrorCode.UNSUPPORTED_MODE
"""SPEC §4 and §8.3: a refusal of the value checks answers a frame the link took: a
re-send of it gets the same NAK from the reply cache."""

NO_HELLO_BEFORE_AUTH = True
"""SPEC §4.1: with no present controller (check 7) a command of the authenticated set is
NO_HELLO, before the check of its signature (check 9) could make it NOT_AUTHENTICATED."""


def stop_read_answers(*, before: bool, own_stop: bool, one_read: bool) -> set[ErrorCode | None]:
    """The answers SPEC §7.4 allows a command written with a STOP or VENT (None: ACK).

    For a command of the session table that passes the link's checks: in the
    stop's read it is PREEMPTED, or STALE_SEQUENCE when it came before the stop
    and the stop is its controller's own, with a newer seq, taken first. Read
    apart from the stop (a transport that may split the write) it runs: before
    the stop in an earlier read, after it in a later one.

    >>> sorted(e.name for e in stop_read_answers(before=True, own_stop=True, one_read=True))
    ['PREEMPTED', 'STALE_SEQUENCE']
    >>> stop_read_answers(before=False, own_stop=True, one_read=False) == {
    ...     ErrorCode.PREEMPTED, None}
    True
    """
    allowed: set[ErrorCode | None] = {ErrorCode.PREEMPTED}
    if before and own_stop:
        allowed.add(ErrorCode.STALE_SEQUENCE)
    if not one_read:
        allowed.add(None)
    return allowed


STATUS_AFTER_LINK_LOSS = True
"""SPEC §7.5 and §8.4: a session the watchdog ends is followed by its SESSION_ENDED and
then its STATUS, with no controller present, before anyone asks (GET_STATUS); on an
authenticated link both are signed for the link that ended."""

LEASE_S = 2
"""The lease of the suite's sessions that should end on their own."""


# --- small helpers --------------------------------------------------------------------


def _nak(record: Record | None) -> ErrorCode | int | None:
    message = None if record is None else record.message
    return message.error if isinstance(message, Nak) else None


async def _answered_ack(ctx: Context, frame: Frame, after: int, what: str) -> Record:
    reply = await ctx.p.reply(frame, after=after, within_s=REPLY_TIMEOUT_S)
    if reply is None:
        raise CheckFailed(f"{what}: no answer, where ACK was due")
    if not isinstance(reply.message, Ack):
        raise CheckFailed(f"{what}: answered {describe(reply.message or '')}, not ACK")
    return reply


async def _event(ctx: Context, kind: type, after: int, within_s: float) -> Record | None:
    """The first EVENT of ``kind`` after record ``after``, within ``within_s`` device seconds."""
    return await ctx.p.wait_for(
        lambda r: isinstance(r.message, kind), after=after, within_s=ctx.real(within_s) + 0.5
    )


async def _start(ctx: Context, lease_s: int = 10, mode: int = Mode.WAVE) -> Record:
    """START a session at the lowest level (with --inflate only)."""
    assert ctx.options.inflate, "a START without --inflate"
    return await ctx.ack(Start(mode, ctx.lowest_level(), lease_s), "START at intensity 1")


def _all_chambers(ctx: Context) -> int:
    return (1 << len(ctx.c.chambers)) - 1


def _cycle(ctx: Context, chambers: int | None = None, target: int | None = None) -> SetCycle:
    """A short, gentle cycle: every chamber at the lowest level's pressure."""
    low = min(level.target_dmmhg for level in ctx.c.levels)
    count = len(ctx.c.chambers) if chambers is None else chambers
    return SetCycle(CycleOrder.SIMULTANEOUS, 10, 10, 10, 10, (target or low,) * count)


# --- 3 framing -------------------------------------------------------------------------


@check(
    "3.3",
    "resync",
    "garbage, and a block longer than any frame, are dropped; the frame after each is read",
)
async def resync(ctx: Context) -> None:
    """The SPEC's resync vector ("garbage", 0x00, a frame), then 304 bytes with no 0x00."""
    p = ctx.p
    start = len(p.records)
    first = p.build(GetStatus())
    p.write(b"garbage\x00", first, note='the bytes "garbage" and a 0x00')
    await _answered_ack(ctx, first, start, 'a GET_STATUS after "garbage" and a 0x00')
    start = len(p.records)
    second = p.build(GetStatus())
    noise = bytes(range(1, 256)) + bytes(range(1, 50))
    p.write(noise + b"\x00", second, note=f"{len(noise)} bytes without a 0x00, then a 0x00")
    await _answered_ack(ctx, second, start, "a GET_STATUS after 304 bytes without a 0x00")


@check(
    "3.3",
    "chunking",
    "a frame split over many writes, and several frames in one write, are all read "
    "(section 2: nothing depends on how the bytes are chunked)",
)
async def chunking(ctx: Context) -> None:
    """One frame a byte a write; three frames in one write; a write that ends in the next frame."""
    p = ctx.p
    start = len(p.records)
    one = p.build(GetStatus())
    await p.write_cut([one], list(range(1, len(one.encode()))))
    await _answered_ack(ctx, one, start, "a GET_STATUS written one byte a write")
    start = len(p.records)
    three = [p.build(GetStatus()) for _ in range(3)]
    p.write(*three)
    for frame in three:
        await _answered_ack(
            ctx, frame, start, f"GET_STATUS seq {frame.seq}, one of three in one write"
        )
    start = len(p.records)
    pair = [p.build(GetStatus()), p.build(GetStatus())]
    await p.write_cut(pair, [len(pair[0].encode()) + 3])
    for frame in pair:
        await _answered_ack(
            ctx, frame, start, f"GET_STATUS seq {frame.seq}, its write ending in the next frame"
        )


@check(
    "3.3",
    "bad-blocks",
    "blocks that are not frames are dropped unanswered: a bad CRC, a reserved flag bit, a "
    "payload over 236 bytes, an AUTH flag without its trailer, bad COBS, under 7 bytes",
)
async def bad_blocks(ctx: Context) -> None:
    """Six blocks that are not frames and a good GET_STATUS, in one write: only it is answered."""
    p = ctx.p
    a, b, c, d, e = ((p.seq + i) % 0x10000 for i in range(1, 6))
    kind = MessageType.GET_STATUS
    short = b"\x01\x00\x07\x00"
    bad = {
        a: ("a GET_STATUS whose CRC is wrong", raw_frame(kind, seq=a, good_crc=False)),
        b: ("a GET_STATUS with reserved flag bit 1 set", raw_frame(kind, seq=b, flags=2)),
        c: ("a GET_STATUS with a 237-byte payload", raw_frame(kind, bytes(237), seq=c)),
        d: (
            "a GET_STATUS with the AUTH flag and 3 bytes where 12 are due",
            raw_frame(kind, b"\x01\x02\x03", seq=d, flags=1),
        ),
    }
    junk = [
        ("a block that is not valid COBS", bytes([0x05, 0x01, 0x02]) + b"\x00"),
        ("a block of 6 bytes", cobs.encode(short + struct.pack("<H", crc16(short))) + b"\x00"),
    ]
    start = len(p.records)
    good = p.build(GetStatus(), seq=e)
    p.seq = good.seq
    p.write(*[(wire, what) for what, wire in [*bad.values(), *junk]], good)
    await _answered_ack(
        ctx, good, start, "a good GET_STATUS after the bad blocks, in the same write"
    )
    answer = await p.wait_for(
        lambda r: any(p.reply_to(seq)(r) for seq in bad), after=start, within_s=ctx.quiet_s
    )
    if answer is not None:
        ref = getattr(answer.message, "ref_seq", None)
        what = bad.get(ref, ("a bad block", b""))[0] if ref is not None else "a bad block"
        raise CheckFailed(
            f"{what} was answered {describe(answer.message or '')}: it must be dropped"
        )


# --- 4 sequence numbers and replies --------------------------------------------------------


@check(
    "4",
    "device-numbering",
    "the device numbers its frames: CAPABILITIES is 1, then one more for each frame",
    fresh=False,
)
async def device_numbering(ctx: Context) -> None:
    """A HELLO, three GET_STATUS and two status intervals: the device's seqs run on by one."""
    p = ctx.p
    p.answering = True
    start = len(p.records)
    interval = ctx.timing("status_interval_ms", 2)
    await ctx.hello()
    for _ in range(3):
        await ctx.status()
    await ctx.sleep(2 * interval)
    frames = [r for r in p.received(start) if r.frame is not None]
    caps = next((i for i, r in enumerate(frames) if isinstance(r.message, Capabilities)), None)
    if caps is None:
        raise CheckFailed("no CAPABILITIES")
    frames = frames[caps:]
    seqs = [r.frame.seq for r in frames if r.frame is not None]
    if seqs[0] != 1:
        frames[0].note = "here"
        raise CheckFailed(f"CAPABILITIES has seq {seqs[0]}, not 1 (SPEC §4)")
    for (before, after), record in zip(itertools.pairwise(seqs), frames[1:], strict=True):
        if after != (before + 1) % 0x10000:
            record.note = "here"
            raise CheckFailed(f"the device's frame after seq {before} has seq {after}")


@check(
    "4",
    "resend",
    "a request sent again unchanged gets its first reply again and does not run again",
)
async def resend(ctx: Context) -> None:
    """SET_MODE, SET_MODE back, the first sent again: its ACK again, the mode not changed back."""
    ctx.need_control()
    p = ctx.p
    mode = (await ctx.status()).mode
    first = p.build(SetMode(ctx.other_mode(mode)))
    reply = await ctx.send(first, what="SET_MODE")
    await ctx.ack(SetMode(mode), "SET_MODE back")
    start = len(p.records)
    p.write(first)
    again = await p.reply(first, after=start, within_s=REPLY_TIMEOUT_S)
    if again is None:
        raise CheckFailed(f"the SET_MODE sent again (seq {first.seq}) got no answer")
    if again.message != reply.message:
        raise CheckFailed(
            f"the SET_MODE sent again (seq {first.seq}) was answered "
            f"{describe(again.message or '')}, not its first reply {describe(reply.message or '')}"
        )
    await ctx.mode_still(mode, "the SET_MODE sent again ran again")
    refused = p.build(SetMode(ctx.unoffered_mode()))
    reply = await ctx.send(refused, what="SET_MODE of a mode not offered")
    ctx.expect_nak(reply, REMEMBERED_REFUSAL, "SET_MODE of a mode not offered")
    start = len(p.records)
    p.write(refused)
    again = await p.reply(refused, after=start, within_s=REPLY_TIMEOUT_S)
    if again is None or again.message != reply.message:
        raise CheckFailed(
            "the refused SET_MODE sent again was answered "
            f"{describe(again.message or '') if again else 'nothing'}, not its first reply "
            f"{describe(reply.message or '')}"
        )


@check(
    "4",
    "reply-cache",
    f"the replies to at least the last {REPLY_CACHE} requests are remembered",
)
async def reply_cache(ctx: Context) -> None:
    """A SET_MODE, seven requests after it, then the SET_MODE sent again."""
    ctx.need_control()
    p = ctx.p
    mode = (await ctx.status()).mode
    first = p.build(SetMode(ctx.other_mode(mode)))
    reply = await ctx.send(first, what="SET_MODE")
    await ctx.ack(SetMode(mode), "SET_MODE back")
    for _ in range(REPLY_CACHE - 2):
        await ctx.request(GetStatus(), what="GET_STATUS")
    start = len(p.records)
    p.write(first)
    again = await p.reply(first, after=start, within_s=REPLY_TIMEOUT_S)
    if again is None or again.message != reply.message:
        raise CheckFailed(
            f"the first of {REPLY_CACHE} requests, sent again, was answered "
            f"{describe(again.message or '') if again else 'nothing'}, not its first reply"
        )
    await ctx.mode_still(mode, "the SET_MODE sent again ran again")


@check("4", "stale", "a seq older than the newest accepted, not remembered, is NAK STALE_SEQUENCE")
async def stale(ctx: Context) -> None:
    """A SET_MODE with a seq 20 behind the newest: STALE_SEQUENCE, the mode unchanged."""
    ctx.need_control()
    p = ctx.p
    mode = (await ctx.status()).mode
    old = (p.seq - 20) % 0x10000
    reply = await ctx.request(
        SetMode(ctx.other_mode(mode)), seq=old, what=f"SET_MODE with seq {old}"
    )
    ctx.expect_nak(reply, ErrorCode.STALE_SEQUENCE, f"a SET_MODE with an old seq ({old})")
    await ctx.mode_still(mode, "the stale SET_MODE ran")


@check("4", "keepalive-seq", "a KEEPALIVE is never answered, and its seq moves nothing")
async def keepalive_seq(ctx: Context) -> None:
    """A KEEPALIVE ten seqs ahead: no answer, and the next request's seq is still newer."""
    ctx.need_control()
    p = ctx.p
    n = p.seq
    start = len(p.records)
    ahead = p.build(KeepAlive(p.challenge), seq=(n + 10) % 0x10000)
    p.write(ahead)
    await ctx.silent([ahead], after=start, what=f"a KEEPALIVE (seq {ahead.seq})")
    await ctx.ack(
        SetMode(Mode.WAVE), f"SET_MODE with seq {n + 1}, after a KEEPALIVE with seq {n + 10}"
    )


@check(
    "4",
    "seq-wrap",
    "seqs are compared round 16 bits (RFC 1982) and a HELLO starts them again",
    fresh=False,
)
async def seq_wrap(ctx: Context) -> None:
    """HELLO at 65534, requests at 65535, 0 and 1; a HELLO at 1 again and a request at 2."""
    ctx.need_control()
    ctx.p.answering = True
    await ctx.hello(seq=65534)
    for seq in (65535, 0):
        await ctx.ack(GetStatus(), f"GET_STATUS with seq {seq}, after a HELLO with seq 65534")
    await ctx.ack(SetMode(Mode.PULSE), "SET_MODE with seq 1, after seq 0")
    await ctx.hello(seq=1)
    await ctx.ack(SetMode(Mode.WAVE), "SET_MODE with seq 2, after a new HELLO with seq 1")


@check(
    "4",
    "refused-uses-no-seq",
    "a frame refused before its seq (wrong version, unreadable payload, a SET_CYCLE with "
    "another number of targets than chambers) uses up no seq",
)
async def refused_uses_no_seq(ctx: Context) -> None:
    """Each refusal of `REFUSED_BEFORE_SEQ`, then a good SET_MODE with its seq."""
    ctx.need_control()
    p = ctx.p
    for what, error in REFUSED_BEFORE_SEQ:
        seq = (p.seq + 1) % 0x10000
        start = len(p.records)
        if error == ErrorCode.UNSUPPORTED_VERSION:
            p.write(raw_frame(MessageType.SET_INTENSITY, b"\x01", seq=seq, version=2), note=what)
        elif "SET_CYCLE" in what:
            if not ctx.c.features & Feature.CYCLE or len(ctx.c.chambers) >= 16:
                continue
            p.write(p.build(_cycle(ctx, chambers=len(ctx.c.chambers) + 1), seq=seq))
        else:
            p.write(p.build_raw(MessageType.SET_INTENSITY, b"", seq=seq))
        refusal = await p.wait_for(p.reply_to(seq), after=start, within_s=REPLY_TIMEOUT_S)
        ctx.expect_nak(refusal, error, what)
        await ctx.ack(SetMode(Mode.WAVE), f"a SET_MODE with the seq ({seq}) of {what}", seq=seq)
        p.seq = seq


# --- 5 messages, 13 extending --------------------------------------------------------------


@check("5.2", "capabilities", "CAPABILITIES is consistent: limits, modes, levels and timing")
async def capabilities(ctx: Context) -> None:
    """The CAPABILITIES of the last HELLO, field by field against §5.2."""
    c = ctx.c
    problems = []
    if not 1 <= c.max_lease_s <= c.session_cap_s:
        problems.append(f"max_lease_s {c.max_lease_s} is not within 1..session_cap_s")
    modes = {m.mode for m in c.modes}
    for needed in (Mode.WAVE, Mode.PULSE):
        if needed not in modes:
            problems.append(f"mode {needed.name} is not listed")
    if (Mode.CYCLE in modes) != bool(c.features & Feature.CYCLE):
        problems.append("CYCLE is listed as a mode exactly when the CYCLE feature is announced")
    levels = sorted(level.level for level in c.levels)
    if levels != list(range(1, len(levels) + 1)):
        problems.append(f"levels are numbered {levels}, not from 1 up")
    if any(level.target_dmmhg >= c.ceiling_dmmhg for level in c.levels):
        problems.append("a level's target reaches the ceiling")
    for name in ("watchdog_ms", "status_interval_ms", "pause_limit_s"):
        if getattr(c, name) == 0:
            problems.append(f"{name} is 0")
    if problems:
        raise CheckFailed(
            "; ".join(problems)
            + (" (modes listed: " + ", ".join(f"{m.mode} {m.name}" for m in c.modes) + ")")
        )


@check(
    "13",
    "extra-bytes",
    "bytes after the fields a receiver knows are ignored, and the rest of the message counts",
)
async def extra_bytes(ctx: Context) -> None:
    """GET_STATUS and SET_MODE with bytes after their fields: taken, the mode set."""
    ctx.need_control()
    p = ctx.p
    start = len(p.records)
    looks = p.build_raw(MessageType.GET_STATUS, bytes(range(1, 17)))
    p.write(looks)
    await _answered_ack(ctx, looks, start, "a GET_STATUS with 16 bytes after its (empty) fields")
    start = len(p.records)
    sets = p.build_raw(MessageType.SET_MODE, bytes([Mode.PULSE, 9, 9, 9]))
    p.write(sets)
    await _answered_ack(ctx, sets, start, "a SET_MODE PULSE with 3 bytes after its mode")
    mode = (await ctx.status()).mode
    if mode != Mode.PULSE:
        raise CheckFailed(f"the SET_MODE PULSE with bytes after it did not set the mode ({mode})")


# --- 7 the link ------------------------------------------------------------------------


@check(
    "7.1",
    "hello",
    "HELLO is answered CAPABILITIES, then one STATUS, then a CHALLENGE; it never changes "
    "the session",
    fresh=False,
)
async def hello(ctx: Context) -> None:
    """The frames after a HELLO's CAPABILITIES; with --inflate, a HELLO during a session."""
    p = ctx.p
    p.answering = True
    start = len(p.records)
    await ctx.hello()
    caps = next(r for r in p.received(start) if isinstance(r.message, Capabilities))
    index = caps.index + 1
    for kind, name, after in (
        (Status, "STATUS", "CAPABILITIES"),
        (Challenge, "CHALLENGE", "STATUS"),
    ):
        record = await p.wait_for(lambda r: True, after=index, within_s=REPLY_TIMEOUT_S)
        if record is None:
            raise CheckFailed(f"no {name} after {after}")
        index = record.index + 1
        if not isinstance(record.message, kind):
            record.note = "here"
            raise CheckFailed(f"after {after} came {describe(record.message or '')}, not {name}")
        if isinstance(record.message, Status):
            record.note = "after CAPABILITIES"
            if not record.message.flags & StatusFlag.CONTROLLER_PRESENT:
                raise CheckFailed("the STATUS after CAPABILITIES does not show CONTROLLER_PRESENT")
    if not ctx.options.inflate or ctx.control is not None:
        return
    await _start(ctx)
    await ctx.hello()
    state = await ctx.status()
    if state.state != SessionState.RUNNING:
        raise CheckFailed(f"a HELLO during a session changed it: the state is {state.state.name}")


@check(
    "7.2",
    "answers",
    "a wrong version, an unknown type and a short payload are answered NAK; a device's own "
    "message types are dropped",
)
async def answers(ctx: Context) -> None:
    """A frame of version 2, type 0x3F, a short SET_INTENSITY; an ACK and an EVENT sent to it."""
    p = ctx.p
    seq = (p.seq + 1) % 0x10000
    start = len(p.records)
    p.write(raw_frame(MessageType.GET_STATUS, seq=seq, version=2), note="a GET_STATUS of version 2")
    p.seq = seq
    reply = await p.wait_for(p.reply_to(seq), after=start, within_s=REPLY_TIMEOUT_S)
    ctx.expect_nak(reply, ErrorCode.UNSUPPORTED_VERSION, "a frame of version 2")
    unknown = p.build_raw(0x3F)
    what = "a frame of the unknown type 0x3F"
    ctx.expect_nak(await ctx.send(unknown, what=what), ErrorCode.UNKNOWN_MESSAGE, what)
    short = p.build_raw(MessageType.SET_INTENSITY)
    what = "a SET_INTENSITY without its level"
    ctx.expect_nak(await ctx.send(short, what=what), ErrorCode.BAD_PAYLOAD, what)
    for msg_type, payload, what in (
        (MessageType.ACK, struct.pack("<H", p.seq), "an ACK sent to the device"),
        (MessageType.EVENT, b"\x03\x02\x00\x00", "an EVENT sent to the device"),
    ):
        start = len(p.records)
        frame = p.build_raw(msg_type, payload)
        p.write(frame)
        await ctx.silent([frame], after=start, what=what)


@check(
    "7.3",
    "watchdog",
    "a controller that answers challenges is kept; a silent one is forgotten within "
    "watchdog_ms of the last challenge it answered",
)
async def watchdog(ctx: Context) -> None:
    """Two watchdogs answering every challenge, then silence until the device must forget."""
    p = ctx.p
    ctx.timing("watchdog_ms", 4)
    await ctx.sleep(2 * ctx.watchdog_s())
    state = await ctx.status()
    if not state.flags & StatusFlag.CONTROLLER_PRESENT:
        raise CheckFailed(
            "the device forgot a controller that answered every challenge "
            f"(within {2 * ctx.watchdog_s():g} s)"
        )
    if not p.answered:
        raise CheckFailed(f"no CHALLENGE came in {2 * ctx.watchdog_s():g} s")
    said = await ctx.go_silent_until_forgotten()
    reply = await ctx.request(SetMode(Mode.WAVE), what="SET_MODE after the silence", sign=False)
    ctx.expect_nak(reply, ErrorCode.NO_HELLO, "a SET_MODE after the device forgot the suite")
    ctx.notes.append(f"7.3: {said}")


@check(
    "7.2",
    "no-hello",
    "without a present controller only HELLO, STOP, VENT, GET_STATUS and KEEPALIVE are taken "
    "(a KEEPALIVE unanswered)",
    fresh=False,
)
async def no_hello(ctx: Context) -> None:
    """After the watchdog: SET_MODE, PAUSE, RESUME, RESET_FAULT, KEEPALIVE and GET_STATUS."""
    await ctx.forget()
    p = ctx.p
    mode = (await ctx.status(sign=False)).mode
    for message in (SetMode(ctx.other_mode(mode)), Pause(), Resume(), ResetFault()):
        what = f"{message.TYPE.name} with no present controller"
        reply = await ctx.request(message, what=what, sign=False)
        allowed = {ErrorCode.NO_HELLO}
        if not NO_HELLO_BEFORE_AUTH:
            allowed.add(ErrorCode.NOT_AUTHENTICATED)
        if _nak(reply) not in allowed:
            raise CheckFailed(f"{what}: answered {describe(reply.message or '')}, not NAK NO_HELLO")
    start = len(p.records)
    alive = p.build(KeepAlive(None), sign=False)
    p.write(alive)
    await ctx.silent([alive], after=start, what="a KEEPALIVE with no present controller")
    state = await ctx.status(sign=False)
    if state.flags & StatusFlag.CONTROLLER_PRESENT:
        raise CheckFailed("a STATUS with no present controller shows CONTROLLER_PRESENT")
    if state.mode != mode:
        raise CheckFailed(f"a refused SET_MODE changed the mode to {state.mode}")


@check(
    "7.4",
    "stop-from-anyone",
    "STOP and VENT are taken from anyone: before HELLO, unsigned on a signed link, with an old seq",
    fresh=False,
)
async def stop_from_anyone(ctx: Context) -> None:
    """STOP and VENT with no controller; unsigned and old-seq STOPs on a signed link."""
    await ctx.forget()
    for message in (Stop(), Vent()):
        await ctx.ack(message, f"{message.TYPE.name} before HELLO", sign=False)
    state = await ctx.status(sign=False)
    if not state.flags & StatusFlag.STOP_SINCE_END:
        raise CheckFailed("a STOP with no session did not set STOP_SINCE_END (section 6)")
    await ctx.fresh()
    p = ctx.p
    await ctx.ack(Stop(), "an unsigned STOP", sign=False)
    old = (p.seq - 30) % 0x10000
    await ctx.ack(Stop(), f"a STOP with an old seq ({old})", seq=old)
    if not ctx.options.inflate or ctx.control is not None:
        return
    for what, sign in (("an unsigned STOP", False), ("a STOP with an old seq", None)):
        await _start(ctx)
        start = len(p.records)
        seq = (p.seq - 30) % 0x10000 if sign is None else None
        await ctx.ack(Stop(), f"{what} during a session", seq=seq, sign=sign)
        if await _event(ctx, SessionEnded, start, 1.0) is None:
            raise CheckFailed(f"{what} during a session did not end it (no SESSION_ENDED)")


@check(
    "7.3",
    "challenges",
    "a CHALLENGE comes at least every quarter of watchdog_ms while a controller is present",
)
async def challenges(ctx: Context) -> None:
    """The CHALLENGEs of a watchdog and a half, spaced by the uptime they carry."""
    p = ctx.p
    start = len(p.records)
    quarter = ctx.timing("watchdog_ms", 1.5) / 4
    span = max(1.5 * ctx.watchdog_s(), 6 * quarter)
    await ctx.sleep(span)
    found = [r for r in p.received(start) if isinstance(r.message, Challenge)]
    if len(found) < 2:
        raise CheckFailed(f"{len(found)} CHALLENGE in {span:g} s")
    uptimes = [getattr(r.message, "uptime_ms", 0) for r in found]
    if all(uptimes):
        gaps = [(b - a) / 1000 for a, b in itertools.pairwise(uptimes)]
        limit, clock = quarter * 1.1 + 0.02, "by the uptimes they carry"
    else:
        gaps = [(b.at - a.at) * ctx.speed for a, b in itertools.pairwise(found)]
        limit, clock = quarter * 1.25 + 0.1 * ctx.speed, "by when they arrived"
    worst = max(gaps)
    if worst > limit:
        raise CheckFailed(
            f"two challenges came {worst:.3f} s apart ({clock}); at most a quarter of "
            f"watchdog_ms ({quarter:g} s) is allowed"
        )


@check(
    "7.3",
    "proof-of-life",
    "only a KEEPALIVE of version 1 answering a recent challenge proves life: not one without "
    "a challenge, nor one naming a challenge never sent, nor one with a reserved flag bit set "
    "or of another version, nor a command",
)
async def proof_of_life(ctx: Context) -> None:
    """Silence on the challenges while frames that prove nothing keep coming (SPEC §7.3).

    The KEEPALIVE with a reserved flag bit and the one of version 2 name the newest
    challenge and are signed as the link signs: nothing but the flag or the version
    keeps them from proving life.
    """
    p = ctx.p

    def feed() -> None:
        p.keepalive(None, background=False)
        p.keepalive(0x5EEDFACE, background=False)
        named = p.challenge
        if named is not None:
            flagged = with_flags(p.build(KeepAlive(named)), 0x02)
            p.write((flagged, f"a KEEPALIVE naming challenge {named} with reserved flag bit 1"))
            p.write(p.build(KeepAlive(named), version=2))
        p.write(p.build(GetStatus()))

    await ctx.sleep(ctx.timing("watchdog_ms", 2) / 2)
    await ctx.go_silent_until_forgotten(feed=feed)


@check(
    "7.4",
    "stop-first",
    "a STOP or VENT read with other frames goes first: a command of the session table that "
    "the link takes is refused PREEMPTED (or STALE_SEQUENCE behind its controller's own "
    "newer STOP), one the link refuses gets that refusal, GET_STATUS is answered; nothing "
    "runs, nor when sent again",
)
async def stop_first(ctx: Context) -> None:
    """Frames and a STOP or VENT in one write, each way round; with --inflate a START too."""
    ctx.need_control()
    p = ctx.p
    before = await ctx.status()
    mode, intensity = before.mode, before.intensity
    other = ctx.other_mode(mode)
    low = ctx.lowest_level()

    def stranger(message: Message) -> Frame:
        # Unsigned, with an old seq: it moves no seq (SPEC §4, §12.3), so the command
        # read with it has passed its seq check and must be PREEMPTED.
        return p.build(message, seq=(p.seq - 50) % 0x10000, sign=False)

    # Each trial builds its frames when it runs, in the order they go (their seqs and
    # counters the newest): the frames, the index of the command among them, whether
    # the stop is the link's own, and the one refusal due whatever the read, if one is.
    Trial = tuple[list[Frame], int, bool, ErrorCode | None]
    trials: list[tuple[str, Callable[[], Trial]]] = [
        (
            "a SET_MODE then a stranger's STOP in one write",
            lambda: ([p.build(SetMode(other)), stranger(Stop())], 0, False, None),
        ),
        (
            "a STOP then a SET_INTENSITY in one write",
            lambda: ([p.build(Stop()), p.build(SetIntensity(low))], 1, True, None),
        ),
        (
            "a SET_MODE then a stranger's VENT in one write",
            lambda: ([p.build(SetMode(other)), stranger(Vent())], 0, False, None),
        ),
        (
            "a SET_MODE then the link's STOP, with the next seq, in one write",
            lambda: ([p.build(SetMode(other)), p.build(Stop())], 0, True, None),
        ),
        (
            # Refused by the link before the stop can matter: that refusal, in any read.
            "a SET_MODE with an old seq then a stranger's STOP in one write",
            lambda: (
                [p.build(SetMode(other), seq=(p.seq - 40) % 0x10000), stranger(Stop())],
                0, False, ErrorCode.STALE_SEQUENCE,
            ),
        ),
    ]  # fmt: skip
    for what, build in trials:
        frames, victim, own, refusal = build()
        urgent = 1 - victim
        one_read = ctx.strict_reads(sum(len(f.encode()) for f in frames)) is None
        allowed = stop_read_answers(before=victim == 0, own_stop=own, one_read=one_read)
        if refusal is not None:
            allowed = {refusal}
        start = len(p.records)
        p.write(*frames)
        name = MessageType(frames[urgent].msg_type).name
        await _answered_ack(ctx, frames[urgent], start, f"the {name} of {what}")
        reply = await _victim_answer(ctx, frames[victim], start, what, allowed)
        state = await ctx.status()
        ran = (state.mode, state.intensity) != (mode, intensity)
        if ran and not isinstance(reply.message, Ack):
            raise CheckFailed(
                f"{what}: the refused command ran (mode {mode} -> {state.mode}, intensity "
                f"{intensity} -> {state.intensity})"
            )
        start = len(p.records)
        p.write(frames[victim])
        again = await p.reply(frames[victim], after=start, within_s=REPLY_TIMEOUT_S)
        if again is None or again.message != reply.message:
            said = describe(again.message or "") if again else "nothing"
            raise CheckFailed(
                f"the command of {what}, sent again alone, was answered {said}, not its first "
                f"answer {describe(reply.message or '')} (SPEC §4, §7.4)"
            )
        if ran:  # it came in an earlier read than the stop, and ran: put the preset back
            await ctx.ack(SetMode(mode), "SET_MODE back")
            await ctx.ack(SetIntensity(intensity), "SET_INTENSITY back")
        elif (state := await ctx.status()).mode != mode:
            raise CheckFailed(f"the command of {what} ran when sent again ({state.mode})")
    await _stop_read_as_usual(ctx, stranger)
    if not ctx.options.inflate:
        return
    what = "a START then a stranger's STOP in one write"
    loose = ctx.strict_reads(_wire_size(ctx, [Start(Mode.WAVE, low, 10), Stop()]))
    begin = p.build(Start(Mode.WAVE, low, 10))
    halt = stranger(Stop())
    start = len(p.records)
    p.write(begin, halt)
    await _answered_ack(ctx, halt, start, f"the STOP of {what}")
    started = await p.reply(begin, after=start, within_s=REPLY_TIMEOUT_S)
    if started is None:
        raise CheckFailed(f"the START of {what} was not answered")
    if loose is None or not isinstance(started.message, Ack):
        ctx.expect_nak(started, ErrorCode.PREEMPTED, f"the START of {what}")
    elif await _event(ctx, SessionEnded, start, 1.0) is None:
        raise CheckFailed(f"the START of {what} ran ({loose}) and its session did not end")
    state = await ctx.status()
    if state.state != SessionState.IDLE:
        raise CheckFailed(f"after {what} the state is {state.state.name}")


async def _victim_answer(
    ctx: Context, frame: Frame, start: int, what: str, allowed: set[ErrorCode | None]
) -> Record:
    """The answer to ``frame``, written with a stop; fail unless ``allowed`` (None: ACK)."""
    reply = await ctx.p.reply(frame, after=start, within_s=REPLY_TIMEOUT_S)
    answer = None if reply is not None and isinstance(reply.message, Ack) else _nak(reply)
    if reply is None or answer not in allowed:
        said = describe(reply.message or "") if reply else "nothing"
        names = " or ".join(sorted("ACK" if a is None else f"NAK {a.name}" for a in allowed))
        raise CheckFailed(f"the command of {what} was answered {said}, not {names}")
    return reply


async def _stop_read_as_usual(ctx: Context, stranger: Callable[[Message], Frame]) -> None:
    """A GET_STATUS, and an unsigned command on a signed link, each with a stranger's STOP.

    SPEC §7.4: GET_STATUS in a stop's read is answered as usual; a frame the link
    refuses (NOT_AUTHENTICATED) gets that refusal, not PREEMPTED, and uses up no
    seq: the controller's own frame with that seq is still taken.
    """
    p = ctx.p
    look = p.build(GetStatus())
    what = "a GET_STATUS then a stranger's STOP in one write"
    start = len(p.records)
    p.write(look, stranger(Stop()))
    await _victim_answer(ctx, look, start, what, {None})
    if (
        await p.wait_for(
            lambda r: isinstance(r.message, Status), after=start, within_s=REPLY_TIMEOUT_S
        )
        is None
    ):
        raise CheckFailed(f"the GET_STATUS of {what} got its ACK and no STATUS (SPEC §7.5)")
    if not p.authenticated:
        return
    mode = (await ctx.status()).mode
    seq = (p.seq + 1) % 0x10000
    forged = p.build(SetMode(ctx.other_mode(mode)), seq=seq, sign=False)
    what = f"an unsigned SET_MODE (seq {seq}) then a stranger's STOP in one write"
    start = len(p.records)
    p.write(forged, stranger(Stop()))
    await _victim_answer(ctx, forged, start, what, {ErrorCode.NOT_AUTHENTICATED})
    await ctx.ack(SetMode(mode), f"the link's own SET_MODE with the seq ({seq}) of {what}", seq=seq)
    p.seq = seq


def _wire_size(ctx: Context, messages: list[Message]) -> int:
    """About how many bytes ``messages`` take on the wire, signed as the link signs."""
    trailer = 12 if ctx.p.authenticated else 0
    return sum(len(Frame(1, m.TYPE, m.encode_payload()).encode()) + trailer + 1 for m in messages)


@check(
    "7.5",
    "status-reports",
    "a STATUS comes every status_interval_ms while a controller is present",
)
async def status_reports(ctx: Context) -> None:
    """The STATUS of five status intervals, spaced by their uptimes."""
    p = ctx.p
    interval = ctx.timing("status_interval_ms", 5)
    start = len(p.records)
    await ctx.sleep(5 * interval)
    uptimes = [r.message.uptime_ms for r in p.received(start) if isinstance(r.message, Status)]
    if len(uptimes) < 3:
        raise CheckFailed(f"{len(uptimes)} STATUS in {5 * interval:g} s")
    worst = max((b - a) / 1000 for a, b in itertools.pairwise(uptimes))
    if worst > interval * 1.1 + 0.02:
        raise CheckFailed(
            f"two STATUS came {worst:.3f} s apart by their uptimes (status_interval_ms "
            f"{ctx.c.status_interval_ms})"
        )


# --- 8 the session state machine -----------------------------------------------------------


@check(
    "8.2",
    "table-idle",
    "in IDLE: RENEW, PAUSE and RESUME are BAD_STATE; SET_MODE, SET_INTENSITY, SET_CYCLE, "
    "STOP, VENT and RESET_FAULT are taken and leave it IDLE",
)
async def table_idle(ctx: Context) -> None:
    """Each command of the IDLE row of §8.2, then the state."""
    ctx.need_control()
    for refused in (Pause(), Resume()):
        await ctx.nak(refused, ErrorCode.BAD_STATE, f"{refused.TYPE.name} in IDLE")
    state = await ctx.status()
    if state.state != SessionState.IDLE:
        raise CheckFailed(f"PAUSE and RESUME in IDLE left the state {state.state.name}")
    taken: list[Message] = [SetMode(state.mode), SetIntensity(ctx.lowest_level())]
    if ctx.c.features & Feature.CYCLE:
        taken.append(_cycle(ctx))
    taken += [ResetFault(), Stop(), Vent()]
    for message in taken:
        await ctx.ack(message, f"{message.TYPE.name} in IDLE")
    state = await ctx.status()
    if state.state != SessionState.IDLE:
        raise CheckFailed(f"the commands taken in IDLE left the state {state.state.name}")
    if ctx.options.inflate:
        await ctx.nak(
            Renew(Mode.WAVE, ctx.lowest_level(), 10), ErrorCode.BAD_STATE, "RENEW in IDLE"
        )


@check(
    "8.2",
    "table-session",
    "in RUNNING and PAUSED each command leads where the table says, or is BAD_STATE",
    inflate=True,
)
async def table_session(ctx: Context) -> None:
    """A session through RUNNING and PAUSED, each command of both rows, then VENT and STOP."""
    ctx.need_control()
    p = ctx.p
    low = ctx.lowest_level()

    async def expect(state: SessionState, after: str) -> Status:
        found = await ctx.status()
        if found.state != state:
            raise CheckFailed(f"after {after} the state is {found.state.name}, not {state.name}")
        return found

    start = len(p.records)
    await _start(ctx)
    started = await _event(ctx, SessionStarted, start, 1.0)
    if started is None:
        raise CheckFailed("a START in IDLE sent no SESSION_STARTED")
    await expect(SessionState.RUNNING, "START")
    for refused in (Resume(), ResetFault()):
        await ctx.nak(refused, ErrorCode.BAD_STATE, f"{refused.TYPE.name} in RUNNING")
    await ctx.ack(Renew(Mode.PULSE, low, 10), "RENEW in RUNNING")
    await ctx.ack(SetMode(Mode.WAVE), "SET_MODE in RUNNING")
    await ctx.ack(SetIntensity(low), "SET_INTENSITY in RUNNING")
    await expect(SessionState.RUNNING, "RENEW, SET_MODE and SET_INTENSITY")
    await ctx.ack(Pause(), "PAUSE in RUNNING")
    await expect(SessionState.PAUSED, "PAUSE")
    for again in (Pause(), ResetFault()):
        await ctx.nak(again, ErrorCode.BAD_STATE, f"{again.TYPE.name} in PAUSED")
    await ctx.ack(Renew(Mode.WAVE, low, 10), "RENEW in PAUSED")
    await ctx.ack(SetMode(Mode.WAVE), "SET_MODE in PAUSED")
    await expect(SessionState.PAUSED, "RENEW and SET_MODE in PAUSED")
    await ctx.ack(Resume(), "RESUME in PAUSED")
    await expect(SessionState.RUNNING, "RESUME")
    start = len(p.records)
    await ctx.ack(Start(Mode.WAVE, low, 10), "START in RUNNING")
    await ctx.ack(Vent(), "VENT in RUNNING")
    ended = await _event(ctx, SessionEnded, start, 1.0)
    if ended is None or getattr(ended.message, "reason", None) != EndReason.VENTED:
        raise CheckFailed("VENT did not end the session with SESSION_ENDED VENTED")
    extra = [r for r in p.received(start) if isinstance(r.message, SessionStarted)]
    if extra:
        raise CheckFailed("a START during a session began a new one (SESSION_STARTED)")
    state = await expect(SessionState.IDLE, "VENT")
    if not state.flags & StatusFlag.DUMP_OPEN:
        raise CheckFailed("VENT did not open the dump valve (STATUS flag DUMP_OPEN)")
    await _start(ctx)
    state = await expect(SessionState.RUNNING, "START after VENT")
    if state.flags & StatusFlag.DUMP_OPEN:
        raise CheckFailed("a START did not close the dump valve (section 8.3)")
    await ctx.ack(Stop(), "STOP in RUNNING")
    await expect(SessionState.IDLE, "STOP")


@check(
    "8.3",
    "values",
    "values are checked after the table: levels, modes, cycles, and (with --inflate) a "
    "START's mode, level and lease",
)
async def values(ctx: Context) -> None:
    """Levels, modes and cycles out of range; with --inflate, STARTs out of range."""
    ctx.need_control()
    c = ctx.c
    before = await ctx.status()
    for level in (0, len(c.levels) + 1):
        await ctx.nak(
            SetIntensity(level), ErrorCode.UNSUPPORTED_INTENSITY, f"SET_INTENSITY {level}"
        )
    await ctx.nak(
        SetMode(ctx.unoffered_mode()), ErrorCode.UNSUPPORTED_MODE, "SET_MODE of a mode not offered"
    )
    cycle = bool(c.features & Feature.CYCLE)
    if cycle and not before.flags & StatusFlag.CYCLE_LOADED:
        await ctx.nak(
            SetMode(Mode.CYCLE), ErrorCode.NO_CYCLE, "SET_MODE CYCLE with no cycle loaded"
        )
    if cycle:
        await ctx.nak(
            _cycle(ctx, chambers=len(c.chambers) + 1 if len(c.chambers) < 16 else 1),
            ErrorCode.BAD_PAYLOAD,
            "SET_CYCLE with another number of targets than chambers",
        )
        if c.max_target_dmmhg < 0xFFFF:  # else no target on the wire is above it
            what = "SET_CYCLE with a target above max_target_dmmhg"
            reply = await ctx.request(_cycle(ctx, target=c.max_target_dmmhg + 1), what=what)
            if _nak(reply) != ErrorCode.OVER_PRESSURE_LIMIT:
                await ctx.request(_cycle(ctx), what="SET_CYCLE of a gentle cycle, over that one")
            ctx.expect_nak(reply, ErrorCode.OVER_PRESSURE_LIMIT, what)
    else:
        await ctx.nak(
            _cycle(ctx), ErrorCode.UNSUPPORTED_MODE, "SET_CYCLE without the CYCLE feature"
        )
    if ctx.options.inflate:
        p = ctx.p
        start = len(p.records)
        low = ctx.lowest_level()
        refused: list[tuple[Start, ErrorCode]] = [
            (Start(ctx.unoffered_mode(), low, 10), ErrorCode.UNSUPPORTED_MODE),
            (Start(Mode.WAVE, 0, 10), ErrorCode.UNSUPPORTED_INTENSITY),
            (Start(Mode.WAVE, low, 0), ErrorCode.LEASE_OUT_OF_RANGE),
        ]
        if c.max_lease_s < 0xFFFF:
            refused.append((Start(Mode.WAVE, low, c.max_lease_s + 1), ErrorCode.LEASE_OUT_OF_RANGE))
        for message, error in refused:
            await ctx.nak(
                message,
                error,
                f"START mode {message.mode} level {message.intensity} lease {message.lease_s}",
            )
        if any(isinstance(r.message, SessionStarted) for r in p.received(start)):
            raise CheckFailed("a refused START began a session")
    after = await ctx.status()
    if (after.mode, after.intensity, after.state) != (before.mode, before.intensity, before.state):
        raise CheckFailed(
            f"refused commands changed the device: mode {before.mode} -> {after.mode}, "
            f"intensity {before.intensity} -> {after.intensity}, {after.state.name}"
        )


async def _vented(ctx: Context, what: str, ended_uptime: float) -> None:
    """Every chamber below 10 mmHg within 10 s of ``ended_uptime``, or a fault latched (§10.11)."""
    problem = await ctx.vented(ended_uptime)
    if problem is not None:
        raise CheckFailed(f"{what}: {problem}")


async def _session_end(
    ctx: Context, after: int, within_s: float, what: str
) -> tuple[SessionEnded, Status]:
    """The SESSION_ENDED after record ``after`` and the STATUS that follows it."""
    p = ctx.p
    ended = await _event(ctx, SessionEnded, after, within_s)
    if ended is None or not isinstance(ended.message, SessionEnded):
        raise CheckFailed(f"{what}: no SESSION_ENDED within {within_s:g} s")
    ended.note = "here"
    status = await p.wait_for(
        lambda r: isinstance(r.message, Status), after=ended.index, within_s=REPLY_TIMEOUT_S
    )
    if status is None or not isinstance(status.message, Status):
        raise CheckFailed(f"{what}: no STATUS after SESSION_ENDED (section 8.4)")
    status.note = "after SESSION_ENDED"
    return ended.message, status.message


@check(
    "8.4",
    "lease",
    f"a session ends by itself (COMPLETED) when its lease ({LEASE_S} s) is spent, and vents",
    inflate=True,
)
async def lease(ctx: Context) -> None:
    """A START with a 2 s lease, its end by the device's uptime, then the chambers emptying."""
    ctx.need_control()
    p = ctx.p
    start = len(p.records)
    await _start(ctx, lease_s=LEASE_S)
    began = await ctx.status()
    ended, after = await _session_end(ctx, start, LEASE_S + 3, f"a START with a {LEASE_S} s lease")
    took = (after.uptime_ms - began.uptime_ms) / 1000
    if ended.reason != EndReason.COMPLETED:
        raise CheckFailed(f"the session ended {describe(ended)}, not COMPLETED")
    if not LEASE_S - 1 <= ended.pressure_s <= LEASE_S + 1 or took > LEASE_S + 1:
        raise CheckFailed(
            f"a {LEASE_S} s lease ran {took:.2f} s by the device's uptime ({ended.pressure_s} s "
            "under pressure, by SESSION_ENDED)"
        )
    await _vented(ctx, "after the lease", after.uptime_ms / 1000)


@check(
    "8.4",
    "pause-limit",
    "a session paused for pause_limit_s ends (PAUSE_TIMEOUT); paused time spends no lease",
    inflate=True,
)
async def pause_limit(ctx: Context) -> None:
    """A START, a PAUSE, and the end of the pause by the device's uptime."""
    ctx.need_control()
    limit = ctx.c.pause_limit_s
    if limit > ctx.options.patience_s:
        raise NotTested(
            f"pause_limit_s is {limit} s, longer than --patience {ctx.options.patience_s:g}: "
            f"run with --patience {limit + 10} to wait for it"
        )
    p = ctx.p
    await _start(ctx, lease_s=5)
    start = len(p.records)
    await ctx.ack(Pause(), "PAUSE")
    paused = await ctx.status()
    ended, after = await _session_end(ctx, start, limit + 3, "a paused session")
    if ended.reason != EndReason.PAUSE_TIMEOUT:
        raise CheckFailed(f"the paused session ended {describe(ended)}, not PAUSE_TIMEOUT")
    took = (after.uptime_ms - paused.uptime_ms) / 1000
    if not limit - 1 <= took <= limit + 1:
        raise CheckFailed(f"the pause ended after {took:.2f} s, not {limit} s (pause_limit_s)")
    lefts = {
        s.seconds_left for r, s in _statuses(p.received(start)) if s.state == SessionState.PAUSED
    }
    if len(lefts) > 1:
        raise CheckFailed(f"the lease ran down while paused: seconds_left took {sorted(lefts)}")


@check(
    "10.6",
    "session-cap",
    "seconds under pressure in one session never exceed session_cap_s, whatever STARTs come",
    inflate=True,
)
async def session_cap(ctx: Context) -> None:
    """A session renewed by START before each lease ends, until the cap ends it."""
    ctx.need_control()
    c = ctx.c
    cap = c.session_cap_s
    if cap > ctx.options.patience_s:
        raise NotTested(
            f"session_cap_s is {cap} s, longer than --patience {ctx.options.patience_s:g}: "
            f"run with --patience {cap + 10} to wait for it"
        )
    p = ctx.p
    lease_s = min(c.max_lease_s, cap)
    start = len(p.records)
    await _start(ctx, lease_s=lease_s)
    began = await ctx.status()
    while True:
        ended = await _event(ctx, SessionEnded, start, min(lease_s / 2, 5))
        if ended is not None:
            break
        state = await ctx.status()
        ran = (state.uptime_ms - began.uptime_ms) / 1000
        if ran > cap + 2:
            raise CheckFailed(f"the session ran {ran:.1f} s, past session_cap_s {cap}")
        if state.state == SessionState.RUNNING and state.seconds_left < lease_s / 2 + 1:
            await ctx.ack(Start(Mode.WAVE, ctx.lowest_level(), lease_s), "START renewing the lease")
    assert isinstance(ended.message, SessionEnded)
    if ended.message.reason != EndReason.SESSION_CAP:
        raise CheckFailed(f"the session ended {describe(ended.message)}, not SESSION_CAP")
    if ended.message.pressure_s > cap:
        raise CheckFailed(f"{ended.message.pressure_s} s under pressure, over session_cap_s {cap}")


def _statuses(records: list[Record]) -> list[tuple[Record, Status]]:
    return [(r, r.message) for r in records if isinstance(r.message, Status)]


# --- 10 safety ----------------------------------------------------------------------------


@check(
    "10.3",
    "silent-session",
    "a silent controller's session ends within watchdog_ms, vented (LINK_LOST, dump valve "
    "open), and nothing resumes by itself (10.4)",
    inflate=True,
)
async def silent_session(ctx: Context) -> None:
    """A session, then silence: LINK_LOST, the dump valve, empty chambers, no resume."""
    ctx.need_control()
    p = ctx.p
    ctx.timing("watchdog_ms", 2)  # before a session is started for nothing
    await _start(ctx, lease_s=60)
    await ctx.sleep(ctx.watchdog_s() / 2)
    start = len(p.records)
    signed = p.authenticated and bool(ctx.c.features & Feature.SIGNED_LINK)
    await ctx.go_silent_until_forgotten()
    state = await ctx.status(sign=False)
    if state.state != SessionState.IDLE or state.last_end != EndReason.LINK_LOST:
        raise CheckFailed(
            f"after the silence the state is {state.state.name}, last_end "
            f"{getattr(state.last_end, 'name', state.last_end)}, not IDLE and LINK_LOST"
        )
    _ended_then_status(ctx, start, signed)
    if not state.flags & StatusFlag.DUMP_OPEN:
        raise CheckFailed("the session ended by link loss without opening the dump valve")
    await _vented(ctx, "after the link loss", state.uptime_ms / 1000)
    start = len(p.records)
    await ctx.fresh()
    state = await ctx.status()
    if state.state != SessionState.IDLE or any(
        isinstance(r.message, SessionStarted) for r in p.received(start)
    ):
        raise CheckFailed(f"after a new HELLO the session came back: {state.state.name}")


def _ended_then_status(ctx: Context, start: int, signed: bool) -> None:
    """SESSION_ENDED LINK_LOST since record ``start``, then a STATUS before any ACK (§7.5)."""
    received = ctx.p.received(start)
    ended = next((r for r in received if isinstance(r.message, SessionEnded)), None)
    if ended is None or getattr(ended.message, "reason", None) != EndReason.LINK_LOST:
        raise CheckFailed("no SESSION_ENDED LINK_LOST came when the session ended (SPEC §8.4)")
    ended.note = "the watchdog's end"
    if not STATUS_AFTER_LINK_LOSS:
        return
    # The first STATUS after it, unless an ACK came first: then it answers the suite's
    # GET_STATUS, and the STATUS the device owed on its own never came.
    after = next(
        (r for r in received if r.index > ended.index and isinstance(r.message, Status | Ack)),
        None,
    )
    if after is None or not isinstance(after.message, Status):
        raise CheckFailed(
            "no STATUS followed the SESSION_ENDED of the watchdog's link loss before the "
            "suite asked for one: the device must send it with no controller present "
            "(SPEC §7.5, §8.4)"
        )
    after.note = "after SESSION_ENDED"
    if signed:
        for record in (ended, after):
            if record.signed is not True:
                record.note = "here"
                raise CheckFailed(
                    f"{describe(record.message or '')} after the watchdog is not signed for "
                    "the link that ended (SPEC §7.5, §12.3)"
                )


@check(
    "10.11",
    "vented-after-stop",
    "after a STOP ends a session every chamber reads below 10 mmHg within 10 s, or a fault "
    "is latched",
    inflate=True,
)
async def vented_after_stop(ctx: Context) -> None:
    """A session at intensity 1 for two seconds, a STOP, then the chambers emptying."""
    ctx.need_control()
    await _start(ctx, lease_s=10)
    await ctx.sleep(2.0)  # some air in the chambers
    await ctx.ack(Stop(), "STOP during the session")
    state = await ctx.status()
    if state.state not in (SessionState.IDLE, SessionState.FAULT):
        raise CheckFailed(f"after STOP the state is {state.state.name}, not IDLE")
    await _vented(ctx, "after STOP", state.uptime_ms / 1000)


@check(
    "10.8",
    "faults-latch",
    "a fault ends any session, vents, refuses the session table (FAULT_LATCHED) and clears "
    "only on RESET_FAULT once its cause is gone",
)
async def faults_latch(ctx: Context) -> None:
    """A fault caused by hand: the session table refused, RESET_FAULT before and after."""
    ctx.need_control()
    why = ctx.hands.why_no_fault()
    if why is not None:
        raise NotTested(why)
    p = ctx.p
    if ctx.options.inflate:
        await _start(ctx, lease_s=60)
    start = len(p.records)
    caused = await ctx.hands.cause_fault()
    try:
        raised = await _event(ctx, FaultRaised, start, 20.0)
        if raised is None:
            raise NotTested(f"no EVENT FAULT within 20 s of {caused}")
        ended = [r.message for r in p.received(start) if isinstance(r.message, SessionEnded)]
        if ctx.options.inflate and getattr(ended[0] if ended else None, "reason", None) != (
            EndReason.FAULT
        ):
            raise CheckFailed("the fault did not end the session (SESSION_ENDED FAULT)")
        state = await ctx.status()
        if state.state != SessionState.FAULT or not state.faults:
            raise CheckFailed(
                f"after EVENT FAULT the state is {state.state.name}, faults {state.faults!r}"
            )
        if not state.flags & StatusFlag.DUMP_OPEN:
            raise CheckFailed("a latched fault did not open the dump valve")
        for message in (SetMode(state.mode), SetIntensity(ctx.lowest_level()), Pause(), Resume()):
            await ctx.nak(message, ErrorCode.FAULT_LATCHED, f"{message.TYPE.name} in FAULT")
        if ctx.options.inflate:
            await ctx.nak(
                Start(Mode.WAVE, ctx.lowest_level(), 10), ErrorCode.FAULT_LATCHED, "START in FAULT"
            )
        for urgent in (Stop(), Vent()):
            await ctx.ack(urgent, f"{urgent.TYPE.name} in FAULT")
        state = await ctx.status()
        if state.state != SessionState.FAULT:
            raise CheckFailed(f"STOP and VENT in FAULT left the state {state.state.name}")
        await ctx.nak(
            ResetFault(), ErrorCode.FAULT_PERSISTS, "RESET_FAULT with the fault's cause still there"
        )
    finally:
        await ctx.hands.clear_fault()
        reset = await _reset_fault(ctx)  # also when the check failed: the next checks need IDLE
    if reset is None or not isinstance(reset.message, Ack):
        said = describe(reset.message or "") if reset is not None else "nothing"
        raise CheckFailed(f"RESET_FAULT with the cause gone was answered {said}, not ACK")
    state = await ctx.status()
    if state.state != SessionState.IDLE or state.faults:
        raise CheckFailed(
            f"after RESET_FAULT the state is {state.state.name}, faults {state.faults!r}"
        )


async def _reset_fault(ctx: Context) -> Record | None:
    """RESET_FAULT until it is taken (the device may take a moment to see the cause gone)."""
    reply: Record | None = None
    with contextlib.suppress(CheckFailed, LinkGone):
        for _ in range(10):
            reply = await ctx.request(ResetFault(), what="RESET_FAULT with the cause gone")
            if isinstance(reply.message, Ack) or _nak(reply) != ErrorCode.FAULT_PERSISTS:
                break
            await ctx.sleep(1.0)
    return reply


# --- 12 authentication and pairing -------------------------------------------------------


@check(
    "12.2",
    "pairing",
    "PAIR: an unusable public key is NAK BAD_PAYLOAD; an open window pairs one controller, "
    "whose key opens a signed link, then closes (PAIRING_CLOSED)",
    fresh=False,
)
async def pairing(ctx: Context) -> None:
    """What the suite's pairing at the start of the run found (see `Context.pair`)."""
    log = "; ".join(ctx.pairing_log)
    if ctx.pairing_failure:
        raise CheckFailed(f"{ctx.pairing_failure} ({log})")
    if ctx.keys is None:
        raise NotTested(ctx.pairing_skipped or "the suite could not pair")


@check(
    "12.3",
    "signed-hello",
    "a signed HELLO without a key id, with an unknown one, a bad tag or a used counter is "
    "refused and changes nothing",
)
async def signed_hello(ctx: Context) -> None:
    """Four bad signed HELLOs on a live signed link: refused, and the link lives on."""
    keys = ctx.need_keys()
    p = ctx.p
    used = p.hello_counter or 1
    cases: list[tuple[str, ErrorCode, int | None]] = [
        (
            "a HELLO signed with the suite's key but without a key_id (SPEC §5, §13)",
            ErrorCode.NOT_AUTHENTICATED,
            None,
        ),
        ("a HELLO signed under key id 0, which no device gives", ErrorCode.NOT_AUTHENTICATED, 0),
        ("a HELLO whose tag is wrong", ErrorCode.NOT_AUTHENTICATED, keys.key_id),
        ("a HELLO with the counter of the HELLO before", ErrorCode.REPLAYED, keys.key_id),
    ]
    for seq, (what, error, key_id) in enumerate(cases, start=41):
        payload = Hello("conformance", key_id).encode_payload()
        replayed = error == ErrorCode.REPLAYED
        frame = Frame(seq, MessageType.HELLO, payload).signed(
            keys.key, used if replayed else keys.next_counter()
        )
        assert frame.auth is not None
        if "tag" in what:
            tag = bytes([frame.auth.tag[0] ^ 0xFF]) + frame.auth.tag[1:]
            trailer = struct.pack("<I", frame.auth.counter) + tag
            wire = raw_frame(MessageType.HELLO, payload + trailer, seq=seq, flags=1)
        else:
            wire = frame.encode()
        start = len(p.records)
        p.write(b"\x00" + wire, note=what)
        reply = await p.wait_for(p.reply_to(seq), after=start, within_s=REPLY_TIMEOUT_S)
        ctx.expect_nak(reply, error, what)
    state = await ctx.status()
    if not state.flags & StatusFlag.CONTROLLER_PRESENT:
        raise CheckFailed("a refused HELLO ended the link (no present controller)")
    await ctx.ack(SetMode(state.mode), "a signed SET_MODE on the link after the refused HELLOs")


@check(
    "12.3",
    "signed-commands",
    "on a signed link the commands of §10.10 need the link's key, its nonce and a fresh "
    "counter; a refusal moves no seq",
)
async def signed_commands(ctx: Context) -> None:
    """SET_MODE unsigned, without the nonce, under another key, with a used counter."""
    ctx.need_keys()
    p = ctx.p
    mode = (await ctx.status()).mode
    other = ctx.other_mode(mode)
    seq = (p.seq + 1) % 0x10000
    used = p.hello_counter or 1
    cases: list[tuple[str, ErrorCode, Frame]] = [
        (
            "an unsigned SET_MODE",
            ErrorCode.NOT_AUTHENTICATED,
            p.build(SetMode(other), seq=seq, sign=False),
        ),
        (
            "a SET_MODE signed without the link's nonce",
            ErrorCode.NOT_AUTHENTICATED,
            p.build(SetMode(other), seq=seq, nonce=b""),
        ),
        (
            "a SET_MODE signed under another key",
            ErrorCode.NOT_AUTHENTICATED,
            p.build(SetMode(other), seq=seq, key=bytes(32)),
        ),
        (
            "a SET_MODE with the counter of the link's HELLO",
            ErrorCode.REPLAYED,
            p.build(SetMode(other), seq=seq, counter=used),
        ),
    ]
    for what, error, frame in cases:
        start = len(p.records)
        p.write(frame)
        reply = await p.reply(frame, after=start, within_s=REPLY_TIMEOUT_S)
        ctx.expect_nak(reply, error, what)
    state = await ctx.status()
    if state.mode != mode:
        raise CheckFailed(f"a refused SET_MODE ran: the mode is {state.mode}")
    await ctx.ack(
        SetMode(other), f"a good SET_MODE with the seq ({seq}) of the refused ones", seq=seq
    )


@check(
    "12.3",
    "device-signs",
    "a device that announces SIGNED_LINK signs every frame of the link, counting up from 1; "
    "a stranger's STOP gets an unsigned ACK",
    fresh=False,
)
async def device_signs(ctx: Context) -> None:
    """Every frame from a signed HELLO's CAPABILITIES on, and a stranger's STOP."""
    ctx.need_keys()
    if not ctx.c.features & Feature.SIGNED_LINK:
        raise NotTested("the device does not announce SIGNED_LINK: its word can be forged (§12.3)")
    p = ctx.p
    interval = ctx.timing("status_interval_ms", 1)
    p.answering = True
    start = len(p.records)
    await ctx.hello()
    await ctx.status()
    stranger = p.build(Stop(), sign=False)
    at = len(p.records)
    p.write(stranger)
    await _answered_ack(ctx, stranger, at, "a stranger's STOP")
    await ctx.status()
    await ctx.sleep(interval)
    frames = p.received(start)
    caps = next(i for i, r in enumerate(frames) if isinstance(r.message, Capabilities))
    counter = 0
    for record in frames[caps:]:
        frame = record.frame
        assert frame is not None
        if p.reply_to(stranger.seq)(record) and record.index > at:
            if frame.auth is not None:
                record.note = "here"
                raise CheckFailed("the ACK of a stranger's unsigned STOP is signed")
            continue
        if frame.auth is None or record.signed is not True:
            record.note = "here"
            how = "not signed" if frame.auth is None else "signed, but not for this link"
            raise CheckFailed(f"{describe(record.message or '')} on the signed link is {how}")
        if frame.auth.counter != counter + 1:
            record.note = "here"
            raise CheckFailed(
                f"the device's counter went {counter} -> {frame.auth.counter}: 1 on "
                "CAPABILITIES, then one more for each signed frame"
            )
        counter = frame.auth.counter


@check(
    "12.1",
    "restart",
    "counters survive a restart: the HELLO of a link before it is NAK REPLAYED after it, and "
    "the key still opens a link",
)
async def restart(ctx: Context) -> None:
    """The link's signed HELLO, replayed after the maker (or the suite) restarted the device."""
    ctx.need_keys()
    why = ctx.hands.why_no_restart()
    if why is not None:
        raise NotTested(why)
    old = ctx.p.hello_wire
    await ctx.sleep(0.5)  # an uptime a restart must take back
    before = (await ctx.status()).uptime_ms
    await ctx.close()
    try:
        await ctx.hands.restart()
    except NotTested:  # nobody restarted it: the link comes back for the checks after
        with contextlib.suppress(SuiteError, CheckFailed, LinkGone):
            await ctx.open()
            await ctx.hello()
        raise
    for attempt in range(20):
        try:
            await ctx.open()
            break
        except SuiteError as error:
            if attempt == 19:
                raise CheckFailed(
                    f"the device could not be reached after its restart: {error}"
                ) from None
            await asyncio.sleep(0.5)
    p = ctx.p
    after = (await ctx.status(sign=False)).uptime_ms
    if after >= before:
        raise NotTested(
            f"the device did not restart: its uptime went on ({before} ms, then {after} ms)"
        )
    start = len(p.records)
    p.write(b"\x00" + old, note="the signed HELLO of the link before the restart, sent again")
    reply = await p.wait_for(p.reply_to(1), after=start, within_s=REPLY_TIMEOUT_S)
    ctx.expect_nak(reply, ErrorCode.REPLAYED, "the HELLO recorded before the restart")
    try:
        await ctx.hello()
    except CheckFailed as error:
        raise CheckFailed(f"after the restart the suite's key opens no link: {error}") from None


@check(
    "12.4",
    "unpair",
    "UNPAIR is answered ACK, signed under the key, and the key is then forgotten",
    final=True,
)
async def unpair(ctx: Context) -> None:
    """UNPAIR, then a HELLO signed with the forgotten key (run last, by the runner)."""
    keys = ctx.need_keys()
    p = ctx.p
    reply = await ctx.ack(Unpair(), "UNPAIR")
    ctx.keys = p.keys = None  # the link goes on unsigned (SPEC §12.4)
    if ctx.c.features & Feature.SIGNED_LINK and not reply.signed:
        raise CheckFailed("the ACK of UNPAIR is not signed under the key it forgets")
    frame = Frame(1, MessageType.HELLO, Hello("conformance", keys.key_id).encode_payload())
    frame = frame.signed(keys.key, keys.next_counter())
    start = len(p.records)
    p.write(b"\x00", frame, note="0x00")
    answer = await p.reply(frame, after=start, within_s=REPLY_TIMEOUT_S)
    ctx.expect_nak(answer, ErrorCode.NOT_AUTHENTICATED, "a HELLO signed with the unpaired key")
    with contextlib.suppress(CheckFailed, LinkGone):
        await ctx.hello(signed=False)


@check(
    "10.9",
    "valves",
    "in IDLE and FAULT every exhaust is open and no inlet; no chamber ever reads above the "
    "ceiling (10.1): every STATUS of the run",
    fresh=False,
)
async def valves(ctx: Context) -> None:
    """Every STATUS of the run, against the ceiling and the valves of IDLE and FAULT."""
    seen = ctx.history + (ctx.p.records if ctx.probe is not None else [])
    everyone = _all_chambers(ctx)
    count = 0
    for _, state in _statuses(seen):
        count += 1
        if max(state.pressures_dmmhg, default=0) > ctx.c.ceiling_dmmhg:
            raise CheckFailed(
                f"a STATUS shows {max(state.pressures_dmmhg) / 10:g} mmHg, above the ceiling "
                f"({ctx.c.ceiling_dmmhg / 10:g} mmHg, section 10.1): {describe(state)}"
            )
        if state.state in (SessionState.IDLE, SessionState.FAULT) and (
            state.exhaust_mask & everyone != everyone or state.inlet_mask
        ):
            raise CheckFailed(
                f"a STATUS in {state.state.name} shows exhausts {state.exhaust_mask:#06x} and "
                f"inlets {state.inlet_mask:#06x}: every exhaust must be open, no inlet "
                f"({describe(state)})"
            )
    if count == 0:
        raise NotTested("no STATUS came during the run")
