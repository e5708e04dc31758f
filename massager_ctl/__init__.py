"""massager-ctl: control an air-compression leg massager over BLE, serial or the simulator.

The public API, importable from here::

    from massager_ctl import Massager, find_profile, run_program

    async with Massager.connect("sim://") as massager:
        result = await run_program(massager, find_profile("evening-45"))

`Massager` is one connected device (`DeviceStatus` its reports, `DeviceInfo`
what it announced); `find_profile` and `load_profile` read bedtime programs
(`Profile`); `run_program` runs one (`ProgramResult`, `Outcome`); every error
is a `MassagerError`. The names load on first use, so that ``import
massager_ctl`` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "Massager": "device",
    "DeviceStatus": "models",
    "DeviceInfo": "models",
    "Profile": "programs.profiles",
    "find_profile": "programs.profiles",
    "load_profile": "programs.profiles",
    "run_program": "programs.runner",
    "ProgramResult": "programs.runner",
    "Outcome": "programs.runner",
    "MassagerError": "errors",
}

__all__ = [
    "DeviceInfo",
    "DeviceStatus",
    "Massager",
    "MassagerError",
    "Outcome",
    "Profile",
    "ProgramResult",
    "__version__",
    "find_profile",
    "load_profile",
    "run_program",
]

if TYPE_CHECKING:
    from .device import Massager
    from .errors import MassagerError
    from .models import DeviceInfo, DeviceStatus
    from .programs.profiles import Profile, find_profile, load_profile
    from .programs.runner import Outcome, ProgramResult, run_program


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'massager_ctl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value
