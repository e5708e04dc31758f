"""``massager-sim serve``: the simulated device on a pseudo-terminal or a TCP port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import BITS_PER_BYTE, TcpEndpoint, Wire
from tests.massager_ctl.test_cli import ctl, json_lines
from tests.served import serve


async def test_a_wire_takes_the_time_its_bytes_need_and_keeps_their_order() -> None:
    loop = asyncio.get_running_loop()
    arrived: list[tuple[float, bytes]] = []
    wire = Wire(lambda data: arrived.append((loop.time(), data)), baudrate=1000)
    start = loop.time()
    wire.send(b"x" * 100)  # 100 bytes of 10 bits at 1000 baud: one second
    await asyncio.sleep(0.5)
    wire.send(b"y" * 50)  # the line is still busy: it waits its turn
    await asyncio.sleep(2)
    assert [data[:1] for _, data in arrived] == [b"x", b"y"]
    assert arrived[0][0] - start == pytest.approx(100 * BITS_PER_BYTE / 1000)
    assert arrived[1][0] - start == pytest.approx(1.5)


def test_a_wire_without_a_baud_rate_delivers_at_once() -> None:
    arrived: list[bytes] = []
    Wire(arrived.append).send(b"now")
    assert arrived == [b"now"]


def test_serve_prints_the_url_first_and_stops_cleanly_on_sigterm() -> None:
    with serve("--serial", "--baud", "57600") as served:
        path = served.url.removeprefix("serial://").split("?")[0]
        assert served.url.endswith("?baudrate=57600")
        assert os.path.exists(path)
        assert served.stop(signal.SIGTERM) == 0
    assert not os.path.exists(path)  # the pseudo-terminal went with it
    with serve("--tcp", "127.0.0.1:0") as served:
        port = int(served.url.rsplit(":", 1)[1])
        assert port > 0
        assert served.stop(signal.SIGINT) == 0


def test_serve_prints_the_state_when_asked() -> None:
    with serve("--tcp", "127.0.0.1:0", "--every", "0.2") as served:
        time.sleep(1)
        assert served.stop() == 0
        log = served.stderr()
    assert log.count("idle") >= 3
    assert "battery 100%" in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --serial, --tcp HOST:PORT or --ble"),
        (["--serial", "--tcp", "127.0.0.1:0"], "give exactly one of --serial, --tcp"),
        (["--serial", "--ble"], "give exactly one of --serial, --tcp"),
        (["--ble", "--baud", "9600"], "BLE has no baud rate"),
        (["--ble", "--radio", "nowhere"], "is not HOST:PORT"),
        (["--tcp", "localhost"], "is not HOST:PORT"),
        (["--serial", "--set", "colour=red"], "no option colour"),
    ],
)
def test_serve_usage_errors(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_a_port_already_taken_is_a_plain_error() -> None:
    with serve("--tcp", "127.0.0.1:0") as served:
        taken = served.url.removeprefix("socket://")
        result = subprocess.run(
            [sys.executable, "-m", "simulator", "serve", "--tcp", taken],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on {taken}" in result.stderr


@pytest.mark.looptime(False)
async def test_a_second_controller_is_told_the_port_is_in_use_as_a_serial_bridge_does() -> None:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = TcpEndpoint(host)
    await endpoint.open("127.0.0.1", 0)
    port = int(endpoint.url.rsplit(":", 1)[1])
    try:
        _, first = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        reader, second = await asyncio.open_connection("127.0.0.1", port)
        second.write(b"\x00bytes a controller sends at once\x00")
        said = await asyncio.wait_for(reader.read(), 5)  # up to the end of the stream
        assert said == b"Port already in use\r\n"
        assert endpoint.refused == 1
        assert endpoint.connections == 1  # the first keeps the line
        second.close()
        first.close()
    finally:
        await endpoint.close()
        host.stop()


def test_a_served_simulator_announces_its_speed_in_its_firmware_version() -> None:
    with serve("--tcp", "127.0.0.1:0", "--speed", "20", paired=False) as served:
        status = ctl("status", "--device", served.url, "--json")
        assert status.returncode == 0, status.stderr
        assert json_lines(status.stdout)[-1]["info"]["firmware"] == "sim-0.1.0+20x"
    with serve("--tcp", "127.0.0.1:0", paired=False) as served:
        status = ctl("status", "--device", served.url, "--json")
        assert json_lines(status.stdout)[-1]["info"]["firmware"] == "sim-0.1.0"


def test_a_firmware_version_too_long_to_carry_the_speed_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "serve", "--tcp", "127.0.0.1:0", "--speed", "20",
         "--set", "firmware=sim-" + "9" * 28],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "too long to announce --speed 20" in result.stderr


@pytest.mark.parametrize(
    ("speed", "said"),
    [
        ("1", "pairing window open for 60 s\n"),
        ("120", "pairing window open for 60 s of device time (0.5 s of real time at 120x)"),
    ],
)
def test_the_pairing_window_says_how_long_it_is_open_in_real_time(speed: str, said: str) -> None:
    with serve("--tcp", "127.0.0.1:0", "--speed", speed, "--pairing-window", "60",
               paired=False) as served:  # fmt: skip
        assert served.stop() == 0
        log = served.stderr()
    assert said in log
