"""Coverage-guided fuzzing of the frame decoder and the simulated firmware, with atheris.

Usage::

    python -m tools.fuzz decoder --runs 1000000     # one target
    python -m tools.fuzz firmware --runs 1000000
    python -m tools.fuzz --runs 1000000             # both at once, one process each
    python -m tools.fuzz firmware --reproduce crash-1234abcd   # replay an input, no atheris

atheris (``pip install 'atheris>=2.3'``) is needed to fuzz, not to import this
module: the targets are plain functions of bytes, and the test suite runs them
on the seed corpus so they cannot rot.

Targets
-------
``decoder``: byte 0 chooses how the rest becomes a stream (as is, or built from
segments: garbage, frames given a correct CRC and COBS, bare COBS blocks) and
how it is cut into reads. `tools.invariants.check_decoder` holds the stream's
decoding to its rules, and every frame found (and the input itself, read as a
type and a payload) goes through `check_message`.

``firmware``: byte 0 picks a device: its low 7 bits one of
`tools.invariants.PRESETS`, its high bit whether the device is paired (it holds
`tools.invariants.FUZZ_KEY` and enforces SPEC 12). The rest is a program of
operations for a fresh `CheckedFirmware`, each an opcode byte and its operands
(see `FirmwareOps`): a command frame (type, seq, version, payload and signing
chosen by the input; the harness adds the CRC and COBS, and signs as a
controller would, so the fuzzer need not find them), raw bytes, time passing, a
button, a link drop, a hardware fault, a re-sent read. Frames may be held and
sent together in one read. Simulated time per input is capped so that one input
stays cheap; a wait is a share of that budget, so every byte value of a wait
means a wait.

A broken rule raises `AssertionError`, any other exception is a finding too,
and either crashes the fuzzer, which saves the input (``crash-*``) under the
artifacts folder.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported late at run time: atheris instruments them first
    from firmware_protocol import Message

INSTRUMENTED = ("firmware_protocol", "simulator")
"""The packages whose coverage guides the fuzzer."""
UNINSTRUMENTED = (
    "simulator.physics",
    "simulator.diagnostics",
    "simulator.patterns",
    "simulator.faults",
)
"""Numeric loops with little branching: instrumenting them would slow every input for
no guidance worth having. The fault catalogue holds the plant's `InjectedFaults`, asked
at every sample whether anything is broken, as part of the physics."""

MAX_SIMULATED_S = 20.0
"""Simulated seconds one firmware input may spend. A wait is a share of this budget
(see `FirmwareOps`), and a wait that asks for more than is left is cut to what is
left, so once the budget is spent time stands still. Every simulated second costs
real time (4 to 20 samples and the STATUS reports), and the fuzzer would favour long
inputs: this keeps it near 1 ms an input. Enough for short leases, the pause limit of
preset 1, the watchdog and a flat battery; a session cap (60 s at the least) is beyond
it, and left to tests/simulator/test_fuzz_firmware.py."""
REFERENCE_SIMULATED_S = 10.0
"""The same for the reference device (preset 0), which samples 20 times a second."""


def simulated_budget(preset: int) -> float:
    """The simulated seconds a firmware input on device ``preset`` (byte 0) may spend."""
    from tools.invariants import PRESETS

    reference = (preset & ~FirmwareOps.PAIRED) % len(PRESETS) == 0
    return REFERENCE_SIMULATED_S if reference else MAX_SIMULATED_S


MAX_LEN = {"decoder": 2048, "firmware": 256}
"""libFuzzer's ``-max_len`` per target: several frames of any size, or about 50 operations."""

# --- the decoder target -----------------------------------------------------------


