"""Transports move bytes between the controller and a device; they know no messages.

`open_transport` picks the transport for a device address. Only the modules in
this package import the libraries that reach hardware.
"""

from __future__ import annotations

from typing import assert_never

from ..urls import BleAddress, DeviceAddress, SerialAddress, SimAddress, SocketAddress
from .base import Transport, TransportClosed

__all__ = ["Transport", "TransportClosed", "open_transport"]


def open_transport(address: DeviceAddress) -> Transport:
    """The transport for ``address``, not yet opened."""
    if isinstance(address, SimAddress):
        from .sim import SimTransport

        return SimTransport(address)
    if isinstance(address, SerialAddress | SocketAddress):
        from .serial import SerialTransport

        return SerialTransport(address)
    if isinstance(address, BleAddress):
        from .ble import BleTransport

        return BleTransport(address)
    assert_never(address)
