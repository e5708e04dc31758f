"""The device rules SPEC.md states for a maker, one test each, on the simulated firmware.

Each test names the section it holds the reference to; the link's own rules are
in tests/firmware_protocol/test_spec_rules.py.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware_protocol as fp
from firmware_protocol import EndReason, ErrorCode, Frame, FrameDecoder, SessionState, StatusFlag
from simulator import DeviceConfig
from simulator.host import DeviceHost
from tests.simulator.rig import Rig
from tests.simulator.test_pairing import signed_on_link

START = fp.Start(fp.Mode.WAVE, 1, 600)


def sent(rig: Rig) -> list[fp.Message]:
    """What the device sent since the last look, decoded."""
    return [
        fp.decode_message(f.msg_type, f.payload) for f in FrameDecoder().feed(rig.fw.data_to_send())
    ]


def kinds(messages: list[fp.Message]) -> list[str]:
    return [type(m).__name__ for m in messages]


# --- SPEC 7.5: what the device sends with no controller present -----------------------


def test_a_session_ended_by_the_watchdog_is_followed_by_its_status() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    rig.run(3)
    rig.fw.advance(rig.now + 1.5)  # the controller falls silent: the watchdog ends the link
    after = [m for m in sent(rig) if not isinstance(m, fp.Challenge)]
    ended = [i for i, m in enumerate(after) if isinstance(m, fp.SessionEnded)]
    assert len(ended) == 1
    assert after[ended[0]].reason is EndReason.LINK_LOST  # type: ignore[attr-defined]
    status = after[ended[0] + 1]
    assert isinstance(status, fp.Status)
    assert status.state is SessionState.IDLE
    assert status.last_end is EndReason.LINK_LOST
    assert status.flags & StatusFlag.DUMP_OPEN
    assert not status.flags & StatusFlag.CONTROLLER_PRESENT


def test_the_status_after_a_watchdog_end_is_signed_for_the_link_that_ended() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    rig.fw.advance(rig.now + 1.5)
    # The controller of the lost link is still listening: it believes both frames.
    rig.ctl.receive_data(rig.fw.data_to_send(), rig.now)
    told = [e.message for e in rig.ctl.events() if isinstance(e, fp.Received)]
    assert kinds(told)[-2:] == ["SessionEnded", "Status"]
    assert rig.ctl.stats.unsigned_dropped == 0


def test_without_a_controller_only_changes_are_reported() -> None:
    rig = Rig()
    rig.connect()
    rig.fw.advance(rig.now + 1.5)
    sent(rig)
    assert not rig.fw.snapshot().controller_present
    # Nothing changes: no periodic STATUS and no CHALLENGE to nobody.
    rig.fw.advance(rig.now + 30)
    assert sent(rig) == []
    # A change is reported: the remote's POWER starts a session, with its STATUS.
    rig.fw.press(fp.Button.POWER, rig.now + 30)
    told = sent(rig)
    assert kinds(told)[:2] == ["ButtonPressed", "SessionStarted"]
    assert isinstance(told[-1], fp.Status)
    assert told[-1].state is SessionState.RUNNING
    # A stop from anyone, with no HELLO: its ACK, then the STATUS of the change.
    rig.fw.receive_data(fp.Frame(9, fp.MessageType.STOP).encode(), rig.now + 31)
    told = sent(rig)
    assert told[0] == fp.Ack(9)
    assert isinstance(told[-1], fp.Status)
    assert told[-1].state is SessionState.IDLE


# --- SPEC 4.1: the order of the checks, and which refusals are remembered -------------


def newest(rig: Rig) -> int:
    seq = rig.fw.conn._accepted_seq
    assert seq is not None
    return seq


def answer(rig: Rig, *frames: Frame) -> list[fp.Message]:
    """Feed ``frames`` in one read; what the device sent back, statuses and challenges aside."""
    rig.fw.receive_data(b"".join(f.encode() for f in frames), rig.now)
    return [m for m in sent(rig) if not isinstance(m, fp.Status | fp.Challenge)]


def plain(message: fp.Message, seq: int, version: int = 1) -> Frame:
    return Frame(seq, message.TYPE, message.encode_payload(), version)


def test_a_device_message_is_dropped_before_its_version_is_looked_at() -> None:
    rig = Rig()
    rig.connect()
    assert answer(rig, plain(fp.Ack(1), 9, version=2)) == []


def test_the_version_is_checked_before_the_type() -> None:
    rig = Rig()
    assert answer(rig, Frame(9, 0x55, b"", 2)) == [fp.Nak(9, ErrorCode.UNSUPPORTED_VERSION)]


def test_the_payload_is_checked_before_the_present_controller() -> None:
    rig = Rig()  # no HELLO yet
    assert answer(rig, Frame(9, fp.MessageType.START, b"\x01")) == [
        fp.Nak(9, ErrorCode.BAD_PAYLOAD)
    ]


def test_the_present_controller_is_checked_before_the_tag() -> None:
    rig = Rig()  # no HELLO yet; START unsigned on a device that requires pairing
    assert answer(rig, plain(START, 9)) == [fp.Nak(9, ErrorCode.NO_HELLO)]


def test_the_tag_is_checked_before_the_seq() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(fp.SetIntensity(2)) == "ack"
    stale = (
        newest(rig) - 5
    ) % 0x10000  # neither newer nor remembered: STALE_SEQUENCE, were it signed
    assert answer(rig, plain(START, stale)) == [fp.Nak(stale, ErrorCode.NOT_AUTHENTICATED)]


def test_the_seq_is_checked_before_the_counter() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(fp.SetIntensity(2)) == "ack"
    stale = (newest(rig) - 5) % 0x10000
    old = signed_on_link(rig, START, stale, counter=1)  # a counter the key used long ago
    assert answer(rig, old) == [fp.Nak(stale, ErrorCode.STALE_SEQUENCE)]


def test_the_counter_is_checked_before_a_stop_preempts() -> None:
    rig = Rig()
    rig.connect()
    seq = newest(rig) + 1
    old = signed_on_link(rig, START, seq, counter=1)
    replies = answer(rig, old, plain(fp.Stop(), 0))
    assert fp.Nak(seq, ErrorCode.REPLAYED) in replies


def test_a_stop_preempts_before_the_state_table_is_looked_up() -> None:
    rig = Rig()
    rig.connect()
    rig.fw._latch(fp.Fault.SENSOR)  # START is FAULT_LATCHED now
    sent(rig)
    seq = newest(rig) + 1
    replies = answer(rig, signed_on_link(rig, START, seq), plain(fp.Stop(), 0))
    assert fp.Nak(seq, ErrorCode.PREEMPTED) in replies


def test_the_state_table_is_looked_up_before_the_values() -> None:
    rig = Rig()
    rig.connect()
    rig.fw._latch(fp.Fault.SENSOR)
    assert rig.command(fp.Start(0x7F, 9, 0)) == "nak FAULT_LATCHED"


def test_refusals_of_the_link_are_forgotten_and_use_up_no_seq() -> None:
    rig = Rig()
    rig.connect()
    seq = newest(rig) + 1
    refusals = [
        (plain(START, seq, version=2), ErrorCode.UNSUPPORTED_VERSION),
        (Frame(seq, 0x55), ErrorCode.UNKNOWN_MESSAGE),
        (Frame(seq, fp.MessageType.START, b"\x01"), ErrorCode.BAD_PAYLOAD),
        (plain(START, seq), ErrorCode.NOT_AUTHENTICATED),
        (signed_on_link(rig, START, seq, counter=1), ErrorCode.REPLAYED),
    ]
    for frame, error in refusals:
        for _ in range(2):  # sent again: judged again, not answered from memory
            assert answer(rig, frame) == [fp.Nak(seq, error)]
    assert newest(rig) == seq - 1
    assert answer(rig, signed_on_link(rig, START, seq))[0] == fp.Ack(seq)


def test_every_answer_to_a_frame_taken_is_remembered_refusals_too() -> None:
    rig = Rig()
    rig.connect()
    taken = [
        (fp.Resume(), ErrorCode.BAD_STATE),  # the state table (SPEC 8.2)
        (fp.SetIntensity(9), ErrorCode.UNSUPPORTED_INTENSITY),  # a value (SPEC 8.3)
        (fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 1, 1, 1, 1, (1250,) * 8),
         ErrorCode.OVER_PRESSURE_LIMIT),
    ]  # fmt: skip
    for message, error in taken:
        seq = newest(rig) + 1
        frame = signed_on_link(rig, message, seq)
        rig.fw.receive_data(frame.encode(), rig.now)
        first = rig.fw.data_to_send()
        assert answer_of(first) == [fp.Nak(seq, error)]
        assert newest(rig) == seq
        # A re-send gets the same frame again (signed anew), and so does any frame
        # with that seq: it is taken for a re-send.
        rig.fw.receive_data(signed_on_link(rig, START, seq).encode(), rig.now)
        again = rig.fw.data_to_send()
        assert strip_tags(again) == strip_tags(first)
        assert answer_of(again) == [fp.Nak(seq, error)]
    assert rig.fw.state is SessionState.IDLE


def answer_of(wire: bytes) -> list[fp.Message]:
    return [
        m
        for f in FrameDecoder().feed(wire)
        if not isinstance(m := fp.decode_message(f.msg_type, f.payload), fp.Status | fp.Challenge)
    ]


def strip_tags(wire: bytes) -> list[Frame]:
    """The frames of ``wire`` without their tags: what a remembered reply keeps."""
    return [replace(f, auth=None) for f in FrameDecoder().feed(wire)]


# --- SPEC 7.4: a read, on a UART that hands over one byte at a time -------------------


def bytewise(rig: Rig, wire: bytes) -> list[fp.Message]:
    """Feed ``wire`` one byte per read, as an interrupt per received byte does."""
    told: list[fp.Message] = []
    for i in range(len(wire)):
        rig.fw.receive_data(wire[i : i + 1], rig.now)
        told += sent(rig)
    return told


def test_byte_by_byte_a_command_before_the_stop_runs_and_the_stop_ends_it() -> None:
    rig = Rig()
    rig.connect()
    start = rig.ctl.send(START, rig.now)
    stop = rig.ctl.send(fp.Stop(), rig.now)
    told = bytewise(rig, rig.ctl.data_to_send())
    assert told[0] == fp.Ack(start)
    assert fp.Ack(stop) in told
    assert told.index(fp.Ack(stop)) > told.index(fp.Ack(start))
    assert kinds(told).count("SessionEnded") == 1
    assert rig.fw.state is SessionState.IDLE


@pytest.mark.parametrize("whose", ["the controller's stop", "a stranger's stop"])
def test_in_one_read_the_same_command_is_refused(whose: str) -> None:
    rig = Rig()
    rig.connect()
    start = rig.ctl.send(START, rig.now)
    if whose == "a stranger's stop":
        wire = rig.ctl.data_to_send() + plain(fp.Stop(), 0).encode()
        refusal = ErrorCode.PREEMPTED  # the stranger's stop moved no seq (SPEC 12.3)
    else:
        rig.ctl.send(fp.Stop(), rig.now)
        wire = rig.ctl.data_to_send()
        refusal = ErrorCode.STALE_SEQUENCE  # the stop's newer seq was taken first
    rig.fw.receive_data(wire, rig.now)
    told = sent(rig)
    assert fp.Nak(start, refusal) in told
    assert "SessionStarted" not in kinds(told)
    assert rig.fw.state is SessionState.IDLE


@pytest.mark.parametrize("one_read", [True, False], ids=["one read", "byte by byte"])
def test_a_command_after_the_stop_is_preempted_in_its_read_and_runs_in_a_later_one(
    one_read: bool,
) -> None:
    rig = Rig()
    rig.connect()
    rig.ctl.send(fp.Stop(), rig.now)
    start = rig.ctl.send(START, rig.now)
    wire = rig.ctl.data_to_send()
    if one_read:
        rig.fw.receive_data(wire, rig.now)
        assert fp.Nak(start, ErrorCode.PREEMPTED) in sent(rig)
        assert rig.fw.state is SessionState.IDLE
    else:
        assert fp.Ack(start) in bytewise(rig, wire)
        assert rig.fw.state is SessionState.RUNNING


SESSION_COMMANDS = st.sampled_from([
    START, fp.Start(fp.Mode.PULSE, 3, 60), fp.Renew(fp.Mode.WAVE, 2, 30), fp.SetMode(fp.Mode.PULSE),
    fp.SetIntensity(3), fp.Pause(), fp.Resume(), fp.ResetFault(),
])  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(
    commands=st.lists(SESSION_COMMANDS, max_size=5),
    at=st.integers(0, 5),
    running=st.booleans(),
    halt=st.sampled_from([fp.Stop(), fp.Vent()]),
    strangers=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_nothing_sent_before_a_stop_or_read_with_it_runs_after_it(
    commands: list[fp.Message],
    at: int,
    running: bool,
    halt: fp.Message,
    strangers: bool,
    cuts: list[int],
) -> None:
    """SPEC 7.4 and 10.5, whatever a read is: a command that came before the stop, or
    in the read that brought it (a frame is in the read that brings its 0x00), never
    runs after it. Only a command of a later read may start a session again."""
    rig = Rig()
    rig.connect()
    if running:
        assert rig.command(START) == "ack"
        rig.run(1)
    at = min(at, len(commands))
    frames: list[bytes] = []
    for i, message in enumerate([*commands[:at], halt, *commands[at:]]):
        if i == at and strangers:  # someone else's stop: unsigned, a seq of its own
            frames.append(plain(halt, 0).encode())
        else:
            rig.ctl.send(message, rig.now)
            frames.append(rig.ctl.data_to_send())
    wire = b"".join(frames)
    ends = list(itertools.accumulate(len(f) for f in frames))
    bounds = [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]
    read_of = [next(i for i, b in enumerate(bounds) if end <= b) for end in ends]
    last = 0
    for bound in bounds:
        rig.fw.receive_data(wire[last:bound], rig.now)
        last = bound
    told = sent(rig)
    if all(read_of[i] == read_of[at] for i in range(at, len(frames))):
        assert rig.fw.state in (SessionState.IDLE, SessionState.FAULT)
        assert not rig.fw.plant.pump
        events = [k for k in kinds(told) if k in ("SessionStarted", "SessionEnded")]
        assert not events or events[-1] == "SessionEnded"
        rig.run(5)
        assert rig.fw.state in (SessionState.IDLE, SessionState.FAULT)


# --- SPEC 12.2: pairing leaves the link as it was -----------------------------------


def test_after_pairing_the_link_is_unauthenticated_until_a_signed_hello() -> None:
    rig = Rig()
    rig.pair()  # PAIR and PAIRED on an unauthenticated link
    assert rig.fw.conn.link_key_id is None
    assert rig.ctl.link_key_id is None
    assert rig.command(START) == "nak NOT_AUTHENTICATED"  # signed, but for no link
    rig.connect()  # the signed HELLO with the new key id
    assert rig.fw.conn.link_key_id == rig.ctl.signer.key_id  # type: ignore[union-attr]
    assert rig.command(START) == "ack"


# --- SPEC 12.3: the two counters, and which frames move the stored one ----------------


def test_the_stored_counter_moves_only_with_a_signed_hello_and_guarded_commands_taken() -> None:
    rig = Rig()
    rig.pair()
    table = rig.fw.memory.pairings
    writes: list[int] = []
    table.on_change = lambda: writes.append(table.get(1).counter)  # type: ignore[union-attr]
    rig.connect()
    assert len(writes) == 1  # the HELLO's counter
    assert rig.command(START) == "ack"
    assert rig.command(fp.Resume()) == "nak BAD_STATE"  # taken, then refused: it moves too
    assert len(writes) == 3
    rig.run(5)  # a dozen signed KEEPALIVEs: the link's counter, not the stored one
    assert rig.ctl.stats.frames_sent > 10
    assert rig.command(fp.GetStatus()) == "ack"  # signed, not guarded: no write either
    assert rig.command(fp.Stop()) == "ack"
    assert len(writes) == 3
    stale = signed_on_link(rig, START, newest(rig) + 1, counter=writes[-1])
    assert answer(rig, stale) == [fp.Nak(newest(rig) + 1, ErrorCode.REPLAYED)]
    assert len(writes) == 3  # a refusal writes nothing
    assert writes == sorted(writes)


@pytest.mark.parametrize("fresh", [True, False], ids=["counters rise", "one counter"])
def test_a_keepalive_is_proof_of_life_only_above_the_last_keepalive_of_the_link(
    fresh: bool,
) -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    counter = rig.fw.memory.pairings.get(1).counter + 50  # type: ignore[union-attr]
    for i in range(1, 17):  # four seconds of answers to the device's newest challenge
        rig.now += 0.25
        rig.fw.advance(rig.now)
        challenges = [m for m in sent(rig) if isinstance(m, fp.Challenge)]
        if challenges:
            keepalive = fp.KeepAlive(challenges[-1].challenge)
            signed = signed_on_link(rig, keepalive, newest(rig), counter + i * fresh)
            rig.fw.receive_data(signed.encode(), rig.now)
    # The stored counter is not the bar: only the link's last KEEPALIVE is.
    assert rig.fw.memory.pairings.get(1).counter < counter  # type: ignore[union-attr]
    assert (rig.fw.state is SessionState.RUNNING) == fresh


# --- SPEC 4: the reply cache -----------------------------------------------------------


def test_the_replies_to_the_last_8_frames_taken_are_sent_again_unchanged() -> None:
    rig = Rig()
    rig.connect()
    frames, first = [], []
    for level in (1, 2, 3, 1, 2, 3, 1, 2, 3):  # nine requests taken
        frame = signed_on_link(rig, fp.SetIntensity(level), newest(rig) + 1)
        rig.fw.receive_data(frame.encode(), rig.now)
        [ack] = [f for f in strip_tags(rig.fw.data_to_send()) if f.msg_type == fp.MessageType.ACK]
        frames.append(frame)
        first.append(ack)
    for frame, ack in zip(frames[1:], first[1:], strict=True):  # the last 8
        rig.fw.receive_data(frame.encode(), rig.now)
        assert strip_tags(rig.fw.data_to_send()) == [ack]  # same seq, same bytes; signed anew
    rig.fw.receive_data(frames[0].encode(), rig.now)  # the reference remembers no more
    assert answer_of(rig.fw.data_to_send()) == [fp.Nak(frames[0].seq, ErrorCode.STALE_SEQUENCE)]
    assert rig.fw.intensity == 3  # nothing ran twice


async def test_what_a_device_says_with_no_connection_is_dropped_not_kept_for_the_next() -> None:
    """SPEC 7.5: a transport with no connection has nowhere to send; nothing is held back."""
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    host.press(fp.Button.POWER)  # BUTTON, SESSION_STARTED and a STATUS, to nobody
    await asyncio.sleep(1)
    assert host.firmware.state is SessionState.RUNNING
    received = bytearray()
    host.attach(received.extend)
    await asyncio.sleep(5)
    assert received == b""  # nothing from before, and no periodic STATUS without a HELLO
    host.feed(plain(fp.Stop(), 3).encode())
    told = [fp.decode_message(f.msg_type, f.payload) for f in FrameDecoder().feed(bytes(received))]
    assert kinds(told) == ["Ack", "SessionEnded", "Status"]
    host.stop()


# --- SPEC 12.3: the trailer of a command outside the authenticated set ----------------


def test_a_signed_stop_is_the_controllers_whatever_its_counter() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    seq = newest(rig) + 1
    old = signed_on_link(rig, fp.Stop(), seq, counter=1)  # a counter long used: not looked at
    assert answer(rig, old) == [fp.Ack(seq), fp.SessionEnded(EndReason.STOPPED, 0)]
    assert newest(rig) == seq  # the controller's own: it moved the seq