def _decoder_stream(body: bytes) -> bytes:
    """Build a stream from segments ``[kind][length][bytes]`` (see the module docstring)."""
    from firmware_protocol import cobs
    from firmware_protocol.framing import crc16

    out = bytearray()
    at = 0
    while at + 2 <= len(body):
        kind, length = body[at], body[at + 1]
        chunk = body[at + 2 : at + 2 + length]
        at += 2 + length
        if kind % 4 == 0:
            out += chunk  # garbage, zeros included
        elif kind % 4 == 1:
            # A frame as the fuzzer wrote it (any header, any payload), with a good CRC.
            raw = chunk + crc16(chunk).to_bytes(2, "little")
            encoded = cobs.encode(raw)
            if kind & 0x80 and _second_spelling(encoded):
                encoded = encoded[:-1]  # the second spelling COBS allows: see reencodes_to
            out += encoded + b"\x00"
        elif kind % 4 == 2:
            out += cobs.encode(chunk) + b"\x00"  # a valid COBS block; a CRC only by luck
        else:
            out += chunk + b"\x00"
    return bytes(out)


def _cuts(length: int, seed: int) -> list[int]:
    """Read boundaries: pieces alternate between two sizes that ``seed`` (7 bits) picks."""
    if seed == 0:
        return []
    sizes = ((seed >> 3) + 1, (seed & 7) * 37 + 1)
    cuts, at, turn = [], 0, 0
    while at < length:
        at += sizes[turn]
        turn ^= 1
        cuts.append(at)
    return cuts


def decoder_target(data: bytes) -> None:
    """One decoder input: assert every deframing and message-decoding rule on it."""
    from tools.invariants import check_decoder, check_message

    if not data:
        return
    control, body = data[0], data[1:]
    stream = _decoder_stream(body) if control & 0x80 else body
    for frame in check_decoder(stream, _cuts(len(stream), control & 0x7F)):
        check_message(frame.msg_type, frame.payload)
    if body:
        check_message(body[0], body[1:])


# --- the firmware target ----------------------------------------------------------


class FirmwareOps:
    """The opcodes of a firmware input, and a writer of programs in them (for seeds).

    Each operation is an opcode byte; its low 3 bits are the operation, the high
    5 its flags. FRAME (0 and 1) has flags ``SEQ`` (two seq bytes follow; else the
    last seq plus one), ``HOLD`` (keep it for the next read), ``VERSION`` (a
    version byte follows), ``SIGNED`` (an auth trailer) and ``SPLIT`` (the read
    arrives in two pieces, cut where the next byte says), then ``type``,
    ``length`` and the payload. RAW: ``length`` and bytes, sent with what is
    held. ADVANCE: one byte ``b``, ``budget * (b / 255) ** 3`` seconds, where
    ``budget`` is the device's whole `simulated_budget` (so 255 spends all of it, and
    a wait longer than what is left is cut to that); with flag ``ALIVE`` the
    controller sends KEEPALIVE meanwhile, as a live one does. That KEEPALIVE comes
    every 0.9 watchdog (`CheckedFirmware.advance`): deliberately at the edge of the
    watchdog, where SPEC 7.3 asks a controller for one every quarter of it. PRESS: a
    button. DROP: the link goes down. FAULT: a byte naming a hardware fault to
    switch. RESEND: the last read again, byte for byte and in the same pieces (a
    split read is split again); frames held since stay held.

    A SIGNED frame is signed with `tools.invariants.FUZZ_KEY`, a HELLO without a
    nonce and any other frame under the nonce of the last CAPABILITIES the device
    sent, each with a counter one above the last (SPEC 12.3), as the paired
    controller does. On a paired device (``PAIRED`` in byte 0) the KEEPALIVEs of
    ``ALIVE`` are signed too: only a fresh signed frame feeds the watchdog of an
    authenticated link.
    """

    FRAME, RAW, ADVANCE, PRESS, DROP, FAULT, RESEND = 0, 2, 3, 4, 5, 6, 7
    SEQ, HOLD, VERSION, SIGNED, SPLIT = 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
    ALIVE = 1 << 3
    PAIRED = 1 << 7
    """In byte 0: the device holds the fuzzing key."""

    def __init__(self, preset: int = 0) -> None:
        self.out = bytearray([preset])
        self.budget = simulated_budget(preset)

    def frame(self, message: Message | tuple[int, bytes], *, seq: int | None = None,
              hold: bool = False, version: int | None = None, signed: bool = False,
              split: int | None = None) -> FirmwareOps:  # fmt: skip
        """Append a command frame: a message, or a raw ``(type, payload)``."""
        if isinstance(message, tuple):
            msg_type, payload = message
        else:
            msg_type, payload = message.TYPE, message.encode_payload()
        op = self.FRAME
        op |= self.SEQ if seq is not None else 0
        op |= self.HOLD if hold else 0
        op |= self.VERSION if version is not None else 0
        op |= self.SIGNED if signed else 0
        op |= self.SPLIT if split is not None else 0
        self.out.append(op)
        if seq is not None:
            self.out += seq.to_bytes(2, "little")
        if version is not None:
            self.out.append(version)
        if split is not None:
            self.out.append(split)
        self.out += bytes([msg_type, len(payload)]) + payload
        return self

    def raw(self, data: bytes) -> FirmwareOps:
        """Append raw bytes sent as they are (with anything held)."""
        self.out += bytes([self.RAW, len(data)]) + data
        return self

    def advance(self, b: int, *, alive: bool = False) -> FirmwareOps:
        """Append a wait of ``budget * (b / 255) ** 3`` seconds, kept alive or silent."""
        self.out += bytes([self.ADVANCE | (self.ALIVE if alive else 0), b])
        return self

    def wait(self, seconds: float, *, alive: bool = False) -> FirmwareOps:
        """Append the shortest wait (`advance`) of at least ``seconds``, or the longest."""
        b = min(255, math.ceil(255 * (seconds / self.budget) ** (1 / 3) - 1e-9))
        return self.advance(b, alive=alive)

    def press(self, button: int) -> FirmwareOps:
        """Append a press of the remote's ``button``."""
        self.out += bytes([self.PRESS, button - 1])
        return self

    def drop(self) -> FirmwareOps:
        """Append a link drop."""
        self.out.append(self.DROP)
        return self

    def fault(self, which: int) -> FirmwareOps:
        """Append a hardware fault switch (see `_inject`)."""
        self.out += bytes([self.FAULT, which])
        return self

    def resend(self) -> FirmwareOps:
        """Append the last read again, in its pieces."""
        self.out.append(self.RESEND)
        return self

    def build(self) -> bytes:
        """The input."""
        return bytes(self.out)


