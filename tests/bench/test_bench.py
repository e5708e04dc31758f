"""The bench entry point runs and prints rows in its documented shape (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import coldstart
from bench.rows import WorkloadFailed


def test_bench_prints_its_rows_as_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    names = " ".join(row["name"] for row in rows)
    for link in (
        "sim://",
        "serial:// on a pty",
        "socket:// on loopback",
        "ble:// on the virtual",
        "over MQTT",
        "100 devices",
        "100 devices idle: CPU of the bridge",
        "idle massager, one hour: frames on the link",
        "idle massager, one hour: CPU seconds",
        "key-file writes per day",
        "stop from a second process",
        "intensity from idle over TCP",
        "cold start: massager-ctl safety",
        "cold start: massager-ctl status --device sim://",
    ):
        assert link in names
    for row in rows:
        assert {"name", "value", "unit", "baseline", "ratio", "spread"} <= set(row)
        # The holder's quiet watch writes the key file not once: its figure is 0.
        none_by_design = row["name"].startswith("key-file writes per day")
        assert row["value"] == 0 if none_by_design else row["value"] > 0, row
        assert row["baseline"] > 0
        assert row["ratio"] == round(row["value"] / row["baseline"], 2)
        # Every figure taken over blocks, rounds or windows says how steady its ratio was;
        # only a figure taken once (the peak memory, the key-file writes, a quick run's one
        # round or block) has none.
        once = any(
            mark in row["name"]
            for mark in ("peak traced memory", "(median of 1)", "median of 1 blocks", "x 24)")
        )
        assert (row["spread"] is None) == once, row
        assert once or row["spread"] >= 0, row


def probe(code: str) -> coldstart.Command:
    """A cold-start workload that must print ``Usage:``, running ``python -c CODE``."""
    return coldstart.Command("probe", (sys.executable, "-c", code), "Usage:")


def test_a_cold_start_run_that_did_its_work_is_timed(tmp_path: Path) -> None:
    assert coldstart.run(probe("print('Usage: x')"), coldstart.environment(tmp_path)) > 0


@pytest.mark.parametrize("code", ["import sys; print('Usage: x'); sys.exit(2)", "print('x')"])
def test_a_cold_start_run_that_failed_or_printed_the_wrong_thing_is_refused(
    tmp_path: Path, code: str
) -> None:
    with pytest.raises(WorkloadFailed, match="probe exited"):
        coldstart.run(probe(code), coldstart.environment(tmp_path))
