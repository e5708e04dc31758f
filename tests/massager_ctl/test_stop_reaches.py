"""Stop and vent go out whenever the line can carry them, not only after a handshake.

Found by an attack: on a line that carries the controller's bytes to the massager
but none back (a broken receive wire, a relay that drops one direction), `stop`
and `vent` waited for the massager's CAPABILITIES, which never came, and gave up
saying "Nothing was sent" while a session ran on. SPEC 7.4 has the massager take
STOP and VENT from anyone, before HELLO too: they now go out first, as soon as
the link is open, and are then confirmed over the handshake when it can be had.

Real parts: the massager served on a TCP port, a TCP relay in between, and
massager-ctl's own stop and vent over its socket transport, in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from firmware_protocol import Button, FrameDecoder, MessageType, SessionState
from massager_ctl.cli import stop_or_vent
from massager_ctl.errors import ConnectFailed, LinkError
from massager_ctl.urls import parse_device_url
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import TcpEndpoint

pytestmark = pytest.mark.looptime(False)


class OneWayRelay:
    """Passes the controller's bytes to the massager, and nothing back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.carried = asyncio.Event()
        """Set once the controller's first bytes went on to the massager."""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"socket://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, device_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, device_writer]
        while data := await reader.read(4096):
            device_writer.write(data)
            await device_writer.drain()
            self.carried.set()
        device_writer.close()


@contextlib.asynccontextmanager
async def one_way_device() -> AsyncIterator[tuple[DeviceHost, str, OneWayRelay]]:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = TcpEndpoint(host)
    await endpoint.open("127.0.0.1", 0)
    relay = OneWayRelay(int(endpoint.url.rsplit(":", 1)[1]))
    url = await relay.start()
    try:
        yield host, url, relay
    finally:
        await relay.stop()
        await endpoint.close()
        host.stop()


@pytest.mark.parametrize("action", ["stop", "vent"])
async def test_stop_and_vent_reach_a_massager_whose_answers_do_not_come_back(
    action: str,
) -> None:
    async with one_way_device() as (host, url, _relay):
        host.press(Button.POWER)  # a session started on the remote
        await asyncio.sleep(0.5)
        assert host.firmware.state != SessionState.IDLE
        with pytest.raises(ConnectFailed) as failed:
            await stop_or_vent(parse_device_url(url), action, [])
        assert host.firmware.state == SessionState.IDLE
        assert failed.value.sent_first


async def test_a_stop_whose_answer_never_came_does_not_say_nothing_was_sent() -> None:
    async with one_way_device() as (host, url, _relay):
        host.press(Button.POWER)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "massager_ctl", "stop", "--device", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 60)
        said = err.decode()
        assert process.returncode == 4, said
        assert "Nothing was sent" not in said
        assert "was sent as soon as the link opened" in said
        assert "Traceback" not in said
        assert host.firmware.state == SessionState.IDLE


class GoesQuietRelay(OneWayRelay):
    """Two-way until the massager has answered the HELLO, then nothing comes back."""

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        device_reader, device_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, device_writer]
        back = asyncio.create_task(self._back(device_reader, writer))
        self._tasks.add(back)
        while data := await reader.read(4096):
            device_writer.write(data)
        device_writer.close()

    async def _back(self, device: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder, answered = FrameDecoder(), False
        while data := await device.read(4096):
            for frame in decoder.feed(data):
                # A frame a time, as the massager sent them, so none after slips through.
                writer.write(frame.encode())
                answered = answered or frame.msg_type == MessageType.CAPABILITIES
                if answered and frame.msg_type == MessageType.STATUS:
                    return  # the STATUS after CAPABILITIES went back: nothing more


async def test_a_stop_that_went_out_twice_and_got_no_answer_does_not_say_nothing_was_sent() -> None:
    # Found by attack: only an error of the handshake knew that the first STOP went
    # out. One after it (the confirmed STOP unanswered, the massager silent) said
    # "Nothing was sent", though both STOPs had gone out and the massager stopped.
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = TcpEndpoint(host)
    await endpoint.open("127.0.0.1", 0)
    relay = GoesQuietRelay(int(endpoint.url.rsplit(":", 1)[1]))
    url = await relay.start()
    try:
        host.press(Button.POWER)
        await asyncio.sleep(0.5)
        with pytest.raises(LinkError) as failed:
            await stop_or_vent(parse_device_url(url), "stop", [])
        assert failed.value.sent_first, failed.value
        assert host.firmware.state == SessionState.IDLE
    finally:
        await relay.stop()
        await endpoint.close()
        host.stop()


async def test_ctrl_c_after_the_stop_went_out_says_so_and_ends_at_once() -> None:
    # Found by attack: once the first STOP is on the line a Ctrl-C cannot call it
    # back, but the process ended with exit 130 and no word: had it gone out or not?
    async with one_way_device() as (host, url, relay):
        host.press(Button.POWER)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "massager_ctl", "stop", "--device", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.wait_for(relay.carried.wait(), 30)  # the first STOP is on its way
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)  # pressed again, in a hurry
        _, err = await asyncio.wait_for(process.communicate(), 5)
        said = err.decode()
        assert process.returncode == 130, said
        assert "stop: interrupted; the stop had gone out as the link opened" in said
        assert "Traceback" not in said
