"""One measured figure, its baseline from the same run, and their ratio."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

WARMUP = 200
"""Round trips made and thrown away before the samples are kept."""


@dataclass(frozen=True)
class Row:
    """A benchmark result: the project's stack (value) beside a bare baseline."""

    name: str
    value: float
    unit: str
    baseline: float
    baseline_name: str

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": round(self.ratio, 2)}


async def in_turn(
    count: int,
    bare: Callable[[int], Awaitable[object]],
    stack: Callable[[int], Awaitable[object]],
) -> tuple[list[float], list[float]]:
    """Seconds per round trip of ``stack`` and of ``bare``, ``count`` each after `WARMUP`.

    Sampled in turn (round ``i`` of each, one after the other), so both see the
    same machine: a busy moment lands on both, not on one.
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
    return stack_s[WARMUP:], bare_s[WARMUP:]


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]
