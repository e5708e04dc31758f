"""An event loop whose clock jumps to the next timer without asking the kernel.

For bench rows that run ``sim://`` alone: the controller and the simulated
massager share this one loop, no socket or other process can make anything
ready, so waiting is only ever waiting for the next timer. looptime (which the
tests use) still polls the selector once per loop turn and moves its clock in
whole microseconds; this loop does neither, so a 45-minute program costs only
the work of both sides. A loop turn with nothing ready and no timer left would
wait forever: that is a stuck workload, and it fails at once. So does one whose
clock would pass its limit: a simulated massager always has a next deadline, so
a workload stuck beside one would otherwise run virtual time on for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
from typing import Any

DAY_S = 24 * 3600.0
"""The virtual time a workload may take unless it says otherwise."""
WIND_DOWN_S = 60.0
"""Virtual seconds the tasks left may take to finish once cancelled."""


class _NoWaitSelector(selectors.BaseSelector):
    """Holds the loop's registrations and never polls them: nothing outside can be ready."""

    def __init__(self, loop: JumpingClockLoop) -> None:
        self._map: dict[Any, selectors.SelectorKey] = {}
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, _fd(fileobj), events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise StuckWorkload("nothing is ready and no timer is set: the workload is stuck")
        self._loop._jump()
        return []

    def get_map(self) -> Any:
        return self._map


def _fd(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


class StuckWorkload(RuntimeError):
    """A loop turn found nothing ready and nothing scheduled."""


class JumpingClockLoop(asyncio.SelectorEventLoop):
    """A loop on virtual time that moves straight to the earliest scheduled timer."""

    _scheduled: list[asyncio.TimerHandle]  # BaseEventLoop's timer heap (not declared there)

    def __init__(self, limit_s: float = DAY_S) -> None:
        self._now = 0.0
        self.limit_s = limit_s
        """Virtual seconds the loop may reach: a timer beyond them means a stuck workload."""
        super().__init__(selector=_NoWaitSelector(self))

    def time(self) -> float:
        """Virtual seconds; they move only when the loop has nothing ready."""
        return self._now

    def _jump(self) -> None:
        if self._ready:  # type: ignore[attr-defined]  # callbacks due now: no time passes
            return
        if self._scheduled:
            when = self._scheduled[0].when()
            if when > self.limit_s:
                raise StuckWorkload(
                    f"the next timer is at {when:g} s, past its limit of {self.limit_s:g} s: "
                    "the workload is stuck"
                )
            self._now = max(self._now, when)


def run(main: Any, *, limit_s: float = DAY_S) -> Any:
    """Run the coroutine ``main`` to its end on a fresh `JumpingClockLoop`.

    Whatever way it ends, the tasks left are then cancelled and run to their end,
    so that their cleanups run on this loop before it closes.

    Raises:
        StuckWorkload: nothing was ready and no timer was set, or the next timer
            was past ``limit_s`` virtual seconds.
    """
    loop = JumpingClockLoop(limit_s)
    try:
        result = loop.run_until_complete(main)
    except BaseException:
        # Stuck or interrupted: its cleanups (a Massager vents, a link closes) must run
        # now on a live loop, not when the pending task is collected after `close`.
        with contextlib.suppress(StuckWorkload):
            _wind_down(loop)
        raise
    else:
        _wind_down(loop)
        return result
    finally:
        loop.close()


def _wind_down(loop: JumpingClockLoop) -> None:
    """Cancel every task left and let each finish, as `asyncio.run` does."""
    left = asyncio.all_tasks(loop)
    if left:
        for task in left:
            task.cancel()
        loop.limit_s = loop.time() + WIND_DOWN_S
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
