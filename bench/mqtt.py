"""The MQTT bridge on a real Mosquitto, beside a bare aiomqtt echo through the same broker.

One broker (`tests.broker.run_broker`: Mosquitto on loopback, users, ACL,
``set_tcp_nodelay true``) serves every row, and one bench client (the driver)
sends for the stack and for its baseline alike. The stack is `Bridge` with
``sim://`` devices in this process: a command goes driver -> broker -> bridge ->
simulated massager, and its state or answer comes back bridge -> broker ->
driver. The baseline is the same two hops with nothing in the middle: a second
aiomqtt client that republishes whatever arrives on ``bench/echo/<dev>/in`` to
``bench/echo/<dev>/out``. Everything is MQTT 5 at QoS 1 with Nagle off, and
the echo's client is made as the bridge's is (`BrokerAddress.client`), so the
ratio is what the bridge, its device links and the simulator add.

- Round trip: one device; an intensity command, until the state published on
  ``massager/<dev>`` shows it; the echo's round trips sampled in turn with it.
- Sustained: 100 devices, one command in flight to each (100 in all), answers
  on ``/response`` counted; the echo likewise; the two take turns in rounds.
- Steady: 100 devices, commands sent open-loop at `RATE` a second, p99 from when
  each was due to its answer; the echo's at the same rate, alternating with them.
- Idle: CPU time per wall time of this process with the bridge and its 100
  connected devices doing nothing, beside the same 100 simulated devices watched
  by bare `Massager` connections (no bridge, no MQTT) on a fresh loop afterwards.
  The simulator runs in this process in both, so neither is the bridge alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from massager_ctl.bridge import Bridge
from massager_ctl.broker import parse_broker_url
from massager_ctl.device import Massager
from massager_ctl.journal import Journal
from massager_ctl.settings import Settings
from massager_ctl.urls import parse_device_url
from tests.broker import USERS, Broker, run_broker

from .rows import WARMUP, Row, in_turn, p50, p99

ONE = "bench"
"""The one device of the round-trip rows."""
DEVICES = [f"d{k:03d}" for k in range(100)]
"""The fleet of the throughput, steady-load and idle rows."""
IN_FLIGHT = len(DEVICES)
"""Commands outstanding at once in the throughput row: one per device."""
RATE = 200
"""Commands a second in the steady-load row: well below what either side sustains."""
ROUNDS = 4
"""In the throughput row, stack and echo take turns this many times: both see the same machine."""
SETTLE_S = 1.0
"""Quiet before the idle CPU is taken: the last publishes and acks die down."""
ANSWER_WITHIN_S = 10.0
PROBE_WITHIN_S = 1.0


@contextlib.contextmanager
def _private_dirs(folder: Path) -> Iterator[None]:
    """Point XDG config and state into ``folder``: the bench never touches the user's files."""
    names = ("XDG_CONFIG_HOME", "XDG_STATE_HOME")
    before = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = str(folder / name.lower())
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _quiet_mqtt_log() -> Iterator[None]:
    """Silence aiomqtt's "There are N pending publish calls" warnings while measuring.

    Any client with more than 10 QoS 1 publishes unacknowledged warns, on stderr
    for want of a handler: the driver with its 100 in flight, and the bridge and
    the echo under that load. Writing them would be measured as the bench's own
    noise, on both sides.
    """
    logger = logging.getLogger("mqtt")  # aiomqtt's default logger, the bridge's included
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _driver_client(broker: Broker) -> aiomqtt.Client:
    """The bench's own client: as `BrokerAddress.client` makes one, but `IN_FLIGHT` wide.

    paho holds back QoS 1 publishes beyond 20 unacknowledged; the driver must
    really have `IN_FLIGHT` commands out, or the throughput row would measure
    the driver's queue.
    """
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username="admin",
        password=USERS["admin"],
        identifier="bench-driver",
        protocol=aiomqtt.ProtocolVersion.V5,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        max_inflight_messages=IN_FLIGHT,
        timeout=ANSWER_WITHIN_S,
    )


