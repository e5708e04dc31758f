"""A relay that makes a served simulator a hostile or broken massager, for the conformance suite.

The suite runs as a maker runs it (``massager-sim conformance URL``, its own
process); the relay sits between it and ``massager-sim serve`` on TCP, in a
thread of this process with its own event loop (or on the test's own loop, with
`Relay.here`, when the suite runs there too), and does to the device's words
what a broken device would: answers every frame twice, floods the link, sends
blocks longer than any frame, lies in CAPABILITIES, delays everything, or hangs
up in the middle of a check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from firmware_protocol import Capabilities, Frame, FrameDecoder, MessageType, decode_message


@dataclass
class Misdeeds:
    """What the relay does to the device's side of the conversation."""

    twice: bool = False
    """Every frame from the device arrives twice."""
    flood_per_s: int = 0
    """Extra copies of the device's last STATUS, this many a second, from its first one."""
    huge: int = 0
    """After every frame, a block of this many bytes with no 0x00 (then a 0x00)."""
    delay_s: float = 0.0
    """Every chunk, both ways, arrives this much later (order kept)."""
    cut_after_s: float | None = None
    """Hang up on the suite this long after it connected, and let nobody in again."""
    capabilities: Callable[[bytes], bytes] | None = None
    """What CAPABILITIES says instead, from its payload (sent unsigned)."""
    garbage: bool = False
    """Every byte from the device is replaced by noise (with a 0x00 now and then)."""
    connections: int = field(default=0, init=False)


class Relay:
    """A TCP relay between the suite and the device at ``target``, misbehaving as told."""

    def __init__(self, target: str, misdeeds: Misdeeds) -> None:
        host, port = target.removeprefix("socket://").rsplit(":", 1)
        self.target = (host, int(port))
        self.misdeeds = misdeeds
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._up: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        assert self._ready.wait(10), "the relay did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    @contextlib.asynccontextmanager
    async def here(self) -> AsyncIterator[Relay]:
        """The relay on the running loop instead of a thread: delays on its clock."""
        self._up = asyncio.Event()
        task = asyncio.create_task(self._main())
        await self._up.wait()
        try:
            yield self
        finally:
            assert self._stopped is not None
            self._stopped.set()
            await task

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve(reader, writer, server)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()
                tasks.discard(task)

        server = await asyncio.start_server(client, "127.0.0.1", 0)
        self.url = f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        if self._up is not None:
            self._up.set()
        await self._stopped.wait()
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: asyncio.Server
    ) -> None:
        deeds = self.misdeeds
        deeds.connections += 1
        device_reader, device_writer = await asyncio.open_connection(*self.target)
        loop = asyncio.get_running_loop()
        last_status: list[Frame] = []

        # One queue a way, so that the delay keeps the order (timers due at once may not).
        queues: dict[asyncio.StreamWriter, asyncio.Queue[tuple[float, bytes]]] = {
            writer: asyncio.Queue(),
            device_writer: asyncio.Queue(),
        }

        def later(out: asyncio.StreamWriter, data: bytes) -> None:
            if deeds.delay_s:
                queues[out].put_nowait((loop.time() + deeds.delay_s, data))
            else:
                _write(out, data)

        async def deliver(out: asyncio.StreamWriter) -> None:
            while True:
                due, data = await queues[out].get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                _write(out, data)

        async def to_device() -> None:
            while data := await reader.read(4096):
                later(device_writer, data)

        async def to_suite() -> None:
            decoder = FrameDecoder()
            while data := await device_reader.read(4096):
                if deeds.garbage:
                    later(writer, _noise(len(data)))
                    continue
                for frame in decoder.feed(data):
                    later(writer, self._said(frame, last_status))

        async def flood() -> None:
            while deeds.flood_per_s:
                await asyncio.sleep(0.01)
                if last_status:
                    _write(writer, last_status[0].encode() * max(1, deeds.flood_per_s // 100))

        async def cut() -> None:
            assert deeds.cut_after_s is not None
            await asyncio.sleep(deeds.cut_after_s)
            server.close()  # nobody gets in again: the device is gone
            writer.transport.abort()

        jobs = [to_device(), to_suite(), flood(), deliver(writer), deliver(device_writer)]
        if deeds.cut_after_s is not None:
            jobs.append(cut())
        try:
            await asyncio.gather(*jobs)
        finally:
            device_writer.close()

    def _said(self, frame: Frame, last_status: list[Frame]) -> bytes:
        """What the suite hears for ``frame`` from the device."""
        deeds = self.misdeeds
        if frame.msg_type == MessageType.CAPABILITIES and deeds.capabilities is not None:
            frame = Frame(frame.seq, frame.msg_type, deeds.capabilities(frame.payload))
        if frame.msg_type == MessageType.STATUS:
            last_status[:] = [frame]
        wire = frame.encode()
        if deeds.twice:
            wire *= 2
        if deeds.huge:
            wire += b"\x01" * deeds.huge + b"\x00"
        return wire


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


def _noise(size: int) -> bytes:
    """Bytes that are no frame: a COBS-looking run, a 0x00 every 40 bytes."""
    return bytes((i * 37 + 11) % 255 + 1 if i % 40 else 0 for i in range(size))


def lying(**fields: int | str) -> Callable[[bytes], bytes]:
    """A CAPABILITIES payload with some of its numbers changed (``watchdog_ms=0``)."""

    def rewrite(payload: bytes) -> bytes:
        caps = decode_message(MessageType.CAPABILITIES, payload)
        assert isinstance(caps, Capabilities)
        return dataclasses.replace(caps, **fields).encode_payload()  # type: ignore[arg-type]

    return rewrite


def counting(*, chambers: int | None = None, levels: int | None = None) -> Callable[[bytes], bytes]:
    """A CAPABILITIES payload whose count of chambers or levels says ``chambers``/``levels``.

    Zero chambers drops the list; a count of levels above what follows leaves the
    payload short: either way no CAPABILITIES a receiver can read (SPEC §5.2).
    """

    def rewrite(payload: bytes) -> bytes:
        at = 2
        for _ in range(3):  # model, firmware, serial: each a u8 length and its bytes
            at += 1 + payload[at]
        at += 16  # eight u16 numbers
        body = bytearray(payload)
        if chambers is not None:
            count = body[at]
            body[at : at + 1 + 2 * count] = bytes([chambers]) + bytes(2 * chambers)
        if levels is not None:
            at += 1 + 2 * body[at]
            modes = body[at]
            at += 1
            for _ in range(modes):  # a u8 mode and a str name each
                at += 2 + body[at + 1]
            body[at] = levels
        return bytes(body)

    return rewrite


@contextlib.contextmanager
def relayed(target: str, misdeeds: Misdeeds) -> Iterator[Relay]:
    """A `Relay` to ``target`` for the length of the block."""
    with Relay(target, misdeeds) as relay:
        yield relay