class _Reader:
    """Takes bytes off an input; past its end everything reads as zero."""

    def __init__(self, data: bytes, at: int = 0) -> None:
        self.data, self.at = data, at

    def more(self) -> bool:
        return self.at < len(self.data)

    def u8(self) -> int:
        value = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return value

    def take(self, n: int) -> bytes:
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk


def _inject(rig: object, which: int) -> None:
    """Switch one hardware fault: bits 0-1 which, bit 2 on or off, bits 3-7 the chamber."""
    from tools.invariants import CheckedFirmware

    assert isinstance(rig, CheckedFirmware)
    on, chamber, kind = bool(which & 4), which >> 3, which & 3
    if kind == 0:
        rig.inject(pump_stuck_on=on)
    elif kind == 1:
        rig.inject(sensor_offset_mmhg=40.0 if on else 0.0)
    elif kind == 2:
        rig.inject(inlet_stuck_open=[chamber] if on else [])
    else:
        rig.inject(exhaust_stuck_shut=[chamber] if on else [])


def firmware_target(data: bytes) -> None:
    """One firmware input: run its program on a fresh device, asserting every rule."""
    from firmware_protocol import Button, KeepAlive, MessageType
    from tools.invariants import FUZZ_KEY, CheckedFirmware, command_frame, fuzz_config

    if not data:
        return
    ops = FirmwareOps
    paired = bool(data[0] & ops.PAIRED)
    rig = CheckedFirmware(fuzz_config(data[0] & ~ops.PAIRED), paired=paired)
    reader = _Reader(data, 1)
    held = bytearray()
    last_read: tuple[bytes, ...] = ()  # its pieces, as fed
    seq = counter = 0
    scale = budget = simulated_budget(data[0])

    def feed(read: tuple[bytes, ...]) -> None:
        for piece in read:
            rig.feed(piece)

    def signed_keepalive(challenge: int | None) -> bytes:
        nonlocal counter
        counter += 1
        frame = command_frame(seq, KeepAlive(challenge), key=FUZZ_KEY, counter=counter,
                              nonce=rig.signing_nonce(MessageType.KEEPALIVE))  # fmt: skip
        return frame.encode()

    def keepalive(challenge: int | None) -> bytes:
        return command_frame(seq, KeepAlive(challenge)).encode()

    def deliver(extra: bytes, split: int | None = None) -> None:
        nonlocal last_read
        read = bytes(held) + extra
        held.clear()
        if split is None or not 0 < split < len(read):
            last_read = (read,)
        else:
            last_read = (read[:split], read[split:])
        feed(last_read)

    while reader.more():
        op = reader.u8()
        kind = op & 7
        if kind <= 1:
            if op & ops.SEQ:
                seq = int.from_bytes(reader.take(2).ljust(2, b"\x00"), "little")
            else:
                seq = (seq + 1) & 0xFFFF
            version = reader.u8() if op & ops.VERSION else 1
            split = reader.u8() if op & ops.SPLIT else None
            msg_type, length = reader.u8(), reader.u8()
            payload = reader.take(length)
            counter += 1
            key = FUZZ_KEY if op & ops.SIGNED else None
            frame = command_frame(seq, msg_type, payload, version=version, key=key,
                                  counter=counter, nonce=rig.signing_nonce(msg_type))  # fmt: skip
            wire = frame.encode()
            if op & ops.HOLD:
                held.extend(wire)
            else:
                deliver(wire, split)
        elif kind == ops.RAW:
            deliver(reader.take(reader.u8()))
        elif kind == ops.ADVANCE:
            dt = min(scale * (reader.u8() / 255) ** 3, budget)
            budget -= dt
            # A live controller sends KEEPALIVE (with its last seq) in the silences.
            if not op & ops.ALIVE:
                rig.advance(dt)
            elif paired:
                rig.advance(dt, keepalive=signed_keepalive)
            else:
                rig.advance(dt, keepalive=keepalive)
        elif kind == ops.PRESS:
            rig.press(Button(reader.u8() % len(Button) + 1))
        elif kind == ops.DROP:
            rig.link_down()
        elif kind == ops.FAULT:
            _inject(rig, reader.u8())
        else:
            feed(last_read)
    if held:
        deliver(b"")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decoder": decoder_target,
    "firmware": firmware_target,
}
"""The fuzz targets by name: each takes one input and raises on a broken rule."""


