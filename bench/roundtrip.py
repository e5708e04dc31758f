"""A command's round trip through Massager -> sim:// beside a bare encode/decode of its frames."""

from __future__ import annotations

import asyncio
import time

from firmware_protocol import Ack, Frame, FrameDecoder, SetIntensity, decode_message
from massager_ctl.device import Massager

from .rows import WARMUP, Row, p50, p99


def bare(count: int) -> list[float]:
    """Encode a SET_INTENSITY frame, decode it, encode its ACK, decode that: no stack."""
    samples = []
    decoder = FrameDecoder()
    for i in range(WARMUP + count):
        start = time.perf_counter()
        command = SetIntensity(1 + i % 3)
        wire = Frame(i % 65536, command.TYPE, command.encode_payload()).encode()
        [frame] = decoder.feed(wire)
        decode_message(frame.msg_type, frame.payload)
        reply = Ack(frame.seq)
        [back] = decoder.feed(Frame(i % 65536, reply.TYPE, reply.encode_payload()).encode())
        decode_message(back.msg_type, back.payload)
        samples.append(time.perf_counter() - start)
    return samples[WARMUP:]


async def stack(count: int) -> list[float]:
    """``await massager.set_intensity(n)`` against the in-process simulator."""
    samples = []
    async with Massager.connect("sim://bench?seed=1") as massager:
        for i in range(WARMUP + count):
            start = time.perf_counter()
            await massager.set_intensity(1 + i % 3)
            samples.append(time.perf_counter() - start)
    return samples[WARMUP:]


def measure(count: int) -> list[Row]:
    baseline = bare(count)
    measured = asyncio.run(stack(count))
    us = 1e6
    return [
        Row("command round trip, Massager -> sim:// (p50)", p50(measured) * us, "us",
            p50(baseline) * us, "bare encode -> decode of the same frames"),
        Row("command round trip, Massager -> sim:// (p99)", p99(measured) * us, "us",
            p99(baseline) * us, "bare encode -> decode of the same frames"),
    ]  # fmt: skip
