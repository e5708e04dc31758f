"""A command's round trip over BLE on the virtual radio, beside a bare Bumble GATT echo on it.

Both run on one Bumble virtual radio in this process and are sampled in turn.
The echo is a Bumble central writing 16 bytes without response to a Bumble
peripheral that notifies them straight back: the radio and both GATT stacks and
nothing else. The stack adds bleak, our bleak backend, the BLE transport, the
protocol, the Massager API and the simulated device's work for each command.
"""

from __future__ import annotations

import asyncio

from bumble import gatt
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Peer
from bumble.hci import Address

from massager_ctl.device import Massager
from massager_ctl.keystore import KeyStore
from simulator import DeviceConfig
from simulator import ble as virtual
from simulator.host import DeviceHost

from .rows import Row, WorkloadFailed, check_intensity, in_turn, latency_rows

ECHO_BYTES = b"0123456789abcdef"
ECHO_SERVICE = "0000ec00-0000-1000-8000-00805f9b34fb"
ECHO_IN = "0000ec01-0000-1000-8000-00805f9b34fb"
ECHO_OUT = "0000ec02-0000-1000-8000-00805f9b34fb"


class _Echo:
    """A Bumble peripheral that notifies back what is written, and a Bumble central using it."""

    async def open(self, radio: virtual.VirtualRadio) -> None:
        _, self.peripheral = radio.new_device("echo", "C3:00:00:00:00:03")
        self.out = gatt.Characteristic(
            ECHO_OUT, gatt.Characteristic.Properties.NOTIFY, gatt.Characteristic.Permissions(0), b""
        )
        echo_in: gatt.Characteristic[bytes] = gatt.Characteristic(
            ECHO_IN,
            gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            gatt.Characteristic.Permissions.WRITEABLE,
            gatt.CharacteristicValue(write=self._written),
        )
        self.peripheral.add_service(gatt.Service(ECHO_SERVICE, [echo_in, self.out]))
        await self.peripheral.power_on()
        await self.peripheral.start_advertising(
            advertising_data=bytes(
                AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, b"echo")])
            ),
            advertising_interval_min=20,
            advertising_interval_max=20,
        )
        _, self.central = radio.new_device("echo-central", "C3:00:00:00:00:04")
        await self.central.power_on()
        connection = await self.central.connect(Address("C3:00:00:00:00:03"))
        peer = Peer(connection)
        await peer.request_mtu(247)
        await peer.discover_services()
        for service in peer.services:
            await service.discover_characteristics()
        [self.echo_in] = peer.get_characteristics_by_uuid(UUID(ECHO_IN))
        [out] = peer.get_characteristics_by_uuid(UUID(ECHO_OUT))
        self.arrived: asyncio.Queue[bytes] = asyncio.Queue()
        await out.subscribe(self.arrived.put_nowait)

    def _written(self, connection: Connection, value: bytes) -> None:
        asyncio.get_running_loop().create_task(
            self.peripheral.notify_subscriber(connection, self.out, value)
        )

    async def round_trip(self) -> bytes:
        """Write the 16 bytes and return what is notified back."""
        await self.echo_in.write_value(ECHO_BYTES, with_response=False)
        return await self.arrived.get()


async def side_by_side(count: int) -> tuple[list[float], list[float]]:
    """(stack, echo) samples, taken in turn on one virtual radio.

    Raises:
        WorkloadFailed: an echo came back changed, or a command is not the device's state.
    """
    radio = virtual.VirtualRadio()
    virtual.register("bench", radio)
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    massager = virtual.BlePeripheral(host, radio, advertising_interval_ms=20)
    await massager.start()
    echo = _Echo()
    await echo.open(radio)
    echoed = b""

    async def bare(_: int) -> None:
        nonlocal echoed
        echoed = await echo.round_trip()

    def check(i: int) -> None:
        if echoed != ECHO_BYTES:
            raise WorkloadFailed(f"the GATT echo sent {ECHO_BYTES!r} and got {echoed!r} back")
        check_intensity(host.firmware, 1 + i % 3)

    try:
        host.open_pairing()  # paired, as a user's is: the commands are signed
        url = f"ble://{massager.address}?hci=local:bench"
        async with Massager.connect(url, keys=KeyStore(None)) as connected:
            await connected.pair()
            if not connected.authenticated:
                raise WorkloadFailed("the ble:// link is not authenticated after pairing")
            return await in_turn(count, bare, lambda i: connected.set_intensity(1 + i % 3), check)
    finally:
        await massager.stop()
        host.stop()
        virtual.unregister("bench")


def measure(count: int) -> list[Row]:
    """The p50 and p99 rows for BLE on the virtual radio, ``count`` samples each."""
    measured, baseline = asyncio.run(side_by_side(count))
    return latency_rows("command round trip, ble:// on the virtual radio", measured, baseline,
                        "bare Bumble GATT echo (16 bytes) on the same radio, in turn",
                        scale=1e6, unit="us")  # fmt: skip
