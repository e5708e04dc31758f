"""A whole 45-minute program in virtual time: the full stack beside the simulator alone.

The stack: ProgramRunner -> Massager -> sim:// transport -> simulated device, on an
event loop whose clock jumps to the next timer whenever nothing is ready
(`bench.clock`: fair here, as nothing outside the process takes part), and again
on looptime, the clock the tests use, which polls once a turn. The
middle: the same steps sent by a bare protocol Connection straight into the
firmware on a hand-stepped clock, with the real link's keepalives and status
reports. The baseline: the firmware alone running a 45-minute session, no link.

Each workload checks its work: the program (or the firmware's own session)
must complete and the pump must have run, or it raises `WorkloadFailed`. The
three are timed in turn, round after round, and each row gives the median of
the rounds and how far the per-round ratios strayed (`Row.spread`).
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
    ControllerGone,
    EndReason,
    Event,
    Hello,
    PeerSilent,
    Replied,
    RequestFailed,
    Role,
    SessionState,
    Signer,
    Start,
    Stop,
)
from massager_ctl.device import Massager
from massager_ctl.programs.profiles import find_profile
from massager_ctl.programs.runner import Outcome, run_program
from massager_ctl.transports.sim import SimTransport
from simulator import DeviceConfig, Firmware

from . import clock
from .rows import Row, WorkloadFailed, p50, spread

PROFILE = "evening-45"


def pumped(firmware: Firmware, what: str, seconds: float) -> None:
    """The firmware's pump must have run for a part of ``seconds``: a session really ran.

    Raises:
        WorkloadFailed: it ran for less than 5 % of them.
    """
    if firmware.plant.pump_seconds <= 0.05 * seconds:
        raise WorkloadFailed(
            f"{what}: the pump ran {firmware.plant.pump_seconds:.1f} s of {seconds:.0f} s"
        )


def full_stack() -> None:
    """`run_program` on a `Massager` over sim://, on the jumping clock of `bench.clock`.

    Raises:
        WorkloadFailed: the program did not complete, or the pump did not run.
        clock.StuckWorkload: it waited for something that never came.
    """
    clock.run(_full_stack(), limit_s=_limit_s())


def full_stack_on_looptime() -> None:
    """`full_stack` on looptime, the virtual clock the tests run on.

    Raises:
        WorkloadFailed: as `full_stack`.
        looptime.LoopTimeoutError: it waited for something that never came.
    """
    loop = looptime.new_event_loop(noop_cycles=1, end=_limit_s())
    try:
        loop.run_until_complete(_full_stack())
    finally:
        loop.close()


def _limit_s() -> float:
    """Virtual seconds the full stack may take: twice the program.

    Far more than connecting and venting take; a simulated massager always has a
    timer, so a stuck run would otherwise run virtual time on for ever.
    """
    return 2 * sum(step.seconds for step in find_profile(PROFILE).steps)


async def _full_stack() -> None:
    profile = find_profile(PROFILE)
    async with Massager.connect("sim://bench?seed=1") as massager:
        result = await run_program(massager, profile)
        if result.outcome != Outcome.COMPLETED:
            raise WorkloadFailed(f"the full stack's program ended {result.outcome}: {result}")
        transport = massager.transport
        if not isinstance(transport, SimTransport):
            raise WorkloadFailed(f"sim:// opened {transport!r}, not the simulator")
        pumped(transport.firmware, "the full stack", sum(s.seconds for s in profile.steps))


def firmware_and_bare_link() -> None:
    """The same steps sent by a bare protocol Connection straight into the firmware.

    Paired, as the full stack is: the firmware takes a START only signed, and an
    unpaired link here ran no session at all (every START refused), which measured
    nothing. Every step's START must be taken, its session must still run when the
    step ends, and the pump must run the program.

    Raises:
        WorkloadFailed: the link is not authenticated, a request was refused or
            failed, a session ended before its step, or the pump did not run.
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
            failed = isinstance(event, ControllerGone | PeerSilent | RequestFailed)
            if failed or (
                isinstance(event, Replied) and not isinstance(event.reply, Ack | Capabilities)
            ):
                refused.append(event)

    controller.send(Hello("bench"), now)
    exchange()
    if controller.link_key_id != signer.key_id:
        raise WorkloadFailed("the bare link is not authenticated")
    modes = {"wave": 1, "pulse": 2}
    for step in profile.steps:
        if step.mode is None or step.intensity is None:
            raise WorkloadFailed(f"{PROFILE} has a step without a mode and intensity: {step}")
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
        if firmware.state != SessionState.RUNNING:
            # A session that ended early (its lease, the watchdog) leaves the rest of
            # the step idle and cheap, and the pump check alone lets most of it go.
            raise WorkloadFailed(
                f"the bare link's session ended {firmware.last_end.name} before its step "
                f"did ({step.mode} {step.intensity}, {step.seconds:g} s)"
            )
    controller.send(Stop(), now)
    exchange()
    if refused:
        raise WorkloadFailed(f"the bare link's program did not run: {refused[:3]}")
    pumped(firmware, "the bare link", sum(step.seconds for step in profile.steps))


