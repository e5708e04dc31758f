"""The BLE transport on bleak, against the simulator as a GATT peripheral on a virtual radio.

Everything above the radio is real: bleak's public API, bleak-retry-connector,
our bleak backend over a Bumble central, Bumble's host and GATT stacks on both
ends. The radio (Bumble's virtual controllers on one link) is where hardware
would be. All of it runs on the event loop, so these tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError
from bumble import gatt
from bumble.core import UUID, AdvertisingData
from bumble.hci import OwnAddressType

from firmware_protocol import (
    Ack,
    EndReason,
    Frame,
    FrameDecoder,
    Hello,
    MessageType,
    SessionState,
    decode_message,
)
from firmware_protocol import gatt as binding
from massager_ctl.device import Massager
from massager_ctl.errors import (
    BluetoothUnavailable,
    ConnectFailed,
    ConnectTimedOut,
    DeviceNotFound,
)
from massager_ctl.programs.runner import Outcome, ProgramResult
from massager_ctl.programs.supervisor import LinkNotice, ProgramSupervisor, ResumePolicy
from massager_ctl.transports import bumble_bleak
from massager_ctl.transports.base import TransportClosed
from massager_ctl.transports.ble import BleTransport, scan
from massager_ctl.transports.bumble_bleak import BumbleBleakClient, BumbleBleakScanner
from massager_ctl.urls import BleAddress, parse_device_url
from simulator import Firmware
from simulator import ble as virtual
from simulator.config import DeviceConfig
from simulator.host import DeviceHost
from tests.massager_ctl.test_supervisor import TEN_MINUTES
from tests.served import pair_in_process

_names = itertools.count()


@dataclass
class Air:
    """A massager advertising on a virtual radio registered in this process."""

    radio: virtual.VirtualRadio
    hci: str
    host: DeviceHost
    peripheral: virtual.BlePeripheral

    @property
    def url(self) -> str:
        return f"ble://{self.peripheral.address}?hci={self.hci}"

    def firmware(self) -> Firmware:
        self.host.sync()
        return self.host.firmware


@contextlib.asynccontextmanager
async def on_air(
    mtu: int = binding.PREFERRED_ATT_MTU,
    *,
    paired: bool = True,
    le_acl_bytes: int = virtual.LE_ACL_BYTES,
) -> AsyncIterator[Air]:
    """A massager advertising on a fresh radio (made inside the test: virtual time).

    With ``paired`` this test's controller has paired with it (one connection).
    """
    radio = virtual.VirtualRadio(le_acl_bytes=le_acl_bytes)
    name = f"test{next(_names)}"
    virtual.register(name, radio)
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    peripheral = virtual.BlePeripheral(host, radio, advertising_interval_ms=50, max_mtu=mtu)
    await peripheral.start()
    try:
        air = Air(radio, f"local:{name}", host, peripheral)
        if paired:
            await pair_in_process(host, air.url)
            await asyncio.sleep(0.1)  # the pairing connection is gone, advertising again
        yield air
    finally:
        await peripheral.stop()
        host.stop()
        virtual.unregister(name)


async def test_a_scan_lists_massagers_by_service_with_name_address_and_rssi() -> None:
    async with on_air() as air:
        # A heart-rate monitor on the same radio is not a massager.
        controller, other = air.radio.new_device("HR", "C1:00:00:00:00:01")
        await other.power_on()
        await other.start_advertising(
            advertising_data=bytes(AdvertisingData([
                (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, bytes(UUID("180D"))),
                (AdvertisingData.COMPLETE_LOCAL_NAME, b"AirLeg-HR"),
            ])),
            advertising_interval_min=50,
            advertising_interval_max=50,
        )  # fmt: skip
        [seen] = await scan(timeout_s=1.0, hci=air.hci)
        assert seen.name == "AirLeg"
        assert seen.address == air.peripheral.address
        assert seen.rssi < 0
        assert seen.url == air.url
        everything = await BleakScanner.discover(
            timeout=1.0, backend=BumbleBleakScanner, hci=air.hci
        )
        assert {d.address for d in everything} == {air.peripheral.address, "C1:00:00:00:00:01"}
        air.radio.remove(controller)


@pytest.mark.parametrize("target", ["address", "prefix"])
async def test_connect_by_address_or_by_name_prefix(target: str) -> None:
    async with on_air(paired=False) as air:  # looking needs no pairing
        url = air.url if target == "address" else f"ble://airl?hci={air.hci}"
        async with Massager.connect(url) as massager:
            assert massager.info.model == "AirLeg Sim 8"
            assert massager.info.serial == "SIM-000001"
            status = await massager.refresh()
            assert status.state == "idle"
        assert air.peripheral.connections == 1
        await asyncio.sleep(0.1)
        assert not air.peripheral.connected


async def test_the_standard_services_are_there() -> None:
    async with on_air() as air:
        [device] = [d for d in await BleakScanner.discover(
            timeout=0.5, backend=BumbleBleakScanner, hci=air.hci)]  # fmt: skip
        async with BleakClient(device, backend=BumbleBleakClient) as client:
            model = await client.read_gatt_char(binding.MODEL_NUMBER_UUID)
            assert model.decode() == "AirLeg Sim 8"
            firmware = await client.read_gatt_char(binding.FIRMWARE_REVISION_UUID)
            assert firmware.decode() == "sim-0.1.0"
            battery = await client.read_gatt_char(binding.BATTERY_LEVEL_UUID)
            assert 0 <= battery[0] <= 100
            rx = client.services.get_characteristic(binding.RX_UUID)
            tx = client.services.get_characteristic(binding.TX_UUID)
            assert rx is not None
            assert "write-without-response" in rx.properties
            assert tx is not None
            assert "notify" in tx.properties


async def whole_program(
    air: Air, policy: ResumePolicy | None = None
) -> tuple[asyncio.Task[ProgramResult], list[LinkNotice]]:
    notices: list[LinkNotice] = []
    supervisor = ProgramSupervisor(
        parse_device_url(air.url), TEN_MINUTES, policy=policy, on_link=notices.append
    )
    task = asyncio.create_task(supervisor.run())
    return task, notices


@pytest.mark.parametrize(("mtu", "le_acl_bytes"), [(23, 251), (247, 251), (247, 27)])
async def test_a_whole_program_at_small_and_large_mtus_and_acl_buffers(
    mtu: int, le_acl_bytes: int
) -> None:
    # At 27 bytes of ACL buffer (a Bluetooth 4.0 controller) the hosts cut the long
    # values into pieces below GATT, and the controllers put them back together.
    async with on_air(mtu, le_acl_bytes=le_acl_bytes) as air:
        queue = air.peripheral.device.host.le_acl_packet_queue
        assert queue is not None
        assert queue.max_packet_size == le_acl_bytes
        task, _ = await whole_program(air)
        result = await task
        assert result.outcome is Outcome.COMPLETED
        assert result.resumes == 0
        fw = air.firmware()
        assert fw.state is SessionState.IDLE
        assert fw.last_end is EndReason.STOPPED
        transport = BleTransport(parse_device_url(air.url))  # type: ignore[arg-type]
        await transport.open()
        assert transport.mtu == mtu
        await transport.close()
        # Every value fits the MTU (the peripheral cuts them so); at 23 the long frames
        # (CAPABILITIES is over 100 bytes) were spread over several notifications.
        if mtu == 23:
            assert air.peripheral.notifications > fw.conn.stats.frames_sent


async def test_a_frame_split_over_many_writes_and_two_frames_in_one() -> None:
    """A controller may cut the stream anywhere; the device reassembles it."""
    async with on_air() as air:
        [device] = await BleakScanner.discover(timeout=0.5, backend=BumbleBleakScanner, hci=air.hci)
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        decoder = FrameDecoder()

        def notified(_: object, data: bytearray) -> None:
            for frame in decoder.feed(bytes(data)):
                replies.put_nowait(frame)

        async with BleakClient(device, backend=BumbleBleakClient) as client:
            await client.start_notify(binding.TX_UUID, notified)
            hello = Hello("split").encode_payload()
            wire = b"\x00" + Frame(1, MessageType.HELLO, hello).encode()
            for byte in wire:  # one byte per write
                await client.write_gatt_char(binding.RX_UUID, bytes([byte]), response=False)
            first = await asyncio.wait_for(replies.get(), 1)
            assert first.msg_type == MessageType.CAPABILITIES
            # Two GET_STATUS frames glued into one write, the second cut in half.
            two = (
                Frame(2, MessageType.GET_STATUS, b"").encode()
                + Frame(3, MessageType.GET_STATUS, b"").encode()
            )
            await client.write_gatt_char(binding.RX_UUID, two[:-4], response=False)
            await client.write_gatt_char(binding.RX_UUID, two[-4:], response=False)
            acked: list[int] = []
            while 3 not in acked:
                frame = await asyncio.wait_for(replies.get(), 1)
                message = decode_message(frame.msg_type, frame.payload)
                if isinstance(message, Ack):
                    acked.append(message.ref_seq)
            assert acked == [2, 3]  # each frame arrived whole, once, in order


async def test_a_dropped_link_vents_the_device_and_the_program_resumes() -> None:
    async with on_air() as air:
        task, notices = await whole_program(air)
        await asyncio.sleep(120)
        assert air.firmware().state is SessionState.RUNNING
        air.peripheral.drop_link()
        await asyncio.sleep(0)
        fw = air.firmware()
        assert fw.state is SessionState.IDLE  # the device vented at once, not after its watchdog
        assert fw.last_end is EndReason.LINK_LOST
        result = await task
        assert result.outcome is Outcome.COMPLETED
        assert result.resumes == 1
        assert [n.event for n in notices] == ["connected", "lost", "back"]
        assert air.peripheral.connections == 1 + 2  # the pairing, then the program's two


async def test_out_of_range_past_the_window_ends_the_program() -> None:
    async with on_air() as air:
        policy = ResumePolicy(window_s=30)
        task, notices = await whole_program(air, policy)
        await asyncio.sleep(60)
        loop = asyncio.get_running_loop()
        air.peripheral.out_of_range()
        lost_at = loop.time()
        await asyncio.sleep(0)
        assert air.firmware().last_end is EndReason.LINK_LOST
        result = await task
        assert result.outcome is Outcome.LINK_LOST
        assert 30 <= loop.time() - lost_at < 60
        assert notices[-1].event == "gave_up"


async def test_back_in_range_within_the_window_resumes() -> None:
    async with on_air() as air:
        task, notices = await whole_program(air)
        await asyncio.sleep(60)
        air.peripheral.out_of_range()
        await asyncio.sleep(10)
        assert air.firmware().state is SessionState.IDLE
        air.peripheral.in_range()
        result = await task
        assert result.outcome is Outcome.COMPLETED
        assert result.resumes == 1
        assert [n.event for n in notices] == ["connected", "lost", "back"]


async def test_a_massager_that_stopped_advertising_is_not_found() -> None:
    async with on_air() as air:
        await air.peripheral.stop_advertising()
        transport = BleTransport(parse_device_url(air.url), scan_timeout_s=2)  # type: ignore[arg-type]
        with pytest.raises(
            DeviceNotFound, match="was not heard advertising within 2 s: out of range"
        ):
            await transport.open()
        with pytest.raises(ConnectTimedOut, match="did not open within 1 s"):
            async with Massager.connect(air.url, timeout_s=1):
                pass


async def test_one_controller_at_a_time() -> None:
    async with on_air() as air, Massager.connect(air.url):
        # Connected, the massager no longer advertises: a second controller cannot find it.
        second = BleTransport(BleAddress(name_prefix="AirLeg", hci=air.hci), scan_timeout_s=1)
        with pytest.raises(DeviceNotFound, match="not heard advertising"):
            await second.open()


@pytest.mark.parametrize(
    ("hci", "message"),
    [
        ("local:nowhere", "Bluetooth is unavailable: there is no virtual radio called 'nowhere'"),
        ("tcp-client:127.0.0.1:1", "cannot reach the Bluetooth radio tcp-client:127.0.0.1:1"),
        ("bogus:thing", "Bluetooth is unavailable"),
    ],
)
@pytest.mark.looptime(False)
async def test_an_unusable_radio_is_a_plain_error(hci: str, message: str) -> None:
    address = BleAddress(address="C0:00:00:00:00:01", hci=hci)
    with pytest.raises(BluetoothUnavailable, match=message):
        await BleTransport(address, scan_timeout_s=1).open()
    with pytest.raises(BluetoothUnavailable, match=message):
        await scan(timeout_s=0.5, hci=hci)


async def test_a_peripheral_without_the_massager_characteristics_is_refused() -> None:
    async with on_air() as air:
        # Advertises the massager service UUID, but its service is empty.
        controller, fake = air.radio.new_device("Fake", "C2:00:00:00:00:02")
        fake.add_service(gatt.Service(binding.SERVICE_UUID, []))
        await fake.power_on()
        await fake.start_advertising(
            advertising_data=bytes(AdvertisingData([
                (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                 bytes(UUID(binding.SERVICE_UUID))),
                (AdvertisingData.COMPLETE_LOCAL_NAME, b"Fake"),
            ])),
            advertising_interval_min=50,
            advertising_interval_max=50,
        )  # fmt: skip
        address = BleAddress(name_prefix="Fake", hci=air.hci)
        with pytest.raises(ConnectFailed, match="has no massager service"):
            await BleTransport(address, scan_timeout_s=1).open()
        air.radio.remove(controller)


async def test_a_disconnection_after_connecting_ends_the_link() -> None:
    async with on_air() as air:
        transport = BleTransport(parse_device_url(air.url))  # type: ignore[arg-type]
        await transport.open()
        air.peripheral.out_of_range()
        with pytest.raises(TransportClosed, match="disconnected"):
            await transport.read()
        with pytest.raises(TransportClosed):
            transport.write(b"\x00")
        await transport.close()


@pytest.mark.parametrize("error", [BleakError("GATT operation failed"), EOFError()])
async def test_a_failing_write_ends_the_link_and_closing_still_disconnects(
    error: Exception,
) -> None:
    async with on_air() as air:
        transport = BleTransport(parse_device_url(air.url))  # type: ignore[arg-type]
        await transport.open()
        assert air.peripheral.connected

        async def broken(*_: object) -> None:
            raise error

        # Where the operating system's stack would fail: below bleak, in its backend.
        backend = transport._client._backend  # type: ignore[union-attr]
        backend.write_gatt_char = broken
        transport.write(b"\x00")
        with pytest.raises(TransportClosed, match="writing to the Bluetooth massager"):
            await asyncio.wait_for(transport.read(), 1)
        with pytest.raises(TransportClosed):
            transport.write(b"\x00")
        await transport.close()  # does not raise the writer's error
        await asyncio.sleep(0.1)
        assert not air.peripheral.connected


async def test_a_name_two_massagers_share_is_refused() -> None:
    async with on_air(paired=False) as air:
        host = DeviceHost(DeviceConfig(seed=2, serial="SIM-000002"))
        host.start()
        twin = virtual.BlePeripheral(host, air.radio, advertising_interval_ms=50)
        await twin.start()
        try:
            with pytest.raises(ConnectFailed, match=r"2 massagers in range are named AirLeg\*"):
                async with Massager.connect(f"ble://AirLeg?hci={air.hci}"):
                    pass
            assert air.peripheral.connections == twin.connections == 0
            async with Massager.connect(air.url) as massager:  # by address: no doubt
                assert massager.info.serial == "SIM-000001"
        finally:
            await twin.stop()
            host.stop()


async def test_a_public_address_is_listed_and_reached_as_it_is() -> None:
    async with on_air() as air:
        controller, public = air.radio.new_device("Pub", "C4:11:22:33:44:55")
        await public.power_on()
        await public.start_advertising(
            own_address_type=OwnAddressType.PUBLIC,
            advertising_data=air.peripheral.advertising_data,
            advertising_interval_min=50,
            advertising_interval_max=50,
        )
        urls = {seen.url for seen in await scan(timeout_s=1.0, hci=air.hci)}
        assert f"ble://C4:11:22:33:44:55?hci={air.hci}" in urls
        air.radio.remove(controller)


@pytest.mark.looptime(False)
async def test_a_port_that_is_not_a_radio_is_a_plain_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Something listens, but never answers HCI (the serial simulator's TCP port, say).
    monkeypatch.setattr(bumble_bleak, "POWER_ON_TIMEOUT_S", 1.0)
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(BluetoothUnavailable, match="did not start: no HCI answer within 1 s"):
            await scan(timeout_s=0.5, hci=f"tcp-client:127.0.0.1:{port}")
    finally:
        server.close()
