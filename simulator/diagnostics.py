"""How the firmware notices broken hardware, from what a real firmware can sense.

What it senses: each chamber's pressure reading, its own commands to the
valves and the pump, the pump motor's current (running or not), and the
battery level. What it knows: its hardware's specification (the sensor's
noise, the time constants of an exhaust valve and of an inlet's orifice, the
pump's stall pressure). It never sees which part is broken; it infers it, and
latches the `Fault` bit that names the likely part. The firmware then does what
it does for every fault (SPEC section 10.8): ends the session, vents with every
exhaust and the dump valve open, and refuses START until RESET_FAULT finds the
cause gone. A better name never costs a later latch: every rule below latches
when the simpler rule it refines would have, or sooner.

Theory of operation
-------------------
`Diagnostics.observe` is called with every sample, before the control loop sets
the valves, and judges the interval since the previous sample against the
commands that were in effect during it (`Diagnostics.record` notes them after
the loop has set them). If something else changed the valves in between (a
session started or ended), it starts watching afresh from there.

The rules, with the thresholds of this module's constants:

- SENSOR, stuck: a chamber reads the very same non-zero value `STUCK_SAMPLES`
  times in a row. A live sensor's noise never repeats a value; a sensor stuck
  at zero is found by the fill rule below instead (as a valve or the pump).
- SENSOR, jumped: a reading that moved as no air can move names the sensor
  whatever other rule the same sample would have set off: one that rose with no
  air coming (the pump not running), one that fell by `AIR_RISE_MMHG` or more
  in one sample while its chamber filled (a fill that stalls holds its air), and
  a leak window whose loss came mostly in its last sample (a leak loses air in
  proportion to pressure and time, over every sample). That is how a sensor
  sticking below the pressure it read looks in the one sample before the stuck
  rule can see it; the fault latches when it did before, under its own name.
  Ambiguous: a wrap that tears, or a hose that comes off, in that very sample
  looks the same then, and is named SENSOR. Either way the device vents; a
  SENSOR latch resets without the self-test, and the next session's fill or
  leak rule finds the torn wrap within seconds, under its own name.
- Exhaust verdict: in a session or out of one, `EXHAUST_CHECK_S` after a
  chamber's exhaust opened at more than `ZERO_MAX_MMHG`, with the pump off all
  that time, and not risen. If it still reads more than `ZERO_MAX_MMHG`, the
  shape of its fall says why (`Diagnostics._settled_as_offset`): an exhaust that
  works empties a chamber along its exponential course, so a sensor with an
  offset reads a fall that slows smoothly toward the offset (SENSOR); an exhaust
  that shuts on the way down stops the same fall at once (VALVE). When those two
  courses lie too close together in sensor noise to choose (it hardly fell, or
  fell nearly all the way), the older rule judges: more than half of the start
  left is VALVE, less is an exhaust seen to work. A fault latches no later than
  under that older rule alone.
- SENSOR, offset: in a session or out of one, a chamber whose exhaust has been open, with
  the pump off, for `ZERO_AFTER_S` still reads above `ZERO_MAX_MMHG` although its
  exhaust was seen to work. No air can be left; the sensor is wrong (a drift, an offset).
- VALVE, inlet stuck open: a chamber being emptied (inlet shut, exhaust open)
  rises `LEAK_IN_MMHG` above the lowest it read since while the pump runs for
  other chambers, and falls halfway back once the pump stops; `LEAK_IN_TIMES` such
  breaths in all. Only air through its own inlet can do that. (In pulse mode
  every inlet opens with the others, so it shows only in wave and cycle modes,
  and in the reset self-test.)
- PUMP or VALVE, no fill: a chamber whose inlet has been open, the pump
  commanded on, for `FILL_CHECK_S` rose less than `FILL_RISE_MMHG` in that time.
  If another chamber went on filling (`AIR_RISE_MMHG`) after this one stopped
  rising, the pump works and this chamber's inlet does not open: VALVE.
  Otherwise every filling chamber stalled together, the pump moves no air: PUMP.
  A chamber that fills alone (a top-up while the others hold or empty) has no
  other chamber to vouch for the pump, and from readings alone an inlet stuck
  shut and a dead pump then look the same. So the firmware asks: after
  `PROBE_AFTER_S` of filling in vain with no such evidence, it opens one more
  inlet for `PROBE_S` (`Diagnostics.probe`): of the emptiest chamber being
  emptied, else of the emptiest held, and only where the little air that takes
  (6 to 10 mmHg) keeps it below the highest target a program may set. The fill
  check keeps its time; the probe only gives it evidence. Still ambiguous, and
  named PUMP: a lone fill with no chamber low enough to take the probe (every
  other one held within about 10 mmHg of the highest target), which takes a
  program holding every chamber near 120 mmHg and a top-up during it.
- PUMP, will not stop: the pump draws current while commanded off for
  `RUNAWAY_S` in all (time with the pump commanded on does not count, time with
  it off and still restarts the count).
- LEAK: during a session, a chamber holding pressure (inlet, exhaust and dump
  shut, at `LEAK_FLOOR_MMHG` or more) loses it faster than a time constant of
  `LEAK_TAU_MIN_S` (ten times the normal leak), measured over `LEAK_WINDOW_S` of
  holding: the pump would run on and on to hold it. The pressure it lost is
  counted after taking off `LEAK_SIGMAS` times what sensor noise could explain
  (the noise of each stretch of holding's two end readings).
- BATTERY_EMPTY: on battery (not charging), the level reaches 0 %.

Between sessions the exhausts stay open, and a chamber must empty (SPEC 10.11):
the exhaust rule and the offset rule above watch it as in a session, and, as a
last word whatever the cause, a chamber that still reads above `ZERO_MAX_MMHG`
`VENTED_WITHIN_S` after it was told to empty, with no air moving since, latches
VALVE (SENSOR if its exhaust was seen to work, or the dump valve is open: no air
can be left then). The fault opens the dump valve, which empties a chamber
whatever its exhaust does. A stuck sensor, a runaway pump and the battery are
watched too.

Why the waits: one broken part alone harms no one for a few seconds (a pump
that will not stop pushes air nowhere while every inlet is shut, and an inlet
stuck open lets nothing in while the pump is off), and when two break together
the ceiling trip (`Firmware._control`) acts at once. So each rule confirms its
evidence rather than tripping on a moment of it, and the waits are longer than
the trip takes for a pump stuck on behind a stuck inlet, which therefore still
latches OVERPRESSURE as before.

Reset: `Diagnostics.cause_gone` says whether RESET_FAULT may clear the latch.
At rest the firmware can see a sensor still stuck, a chamber that still reads
pressure after the dump valve has been open `DUMPED_S`, and an empty battery.
A pump, valve or leak fault can only be seen with air moving, so for those the
firmware runs a short self-test (`self_test`): a burst of the pump with every
inlet shut (nothing may rise), then, chamber by chamber, half a second of
filling (it must rise), two seconds of holding (it must keep its air) and half
a second of venting (it must fall). The test pressures stay far below any
massage level. The simulator runs it on a copy of the plant and answers at
once; a real device would take those seconds before answering.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from enum import Enum

from firmware_protocol import Fault, SessionState

from .config import DeviceConfig
from .physics import Plant

STUCK_SAMPLES = 10
"""Identical non-zero readings in a row that make a sensor stuck (0.5 s while the pump runs)."""
FILL_CHECK_S = 2.0
"""How long an open inlet with the pump on may go without its chamber rising."""
FILL_RISE_MMHG = 5.0
"""The least rise over `FILL_CHECK_S` of a filling chamber (a normal fill rises 15 mmHg a
second or more, even with all eight chambers sharing the pump)."""
PROBE_AFTER_S = 1.0
"""How long a chamber may fill without rising, with nothing else showing the pump at work,
before the firmware opens another chamber's inlet to see whether the pump delivers."""
PROBE_S = 0.15
"""How long that other inlet stays open: about 6 to 10 mmHg into it (noise: 1.5)."""
STALL_MARGIN_S = 0.1
"""After a chamber stalled, another must fill from this much later on for the pump to be fine
(what it rose before the stall is not evidence)."""
AIR_RISE_MMHG = 3.0
"""How much that other chamber must rise: twice what the sensor noise can fake (0.3 mmHg
noise is at most 0.73 either way), more for a noisier sensor (`Diagnostics.air_rise_mmhg`)."""
LEAK_IN_MMHG = 10.0
"""Rise of a chamber being emptied, above its lowest reading since, that only its inlet explains."""
LEAK_IN_TIMES = 2
"""How many times a chamber being emptied must fill with the pump and empty without it.

Falling back again is what tells this from a pump stuck on behind an inlet stuck open
and an exhaust stuck shut: that chamber only rises, and the ceiling trip takes it."""
EXHAUST_CHECK_S = 2.0
"""When an opened exhaust must have brought its chamber below half (it takes 0.6 s)."""
EXHAUST_FALL = 0.5
"""The share of its pressure a chamber may keep `EXHAUST_CHECK_S` after its exhaust opened."""
ZERO_MAX_MMHG = 10.0
"""The most an emptied chamber may read (it holds below 1 mmHg after `ZERO_AFTER_S`)."""
ZERO_AFTER_S = 4.0
"""Seconds of emptying, pump off, after which a chamber reads the sensor's zero (plus noise)."""
VENTED_WITHIN_S = 6.0
"""With no session, how long a chamber told to empty may read above `ZERO_MAX_MMHG`, with
no air moving, before a fault latches (SPEC 10.11 allows 10 s; a healthy one needs 3)."""
DUMPED_S = 2.0
"""After this long with the dump valve open every chamber is empty (time constant 0.2 s)."""
RUNAWAY_S = 5.0
"""Seconds of pump current while commanded off that make a pump that will not stop."""
LEAK_FLOOR_MMHG = 20.0
"""Below this the noise is too large a share of the pressure to judge a leak by."""
LEAK_WINDOW_S = 3.0
"""Seconds of holding a leak is judged over."""
LEAK_TAU_MIN_S = 30.0
"""A chamber holding its air for less than this time constant leaks (normal: 300 s)."""
LEAK_SIGMAS = 5.0
"""How many standard deviations of sensor noise the lost pressure must clear."""
STEADY_MMHG = 2.0
"""Within this of where it started a reading has not risen (noise and a slow drift)."""
SHAPE_SIGMAS = 8.0
"""How far apart, in sensor noise, the two courses an emptying chamber may have followed must
lie for its readings to choose between them (see `Diagnostics._settled_as_offset`)."""