def firmware_alone() -> None:
    """A 45-minute session on the simulated firmware with no link at all.

    Raises:
        WorkloadFailed: the session ended before the 45 minutes or did not complete
            then, or the pump did not run.
    """
    firmware = Firmware(DeviceConfig(seed=1, remote_session_s=45 * 60), now=0.0)
    firmware.press(Button.POWER, 0.0)
    firmware.advance(45 * 60 - 1.0)
    if firmware.state != SessionState.RUNNING:
        # Completed early, it would pass the checks below with part of the work done.
        raise WorkloadFailed(
            f"the firmware's own session ended {firmware.last_end.name} before the 45 minutes"
        )
    firmware.advance(45 * 60 + 1.0)
    if firmware.last_end != EndReason.COMPLETED:
        raise WorkloadFailed(f"the firmware's own session ended {firmware.last_end.name}")
    pumped(firmware, "the firmware alone", 45 * 60)


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
    """The program rows: ``repeat`` rounds, each timing the three workloads one after another.

    Round ``i`` of each runs beside round ``i`` of the others, so a busy moment
    lands on all three; the rows give the median of the rounds, and the spread
    of the per-round ratios.
    """
    workloads = (full_stack, full_stack_on_looptime, firmware_and_bare_link, firmware_alone)
    rounds: dict[Callable[[], None], list[float]] = {run: [] for run in workloads}
    for _ in range(repeat):
        for run, took in rounds.items():
            took.append(wall(run))

    def row(
        name: str,
        run: Callable[[], None],
        base: Callable[[], None] = firmware_alone,
        base_name: str = "the simulated firmware alone, no link, in turn",
    ) -> Row:
        ratios = [t / b for t, b in zip(rounds[run], rounds[base], strict=True)]
        return Row(f"{name} (median of {repeat})", p50(rounds[run]), "s", p50(rounds[base]),
                   base_name, spread(ratios))  # fmt: skip

    mib = 1024 * 1024
    return [
        row("45-minute program, full stack, jumping virtual clock", full_stack),
        row("45-minute program, full stack, on looptime (the tests' clock)",
            full_stack_on_looptime),
        row("45-minute program, firmware + bare protocol link, paired", firmware_and_bare_link),
        row("45-minute program, full stack (jumping clock) against the bare link", full_stack,
            firmware_and_bare_link, "firmware + bare protocol link, paired, in turn"),
        Row("45-minute program in virtual time, peak traced memory",
            peak_memory(full_stack) / mib, "MiB",
            peak_memory(firmware_alone) / mib, "the simulated firmware alone, no link"),
    ]  # fmt: skip
