"""A simulated massager on real OS endpoints: a pseudo-terminal, or serial over TCP.

`PtyEndpoint` opens a pseudo-terminal and connects the device to its master
side; a controller opens the other side (``/dev/pts/N``) as it would open a USB
serial port. `TcpEndpoint` listens on a TCP port and serves one controller at a
time, as a serial-to-network bridge does. Both can emulate the wire time of a
baud rate (`Wire`). They run on the current event loop, so tests and the bench
can serve a device and connect to it in one process.

What the device can tell about its link differs, as on hardware. Over TCP it
sees the connection close and vents at once. Over a serial line it cannot see
a controller close the port: its watchdog vents within about a second of the
last frame, whatever the controller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Callable

from .host import DeviceHost

log = logging.getLogger(__name__)

BITS_PER_BYTE = 10
"""8N1: a start bit, eight data bits, a stop bit."""


class Wire:
    """One direction of a serial line: bytes arrive after the time they take at ``baudrate``.

    Without a baud rate bytes pass at once. Chunks keep their order; a chunk
    sent while the line is busy waits its turn, as on a UART.
    """

    def __init__(self, deliver: Callable[[bytes], None], baudrate: int | None = None) -> None:
        self.deliver = deliver
        self.baudrate = baudrate
        self._free_at = 0.0

    def send(self, data: bytes) -> None:
        """Put ``data`` on the line."""
        if not self.baudrate:
            self.deliver(data)
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._free_at)
        self._free_at = start + len(data) * BITS_PER_BYTE / self.baudrate
        loop.call_at(self._free_at, self.deliver, data)


class PtyEndpoint:
    """The device behind a pseudo-terminal; `open` returns the controller's device URL."""

    def __init__(self, host: DeviceHost, *, baudrate: int | None = None) -> None:
        self.host = host
        self.baudrate = baudrate
        self.path = ""
        self.dropped_bytes = 0
        self._master = self._slave = -1
        self._to_controller = Wire(self._write, baudrate)
        self._to_device = Wire(host.feed, baudrate)

    @property
    def url(self) -> str:
        """The device URL a controller uses to reach this device."""
        query = f"?baudrate={self.baudrate}" if self.baudrate else ""
        return f"serial://{self.path}{query}"

    def open(self) -> str:
        """Open the pseudo-terminal, attach the device, and return its URL."""
        self._master, self._slave = os.openpty()
        # Raw at once: a fresh terminal echoes and edits lines, which would send the
        # device's own frames back to it before any controller has set the port up.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        # We keep our own handle on the terminal side open. Without it the master
        # reports EIO whenever no controller has the port open, as if the line were
        # cut, where a real UART simply has nobody listening.
        asyncio.get_running_loop().add_reader(self._master, self._readable)
        self.host.attach(self._to_controller.send)
        return self.url

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as error:
            log.warning("reading the pseudo-terminal failed: %s", error)
            return
        if data:
            self._to_device.send(data)

    def _write(self, data: bytes) -> None:
        if self._master < 0:
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError as error:
            log.warning("writing the pseudo-terminal failed: %s", error)
            written = 0
        # Nobody is reading and the terminal's buffer is full: a UART drops them too.
        self.dropped_bytes += len(data) - written

    def close(self) -> None:
        """Close the pseudo-terminal: a controller using it sees the port vanish."""
        if self._master < 0:
            return
        self.host.detach()
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1


class _Client(asyncio.Protocol):
    def __init__(self, endpoint: TcpEndpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        # A line per connection: bytes still on the wire when it closes go nowhere,
        # never to the next controller, and none reach the device after it.
        self.to_controller = Wire(self._write, endpoint.baudrate)
        self.to_device = Wire(self._feed, endpoint.baudrate)
        self.current = True

    def _write(self, data: bytes) -> None:
        if self.current and self.transport is not None:
            self.transport.write(data)

    def _feed(self, data: bytes) -> None:
        if self.current:
            self.endpoint.host.feed(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.endpoint._connected(self)

    def data_received(self, data: bytes) -> None:
        self.endpoint._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._disconnected(self)


IN_USE = b"Port already in use\r\n"
"""What a second controller is told before the line hangs up on it (ser2net's words)."""

REFUSED_HANGUP_S = 5.0
"""How long a turned-away controller has to hang up before the line hangs up on it."""


class TcpEndpoint:
    """The device behind a TCP port, one controller at a time.

    A second controller is turned away as ser2net, the common serial-to-network
    bridge, turns it away: the line ``Port already in use`` (text, not a frame of
    the protocol, which has no word for this: a bridge in front of a massager
    knows nothing of its protocol), then the end of the stream. The controller
    recognises it (`massager_ctl.transports.serial`) and says the massager is in
    use, rather than that the link failed. Its own bytes are read and dropped
    until it hangs up, so that none is left unread when the socket closes (which
    would reset the connection and could lose the line on the way).
    """

    def __init__(self, host: DeviceHost, *, baudrate: int | None = None) -> None:
        self.host = host
        self.baudrate = baudrate
        self.connections = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._client: _Client | None = None
        self._address = ("", 0)

    @property
    def url(self) -> str:
        """The device URL a controller uses to reach this device."""
        host, port = self._address
        return f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"

    async def open(self, host: str, port: int) -> str:
        """Listen on ``host:port`` (port 0: any free one) and return the device URL."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), host, port)
        self._address = self._server.sockets[0].getsockname()[:2]
        return self.url

    def _connected(self, client: _Client) -> None:
        if self._client is not None:
            # The line is taken: a second controller would interleave its frames.
            self.refused += 1
            client.current = False
            assert client.transport is not None
            client.transport.write(IN_USE)
            if client.transport.can_write_eof():
                client.transport.write_eof()  # it hangs up when it has read the line
                # ... and if it never does, the line is not held open for ever.
                asyncio.get_running_loop().call_later(REFUSED_HANGUP_S, client.transport.close)
            else:
                client.transport.close()
            return
        self._client = client
        self.connections += 1
        peer = client.transport.get_extra_info("peername") if client.transport else None
        log.info("controller connected from %s", peer)
        self.host.attach(client.to_controller.send)

    def _received(self, client: _Client, data: bytes) -> None:
        if client is self._client:
            client.to_device.send(data)

    def _disconnected(self, client: _Client) -> None:
        client.current = False
        if client is not self._client:
            return
        self._client = None
        log.info("controller disconnected")
        self.host.detach()

    def drop_client(self) -> None:
        """Hang up on the connected controller, as a network fault would."""
        if self._client is not None and self._client.transport is not None:
            self._client.transport.abort()

    async def close(self) -> None:
        """Stop listening and hang up."""
        self.drop_client()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
