"""The bench entry point runs and prints rows in its documented shape (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys


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
    ):
        assert link in names
    for row in rows:
        assert {"name", "value", "unit", "baseline", "ratio"} <= set(row)
        assert row["value"] > 0
        assert row["baseline"] > 0
        assert row["ratio"] == round(row["value"] / row["baseline"], 2)
