"""``serial://`` and ``socket://``: a serial port, or serial over TCP, via pyserial-asyncio-fast.

A serial port is opened exclusively (a second controller on the same port gets
a plain "in use" error instead of interleaving its bytes with ours), in raw 8N1
mode at the address's baud rate, and whatever was waiting in its input buffer
is thrown away: bytes from before we opened belong to nobody. ``socket://``
uses pyserial's URL form and goes straight to asyncio's TCP transport (which is
what pyserial-asyncio-fast does with that URL, less a hop through a thread to
build an unused pyserial object); asyncio turns Nagle's algorithm off, so small
frames are not held back.

A port that vanishes (USB unplugged, the far end of a pseudo-terminal closed)
or a TCP peer that hangs up ends the link: `read` raises `TransportClosed`.

A serial-to-network bridge serves one controller at a time. ser2net, the
common one, turns a second away by writing ``Port already in use`` (a line of
text, not a frame) and hanging up, and ``massager-sim serve --tcp`` does the
same; when those are the only bytes a link ever carried before it closed,
`read` raises `TransportInUse`, so that the person is told the massager is
held by another program rather than that the link failed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re

import serial
import serial_asyncio_fast

from ..errors import ConnectFailed, DeviceInUse
from ..urls import SerialAddress, SocketAddress
from .base import Transport, TransportClosed, TransportInUse, plain_error

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
"""How long a TCP connect may take before we give up on it."""

HEAD_BYTES = 64
"""How many of a link's first bytes are kept to recognise a bridge's refusal."""

IN_USE = re.compile(rb"^\s*(?P<said>[^\r\n]*already in use)\s*$", re.IGNORECASE)
"""A bridge's refusal, as ser2net words it: ``Port already in use``,
``Port's device already in use``."""


class _Pipe(asyncio.Protocol):
    """Hands received chunks to a queue; ``None`` marks the end of the link."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.head = b""
        """The link's first bytes, up to `HEAD_BYTES`; more than that, and ``None``."""
        self._more = False

    def data_received(self, data: bytes) -> None:
        if not self._more:
            self.head += data
            self._more = len(self.head) > HEAD_BYTES
        self.incoming.put_nowait(data)

    def refusal(self) -> str | None:
        """What the other end said if all it sent was a bridge's "in use" line."""
        match = None if self._more else IN_USE.match(self.head)
        return match.group("said").decode("ascii", "replace") if match else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.incoming.put_nowait(None)
        if not self.closed.done():
            self.closed.set_result(exc)


class SerialTransport(Transport):
    """A byte pipe over a serial port (``serial://``) or serial over TCP (``socket://``)."""

    def __init__(self, address: SerialAddress | SocketAddress) -> None:
        self.address = address
        self.description = (
            f"the serial port {address.path}"
            if isinstance(address, SerialAddress)
            else f"{address.host}:{address.port} (serial over TCP)"
        )
        self._transport: asyncio.Transport | None = None
        self._pipe: _Pipe | None = None
        self._why_closed = "the link is closed"

    async def open(self) -> None:  # noqa: D102
        loop = asyncio.get_running_loop()
        self._pipe = pipe = _Pipe()
        transport: asyncio.Transport
        try:
            if isinstance(self.address, SerialAddress):
                port = self._open_port()
                transport, _ = await serial_asyncio_fast.connection_for_serial(
                    loop, lambda: pipe, port
                )
            else:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    transport, _ = await loop.create_connection(
                        lambda: pipe, self.address.host, self.address.port
                    )
        except TimeoutError:
            raise ConnectFailed(
                f"{self.description} did not accept a connection within {CONNECT_TIMEOUT_S:g} s"
            ) from None
        except OSError as error:
            raise ConnectFailed(f"cannot reach {self.description}: {plain_error(error)}") from None
        self._transport = transport
        self._why_closed = f"{self.description} was closed"

    def _open_port(self) -> serial.Serial:
        """Open the port without blocking the loop for long: pyserial opens non-blocking."""
        assert isinstance(self.address, SerialAddress)
        try:
            port = serial.Serial(
                self.address.path,
                baudrate=self.address.baudrate,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except serial.SerialException as error:
            problem = _port_error(self.address.path, error)
            busy = problem.endswith(IN_USE_BY_ANOTHER)
            raise (DeviceInUse if busy else ConnectFailed)(problem) from None
        except ValueError as error:  # pyserial's word for a baud rate the port cannot do
            raise ConnectFailed(f"cannot open {self.address.path}: {error}") from None
        try:
            port.reset_input_buffer()
        except (OSError, serial.SerialException) as error:
            port.close()  # or it stays locked against our own next attempt
            raise ConnectFailed(f"cannot use {self.address.path}: {error}") from None
        return port

    def write(self, data: bytes) -> None:  # noqa: D102
        transport = self._transport
        if transport is None or transport.is_closing():
            raise TransportClosed(self._why_closed)
        transport.write(data)

    async def read(self) -> bytes:  # noqa: D102
        pipe = self._pipe
        if pipe is None:
            raise TransportClosed(self._why_closed)
        data = await pipe.incoming.get()
        if data is None:
            pipe.incoming.put_nowait(None)  # every later read fails the same way
            error = pipe.closed.result() if pipe.closed.done() else None
            refusal = pipe.refusal()
            if refusal is not None:
                raise TransportInUse(
                    f'{self.description} is in use by another program (it answered "{refusal}")'
                )
            if error is not None:
                self._why_closed = f"{self.description} went away ({plain_error(error)})"
            elif self._transport is not None:  # not closed by us
                self._why_closed = f"{self.description} was closed by the other end"
            raise TransportClosed(self._why_closed)
        return data

    async def close(self) -> None:  # noqa: D102
        transport, pipe = self._transport, self._pipe
        if transport is None or pipe is None:
            return
        self._transport = None
        if not pipe.closed.done() and not transport.is_closing():
            # Not after the port vanished: the transport has closed itself then,
            # and aborting it twice fails inside pyserial-asyncio-fast.
            transport.abort()
        # Wait until the port is really closed: reopening it before then would find
        # it still locked by us.
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(pipe.closed)
        except TimeoutError:
            log.warning("%s did not close within 2 s", self.description)


IN_USE_BY_ANOTHER = "is in use by another program"


def _port_error(path: str, error: serial.SerialException) -> str:
    """A plain sentence for pyserial's open errors."""
    code = getattr(error, "errno", None)
    text = str(error)
    if code == errno.ENOENT or "No such file" in text:
        return f"there is no serial port {path} (unplugged? see `massager-ctl devices`)"
    if code == errno.EACCES or "Permission denied" in text:
        return (
            f"no permission to open {path}; on Linux add yourself to the group that owns it "
            "(often `dialout`) and log in again"
        )
    if code == errno.EBUSY or "exclusively lock" in text:
        return f"{path} {IN_USE_BY_ANOTHER}"
    return f"cannot open {path}: {text}"
