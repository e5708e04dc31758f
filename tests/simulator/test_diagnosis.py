"""Each broken part is named as itself, whatever the moment it breaks and the sensor noise.

`test_faults` shows that every fault of `simulator.faults.CATALOGUE` is found; here the
firmware must also name it: the bit it latches is the catalogue's, for seeds 0 to 99.

A program runs in virtual time, renewed step by step as massager-ctl renews it: steps of
wave and pulse at each level, then a graded and a simultaneous cycle. For seed N the
fault strikes 10 + 3.1 N device seconds after switch-on, so the seeds sweep it across
every step and most moments of a pattern, each with its own noise. Every fault meets the
same device: a copy of each seed's device, made just before the strike (its noise goes on
as the original's would). The firmware and the physics run directly, with a controller
that answers only what the link needs; nothing above the link takes part.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

import firmware_protocol as fp
from firmware_protocol import CycleOrder, Fault, Mode, SessionState
from simulator.faults import CATALOGUE, ScheduledFault, inject

from .rig import Rig

LINK = {"pairing_required": False, "watchdog_ms": 10_000}
"""The link is not under test: a controller that has not paired, on a device that allows it,
and a watchdog long enough that the controller need answer only every few seconds."""
STEP_S = 40.0
GRADED = fp.SetCycle(CycleOrder.SEQUENTIAL, 30, 50, 60, 40, (450, 380, 310, 240) * 2)
GENTLE = fp.SetCycle(CycleOrder.SIMULTANEOUS, 20, 50, 30, 100, (290,) * 8)


@dataclass(frozen=True)
class Step:
    """One step of a program: what the controller starts or renews, and for how long."""

    mode: int
    level: int
    seconds: float
    cycle: fp.SetCycle | None = None


TOUR = [
    *(Step(Mode.WAVE, level, STEP_S) for level in (1, 2, 3)),
    *(Step(Mode.PULSE, level, STEP_S) for level in (1, 2, 3)),
    Step(Mode.CYCLE, 0, STEP_S, GRADED),
    Step(Mode.CYCLE, 0, STEP_S, GENTLE),
]
"""Every mode and level, and both kinds of cycle (over again after 320 s)."""
EVENING = [Step(Mode.WAVE, 1, 300.0), Step(Mode.WAVE, 2, 720.0)]
"""How evening-45 begins: five minutes of light waves, then firmer ones."""
SEEDS = range(100)
WATCH_S = 200.0
"""How long each broken device runs on. How soon a fault must be found is `test_faults`'s
business; here the program must reach a step that shows it (an inlet stuck open shows only
while other chambers fill without it, which pulse mode never does)."""


class Program:
    """A device, and a controller that plays ``steps`` on it as massager-ctl plays a program.

    The first step starts ``start_s`` device seconds after switch-on. Each step is a
    START (the first) or a RENEW with the step's length and a little more as its lease.
    Once the session has ended (a fault, a low battery) the program is over and the
    controller only keeps the link alive.
    """

    def __init__(self, steps: list[Step], *, start_s: float = 0.0, **config: object) -> None:
        self.rig = Rig(paired=False, **LINK, **config)
        self.rig.connect()
        self.steps = steps
        self.done = 0
        self.next_at = start_s
        self.over = False

    def run_to(self, t: float, *, until_fault: bool = False) -> None:
        """Let time pass up to ``t`` (or the moment a fault shows, to the second)."""
        rig = self.rig
        while rig.now < t - 1e-9:
            if until_fault and rig.fw.state == SessionState.FAULT:
                return
            if not self.over and rig.now >= self.next_at - 1e-9:
                self._next_step()
            end = t if self.over else min(t, self.next_at)
            rig.run(min(end - rig.now, 1.0) if until_fault else end - rig.now, step=2.0)

    def _next_step(self) -> None:
        rig = self.rig
        if self.done and rig.fw.session is None:
            self.over = True
            return
        step = self.steps[self.done % len(self.steps)]
        if step.cycle is not None:
            assert rig.command(step.cycle) == "ack"
        kind = fp.Renew if self.done else fp.Start
        self.over = rig.command(kind(step.mode, step.level, int(step.seconds) + 5)) != "ack"
        self.done += 1
        self.next_at = rig.now + step.seconds


@dataclass(frozen=True)
class Verdict:
    """What the firmware latched for one fault on one seed."""

    seed: int
    strikes_at: float
    faults: Fault
    probes: int
    """How often it probed the pump (a chamber filling alone in vain)."""


def strikes_at(seed: int) -> float:
    return 10.0 + 3.1 * seed


def verdicts_for(seed: int) -> dict[str, Verdict]:
    """Each fault of the catalogue, striking one copy of this seed's device at its moment."""
    program = Program(TOUR, seed=seed)
    at = strikes_at(seed)
    program.run_to(at - 0.5)
    program.rig.received.clear()  # nothing to keep, and less to copy
    found = {}
    for name in CATALOGUE:
        broken = copy.deepcopy(program)
        inject(broken.rig.plant, ScheduledFault(name, at))
        broken.run_to(at + WATCH_S, until_fault=True)
        fw = broken.rig.fw
        found[name] = Verdict(seed, at, fw.faults, fw.diagnostics.probes)
    return found


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[Verdict]]:
    """Every fault's verdicts over every seed (the program before the strike runs once)."""
    by_fault: dict[str, list[Verdict]] = {name: [] for name in CATALOGUE}
    for seed in SEEDS:
        for name, verdict in verdicts_for(seed).items():
            by_fault[name].append(verdict)
    return by_fault


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_fault_is_named_as_itself_over_seeds_0_to_99(
    name: str, verdicts: dict[str, list[Verdict]]
) -> None:
    expected = CATALOGUE[name].latches
    wrong = [
        f"seed {v.seed} (strikes at {v.strikes_at:g} s): {v.faults!r}"
        for v in verdicts[name]
        if v.faults != expected
    ]
    assert not wrong, f"{name} should latch {expected!r}; " + "; ".join(wrong)


