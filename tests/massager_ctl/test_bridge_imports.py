"""The MQTT client stays behind the front door: only massager_ctl/mqtt/ imports it.

aiomqtt (and paho under it) is among the slowest imports there are, and only
the bridge talks to a broker: the holder, the device and the pure parts of the
MQTT package (topics, payloads, broker addresses, Home Assistant discovery)
must work, and load, without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import massager_ctl

PACKAGE = Path(massager_ctl.__file__).parent
CLIENT = {"aiomqtt", "paho"}


def client_imports(path: Path) -> list[tuple[int, bool]]:
    """Each import of aiomqtt or paho in ``path``: its line, and whether it runs on import.

    An import inside a function, or under ``if TYPE_CHECKING:``, does not run
    when the module is imported.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, bool]] = []

    def visit(nodes: list[ast.AST], at_import: bool) -> None:
        for node in nodes:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name.split(".")[0] in CLIENT for name in names):
                found.append((node.lineno, at_import))
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(list(node.body), False)
                visit(list(node.orelse), at_import)
                continue
            deferred = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(list(ast.iter_child_nodes(node)), at_import and not deferred)

    visit([tree], True)
    return found


def test_no_module_outside_the_mqtt_package_imports_the_mqtt_client() -> None:
    importers = {
        path.relative_to(PACKAGE).as_posix(): client_imports(path)
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    outside = {path: lines for path, lines in importers.items()
               if lines and not path.startswith("mqtt/")}  # fmt: skip
    assert outside == {}
    # The walk finds the imports there are: the bridge's, and the broker's client.
    assert importers["mqtt/bridge.py"]
    assert importers["mqtt/broker.py"]


def test_only_the_bridge_loads_the_mqtt_client_when_imported() -> None:
    at_import = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(runs for _, runs in client_imports(path))
    }
    assert at_import == {"mqtt/bridge.py"}


@pytest.mark.parametrize(
    "modules",
    [
        ("massager_ctl.device", "massager_ctl.holder"),
        ("massager_ctl.schedules.daemon", "massager_ctl.settings"),
        ("massager_ctl.mqtt", "massager_ctl.mqtt.topics", "massager_ctl.mqtt.payloads",
         "massager_ctl.mqtt.broker", "massager_ctl.mqtt.hass"),
    ],
)  # fmt: skip
def test_importing_them_loads_no_mqtt_client(modules: tuple[str, ...]) -> None:
    code = (
        f"import sys, importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(CLIENT)!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_the_bridge_does_load_it() -> None:
    # The check above sees a loaded client: the bridge's own import is one.
    code = "import sys, massager_ctl.mqtt.bridge; print('aiomqtt' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)  # fmt: skip
    assert result.stdout.strip() == "True"