class _Driver:
    """Sends commands (QoS 1) and awaits the message that answers each, by key.

    A message's key is its ``id`` if it has one (the bridge's answers on
    ``/response``, and the echo of a command with an id), else its topic and
    intensity (a device's state, or the echo of a command without an id).
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def route(self) -> None:
        """Hand each arriving message to whoever waits for its key; drop the rest."""
        async for message in self.client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | str) or not payload:
                continue  # a retained topic being cleared
            body = json.loads(payload)
            key = body.get("id") or f"{message.topic}={body.get('intensity')}"
            waiter = self._waiting.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)

    async def ask(
        self, topic: str, payload: str, key: str, within: float = ANSWER_WITHIN_S
    ) -> dict[str, Any]:
        """Publish ``payload`` to ``topic`` and return the message that answers to ``key``.

        Raises:
            TimeoutError: no answer within ``within`` seconds.
        """
        # Waiting before publishing: the answer may come back before the PUBACK does.
        waiter = self._waiting[key] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(within):
                await self.client.publish(topic, payload, qos=1)
                return await waiter
        except TimeoutError:
            raise TimeoutError(f"no answer to {payload} on {topic} within {within:g} s") from None
        finally:
            self._waiting.pop(key, None)


async def _echo(client: aiomqtt.Client) -> None:
    """The baseline's far side: republish each ``.../in`` message to ``.../out``, nothing else."""
    await client.subscribe("bench/echo/+/in", qos=1)
    sending: set[asyncio.Task[None]] = set()
    async for message in client.messages:
        topic = str(message.topic).removesuffix("/in") + "/out"
        # A task for each, as the bridge handles each command: one message's PUBACK
        # never holds up the next message.
        task = asyncio.create_task(client.publish(topic, message.payload, qos=1))
        sending.add(task)
        task.add_done_callback(sending.discard)


class _Fleet:
    """Commands for devices: each changes its device's intensity (1, 2, 3, 1 ...), each has an id.

    The simulated devices start at intensity 1, and `_ready` leaves them there.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self.levels = dict.fromkeys(DEVICES, 1)
        self.sent = 0

    def next(self, device: str) -> tuple[str, str]:
        """The id and the JSON of the next command for ``device``."""
        self.levels[device] = self.levels[device] % 3 + 1
        self.sent += 1
        ident = f"{self.side}{self.sent}"
        return ident, json.dumps({"action": "intensity", "intensity": self.levels[device],
                                  "id": ident})  # fmt: skip


@contextlib.asynccontextmanager
async def _bridge(broker: Broker, folder: Path, names: list[str]) -> AsyncIterator[Bridge]:
    """A running bridge for ``names`` (``sim://NAME?seed=1`` each); stopped at the end."""
    bridge = Bridge(
        parse_broker_url(broker.url("bridge")),
        {name: parse_device_url(f"sim://{name}?seed=1") for name in names},
        settings=Settings(),
        journal=Journal(folder / "journal.sqlite3"),
        profiles_dir=folder / "profiles",
    )
    running = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def _ready(driver: _Driver, names: list[str]) -> None:
    """Wait until the bridge answers a command for every one of ``names``.

    Until it has subscribed, a command is lost; until the device is connected,
    it is refused: either way, ask again. Each command sets intensity 1, which
    the devices start at, so the fleets' counting (`_Fleet`) holds.
    """
    await driver.client.subscribe("massager/+/response", qos=1)
    attempts = 0

    async def probe(name: str) -> None:
        nonlocal attempts
        while True:
            attempts += 1
            ident = f"ready{attempts}"
            payload = json.dumps({"action": "intensity", "intensity": 1, "id": ident})
            with contextlib.suppress(TimeoutError):
                answer = await driver.ask(f"massager/{name}/set", payload, ident, PROBE_WITHIN_S)
                if answer["ok"]:
                    return
                await asyncio.sleep(0.1)

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(probe(name) for name in names))
    finally:
        await driver.client.unsubscribe("massager/+/response")


