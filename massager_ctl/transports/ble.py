"""``ble://``: a Bluetooth LE massager through bleak (SPEC section 2.3).

Opening scans for the massager service and picks the device by address or by
the start of its advertised name, then connects with bleak-retry-connector's
`establish_connection` (a fresh client per connection), subscribes to the TX
characteristic, and from then on carries the protocol's byte stream: writes go
to RX without response, cut to the link's largest value, in order; every
notification is handed to the reader as it comes. A disconnection ends the
link (`read` raises `TransportClosed`), which is what starts the supervisor's
reconnect-and-resume policy, as for a serial port.

The radio is the operating system's (BlueZ, CoreBluetooth, WinRT) unless the
address carries ``?hci=SPEC``: then bleak runs on `bumble_bleak`, the backend
over a Bumble central, with the same calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakBluetoothNotAvailableError, BleakError
from bleak_retry_connector import (
    BleakAbortedError,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    establish_connection,
    get_device,
)
from pydantic import BaseModel, ConfigDict

from firmware_protocol import gatt as binding

from ..errors import BluetoothUnavailable, ConnectFailed, DeviceNotFound
from ..urls import BleAddress
from .base import Transport, TransportClosed

log = logging.getLogger(__name__)

SCAN_TIMEOUT_S = 10.0
"""How long opening waits to hear the massager advertise."""

CONNECT_ATTEMPTS = 2
"""establish_connection's tries per open; the supervisor retries beyond that."""

NAME_SETTLE_S = 2.0
"""After a massager matching a name prefix is heard, how long to listen for another one."""


class Seen(BaseModel):
    """A BLE massager heard advertising."""

    model_config = ConfigDict(frozen=True)

    name: str | None
    address: str
    rssi: int
    hci: str | None = None

    @property
    def url(self) -> str:
        """The device URL that reaches this massager."""
        return str(BleAddress(address=self.address, hci=self.hci))


def _backend(hci: str | None, role: Literal["scanner", "client"]) -> dict[str, Any]:
    """Keyword arguments for a bleak scanner or client on the radio ``hci`` names.

    None for the operating system's radio; else the Bumble backend and its spec.
    """
    if hci is None:
        return {}
    from .bumble_bleak import BumbleBleakClient, BumbleBleakScanner

    return {"hci": hci, "backend": BumbleBleakScanner if role == "scanner" else BumbleBleakClient}


def _unavailable(error: BaseException, hci: str | None) -> BluetoothUnavailable:
    """Bluetooth cannot be used at all: say why, and what to check."""
    if isinstance(error, BleakBluetoothNotAvailableError):
        return BluetoothUnavailable(f"Bluetooth is unavailable: {error.args[0]}")
    if hci is None and isinstance(error, FileNotFoundError | ConnectionRefusedError):
        # BlueZ is reached over D-Bus; no socket means no bluetoothd (or no D-Bus).
        return BluetoothUnavailable(
            "Bluetooth is unavailable: the system's Bluetooth service (BlueZ over D-Bus) "
            "cannot be reached; is bluetoothd running and is there an adapter?"
        )
    return BluetoothUnavailable(f"Bluetooth is unavailable: {error}")


async def scan(
    *, timeout_s: float = 5.0, hci: str | None = None, service_only: bool = True
) -> list[Seen]:
    """The massagers heard advertising within ``timeout_s``, strongest signal first.

    Raises:
        ConnectFailed: Bluetooth is unavailable.
    """
    kwargs = _backend(hci, "scanner")
    if service_only:
        kwargs["service_uuids"] = [binding.SERVICE_UUID]
    try:
        found = await BleakScanner.discover(timeout=timeout_s, return_adv=True, **kwargs)
    except (BleakError, OSError) as error:
        raise _unavailable(error, hci) from None
    seen = [
        Seen(name=adv.local_name or device.name, address=device.address, rssi=adv.rssi, hci=hci)
        for device, adv in found.values()
    ]
    return sorted(seen, key=lambda s: -s.rssi)


