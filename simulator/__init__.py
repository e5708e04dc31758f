"""simulator: a leg massager's firmware and physics in software.

It speaks firmware_protocol as a device and never imports massager_ctl: it is
an independent peer, as real hardware would be. `Firmware` is sans-IO and runs
on any clock; `host.DeviceHost` runs it on an asyncio event loop.
"""

from .config import DeviceConfig
from .firmware import Firmware, Snapshot
from .physics import InjectedFaults, Plant

__all__ = ["DeviceConfig", "Firmware", "InjectedFaults", "Plant", "Snapshot"]
