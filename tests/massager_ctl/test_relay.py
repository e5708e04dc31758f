"""A relay between the controller and the massager that holds frames back.

Found by a probe: a relay on TCP that held back the controller's signed
keepalives and let one out every 0.8 s, dropping STOP and VENT, kept a session
at about 80 mmHg for 154 s after the controller had gone; the lease was the only
bound. A keepalive now answers the massager's latest challenge (a STATUS's
uptime), and its watchdog runs from when that challenge was sent (SPEC 7.3): no
relay can keep a session beyond the watchdog once the controller is gone.

Real parts: the massager served on a TCP port, a TCP relay in between, and
massager-ctl's own `Massager` over its socket transport, in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine

import pytest

from firmware_protocol import (
    EndReason,
    ErrorCode,
    Frame,
    FrameDecoder,
    MessageType,
    Nak,
    SessionState,
)
from massager_ctl.device import Massager
from massager_ctl.errors import CommandRefused, LinkLost
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import TcpEndpoint
from tests.served import pair_in_process


class HoldingRelay:
    """Passes bytes both ways until told to hold; then it cuts the controller off, and
    lets out one held frame toward the massager every ``every_s`` seconds, dropping
    every STOP and VENT."""

    def __init__(self, target_port: int, every_s: float = 0.8) -> None:
        self.target_port = target_port
        self.every_s = every_s
        self.holding = False
        self.held: list[bytes] = []
        self.released: list[int] = []  # the types of the frames let out late
        self.dropped = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self._server = server
        return f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server.close()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        device_reader, device_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, device_writer]
        self._spawn(self._pipe(device_reader, writer))
        self._spawn(self._drip(device_writer))
        decoder = FrameDecoder()
        while data := await reader.read(4096):
            if not self.holding:
                device_writer.write(data)
                continue
            for frame in decoder.feed(data):
                if frame.msg_type in (MessageType.STOP, MessageType.VENT):
                    self.dropped += 1
                else:
                    self.held.append(frame.encode())
        if not self.holding:
            device_writer.close()  # a controller that left: the next one gets the line
        # Holding, the relay keeps its line to the massager open after the controller left.

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                if not self.holding:  # holding, the controller hears nothing more: it is gone
                    writer.write(data)

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            if self.holding and self.held:
                wire = self.held.pop(0)
                self.released.append(FrameDecoder().feed(wire)[0].msg_type)
                writer.write(wire)


@contextlib.asynccontextmanager
async def relayed_device() -> AsyncIterator[tuple[DeviceHost, HoldingRelay, str]]:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = TcpEndpoint(host)
    await endpoint.open("127.0.0.1", 0)
    relay = HoldingRelay(int(endpoint.url.rsplit(":", 1)[1]))
    url = await relay.start()
    try:
        await pair_in_process(host, url)  # through the relay, passing everything
        yield host, relay, url
    finally:
        await relay.stop()
        await endpoint.close()
        host.stop()


@pytest.mark.looptime(False)
async def test_a_relay_that_holds_keepalives_back_keeps_no_session_alive() -> None:
    async with relayed_device() as (host, relay, url):
        loop = asyncio.get_running_loop()
        massager_cm = Massager.connect(url)
        massager = await massager_cm.__aenter__()
        assert massager.authenticated
        await massager.start("wave", 2, duration_s=600)
        await asyncio.sleep(5)
        host.sync()
        assert host.firmware.state is SessionState.RUNNING
        assert max(host.firmware.snapshot().pressures_mmhg) > 40
        relay.holding = True  # from now on nothing the controller sends arrives in time
        gone = loop.time()
        leaving = asyncio.ensure_future(massager_cm.__aexit__(None, None, None))  # STOP: dropped
        ended_at = None
        while ended_at is None and loop.time() < gone + 20:
            await asyncio.sleep(0.02)
            host.sync()
            if host.firmware.state is not SessionState.RUNNING:
                ended_at = loop.time()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(leaving, 5)
        assert ended_at is not None, "the session outlived the controller by 20 s"
        assert host.firmware.last_end is EndReason.LINK_LOST
        assert relay.dropped >= 1, "the controller's STOP was dropped"
        assert MessageType.KEEPALIVE in relay.released, "held keepalives were let out late"
        watchdog = host.firmware.config.watchdog_ms / 1000
        # Within the watchdog of the controller going, and a little for this machine.
        assert ended_at - gone <= watchdog + 0.3, f"ended {ended_at - gone:.2f} s after"


class NakForgingRelay(HoldingRelay):
    """Passes everything, but answers each signed HELLO at once with a forged, unsigned
    NAK NOT_AUTHENTICATED, ahead of the massager's own answer."""

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        device_reader, device_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, device_writer]
        self._spawn(self._pipe(device_reader, writer))
        decoder = FrameDecoder()
        while data := await reader.read(4096):
            for frame in decoder.feed(data):
                if frame.msg_type == MessageType.HELLO and frame.auth is not None:
                    nak = Nak(frame.seq, ErrorCode.NOT_AUTHENTICATED)
                    writer.write(Frame(1, nak.TYPE, nak.encode_payload()).encode())
            device_writer.write(data)
        device_writer.close()


@pytest.mark.looptime(False)
async def test_pairing_through_a_line_that_forges_refusals_is_never_called_done() -> None:
    # Found by an attack: one forged NAK to the signed HELLO made pair print "paired
    # ... the link is NOT authenticated" and exit 0.
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = TcpEndpoint(host)
    await endpoint.open("127.0.0.1", 0)
    relay = NakForgingRelay(int(endpoint.url.rsplit(":", 1)[1]))
    url = await relay.start()
    try:
        host.open_pairing()
        async with Massager.connect(url) as massager:
            with pytest.raises(LinkLost, match="someone may be on the line"):
                await massager.pair("test")
            assert not massager.authenticated
            assert massager.auth_problem is not None
            assert "or someone on the line said so" in massager.auth_problem
            with pytest.raises(CommandRefused, match="not paired"):
                await massager.start("wave", 1, duration_s=60)  # and nothing starts
        host.sync()
        assert host.firmware.state is SessionState.IDLE
    finally:
        await relay.stop()
        await endpoint.close()
        host.stop()