class BleTransport(Transport):
    """A byte pipe over the massager's GATT service."""

    connect_timeout_s = SCAN_TIMEOUT_S + 10.0

    def __init__(self, address: BleAddress, *, scan_timeout_s: float = SCAN_TIMEOUT_S) -> None:
        self.address = address
        self.scan_timeout_s = scan_timeout_s
        target = address.address or f"named {address.name_prefix}*"
        self.description = f"the Bluetooth massager {target}"
        self._client: BleakClient | None = None
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._why_closed = "the link is closed"
        self._up = False
        self.mtu = binding.DEFAULT_ATT_MTU

    def _matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        if binding.SERVICE_UUID not in adv.service_uuids:
            return False
        if self.address.address is not None:
            return device.address.upper() == self.address.address
        name = adv.local_name or device.name or ""
        return name.lower().startswith((self.address.name_prefix or "").lower())

    async def _find(self) -> BLEDevice:
        """The massager to connect to, heard advertising.

        By address, the first advertisement will do. By name prefix, the scan goes
        on a little after the first match: a prefix that two massagers in range
        share is refused, since the wrong one may be on someone else's legs.
        """
        if known := await self._known_to_the_system():
            return known
        kwargs = _backend(self.address.hci, "scanner")
        matches: dict[str, tuple[BLEDevice, AdvertisementData]] = {}
        first = asyncio.Event()

        def heard(device: BLEDevice, adv: AdvertisementData) -> None:
            if self._matches(device, adv):
                matches[device.address] = (device, adv)
                first.set()

        loop = asyncio.get_running_loop()
        try:
            async with BleakScanner(heard, [binding.SERVICE_UUID], **kwargs):
                deadline = loop.time() + self.scan_timeout_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await first.wait()
                if first.is_set() and self.address.address is None:
                    await asyncio.sleep(max(0.0, min(NAME_SETTLE_S, deadline - loop.time())))
        except (BleakError, OSError) as error:
            raise _unavailable(error, self.address.hci) from None
        if not matches:
            raise DeviceNotFound(
                f"{self.description} was not heard advertising within "
                f"{self.scan_timeout_s:g} s: out of range, switched off, or connected to "
                "another controller"
            )
        if len(matches) > 1:
            names = ", ".join(
                f"{BleAddress(address=a, hci=self.address.hci)} ({adv.local_name})"
                for a, (_, adv) in sorted(matches.items())
            )
            raise ConnectFailed(
                f"{len(matches)} massagers in range are named {self.address.name_prefix}*: "
                f"{names}; name the one you mean by its address"
            )
        [(device, _)] = matches.values()
        return device

    async def _known_to_the_system(self) -> BLEDevice | None:
        """On Linux, a massager BlueZ already knows by address (maybe still connected).

        A controller that crashed can leave BlueZ connected to the massager, which
        then does not advertise; bleak-retry-connector finds it this way.
        """
        if self.address.hci is not None or self.address.address is None:
            return None
        try:
            return await get_device(self.address.address)
        except Exception as error:  # D-Bus trouble: scanning says why
            log.debug("asking BlueZ for %s failed: %s", self.address.address, error)
            return None

    async def open(self) -> None:  # noqa: D102
        device = await self._find()
        kwargs = _backend(self.address.hci, "client")
        self._incoming = asyncio.Queue()
        self._outgoing = asyncio.Queue()
        try:
            client = await establish_connection(
                BleakClient,
                device,
                self.description,
                disconnected_callback=self._disconnected,
                max_attempts=CONNECT_ATTEMPTS,
                use_services_cache=False,
                **kwargs,
            )
        except BleakNotFoundError as error:
            raise DeviceNotFound(
                f"{self.description} stopped answering while connecting (out of range?): "
                f"{_cause(error)}"
            ) from None
        except BleakOutOfConnectionSlotsError:
            raise ConnectFailed(
                f"cannot connect to {self.description}: the Bluetooth adapter has no free "
                "connection slot (disconnect another device)"
            ) from None
        except BleakAbortedError as error:
            raise ConnectFailed(
                f"the connection to {self.description} was aborted (interference, or the "
                f"massager is busy): {_cause(error)}"
            ) from None
        except BleakBluetoothNotAvailableError as error:
            raise _unavailable(error, self.address.hci) from None
        except Exception as error:  # a stack's own error types: a failed connect
            raise ConnectFailed(f"cannot connect to {self.description}: {_cause(error)}") from None
        self._client = client
        try:
            rx = client.services.get_characteristic(binding.RX_UUID)
            if rx is None or client.services.get_characteristic(binding.TX_UUID) is None:
                raise ConnectFailed(
                    f"{self.description} has no massager service (SPEC section 2.3)"
                )
            await client.start_notify(binding.TX_UUID, self._notified)
        except BaseException as error:
            await self.close()
            if isinstance(error, Exception) and not isinstance(error, ConnectFailed):
                raise ConnectFailed(f"cannot subscribe to {self.description}: {error}") from None
            raise
        self.mtu = client.mtu_size
        self._why_closed = f"{self.description} was closed"
        self._up = True
        self._writer = asyncio.create_task(self._write_loop(client, rx), name="ble-writer")

    def _notified(self, _sender: Any, data: bytearray) -> None:
        if data:
            self._incoming.put_nowait(bytes(data))

    def _disconnected(self, _client: BleakClient) -> None:
        if self._client is None or not self._up:
            return
        self._up = False
        self._why_closed = f"{self.description} disconnected"
        self._incoming.put_nowait(None)

    async def _write_loop(self, client: BleakClient, rx: Any) -> None:
        # One writer keeps the stream in order; each value fits the link's MTU.
        try:
            while True:
                data = await self._outgoing.get()
                size = max(rx.max_write_without_response_size, 1)
                for piece in binding.chunks(data, size):
                    await client.write_gatt_char(rx, piece, response=False)
        except Exception as error:  # whatever the stack raises, the link is gone
            if self._up:
                self._up = False
                self._why_closed = f"writing to {self.description} failed: {error}"
                self._incoming.put_nowait(None)

    def write(self, data: bytes) -> None:  # noqa: D102
        if not self._up:
            raise TransportClosed(self._why_closed)
        self._outgoing.put_nowait(data)

    async def read(self) -> bytes:  # noqa: D102
        if self._client is None:
            raise TransportClosed(self._why_closed)
        data = await self._incoming.get()
        if data is None:
            self._incoming.put_nowait(None)  # every later read fails the same way
            raise TransportClosed(self._why_closed)
        return data

    async def close(self) -> None:  # noqa: D102
        self._up = False
        client, self._client = self._client, None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        self._incoming.put_nowait(None)
        if client is not None:
            try:
                async with asyncio.timeout(5.0):
                    await client.disconnect()
            except Exception as error:  # closing must not fail; the link is gone
                log.debug("disconnecting %s failed: %s", self.description, error)


def _cause(error: BaseException) -> str:
    """The stack's own error under bleak-retry-connector's wrapper, without its advice."""
    cause = error.__cause__ or error
    return str(cause) or type(cause).__name__
