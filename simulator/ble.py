"""The simulated massager as a Bluetooth LE peripheral on a virtual radio (Bumble).

`VirtualRadio` is the air: a Bumble `LocalLink` on which virtual controllers
hear each other's advertising and exchange link-layer packets. It can take a
controller out of range, which ends its connections by supervision timeout,
as walking away from a device does. `BlePeripheral` is the massager on that
radio: a Bumble device with the GATT services of SPEC section 2.3, advertising
its service UUID and name, serving one controller at a time. `HciServer` lets
another process join the radio: each TCP connection gets its own virtual
controller, spoken to in HCI (Bumble's ``tcp-client:HOST:PORT`` transport), and
loses it, with every connection it had, when the TCP connection closes.

In one process a controller reaches the radio by name (`register`, and
``?hci=local:NAME`` in a device URL); across processes by ``tcp-client:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from typing import Any

from bumble import gatt, hci, ll
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink, StreamPacketSink, StreamPacketSource

from firmware_protocol import gatt as binding

from .host import DeviceHost

log = logging.getLogger(__name__)

ADVERTISING_INTERVAL_MS = 100.0
"""How often the massager advertises: a controller finds it within about this long."""

LE_ACL_BYTES = 251
"""The LE ACL data a virtual controller takes from its host in one HCI packet.