TEST_BURST_S = 0.5
TEST_FILL_S = 0.5
TEST_FILL_MMHG = 8.0
"""A healthy chamber rises about 30 mmHg in the self-test's half second of filling."""
TEST_HOLD_S = 2.0
TEST_HOLD_LOSS = 0.1
"""The share of its air a chamber may lose in the self-test's hold (healthy: under 1 %)."""
TEST_VENT_S = 0.5
TEST_VENT_LEFT = 0.75
"""The share of its air a chamber may keep after half a second of venting (healthy: 53 %)."""
TEST_NOISE_MMHG = 3.0
"""The most a chamber may rise in the self-test's burst with every inlet shut (noise: 1.5)."""


# The rules run on every sample; plain ints keep IntFlag arithmetic out of that loop.
_SENSOR, _PUMP, _VALVE, _LEAK, _BATTERY_EMPTY = (
    int(f) for f in (Fault.SENSOR, Fault.PUMP, Fault.VALVE, Fault.LEAK, Fault.BATTERY_EMPTY)
)


class _Proof(Enum):
    """Whether an opened exhaust has been seen to work, in this emptying of the chamber."""

    PENDING = "pending"
    WORKS = "works"
    UNKNOWN = "unknown"  # the pump ran meanwhile: no verdict this time


