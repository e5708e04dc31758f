"""Massage patterns: what pressure each chamber should hold, moment by moment.

A pattern is a loop of phases; each phase gives every chamber a target (0 means
release it) for a fixed time. The firmware fills a chamber toward its target,
holds it there, and opens its exhaust when the target is 0.

``rank`` is a chamber's place from the foot upward; chambers of equal rank (the
same place on both legs) always move together, and a wave always travels from
rank 0 toward the heart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_protocol import CycleOrder, SetCycle

from .config import DeviceConfig

SLIVER = 1e-6
"""Seconds; a phase boundary nearer than this counts as reached."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One step of a pattern: per-chamber targets in mmHg, held for ``duration_s``."""

    duration_s: float
    targets: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    """A loop of phases that repeats for as long as the session runs."""

    phases: tuple[Phase, ...]
    period_s: float = field(init=False, repr=False, compare=False)
    """Length of one loop (summed once: `at` runs at every control step)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "period_s", sum(phase.duration_s for phase in self.phases))

    def at(self, elapsed: float) -> tuple[Phase, float]:
        """The phase ``elapsed`` seconds into the pattern, and the time until it ends.

        The time left is never less than `SLIVER`: a phase boundary closer than
        that counts as reached, so a caller adding it to a large clock value
        always gets a later time.
        """
        t = elapsed % self.period_s
        for phase in self.phases:
            if t < phase.duration_s - SLIVER:
                return phase, phase.duration_s - t
            t -= phase.duration_s
        first = self.phases[0]  # the very end of one loop is the start of the next
        return first, first.duration_s


def _loop(*phases: Phase) -> Pattern:
    return Pattern(tuple(p for p in phases if p.duration_s > 0))


def _filled_up_to(
    ranks: tuple[int, ...], targets: tuple[float, ...], rank: int
) -> tuple[float, ...]:
    return tuple(t if r <= rank else 0.0 for r, t in zip(ranks, targets, strict=True))


def wave(config: DeviceConfig, ranks: tuple[int, ...], level_mmhg: float) -> Pattern:
    """Fill chambers one rank after another from the foot up, hold them all, release."""
    full = tuple(level_mmhg for _ in ranks)
    stages = [
        Phase(config.wave_stage_s, _filled_up_to(ranks, full, rank))
        for rank in range(max(ranks) + 1)
    ]
    empty = tuple(0.0 for _ in ranks)
    return _loop(*stages, Phase(config.wave_hold_s, full), Phase(config.wave_release_s, empty))


def pulse(config: DeviceConfig, ranks: tuple[int, ...], level_mmhg: float) -> Pattern:
    """Squeeze every chamber together, hold, release together."""
    full = tuple(level_mmhg for _ in ranks)
    empty = tuple(0.0 for _ in ranks)
    return _loop(
        Phase(config.pulse_inflate_s + config.pulse_hold_s, full),
        Phase(config.pulse_release_s, empty),
    )


def cycle(ranks: tuple[int, ...], program: SetCycle) -> Pattern:
    """The programmable cycle: fill (in order or together), hold, release, rest."""
    targets = tuple(t / 10 for t in program.targets_dmmhg)
    empty = tuple(0.0 for _ in ranks)
    inflate = program.inflate_ds / 10
    if program.order == CycleOrder.SEQUENTIAL:
        fills = [
            Phase(inflate, _filled_up_to(ranks, targets, rank)) for rank in range(max(ranks) + 1)
        ]
    else:
        fills = [Phase(inflate, targets)]
    return _loop(
        *fills,
        Phase(program.hold_ds / 10, targets),
        Phase(program.release_ds / 10, empty),
        Phase(program.rest_ds / 10, empty),
    )
