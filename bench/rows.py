"""One measured figure, its baseline from the same run, their ratio and how steady it was."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator import Firmware

WARMUP = 200
"""Round trips made and thrown away before the samples are kept."""
BLOCKS = 5
"""Latency samples are cut into this many consecutive blocks (fewer for short runs)."""
BLOCK_MIN = 100
"""Samples a block needs at least, so that its p99 is not simply its slowest sample."""


class WorkloadFailed(RuntimeError):
    """A measured run did not do its work: the figure would time something else.

    An echo that came back with other bytes, a command refused or not shown in
    the device's state, a program that did not complete, a command whose answer
    says it failed: each of these is as fast as nothing, and must not be timed.
    """


def check_intensity(firmware: Firmware, level: int) -> None:
    """A command to ``level`` was acknowledged: the simulated device must be at it now.

    Raises:
        WorkloadFailed: the device is at another intensity.
    """
    if firmware.intensity != level:
        raise WorkloadFailed(
            f"intensity {level} was acknowledged but the device is at {firmware.intensity}"
        )


@dataclass(frozen=True)
class Row:
    """A benchmark result: the project's stack (value) beside a bare baseline.

    ``spread`` says how steady the ratio was within the run: the ratio is taken
    again for each round (or block of samples) that stack and baseline shared,
    and ``spread`` is the half-range of those ratios relative to their mid-range,
    in % (`spread`). None where the figure is taken only once.
    """

    name: str
    value: float
    unit: str
    baseline: float
    baseline_name: str
    spread: float | None = None

    @property
    def ratio(self) -> float:
        """The stack's figure over the baseline's."""
        return self.value / self.baseline if self.baseline else float("inf")

    def as_dict(self) -> dict[str, object]:
        """The row as JSON wants it, with the ratio and the spread rounded as printed."""
        spread = None if self.spread is None else round(self.spread, 1)
        return {**asdict(self), "ratio": round(self.ratio, 2), "spread": spread}


async def in_turn(
    count: int,
    bare: Callable[[int], Awaitable[object]],
    stack: Callable[[int], Awaitable[object]],
    check: Callable[[int], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Seconds per round trip of ``stack`` and of ``bare``, ``count`` each after `WARMUP`.

    Sampled in turn (round ``i`` of each, one after the other), so both see the
    same machine: a busy moment lands on both, not on one. ``check(i)`` runs
    after round ``i`` of both, untimed, and raises `WorkloadFailed` if either
    did not do its work.
    """
    stack_s: list[float] = []
    bare_s: list[float] = []
    for i in range(WARMUP + count):
        start = time.perf_counter()
        await bare(i)
        bare_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        await stack(i)
        stack_s.append(time.perf_counter() - start)
        if check is not None:
            check(i)
    return stack_s[WARMUP:], bare_s[WARMUP:]


def p50(samples: Sequence[float]) -> float:
    """The median."""
    return statistics.median(samples)


def p99(samples: Sequence[float]) -> float:
    """The 99th percentile."""
    return statistics.quantiles(samples, n=100)[98]


def spread(ratios: Sequence[float]) -> float | None:
    """Half the range of ``ratios`` over their mid-range, in %: they lie within ± this of it.

    None for fewer than two ratios: one round says nothing about how steady it is.
    """
    if len(ratios) < 2:
        return None
    low, high = min(ratios), max(ratios)
    return 100 * (high - low) / (high + low)


@dataclass(frozen=True)
class Blocked:
    """A statistic taken per block of samples: the median over blocks, for stack and baseline."""

    value: float
    baseline: float
    spread: float | None
    blocks: int


def blocks_of(count: int) -> int:
    """How many blocks ``count`` samples make: `BLOCKS`, or fewer so each has `BLOCK_MIN`."""
    return max(1, min(BLOCKS, count // BLOCK_MIN))


def in_blocks(
    stack: Sequence[float], bare: Sequence[float], statistic: Callable[[Sequence[float]], float]
) -> Blocked:
    """``statistic`` of each of `blocks_of` consecutive blocks of the paired samples.

    The figures are the medians over the blocks, so one stall (a garbage
    collection, another process) moves one block's p99, not the row; the spread
    is that of the per-block ratios. ``stack[i]`` and ``bare[i]`` must have been
    taken together (in turn), so each block's ratio compares one stretch of time.
    """
    if len(stack) != len(bare):
        raise ValueError(f"{len(stack)} stack samples beside {len(bare)} baseline samples")
    count = blocks_of(len(stack))
    size = len(stack) // count
    cuts = [slice(k * size, (k + 1) * size) for k in range(count)]
    values = [statistic(stack[cut]) for cut in cuts]
    baselines = [statistic(bare[cut]) for cut in cuts]
    return Blocked(
        p50(values),
        p50(baselines),
        spread([v / b for v, b in zip(values, baselines, strict=True)]),
        count,
    )


def latency_rows(
    name: str,
    stack: Sequence[float],
    bare: Sequence[float],
    baseline_name: str,
    *,
    scale: float,
    unit: str,
) -> list[Row]:
    """The p50 and p99 rows of paired latency samples (in seconds), each per block."""
    rows = []
    for label, statistic in (("p50", p50), ("p99", p99)):
        got = in_blocks(stack, bare, statistic)
        rows.append(
            Row(
                f"{name} ({label}, median of {got.blocks} blocks)",
                got.value * scale,
                unit,
                got.baseline * scale,
                baseline_name,
                got.spread,
            )
        )
    return rows
