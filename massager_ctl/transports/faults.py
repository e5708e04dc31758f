"""A fault-injecting wrapper around any transport, for tests and for trying a link's worst day.

In the spirit of pymodbus's null-modem manipulator: the bytes really pass
through the wrapped transport, and on their way they can be dropped,
corrupted, delayed or split into small pieces, in either direction, at rates
drawn from a seeded random generator so a failure replays exactly. On top of
that a test can make the peer go silent, inject garbage as if the device had
sent it, or cut the link. `Cable` makes one `FaultyTransport` per connection
and can stay unplugged for a while, so reconnecting is exercised too.

>>> faults = LinkFaults(split=1)
>>> faults.apply(b"abc", random.Random(0))
[b'a', b'b', b'c']
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConnectFailed
from .base import Transport, TransportClosed

if TYPE_CHECKING:
    from ..keystore import KeyStore


class LinkFaults(BaseModel):
    """What happens to the chunks of bytes going one way."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    drop: float = Field(0.0, ge=0, le=1)
    """The chance that a chunk is lost whole."""
    corrupt: float = Field(0.0, ge=0, le=1)
    """The chance that one bit of one byte of a chunk is flipped."""
    delay_s: float = Field(0.0, ge=0)
    """Extra latency for every chunk (order is kept)."""
    split: int | None = Field(None, ge=1)
    """Deliver each chunk in pieces of 1 to this many bytes (1: a byte at a time)."""

    def apply(self, data: bytes, rng: random.Random) -> list[bytes]:
        """The pieces ``data`` arrives as (none if it is dropped)."""
        if self.drop and rng.random() < self.drop:
            return []
        if self.corrupt and data and rng.random() < self.corrupt:
            spoilt = bytearray(data)
            spoilt[rng.randrange(len(spoilt))] ^= 1 << rng.randrange(8)
            data = bytes(spoilt)
        if not self.split:
            return [data]
        pieces = []
        while data:
            size = rng.randint(1, self.split)
            pieces.append(data[:size])
            data = data[size:]
        return pieces


class FaultyTransport(Transport):
    """Wraps ``inner``: ``rx`` applies to bytes from the device, ``tx`` to bytes to it."""

    def __init__(
        self,
        inner: Transport,
        *,
        rx: LinkFaults | None = None,
        tx: LinkFaults | None = None,
        seed: int = 0,
        cable: Cable | None = None,
    ) -> None:
        self.inner = inner
        self.cable = cable
        self.description = inner.description
        self.rx = rx or LinkFaults()
        self.tx = tx or LinkFaults()
        self.silent = False
        """While true, nothing from the device arrives: a peer gone quiet."""
        self.deaf = False
        """While true, nothing reaches the device."""
        self.rx_chunks = self.tx_chunks = 0
        """Chunks that came from the wrapped transport, and writes made to us."""
        self.rx_pieces = self.tx_pieces = 0
        """Pieces delivered to our reader, and written to the wrapped transport."""
        self._rng = random.Random(seed)
        self._queue: asyncio.Queue[bytes | TransportClosed] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._closed: TransportClosed | None = None

    def device_keys(self) -> KeyStore | None:  # noqa: D102
        return self.inner.device_keys()

    def open_pairing(self) -> bool:  # noqa: D102
        return self.inner.open_pairing()

    async def open(self) -> None:  # noqa: D102
        if self.cable is not None and not self.cable.plugged:
            raise ConnectFailed(f"{self.description} is unplugged")
        await self.inner.open()
        self._closed = None
        self._pump = asyncio.create_task(self._receive(), name="faulty-transport")

    async def _receive(self) -> None:
        try:
            while True:
                data = await self.inner.read()
                self.rx_chunks += 1
                if self.silent:
                    continue
                for piece in self.rx.apply(data, self._rng):
                    self._deliver(piece)
        except TransportClosed as error:
            self._deliver(error)

    def _deliver(self, item: bytes | TransportClosed) -> None:
        # Equal delays keep the order: the loop runs timers due at once in order.
        if self.rx.delay_s:
            asyncio.get_running_loop().call_later(self.rx.delay_s, self._queue.put_nowait, item)
        else:
            self._queue.put_nowait(item)

    def write(self, data: bytes) -> None:  # noqa: D102
        if self._closed is not None:
            raise self._closed
        self.tx_chunks += 1
        if self.deaf:
            return
        for piece in self.tx.apply(data, self._rng):
            self.tx_pieces += 1
            if self.tx.delay_s:
                asyncio.get_running_loop().call_later(self.tx.delay_s, self._send_late, piece)
            else:
                self.inner.write(piece)

    def _send_late(self, piece: bytes) -> None:
        with contextlib.suppress(TransportClosed):  # the reader reports a closed link
            self.inner.write(piece)

    async def read(self) -> bytes:  # noqa: D102
        if self._closed is not None:
            raise self._closed
        item = await self._queue.get()
        if isinstance(item, TransportClosed):
            self._closed = item
            raise item
        self.rx_pieces += 1
        return item

    def inject(self, data: bytes) -> None:
        """Deliver ``data`` as if the device had sent it (garbage, a replayed frame ...)."""
        self._queue.put_nowait(data)

    def cut(self, why: str = "the link was cut") -> None:
        """Pull the cable: our reads fail at once, and the wrapped link is closed."""
        if self._closed is None:
            self._queue.put_nowait(TransportClosed(why))
        self._closed = self._closed or TransportClosed(why)
        task = asyncio.get_running_loop().create_task(self.close())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def close(self) -> None:  # noqa: D102
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        await self.inner.close()


_CLOSING: set[asyncio.Task[None]] = set()


class Cable:
    """A link that can be unplugged and plugged back: one `FaultyTransport` per connection.

    Pass `transport` as a supervisor's ``open_link``. While unplugged, opening
    fails as a missing port does, and unplugging cuts the live connections.
    """

    def __init__(
        self,
        make: Callable[[], Transport],
        *,
        rx: LinkFaults | None = None,
        tx: LinkFaults | None = None,
        seed: int = 0,
    ) -> None:
        self.make = make
        self.rx, self.tx, self.seed = rx, tx, seed
        self.plugged = True
        self.made = 0
        self.links: weakref.WeakSet[FaultyTransport] = weakref.WeakSet()
        self.latest: FaultyTransport | None = None

    def transport(self) -> Transport:
        """A new connection over this cable."""
        self.made += 1
        link = FaultyTransport(
            self.make(), rx=self.rx, tx=self.tx, seed=self.seed + self.made, cable=self
        )
        self.links.add(link)
        self.latest = link
        return link

    def unplug(self) -> None:
        """Pull it out: every live connection is cut and new ones fail."""
        self.plugged = False
        for link in list(self.links):
            link.cut("the cable was unplugged")

    def plug(self) -> None:
        """Put it back: the next connection works."""
        self.plugged = True
