"""An event loop whose clock runs faster than the wall clock, for demos at ``--speed``.

Every ``asyncio.sleep``, timeout and ``call_at`` on this loop runs ``speed`` times
faster, on both sides of an in-process link (controller and simulated device),
so their timing rules stay consistent: a 1-second watchdog and a 250 ms
keepalive shrink together.

The clock never jumps past the earliest scheduled timer. At 60x, 20 ms spent
drawing the screen would otherwise be 1.2 s of loop time, and a watchdog would
fire before the keepalive queued behind it could run. Instead, when the process
falls behind, simulated time slows down: timers fire in order, one loop turn at
a time, exactly as they would in real time with no delays. Only the simulator
may run this way; a real device keeps real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from datetime import UTC, datetime, timedelta
from typing import Any


class _ScaledSelector(selectors.BaseSelector):
    """Waits ``timeout/speed`` real seconds, then lets the loop move its clock."""

    def __init__(self, inner: selectors.BaseSelector, loop: ScaledTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(None if timeout is None else timeout / self._loop.speed)
        self._loop._advance_clock()
        return ready

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class ScaledTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time` advances up to ``speed`` times faster than real time."""

    _scheduled: list[asyncio.TimerHandle]  # BaseEventLoop's timer heap (not declared there)

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._real_origin = time.monotonic()
        self._now = self._real_origin
        super().__init__(selector=_ScaledSelector(selectors.DefaultSelector(), self))
        if not speed > 0:
            self.close()
            raise ValueError("speed must be positive")

    def time(self) -> float:
        """Loop time; it moves once per loop turn, never past the next due timer.

        With no timer pending it catches up with ``speed`` times the real time.
        """
        return self._now

    def _advance_clock(self) -> None:
        target = self._real_origin + (time.monotonic() - self._real_origin) * self.speed
        if self._scheduled:
            target = min(target, self._scheduled[0].when())
        if target > self._now:
            self._now = target


def scaled_runner(speed: float | None) -> asyncio.Runner:
    """An `asyncio.Runner` on a `ScaledTimeLoop`, or on a plain loop at speed 1 or None."""
    factory = (lambda: ScaledTimeLoop(speed)) if speed and speed != 1.0 else None
    return asyncio.Runner(loop_factory=factory)


class VirtualWallClock:
    """A wall clock that runs on the event loop's clock and can be set, for tests.

    Under looptime the loop's clock is virtual, so a year of evenings passes in
    seconds; `set` steps the wall clock as NTP or a person would, and wakes
    every wait like the kernel's ``TFD_TIMER_CANCEL_ON_SET`` does. It has the
    shape of `massager_ctl.schedules.wallclock.WallClock`.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the start must be aware")
        self._start = start.astimezone(UTC)
        self._loop_start: float | None = None
        self._offset_s = 0.0
        self._was_set: asyncio.Event | None = None

    def _loop_seconds(self) -> float:
        now = asyncio.get_running_loop().time()
        if self._loop_start is None:
            self._loop_start = now
        return now - self._loop_start

    def now(self) -> datetime:
        """The current wall-clock time, in UTC."""
        return self._start + timedelta(seconds=self._loop_seconds() + self._offset_s)

    def set(self, moment: datetime) -> None:
        """Set the clock to ``moment`` (forward or back) and wake every wait."""
        self._offset_s += (moment - self.now()).total_seconds()
        if self._was_set is not None:
            self._was_set.set()
        self._was_set = None

    async def sleep_until(self, moment: datetime) -> None:
        """Return at ``moment``, or as soon as the clock is set."""
        if self._was_set is None:
            self._was_set = asyncio.Event()
        was_set = self._was_set
        delay = (moment - self.now()).total_seconds()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(was_set.wait(), delay)
