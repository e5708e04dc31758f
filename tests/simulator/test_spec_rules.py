"""The device rules SPEC.md states for a maker, one test each, on the simulated firmware.

Each test names the section it holds the reference to; the link's own rules are
in tests/firmware_protocol/test_spec_rules.py.
"""

from __future__ import annotations

import firmware_protocol as fp
from firmware_protocol import EndReason, FrameDecoder, SessionState, StatusFlag
from tests.simulator.rig import Rig

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