async def _round_trips(driver: _Driver, count: int) -> tuple[list[float], list[float]]:
    """(stack, echo) round trips, taken in turn, ``count`` each after `WARMUP`.

    The stack: an intensity command to ``massager/bench/set`` until the state on
    ``massager/bench`` shows it. The echo: the same payload to
    ``bench/echo/bench/in`` until it is back on ``.../out``.
    """
    # Only the state: the bridge's answer on /response would be one more message
    # to the driver that the echo has no counterpart of.
    await driver.client.subscribe(f"massager/{ONE}", qos=1)

    def asking(topic: str, answer: str) -> Callable[[int], Awaitable[object]]:
        def ask(i: int) -> Awaitable[object]:
            level = (i + 1) % 3 + 1  # every command changes something, so a state follows
            payload = json.dumps({"action": "intensity", "intensity": level})
            return driver.ask(topic, payload, f"{answer}={level}")

        return ask

    try:
        return await in_turn(count, asking(f"bench/echo/{ONE}/in", f"bench/echo/{ONE}/out"),
                             asking(f"massager/{ONE}/set", f"massager/{ONE}"))  # fmt: skip
    finally:
        await driver.client.unsubscribe(f"massager/{ONE}")


Send = Callable[[str], Awaitable[object]]
"""Send one command to a device and wait for its answer."""


def _senders(driver: _Driver) -> tuple[Send, Send]:
    """(stack, echo): a command to a device through the bridge, or through the echo."""
    stack_fleet, echo_fleet = _Fleet("s"), _Fleet("e")

    def stack(device: str) -> Awaitable[object]:
        ident, payload = stack_fleet.next(device)
        return driver.ask(f"massager/{device}/set", payload, ident)

    def echo(device: str) -> Awaitable[object]:
        ident, payload = echo_fleet.next(device)
        return driver.ask(f"bench/echo/{device}/in", payload, ident)

    return stack, echo


async def _sustained(send: Send, per_device: int) -> tuple[int, float]:
    """(commands, seconds) for ``per_device`` commands to each device, one at a time per device.

    `IN_FLIGHT` (one per device) are always out: a device's next command goes as
    soon as its last is answered.
    """

    async def one_device(device: str) -> None:
        for _ in range(per_device):
            await send(device)

    start = time.perf_counter()
    await asyncio.gather(*(one_device(device) for device in DEVICES))
    return per_device * len(DEVICES), time.perf_counter() - start


async def _steady(stack: Send, echo: Send, count: int) -> tuple[list[float], list[float]]:
    """(stack, echo) latencies of ``count`` commands each, each side at `RATE` a second.

    Open loop: each command goes when it is due, answered or not, and its
    latency counts from when it was due, so a stall shows in full. The two
    sides alternate command by command (the echo's half a period after the
    stack's), so a pause of the process (a full garbage collection of the
    bridge's and devices' objects takes tens of ms) delays both alike rather
    than deciding the p99 of whichever side it lands in.
    """
    samples: dict[Send, list[float]] = {stack: [], echo: []}

    async def one(send: Send, device: str, due: float) -> None:
        await send(device)
        samples[send].append(time.perf_counter() - due)

    start = time.perf_counter()
    sending = []
    for n in range(2 * count):
        due = start + n / (2 * RATE)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        send, device = (stack, echo)[n % 2], DEVICES[n // 2 % len(DEVICES)]
        sending.append(asyncio.create_task(one(send, device, due)))
    await asyncio.gather(*sending)
    return samples[stack], samples[echo]


async def _cpu_percent(seconds: float) -> float:
    """CPU time of this process per wall-clock time over ``seconds`` of sleeping, in %."""
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)


async def _idle_devices(seconds: float) -> float:
    """CPU % of the fleet's simulated devices, each watched by a bare Massager, no bridge.

    What the bridge's device agents do when nothing is commanded, minus the
    bridge: the link, the simulator's status reports, `Massager.statuses`.
    """
    async with contextlib.AsyncExitStack() as stack:
        massagers = [await stack.enter_async_context(Massager.connect(f"sim://{name}?seed=1"))
                     for name in DEVICES]  # fmt: skip

        async def watch(massager: Massager) -> None:
            async for _ in massager.statuses():
                pass

        watching = [asyncio.create_task(watch(massager)) for massager in massagers]
        try:
            await asyncio.sleep(SETTLE_S)
            return await _cpu_percent(seconds)
        finally:
            for task in watching:
                task.cancel()
            await asyncio.gather(*watching, return_exceptions=True)


