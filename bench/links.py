"""A command's round trip over a real pty and real TCP, beside a bare 16-byte echo over the same.

Both sides run on one event loop in this process, for the stack and for its
baseline alike, so the ratio compares like with like: the baseline is the
kernel's pty (or loopback TCP) and asyncio's readiness callbacks with nothing
else; the stack adds pyserial-asyncio-fast, the protocol, the Massager API and
the simulated device's work for each command (its control step and STATUS).
"""

from __future__ import annotations

import asyncio
import os
import tty

from massager_ctl.device import Massager
from massager_ctl.keystore import KeyStore
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import PtyEndpoint, TcpEndpoint

from .rows import Row, WorkloadFailed, check_intensity, in_turn, latency_rows

ECHO_BYTES = b"0123456789abcdef"


class _Echo:
    """Gathers echoed bytes; `arrived` gets them when all 16 are back."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[bytes] = asyncio.Queue()
        self._got = b""

    def _back(self, data: bytes) -> None:
        self._got += data
        if len(self._got) >= len(ECHO_BYTES):
            self.arrived.put_nowait(self._got)
            self._got = b""


class _PtyEcho(_Echo):
    """A pty whose far side echoes: 16 bytes written, echoed back, read again."""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        for fd in (self.master, self.slave):
            os.set_blocking(fd, False)
        loop.add_reader(self.master, self._echo)
        loop.add_reader(self.slave, lambda: self._back(os.read(self.slave, 4096)))

    def _echo(self) -> None:
        os.write(self.master, os.read(self.master, 4096))

    def send(self) -> None:
        os.write(self.slave, ECHO_BYTES)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self.master, self.slave):
            loop.remove_reader(fd)
            os.close(fd)


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _TcpEcho(_Echo, asyncio.Protocol):
    """16 bytes over loopback TCP to an echo server and back (Nagle off, as asyncio sets)."""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(_EchoServer, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.transport, _ = await loop.create_connection(lambda: self, "127.0.0.1", port)

    def data_received(self, data: bytes) -> None:
        self._back(data)

    def send(self) -> None:
        self.transport.write(ECHO_BYTES)

    async def close(self) -> None:
        self.transport.close()
        self.server.close()
        await self.server.wait_closed()


async def side_by_side(kind: str, count: int) -> tuple[list[float], list[float]]:
    """(stack, echo) samples, taken in turn so both see the same machine at the same time.

    The stack is ``await massager.set_intensity(n)`` to the simulator served on a
    pty or TCP port; the echo is a bare 16-byte echo over a pty or TCP port.

    Raises:
        WorkloadFailed: an echo came back changed, or a command is not the device's state.
    """
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint: PtyEndpoint | TcpEndpoint
    echo: _PtyEcho | _TcpEcho
    if kind == "pty":
        endpoint, echo = PtyEndpoint(host), _PtyEcho()
        url = endpoint.open()
    else:
        endpoint, echo = TcpEndpoint(host), _TcpEcho()
        url = await endpoint.open("127.0.0.1", 0)
    await echo.open()

    echoed = b""

    async def bare(_: int) -> None:
        nonlocal echoed
        echo.send()
        echoed = await echo.arrived.get()

    def check(i: int) -> None:
        if echoed != ECHO_BYTES:
            raise WorkloadFailed(f"the {kind} echo sent {ECHO_BYTES!r} and got {echoed!r} back")
        check_intensity(host.firmware, 1 + i % 3)

    try:
        host.open_pairing()  # paired, as a user's is: the commands are signed
        async with Massager.connect(url, keys=KeyStore(None)) as massager:
            await massager.pair()
            if not massager.authenticated:
                raise WorkloadFailed(f"the {kind} link is not authenticated after pairing")
            return await in_turn(count, bare, lambda i: massager.set_intensity(1 + i % 3), check)
    finally:
        await echo.close()
        if isinstance(endpoint, PtyEndpoint):
            endpoint.close()
        else:
            await endpoint.close()
        host.stop()


def measure(count: int) -> list[Row]:
    """The p50 and p99 rows for the pty and for TCP, ``count`` samples each."""
    rows = []
    for kind, label in (("pty", "serial:// on a pty"), ("tcp", "socket:// on loopback")):
        measured, baseline = asyncio.run(side_by_side(kind, count))
        rows += latency_rows(f"command round trip, {label}", measured, baseline,
                             f"bare 16-byte echo over a {kind}, sampled in turn with it",
                             scale=1e6, unit="us")  # fmt: skip
    return rows