# --- the seed corpus --------------------------------------------------------------


def _commands() -> list[Message | tuple[int, bytes]]:
    """Messages of every command type (valid, and a few values out of range)."""
    import firmware_protocol as fp
    from firmware_protocol.messages import COMMANDS

    two_legs = (450, 380, 450, 380, 450, 380, 450, 380)
    examples: list[Message | tuple[int, bytes]] = [
        fp.Hello("fuzz"),
        fp.Start(fp.Mode.WAVE, 2, 30),
        fp.Start(fp.Mode.PULSE, 3, 60),
        fp.Start(fp.Mode.CYCLE, 0, 20),
        fp.Start(fp.Mode.WAVE, 9, 0),
        fp.Renew(fp.Mode.PULSE, 1, 45),
        fp.SetMode(fp.Mode.PULSE),
        fp.SetMode(fp.Mode.CYCLE),
        fp.SetIntensity(3),
        fp.SetIntensity(0),
        fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 30, 50, 60, 40, two_legs),
        fp.SetCycle(fp.CycleOrder.SIMULTANEOUS, 10, 0, 10, 0, (1190,)),
        fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 1, 1, 1, 1, (2000,) * 8),
        fp.Pause(),
        fp.Resume(),
        fp.Stop(),
        fp.Vent(),
        fp.KeepAlive(),
        fp.GetStatus(),
        fp.ResetFault(),
    ]
    # Types added later (pairing, say) get a seed too: a 32-byte key and a name fit
    # PAIR; for another type they are just bytes to start from.
    known = {m.TYPE for m in examples if not isinstance(m, tuple)}
    examples += [(t, bytes(range(1, 33)) + b"\x04fuzz") for t in COMMANDS if t not in known]
    return examples