@dataclass(slots=True)
class _Chamber:
    """What is being watched in one chamber."""

    same: int = 0
    """Identical non-zero readings in a row, minus one."""
    fill_times: list[float] = field(default_factory=list)
    fill_readings: list[float] = field(default_factory=list)
    """Every sample since its inlet opened (the last `FILL_CHECK_S` and a little more)."""
    open_t: float = 0.0
    vent_t: float = 0.0
    vent_p: float = 0.0
    vent_min: float = 0.0
    vent_times: list[float] = field(default_factory=list)
    vent_readings: list[float] = field(default_factory=list)
    """Every sample since its exhaust opened, until the exhaust's verdict (`EXHAUST_CHECK_S`)."""
    proof: _Proof = _Proof.UNKNOWN
    pumped: bool = False
    quiet_t: float = 0.0
    probed: bool = False
    """The pump was probed for this fill (`Diagnostics.probe`): once is enough."""
    breathing: bool = False
    """Risen with the pump while being emptied; waiting to fall back (halfway at least)."""
    peak: float = 0.0
    breaths: int = 0
    holding: bool = False
    """In a stretch of holding (inlet, exhaust and dump shut) since the last sample."""
    stretches: int = 0
    lost: float = 0.0
    """mmHg lost while holding, in this window."""
    pressure_s: float = 0.0
    """mmHg times seconds held, in this window: what a normal leak would lose, times its rate."""
    held_s: float = 0.0

    def stalled_at(self) -> float:
        """When, since its inlet opened, it came within half `FILL_RISE_MMHG` of its highest."""
        readings = self.fill_readings
        top = max(readings) - FILL_RISE_MMHG / 2
        return next(t for t, r in zip(self.fill_times, readings, strict=True) if r >= top)

    def reading_at(self, t: float) -> float | None:
        """The reading of the last sample at or before ``t`` while filling, if any."""
        at = bisect_right(self.fill_times, t + 1e-9)
        return self.fill_readings[at - 1] if at else None

    def filled(self, t: float, reading: float, *, fresh: bool) -> None:
        """Note a sample at ``t`` with the inlet open (``fresh``: it has just opened)."""
        times, readings = self.fill_times, self.fill_readings
        if fresh:
            times.clear()
            readings.clear()
            self.open_t = t
            self.probed = False
        elif times and times[-1] >= t:
            return  # noted already, when the interval that ended at it was judged
        times.append(t)
        readings.append(reading)
        if len(times) > 100:  # keep what the fill check looks back on, and a little more
            old = bisect_right(times, t - FILL_CHECK_S - 1.0)
            del times[:old], readings[:old]


