"""massager-sim on its own, as a person runs it."""

from __future__ import annotations

import json
import subprocess
import sys


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args], capture_output=True, text=True, timeout=30
    )


def test_massager_sim_runs_standalone_and_prints_state() -> None:
    result = sim(
        "run", "--press", "power", "--for", "10", "--every", "5", "--speed", "50", "--json"
    )
    assert result.returncode == 0, result.stderr
    states = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["state"] for s in states] == ["idle", "running", "running"]
    assert max(states[-1]["pressures_mmhg"]) > 20


def test_text_lines_show_the_wave_climbing() -> None:
    result = sim("run", "--press", "power", "--for", "9", "--every", "3", "--speed", "50")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert "running wave 1" in lines[-1]
    assert "pump" in lines[-1]


def test_bad_settings_and_buttons_are_usage_errors() -> None:
    bad_setting = sim("run", "--set", "colour=red", "--for", "0")
    assert bad_setting.returncode == 2
    assert "no option colour; options: battery" in bad_setting.stderr
    bad_button = sim("run", "--press", "reset", "--for", "0")
    assert bad_button.returncode == 2
    assert "'reset' is not a button; buttons: power, mode, plus, minus, pause" in bad_button.stderr


def test_a_latched_fault_is_printed_by_name() -> None:
    result = sim("run", "--set", "faults=pump-dead", "--press", "power", "--for", "20",
                 "--every", "10", "--speed", "50")  # fmt: skip
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.endswith("FAULT pump"), last
    assert "<Fault" not in result.stdout


def test_several_faults_are_named_each() -> None:
    import dataclasses

    from firmware_protocol import Fault
    from simulator.cli import describe
    from simulator.config import DeviceConfig
    from simulator.firmware import Firmware

    config = DeviceConfig()
    snapshot = dataclasses.replace(
        Firmware(config).snapshot(), faults=Fault.VALVE | Fault.BATTERY_EMPTY | Fault(1 << 9)
    )
    assert describe(snapshot, config).endswith("FAULT valve, battery empty, fault bit 9")