def _type_and_payload(item: Message | tuple[int, bytes]) -> tuple[int, bytes]:
    return item if isinstance(item, tuple) else (item.TYPE, item.encode_payload())


def _firmware_seeds() -> Iterator[bytes]:
    """Programs that open the link, run a session and send each command once.

    Between them, on the presets, sessions end every way that fits the simulated
    budget: stopped, vented, faulted, a flat battery, the remote, the link lost, the
    lease run out (COMPLETED) and the pause limit (preset 1's 5 s). No session cap
    fits in the budget (60 s at the least): tests/simulator/test_fuzz_firmware.py
    holds the device to that.
    """
    import firmware_protocol as fp
    from tools.invariants import PRESETS

    cycle = fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 20, 20, 20, 10, (400,) * 8)
    for preset in range(len(PRESETS)):
        for message in _commands():
            ops = FirmwareOps(preset).frame(fp.Hello("fuzz"), seq=1)
            ops.frame(fp.Start(fp.Mode.WAVE, 1, 60)).wait(0.25, alive=True)
            ops.frame(message).wait(0.8, alive=True).frame(fp.GetStatus()).frame(fp.Stop())
            yield ops.build()
        yield (
            FirmwareOps(preset).frame(fp.Hello("fuzz"), seq=1).frame(cycle)
            .frame(fp.Start(fp.Mode.CYCLE, 0, 60)).wait(4, alive=True).frame(fp.Pause())
            .wait(2, alive=True).frame(fp.Renew(fp.Mode.WAVE, 1, 30)).frame(fp.Resume())
            .wait(2, alive=True).frame(fp.Stop()).build()
        )  # fmt: skip
        yield (  # paused past the pause limit where it fits (preset 1): PAUSE_TIMEOUT
            FirmwareOps(preset).frame(fp.Hello("fuzz"), seq=1)
            .frame(fp.Start(fp.Mode.WAVE, 2, 60)).wait(1, alive=True).frame(fp.Pause())
            .wait(6, alive=True).frame(fp.Resume()).wait(1, alive=True).build()
        )  # fmt: skip
        yield (  # START and RENEW renew the lease, never the cap: the lease runs out
            FirmwareOps(preset).frame(fp.Hello("fuzz"), seq=1)
            .frame(fp.Start(fp.Mode.PULSE, 1, 4)).wait(2.5, alive=True)
            .frame(fp.Start(1, 1, 4)).wait(2.5, alive=True).frame(fp.Renew(2, 1, 3))
            .wait(4, alive=True).build()
        )  # fmt: skip
        yield (
            FirmwareOps(preset).press(fp.Button.POWER).wait(1.8).press(fp.Button.PLUS)
            .press(fp.Button.MODE).press(fp.Button.PAUSE).wait(0.8).press(fp.Button.PAUSE)
            .frame(fp.Hello("fuzz"), seq=1).frame(fp.Start(fp.Mode.PULSE, 2, 30)).drop()
            .wait(12).build()
        )  # fmt: skip
        yield (
            FirmwareOps(preset).frame(fp.Hello("fuzz"), seq=1)
            .frame(fp.Start(fp.Mode.WAVE, 3, 60)).wait(0.8, alive=True).fault(0)
            .fault(2 | 4).wait(6, alive=True).fault(1 | 4).wait(0.1, alive=True)
            .frame(fp.ResetFault()).fault(1).fault(2).fault(0).wait(8, alive=True)
            .frame(fp.ResetFault()).press(fp.Button.POWER).build()
        )  # fmt: skip
        yield (
            FirmwareOps(preset).frame(fp.Stop(), seq=9).frame(fp.Start(1, 1, 10))
            .frame(fp.Hello("fuzz"), seq=1, split=5).frame(fp.Start(1, 2, 60), hold=True)
            .frame(fp.Stop(), hold=True).frame(fp.SetIntensity(3), split=7).resend()
            .frame(fp.SetMode(2), seq=2).frame(fp.GetStatus(), version=2)
            .frame((0x0E, b"")).frame((0x80, b"\x01\x00")).frame(fp.Start(1, 1, 9), signed=True)
            .raw(b"garbage\x00").advance(255).build()
        )  # fmt: skip
        yield (  # an exhaust sticks shut just before the end: vented or latched (SPEC 10.11)
            FirmwareOps(preset).frame(fp.Hello("fuzz"), seq=1)
            .frame(fp.Start(fp.Mode.PULSE, 2, 60)).wait(3, alive=True).fault(3 | 4)
            .wait(0.5, alive=True).frame(fp.Stop()).wait(4, alive=True).wait(8, alive=True)
            .build()
        )  # fmt: skip
        yield from _paired_seeds(preset | FirmwareOps.PAIRED)


