"""Waiting for a moment on the wall clock without polling, and noticing when the clock is set.

The daemon waits hours for the next bedtime run. A sleep on the event loop's
clock (monotonic) would go wrong twice: it stops during suspend, so the start
comes late by however long the computer slept, and it cannot see the wall
clock being set (NTP stepping a wrong clock at boot, a person fixing it). On
Linux `SystemClock` arms a ``timerfd`` on the real-time clock for the absolute
moment, with ``TFD_TIMER_CANCEL_ON_SET``: the kernel wakes us at that wall
time, after a resume if it passed during suspend, and at once if the clock is
set, so the caller re-reads the clock and decides again. Nothing is polled.

Elsewhere (no timerfd) it sleeps on the loop's clock for at most `FALLBACK_STEP_S`
at a time, so a set clock or a resume is noticed within a minute.

A wait returns early whenever the clock was set; callers re-check the time and
wait again. A wall clock never wakes a suspended computer: the run is then
late, and the daemon's grace window decides.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import math
import os
import sys
from datetime import UTC, datetime
from typing import Protocol

FALLBACK_STEP_S = 60.0

_CLOCK_REALTIME = 0
_TFD_TIMER_ABSTIME = 1
_TFD_TIMER_CANCEL_ON_SET = 2


class WallClock(Protocol):
    """What the daemon needs of a clock: the time, and a wait for a moment."""

    def now(self) -> datetime:
        """The current wall-clock time, aware."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Return at ``moment``, or earlier if the clock was set; the caller re-checks."""
        ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "timerfd_create"):
        return None
    # time_t is a C long on 64-bit Linux and on 32-bit Linux built without 64-bit time.
    libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.timerfd_settime.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p,
    ]  # fmt: skip
    return libc


class SystemClock:
    """This computer's wall clock; waits with a Linux timerfd when there is one."""

    def __init__(self) -> None:
        self._libc = _libc()
        self.timers_open = 0
        """Timer file descriptors open now (one per wait in progress)."""

    @property
    def polls(self) -> bool:
        """Whether waits re-check every `FALLBACK_STEP_S` (no timerfd on this system)."""
        return self._libc is None

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        """Return at ``moment`` by the wall clock, or earlier if the clock was set."""
        if self._libc is None:
            remaining = (moment - self.now()).total_seconds()
            await asyncio.sleep(max(0.0, min(remaining, FALLBACK_STEP_S)))
            return
        await self._timerfd_wait(self._libc, moment.timestamp())

    async def _timerfd_wait(self, libc: ctypes.CDLL, timestamp: float) -> None:
        fd = libc.timerfd_create(_CLOCK_REALTIME, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"timerfd_create: {os.strerror(code)}")
        self.timers_open += 1
        try:
            seconds = math.floor(timestamp)
            nanoseconds = min(int((timestamp - seconds) * 1e9), 999_999_999)
            spec = _Itimerspec(_Timespec(0, 0), _Timespec(max(seconds, 0), nanoseconds))
            flags = _TFD_TIMER_ABSTIME | _TFD_TIMER_CANCEL_ON_SET
            if libc.timerfd_settime(fd, flags, ctypes.byref(spec), None) < 0:
                code = ctypes.get_errno()
                raise OSError(code, f"timerfd_settime: {os.strerror(code)}")
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()

            def fire() -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(fd, fire)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            try:
                os.read(fd, 8)  # the expiry count; ECANCELED if the clock was set instead
            except OSError as error:
                if error.errno not in (errno.ECANCELED, errno.EAGAIN):
                    raise
        finally:
            os.close(fd)
            self.timers_open -= 1