def test_the_pump_is_probed_only_for_a_fill_that_no_other_chamber_can_vouch_for(
    verdicts: dict[str, list[Verdict]],
) -> None:
    # A dead pump stalls every fill; a stuck inlet only its own, which now and then fills
    # alone (a top-up): then, and only then, another inlet opens a moment to ask the pump.
    probed = {name: sum(v.probes > 0 for v in found) for name, found in verdicts.items()}
    assert probed["pump-dead"] >= 50
    assert 1 <= probed["inlet-stuck-shut"] <= 20
    assert all(count == 0 for name, count in probed.items() if name not in
               ("pump-dead", "inlet-stuck-shut"))  # fmt: skip


@pytest.mark.parametrize(
    ("broken", "expected"),
    [("inlet-stuck-shut", Fault.VALVE), ("pump-dead", Fault.PUMP)],
)
def test_a_chamber_filling_alone_in_vain_is_told_from_a_dead_pump_by_a_probe(
    broken: str, expected: Fault
) -> None:
    # Every chamber holds 60 mmHg; the foot loses 6 (a leg shifting) and tops up alone.
    # Nothing else fills, so only a moment of air into another chamber tells whether
    # the pump delivers: it does with the foot's inlet stuck shut, not with a dead pump.
    hold = fp.SetCycle(CycleOrder.SIMULTANEOUS, 30, 900, 30, 30, (600,) * 8)
    program = Program([Step(Mode.CYCLE, 0, 600.0, hold)], seed=4)
    program.run_to(15.0)
    rig = program.rig
    CATALOGUE[broken].inject(rig.plant)
    rig.plant.pressures[0] -= 6.0
    opened = None
    held = rig.pressures()
    highest = list(held)
    while rig.fw.state != SessionState.FAULT and rig.now < 25.0:
        rig.run(0.05, step=0.05)
        highest = [max(h, p) for h, p in zip(highest, rig.pressures(), strict=True)]
        if opened is None and rig.plant.inlets[0]:
            opened = rig.now
    assert rig.fw.faults == expected
    assert rig.fw.diagnostics.probes == 1
    assert opened is not None
    # The probe gives the fill check evidence; it does not move the check's time.
    assert rig.now - opened <= 2.0 + 0.1
    # It took a few mmHg into one chamber, far below the highest target a program may set.
    gained = sorted(h - p for h, p in zip(highest[1:], held[1:], strict=True))
    assert gained[-1] <= 12.0
    assert gained[-2] <= 1.0  # one chamber only
    assert max(highest) <= rig.fw.config.max_target_mmhg


def test_a_sensor_stuck_at_300_s_is_a_sensor_over_seeds_0_to_99() -> None:
    # The case that was reported: ``sim://?faults=sensor-stuck@300`` with evening-45. The
    # program starts when the person gets to it, up to one wave's length after switch-on,
    # so the sensor sticks at any moment of a wave. One that sticks below the pressure it
    # read looked like air lost (LEAK), an exhaust that would not open (VALVE) or a fill
    # that stalled (PUMP), as the moment fell.
    wrong = []
    for seed in SEEDS:
        program = Program(EVENING, start_s=0.227 * seed, seed=seed, faults="sensor-stuck@300")
        program.run_to(360.0, until_fault=True)
        if program.rig.fw.faults != Fault.SENSOR:
            wrong.append(f"seed {seed}: {program.rig.fw.faults!r}")
    assert not wrong, "; ".join(wrong)