def _paired_seeds(device: int) -> Iterator[bytes]:
    """Programs for a paired device: an authenticated link, and strangers on it."""
    import firmware_protocol as fp
    from tools.invariants import FUZZ_KEY, FUZZ_KEY_ID, command_frame

    hello = fp.Hello("fuzz", FUZZ_KEY_ID)
    # Signed with the key but not under the link's nonce, and a counter far ahead:
    # a forgery, which must leave the key's counter where it was.
    forged = command_frame(9, fp.Start(fp.Mode.PULSE, 3, 60), key=FUZZ_KEY, counter=1 << 30)
    yield (  # the paired controller runs a session, a stranger's commands are refused
        FirmwareOps(device).frame(hello, seq=1, signed=True)
        .frame(fp.Start(fp.Mode.WAVE, 1, 60), signed=True).raw(forged.encode())
        .wait(1, alive=True)
        .frame(fp.SetIntensity(3)).frame(fp.SetIntensity(2), signed=True).resend()
        .frame(fp.Pause(), signed=True).frame(fp.Resume()).wait(0.5, alive=True)
        .frame(fp.Resume(), signed=True).frame(fp.Renew(fp.Mode.PULSE, 1, 30), signed=True)
        .wait(0.8, alive=True).frame(fp.GetStatus()).frame(fp.Stop()).resend()
        .frame(fp.Start(fp.Mode.PULSE, 2, 60)).frame(fp.Start(fp.Mode.PULSE, 2, 60), signed=True)
        .frame(fp.Vent(), signed=True).wait(3).build()
    )  # fmt: skip
    yield (  # a HELLO replayed after a drop is refused; a plain HELLO takes the link: the
        # session ends, and nothing unsigned starts
        FirmwareOps(device).frame(hello, seq=1, signed=True).drop().resend()
        .frame(hello, signed=True).frame(fp.Start(fp.Mode.WAVE, 2, 60), signed=True).wait(0.5)
        .frame(fp.Hello("stranger")).frame(fp.Start(fp.Mode.WAVE, 2, 60))
        .frame(fp.Hello("stranger", 2), signed=True).frame(fp.KeepAlive()).wait(0.5, alive=True)
        .frame(hello, signed=True).frame(fp.Start(fp.Mode.PULSE, 1, 20), signed=True)
        .wait(2, alive=True).build()
    )  # fmt: skip
    yield (  # silence ends it; a fault latches until a signed RESET_FAULT; then unpaired
        FirmwareOps(device).frame(hello, seq=1, signed=True)
        .frame(fp.Start(fp.Mode.WAVE, 3, 60), signed=True).wait(0.5).frame(fp.KeepAlive())
        .wait(12).frame(hello, signed=True).frame(fp.Start(fp.Mode.WAVE, 3, 60), signed=True)
        .fault(1 | 4).wait(1, alive=True).fault(1).frame(fp.ResetFault())
        .frame(fp.ResetFault(), signed=True).drop().frame(hello, signed=True, seq=40)
        .frame(fp.Unpair(), signed=True).frame(fp.Start(fp.Mode.WAVE, 1, 60), signed=True)
        .build()
    )  # fmt: skip
    yield (  # a stranger's STOP in the read of a signed START wins (SPEC 7.4), and so
        # does one with an old seq over a signed RESUME; the START's re-send stays refused
        FirmwareOps(device).frame(hello, seq=1, signed=True)
        .frame(fp.Start(fp.Mode.WAVE, 2, 60), signed=True, hold=True).frame(fp.Stop(), seq=0)
        .resend().wait(0.5, alive=True).frame(fp.Start(fp.Mode.WAVE, 1, 60), signed=True)
        .wait(1, alive=True).frame(fp.Pause(), signed=True).frame(fp.Resume(), signed=True,
                                                                  hold=True)
        .frame(fp.Vent(), seq=3).wait(3, alive=True).build()
    )  # fmt: skip


