"""A bleak backend over a Bumble central: bleak's API on a radio that Bumble drives.

bleak takes a backend class (``BleakClient(..., backend=...)``,
``BleakScanner(backend=...)``); these two classes are that backend, so the BLE
transport reaches a Bumble radio with the same bleak calls it makes on BlueZ,
CoreBluetooth or WinRT. Each scanner and each client opens its own HCI link to
the radio, named by a spec (the ``?hci=`` of a ``ble://`` URL):

- ``tcp-client:HOST:PORT``: a virtual controller served by ``massager-sim serve --ble``
  in another process (each connection is a fresh controller on that radio);
- ``local:NAME``: a virtual radio registered in this process (tests, benchmarks);
- any other transport Bumble opens (``usb:0``, ``serial:/dev/ttyACM0``, ...):
  a real Bluetooth controller driven by Bumble instead of the operating system.

What bleak's other backends do and this one does not: pairing (the massager
protocol authenticates itself, SPEC section 12), and caching services across
connections (each connection discovers them, which takes a few milliseconds here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakError,
)
from bumble import core
from bumble import hci as bumble_hci
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.transport import open_transport
from bumble.transport.common import Transport

from firmware_protocol import gatt as binding

from .base import plain_error

log = logging.getLogger(__name__)

LOCAL = "local:"

POWER_ON_TIMEOUT_S = 5.0
"""How long the radio may take to answer the HCI reset and set-up."""

_closing: set[asyncio.Task[None]] = set()
"""Radios being released after a disconnection (kept so the tasks are not collected)."""

_PROPERTY_NAMES = {
    0x01: "broadcast",
    0x02: "read",
    0x04: "write-without-response",
    0x08: "write",
    0x10: "notify",
    0x20: "indicate",
    0x40: "authenticated-signed-writes",
    0x80: "extended-properties",
}


def _random_static_address() -> bumble_hci.Address:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] |= 0xC0
    return bumble_hci.Address(
        ":".join(f"{b:02X}" for b in raw), bumble_hci.Address.RANDOM_DEVICE_ADDRESS
    )


class _Central:
    """A Bumble device in the central role on the radio named by ``spec``."""

    def __init__(self, spec: str, device: Device, closer: Callable[[], Any]) -> None:
        self.spec = spec
        self.device = device
        self._closer = closer
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, spec: str) -> _Central:
        """Open the HCI link and power the Bumble device on.

        Raises:
            BleakBluetoothNotAvailableError: the radio cannot be reached.
        """
        if spec.startswith(LOCAL):
            central = cls._open_local(spec)
        else:
            address = _random_static_address()
            try:
                transport = await open_transport(spec)
            except (OSError, core.BaseBumbleError, ValueError) as error:
                raise _unavailable(
                    f"cannot reach the Bluetooth radio {spec}: {plain_error(error)}"
                ) from None
            device = Device.with_hci("massager-ctl", address, transport.source, transport.sink)
            central = cls(spec, device, lambda: transport.close())
            central._watch(transport)
        try:
            # A port that is not an HCI radio never answers the reset: do not wait forever.
            async with asyncio.timeout(POWER_ON_TIMEOUT_S):
                await central.device.power_on()
        except BaseException as error:
            await central.close()
            if not isinstance(error, Exception):
                raise
            if isinstance(error, TimeoutError):
                error = TimeoutError(f"no HCI answer within {POWER_ON_TIMEOUT_S:g} s")
            raise _unavailable(
                f"the Bluetooth radio {spec} did not start: {plain_error(error)}"
            ) from None
        return central

    @classmethod
    def _open_local(cls, spec: str) -> _Central:
        from simulator import ble as virtual

        name = spec.removeprefix(LOCAL)
        radio = virtual.find(name)
        if radio is None:
            raise _unavailable(f"there is no virtual radio called {name!r} in this process")
        controller, device = radio.new_device("massager-ctl")
        return cls(spec, device, lambda: radio.remove(controller))

    def _watch(self, transport: Transport) -> None:
        terminated = getattr(transport.source, "terminated", None)
        if isinstance(terminated, asyncio.Future):
            terminated.add_done_callback(lambda _: self._set_lost())

    def _set_lost(self) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    async def close(self) -> None:
        """Release the radio; any connection on it ends."""
        self._set_lost()
        result = self._closer()
        if asyncio.iscoroutine(result):
            with contextlib.suppress(Exception):
                await result


def _unavailable(message: str) -> BleakBluetoothNotAvailableError:
    return BleakBluetoothNotAvailableError(message, BleakBluetoothNotAvailableReason.NO_BLUETOOTH)


def _advertisement_data(parts: list[Advertisement]) -> tuple[AdvertisementData, str | None]:
    """Bleak's view of an advertisement and its scan response, merged."""
    name: str | None = None
    uuids: list[str] = []
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    tx_power: int | None = None
    for part in parts:
        for kind, value in part.data.ad_structures:
            if kind in (0x08, 0x09):  # shortened / complete local name
                if kind == 0x09 or name is None:
                    name = value.decode(errors="replace")
            elif kind in (0x02, 0x03):
                uuids += [
                    _bleak_uuid(core.UUID.from_bytes(value[i : i + 2]))
                    for i in range(0, len(value), 2)
                ]
            elif kind in (0x06, 0x07):
                uuids += [
                    _bleak_uuid(core.UUID.from_bytes(value[i : i + 16]))
                    for i in range(0, len(value), 16)
                ]
            elif kind == 0xFF and len(value) >= 2:
                manufacturer[int.from_bytes(value[:2], "little")] = value[2:]
            elif kind == 0x16 and len(value) >= 2:
                service_data[_bleak_uuid(core.UUID.from_bytes(value[:2]))] = value[2:]
            elif kind == 0x0A and value:
                tx_power = int.from_bytes(value[:1], "little", signed=True)
    uuids = list(dict.fromkeys(uuids))
    data = AdvertisementData(
        local_name=name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=parts[-1].rssi,
        platform_data=tuple(parts),
    )
    return data, name