async def _throughput(stack: Send, echo: Send, per_round: int) -> tuple[float, float]:
    """(stack, echo) commands a second, `ROUNDS` turns each of ``per_round`` per device."""
    for send in (stack, echo):  # warm-up
        await _sustained(send, max(1, WARMUP // len(DEVICES)))
    commands = dict.fromkeys((stack, echo), 0)
    seconds = dict.fromkeys((stack, echo), 0.0)
    for _ in range(ROUNDS):
        for send in (echo, stack):
            done, took = await _sustained(send, per_round)
            commands[send] += done
            seconds[send] += took
    return commands[stack] / seconds[stack], commands[echo] / seconds[echo]


@dataclass
class _Results:
    """What the run on the broker measured: (stack, echo) for each figure."""

    round_trip: tuple[list[float], list[float]]
    throughput: tuple[float, float]
    steady: tuple[list[float], list[float]]
    idle_cpu: float


async def _on_broker(broker: Broker, folder: Path, count: int, idle_s: float) -> _Results:
    """Every stack figure and its echo's, on one broker with one driver and one echo."""
    # The echo's client is made as the bridge's is: the baseline differs only in what it does.
    echo_client = parse_broker_url(broker.url("admin")).client(identifier="bench-echo")
    async with _driver_client(broker) as client, echo_client as echo_side:
        driver = _Driver(client)
        await client.subscribe("bench/echo/+/out", qos=1)
        helpers = [asyncio.create_task(driver.route()), asyncio.create_task(_echo(echo_side))]
        try:
            async with _bridge(broker, folder, [ONE]):
                await _ready(driver, [ONE])
                round_trip = await _round_trips(driver, count)

            async with _bridge(broker, folder, DEVICES):
                await _ready(driver, DEVICES)
                await asyncio.sleep(SETTLE_S)
                idle_cpu = await _cpu_percent(idle_s)
                await client.subscribe("massager/+/response", qos=1)
                stack, echo = _senders(driver)
                throughput = await _throughput(stack, echo, max(1, count // len(DEVICES)))
                steady = await _steady(stack, echo, count)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    return _Results(round_trip, throughput, steady, idle_cpu)


def measure(count: int) -> list[Row]:
    """The MQTT rows.

    ``count`` samples per latency figure, `ROUNDS` times ``count`` commands per
    side for the throughput, and ``count / 300`` seconds of idle CPU per side.
    """
    idle_s = count / 300
    with tempfile.TemporaryDirectory(prefix="massager-ctl-bench-") as name:
        folder = Path(name)
        with _private_dirs(folder), _quiet_mqtt_log():
            with run_broker(folder / "broker") as broker:
                got = asyncio.run(_on_broker(broker, folder, count, idle_s))
            # A fresh loop: sim:// devices live per loop, so these are new ones, never bridged.
            idle_bare = asyncio.run(_idle_devices(idle_s))
    ms = 1e3
    (trip, trip_echo), (steady, steady_echo) = got.round_trip, got.steady
    name = "command -> state round trip over MQTT"
    echo = "bare aiomqtt echo through the same broker, in turn"
    fleet = f"{len(DEVICES)} devices"
    return [
        Row(f"{name} (p50)", p50(trip) * ms, "ms", p50(trip_echo) * ms, echo),
        Row(f"{name} (p99)", p99(trip) * ms, "ms", p99(trip_echo) * ms, echo),
        Row(f"{fleet} on one bridge: commands/s sustained", got.throughput[0], "/s",
            got.throughput[1], f"bare aiomqtt echo, {IN_FLIGHT} in flight, in turn"),
        Row(f"{fleet}: p99 command -> answer at a steady {RATE}/s", p99(steady) * ms, "ms",
            p99(steady_echo) * ms, f"bare aiomqtt echo at {RATE}/s, alternating with them"),
        Row(f"{fleet}: idle CPU of the bridge (sim devices in-process)", got.idle_cpu, "%",
            idle_bare, f"the {len(DEVICES)} sim devices, each watched by a bare Massager"),
    ]  # fmt: skip
