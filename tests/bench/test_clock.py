"""The bench's jumping clock: virtual time moves to each timer, and a stuck workload fails."""

from __future__ import annotations

import asyncio

import pytest

from bench import clock


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
