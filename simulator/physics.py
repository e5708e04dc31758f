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

Faults that tests inject live here, below the firmware, where hardware would be.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .config import DeviceConfig


@dataclass
class InjectedFaults:
    """Hardware faults a test can switch on; the firmware must cope with them."""

    pump_stuck_on: bool = False
    inlet_stuck_open: set[int] = field(default_factory=set)
    exhaust_stuck_shut: set[int] = field(default_factory=set)
    sensor_offset_mmhg: float = 0.0


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
        self.max_pressure_seen = 0.0
        self.relief_events = 0
        self.pump_seconds = 0.0
        self._leak = 1.0 / config.leak_tau_s
        self._vent = 1.0 / config.dump_tau_s
        self._exhaust = 1.0 / config.exhaust_tau_s
        # u1 + u2 - 1 has variance 1/6; scale it to the configured standard deviation.
        self._noise_scale = config.sensor_noise_mmhg * math.sqrt(6.0)

    @property
    def pump_running(self) -> bool:
        """Whether the pump motor is turning (the firmware's wish, or a stuck relay)."""
        return self.pump or self.faults.pump_stuck_on

    def open_inlets(self) -> list[bool]:
        """Inlets that are physically open (commanded, or stuck)."""
        stuck = self.faults.inlet_stuck_open
        return [on or i in stuck for i, on in enumerate(self.inlets)]

    def advance(self, dt: float) -> None:
        """Let ``dt`` seconds pass with the valves and pump as they are."""
        if dt <= 0:
            return
        cfg = self.config
        inlets = self.open_inlets() if self.faults.inlet_stuck_open else self.inlets
        pumping = self.pump_running
        filling = sum(inlets) if pumping else 0
        fill = 1.0 / max(cfg.fill_tau_s * filling, cfg.inlet_tau_s) if filling else 0.0
        base = self._leak + (self._vent if self.dump else 0.0)
        exhaust = self._exhaust
        stall = cfg.pump_stall_mmhg
        relief = cfg.ceiling_mmhg
        pressures, exhausts = self.pressures, self.exhausts
        shut = self.faults.exhaust_stuck_shut
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
        self._battery(dt, pumping)

    def _battery(self, dt: float, pumping: bool) -> None:
        if not self.config.battery:
            return
        cfg = self.config
        if self.charging:
            rate = cfg.charge_pct_per_h
        else:
            rate = -(cfg.drain_pumping_pct_per_h if pumping else cfg.drain_idle_pct_per_h)
        self.battery_pct = min(100.0, max(0.0, self.battery_pct + rate * dt / 3600.0))

    def read(self, chamber: int) -> float:
        """One sensor sample of ``chamber`` in mmHg."""
        value = self.pressures[chamber] + self.faults.sensor_offset_mmhg
        if self._noise_scale:
            draw = self.rng.random
            value += (draw() + draw() - 1.0) * self._noise_scale
        return value if value > 0.0 else 0.0
