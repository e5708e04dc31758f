"""The Connection, both roles, as a connected pair with a hand-driven clock."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import firmware_protocol as fp
from firmware_protocol import (
    Connection,
    ErrorCode,
    FailReason,
    LinkState,
    LocalProtocolError,
    Received,
    Replied,
    RequestFailed,
    Role,
)

CAPS = fp.Capabilities(
    ref_seq=0, model="m", firmware="f", serial="s", features=fp.Feature.CYCLE,
    ceiling_dmmhg=1300, max_target_dmmhg=1200, session_cap_s=5400, max_lease_s=5400,
    watchdog_ms=1000, status_interval_ms=500, pause_limit_s=600,
    chambers=(fp.ChamberInfo(fp.Leg.LEFT, fp.Position.FOOT),),
    modes=(fp.ModeInfo(1, "wave"),), levels=(fp.LevelInfo(1, 500),),
)  # fmt: skip


class Pair:
    """A controller and a device wired together; ``deliver`` moves queued bytes across."""

    def __init__(self) -> None:
        self.controller = Connection(Role.CONTROLLER)
        self.device = Connection(Role.DEVICE)
        self.now = 0.0

    def to_device(self) -> list[fp.Event]:
        self.device.receive_data(self.controller.data_to_send(), self.now)
        return self.device.events()

    def to_controller(self) -> list[fp.Event]:
        self.controller.receive_data(self.device.data_to_send(), self.now)
        return self.controller.events()

    def connect(self) -> None:
        self.controller.send(fp.Hello("test"), self.now)
        [hello] = self.to_device()
        assert isinstance(hello, Received)
        self.device.send(replace(CAPS, ref_seq=hello.seq), self.now)
        [reply] = self.to_controller()
        assert isinstance(reply, Replied)
        assert self.controller.state == LinkState.READY

    def request(self, message: fp.Message) -> int:
        seq = self.controller.send(message, self.now)
        return seq


@pytest.fixture
def pair() -> Pair:
    p = Pair()
    p.connect()
    return p


def test_same_events_come_out_of_the_other_side(pair: Pair) -> None:
    seq = pair.request(fp.Start(1, 1, 60))
    [event] = pair.to_device()
    assert event == Received(fp.Start(1, 1, 60), seq)
    pair.device.send(fp.Ack(seq), pair.now)
    pair.device.send(fp.SessionEnded(fp.EndReason.STOPPED, 3), pair.now)
    replied, ended = pair.to_controller()
    assert replied == Replied(fp.Start(1, 1, 60), seq, fp.Ack(seq))
    assert isinstance(ended, Received)
    assert ended.message == fp.SessionEnded(fp.EndReason.STOPPED, 3)
    assert pair.controller.pending == {}


def test_controller_adopts_the_device_timing(pair: Pair) -> None:
    timing = pair.controller.timing
    assert timing.keepalive_s == pytest.approx(0.25)
    assert timing.silence_s == pytest.approx(1.5)
    assert pair.controller.capabilities is not None


def test_lost_request_is_resent_with_the_same_seq_and_answered_once(pair: Pair) -> None:
    seq = pair.request(fp.SetMode(1))
    pair.controller.data_to_send()  # the first copy is lost on the wire
    pair.now = 0.4
    pair.controller.handle_timer(pair.now)
    [event] = pair.to_device()
    assert event == Received(fp.SetMode(1), seq)
    pair.device.send(fp.Ack(seq), pair.now)
    pair.device.data_to_send()  # and the reply is lost too
    pair.now = 0.8
    pair.controller.handle_timer(pair.now)
    # The device has seen this seq: it answers from its cache and does not run it again.
    assert pair.to_device() == []
    assert pair.device.stats.duplicates == 1
    assert pair.to_controller() == [Replied(fp.SetMode(1), seq, fp.Ack(seq))]
    assert pair.controller.stats.retransmits == 2


def test_a_resend_in_the_same_read_as_its_original_is_not_called_stale(pair: Pair) -> None:
    seq = pair.request(fp.SetMode(1))
    original = pair.controller.data_to_send()  # held up on a slow line ...
    pair.now = 0.4
    pair.controller.handle_timer(pair.now)
    resent = pair.controller.data_to_send()  # ... so both copies arrive in one read
    pair.device.receive_data(original + resent, pair.now)
    assert pair.device.events() == [Received(fp.SetMode(1), seq)]  # runs once
    pair.device.send(fp.Ack(seq), pair.now)
    # The only answer is the ACK: no STALE_SEQUENCE overtakes it.
    assert pair.to_controller() == [Replied(fp.SetMode(1), seq, fp.Ack(seq))]
    assert pair.device.stats.duplicates == 1
    assert pair.device.stats.stale == 0


def replies_to(pair: Pair, frame: fp.Frame) -> list[fp.Message]:
    """What the device sends straight back when ``frame`` arrives on its own."""
    pair.device.receive_data(frame.encode(), pair.now)
    return [fp.decode_message(f.msg_type, f.payload) for f in fp.FrameDecoder().feed(
        pair.device.data_to_send())]  # fmt: skip


def test_a_late_resend_whose_reply_left_the_cache_is_still_answered(pair: Pair) -> None:
    seq = pair.request(fp.SetMode(1))
    assert pair.to_device() == [Received(fp.SetMode(1), seq)]
    pair.device.send(fp.Ack(seq), pair.now)
    for _ in range(8):  # eight newer commands and their replies push its ACK out
        later = pair.request(fp.SetIntensity(1))
        assert pair.to_device() == [Received(fp.SetIntensity(1), later)]
        pair.device.send(fp.Ack(later), pair.now)
    pair.device.data_to_send()
    resent = fp.Frame(seq, fp.MessageType.SET_MODE, b"\x01")
    assert replies_to(pair, resent) == [fp.Nak(seq, fp.ErrorCode.STALE_SEQUENCE)]
    assert pair.device.events() == []


def test_capabilities_is_numbered_1_after_replies_owed_to_frames_read_before_the_hello(
    pair: Pair,
) -> None:
    for _ in range(3):
        later = pair.request(fp.SetIntensity(1))
        pair.to_device()
        pair.device.send(fp.Ack(later), pair.now)
    pair.device.data_to_send()
    seq = pair.request(fp.SetMode(1))
    command = pair.controller.data_to_send()
    hello = fp.Frame(1, fp.MessageType.HELLO, fp.Hello("again").encode_payload()).encode()
    pair.device.receive_data(command + hello, pair.now)  # the firmware answers in order
    assert pair.device.events() == [Received(fp.SetMode(1), seq), Received(fp.Hello("again"), 1)]
    pair.device.send(fp.Ack(seq), pair.now)
    pair.device.send(replace(CAPS, ref_seq=1), pair.now)
    pair.device.send(fp.SessionEnded(fp.EndReason.STOPPED, 3), pair.now)
    ack, caps, after = fp.FrameDecoder().feed(pair.device.data_to_send())
    assert ack.seq == 5  # the old link's numbering, which the old link expects
    assert (caps.msg_type, caps.seq) == (fp.MessageType.CAPABILITIES, 1)  # SPEC §4
    assert after.seq == 2


def test_refused_frames_reusing_a_seq_leave_its_reply_in_place(pair: Pair) -> None:
    # Frames the link refuses, and stops run whatever their seq, do not fill the
    # reply cache: the newest command's reply stays for its re-send.
    seq = pair.request(fp.SetMode(1))
    assert pair.to_device() == [Received(fp.SetMode(1), seq)]
    pair.device.send(fp.Ack(seq), pair.now)
    pair.device.data_to_send()
    for n in range(10):
        wrong_version = fp.Frame(seq, fp.MessageType.GET_STATUS, b"", 2)
        assert replies_to(pair, wrong_version) == [fp.Nak(seq, fp.ErrorCode.UNSUPPORTED_VERSION)]
        malformed = fp.Frame(seq, fp.MessageType.SET_MODE, b"")
        assert replies_to(pair, malformed) == [fp.Nak(seq, fp.ErrorCode.BAD_PAYLOAD)]
        old = (seq - 2 - n) % 65536  # older than the HELLO, never answered
        assert replies_to(pair, fp.Frame(old, fp.MessageType.SET_MODE, b"\x01")) == [
            fp.Nak(old, fp.ErrorCode.STALE_SEQUENCE)
        ]
        pair.device.receive_data(fp.Frame(old, fp.MessageType.STOP, b"").encode(), pair.now)
        assert pair.device.events() == [Received(fp.Stop(), old)]  # run, whatever its seq
        pair.device.send(fp.Ack(old), pair.now)
        pair.device.data_to_send()
    resent = fp.Frame(seq, fp.MessageType.SET_MODE, b"\x01")
    assert replies_to(pair, resent) == [fp.Ack(seq)]  # from the cache: not run again
    assert pair.device.events() == []
    assert pair.device.stats.duplicates == 1


def test_request_fails_after_every_attempt(pair: Pair) -> None:
    seq = pair.request(fp.Pause())
    for step in range(1, 4):
        pair.now = step * 0.4
        pair.controller.handle_timer(pair.now)
    events = pair.controller.events()
    assert RequestFailed(fp.Pause(), seq, FailReason.TIMEOUT) in events
    assert pair.controller.stats.timeouts == 1


def test_stale_seq_is_refused(pair: Pair) -> None:
    old = pair.request(fp.SetMode(1))
    stale_wire = pair.controller.data_to_send()
    pair.request(fp.SetMode(2))
    pair.to_device()
    pair.device.data_to_send()
    pair.device.receive_data(stale_wire, pair.now)
    assert pair.device.events() == []
    pair.controller.receive_data(pair.device.data_to_send(), pair.now)
    [event] = pair.controller.events()
    assert isinstance(event, Replied)
    assert event.reply == fp.Nak(old, ErrorCode.STALE_SEQUENCE)


def test_a_hello_is_not_lost_to_noise_left_in_the_device_buffer() -> None:
    controller, device = Connection(Role.CONTROLLER), Connection(Role.DEVICE)
    device.receive_data(b"\x17\x42 line noise from before the port was opened", 0.0)
    controller.send(fp.Hello("test"), 0.0)
    device.receive_data(controller.data_to_send(), 0.0)
    assert [type(e) for e in device.events()] == [Received]
    assert device.state == LinkState.READY
    assert device.stats.malformed + device.stats.crc_errors == 1


def test_a_keepalive_that_overtakes_a_lost_request_does_not_make_it_stale(pair: Pair) -> None:
    seq = pair.request(fp.SetIntensity(1))
    pair.controller.data_to_send()  # lost in a burst of noise on the line
    pair.now = 0.25
    pair.controller.handle_timer(pair.now)  # nothing else sent for a while: KEEPALIVE
    assert pair.to_device() == []
    pair.now = 0.4
    pair.controller.handle_timer(pair.now)  # the request's re-send, with its old seq
    [event] = pair.to_device()
    assert event == Received(fp.SetIntensity(1), seq)
    assert pair.device.stats.stale == 0


def test_keepalives_do_not_use_up_sequence_numbers(pair: Pair) -> None:
    before = pair.request(fp.SetMode(1))
    pair.to_device()
    pair.device.data_to_send()
    # Hours of a quiet step: far more keepalives than half the 16-bit seq space.
    decoder, seqs = fp.FrameDecoder(), set()
    for _ in range(40_000):
        pair.now += 0.25
        # The device's challenge every quarter of the watchdog, for the keepalive to answer.
        pair.device.send(fp.Challenge(random.getrandbits(32)), pair.now)
        pair.to_controller()
        pair.controller.handle_timer(pair.now)
        wire = pair.controller.data_to_send()
        seqs.update(f.seq for f in decoder.feed(wire))
        pair.device.receive_data(wire, pair.now)
        pair.device.handle_timer(pair.now)
    assert seqs == {before}
    assert pair.device.state == LinkState.READY  # every keepalive was proof of life
    after = pair.request(fp.SetMode(1))
    assert after == before + 1
    [event] = pair.to_device()
    assert event == Received(fp.SetMode(1), after)
    assert pair.device.state == LinkState.READY


def test_stop_goes_first_and_what_was_queued_before_it_never_runs(pair: Pair) -> None:
    start = pair.request(fp.Start(1, 1, 60))
    pair.request(fp.Stop())
    events = pair.to_device()
    # Stop is delivered; the start that was queued ahead of it is refused as stale.
    assert [type(e.message) for e in events if isinstance(e, Received)] == [fp.Stop]
    assert pair.device.stats.stale == 1
    # The controller gave the start up when it sent the stop, so the start's NAK
    # matches nothing; only the stop's ACK would be a reply.
    assert start not in pair.controller.pending
    assert [e for e in pair.to_controller() if isinstance(e, Replied)] == []
    assert pair.controller.stats.unmatched_replies == 1


def test_sending_stop_fails_pending_requests_as_preempted(pair: Pair) -> None:
    seq = pair.request(fp.SetIntensity(2))
    pair.request(fp.Vent())
    assert RequestFailed(fp.SetIntensity(2), seq, FailReason.PREEMPTED) in pair.controller.events()


def wire(seq: int, message: fp.Message, version: int = 1) -> bytes:
    return fp.Frame(seq, message.TYPE, message.encode_payload(), version).encode()


def naks(connection: Connection) -> list[fp.Nak]:
    replies = []
    for frame in fp.FrameDecoder().feed(connection.data_to_send()):
        message = fp.decode_message(frame.msg_type, frame.payload)
        if isinstance(message, fp.Nak):
            replies.append(message)
    return replies


def test_before_hello_only_stop_vent_and_get_status_pass() -> None:
    device = Connection(Role.DEVICE)
    device.receive_data(
        wire(5, fp.Start(1, 1, 60)) + wire(6, fp.Stop()) + wire(7, fp.Vent())
        + wire(8, fp.KeepAlive()) + wire(9, fp.GetStatus()),
        0.0,
    )  # fmt: skip
    delivered = [e.message for e in device.events() if isinstance(e, Received)]
    assert delivered == [fp.Stop(), fp.Vent(), fp.GetStatus()]
    assert naks(device) == [fp.Nak(5, ErrorCode.NO_HELLO)]


def test_stop_runs_whatever_its_seq(pair: Pair) -> None:
    pair.request(fp.SetMode(1))
    pair.to_device()
    pair.device.receive_data(wire(1, fp.Stop()), pair.now)  # an old seq, from anyone
    assert [e.message for e in pair.device.events() if isinstance(e, Received)] == [fp.Stop()]


def test_device_answers_protocol_errors_itself() -> None:
    device = Connection(Role.DEVICE)
    device.receive_data(wire(1, fp.Hello("x")), 0.0)
    device.events()
    device.receive_data(
        wire(2, fp.Pause(), version=2)
        + fp.Frame(3, 0x55, b"").encode()
        + fp.Frame(4, fp.MessageType.START, b"\x01").encode()
        + wire(5, fp.Ack(1)),  # a device's message sent to a device: dropped silently
        0.0,
    )
    assert device.events() == []
    assert naks(device) == [
        fp.Nak(2, ErrorCode.UNSUPPORTED_VERSION),
        fp.Nak(3, ErrorCode.UNKNOWN_MESSAGE),
        fp.Nak(4, ErrorCode.BAD_PAYLOAD),
    ]
    assert device.stats.rejected == 3


def challenge_at(pair: Pair) -> int:
    """The device sends a challenge (its uptime) and the controller reads it."""
    challenge = random.getrandbits(32)
    pair.device.send(fp.Challenge(challenge, round(pair.now * 1000)), pair.now)
    assert pair.to_controller() == []  # the link's business: no event for the caller
    return challenge


def keepalives(wire: bytes) -> list[fp.KeepAlive]:
    return [
        fp.KeepAlive.decode_payload(f.payload)
        for f in fp.FrameDecoder().feed(wire)
        if f.msg_type == fp.MessageType.KEEPALIVE
    ]


def test_keepalives_keep_their_rhythm_and_answer_each_status_at_once(pair: Pair) -> None:
    assert pair.controller.get_timer() == pytest.approx(0.25)
    pair.now = 0.2
    pair.request(fp.GetStatus())
    pair.controller.data_to_send()
    # Only a KEEPALIVE is proof of life (SPEC 7.3): other frames do not put it off.
    assert pair.controller.get_timer() == pytest.approx(0.25)
    pair.now = 0.25
    pair.controller.handle_timer(pair.now)
    assert keepalives(pair.controller.data_to_send()) == [fp.KeepAlive(None)]  # no challenge yet
    pair.now = 0.3
    uptime = challenge_at(pair)
    assert pair.controller.get_timer() == pytest.approx(0.3)  # answered at once
    pair.controller.handle_timer(pair.now)
    assert keepalives(pair.controller.data_to_send()) == [fp.KeepAlive(uptime)]
    assert pair.controller.get_timer() == pytest.approx(0.55)


def test_device_watchdog_forgets_a_silent_controller(pair: Pair) -> None:
    assert pair.device.get_timer() == pytest.approx(1.0)  # from the HELLO
    pair.now = 0.9
    pair.controller.handle_timer(pair.now)  # a keepalive with no challenge proves nothing
    pair.to_device()
    assert pair.device.get_timer() == pytest.approx(1.0)
    pair.now = 0.95
    challenge_at(pair)
    pair.controller.handle_timer(pair.now)
    pair.to_device()
    assert pair.device.get_timer() == pytest.approx(1.95)
    pair.now = 1.95
    pair.device.handle_timer(pair.now)
    assert pair.device.events() == [fp.ControllerGone("no frame from the controller for 1 s")]
    assert pair.device.state == LinkState.WAITING
    # The controller must now say HELLO again.
    seq = pair.request(fp.SetMode(1))
    pair.to_device()
    assert naks(pair.device) == [fp.Nak(seq, ErrorCode.NO_HELLO)]


def test_a_keepalive_held_back_feeds_the_watchdog_only_from_its_challenge(pair: Pair) -> None:
    """A relay that holds keepalives back and lets them out one by one gains nothing."""
    held: list[bytes] = []
    for tick in range(1, 9):  # the controller lives for 2 s; a relay keeps its keepalives
        pair.now = tick * 0.25
        if tick % 2 == 0:
            challenge_at(pair)
        pair.controller.handle_timer(pair.now)
        held.append(pair.controller.data_to_send())
    gone = pair.now  # the controller is gone
    release = [gone + 0.8 * (i + 1) for i in range(len(held))]  # one every 0.8 s
    lost_at = None
    while lost_at is None and pair.now < gone + 10:
        pair.now = round(pair.now + 0.01, 6)
        while release and release[0] <= pair.now:
            release.pop(0)
            pair.device.receive_data(held.pop(0), pair.now)
        due = pair.device.get_timer()
        if due is not None and due <= pair.now:
            pair.device.handle_timer(due)
        if pair.device.state == LinkState.WAITING:
            lost_at = pair.now
    # Gone within the watchdog of the last challenge the controller answered, which
    # it saw before it left: no later than a watchdog after it left.
    assert lost_at is not None
    assert lost_at <= gone + 1.0 + 0.01
    assert pair.device.stats.watchdog_trips == 1


def test_a_keepalive_naming_a_challenge_never_sent_proves_nothing(pair: Pair) -> None:
    pair.now = 0.5
    challenge = challenge_at(pair)
    named = fp.KeepAlive((challenge + 400) & 0xFFFFFFFF)
    forged = fp.Frame(1, fp.MessageType.KEEPALIVE, named.encode_payload())
    pair.now = 0.9
    pair.device.receive_data(forged.encode(), pair.now)
    assert pair.device.get_timer() == pytest.approx(1.0)  # still from the HELLO


def test_the_device_numbers_frames_from_1_on_each_new_link(pair: Pair) -> None:
    first = fp.FrameDecoder().feed(pair.device.data_to_send())
    again = Connection(Role.CONTROLLER)
    again.send(fp.Hello("again"), pair.now)
    pair.device.receive_data(again.data_to_send(), pair.now)
    [hello] = pair.device.events()
    assert isinstance(hello, Received)
    pair.device.send(replace(CAPS, ref_seq=hello.seq), pair.now)
    [caps] = fp.FrameDecoder().feed(pair.device.data_to_send())
    assert caps.seq == 1
    assert first == []


def test_an_unreadable_frame_from_the_device_still_proves_it_alive(pair: Pair) -> None:
    pair.now = 1.4
    pair.controller.receive_data(fp.Frame(42, 0x99, b"from a later revision").encode(), pair.now)
    pair.now = 2.0
    pair.controller.handle_timer(pair.now)
    assert not any(isinstance(e, fp.PeerSilent) for e in pair.controller.events())
    assert pair.controller.stats.rejected == 1


def test_silence_is_three_status_intervals_whatever_they_are() -> None:
    controller = Connection(Role.CONTROLLER)
    controller.send(fp.Hello("slow"), 0.0)
    controller.receive_data(
        fp.Frame(1, fp.MessageType.CAPABILITIES,
                 replace(CAPS, ref_seq=1, status_interval_ms=3000).encode_payload()).encode(),
        0.0,
    )  # fmt: skip
    assert controller.timing.silence_s == pytest.approx(9.0)
    controller.handle_timer(8.9)
    assert not any(isinstance(e, fp.PeerSilent) for e in controller.events())


def test_controller_notices_a_silent_device(pair: Pair) -> None:
    pair.now = 1.49
    pair.controller.handle_timer(pair.now)
    assert not any(isinstance(e, fp.PeerSilent) for e in pair.controller.events())
    pair.now = 1.5
    pair.controller.handle_timer(pair.now)
    assert fp.PeerSilent(1.5) in pair.controller.events()
    pair.controller.handle_timer(2.0)
    assert not any(isinstance(e, fp.PeerSilent) for e in pair.controller.events())  # said once


def test_a_quiet_controller_sends_no_keepalive_and_never_calls_the_device_silent(
    pair: Pair,
) -> None:
    """SPEC 7.6: the link lapses; the device forgets it and says only what changes."""
    pair.controller.go_quiet()
    assert pair.controller.get_timer() is None
    challenge_at(pair)  # a challenge already on its way is not answered either
    for pair.now in (0.25, 1.0, 60.0, 3600.0):
        pair.controller.handle_timer(pair.now)
        assert keepalives(pair.controller.data_to_send()) == []
        assert pair.controller.events() == []
    pair.device.handle_timer(pair.now)
    assert pair.device.events() == [fp.ControllerGone("no frame from the controller for 1 s")]
    # A look is still answered, from anyone; a read that goes unanswered still fails.
    seq = pair.request(fp.GetStatus())
    [asked] = pair.to_device()
    assert isinstance(asked, Received)
    pair.device.send(fp.Ack(seq), pair.now)
    assert pair.to_controller() == [Replied(fp.GetStatus(), seq, fp.Ack(seq))]
    lost = pair.request(fp.GetStatus())
    pair.controller.data_to_send()
    for _ in range(3):
        pair.now = pair.controller.get_timer() or pair.now
        pair.controller.handle_timer(pair.now)
    assert pair.controller.events() == [RequestFailed(fp.GetStatus(), lost, FailReason.TIMEOUT)]
    pair.controller.data_to_send()  # its re-sends, lost too
    # The next HELLO ends the quiet: keepalives again once the device answers.
    pair.connect()
    assert not pair.controller.quiet
    assert pair.controller.get_timer() == pytest.approx(pair.now + 0.25)


def test_only_an_open_controller_link_goes_quiet() -> None:
    with pytest.raises(fp.LocalProtocolError):
        Connection(Role.CONTROLLER).go_quiet()
    with pytest.raises(fp.LocalProtocolError):
        Connection(Role.DEVICE).go_quiet()


def test_link_down_fails_every_pending_request(pair: Pair) -> None:
    seq = pair.request(fp.Resume())
    pair.controller.link_down(pair.now)
    assert pair.controller.events() == [RequestFailed(fp.Resume(), seq, FailReason.LINK_DOWN)]
    with pytest.raises(LocalProtocolError, match="closed"):
        pair.request(fp.Stop())
    pair.device.link_down(pair.now)
    assert pair.device.events() == [fp.ControllerGone("the link went down")]


def test_roles_may_only_send_their_own_messages(pair: Pair) -> None:
    with pytest.raises(LocalProtocolError, match="controller does not send"):
        pair.controller.send(fp.Ack(1), 0.0)
    with pytest.raises(LocalProtocolError, match="device does not send"):
        pair.device.send(fp.Start(1, 1, 1), 0.0)
    fresh = Connection(Role.CONTROLLER)
    with pytest.raises(LocalProtocolError, match="before the device answered HELLO"):
        fresh.send(fp.Start(1, 1, 1), 0.0)


IDLE_STATUS = fp.Status(
    0, fp.SessionState.IDLE, 1, 1, fp.StatusFlag.NONE, 0, 0, 100,
    fp.Fault.NONE, fp.EndReason.NONE, 0, 0, (),
)  # fmt: skip


def test_sequence_gaps_are_counted(pair: Pair) -> None:
    for _ in range(3):
        pair.device.send(IDLE_STATUS, pair.now)
    frames = fp.FrameDecoder().feed(pair.device.data_to_send())
    pair.controller.receive_data(frames[0].encode() + frames[2].encode(), pair.now)
    assert pair.controller.stats.lost == 1


@given(st.binary(max_size=1500))
def test_random_bytes_never_crash_either_role(data: bytes) -> None:
    for role in Role:
        connection = Connection(role)
        connection.receive_data(data, 0.0)
        connection.events()
        connection.data_to_send()
        connection.handle_timer(5.0)


@given(
    st.lists(
        st.sampled_from(
            [
                fp.Hello("h"),
                fp.Start(1, 2, 30),
                fp.SetMode(2),
                fp.SetIntensity(1),
                fp.Pause(),
                fp.Resume(),
                fp.Stop(),
                fp.Vent(),
                fp.KeepAlive(),
                fp.GetStatus(),
                fp.ResetFault(),
            ]
        ),
        max_size=30,
    ),
    st.binary(max_size=40),
)
def test_commands_mixed_with_garbage_are_all_accounted_for(
    commands: list[fp.Message], garbage: bytes
) -> None:
    device = Connection(Role.DEVICE)
    stream = b"".join(wire(i + 1, c) + garbage.replace(b"\x00", b"") + b"\x00"
                      for i, c in enumerate(commands))  # fmt: skip
    device.receive_data(stream, 0.0)
    delivered = [e for e in device.events() if isinstance(e, Received)]
    answered = naks(device)
    silent = [c for c in commands if isinstance(c, fp.KeepAlive)]
    # Every command is delivered, or refused with a NAK, or is a keepalive; none vanishes.
    assert len(delivered) + len(answered) + len(silent) == len(commands)
    assert device.stats.frames == len(commands)


def test_a_controller_whose_key_is_gone_signs_nothing_and_holds_no_authenticated_link() -> None:
    from simulator import DeviceConfig, Firmware

    key = bytes(range(32))
    firmware = Firmware(DeviceConfig(seed=1), now=0.0)
    key_id = firmware.memory.pairings.add("c", key)
    counters = iter(range(1, 100))
    controller = Connection(Role.CONTROLLER)
    controller.use_key(fp.Signer(key_id, key, lambda: next(counters)), device_signs=True)
    controller.send(fp.Hello("c"), 0.0)
    firmware.receive_data(controller.data_to_send(), 0.0)
    controller.receive_data(firmware.data_to_send(), 0.0)
    assert controller.link_key_id == key_id

    controller.key_gone()
    assert controller.signer is None
    assert controller.link_key_id is None
    controller.send(fp.GetStatus(), 0.0)
    [frame] = fp.FrameDecoder().feed(controller.data_to_send())
    assert frame.auth is None  # unsigned from here on
