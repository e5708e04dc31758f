"""A whole 45-minute program in virtual time: the full stack beside the simulator alone.

The stack: ProgramRunner -> Massager -> sim:// transport -> simulated device, on an
event loop whose clock jumps ahead whenever nothing is ready (looptime). The
middle: the same steps sent by a bare protocol Connection straight into the
firmware on a hand-stepped clock, with the real link's keepalives and status
reports. The baseline: the firmware alone running a 45-minute session, no link.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from collections.abc import Callable

import looptime

from firmware_protocol import (
    Ack,
    Button,
    Capabilities,
    Connection,
    EndReason,
    Event,
    Hello,
    LinkLost,
    PeerSilent,
    Replied,
    RequestFailed,
    Role,
    Signer,
    Start,
    Stop,
)
from massager_ctl.device import Massager
from massager_ctl.profiles import find_profile
from massager_ctl.programs import run_program
from simulator import DeviceConfig, Firmware

from .rows import Row

PROFILE = "evening-45"


def full_stack() -> None:
    async def main() -> None:
        async with Massager.connect("sim://bench?seed=1") as massager:
            result = await run_program(massager, find_profile(PROFILE))
            assert result.outcome == "completed", result

    loop = looptime.new_event_loop(noop_cycles=1)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def firmware_and_bare_link() -> None:
    """The same steps sent by a bare protocol Connection straight into the firmware.

    Paired, as the full stack is: the firmware takes a START only signed, and an
    unpaired link here ran no session at all (every START refused), which measured
    nothing. Every step's START must be taken and the pump must run the program.
    """
    profile = find_profile(PROFILE)
    firmware = Firmware(DeviceConfig(seed=1), now=0.0)
    key = bytes(range(32))  # a fixed key: the bench keeps no secret
    counters = itertools.count(1)
    signer = Signer(firmware.memory.pairings.add("bench", key), key, lambda: next(counters))
    controller = Connection(Role.CONTROLLER, signer=signer)
    now = 0.0
    refused: list[Event] = []

    def exchange() -> None:
        firmware.receive_data(controller.data_to_send(), now)
        controller.receive_data(firmware.data_to_send(), now)
        for event in controller.events():
            # A refusal, a timeout or a lost link: the program did not run as sent.
            failed = isinstance(event, LinkLost | PeerSilent | RequestFailed)
            if failed or (
                isinstance(event, Replied) and not isinstance(event.reply, Ack | Capabilities)
            ):
                refused.append(event)

    controller.send(Hello("bench"), now)
    exchange()
    assert controller.link_key_id == signer.key_id, "the bare link is not authenticated"
    modes = {"wave": 1, "pulse": 2}
    for step in profile.steps:
        assert step.mode is not None
        assert step.intensity is not None
        controller.send(Start(modes[step.mode], step.intensity, round(step.seconds) + 5), now)
        exchange()
        end = now + step.seconds
        while now < end:  # keepalives, challenges and status reports as the real link has them
            # The next moment either side has work: the firmware's challenges must be
            # answered as they come, as the full stack answers them.
            due = [t for t in (controller.get_timer(), firmware.next_deadline()) if t is not None]
            now = max(now, min([end, *due]))
            firmware.advance(now)
            controller.handle_timer(now)
            exchange()
    controller.send(Stop(), now)
    exchange()
    assert not refused, f"the bare link's program did not run: {refused[:3]}"
    program_s = sum(step.seconds for step in profile.steps)
    assert firmware.plant.pump_seconds > 0.05 * program_s, "the pump never ran"


def firmware_alone() -> None:
    """A 45-minute session on the simulated firmware with no link at all."""
    firmware = Firmware(DeviceConfig(seed=1, remote_session_s=45 * 60), now=0.0)
    firmware.press(Button.POWER, 0.0)
    firmware.advance(45 * 60 + 1.0)
    assert firmware.last_end == EndReason.COMPLETED


def wall(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def peak_memory(run: Callable[[], None]) -> float:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(repeat: int) -> list[Row]:
    stack = min(wall(full_stack) for _ in range(repeat))
    link = min(wall(firmware_and_bare_link) for _ in range(repeat))
    alone = min(wall(firmware_alone) for _ in range(repeat))
    mib = 1024 * 1024
    return [
        Row("45-minute program in virtual time, full stack", stack, "s",
            alone, "the simulated firmware alone, no link"),
        Row("45-minute program, firmware + bare protocol link (paired)", link, "s",
            alone, "the simulated firmware alone, no link"),
        Row("45-minute program in virtual time, peak traced memory",
            peak_memory(full_stack) / mib, "MiB",
            peak_memory(firmware_alone) / mib, "the simulated firmware alone, no link"),
    ]  # fmt: skip
