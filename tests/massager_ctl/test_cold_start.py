"""Each command imports only what it uses (issue "Fast start"; the figures are bench rows).

A command is run through `massager_ctl.cli.main` in a fresh interpreter, which
then lists the packages it loaded. Behaviour, not timing: a heavy package that a
command does not use (the MQTT client, cryptography, Bluetooth, the simulator's
firmware) must not be in ``sys.modules`` after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.served import serve

PROBE = """
import json, sys
from massager_ctl.cli import main

try:
    main(sys.argv[2:])
except SystemExit as exit_:
    code = exit_.code
with open(sys.argv[1], "w") as report:
    json.dump({"code": code, "modules": sorted(sys.modules)}, report)
"""

NEVER = {"aiomqtt", "paho", "bleak", "bumble", "dbus_fast", "serial", "tomlkit"}
"""Loaded by none of the commands below: the bridge, Bluetooth, serial ports, schedules."""
DEVICE = {"firmware_protocol", "simulator", "cryptography", "filelock"}
"""The protocol, the simulator and the keys: only a command that talks to a massager."""
READ = {"pydantic", "rich", "sqlite3", "platformdirs"}
"""Validation, tables, the journal, the user's folders: only commands that need them."""


def loaded(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    """Run ``massager-ctl ARGS`` in a fresh interpreter; the modules it loaded and its output.

    The modules are named in full and by their top package (``cryptography``).
    """
    report = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(report.read_text())
    assert found["code"] == 0, result.stderr
    modules = set(found["modules"])
    return modules | {name.split(".")[0] for name in modules}, result.stdout


@pytest.mark.parametrize(
    ("args", "shows"),
    [
        (("--help",), "Usage: massager-ctl"),
        (("safety",), "blood clot"),
        (("safety", "--json"), '"kind": "safety"'),
    ],
)
def test_help_and_the_safety_note_load_nothing_heavy(
    tmp_path: Path, args: tuple[str, ...], shows: str
) -> None:
    packages, out = loaded(tmp_path, *args)
    assert shows in out
    assert packages & (NEVER | DEVICE | READ) == set()


def test_profiles_load_no_device_code(tmp_path: Path) -> None:
    packages, out = loaded(tmp_path, "profiles")
    assert "evening-45" in out
    assert packages & (NEVER | DEVICE) == set()
    assert {"pydantic", "rich"} <= packages  # the probe sees what a command loads


def test_history_loads_no_device_code(tmp_path: Path) -> None:
    rated = subprocess.run(
        [sys.executable, "-m", "massager_ctl", "rate", "3", "--note", "coldstart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rated.returncode == 0, rated.stderr
    packages, out = loaded(tmp_path, "history")
    assert "coldstart" in out
    assert packages & (NEVER | DEVICE) == set()


def test_status_on_the_simulator_loads_no_bridge_bluetooth_or_serial(tmp_path: Path) -> None:
    packages, out = loaded(tmp_path, "status", "--device", "sim://")
    assert "idle" in out
    assert packages & (NEVER | {"filelock", "sqlite3"}) == set()


@pytest.mark.looptime(False)
def test_status_of_a_real_massager_loads_no_simulator_or_pairing_crypto(tmp_path: Path) -> None:
    with serve("--tcp", "127.0.0.1:0") as served:  # paired before the test goes on
        packages, out = loaded(tmp_path, "status", "--device", served.url)
    assert "idle" in out
    assert "authenticated: this controller is paired" in out  # signed with HMAC, no X25519
    # The package itself is loaded for its faster clock (--speed), not its firmware.
    unused = {"simulator.firmware", "cryptography", "sqlite3"}
    assert packages & ((NEVER - {"serial"}) | unused) == set()
    assert "serial" in packages  # socket:// is pyserial's
