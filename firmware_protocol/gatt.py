"""The Bluetooth LE binding (SPEC section 2.3): UUIDs, sizes, and how the stream is chunked.

Over BLE the protocol's byte stream (COBS frames, each ended by 0x00) is cut
into GATT values: the controller writes them, without response, to the RX
characteristic, and the device notifies them on the TX characteristic. Each
value holds at most ATT_MTU - 3 bytes. Values are pieces of one stream, so a
frame may span several values and a value may end one frame and begin the
next; the receiver feeds every value, in order, to its frame decoder.

>>> [len(piece) for piece in chunks(bytes(50), value_size(23))]
[20, 20, 10]
>>> list(chunks(b"", 20))
[]
"""

from __future__ import annotations

from collections.abc import Iterator

SERVICE_UUID = "8f4e0001-5c1a-4b7e-9d3f-2a6b1c0d7e51"
"""The massager service: the one UUID a controller scans for."""

RX_UUID = "8f4e0002-5c1a-4b7e-9d3f-2a6b1c0d7e51"
"""Controller to device: write without response (write with response also accepted)."""

TX_UUID = "8f4e0003-5c1a-4b7e-9d3f-2a6b1c0d7e51"
"""Device to controller: notify."""

BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
DEVICE_INFORMATION_UUID = "0000180a-0000-1000-8000-00805f9b34fb"
MANUFACTURER_NAME_UUID = "00002a29-0000-1000-8000-00805f9b34fb"
MODEL_NUMBER_UUID = "00002a24-0000-1000-8000-00805f9b34fb"
SERIAL_NUMBER_UUID = "00002a25-0000-1000-8000-00805f9b34fb"
FIRMWARE_REVISION_UUID = "00002a26-0000-1000-8000-00805f9b34fb"

DEFAULT_ATT_MTU = 23
"""Every BLE link starts with this ATT MTU: 20 bytes per value."""

PREFERRED_ATT_MTU = 247
"""What both ends ask for in the MTU exchange: a longest frame (258 bytes) in two values."""

ATT_HEADER = 3
"""An ATT write command or notification spends 3 bytes of the MTU on opcode and handle."""


def value_size(mtu: int) -> int:
    """The most stream bytes one write or notification carries at ATT MTU ``mtu``."""
    return max(mtu, DEFAULT_ATT_MTU) - ATT_HEADER


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` cut, in order, into values of at most ``size`` bytes."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
