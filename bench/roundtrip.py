"""A command's round trip through Massager -> sim:// beside a bare encode/decode of its frames.

The two are sampled in turn (one bare encode/decode, one command, and again),
so both see the same machine, and each checks its work: the bare frames must
decode to the command and the ACK that were encoded, and each command must be
acknowledged (`Massager.set_intensity` raises otherwise) and be the simulated
device's intensity afterwards.
"""

from __future__ import annotations

import asyncio
import time

from firmware_protocol import Ack, Frame, FrameDecoder, SetIntensity, decode_message
from massager_ctl.device import Massager
from massager_ctl.transports.sim import SimTransport

from .rows import WARMUP, Row, WorkloadFailed, check_intensity, latency_rows


class Bare:
    """Encode a SET_INTENSITY frame, decode it, encode its ACK, decode that: no stack."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()

    def round_trip(self, i: int) -> float:
        """Seconds for the ``i``th encode -> decode of a command and its ACK, checked after.

        Raises:
            WorkloadFailed: what was decoded is not what was encoded.
        """
        start = time.perf_counter()
        command = SetIntensity(1 + i % 3)
        wire = Frame(i % 65536, command.TYPE, command.encode_payload()).encode()
        [frame] = self.decoder.feed(wire)
        got = decode_message(frame.msg_type, frame.payload)
        reply = Ack(frame.seq)
        [back] = self.decoder.feed(Frame(i % 65536, reply.TYPE, reply.encode_payload()).encode())
        answer = decode_message(back.msg_type, back.payload)
        took = time.perf_counter() - start
        if got != command or answer != reply:
            raise WorkloadFailed(f"the bare frames decoded to {got} and {answer}")
        return took


async def side_by_side(count: int) -> tuple[list[float], list[float]]:
    """(stack, bare) seconds, in turn: ``await massager.set_intensity(n)`` and a bare exchange.

    Raises:
        WorkloadFailed: a command was taken but the device's intensity is not what it set.
    """
    bare = Bare()
    stack_s: list[float] = []
    bare_s: list[float] = []
    async with Massager.connect("sim://bench?seed=1") as massager:
        transport = massager.transport
        if not isinstance(transport, SimTransport):
            raise WorkloadFailed(f"sim:// opened {transport!r}, not the simulator")
        firmware = transport.firmware
        for i in range(WARMUP + count):
            bare_s.append(bare.round_trip(i))
            level = 1 + i % 3  # every command changes the intensity, so a lost one shows
            start = time.perf_counter()
            await massager.set_intensity(level)
            stack_s.append(time.perf_counter() - start)
            check_intensity(firmware, level)
    return stack_s[WARMUP:], bare_s[WARMUP:]


def measure(count: int) -> list[Row]:
    """The p50 and p99 rows of ``count`` command round trips and bare exchanges, in turn."""
    measured, baseline = asyncio.run(side_by_side(count))
    return latency_rows("command round trip, Massager -> sim://", measured, baseline,
                        "bare encode -> decode of the same frames, in turn",
                        scale=1e6, unit="us")  # fmt: skip
