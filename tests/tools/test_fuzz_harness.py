"""The fuzzing harness (tools/fuzz.py) without atheris: its targets run, and they can fail.

Each target runs on its whole seed corpus here, so a change to the protocol or
the firmware that breaks the harness (or a rule it checks) shows in CI, not on
the next fuzzing run. The rules are shown to bite on code broken on purpose.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, ClassVar

import pytest

import firmware_protocol as fp
from firmware_protocol import (
    EndReason,
    ErrorCode,
    Frame,
    FrameDecoder,
    Nak,
    SessionEnded,
    Stop,
    connection,
)
from firmware_protocol.connection import Connection, LinkState
from simulator import Snapshot
from simulator.firmware import Firmware
from tools import fuzz
from tools.invariants import (
    FUZZ_KEY,
    FUZZ_KEY_ID,
    CheckedFirmware,
    Sent,
    command_frame,
    fuzz_config,
    plain_keepalive,
)


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_each_target_passes_its_seed_corpus(target: str) -> None:
    seeds = fuzz.seed_inputs(target)
    assert len(seeds) > 20
    for seed in seeds.values():
        fuzz.TARGETS[target](seed)


def test_the_firmware_seeds_run_sessions_and_reach_every_state_and_ending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seeds that never got a session going would leave the fuzzer far from the rules.
    seen: set[str] = set()
    sessions: list[int] = []
    ended: set[EndReason] = set()
    check = CheckedFirmware._check_state
    drain = CheckedFirmware._drain

    def spy(self: CheckedFirmware, snap: Snapshot) -> None:
        check(self, snap)
        seen.add(snap.state.name)
        sessions[-1] = self.sessions

    def drain_spy(self: CheckedFirmware) -> list[Sent]:
        sent = drain(self)
        ended.update(s.message.reason for s in sent if isinstance(s.message, SessionEnded))
        return sent

    monkeypatch.setattr(CheckedFirmware, "_check_state", spy)
    monkeypatch.setattr(CheckedFirmware, "_drain", drain_spy)
    for seed in fuzz.seed_inputs("firmware").values():
        sessions.append(0)
        fuzz.firmware_target(seed)
    assert sum(1 for n in sessions if n) > len(sessions) // 2
    assert seen == {"IDLE", "RUNNING", "PAUSED", "FAULT"}
    # Every way a session ends, but the cap: none fits in the simulated budget (the
    # simulator's tests reach it). A lease end and a pause timeout are timed paths.
    assert {r.name for r in ended} == {r.name for r in EndReason} - {"NONE", "SESSION_CAP"}


@pytest.mark.parametrize("preset", [0, 1])
def test_every_wait_byte_spends_its_share_of_the_budget(
    monkeypatch: pytest.MonkeyPatch, preset: int
) -> None:
    # A wait that the budget skipped would leave its byte values dead to the fuzzer.
    waits: list[float] = []
    advance = CheckedFirmware.advance

    def spy(
        self: CheckedFirmware, dt: float, *, keepalive: Callable[[int | None], bytes] | None = None
    ) -> None:
        waits.append(dt)
        advance(self, dt, keepalive=keepalive)

    monkeypatch.setattr(CheckedFirmware, "advance", spy)
    budget = fuzz.simulated_budget(preset)
    for b in (1, 177, 200, 255):
        waits.clear()
        fuzz.firmware_target(fuzz.FirmwareOps(preset).advance(b).advance(255).build())
        assert waits[0] == pytest.approx(budget * (b / 255) ** 3)
        assert sum(waits) == pytest.approx(budget), "the rest of the budget, and no more"
    ops = fuzz.FirmwareOps(preset).wait(6.0)
    waits.clear()
    fuzz.firmware_target(ops.build())
    assert 6.0 <= waits[0] < 6.2


def test_resend_feeds_the_last_read_again_in_its_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[bytes] = []
    feed = CheckedFirmware.feed

    def spy(self: CheckedFirmware, data: bytes) -> None:
        reads.append(data)
        feed(self, data)

    monkeypatch.setattr(CheckedFirmware, "feed", spy)
    ops = fuzz.FirmwareOps(1).frame(fp.Hello("fuzz"), seq=1, split=5)
    fuzz.firmware_target(ops.frame(fp.GetStatus(), hold=True).resend().build())
    hello, held = reads[0] + reads[1], reads[-1]
    assert len(reads[0]) == 5
    assert reads == [hello[:5], hello[5:], hello[:5], hello[5:], held], "held frames wait"
    assert fp.GetStatus.TYPE in {f.msg_type for f in FrameDecoder().feed(held)}


class _Exited:
    """A stand-in for a fuzzing child process that has exited with ``code``."""

    codes: ClassVar[list[int]] = []

    def __init__(self, command: list[str], stdout: IO[str], stderr: object) -> None:
        stdout.close()  # the log the child would have written
        self.code = self.codes.pop(0)

    def wait(self) -> int:
        return self.code


@pytest.mark.parametrize(("codes", "failed"), [([0, 0], False), ([0, -9], True),
                                               ([-6, 0], True), ([1, 0], True)])  # fmt: skip
def test_fuzzing_all_targets_fails_if_any_child_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, codes: list[int], failed: bool
) -> None:
    # A child killed by a signal (a negative code) is a failure, not a success.
    monkeypatch.setattr(_Exited, "codes", list(codes))
    monkeypatch.setattr(fuzz.subprocess, "Popen", _Exited)
    code = fuzz._fuzz_all(argparse.Namespace(runs=1, libfuzzer=[]), tmp_path)
    assert (code != 0) == failed
    assert code >= 0


def test_the_firmware_target_catches_a_firmware_that_ignores_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apply = Firmware._apply

    def ignoring_stop(self: Firmware, message: object) -> None:
        if not isinstance(message, Stop):
            apply(self, message)  # type: ignore[arg-type]

    monkeypatch.setattr(Firmware, "_apply", ignoring_stop)
    assert len(_failures(fuzz.seed_inputs("firmware").values())) > 50


def _failures(seeds: Iterable[bytes]) -> list[str]:
    """The messages of the rules the firmware target finds broken, one per failing seed."""
    failures = []
    for seed in seeds:
        try:
            fuzz.firmware_target(seed)
        except AssertionError as error:
            failures.append(str(error))
    return failures


def _paired_seeds() -> list[bytes]:
    return [s for s in fuzz.seed_inputs("firmware").values() if s[0] & fuzz.FirmwareOps.PAIRED]


def test_the_paired_seeds_run_sessions_on_an_authenticated_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without them the fuzzer would have to find the key id, and the signing, alone.
    authenticated_running = 0
    refused: list[Nak] = []
    ended: set[EndReason] = set()
    drain = CheckedFirmware._drain

    def spy(self: CheckedFirmware) -> list[Sent]:
        nonlocal authenticated_running
        sent = drain(self)
        if self.fw.conn.link_key_id == FUZZ_KEY_ID and self.fw.state == fp.SessionState.RUNNING:
            authenticated_running += 1
        refused.extend(s.message for s in sent if isinstance(s.message, Nak))
        ended.update(s.message.reason for s in sent if isinstance(s.message, SessionEnded))
        return sent

    monkeypatch.setattr(CheckedFirmware, "_drain", spy)
    seeds = _paired_seeds()
    assert len(seeds) == 4 * 6, "four programs on each preset, paired"
    for seed in seeds:
        fuzz.firmware_target(seed)
    assert authenticated_running > 100
    errors = {nak.error for nak in refused}
    assert {ErrorCode.NOT_AUTHENTICATED, ErrorCode.REPLAYED, ErrorCode.PREEMPTED} <= errors
    assert {EndReason.LINK_LOST, EndReason.STOPPED, EndReason.VENTED} <= ended


def test_the_firmware_target_catches_a_paired_device_that_takes_unsigned_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A device that forgot it is paired: an unsigned START from anyone runs.
    monkeypatch.setattr(fp.PairingTable, "enforced", property(lambda self: False))
    caught = _failures(_paired_seeds())
    # One program per preset sends an unsigned START on a link opened without a key.
    assert len(caught) >= 6, caught
    reasons = ("with no signed command", "NOT_AUTHENTICATED")
    assert all(any(reason in text for reason in reasons) for text in caught), caught


def test_the_firmware_target_catches_a_forged_frame_that_moves_a_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A device that records a frame's counter before it checks the tag: a forgery
    # with a counter far ahead would lock the real controller out (SPEC 12.3).
    receive = Connection._device_receive

    def counts_first(self: Connection, frame: Frame, now: float, **kwargs: bool) -> None:
        pairing = self.pairings.get(self.link_key_id) if self.pairings is not None else None
        auth = frame.auth
        if pairing and auth and auth.counter > pairing.counter and not self._verified(frame):
            self.pairings.accept(pairing, auth.counter)  # type: ignore[union-attr]
        receive(self, frame, now, **kwargs)

    monkeypatch.setattr(Connection, "_device_receive", counts_first)
    failures = _failures(_paired_seeds())
    assert failures, "no paired seed noticed"
    assert all("counter moved" in text for text in failures), failures


class _PairedController:
    """Signs as the paired controller does: a HELLO without a nonce, the rest under the link's."""

    def __init__(self, rig: CheckedFirmware) -> None:
        self.rig, self.seq, self.counter = rig, 0, 0

    def wire(self, message: fp.Message, *, signed: bool = True) -> bytes:
        self.seq += 1
        self.counter += 1
        nonce = self.rig.signing_nonce(message.TYPE)
        key = FUZZ_KEY if signed else None
        return command_frame(self.seq, message, key=key, counter=self.counter, nonce=nonce).encode()


