"""Bedtime schedules: when a program starts, and the daemon that starts it.

- `schedule`: the schedules in ``schedules.toml`` (`Schedule`, `ScheduleBook`),
  their runs and their clashes;
- `daemon`: starts each schedule's program when it is due, once, and never
  late (`Daemon`, the `DaemonEvent` it reports);
- `wallclock`: waiting for a moment on the wall clock, and noticing when it is
  set (`WallClock`, `SystemClock`).

The names below load on first use, so that listing schedules loads no device code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

_PUBLIC = {
    "Schedule": "schedule",
    "ScheduleBook": "schedule",
    "ScheduleError": "schedule",
    "BrokenSchedule": "schedule",
    "Daemon": "daemon",
    "DaemonEvent": "daemon",
    "WallClock": "wallclock",
    "SystemClock": "wallclock",
}

__all__ = [
    "BrokenSchedule",
    "Daemon",
    "DaemonEvent",
    "Schedule",
    "ScheduleBook",
    "ScheduleError",
    "SystemClock",
    "WallClock",
]

if TYPE_CHECKING:
    from .daemon import Daemon, DaemonEvent
    from .schedule import BrokenSchedule, Schedule, ScheduleBook, ScheduleError
    from .wallclock import SystemClock, WallClock

__getattr__ = lazy_names(__name__, {name: f".{module}" for name, module in _PUBLIC.items()})
