"""Pairing and authenticated control on the device (SPEC §12), byte for byte.

A stranger (a controller that never paired, or one replaying recorded frames)
must never get the pump to run. Each test ends by checking the pump's own
running time, not just the replies.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import firmware_protocol as fp
from firmware_protocol import (
    Connection,
    ErrorCode,
    Frame,
    FrameDecoder,
    Role,
    SessionState,
    cobs,
    framing,
)
from firmware_protocol.auth import AUTHENTICATED, MAX_PAIRINGS
from firmware_protocol.pairing import KeyPair
from simulator import Firmware
from simulator.memory import DeviceMemory
from tests.simulator.rig import Rig

START = fp.Start(fp.Mode.WAVE, 2, 600)
GUARDED = [
    START,
    fp.Renew(fp.Mode.WAVE, 2, 600),
    fp.SetMode(fp.Mode.PULSE),
    fp.SetIntensity(3),
    fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 30, 50, 60, 40, (450,) * 8),
    fp.Pause(),
    fp.Resume(),
    fp.ResetFault(),
    fp.Unpair(),
]


def never_pumped(rig: Rig) -> bool:
    return rig.plant.pump_seconds == 0 and rig.fw.state is SessionState.IDLE


def test_every_guarded_command_is_in_the_authenticated_set() -> None:
    assert {m.TYPE for m in GUARDED} == AUTHENTICATED


def test_an_unpaired_controller_cannot_start_or_change_anything() -> None:
    rig = Rig(paired=False)
    rig.connect()
    for message in GUARDED:
        assert rig.command(message) == "nak NOT_AUTHENTICATED", message
    rig.run(5)
    assert never_pumped(rig)
    assert rig.fw.conn.stats.not_authenticated == len(GUARDED)
    # Looking and stopping need no key: the safe direction is open to anyone.
    assert rig.command(fp.GetStatus()) == "ack"
    assert rig.command(fp.Stop()) == "ack"
    assert rig.command(fp.Vent()) == "ack"


def test_a_paired_controller_starts_and_stop_and_vent_still_come_from_anyone() -> None:
    rig = Rig()
    rig.connect()
    assert rig.fw.conn.link_key_id == rig.ctl.link_key_id == 1
    assert rig.command(START) == "ack"
    rig.run(3)
    assert rig.fw.state is SessionState.RUNNING
    stranger = Connection(Role.CONTROLLER)
    seq = stranger.send(fp.Stop(), rig.now)  # no HELLO, no key
    rig.fw.receive_data(stranger.data_to_send(), rig.now)
    stranger.receive_data(rig.fw.data_to_send(), rig.now)
    assert any(
        isinstance(e, fp.Replied) and isinstance(e.reply, fp.Ack) and e.seq == seq
        for e in stranger.events()
    )
    assert rig.fw.state is SessionState.IDLE


def test_pairing_needs_the_window_and_takes_one_controller_per_press() -> None:
    rig = Rig(paired=False, pairing_window_s=30)
    rig.connect()
    key = KeyPair.generate().public
    assert rig.command(fp.Pair(key, "early")) == "nak PAIRING_CLOSED"
    rig.fw.open_pairing(rig.now)
    rig.run(31)
    assert rig.command(fp.Pair(key, "late")) == "nak PAIRING_CLOSED"
    rig.fw.open_pairing(rig.now)
    assert rig.command(fp.Pair(key, "first")) == "paired"
    assert rig.command(fp.Pair(key, "second")) == "nak PAIRING_CLOSED"
    assert [p.name for p in rig.fw.memory.pairings] == ["first"]


def test_a_full_table_refuses_a_ninth_controller() -> None:
    rig = Rig(paired=False)
    rig.connect()
    for n in range(MAX_PAIRINGS):
        rig.fw.open_pairing(rig.now)
        assert rig.command(fp.Pair(KeyPair.generate().public, f"c{n}")) == "paired"
    rig.fw.open_pairing(rig.now)
    assert rig.command(fp.Pair(KeyPair.generate().public, "9")) == "nak PAIRING_FULL"


def test_both_ends_derive_the_same_key() -> None:
    rig = Rig()
    signer = rig.pair()
    [pairing] = rig.fw.memory.pairings
    assert pairing.key == signer.key
    assert pairing.key_id == signer.key_id


def recorded_evening() -> tuple[Rig, bytes, bytes]:
    """A paired controller's HELLO and START, as someone listening on the line recorded them.

    The evening ends: the program stops and the controller leaves (the device's
    watchdog forgets it).
    """
    rig = Rig()
    rig.pair()
    rig.ctl.data_to_send()
    hello_seq = rig.ctl.send(fp.Hello("rig"), rig.now)
    wire = rig.ctl.data_to_send()
    rig.fw.receive_data(wire, rig.now)
    rig.ctl.receive_data(rig.fw.data_to_send(), rig.now)
    rig.ctl.events()
    start_seq = rig.ctl.send(START, rig.now)
    start_wire = rig.ctl.data_to_send()
    rig.fw.receive_data(start_wire, rig.now)
    rig.ctl.receive_data(rig.fw.data_to_send(), rig.now)
    assert hello_seq + 1 == start_seq
    assert rig.fw.state is SessionState.RUNNING
    rig.command(fp.Stop())
    rig.run(10, keepalive=False)
    assert not rig.fw.snapshot().controller_present
    rig.plant.pump_seconds = 0.0  # from here on the pump must not run again
    return rig, wire, start_wire


def replies_of(fw: Firmware) -> list[fp.Message]:
    """What the device sent, decoded."""
    return [
        fp.decode_message(f.msg_type, f.payload) for f in FrameDecoder().feed(fw.data_to_send())
    ]


def replay(fw: Firmware, wire: bytes, now: float) -> list[fp.Message]:
    fw.receive_data(wire, now)
    return replies_of(fw)


def test_a_replayed_hello_and_start_are_refused() -> None:
    rig, hello, start = recorded_evening()
    replies = replay(rig.fw, hello + start, rig.now)
    naks = [m.error for m in replies if isinstance(m, fp.Nak)]
    assert naks == [ErrorCode.REPLAYED, ErrorCode.NO_HELLO]
    rig.run(5, keepalive=False)
    assert never_pumped(rig)
    assert rig.fw.conn.stats.replayed == 1


def test_a_replay_is_refused_after_the_device_restarts_too() -> None:
    rig, hello, start = recorded_evening()
    memory = rig.fw.memory
    restarted = Firmware(rig.fw.config, now=rig.now, memory=memory)  # power cycle, same flash
    replies = replay(restarted, hello + start, rig.now)
    assert ErrorCode.REPLAYED in [m.error for m in replies if isinstance(m, fp.Nak)]
    restarted.advance(rig.now + 5)
    assert restarted.plant.pump_seconds == 0
    assert restarted.state is SessionState.IDLE


def test_a_replayed_start_on_an_unauthenticated_link_is_refused() -> None:
    rig, _, start = recorded_evening()
    # The replayer says its own unsigned HELLO, then sends the recorded signed START.
    stranger = Connection(Role.CONTROLLER)
    stranger.send(fp.Hello("stranger"), rig.now)
    replies = replay(rig.fw, stranger.data_to_send() + start, rig.now)
    assert [m.error for m in replies if isinstance(m, fp.Nak)] == [ErrorCode.NOT_AUTHENTICATED]
    assert never_pumped(rig)


def test_the_device_memory_file_keeps_the_counters_and_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "memory.json"
    rig = Rig(seed=1)
    rig.fw.memory.path = path
    rig.connect()
    assert rig.command(START) == "ack"
    assert path.stat().st_mode & 0o777 == 0o600
    [saved] = DeviceMemory(path).pairings
    [live] = rig.fw.memory.pairings
    assert (saved.key, saved.counter) == (live.key, live.counter)
    assert saved.counter > 0


def signed_on_link(rig: Rig, message: fp.Message, seq: int, counter: int | None = None) -> Frame:
    """``message`` signed as the rig's controller would on its authenticated link.

    ``counter`` defaults to the controller's next one.
    """
    signer = rig.ctl.signer
    assert signer is not None
    nonce = rig.ctl.link_nonce
    assert nonce is not None
    if counter is None:
        counter = signer.next_counter()
    return Frame(seq, message.TYPE, message.encode_payload()).signed(signer.key, counter, nonce)


def test_a_bad_tag_changes_no_replay_state_and_the_good_frame_still_counts() -> None:
    rig = Rig()
    rig.connect()
    seq = 100
    good = signed_on_link(rig, START, seq)
    assert good.auth is not None
    counter = good.auth.counter
    forged = replace(good, auth=fp.Auth(counter, bytes(8)))
    rig.ctl.data_to_send()
    stats = rig.fw.conn.stats
    rig.fw.receive_data(forged.encode(), rig.now)
    assert stats.not_authenticated == 1
    assert replies_of(rig.fw) == [fp.Nak(seq, ErrorCode.NOT_AUTHENTICATED)]
    # Same seq, same counter, good tag: not a duplicate, not a replay; it runs.
    rig.fw.receive_data(good.encode(), rig.now)
    assert replies_of(rig.fw)[0] == fp.Ack(seq)
    assert rig.fw.state is SessionState.RUNNING


def test_once_paired_an_open_device_never_falls_back() -> None:
    open_rig = Rig(paired=False, pairing_required=False)  # the development option
    open_rig.connect()
    assert open_rig.command(START) == "ack"  # open: anyone may, until someone pairs
    open_rig.command(fp.Stop())
    open_rig.pair()
    stranger = Rig(paired=False)
    stranger.fw = open_rig.fw
    stranger.now = open_rig.now
    stranger.connect()
    assert stranger.command(START) == "nak NOT_AUTHENTICATED"
    assert open_rig.fw.state is SessionState.IDLE


def test_unpair_forgets_the_key_and_its_hello_is_refused() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(fp.Unpair()) == "ack"
    assert len(rig.fw.memory.pairings) == 0
    assert rig.command(START) == "nak NOT_AUTHENTICATED"  # this link is no longer authenticated
    seq = rig.ctl.send(fp.Hello("rig"), rig.now)
    rig.exchange()
    reply = rig.replies[seq]
    assert isinstance(reply, fp.Nak)
    assert reply.error == ErrorCode.NOT_AUTHENTICATED


def test_a_signed_hello_and_its_resend_in_one_read_open_one_authenticated_link() -> None:
    rig = Rig()
    rig.pair()
    seq = rig.ctl.send(fp.Hello("rig"), rig.now)
    wire = rig.ctl.data_to_send()
    rig.fw.receive_data(wire + wire, rig.now + 0.4)  # a frozen device reads both at once
    rig.ctl.receive_data(rig.fw.data_to_send(), rig.now + 0.4)
    replies = [e for e in rig.ctl.events() if isinstance(e, fp.Replied)]
    assert [(e.seq, type(e.reply)) for e in replies] == [(seq, fp.Capabilities)]
    assert rig.fw.conn.stats.replayed == 0
    assert rig.fw.conn.link_key_id == 1


def test_a_resent_signed_hello_gets_its_capabilities_again() -> None:
    rig = Rig()
    rig.pair()
    seq = rig.ctl.send(fp.Hello("rig"), rig.now)
    wire = rig.ctl.data_to_send()
    rig.fw.receive_data(wire, rig.now)
    rig.fw.data_to_send()  # the CAPABILITIES is lost on the way back
    rig.fw.receive_data(wire, rig.now + 0.4)  # the controller re-sends it unchanged
    rig.ctl.receive_data(rig.fw.data_to_send(), rig.now + 0.4)
    replies = [e for e in rig.ctl.events() if isinstance(e, fp.Replied)]
    assert [type(e.reply) for e in replies] == [fp.Capabilities]
    assert replies[0].seq == seq
    assert rig.fw.conn.link_key_id == 1


@settings(max_examples=150, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 7)), min_size=1, max_size=4),
    message=st.sampled_from(GUARDED[:5]),
)
def test_a_tampered_frame_never_starts_the_pump(
    flips: list[tuple[int, int]], message: fp.Message
) -> None:
    rig = Rig()
    rig.connect()
    raw = bytearray(signed_on_link(rig, message, 200, 10**6).to_bytes())
    original = bytes(raw)
    for at, bit in flips:
        raw[at % (len(raw) - 2)] ^= 1 << bit
    if bytes(raw) == original:
        return
    body = bytes(raw[:-2])
    tampered = body + framing.CRC.pack(framing.crc16(body))  # a forger fixes the CRC
    rig.fw.receive_data(cobs.encode(tampered) + b"\x00", rig.now)
    rig.run(3)
    assert never_pumped(rig)


@pytest.mark.parametrize("counter", [0, 1])
def test_a_counter_at_or_below_the_last_is_a_replay(counter: int) -> None:
    rig = Rig()
    rig.connect()  # its signed HELLO used counter 1 (the HELLO before pairing was unsigned)
    frame = signed_on_link(rig, START, 50, counter)
    assert replay(rig.fw, frame.encode(), rig.now) == [fp.Nak(50, ErrorCode.REPLAYED)]
    assert never_pumped(rig)


def test_the_device_keeps_the_newest_counter_across_links() -> None:
    rig = Rig()
    rig.connect()
    first = rig.fw.memory.pairings.get(1)
    assert first is not None
    before = first.counter
    rig.connect()
    assert first.counter > before


def stranger_frame(message: fp.Message, seq: int) -> bytes:
    """An unsigned frame with a chosen seq, as someone injecting into the line sends it."""
    return Frame(seq, message.TYPE, message.encode_payload()).encode()


def test_frames_signed_for_a_fake_device_are_worthless_on_the_real_one() -> None:
    rig = Rig()
    rig.pair()
    # A fake massager (a copied advert) answers the signed HELLO with its own nonce.
    fake = Connection(Role.DEVICE)
    caps = rig.fw.capabilities
    seq = rig.ctl.send(fp.Hello("rig"), rig.now)
    hello = rig.ctl.data_to_send()
    fake.receive_data(hello, rig.now)
    fake.send(replace(caps, ref_seq=seq, link_nonce=b"fakenonc"), rig.now)
    answer = fake.data_to_send()
    rig.ctl.receive_data(answer, rig.now)
    # It cannot sign for the key: the controller does not believe it (SPEC 12.3) ...
    assert rig.ctl.link_key_id is None
    assert rig.ctl.stats.unsigned_dropped == 1
    # ... unless told the massager is one that does not sign (older firmware).
    rig.ctl.device_signs = False
    rig.ctl.receive_data(answer, rig.now)
    assert rig.ctl.link_key_id == 1  # the controller believes it
    rig.ctl.send(START, rig.now)
    start = rig.ctl.data_to_send()
    # Played to the real massager later: the HELLO is fresh, the START is not for this link.
    replies = replay(rig.fw, hello + start, rig.now + 60)
    assert ErrorCode.NOT_AUTHENTICATED in [m.error for m in replies if isinstance(m, fp.Nak)]
    rig.fw.advance(rig.now + 70)
    assert never_pumped(rig)


def test_an_injected_unsigned_frame_leaves_no_reply_for_the_real_one() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    assert rig.command(fp.SetIntensity(3)) == "ack"
    upcoming = rig.fw.conn._accepted_seq + 1  # type: ignore[operator]
    rig.fw.receive_data(stranger_frame(fp.GetStatus(), upcoming), rig.now)
    rig.fw.receive_data(stranger_frame(fp.Stop(), upcoming + 500), rig.now)  # far ahead
    rig.fw.data_to_send()
    assert rig.fw.state is SessionState.IDLE  # the stop is for anyone: it stopped
    assert rig.command(START) == "ack"  # the real controller's seq still counts
    assert rig.command(fp.SetIntensity(1)) == "ack"
    assert rig.fw.intensity == 1  # really applied, not a reply cached for the stranger


def test_a_strangers_hello_ends_the_authenticated_session_and_vents() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    rig.run(5)
    rig.fw.receive_data(b"\x00" + stranger_frame(fp.Hello("stranger"), 1), rig.now)
    assert rig.fw.state is SessionState.IDLE
    assert rig.fw.last_end is fp.EndReason.LINK_LOST
    assert rig.fw.snapshot().dump


def test_a_strangers_keepalives_do_not_hold_a_session_up() -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    rig.run(3)
    for _ in range(12):  # the controller is gone; someone keeps talking on the line
        rig.now += 0.25
        rig.fw.receive_data(stranger_frame(fp.KeepAlive(), 1), rig.now)
        rig.fw.advance(rig.now)
    assert rig.fw.state is SessionState.IDLE
    assert rig.fw.last_end is fp.EndReason.LINK_LOST


def test_an_open_development_device_stays_closed_after_its_last_unpair() -> None:
    rig = Rig(pairing_required=False)
    rig.connect()
    assert rig.command(fp.Unpair()) == "ack"
    assert len(rig.fw.memory.pairings) == 0
    stranger = Rig(paired=False)
    stranger.fw = rig.fw
    stranger.now = rig.now
    stranger.connect()
    assert stranger.command(START) == "nak NOT_AUTHENTICATED"


# --- stop and vent win over everything read with them (SPEC 7.4) --------------------


@pytest.mark.parametrize("halt", [fp.Stop(), fp.Vent()])
@pytest.mark.parametrize("order", ["start first", "halt first"])
def test_a_strangers_stop_in_the_same_read_wins_over_a_signed_start(
    halt: fp.Message, order: str
) -> None:
    """Found by a random driver: the unsigned STOP moved no seq, so the START then ran."""
    rig = Rig()
    rig.connect()
    seq = rig.fw.conn._accepted_seq + 1  # type: ignore[operator]
    start = signed_on_link(rig, START, seq).encode()
    stop = stranger_frame(halt, 0)  # a stranger's: unsigned, with an old seq
    rig.fw.receive_data(start + stop if order == "start first" else stop + start, rig.now)
    replies = replies_of(rig.fw)
    assert fp.Nak(seq, ErrorCode.PREEMPTED) in replies
    assert rig.fw.state is SessionState.IDLE
    # The START's seq and counter are used up: a re-send gets the same refusal.
    rig.now += 0.1
    rig.fw.receive_data(start, rig.now)
    assert replies_of(rig.fw) == [fp.Nak(seq, ErrorCode.PREEMPTED)]
    rig.run(30)
    assert never_pumped(rig)


def test_a_stop_with_an_old_seq_wins_over_a_start_on_an_open_link() -> None:
    rig = Rig(paired=False, pairing_required=False)
    rig.connect()
    seq = rig.fw.conn._accepted_seq + 1  # type: ignore[operator]
    start = stranger_frame(START, seq)
    rig.fw.receive_data(start + stranger_frame(fp.Stop(), 0), rig.now)
    assert fp.Nak(seq, ErrorCode.PREEMPTED) in replies_of(rig.fw)
    rig.run(30)
    assert never_pumped(rig)


@pytest.mark.parametrize("command", [m for m in GUARDED if m.TYPE in fp.PREEMPTIBLE])
def test_nothing_of_the_session_table_runs_after_a_stop_read_with_it(
    command: fp.Message,
) -> None:
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    rig.run(5)
    seq = rig.fw.conn._accepted_seq + 1  # type: ignore[operator]
    rig.fw.receive_data(
        signed_on_link(rig, command, seq).encode() + stranger_frame(fp.Stop(), 7), rig.now
    )
    assert fp.Nak(seq, ErrorCode.PREEMPTED) in replies_of(rig.fw)
    assert rig.fw.state is SessionState.IDLE
    assert rig.fw.last_end is fp.EndReason.STOPPED


# --- the massager's word: signed on an authenticated link (SPEC 12.3) ---------------


def device_frames(rig: Rig) -> list[fp.Message]:
    return [m for m in (rig.received) if isinstance(m, fp.Status | fp.DeviceEvent)]


forgeries = st.one_of(
    st.builds(
        lambda intensity, end: [
            fp.Status(9, SessionState.RUNNING, 1, intensity, fp.StatusFlag.LINK_SESSION, 99, 9,
                      100, fp.Fault.NONE, fp.EndReason.NONE, 0, 0, (1100,) * 8),
            fp.SessionEnded(end, 5),
            fp.ButtonPressed(fp.Button.PLUS),
        ],
        st.integers(1, 3),
        st.sampled_from([r for r in fp.EndReason if r != fp.EndReason.NONE]),
    ),
    st.lists(st.builds(fp.Ack, st.integers(0, 0xFFFF)), max_size=3),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    forged=forgeries,
    seq=st.integers(0, 0xFFFF),
    how=st.sampled_from(["unsigned", "wrong key", "replayed", "other link"]),
)
def test_the_controller_believes_no_device_frame_it_cannot_authenticate(
    forged: list[fp.Message], seq: int, how: str
) -> None:
    """Bytes injected toward the controller never become an event it acts on.

    Found by a probe: a forged remote PLUS, a STATUS saying intensity 3 and a
    SESSION_ENDED "link lost" made massager-ctl resume above a profile's limit.
    """
    rig = Rig()
    rig.connect()
    assert rig.command(START) == "ack"
    rig.run(2)
    honest = list(rig.received)
    key = rig.ctl.signer.key  # type: ignore[union-attr]
    context = rig.ctl._device_context()
    recorded = rig.fw.data_to_send()
    for i, message in enumerate(forged):
        frame = Frame((seq + i) & 0xFFFF, message.TYPE, message.encode_payload())
        if how == "wrong key":
            frame = frame.signed(bytes(32), 10**6 + i, context)
        elif how == "other link":
            frame = frame.signed(key, 10**6 + i, bytes(4) + context[4:])
        rig.ctl.receive_data(frame.encode(), rig.now)
    if how == "replayed":  # the massager's own frames, played again
        rig.fw.advance(rig.now + 0.5)
        recorded = rig.fw.data_to_send()
        rig.ctl.receive_data(recorded, rig.now)
        assert rig.ctl.events(), "the massager's own frames, the first time"
        rig.ctl.receive_data(recorded, rig.now)
        assert rig.ctl.events() == [], "a replay was believed"
    else:
        assert rig.ctl.events() == []
        assert rig.ctl.stats.unsigned_dropped >= len(forged)
    assert rig.received == honest
    rig.run(3)
    assert rig.fw.state is SessionState.RUNNING  # and the massager itself saw nothing


def test_answers_gathered_in_advance_keep_no_session_alive_on_a_link_that_is_not_signed() -> None:
    """Found by an attack: on a link to a massager that does not sign, a relay fed the
    controller forged challenges with the values the massager would send next (its
    uptime, 250 ms apart), gathered the signed answers, and let each out just after the
    massager sent that challenge: the session ran 100 s after the controller had gone.
    Challenges are now drawn at random, so no one can answer one before it is sent."""
    rig = Rig(signs=False)
    rig.ctl.device_signs = False  # paired knowing it does not sign
    rig.connect()
    assert rig.command(START) == "ack"
    rig.run(5)
    challenges = [m for m in rig.received if isinstance(m, fp.Challenge)]
    assert challenges == []  # the link's own business: not handed on
    gathered: dict[int, bytes] = {}
    last = rig.fw.conn._challenges  # what the massager sent lately
    newest, _ = next(reversed(last.items()))
    uptime = round(rig.now * 1000)
    for k in range(1, 400):  # every guess a relay could make: counting on, or uptimes
        for guess in ((newest + k) & 0xFFFFFFFF, (uptime + 250 * k) & 0xFFFFFFFF):
            forged = Frame(0, fp.MessageType.EVENT, fp.Challenge(guess).encode_payload())
            rig.ctl.receive_data(forged.encode(), rig.now)
            rig.ctl.handle_timer(rig.now)
            gathered[guess] = rig.ctl.data_to_send()
    gone = rig.now  # the controller goes; the relay lets out the answers that fit
    while rig.fw.state is SessionState.RUNNING and rig.now < gone + 30:
        rig.now += 0.01
        rig.fw.advance(rig.now)
        for frame in FrameDecoder().feed(rig.fw.data_to_send()):
            message = fp.decode_message(frame.msg_type, frame.payload)
            if isinstance(message, fp.Challenge) and message.challenge in gathered:
                rig.fw.receive_data(gathered[message.challenge], rig.now)
    assert rig.fw.state is SessionState.IDLE
    assert rig.fw.last_end is fp.EndReason.LINK_LOST
    assert rig.now - gone <= 1.0 + 0.02