def _running_paired() -> tuple[CheckedFirmware, _PairedController]:
    rig = CheckedFirmware(fuzz_config(2), paired=True)  # one chamber, a 10 s watchdog
    ctl = _PairedController(rig)
    rig.feed(ctl.wire(fp.Hello("t", FUZZ_KEY_ID)))
    rig.feed(ctl.wire(fp.Start(fp.Mode.WAVE, 1, 60)))
    assert rig.fw.conn.link_key_id == FUZZ_KEY_ID
    assert rig.fw.state == fp.SessionState.RUNNING
    return rig, ctl


def test_one_signed_command_lets_no_unsigned_one_through(monkeypatch: pytest.MonkeyPatch) -> None:
    rig, ctl = _running_paired()
    rig.feed(ctl.wire(fp.SetIntensity(1)) + ctl.wire(fp.Pause(), signed=False))
    assert rig.fw.state == fp.SessionState.RUNNING, "the stranger's PAUSE was refused"
    # A device that takes PAUSE from anyone, in a read that also holds a signed command.
    monkeypatch.setattr(connection, "AUTHENTICATED", fp.AUTHENTICATED - {fp.MessageType.PAUSE})
    rig, ctl = _running_paired()
    with pytest.raises(AssertionError, match="RUNNING -> PAUSED with no signed command"):
        rig.feed(ctl.wire(fp.SetIntensity(1)) + ctl.wire(fp.Pause(), signed=False))