_Commands = tuple[list[bool], list[bool], bool, bool]
"""Inlets, exhausts, pump and dump valve as commanded (copies)."""


class Diagnostics:
    """The firmware's fault detection for one device (see the module's docstring)."""

    def __init__(self, config: DeviceConfig, plant: Plant) -> None:
        self.config = config
        self.plant = plant
        self._chambers = [_Chamber() for _ in range(config.chamber_count)]
        self._commands: _Commands | None = None
        self._readings: list[float] = []
        self._t = 0.0
        self._runaway_s = 0.0
        self._dump_t: float | None = None
        self._probing: int | None = None
        self._probe_until = 0.0
        self.probes = 0
        """How many times the pump was probed (`probe`): never, with healthy hardware."""
        # Two readings of an unchanging pressure differ by at most twice the noise's bound
        # (triangular noise: sqrt(6) standard deviations), whatever the sensor.
        span = 2 * config.sensor_noise_mmhg * math.sqrt(6.0)
        self.air_rise_mmhg = max(AIR_RISE_MMHG, span + 1.5)
        """A rise that noise cannot make: proof that air came."""

    def forget(self) -> None:
        """Start watching afresh (a fault has latched: the valves all change)."""
        self._chambers = [_Chamber() for _ in self._chambers]
        self._commands = None
        self._runaway_s = 0.0
        self._probing = None

    def observe(self, t: float, readings: list[float], state: SessionState) -> Fault:
        """Judge the interval up to the sample ``readings`` at ``t``; the faults it shows."""
        found = 0
        chambers = self._chambers
        last = self._readings
        if last:
            for chamber, reading, before in zip(chambers, readings, last, strict=True):
                if reading == before and reading > 0.0:
                    chamber.same += 1
                    if chamber.same >= STUCK_SAMPLES - 1:
                        found |= _SENSOR
                else:
                    chamber.same = 0
        plant = self.plant
        if self.config.battery and not plant.charging and plant.battery_pct <= 0.0:
            found |= _BATTERY_EMPTY
        if state == SessionState.FAULT:
            found = 0  # latched already; watch only what a reset must know
        commands = self._commands
        dt = t - self._t
        if commands is not None and commands != self._now():
            # The valves changed between samples (a session began or ended): what was
            # measured since says nothing certain; watch afresh from this sample on.
            commands = self._commands = None
            self._probing = None
        if state == SessionState.FAULT or commands is None or dt <= 0.0:
            for chamber in chambers:
                chamber.holding = False
            return Fault(found) if found else Fault.NONE
        inlets, exhausts, pump, dump = commands
        running = state == SessionState.RUNNING
        in_session = running or state == SessionState.PAUSED
        current = plant.pump_running  # the motor's current
        if not pump:
            self._runaway_s = self._runaway_s + dt if current else 0.0
            if self._runaway_s >= RUNAWAY_S:
                found |= _PUMP
        air = pump or current
        jump = self.air_rise_mmhg
        not_filling: list[tuple[_Chamber, bool]] = []
        for i, reading in enumerate(readings):
            chamber = chambers[i]
            holding = chamber.holding
            chamber.holding = False  # unless this interval goes on holding, below
            if chamber.same:
                continue  # a sensor that may be stuck says nothing about the air
            change = reading - last[i]
            if inlets[i]:
                if pump and running:
                    # The sample that ends a fill is the fill's evidence too: note it
                    # before judging (`_air_elsewhere` reads it), even if the inlet shuts now.
                    chamber.filled(t, reading, fresh=False)
                    if self._stalled(chamber, t, reading):
                        # A fill that stalls holds its air; one that fell in a sample saw
                        # its sensor jump (a sensor sticking below the pressure).
                        not_filling.append((chamber, change < -jump))
            elif exhausts[i]:
                bits = self._watch_emptying(chamber, t, reading, pump, air, dump, in_session)
                if bits and not air and change > jump:
                    bits = _SENSOR  # no air came, yet it rose: the sensor jumped
                found |= bits
            elif running and not dump:
                chamber.holding = holding
                found |= self._watch_holding(chamber, dt, last[i], reading)
        for chamber, jumped in not_filling:
            if jumped:
                found |= _SENSOR
            else:
                found |= _VALVE if self._air_elsewhere(chamber) else _PUMP
        return Fault(found) if found else Fault.NONE

    def probe(self, t: float, readings: list[float]) -> int | None:
        """A chamber whose inlet the control loop should also open now, to test the pump.

        Called during a session, once the loop has set the valves for the sample
        ``readings`` at ``t``. A chamber that has been filling for `PROBE_AFTER_S`
        without rising, while no other chamber has shown since that the pump
        delivers, fails its fill check within a second, and alone it cannot say
        whether its inlet or the pump is at fault. So another chamber's inlet opens
        for `PROBE_S`: the emptiest chamber being emptied, else the emptiest one
        held, and only where the little air it takes stays below the highest target
        a program may set. If it rises, the pump delivers (VALVE); if not, PUMP.
        The fill check keeps its time: the probe only gives it evidence. (The probed
        chamber's own watch starts afresh after the probe, so a second broken part in
        that very chamber may be judged a little later than without it.)
        """
        probing = self._probing
        if probing is not None:
            if t < self._probe_until - 1e-9:
                return probing
            self._probing = None
        commands = self._commands
        if commands is None:
            return None
        inlets = self.plant.inlets
        stalled = [
            chamber
            for i, chamber in enumerate(self._chambers)
            if inlets[i] and commands[0][i] and self._fills_in_vain(chamber, t, readings[i])
        ]
        if not stalled:
            return None
        for chamber in stalled:
            chamber.probed = True
        target = self._probe_target(readings)
        if target is not None:
            self._probing, self._probe_until = target, t + PROBE_S
            self.probes += 1
        return target

    def _fills_in_vain(self, chamber: _Chamber, t: float, reading: float) -> bool:
        if chamber.probed or chamber.same or t - chamber.open_t < PROBE_AFTER_S - 1e-9:
            return False
        before = chamber.reading_at(t - PROBE_AFTER_S)
        if before is None or reading - before >= FILL_RISE_MMHG:
            return False
        return not self._air_elsewhere(chamber)

    def _probe_target(self, readings: list[float]) -> int | None:
        cfg = self.config
        plant = self.plant
        # The most a chamber can gain in the probe: the pump's stall pressure through one inlet.
        share = 1.0 - math.exp(-PROBE_S / cfg.inlet_tau_s)
        best: tuple[bool, float] | None = None
        target = None
        for j, reading in enumerate(readings):
            if plant.inlets[j] or self._chambers[j].same:
                continue
            if reading + (cfg.pump_stall_mmhg - reading) * share > cfg.max_target_mmhg:
                continue
            key = (not plant.exhausts[j], reading)  # one being emptied first, then the emptiest
            if best is None or key < best:
                best, target = key, j
        return target

    def record(self, t: float, readings: list[float]) -> None:
        """Note the commands the control loop has just set, and the sample they follow."""
        old = self._commands
        new = self._now()
        inlets, exhausts, _, dump = new
        for i, chamber in enumerate(self._chambers):
            reading = readings[i]
            was_filling = old is not None and old[0][i]
            was_emptying = old is not None and not old[0][i] and old[1][i]
            if inlets[i]:
                chamber.filled(t, reading, fresh=not was_filling)
            elif exhausts[i] and not was_emptying:
                chamber.vent_t = chamber.quiet_t = t
                chamber.vent_p = chamber.vent_min = reading
                chamber.vent_times = [t]
                chamber.vent_readings = [reading]
                chamber.proof = _Proof.PENDING
                chamber.pumped = False
                chamber.breathing = False
                chamber.peak = 0.0
        if not dump:
            self._dump_t = None
        elif self._dump_t is None:
            self._dump_t = t
        self._commands = new
        self._readings = list(readings)
        self._t = t

    def cause_gone(self, latched: Fault, t: float, readings: list[float]) -> bool:
        """Whether what caused ``latched`` is gone, judged at ``t`` from ``readings``.

        The firmware's own check that chambers are vented and the pump is not
        running away comes first; this adds what the rules above can tell.
        """
        plant = self.plant
        if self.config.battery and not plant.charging and plant.battery_pct <= 0.0:
            return False
        last = self._readings
        if last and any(r > 0.0 and r == last[i] for i, r in enumerate(readings)):
            return False  # a sensor still stuck
        dumped = self._dump_t is not None and t - self._dump_t >= DUMPED_S
        if dumped and max(readings) > ZERO_MAX_MMHG:
            return False  # a sensor that reads air where there can be none
        if latched & (Fault.PUMP | Fault.VALVE | Fault.LEAK):
            return self_test(plant)
        return True

    # --- the rules --------------------------------------------------------------------

    def _now(self) -> _Commands:
        plant = self.plant
        return (list(plant.inlets), list(plant.exhausts), plant.pump, plant.dump)

    def _stalled(self, chamber: _Chamber, t: float, reading: float) -> bool:
        """Whether a chamber filling since `FILL_CHECK_S` ago or longer rose too little in it."""
        if t - chamber.open_t < FILL_CHECK_S - 1e-9:
            return False
        before = chamber.reading_at(t - FILL_CHECK_S)
        return before is not None and reading - before < FILL_RISE_MMHG

    def _air_elsewhere(self, stalled: _Chamber) -> bool:
        """Whether another chamber went on filling after ``stalled`` stopped rising.

        Then the pump delivers, and the stalled chamber's inlet does not open. A
        pump that stops makes every filling chamber stall together.
        """
        since = stalled.stalled_at() + STALL_MARGIN_S
        for chamber in self._chambers:
            if chamber is stalled:
                continue
            times, readings = chamber.fill_times, chamber.fill_readings
            first = bisect_left(times, since)
            if len(times) - first >= 2 and readings[-1] - readings[first] >= self.air_rise_mmhg:
                return True
        return False

    def _watch_emptying(
        self,
        chamber: _Chamber,
        t: float,
        reading: float,
        pump: bool,
        air: bool,
        dump: bool,
        in_session: bool,
    ) -> int:
        found = 0
        chamber.vent_min = min(chamber.vent_min, reading)
        if pump and reading - chamber.vent_min >= LEAK_IN_MMHG:
            chamber.breathing = True
            chamber.peak = max(chamber.peak, reading)
        elif chamber.breathing and not air and reading <= (chamber.peak + chamber.vent_min) / 2:
            chamber.breathing = False
            chamber.peak = 0.0
            chamber.breaths += 1
            if chamber.breaths >= LEAK_IN_TIMES:
                found |= _VALVE
        if air:
            chamber.pumped = True
            chamber.quiet_t = t
        if (
            not in_session
            and t - chamber.quiet_t >= VENTED_WITHIN_S - 1e-9
            and reading > ZERO_MAX_MMHG
        ):
            # No session, told to empty, no air moving, and still not vented: whatever
            # the cause, a leg is left squeezed (SPEC 10.11). With the dump valve open no
            # air can be left, so the sensor is wrong; else the exhaust, unless it was
            # seen to work (the rule below names the sensor then).
            found |= _SENSOR if dump or chamber.proof == _Proof.WORKS else _VALVE
        if dump:
            return found  # the dump valve empties it whatever its exhaust does
        # In a session and out of it: a chamber that does not empty when told to is a
        # leg left squeezed (SPEC 10.11), whether a session ended a moment ago or not.
        if chamber.proof == _Proof.PENDING:
            chamber.vent_times.append(t)
            chamber.vent_readings.append(reading)
            if t - chamber.vent_t >= EXHAUST_CHECK_S - 1e-9:
                found |= self._judge_exhaust(chamber, reading)
        if (
            chamber.proof == _Proof.WORKS
            and t - chamber.quiet_t >= ZERO_AFTER_S - 1e-9
            and reading > ZERO_MAX_MMHG
        ):
            found |= _SENSOR
        return found

    def _judge_exhaust(self, chamber: _Chamber, reading: float) -> int:
        """The verdict on an exhaust opened `EXHAUST_CHECK_S` ago, with the pump off since.

        The rule of old latches VALVE when the chamber kept more than half its reading;
        the shape of its fall now names what it can, and latches no later than that.
        """
        start = chamber.vent_p
        if chamber.pumped or reading > start + STEADY_MMHG:
            chamber.proof = _Proof.UNKNOWN
            return 0
        if start <= ZERO_MAX_MMHG:
            chamber.proof = _Proof.WORKS  # nothing to empty
            return 0
        kept = reading > EXHAUST_FALL * start
        offset = None if reading <= ZERO_MAX_MMHG else self._settled_as_offset(chamber)
        if offset is None:
            # Emptied, or either course explains the readings (it fell hardly at all, or
            # all the way): judged by how far it fell.
            if kept:
                return _VALVE
            chamber.proof = _Proof.WORKS
            return 0
        if not offset:
            return _VALVE  # it fell as the exhaust lets air out, then stopped: it shut
        chamber.proof = _Proof.WORKS
        # It settled as an exhaust empties a chamber, but above zero: the sensor reads an
        # offset. Said now where the old rule blamed the exhaust now; else the offset
        # rule says it once the chamber has had time to empty.
        return _SENSOR if kept else 0

    def _settled_as_offset(self, chamber: _Chamber) -> bool | None:
        """Whether an emptying chamber's readings settled as a sensor offset would, or not.

        Two courses end where the readings end. A working exhaust empties a chamber
        exponentially (its time constant is the valve's), so a sensor with an offset
        reads a fall that slows smoothly toward the offset. An exhaust that shuts on
        the way down makes the same exponential fall stop at once, flat from then on.
        The readings in between lie nearer one course or the other: True for the
        smooth one (the sensor), False for the abrupt one (the valve); None when the
        two courses lie too close together, in sensor noise, to tell apart.
        """
        cfg = self.config
        times, readings = chamber.vent_times, chamber.vent_readings
        rate = 1.0 / cfg.exhaust_tau_s + 1.0 / cfg.leak_tau_s
        t0, start = times[0], readings[0]
        end = readings[-1]
        left = math.exp(-rate * (times[-1] - t0))  # the share of its air an exhaust leaves
        offset = (end - start * left) / (1.0 - left)
        projected = spread = 0.0
        for t, r in zip(times[1:-1], readings[1:-1], strict=True):
            decay = math.exp(-rate * (t - t0))
            smooth = offset + (start - offset) * decay
            abrupt = max(start * decay, end)
            apart = smooth - abrupt
            projected += (r - abrupt) * apart
            spread += apart * apart
        if math.sqrt(spread) < SHAPE_SIGMAS * cfg.sensor_noise_mmhg or spread == 0.0:
            return None
        return projected / spread > 0.5

    def _watch_holding(self, chamber: _Chamber, dt: float, before: float, reading: float) -> int:
        if before < LEAK_FLOOR_MMHG:
            chamber.holding = False
            return 0
        if not chamber.holding:
            chamber.holding = True
            chamber.stretches += 1
        chamber.lost += before - reading
        chamber.pressure_s += (before + reading) / 2 * dt
        chamber.held_s += dt
        if chamber.held_s < LEAK_WINDOW_S:
            return 0
        # Each stretch's loss is the difference of two readings: noise of sqrt(2) sigma.
        noise = LEAK_SIGMAS * math.sqrt(2.0 * chamber.stretches) * self.config.sensor_noise_mmhg
        leaking = chamber.lost - noise > chamber.pressure_s / LEAK_TAU_MIN_S
        drop = before - reading
        # A leak loses air in proportion to the pressure and the time: over every sample
        # of the window. A loss mostly in its last sample is a reading that jumped.
        jumped = drop > self.air_rise_mmhg and drop > chamber.lost - drop
        chamber.lost = chamber.pressure_s = chamber.held_s = 0.0
        chamber.stretches = 1  # the stretch goes on into the next window
        if not leaking:
            return 0
        return _SENSOR if jumped else _LEAK


