"""The bench's jumping clock: virtual time moves to each timer, and a stuck workload fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import looptime
import pytest

from bench import clock, program


def test_time_jumps_to_each_timer_in_order() -> None:
    seen: list[tuple[str, float]] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(2.5, lambda: seen.append(("later", loop.time())))
        loop.call_later(0.25, lambda: seen.append(("sooner", loop.time())))
        await asyncio.sleep(45 * 60)
        return loop.time()

    assert clock.run(main()) == 45 * 60
    assert seen == [("sooner", 0.25), ("later", 2.5)]


def test_a_workload_waiting_for_nothing_fails_at_once() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever set it

    with pytest.raises(clock.StuckWorkload, match="stuck"):
        clock.run(main())


def test_a_workload_waiting_for_nothing_beside_a_device_fails_within_its_limit() -> None:
    # A simulated massager always has a next deadline: a stuck workload beside one
    # never met a turn without a timer, and ran virtual time on for ever.
    async def main() -> None:
        loop = asyncio.get_running_loop()

        def tick() -> None:  # a control step a minute, for ten virtual days
            if loop.time() < 10 * 24 * 3600:
                loop.call_later(60, tick)

        tick()
        await loop.create_future()  # nobody will ever set it

    with pytest.raises(clock.StuckWorkload, match="past its limit of 3600 s"):
        clock.run(main(), limit_s=3600)


def test_a_stuck_workload_is_wound_down_on_a_live_loop() -> None:
    # Left pending on a closed loop, a workload's cleanup ran when it was collected:
    # a Massager's `connect` then failed with "Event loop is closed" and never vented.
    cleaned: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_future()  # nobody will ever set it
        finally:
            await asyncio.sleep(1)  # a cleanup needs the loop: a vent, sent and answered
            cleaned.append(loop.time())

    with pytest.raises(clock.StuckWorkload):
        clock.run(main())
    assert cleaned == [1.0]


def test_an_interrupted_workload_is_wound_down_on_a_live_loop() -> None:
    cleaned: list[float] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(5, interrupt)
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(1)
            cleaned.append(loop.time())

    with pytest.raises(KeyboardInterrupt):
        clock.run(main())
    assert cleaned == [6.0]


@pytest.mark.parametrize(
    ("run", "error"),
    [
        (program.full_stack, clock.StuckWorkload),
        (program.full_stack_on_looptime, looptime.LoopTimeoutError),
    ],
)
def test_the_full_stack_program_fails_when_it_waits_for_nothing(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[], None], error: type[Exception]
) -> None:
    async def waits(massager: object, profile: object) -> None:
        await asyncio.get_running_loop().create_future()

    monkeypatch.setattr(program, "run_program", waits)
    with pytest.raises(error):
        run()
