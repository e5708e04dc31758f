"""The bench entry point runs and prints rows in its documented shape (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import coldstart


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
        "cold start: massager-ctl safety",
        "cold start: massager-ctl status --device sim://",
    ):
        assert link in names
    for row in rows:
        assert {"name", "value", "unit", "baseline", "ratio"} <= set(row)
        assert row["value"] > 0
        assert row["baseline"] > 0
        assert row["ratio"] == round(row["value"] / row["baseline"], 2)


def probe(code: str) -> coldstart.Command:
    """A cold-start workload that must print ``Usage:``, running ``python -c CODE``."""
    return coldstart.Command("probe", (sys.executable, "-c", code), "Usage:")


def test_a_cold_start_run_that_did_its_work_is_timed(tmp_path: Path) -> None:
    assert coldstart.run(probe("print('Usage: x')"), coldstart.environment(tmp_path)) > 0


@pytest.mark.parametrize("code", ["import sys; print('Usage: x'); sys.exit(2)", "print('x')"])
def test_a_cold_start_run_that_failed_or_printed_the_wrong_thing_is_refused(
    tmp_path: Path, code: str
) -> None:
    with pytest.raises(coldstart.WorkloadFailed, match="probe exited"):
        coldstart.run(probe(code), coldstart.environment(tmp_path))


def test_the_bare_link_row_fails_when_its_program_does_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Signed with a key the firmware does not hold, every START is refused and the
    # pump never runs: the row measured nothing so before it checked its own work.
    from bench import program
    from firmware_protocol import Signer

    def a_stranger(key_id: int, key: bytes, next_counter: Callable[[], int]) -> Signer:
        return Signer(key_id, bytes(32), next_counter)

    monkeypatch.setattr(program, "Signer", a_stranger)
    with pytest.raises(AssertionError, match="not authenticated"):
        program.firmware_and_bare_link()