def self_test(plant: Plant) -> bool:
    """Whether the pump, every valve and every chamber pass the reset self-test.

    Run on a copy of ``plant`` (see the module's docstring); the plant itself is
    left as it is.
    """
    twin = plant.twin()
    count = len(twin.pressures)
    twin.dump = False
    twin.inlets = [False] * count
    twin.exhausts = [False] * count
    twin.pump = True
    before = [twin.read(i) for i in range(count)]
    twin.advance(TEST_BURST_S)
    if any(twin.read(i) - before[i] > TEST_NOISE_MMHG for i in range(count)):
        return False  # air got in through an inlet commanded shut
    for i in range(count):
        twin.exhausts = [j != i for j in range(count)]
        twin.inlets = [j == i for j in range(count)]
        twin.pump = True
        start = twin.read(i)
        twin.advance(TEST_FILL_S)
        filled = twin.read(i)
        if filled - start < TEST_FILL_MMHG:
            return False  # the pump moves no air, or this inlet will not open
        twin.inlets[i] = False
        twin.pump = False
        twin.advance(TEST_HOLD_S)
        held = twin.read(i)
        if held < filled * (1.0 - TEST_HOLD_LOSS):
            return False  # it leaks
        twin.exhausts[i] = True
        twin.advance(TEST_VENT_S)
        if twin.read(i) > held * TEST_VENT_LEFT:
            return False  # its exhaust will not open
        twin.advance(TEST_HOLD_S)
    return True
