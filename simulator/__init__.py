"""simulator: a leg massager's firmware and physics in software.

It speaks firmware_protocol as a device and never imports massager_ctl: it is
an independent peer, as real hardware would be. `Firmware` is sans-IO and runs
on any clock; `host.DeviceHost` runs it on an asyncio event loop.

The names below are loaded when first used: the controller imports
`simulator.clock` to run a faster clock, and that alone must not load the
firmware (and with it the protocol and cryptography) for a real massager.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import DeviceConfig
    from .faults import InjectedFaults
    from .firmware import Firmware, Snapshot
    from .physics import Plant

__all__ = ["DeviceConfig", "Firmware", "InjectedFaults", "Plant", "Snapshot"]

_HOMES = {
    "DeviceConfig": "config",
    "Firmware": "firmware",
    "Snapshot": "firmware",
    "InjectedFaults": "faults",
    "Plant": "physics",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value
