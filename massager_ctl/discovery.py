"""Finding massagers: the serial ports this computer has, and which of them answer.

Listing reads what the operating system knows of each port (pyserial's
``list_ports``: description, USB vendor and product ids, maker, serial number).
Probing opens a port and says HELLO, as connecting does, so it sends a few
bytes to whatever is on the port; it is only done when asked. Bluetooth LE
massagers are found by scanning for the massager service (SPEC section 2.3),
on the system's radio and on any radio a ``ble://...?hci=`` address names.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict
from serial.tools import list_ports

from .device import Massager
from .errors import ConnectFailed, MassagerError
from .printable import printable
from .urls import BleAddress, SerialAddress, parse_device_url

PROBE_TIMEOUT_S = 2.0

BLE_PROBE_TIMEOUT_S = 10.0
"""A Bluetooth probe scans again and connects: it gets at least this long."""


class Found(BaseModel):
    """One place a massager may be, and what is known of it."""

    model_config = ConfigDict(frozen=True)

    url: str
    kind: str
    description: str = ""
    usb_id: str | None = None
    """``VID:PID`` in hex, for USB serial adapters."""
    manufacturer: str | None = None
    serial_number: str | None = None
    answered: bool | None = None
    """None: not probed; else whether it answered HELLO."""
    model: str | None = None
    firmware: str | None = None
    device_serial: str | None = None
    problem: str | None = None
    """Why a probe got no answer, or why a Bluetooth scan could not run."""
    rssi: int | None = None
    """Signal strength of a Bluetooth massager, in dBm."""


def serial_ports(baudrate: int = SerialAddress.model_fields["baudrate"].default) -> list[Found]:
    """The serial ports the operating system lists, USB adapters first."""
    found = []
    for port in list_ports.comports():
        usb = f"{port.vid:04X}:{port.pid:04X}" if port.vid is not None else None
        description = "" if port.description in (None, "n/a") else port.description
        found.append(
            Found(
                url=str(SerialAddress(path=port.device, baudrate=baudrate)),
                kind="serial",
                description=description,
                usb_id=usb,
                manufacturer=port.manufacturer,
                serial_number=port.serial_number,
            )
        )
    return sorted(found, key=lambda f: (f.usb_id is None, f.url))


def radios(urls: list[str], extra: list[str]) -> list[str | None]:
    """The Bluetooth radios to scan: the system's (None), then those the addresses name."""
    found: list[str | None] = [None]
    for url in urls:
        address = parse_device_url(url)
        if isinstance(address, BleAddress) and address.hci is not None:
            found.append(address.hci)
    return list(dict.fromkeys(found + list(extra)))


async def ble_massagers(radio: str | None, *, timeout_s: float) -> list[Found]:
    """The massagers heard advertising on ``radio``; a row saying why if it cannot scan."""
    from .transports.ble import scan

    try:
        seen = await scan(timeout_s=timeout_s, hci=radio)
    except ConnectFailed as error:
        url = "ble://" + (f"?hci={radio}" if radio else "")
        return [Found(url=url, kind="ble", description="Bluetooth LE scan", problem=str(error))]
    return [
        Found(url=s.url, kind="ble", description=printable(s.name or ""), rssi=s.rssi) for s in seen
    ]


async def scan_all(radios: list[str | None], *, timeout_s: float) -> list[Found]:
    """Scan every radio at once.

    When radios are named besides the system's (None), the system's is scanned
    too, but that it cannot scan (no adapter, no BlueZ) goes unsaid: the person
    named the radio they use, and a row about one they do not is only noise.
    """
    found = await asyncio.gather(*(ble_massagers(r, timeout_s=timeout_s) for r in radios))
    named = any(radio is not None for radio in radios)
    return [
        entry
        for radio, entries in zip(radios, found, strict=True)
        for entry in entries
        if not (named and radio is None and entry.problem is not None)
    ]


def given(urls: list[str]) -> list[Found]:
    """Entries for device URLs a person named (a served simulator, a known port).

    Raises:
        DeviceURLError: one of them is not a device address.
    """
    entries = []
    for url in urls:
        address = parse_device_url(url)
        entries.append(Found(url=str(address), kind=address.scheme, description="as given"))
    return entries


async def probe(found: Found, *, timeout_s: float = PROBE_TIMEOUT_S) -> Found:
    """Say HELLO at ``found.url``; the entry with what answered, or why nothing did."""
    if found.kind == "ble":
        timeout_s = max(timeout_s, BLE_PROBE_TIMEOUT_S)
    try:
        async with Massager.connect(found.url, timeout_s=timeout_s) as massager:
            info = massager.info
    except ConnectFailed as error:
        # Connecting names the address ("no answer from a massager at URL ..."); the
        # row already shows it.
        problem = str(error).replace(f" at {found.url}", "")
        return found.model_copy(update={"answered": False, "problem": problem})
    except MassagerError as error:
        return found.model_copy(update={"answered": False, "problem": str(error)})
    return found.model_copy(
        update={
            "answered": True,
            "model": info.model,
            "firmware": info.firmware,
            "device_serial": info.serial,
        }
    )


def unique(entries: list[Found]) -> list[Found]:
    """The entries without repeats of one URL (a port given and also listed), first kept."""
    seen: set[str] = set()
    kept = []
    for entry in entries:
        if entry.url not in seen:
            seen.add(entry.url)
            kept.append(entry)
    return kept


async def probe_all(entries: list[Found], *, timeout_s: float = PROBE_TIMEOUT_S) -> list[Found]:
    """Probe every entry at once; the whole takes about one timeout, not one per port.

    A row that only says why a Bluetooth scan could not run is kept as it is.
    """

    async def one(entry: Found) -> Found:
        if entry.problem is not None and entry.answered is None:
            return entry
        return await probe(entry, timeout_s=timeout_s)

    return list(await asyncio.gather(*(one(e) for e in entries)))
