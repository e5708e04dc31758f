"""How a row's figures and their spread are made from paired samples (no timings asserted)."""

from __future__ import annotations

import pytest

from bench.__main__ import table
from bench.rows import Row, blocks_of, in_blocks, latency_rows, p50, spread


def test_spread_is_the_half_range_over_the_mid_range_in_percent() -> None:
    assert spread([2.0, 4.0, 3.0]) == pytest.approx(100 * 1 / 3)
    assert spread([5.0, 5.0]) == 0.0


def test_one_ratio_has_no_spread() -> None:
    assert spread([2.0]) is None
    assert spread([]) is None


def test_blocks_keep_enough_samples_each() -> None:
    assert blocks_of(3000) == 5
    assert blocks_of(300) == 3
    assert blocks_of(50) == 1


def test_figures_are_medians_over_blocks_and_the_spread_compares_the_blocks() -> None:
    # Five blocks of 100: the baseline is 1.0 throughout, the stack 2.0 except one
    # block at 4.0 (a stall). The median keeps 2.0; the spread shows the stall.
    stack = [2.0] * 200 + [4.0] * 100 + [2.0] * 200
    bare = [1.0] * 500
    got = in_blocks(stack, bare, p50)
    assert (got.value, got.baseline, got.blocks) == (2.0, 1.0, 5)
    assert got.spread == pytest.approx(100 * (4 - 2) / (4 + 2))


def test_blocks_need_paired_samples() -> None:
    with pytest.raises(ValueError, match="3 stack samples beside 2"):
        in_blocks([1.0] * 3, [1.0] * 2, p50)


def test_latency_rows_give_p50_and_p99_with_their_spread() -> None:
    rows = latency_rows("trip", [2e-6] * 300, [1e-6] * 300, "echo", scale=1e6, unit="us")
    assert [row.name for row in rows] == [
        "trip (p50, median of 3 blocks)",
        "trip (p99, median of 3 blocks)",
    ]
    for row in rows:
        assert (row.value, row.baseline, row.ratio, row.spread) == pytest.approx((2, 1, 2, 0))


def test_the_table_and_the_json_carry_the_spread() -> None:
    steady = Row("a", 2.0, "s", 1.0, "b", 4.25)
    once = Row("c", 2.0, "MiB", 1.0, "d")
    assert steady.as_dict()["spread"] == 4.2
    assert once.as_dict()["spread"] is None
    lines = table([steady, once]).splitlines()
    assert lines[0].split(" | ")[4] == "spread"
    assert "| 2.00 | ±4.2 % | b |" in lines[2]
    assert "| 2.00 |  | d |" in lines[3]