def _decoder_seeds() -> Iterator[bytes]:
    """The wire bytes of every message, one by one and together, amid garbage."""
    import firmware_protocol as fp
    from firmware_protocol import Frame
    from tools.invariants import FUZZ_KEY

    status = fp.Status(123456, fp.SessionState.RUNNING, 1, 2, fp.StatusFlag.PUMP_ON, 845, 55,
                       87, fp.Fault.NONE, fp.EndReason.NONE, 5, 10, (812, 0, 805, 3))  # fmt: skip
    device: list[Message | tuple[int, bytes]] = [
        fp.Ack(2), fp.Nak(5, fp.ErrorCode.OVER_PRESSURE_LIMIT), status,
        fp.ButtonPressed(fp.Button.PLUS), fp.FaultRaised(fp.Fault.OVERPRESSURE),
        fp.SessionEnded(fp.EndReason.STOPPED, 600),
        fp.SessionStarted(fp.StartSource.REMOTE, fp.Mode.WAVE, 1, 900),
    ]  # fmt: skip
    wires = []
    for seq, item in enumerate([*_commands(), *device], 1):
        msg_type, payload = _type_and_payload(item)
        frame = Frame(seq, msg_type, payload)
        wires.append(frame.encode())
        yield bytes([0]) + frame.encode()  # the stream as is, in one read
        yield bytes([0x80 | seq % 0x7F, 1, len(frame.to_bytes()) - 2]) + frame.to_bytes()[:-2]
        yield bytes([0, msg_type]) + payload
    yield bytes([0x11]) + b"garbage\x00" + b"".join(wires[:12])
    yield bytes([0x7F]) + b"\x01" * 300 + b"\x00" + b"".join(wires[12:])
    signed = Frame(14, 0x02, b"\x02\x01\x3c\x00").signed(FUZZ_KEY, 7)
    yield bytes([0x23]) + signed.encode()
    yield bytes([0x80, 0x81, 253]) + _longest_body()


def _longest_body() -> bytes:
    """A 253-byte frame body whose COBS encoding ends in a full group (for the 2nd spelling)."""
    from firmware_protocol import cobs
    from firmware_protocol.framing import crc16

    # Version 0 puts the only zero first; AUTH keeps the flags byte nonzero. The
    # CRC then decides whether the last 254 bytes are all nonzero.
    for k in range(256):
        body = bytes([0, 1, 5, 5, 0x0B]) + bytes((i + k) % 255 + 1 for i in range(248))
        if _second_spelling(cobs.encode(body + crc16(body).to_bytes(2, "little"))):
            return body
    raise AssertionError("no body gives a full last COBS group")


def _second_spelling(encoded: bytes) -> bool:
    """Whether ``encoded`` ends in a full 0xFF group and the 0x01 that may be left off."""
    return len(encoded) >= 256 and encoded[-256] == 0xFF and encoded.endswith(b"\x01")


def seed_inputs(target: str) -> dict[str, bytes]:
    """The seed corpus of ``target``: file name to contents."""
    seeds = _decoder_seeds() if target == "decoder" else _firmware_seeds()
    return {hashlib.sha1(seed).hexdigest(): seed for seed in seeds}