def test_an_authenticated_link_lives_on_fresh_signed_frames_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unsigned_keepalive_then_silence() -> None:
        rig, ctl = _running_paired()
        rig.advance(5)
        rig.feed(ctl.wire(fp.KeepAlive(rig.challenge), signed=False))
        for _ in range(8):
            rig.advance(1)
        assert rig.fw.conn.state == LinkState.WAITING, "gone 10 s after its last signed frame"

    unsigned_keepalive_then_silence()
    # A device whose authenticated link any frame keeps up, as before SPEC 12.3's rule.
    receive = Connection._device_receive

    def lax(self: Connection, frame: Frame, now: float, **kwargs: bool) -> None:
        receive(self, frame, now, **kwargs)
        if self.state == LinkState.READY and self.link_key_id is not None:
            self._last_rx = now

    monkeypatch.setattr(Connection, "_device_receive", lax)
    with pytest.raises(AssertionError, match="outlived its last fresh signed frame"):
        unsigned_keepalive_then_silence()


def test_the_decoder_target_catches_a_decoder_that_loses_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parse = FrameDecoder._parse

    def forgetful(self: FrameDecoder, block: bytes) -> object:
        frame = parse(self, block)
        if frame is None:
            self.stats.resyncs -= 1  # a drop that is not counted as a resync
        return frame

    monkeypatch.setattr(FrameDecoder, "_parse", forgetful)
    seeds = list(fuzz.seed_inputs("decoder").values())

    def run_all() -> None:
        for seed in seeds:
            fuzz.decoder_target(seed)

    with pytest.raises(AssertionError, match="one resync per dropped block"):
        run_all()