def _bleak_uuid(value: core.UUID) -> str:
    """The form bleak uses for a UUID: 128-bit, lower case, with dashes."""
    return str(uuid.UUID(bytes=bytes(reversed(value.to_bytes(force_128=True)))))


class BumbleBleakScanner(BaseBleakScanner):
    """bleak's scanner interface over a Bumble central (pass ``hci=SPEC``)."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        hci: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._spec = hci
        self._active = scanning_mode != "passive"
        self._central: _Central | None = None
        self._parts: dict[str, dict[bool, Advertisement]] = {}

    async def start(self) -> None:
        """Start scanning; advertisements are reported until `stop`."""
        self.seen_devices = {}
        self._parts = {}
        self._central = central = await _Central.open(self._spec)
        central.device.on(central.device.EVENT_ADVERTISEMENT, self._advertised)
        try:
            await central.device.start_scanning(active=self._active, filter_duplicates=False)
        except BaseException:
            self._central = None
            await central.close()
            raise

    async def stop(self) -> None:
        """Stop scanning and release the radio."""
        central, self._central = self._central, None
        if central is None:
            return
        with contextlib.suppress(Exception):
            await central.device.stop_scanning()
        await central.close()

    def _advertised(self, advertisement: Advertisement) -> None:
        key = advertisement.address.to_string(False)  # without Bumble's "/P" for public
        parts = self._parts.setdefault(key, {})
        parts[advertisement.is_scan_response] = advertisement
        data, name = _advertisement_data(list(parts.values()))
        if not self.is_allowed_uuid(data.service_uuids):
            return
        details = {"hci": self._spec, "address_type": advertisement.address.address_type}
        device = self.create_or_update_device(key, key, name, details, data)
        self.call_detection_callbacks(device, data)


class BumbleBleakClient(BaseBleakClient):
    """bleak's client interface over a Bumble central.

    Pass ``hci=SPEC``, or a device found by `BumbleBleakScanner`, which carries it.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        hci: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details: dict[str, Any] = {}
        if isinstance(address_or_ble_device, BLEDevice):
            self._name = address_or_ble_device.name or self.address
            if isinstance(address_or_ble_device.details, dict):
                details = address_or_ble_device.details
        else:
            self._name = self.address
        spec = hci or details.get("hci")
        if not spec:
            raise BleakError("the Bumble backend needs hci=SPEC (for example tcp-client:HOST:PORT)")
        self._spec: str = spec
        self._address_type = details.get("address_type", bumble_hci.Address.RANDOM_DEVICE_ADDRESS)
        self._central: _Central | None = None
        self._connection: Connection | None = None
        self._proxies: dict[int, CharacteristicProxy[bytes]] = {}
        self._leaving = False

    @property
    def name(self) -> str:
        """The advertised name, or the address when none was seen."""
        return self._name

    @property
    def mtu_size(self) -> int:
        """The ATT MTU of the connection (23 until the exchange)."""
        return self._connection.att_mtu if self._connection else binding.DEFAULT_ATT_MTU

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange MTUs, and discover every service.

        Raises:
            TimeoutError: the device was not heard advertising within the timeout.
            BleakBluetoothNotAvailableError: the radio cannot be reached.
            BleakError: the connection or the discovery failed.
        """
        timeout = kwargs.get("timeout", self._timeout)
        self._leaving = False
        central = await _Central.open(self._spec)
        try:
            async with asyncio.timeout(timeout):
                connection = await central.device.connect(
                    bumble_hci.Address(self.address, self._address_type)
                )
                peer = Peer(connection)
                await peer.request_mtu(517)  # the most ATT allows; the device picks its own
                self.services = await self._discover(peer)
        except (TimeoutError, core.TimeoutError):
            await central.close()
            raise TimeoutError(f"{self.address} was not heard within {timeout:g} s") from None
        except (core.BaseBumbleError, OSError) as error:
            await central.close()
            raise BleakError(f"connecting to {self.address} failed: {plain_error(error)}") from None
        except BaseException:
            await central.close()
            raise
        self._central = central
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._disconnected)
        central.lost.add_done_callback(lambda _: self._disconnected(None))

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        self._proxies = {}
        for service in await peer.discover_services():
            ours = BleakGATTService(service, service.handle, _bleak_uuid(service.uuid))
            collection.add_service(ours)
            for proxy in await service.discover_characteristics():
                await proxy.discover_descriptors()
                self._proxies[proxy.handle] = proxy
                char = BleakGATTCharacteristic(
                    proxy,
                    proxy.handle,
                    _bleak_uuid(proxy.uuid),
                    [n for bit, n in _PROPERTY_NAMES.items() if proxy.properties & bit],  # type: ignore[misc]
                    lambda: self.mtu_size - binding.ATT_HEADER,
                    ours,
                )
                collection.add_characteristic(char)
                for descriptor in proxy.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor, descriptor.handle, _bleak_uuid(descriptor.type), char
                        )
                    )
        return collection

    def _disconnected(self, reason: int | None) -> None:
        if self._connection is None:
            return
        self._connection = None
        central, self._central = self._central, None
        if central is not None:
            task = asyncio.get_running_loop().create_task(central.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        if not self._leaving:
            why = (
                "radio link lost" if reason is None else bumble_hci.HCI_Constant.error_name(reason)
            )
            log.debug("%s disconnected: %s", self.address, why)
            if self._disconnected_callback is not None:
                self._disconnected_callback()

    async def disconnect(self) -> None:
        """Disconnect and release the radio; the disconnect callback is not called."""
        self._leaving = True
        connection, central = self._connection, self._central
        self._connection = self._central = None
        if connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await connection.disconnect()
        if central is not None:
            await central.close()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Not offered: the massager protocol authenticates its own frames."""
        raise BleakError("the Bumble backend does not pair; the massager protocol has its own")

    async def unpair(self) -> None:
        """Not offered (see `pair`)."""
        raise BleakError("the Bumble backend does not pair; the massager protocol has its own")

    def _proxy(self, characteristic: BleakGATTCharacteristic) -> CharacteristicProxy[bytes]:
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        return self._proxies[characteristic.handle]

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic's value."""
        return bytearray(await _gatt(self._proxy(characteristic).read_value()))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a descriptor's value."""
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        client = self._connection.gatt_client
        return bytearray(await _gatt(client.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        """Write a characteristic, with or without response."""
        await _gatt(self._proxy(characteristic).write_value(bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        """Write a descriptor (with response)."""
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        client = self._connection.gatt_client
        await _gatt(client.write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe: ``callback`` gets each notified value."""
        proxy = self._proxy(characteristic)
        await _gatt(proxy.subscribe(lambda value: callback(bytearray(value))))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe."""
        await _gatt(self._proxy(characteristic).unsubscribe())


async def _gatt(operation: Any) -> Any:
    """Await a Bumble GATT operation, its errors turned into bleak's."""
    try:
        return await operation
    except (core.BaseBumbleError, OSError) as error:
        raise BleakError(f"GATT operation failed: {plain_error(error)}") from None