def write_seeds(target: str, folder: Path) -> int:
    """Write ``target``'s seed corpus into ``folder``; returns how many inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_inputs(target)
    for name, seed in seeds.items():
        (folder / f"seed-{name}").write_bytes(seed)
    return len(seeds)


# --- running ----------------------------------------------------------------------


def _fuzz(target: str, runs: int, workdir: Path, extra: Sequence[str]) -> int:
    """Fuzz ``target`` in this process with atheris; returns only if libFuzzer does."""
    try:
        import atheris
    except ImportError:
        print("fuzzing needs atheris: pip install 'atheris>=2.3'", file=sys.stderr)
        return 2
    already = [name for name in INSTRUMENTED if name in sys.modules]
    assert not already, f"{already} imported before atheris could instrument them"
    with atheris.instrument_imports(include=list(INSTRUMENTED), exclude=list(UNINSTRUMENTED)):
        import tools.invariants  # noqa: F401  (imports the code under test, instrumented)
    corpus, artifacts = workdir / "corpus", workdir / "artifacts"
    count = write_seeds(target, corpus)
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {target}: {count} seeds, corpus {corpus}, crashes to {artifacts}", flush=True)
    args = [
        sys.argv[0],
        f"-runs={runs}",
        f"-max_len={MAX_LEN[target]}",
        "-timeout=30",  # seconds for one input: a hang is a finding too
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        *extra,
        str(corpus),
    ]
    atheris.Setup(args, TARGETS[target])
    atheris.Fuzz()
    return 0


def _summary(log: str) -> str:
    """The last coverage line and the run count of a libFuzzer log."""
    lines = re.findall(r"^#\d+\s+\w+\s+cov: .*$", log, re.MULTILINE)
    done = re.findall(r"^Done \d+ runs in \d+ second\(s\)$", log, re.MULTILINE)
    crash = "CRASH: " if "ERROR: libFuzzer" in log or "Uncaught Python exception" in log else ""
    return crash + " | ".join([*(lines[-1:] or ["no coverage line"]), *done[-1:]])


def _fuzz_all(args: argparse.Namespace, workdir: Path) -> int:
    """Run every target in its own process, in parallel; log each to a file.

    Returns 0 if every one exited 0, else the worst exit code (128 + N for signal N).
    """
    procs = {}
    for target in TARGETS:
        log = workdir / f"fuzz-{target}.log"
        command = [sys.executable, "-m", "tools.fuzz", target, "--runs", str(args.runs),
                   "--workdir", str(workdir / target), "--", *args.libfuzzer]  # fmt: skip
        print(f"{target}: logging to {log}", flush=True)
        procs[target] = (subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT),
                         log, time.monotonic())  # fmt: skip
    worst = 0
    for target, (proc, log, began) in procs.items():
        code = proc.wait()
        # A child killed by a signal has a negative code: a failure too (128 + signal).
        worst = max(worst, code if code >= 0 else 128 - code)
        took = time.monotonic() - began
        print(f"{target}: exit {code} after {took:.0f} s: {_summary(log.read_text())}")
    return worst


def _reproduce(target: str, paths: Sequence[Path]) -> int:
    """Run ``target`` once on each input file, without atheris; a failure is re-raised."""
    for path in paths:
        print(f"{path}: ", end="", flush=True)
        TARGETS[target](path.read_bytes())
        print("ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options after -- go to libFuzzer as they are, e.g. -- -seed=7",
    )
    parser.add_argument("target", nargs="?", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs to try (per target)")
    parser.add_argument("--workdir", type=Path, help="corpus, crashes, logs (default: a temp dir)")
    parser.add_argument("--reproduce", type=Path, nargs="+", metavar="INPUT",
                        help="run the target on these inputs once, without atheris")  # fmt: skip
    parser.add_argument("--write-seeds", type=Path, metavar="FOLDER",
                        help="only write the target's seed corpus into FOLDER")  # fmt: skip
    # argparse would take libFuzzer's -flags for its own: split them off by hand.
    words = list(sys.argv[1:] if argv is None else argv)
    cut = words.index("--") if "--" in words else len(words)
    args = parser.parse_args(words[:cut])
    args.libfuzzer = words[cut + 1 :]
    if args.reproduce or args.write_seeds:
        if args.target == "all":
            parser.error("name the target")
        if args.write_seeds:
            print(f"{write_seeds(args.target, args.write_seeds)} seeds in {args.write_seeds}")
            return 0
        return _reproduce(args.target, args.reproduce)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="massager-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.target == "all":
        return _fuzz_all(args, workdir)
    return _fuzz(args.target, args.runs, workdir, args.libfuzzer)


if __name__ == "__main__":
    sys.exit(main())