251 is what a controller with LE Data Length Extension (Bluetooth 4.2 and later,
as current adapters and BLE SoCs are) reports. Bumble's own default, 27, is a
Bluetooth 4.0 controller's: its host cuts every L2CAP packet longer than 27 bytes
(a GATT value over 20) into pieces, each one more HCI packet and completion event
to handle. On this radio the pieces cost time and model no air time: at 27 the
ACK and STATUS that answer a command go as 4 pieces and the command as 2.
"""

_radios: dict[str, VirtualRadio] = {}


def register(name: str, radio: VirtualRadio) -> None:
    """Make ``radio`` reachable in this process as ``local:NAME``."""
    _radios[name] = radio


def unregister(name: str) -> None:
    """Forget the radio called ``name`` (no error if there is none)."""
    _radios.pop(name, None)


def find(name: str) -> VirtualRadio | None:
    """The radio registered in this process as ``name``, if any."""
    return _radios.get(name)


def _static_address(seed: str) -> str:
    """A random static address (top two bits set) that stays the same for one ``seed``."""
    digest = bytearray(hashlib.sha256(seed.encode()).digest()[:6])
    digest[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in digest)


class VirtualRadio(LocalLink):
    """The air between virtual Bluetooth controllers, with a notion of range.

    ``le_acl_bytes`` is each controller's LE ACL buffer (`LE_ACL_BYTES`); 27 makes
    them Bluetooth 4.0 controllers, whose hosts cut longer PDUs into pieces.
    """

    def __init__(self, *, le_acl_bytes: int = LE_ACL_BYTES) -> None:
        super().__init__()
        self.le_acl_bytes = le_acl_bytes
        self._away: set[Controller] = set()
        self._numbers = itertools.count(1)

    def new_controller(self, name: str, address: str | None = None) -> Controller:
        """A fresh virtual controller on this radio (a Bluetooth adapter, for the host on it)."""
        number = next(self._numbers)
        address = address or f"D0:00:00:00:{number >> 8:02X}:{number & 0xFF:02X}"
        controller = Controller(name, link=self, public_address=address)
        # Read by the host when it powers on (LE Read Buffer Size): set before that.
        controller.le_acl_data_packet_length = self.le_acl_bytes
        return controller

    def new_device(self, name: str, address: str | None = None) -> tuple[Controller, Device]:
        """A Bumble device (host and controller, in this process) on a fresh controller."""
        controller = self.new_controller(name, address)
        device = Device(
            name=name,
            address=hci.Address(controller.public_address.to_string(False)),
            host=Host(controller, AsyncPipeSink(controller)),
        )
        return controller, device

    def out_of_range(self, controller: Controller) -> None:
        """``controller`` can no longer be heard: its links time out, its advertising is lost."""
        self._away.add(controller)
        self.drop_connections(controller, hci.HCI_CONNECTION_TIMEOUT_ERROR)

    def in_range(self, controller: Controller) -> None:
        """``controller`` can be heard again."""
        self._away.discard(controller)

    def drop_connections(self, controller: Controller, reason: int) -> None:
        """End every LE connection of ``controller`` at once, on both ends, with ``reason``."""
        for connection in list(controller.le_connections.values()):
            peer = self.find_le_controller(connection.peer_address)
            controller.on_le_disconnected(connection, reason)
            if peer is None:
                continue
            for theirs in list(peer.le_connections.values()):
                if theirs.peer_address == connection.self_address:
                    peer.on_le_disconnected(theirs, reason)

    def remove(self, controller: Controller) -> None:
        """Take ``controller`` off the radio (its adapter unplugged): its peers see a timeout."""
        self.drop_connections(controller, hci.HCI_CONNECTION_TIMEOUT_ERROR)
        self._away.discard(controller)
        with contextlib.suppress(KeyError):
            self.remove_controller(controller)

    def _heard(self, *controllers: Controller | None) -> bool:
        return not any(c in self._away for c in controllers if c is not None)

    # The LocalLink hooks, filtered by range (what Bumble's controllers call).
    def send_advertising_pdu(  # noqa: D102
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        if self._heard(sender_controller):
            loop = asyncio.get_running_loop()
            for controller in self.controllers:
                if controller is not sender_controller and controller not in self._away:
                    loop.call_soon(controller.on_ll_advertising_pdu, packet)

    def send_acl_data(  # noqa: D102
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: Any,
        data: bytes,
    ) -> None:
        if self._heard(sender_controller, self.find_le_controller(destination_address)):
            super().send_acl_data(sender_controller, destination_address, transport, data)

    def send_ll_control_pdu(  # noqa: D102
        self, sender_address: hci.Address, receiver_address: hci.Address, packet: ll.ControlPdu
    ) -> None:
        sender, receiver = (self.find_le_controller(a) for a in (sender_address, receiver_address))
        if self._heard(sender, receiver):
            super().send_ll_control_pdu(sender_address, receiver_address, packet)


class _HciClient(asyncio.Protocol):
    """One TCP connection speaking HCI to its own virtual controller."""

    def __init__(self, server: HciServer) -> None:
        self.server = server
        self.source = StreamPacketSource()
        self.controller: Controller | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.joined.add(self)
        self.controller = self.server.radio.new_controller("remote")
        self.source.set_packet_sink(self.controller)
        self.controller.host = StreamPacketSink(transport)
        log.info("a controller joined the radio from %s", transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        self.source.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.joined.discard(self)
        if self.controller is not None:
            self.controller.host = None
            self.server.radio.remove(self.controller)
            self.controller = None
            log.info("a controller left the radio")


class HciServer:
    """Lets other processes join a `VirtualRadio` over TCP, one virtual controller each."""

    def __init__(self, radio: VirtualRadio) -> None:
        self.radio = radio
        self.joined: set[_HciClient] = set()
        self._server: asyncio.Server | None = None
        self.host = ""
        self.port = 0

    @property
    def spec(self) -> str:
        """The Bumble transport a controller in another process opens to join the radio."""
        return f"tcp-client:{self.host}:{self.port}"

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (port 0: any free one) and return `spec`."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _HciClient(self), host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self.spec

    async def close(self) -> None:
        """Stop listening and drop every joined controller."""
        if self._server is not None:
            self._server.close()
            for client in list(self.joined):
                if client.transport is not None:
                    client.transport.abort()
            await self._server.wait_closed()
            self._server = None


class BlePeripheral:
    """A `DeviceHost` served over GATT on a virtual radio, as a BLE massager is.

    The firmware's byte stream goes out as notifications on the TX
    characteristic, cut to the connection's ATT MTU, and what the controller
    writes to RX goes in. A disconnection is a link loss the firmware sees at
    once. Advertising stops while a controller is connected and comes back when
    it leaves.
    """

    def __init__(
        self,
        host: DeviceHost,
        radio: VirtualRadio,
        *,
        name: str | None = None,
        advertising_interval_ms: float = ADVERTISING_INTERVAL_MS,
        max_mtu: int = binding.PREFERRED_ATT_MTU,
    ) -> None:
        self.host = host
        self.radio = radio
        config = host.config
        self.name = name or config.ble_name
        self.address = _static_address(config.serial)
        self.advertising_interval_ms = advertising_interval_ms
        self.max_mtu = max_mtu
        self.connections = 0
        self.writes = 0
        self.notifications = 0
        self.controller, self.device = radio.new_device(self.name, self.address)
        # The most this end accepts in the MTU exchange: a small one tests small values.
        self.device.gatt_server.max_mtu = max_mtu
        self._connection: Connection | None = None
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._tx = gatt.Characteristic(
            binding.TX_UUID,
            gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.Permissions(0),
            b"",
        )
        self._battery: gatt.Characteristic[bytes] = gatt.Characteristic(
            binding.BATTERY_LEVEL_UUID,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.Permissions.READABLE,
            gatt.CharacteristicValue(read=self._read_battery),
        )
        self.device.add_services(self._services())

    def _services(self) -> list[gatt.Service]:
        config = self.host.config
        props, readable = gatt.Characteristic.Properties, gatt.Characteristic.Permissions.READABLE
        rx: gatt.Characteristic[bytes] = gatt.Characteristic(
            binding.RX_UUID,
            props.WRITE_WITHOUT_RESPONSE | props.WRITE,
            gatt.Characteristic.Permissions.WRITEABLE,
            gatt.CharacteristicValue(write=self._written),
        )

        def text(uuid: str, value: str) -> gatt.Characteristic[bytes]:
            return gatt.Characteristic(uuid, props.READ, readable, value.encode())

        return [
            gatt.Service(binding.SERVICE_UUID, [rx, self._tx]),
            gatt.Service(binding.BATTERY_SERVICE_UUID, [self._battery]),
            gatt.Service(
                binding.DEVICE_INFORMATION_UUID,
                [
                    text(binding.MANUFACTURER_NAME_UUID, "massager-ctl simulator"),
                    text(binding.MODEL_NUMBER_UUID, config.model),
                    text(binding.SERIAL_NUMBER_UUID, config.serial),
                    text(binding.FIRMWARE_REVISION_UUID, config.firmware),
                ],
            ),
        ]

    @property
    def advertising_data(self) -> bytes:
        """Flags, the service UUID a scan filters on, and the name (8 bytes fit beside them)."""
        return bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
                    (
                        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                        bytes(UUID(binding.SERVICE_UUID)),
                    ),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
                ]
            )
        )

    @property
    def scan_response_data(self) -> bytes:
        """The name again, for scanners that look for it in the scan response."""
        return bytes(AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode())]))

    async def start(self) -> None:
        """Power the radio on and start advertising."""
        self.device.on(self.device.EVENT_CONNECTION, self._connected)
        await self.device.power_on()
        await self.advertise()

    async def advertise(self) -> None:
        """Advertise (again) so that a controller can find and connect to the massager."""
        await self.device.start_advertising(
            advertising_data=self.advertising_data,
            scan_response_data=self.scan_response_data,
            auto_restart=True,
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )

    async def stop_advertising(self) -> None:
        """Stop advertising: no new controller can find or connect to the massager."""
        await self.device.stop_advertising()

    async def stop(self) -> None:
        """End any connection and power the radio off."""
        self._hang_up()
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        self.radio.remove(self.controller)
        with contextlib.suppress(Exception):
            await self.device.power_off()

    def out_of_range(self) -> None:
        """Carry the massager out of range: its link times out and nobody hears it."""
        self.radio.out_of_range(self.controller)

    def in_range(self) -> None:
        """Bring the massager back within range."""
        self.radio.in_range(self.controller)

    def drop_link(self) -> None:
        """End the connection as a radio fault would (supervision timeout on both ends)."""
        self.radio.drop_connections(self.controller, hci.HCI_CONNECTION_TIMEOUT_ERROR)

    @property
    def connected(self) -> bool:
        """Whether a controller is connected."""
        return self._connection is not None

    def _connected(self, connection: Connection) -> None:
        if self._connection is not None:
            # Advertising stops on a connection, so this is a second central that
            # raced the first; one controller at a time, as on the serial line.
            asyncio.get_running_loop().create_task(connection.disconnect())
            return
        self._connection = connection
        self.connections += 1
        log.info("controller %s connected over BLE", connection.peer_address)
        connection.on(connection.EVENT_DISCONNECTION, self._disconnected)
        self._outgoing = asyncio.Queue()
        self._sender = asyncio.get_running_loop().create_task(self._send_loop(connection))
        self.host.attach(self._outgoing.put_nowait)

    def _disconnected(self, reason: int) -> None:
        log.info("controller disconnected (%s)", hci.HCI_Constant.error_name(reason))
        self._hang_up()

    def _hang_up(self) -> None:
        if self._connection is None:
            return
        self._connection = None
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        self.host.detach()

    def _written(self, connection: Connection, value: bytes) -> None:
        if connection is self._connection:
            self.writes += 1
            self.host.feed(bytes(value))

    def _read_battery(self, _connection: Connection | None) -> bytes:
        firmware = self.host.firmware
        return bytes([max(0, min(100, round(firmware.plant.battery_pct)))])

    async def _send_loop(self, connection: Connection) -> None:
        # One task per connection keeps notifications in stream order.
        while True:
            data = await self._outgoing.get()
            for piece in binding.chunks(data, binding.value_size(connection.att_mtu)):
                await self.device.notify_subscriber(connection, self._tx, piece)
                self.notifications += 1


class BleService:
    """A massager on its own virtual radio, which other processes join over TCP.

    What ``massager-sim serve --ble`` runs: `open` returns the device URL, with the
    radio's location in it, that massager-ctl uses as it is.
    """

    def __init__(self, host: DeviceHost) -> None:
        self.radio = VirtualRadio()
        self.peripheral = BlePeripheral(host, self.radio)
        self.server = HciServer(self.radio)

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start advertising, listen for controllers, and return the device URL."""
        spec = await self.server.open(host, port)
        await self.peripheral.start()
        return f"ble://{self.peripheral.address}?hci={spec}"

    async def close(self) -> None:
        """Stop serving: joined controllers lose the massager as if it were switched off."""
        await self.peripheral.stop()
        await self.server.close()
