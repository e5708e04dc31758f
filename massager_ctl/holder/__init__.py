"""One holder per massager, many front doors (see `holder` and docs/architecture.md)."""

from .commands import Command, Reply
from .holder import Holder, halt_directly, settle
from .house import House
from .state import DeviceState, link_quality

__all__ = [
    "Command",
    "DeviceState",
    "Holder",
    "House",
    "Reply",
    "halt_directly",
    "link_quality",
    "settle",
]
