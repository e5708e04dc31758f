"""The serial transport against the simulator on a real pseudo-terminal and a real TCP port.

Both ends run in this process on one event loop, but every byte goes through
the kernel: pyserial opens /dev/pts/N as it would open /dev/ttyUSB0. These
tests use real time (a pty cannot be driven by virtual time), so their
programs last seconds.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator

import pytest

from firmware_protocol import EndReason, SessionState
from massager_ctl.device import Massager
from massager_ctl.errors import ConnectFailed, DeviceInUse
from massager_ctl.programs.profiles import Profile
from massager_ctl.programs.runner import Outcome
from massager_ctl.programs.supervisor import LinkNotice, ProgramSupervisor, ResumePolicy
from massager_ctl.transports.faults import FaultyTransport, LinkFaults
from massager_ctl.transports.serial import SerialTransport
from massager_ctl.urls import SerialAddress, SocketAddress, parse_device_url
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import PtyEndpoint, TcpEndpoint
from tests.served import pair_in_process

pytestmark = pytest.mark.looptime(False)


def seconds_profile(*steps: tuple[str, int, float]) -> Profile:
    return Profile.model_validate(
        {
            "name": "short",
            "title": "Short",
            "description": "d",
            "why": "w",
            "steps": [{"mode": m, "intensity": i, "minutes": s / 60} for m, i, s in steps],
        }
    )


@pytest.fixture
async def pty() -> AsyncIterator[PtyEndpoint]:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = PtyEndpoint(host)
    await pair_in_process(host, endpoint.open())
    yield endpoint
    endpoint.close()
    host.stop()


@pytest.fixture
async def tcp() -> AsyncIterator[TcpEndpoint]:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = TcpEndpoint(host)
    await pair_in_process(host, await endpoint.open("127.0.0.1", 0))
    yield endpoint
    await endpoint.close()
    host.stop()


async def test_a_session_runs_over_a_pseudo_terminal(pty: PtyEndpoint) -> None:
    async with Massager.connect(pty.url) as m:
        assert isinstance(m.transport, SerialTransport)
        await m.start("wave", 2, duration_s=10)
        await m.wait_for(lambda s: s.peak_mmhg > 20, timeout_s=5)
        await m.stop()
        await m.wait_vented()
        stats = m.link_stats
    # HELLO, START, STOP and keepalives while the chambers fill (about 2 s at 4 a second).
    assert stats.frames_sent >= 6
    assert stats.frames > 10
    assert stats.crc_errors == stats.malformed == 0
    assert pty.host.firmware.last_end == EndReason.STOPPED


async def test_a_burst_of_garbage_then_valid_frames(pty: PtyEndpoint) -> None:
    rng = random.Random(3)
    garbage = bytes(rng.randrange(256) for _ in range(600))
    async with Massager.connect(pty.url) as m:
        # Noise on the line toward the controller, below the transport.
        os.write(pty._master, garbage)
        status = await m.refresh()
        assert status.state == "idle"
        ours = m.link_stats
        assert ours.crc_errors + ours.malformed > 0
        assert ours.resyncs > 0
        # And toward the device: it drops the noise and goes on answering.
        m.transport.write(garbage)
        await m.set_intensity(3)
        await m.start("pulse", 1, duration_s=5)
        assert (await m.refresh()).state == "running"
    theirs = pty.host.firmware.conn.stats
    assert theirs.crc_errors + theirs.malformed > 0
    assert theirs.resyncs > 0


async def test_bytes_delivered_one_at_a_time(pty: PtyEndpoint) -> None:
    one = LinkFaults(split=1)
    link = FaultyTransport(SerialTransport(SerialAddress(path=pty.path)), rx=one, tx=one)
    async with Massager.connect(pty.url, transport=link) as m:
        await m.start("wave", 1, duration_s=5)
        await m.set_intensity(2)
        status = await m.refresh()
        await m.stop()
        stats = m.link_stats
    assert status.state == "running"
    assert status.intensity == 2
    # Every byte went out as a write of its own, and came in as a read of its own.
    assert link.tx_pieces == stats.bytes_sent > 50
    assert link.rx_pieces == stats.bytes > 100


async def test_corrupted_and_dropped_bytes_do_not_stop_a_program(pty: PtyEndpoint) -> None:
    noisy = LinkFaults(drop=0.03, corrupt=0.03, split=5)
    link = FaultyTransport(SerialTransport(SerialAddress(path=pty.path)), rx=noisy, tx=noisy)
    supervisor = ProgramSupervisor(
        pty.url, seconds_profile(("wave", 1, 2), ("pulse", 2, 2)), open_link=lambda: link
    )
    result = await supervisor.run()
    assert result.outcome == Outcome.COMPLETED
    assert result.steps_done == 2


async def test_the_port_vanishing_mid_program_ends_it_after_the_window(pty: PtyEndpoint) -> None:
    notices: list[LinkNotice] = []
    supervisor = ProgramSupervisor(
        pty.url,
        seconds_profile(("wave", 2, 20)),
        policy=ResumePolicy(window_s=1.5),
        on_link=notices.append,
    )
    asyncio.get_running_loop().call_later(1.0, pty.close)
    result = await asyncio.wait_for(supervisor.run(), 15)
    assert result.outcome == Outcome.LINK_LOST
    assert "did not come back within 1.5 s" in result.message
    lost = next(n for n in notices if n.event == "lost")
    assert "went away" in lost.message or "closed" in lost.message
    assert supervisor.attempts >= 2  # it kept trying, with waits between
    # The device's side of the cable was pulled too: it vented by itself.
    pty.host.sync()
    assert pty.host.firmware.last_end == EndReason.LINK_LOST


async def test_a_dropped_tcp_connection_comes_back_and_the_program_resumes(
    tcp: TcpEndpoint,
) -> None:
    notices: list[LinkNotice] = []
    supervisor = ProgramSupervisor(
        tcp.url,
        seconds_profile(("wave", 2, 4)),
        policy=ResumePolicy(window_s=5),
        on_link=notices.append,
    )
    asyncio.get_running_loop().call_later(1.5, tcp.drop_client)
    result = await asyncio.wait_for(supervisor.run(), 20)
    assert result.outcome == Outcome.COMPLETED
    assert result.resumes == 1
    assert result.pressure_s == pytest.approx(4, abs=1)
    assert [n.event for n in notices] == ["connected", "lost", "back"]
    assert tcp.connections == 1 + 2  # the pairing, then the program's two
    assert tcp.host.firmware.state == SessionState.IDLE


async def test_a_second_controller_on_the_same_port_is_told_it_is_in_use(
    pty: PtyEndpoint,
) -> None:
    async with Massager.connect(pty.url):
        with pytest.raises(DeviceInUse, match="in use by another program"):
            async with Massager.connect(pty.url):
                pass


async def test_a_second_controller_on_the_tcp_port_is_told_it_is_in_use(tcp: TcpEndpoint) -> None:
    async with Massager.connect(tcp.url) as first:
        with pytest.raises(DeviceInUse, match="in use by another program") as refused:
            async with Massager.connect(tcp.url, timeout_s=2):
                pass
        assert "closed by the other end" not in str(refused.value)
        assert (await first.refresh()).state == "idle"  # the first is undisturbed
    assert tcp.refused == 1


async def test_a_serial_to_network_bridge_that_says_in_use_is_understood() -> None:
    # What ser2net writes to a newcomer on a port that has its one user, then it hangs up.
    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Port already in use\r\n")
        writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DeviceInUse, match=f"127.0.0.1:{port} .*in use by another program"):
            async with Massager.connect(f"socket://127.0.0.1:{port}", timeout_s=2):
                pass
    finally:
        server.close()
        await server.wait_closed()


async def test_a_peer_that_only_hangs_up_is_not_called_in_use() -> None:
    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello there\r\n")
        writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(
            ConnectFailed, match=f"the link to socket://127.0.0.1:{port} failed"
        ) as failed:
            async with Massager.connect(f"socket://127.0.0.1:{port}", timeout_s=2):
                pass
        assert not isinstance(failed.value, DeviceInUse)
        assert "in use" not in str(failed.value)
    finally:
        server.close()
        await server.wait_closed()


async def test_missing_ports_and_closed_tcp_ports_say_so_plainly() -> None:
    with pytest.raises(ConnectFailed, match="there is no serial port /dev/ttyNOPE"):
        await SerialTransport(SerialAddress(path="/dev/ttyNOPE")).open()
    address = parse_device_url("socket://127.0.0.1:1")
    assert isinstance(address, SocketAddress)
    with pytest.raises(ConnectFailed, match="connection refused"):
        await SerialTransport(address).open()
