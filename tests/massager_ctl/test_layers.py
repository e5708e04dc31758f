"""The layers: the device API loads no bridge, journal or simulator; paths is a leaf.

Imported in a fresh interpreter, which then lists what it loaded. Behaviour,
not timing: a module a layer does not use must not be in ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import massager_ctl

PACKAGE = Path(massager_ctl.__file__).parent

PROBE = "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
PROBE += "print(json.dumps(sorted(sys.modules)))"


def loaded(module: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``module``, by full name."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout))


def test_the_device_api_loads_no_mqtt_client_journal_or_simulator() -> None:
    modules = loaded("massager_ctl.device")
    tops = {name.split(".")[0] for name in modules}
    assert tops & {"aiomqtt", "paho", "sqlite3", "simulator"} == set()
    assert "massager_ctl.journal" not in modules
    # Nor the homes of programs and schedules, which a device does not need.
    assert {
        m for m in modules if m.startswith(("massager_ctl.programs", "massager_ctl.schedules"))
    } == set()
    # The probe sees what was loaded: the device's own protocol and keys.
    assert {"firmware_protocol", "massager_ctl.keystore", "massager_ctl.paths"} <= modules


def test_paths_imports_nothing_of_massager_ctl() -> None:
    modules = loaded("massager_ctl.paths")
    ours = {name for name in modules if name.split(".")[0] == "massager_ctl"}
    assert ours == {"massager_ctl", "massager_ctl.paths"}


def test_paths_names_only_the_standard_library_and_platformdirs() -> None:
    # Also the imports inside its functions, which the fresh interpreter above does not run.
    tree = ast.parse((PACKAGE / "paths.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: a relative import"
            imported.add((node.module or "").split(".")[0])
    assert "platformdirs" in imported
    assert imported - {"platformdirs"} <= set(sys.stdlib_module_names)