def test_importing_the_harness_imports_neither_atheris_nor_the_code_under_test() -> None:
    # atheris instruments only what is imported after it starts.
    check = (
        "import sys, tools.fuzz; "
        "loaded = [m for m in ('atheris', 'firmware_protocol', 'simulator') if m in sys.modules]; "
        "sys.exit(str(loaded) if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_command_line_writes_seeds_and_replays_inputs(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "tools.fuzz", "firmware"]
    folder = tmp_path / "seeds"
    written = subprocess.run([*run, "--write-seeds", str(folder)], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert written.returncode == 0, written.stderr
    files = sorted(folder.iterdir())
    assert len(files) == len(fuzz.seed_inputs("firmware"))
    replayed = subprocess.run([*run, "--reproduce", *map(str, files[:3])], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.count(": ok") == 3


def test_a_stop_read_with_a_signed_start_wins_and_a_device_that_lets_it_run_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def start_with_a_strangers_stop() -> CheckedFirmware:
        rig = CheckedFirmware(fuzz_config(2), paired=True)
        ctl = _PairedController(rig)
        rig.feed(ctl.wire(fp.Hello("t", FUZZ_KEY_ID)))
        stop = command_frame(0, fp.Stop()).encode()  # a stranger's, with an old seq
        rig.feed(ctl.wire(fp.Start(fp.Mode.WAVE, 1, 60)) + stop)
        return rig

    assert start_with_a_strangers_stop().fw.state == fp.SessionState.IDLE
    # The device before SPEC 7.4 said so: the stop first, then the START ran.
    receive = Connection._device_receive

    def unhalted(self: Connection, frame: Frame, now: float, **kwargs: bool) -> None:
        receive(self, frame, now)

    monkeypatch.setattr(Connection, "_device_receive", unhalted)
    with pytest.raises(AssertionError, match=r"after a stop|no START the link took"):
        start_with_a_strangers_stop()


def test_a_held_back_keepalive_keeps_nothing_alive_and_a_device_that_counts_it_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def relayed() -> CheckedFirmware:
        rig = CheckedFirmware(fuzz_config(0))  # the reference device: a 1 s watchdog
        rig.feed(command_frame(1, fp.Hello("t")).encode())
        rig.feed(command_frame(2, fp.Start(fp.Mode.WAVE, 1, 60)).encode())
        rig.advance(3, keepalive=plain_keepalive())
        old = rig.challenge  # the controller goes; a relay lets out what it held
        for _ in range(6):
            rig.advance(0.8)
            rig.feed(command_frame(2, fp.KeepAlive(old)).encode())
        return rig

    rig = relayed()
    assert rig.fw.state == fp.SessionState.IDLE
    assert rig.fw.last_end == EndReason.LINK_LOST
    # A device that takes a keepalive's arrival for proof of life, as before SPEC 7.3.
    receive = Connection._device_receive

    def at_arrival(self: Connection, frame: Frame, now: float, **kwargs: bool) -> None:
        receive(self, frame, now, **kwargs)
        if self.state == LinkState.READY and frame.msg_type == fp.MessageType.KEEPALIVE:
            self._last_rx = now

    monkeypatch.setattr(Connection, "_device_receive", at_arrival)
    with pytest.raises(AssertionError, match="controller present: True, model False"):
        relayed()


def test_the_firmware_target_catches_a_paired_device_that_does_not_sign_its_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An older firmware: it checks the controller's tags but signs nothing of its own.
    monkeypatch.setattr(Connection, "_signing", lambda self: False)
    caught = _failures(_paired_seeds())
    assert caught, "no paired seed noticed"
    assert all("is not signed" in text for text in caught), caught


def test_two_signed_hellos_in_one_read_are_each_answered_for_their_own_link() -> None:
    # The fuzzer found it: the firmware answers a read's HELLOs after the whole read,
    # and the first CAPABILITIES (and the status after it) went out with the second
    # link's nonce and signed for it, which the first HELLO's controller cannot check.
    hello = fp.Hello(client_name="fuzz", key_id=FUZZ_KEY_ID)
    program = (fuzz.FirmwareOps(fuzz.FirmwareOps.PAIRED)
               .frame(hello, signed=True, hold=True).frame(hello, signed=True).build())  # fmt: skip
    fuzz.firmware_target(program)  # the checker holds every frame to its own link

    rig = CheckedFirmware(fuzz_config(0), paired=True)
    wire = b"".join(command_frame(seq, hello, key=FUZZ_KEY, counter=seq).encode()
                    for seq in (1, 2))  # fmt: skip
    rig.fw.receive_data(wire, 0.0)
    sent = fp.FrameDecoder().feed(rig.fw.data_to_send())
    answers = [(frame, fp.decode_message(frame.msg_type, frame.payload)) for frame in sent]
    caps = [(f, m) for f, m in answers if isinstance(m, fp.Capabilities)]
    assert [m.ref_seq for _, m in caps] == [1, 2]
    nonces = [m.link_nonce for _, m in caps]
    assert None not in nonces
    assert nonces[0] != nonces[1]
    for (frame, message), counter in zip(caps, (1, 2), strict=True):
        assert message.link_nonce is not None
        assert frame.verify(FUZZ_KEY, counter.to_bytes(4, "little") + message.link_nonce)
    assert rig.fw.conn.link_nonce == nonces[1]  # the second HELLO holds the link


def _caught(program: bytes) -> str | None:
    try:
        fuzz.firmware_target(program)
    except AssertionError as error:
        return str(error)
    return None


def test_two_hellos_with_one_seq_in_one_read_are_each_answered_for_their_own_link() -> None:
    # Found by attack: the links were kept by seq, one each, so the second HELLO's link
    # took the first's place. The first CAPABILITIES went out signed for the second
    # link, the second unsigned, and from then on the device signed nothing on a link
    # authenticated with a key. Two controllers both starting at seq 1, or a restart.
    hello = fp.Hello(client_name="fuzz", key_id=FUZZ_KEY_ID)
    ops = fuzz.FirmwareOps
    two_signed = (ops(ops.PAIRED).frame(hello, signed=True, seq=1, hold=True)
                  .frame(hello, signed=True, seq=1).frame(fp.GetStatus(), signed=True))  # fmt: skip
    plain = fp.Hello(client_name="other")
    plain_then_signed = (ops(ops.PAIRED).frame(plain, seq=1, hold=True)
                         .frame(hello, signed=True, seq=1)
                         .frame(fp.GetStatus(), signed=True))  # fmt: skip
    for program in (two_signed.build(), plain_then_signed.build()):
        assert _caught(program) is None

    rig = CheckedFirmware(fuzz_config(0), paired=True)
    wire = b"".join(command_frame(1, hello, key=FUZZ_KEY, counter=counter).encode()
                    for counter in (10, 11))  # fmt: skip
    rig.fw.receive_data(wire, 0.0)
    sent = fp.FrameDecoder().feed(rig.fw.data_to_send())
    caps = [(f, fp.decode_message(f.msg_type, f.payload)) for f in sent
            if f.msg_type == fp.MessageType.CAPABILITIES]  # fmt: skip
    assert len(caps) == 2
    for (frame, message), counter in zip(caps, (10, 11), strict=True):
        assert isinstance(message, fp.Capabilities)
        assert message.link_nonce is not None
        assert frame.verify(FUZZ_KEY, counter.to_bytes(4, "little") + message.link_nonce)
    assert rig.fw.conn.link_nonce == caps[1][1].link_nonce
    # What the device says on the link that remains is signed for it.
    status = sent[-2]
    assert status.msg_type == fp.MessageType.STATUS
    assert status.verify(FUZZ_KEY, (11).to_bytes(4, "little") + rig.fw.conn.link_nonce)


def test_the_checker_catches_hellos_of_one_seq_answered_for_one_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rule bites: a device that keeps one link per seq (as before) is caught.
    def one_per_seq(self: Connection, hello_seq: int, *, take: bool) -> object:
        links = self._hello_links.pop(hello_seq, None) if take else self._hello_links.get(hello_seq)
        return links[-1] if links else None

    monkeypatch.setattr(Connection, "_opened_by", one_per_seq)
    hello = fp.Hello(client_name="fuzz", key_id=FUZZ_KEY_ID)
    ops = fuzz.FirmwareOps
    program = (ops(ops.PAIRED).frame(hello, signed=True, seq=1, hold=True)
               .frame(hello, signed=True, seq=1).build())  # fmt: skip
    caught = _caught(program)
    assert caught is not None
    assert "the last CAPABILITIES is not the link's" in caught, caught


def test_an_unpair_forgets_its_own_key_though_a_hello_follows_in_its_read() -> None:
    # Found by attack: the firmware forgot the key of the link present when it acted
    # on the UNPAIR, after the whole read. A plain HELLO in the same read left the
    # UNPAIR's key paired (answered with a signed ACK: the controller forgot it, the
    # massager did not); another controller's signed HELLO had that key unpaired.
    hello = fp.Hello(client_name="fuzz", key_id=FUZZ_KEY_ID)
    ops = fuzz.FirmwareOps
    program = (ops(ops.PAIRED).frame(hello, signed=True)
               .frame(fp.Unpair(), signed=True, hold=True)
               .frame(fp.Hello(client_name="other")).build())  # fmt: skip
    assert _caught(program) is None

    key_b = bytes(range(100, 132))
    rig = CheckedFirmware(fuzz_config(0), paired=True)
    fw = rig.fw
    other = fw.memory.pairings.add("other", key_b)
    fw.receive_data(command_frame(1, hello, key=FUZZ_KEY, counter=10).encode(), 0.0)
    caps = [fp.decode_message(f.msg_type, f.payload) for f in fp.FrameDecoder().feed(
        fw.data_to_send()) if f.msg_type == fp.MessageType.CAPABILITIES]  # fmt: skip
    assert isinstance(caps[0], fp.Capabilities)
    assert caps[0].link_nonce is not None
    unpair = command_frame(2, fp.Unpair(), key=FUZZ_KEY, counter=11, nonce=caps[0].link_nonce)
    other_hello = command_frame(1, fp.Hello(client_name="b", key_id=other), key=key_b, counter=5)
    fw.receive_data(unpair.encode() + other_hello.encode() + command_frame(3, fp.GetStatus(),
                    key=FUZZ_KEY, counter=12, nonce=caps[0].link_nonce).encode(), 0.1)  # fmt: skip
    assert [p.key_id for p in fw.memory.pairings] == [other]
    assert fw.conn.link_key_id == other
    # Nothing after the UNPAIR's ACK is signed under its key, the next link's words are.
    after_ack = False
    for frame in fp.FrameDecoder().feed(fw.data_to_send()):
        message = fp.decode_message(frame.msg_type, frame.payload)
        if after_ack and frame.auth is not None:
            assert not any(frame.verify(FUZZ_KEY, (10).to_bytes(4, "little") + n)
                           for n in (caps[0].link_nonce,)), message  # fmt: skip
        after_ack = after_ack or message == fp.Ack(2)


def test_the_checker_catches_an_unpair_that_forgets_the_next_links_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Firmware._on_command

    def present_key(self: Firmware, message: fp.Message, seq: int, key_id: int | None) -> None:
        original(self, message, seq, self.conn.link_key_id)  # the bug: the present link's key

    monkeypatch.setattr(Firmware, "_on_command", present_key)
    hello = fp.Hello(client_name="fuzz", key_id=FUZZ_KEY_ID)
    ops = fuzz.FirmwareOps
    program = (ops(ops.PAIRED).frame(hello, signed=True)
               .frame(fp.Unpair(), signed=True, hold=True)
               .frame(fp.Hello(client_name="other")).build())  # fmt: skip
    caught = _caught(program)
    assert caught is not None
    assert "still held after their UNPAIR" in caught, caught


def test_a_hello_under_another_key_with_the_same_seq_and_counter_is_no_resend() -> None:
    # Found by attack: taken for the first HELLO sent again, it was swallowed (or
    # answered with the other link's CAPABILITIES), and its controller never got a link.
    key_b = bytes(range(100, 132))
    rig = CheckedFirmware(fuzz_config(0), paired=True)
    fw = rig.fw
    other = fw.memory.pairings.add("other", key_b)
    hello_a = command_frame(1, fp.Hello(client_name="a", key_id=FUZZ_KEY_ID), key=FUZZ_KEY,
                            counter=10)  # fmt: skip
    hello_b = command_frame(1, fp.Hello(client_name="b", key_id=other), key=key_b, counter=10)
    fw.receive_data(hello_a.encode() + hello_b.encode(), 0.0)
    assert fw.conn.link_key_id == other
    sent = fp.FrameDecoder().feed(fw.data_to_send())
    caps = [(f, fp.decode_message(f.msg_type, f.payload)) for f in sent
            if f.msg_type == fp.MessageType.CAPABILITIES]  # fmt: skip
    assert len(caps) == 2
    for (frame, message), key in zip(caps, (FUZZ_KEY, key_b), strict=True):
        assert isinstance(message, fp.Capabilities)
        assert message.link_nonce is not None
        assert frame.verify(key, (10).to_bytes(4, "little") + message.link_nonce)
