"""The air: pump, valves, chambers, leak, a relief valve, a noisy sensor, the battery.

Between two calls of `Plant.advance` the pump and valves do not change, so each
chamber follows ``dp/dt = a - b*p``, which has an exact solution; the plant jumps
straight to the end of any interval, however long, with no integration error.
That is what lets a 45-minute session run in a fraction of a second.

- Pump: delivers toward its stall pressure through every open inlet; its flow is
  shared, so filling eight chambers takes eight times as long as one. Each
  inlet valve's orifice limits the flow into its chamber, so a chamber left
  filling alone does not suddenly rise several times faster.
- Exhaust valve per chamber: open to the air. Dump valve: a large vent for
  emergencies. Leak: every chamber loses a little all the time.
- Relief valve: mechanical, set at the ceiling; no chamber pressure goes above it,
  whatever the firmware or a fault does.
- Sensor: true pressure plus noise of the configured standard deviation (the sum
  of two uniform draws: triangular, and several times cheaper than Gaussian),
  never below zero.

Faults that tests inject live here, below the firmware, where hardware would be
(`InjectedFaults`, which `simulator.faults` keeps with the named ones). A fault can be
scheduled for a moment of the plant's own clock (`Plant.schedule`): `advance`
stops at that moment, breaks the part, and goes on, so the physics stays exact
around it.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import math
import random
from collections.abc import Callable

from .config import DeviceConfig
from .faults import InjectedFaults, schedule_all


class Plant:
    """The physical side of one massager. Pressures are true values in mmHg."""

    def __init__(self, config: DeviceConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        n = config.chamber_count
        self.pressures = [0.0] * n
        self.inlets = [False] * n
        self.exhausts = [True] * n  # normally open: an unpowered device holds no pressure
        self.pump = False
        self.dump = False
        self.battery_pct = config.battery_pct
        self.charging = config.charging
        self.faults = InjectedFaults()
        self.clock = 0.0
        """Seconds this plant has lived (the device's uptime); `schedule` counts on it."""
        self.max_pressure_seen = 0.0
        self.relief_events = 0
        self.pump_seconds = 0.0
        self._leak = 1.0 / config.leak_tau_s
        self._vent = 1.0 / config.dump_tau_s
        self._exhaust = 1.0 / config.exhaust_tau_s
        # u1 + u2 - 1 has variance 1/6; scale it to the configured standard deviation.
        self._noise_scale = config.sensor_noise_mmhg * math.sqrt(6.0)
        self._scheduled: list[tuple[float, int, Callable[[Plant], None]]] = []
        self._order = itertools.count()
        if config.faults:
            schedule_all(self, config.faults)

    @property
    def pump_running(self) -> bool:
        """Whether the pump motor is turning (the firmware's wish, or a stuck relay).

        This is what the firmware senses through the motor's current; a dead pump
        (`InjectedFaults.pump_dead`) turns and draws current, but moves no air.
        """
        return self.pump or self.faults.pump_stuck_on

    @property
    def pending(self) -> bool:
        """Whether a scheduled fault has yet to strike."""
        return bool(self._scheduled)

    def schedule(self, at_s: float, change: Callable[[Plant], None]) -> None:
        """Call ``change(plant)`` when the plant's clock reaches ``at_s`` (at once if it has)."""
        if at_s <= self.clock:
            change(self)
            return
        heapq.heappush(self._scheduled, (at_s, next(self._order), change))

    def open_inlets(self) -> list[bool]:
        """Inlets that are physically open (commanded, or stuck)."""
        faults = self.faults
        stuck, shut = faults.inlet_stuck_open, faults.inlet_stuck_shut
        return [(on or i in stuck) and i not in shut for i, on in enumerate(self.inlets)]

    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds pass with the valves and pump as they are."""
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= self.clock + dt:
            at, _, change = heapq.heappop(scheduled)
            step = at - self.clock
            if step > 0:
                self._evolve(step)
                dt -= step
            change(self)
        self._evolve(dt)

    def _evolve(self, dt: float) -> None:
        if dt <= 0:
            return
        cfg = self.config
        faults = self.faults
        odd_inlets = faults.inlet_stuck_open or faults.inlet_stuck_shut
        inlets = self.open_inlets() if odd_inlets else self.inlets
        pumping = self.pump_running
        filling = sum(inlets) if pumping and not faults.pump_dead else 0
        fill = 1.0 / max(cfg.fill_tau_s * filling, cfg.inlet_tau_s) if filling else 0.0
        base = self._leak + (self._vent if self.dump else 0.0)
        leaks = faults.leak_multiplier
        exhaust = self._exhaust
        stall = cfg.pump_stall_mmhg
        relief = cfg.ceiling_mmhg
        pressures, exhausts = self.pressures, self.exhausts
        shut = faults.exhaust_stuck_shut
        exp = math.exp
        highest = self.max_pressure_seen
        for i, p in enumerate(pressures):
            if filling and inlets[i]:
                a = stall * fill
                b = base + fill
            elif p == 0.0:
                continue  # empty and nothing flowing in: stays empty
            else:
                a = 0.0
                b = base
            if leaks and i in leaks:
                b += self._leak * (leaks[i] - 1.0)
            if exhausts[i] and i not in shut:
                b += exhaust
            target = a / b
            p = target + (p - target) * exp(-b * dt)
            if p > relief:
                p = relief
                self.relief_events += 1
            elif p < 1e-6:
                p = 0.0
            pressures[i] = p
            if p > highest:
                highest = p
        self.max_pressure_seen = highest
        if pumping:
            self.pump_seconds += dt
        for i, rate in faults.sensor_drift_mmhg_per_s.items():
            faults.sensor_drifted_mmhg[i] = faults.sensor_drifted_mmhg.get(i, 0.0) + rate * dt
        self._battery(dt, pumping)
        self.clock += dt

    def _battery(self, dt: float, pumping: bool) -> None:
        if not self.config.battery:
            return
        cfg = self.config
        if self.charging:
            rate = cfg.charge_pct_per_h
        else:
            rate = -(cfg.drain_pumping_pct_per_h if pumping else cfg.drain_idle_pct_per_h)
            rate *= self.faults.battery_drain_multiplier
        self.battery_pct = min(100.0, max(0.0, self.battery_pct + rate * dt / 3600.0))

    def read(self, chamber: int) -> float:
        """One sensor sample of ``chamber`` in mmHg."""
        faults = self.faults
        if faults.sensor_stuck and chamber in faults.sensor_stuck:
            return faults.sensor_stuck[chamber]
        value = self.pressures[chamber] + faults.sensor_offset_mmhg
        if faults.sensor_drifted_mmhg:
            value += faults.sensor_drifted_mmhg.get(chamber, 0.0)
        if self._noise_scale:
            draw = self.rng.random
            value += (draw() + draw() - 1.0) * self._noise_scale
        return value if value > 0.0 else 0.0

    def read_all(self) -> list[float]:
        """One sensor sample of every chamber, in chamber order, in mmHg.

        The same samples, from the same noise draws in the same order, as `read`
        of each chamber in turn; one call because the control loop and every
        STATUS read them all.
        """
        faults = self.faults
        stuck = faults.sensor_stuck
        drifted = faults.sensor_drifted_mmhg
        offset = faults.sensor_offset_mmhg
        scale = self._noise_scale
        draw = self.rng.random
        readings = []
        for chamber, pressure in enumerate(self.pressures):
            if stuck and chamber in stuck:
                readings.append(stuck[chamber])
                continue
            value = pressure + offset
            if drifted:
                value += drifted.get(chamber, 0.0)
            if scale:
                value += (draw() + draw() - 1.0) * scale
            readings.append(value if value > 0.0 else 0.0)
        return readings

    def twin(self) -> Plant:
        """A copy to try things on (a self-test) without touching this plant.

        The copy has the same pressures, valves and broken parts, its own noise
        and no scheduled faults; nothing done to it reaches this plant.
        """
        twin = copy.copy(self)
        twin.rng = random.Random(self.rng.random())
        twin.pressures = list(self.pressures)
        twin.inlets = list(self.inlets)
        twin.exhausts = list(self.exhausts)
        twin.faults = copy.deepcopy(self.faults)
        twin._scheduled = []
        return twin
