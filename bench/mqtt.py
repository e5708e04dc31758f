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
  connected, idle simulated massagers, beside the same 100 simulated massagers
  (the same objects: sim:// devices live per loop and name) each watched by a
  bare `Massager` and nothing else (no bridge, no MQTT). Windows of the same
  length, taken in turn: the bridge is started, its window taken, the bridge
  stopped, the bare watchers connected, their window taken, and again; the row
  gives the mean of each side's windows. The simulators run in this process in
  both, so the ratio is (bridge + simulators) over (simulators + bare links):
  what the bridge adds to the massagers it serves. The driver's and the echo's
  clients are connected, idle, in both.

Every workload checks its work (`WorkloadFailed` otherwise): an echo must come
back as sent, an answer on ``/response`` must say ``ok``, the state must show
the command and each simulated massager must end at the intensity last sent to
it, and the idle windows must find every massager connected and idle, on the
same links at the end as at the start.
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
from statistics import mean
from typing import Any

import aiomqtt

from massager_ctl.device import Massager
from massager_ctl.journal import Journal
from massager_ctl.mqtt import Bridge, parse_broker_url
from massager_ctl.settings import Settings
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress, parse_device_url
from simulator import Firmware
from tests.broker import USERS, Broker, run_broker

from .rows import (
    WARMUP,
    Row,
    WorkloadFailed,
    in_blocks,
    in_turn,
    latency_rows,
    p99,
    spread,
)

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
IDLE_WINDOW_S = 2.0
"""The longest idle window; shorter in a quick run."""
IDLE_ROUNDS = 5
"""Idle windows per side at most (a quick run takes 2)."""
CONNECT_WITHIN_S = 30.0
"""For 100 massagers to connect, to the bridge or to bare watchers."""
ANSWER_WITHIN_S = 10.0
PROBE_WITHIN_S = 1.0


class NoAnswer(WorkloadFailed):
    """A command or an echo got no answer in time."""


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
            NoAnswer: no answer within ``within`` seconds.
        """
        # Waiting before publishing: the answer may come back before the PUBACK does.
        waiter = self._waiting[key] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(within):
                await self.client.publish(topic, payload, qos=1)
                return await waiter
        except TimeoutError:
            raise NoAnswer(f"no answer to {payload} on {topic} within {within:g} s") from None
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
            with contextlib.suppress(NoAnswer):
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
    answers: dict[str, dict[str, Any]] = {}

    def command(i: int) -> dict[str, Any]:
        # Every command changes something, so a state follows.
        return {"action": "intensity", "intensity": (i + 1) % 3 + 1}

    def asking(side: str, topic: str, answer: str) -> Callable[[int], Awaitable[object]]:
        async def ask(i: int) -> None:
            sent = command(i)
            key = f"{answer}={sent['intensity']}"
            answers[side] = await driver.ask(topic, json.dumps(sent), key)

        return ask

    def check(i: int) -> None:
        if answers["echo"] != command(i):
            raise WorkloadFailed(f"the echo sent {command(i)} and got {answers['echo']} back")
        state = answers["stack"]
        if state.get("intensity") != command(i)["intensity"] or state.get("state") != "idle":
            raise WorkloadFailed(f"intensity {command(i)['intensity']} was sent; state: {state}")

    echo = asking("echo", f"bench/echo/{ONE}/in", f"bench/echo/{ONE}/out")
    stack = asking("stack", f"massager/{ONE}/set", f"massager/{ONE}")
    try:
        return await in_turn(count, echo, stack, check)
    finally:
        await driver.client.unsubscribe(f"massager/{ONE}")


Send = Callable[[str], Awaitable[object]]
"""Send one command to a device and wait for its answer."""


def _firmware(name: str) -> Firmware:
    """The simulated massager ``sim://NAME?seed=1`` of this loop, as the bridge reaches it."""
    address = parse_device_url(f"sim://{name}?seed=1")
    if not isinstance(address, SimAddress):
        raise WorkloadFailed(f"sim://{name} is not a simulated massager's address")
    return simulated_device(address).firmware


class _Senders:
    """A command to a device through the bridge (`stack`) or through the echo (`echo`).

    Each checks its answer: the bridge's must say ``ok``, the echo's must be the
    command as sent. `check_devices` then checks the massagers' true state.
    """

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.stack_fleet, self.echo_fleet = _Fleet("s"), _Fleet("e")

    async def stack(self, device: str) -> None:
        """One command to ``device`` through the bridge, until its answer on ``/response``.

        Raises:
            WorkloadFailed: the answer does not say ``ok``.
        """
        ident, payload = self.stack_fleet.next(device)
        answer = await self.driver.ask(f"massager/{device}/set", payload, ident)
        if answer.get("ok") is not True or answer.get("duplicate"):
            raise WorkloadFailed(f"the bridge answered {payload} with {answer}")

    async def echo(self, device: str) -> None:
        """One command to ``device``'s echo, until it is back.

        Raises:
            WorkloadFailed: it came back changed.
        """
        ident, payload = self.echo_fleet.next(device)
        answer = await self.driver.ask(f"bench/echo/{device}/in", payload, ident)
        if answer != json.loads(payload):
            raise WorkloadFailed(f"the echo sent {payload} and got {answer} back")

    def check_devices(self) -> None:
        """Every simulated massager is at the intensity last sent to it through the bridge.

        Raises:
            WorkloadFailed: one is not.
        """
        for device, level in self.stack_fleet.levels.items():
            got = _firmware(device).intensity
            if got != level:
                raise WorkloadFailed(f"{device} was last sent intensity {level} and is at {got}")


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
    than deciding the p99 of whichever side it lands in. The latencies are in
    the order the commands were due, so blocks of them are stretches of time.
    """
    samples: dict[Send, list[float]] = {stack: [0.0] * count, echo: [0.0] * count}

    async def one(send: Send, device: str, due: float, k: int) -> None:
        await send(device)
        samples[send][k] = time.perf_counter() - due

    start = time.perf_counter()
    sending = []
    for n in range(2 * count):
        due = start + n / (2 * RATE)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        send, device = (stack, echo)[n % 2], DEVICES[n // 2 % len(DEVICES)]
        sending.append(asyncio.create_task(one(send, device, due, n // 2)))
    await asyncio.gather(*sending)
    return samples[stack], samples[echo]


async def _cpu_percent(seconds: float) -> float:
    """CPU time of this process per wall-clock time over ``seconds`` of sleeping, in %."""
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)


def _all_idle(side: str, massagers: dict[str, Massager | None]) -> None:
    """Every one of `DEVICES` has a connected massager reporting ``idle``.

    Raises:
        WorkloadFailed: one is missing, its link is down, or it is not idle.
    """
    for name in DEVICES:
        massager = massagers.get(name)
        if massager is None or not massager.connected:
            raise WorkloadFailed(f"{side}: {name} is not connected")
        if massager.status.state != "idle":
            raise WorkloadFailed(f"{side}: {name} is {massager.status.state}, not idle")


async def _idle_window(
    side: str, massagers: Callable[[], dict[str, Massager | None]], seconds: float
) -> float:
    """CPU % over ``seconds`` once every massager is connected and idle and `SETTLE_S` passed.

    Raises:
        WorkloadFailed: the massagers did not all connect in time, or at the end
            of the window one is not idle or is on another link than at the start.
    """

    def missing() -> list[str]:
        return sorted(n for n, m in massagers().items() if m is None or not m.connected)

    try:
        async with asyncio.timeout(CONNECT_WITHIN_S):
            # Polled: neither the bridge nor the watchers say when all are connected.
            while missing():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        late = missing()
        raise WorkloadFailed(
            f"{side}: {len(late)} massagers did not connect within {CONNECT_WITHIN_S:g} s "
            f"({', '.join(late[:5])} ...)"
        ) from None
    await asyncio.sleep(SETTLE_S)
    before = massagers()
    _all_idle(side, before)
    cpu = await _cpu_percent(seconds)
    after = massagers()
    _all_idle(side, after)
    if any(after[name] is not before[name] for name in DEVICES):
        raise WorkloadFailed(f"{side}: a massager reconnected during the idle window")
    return cpu


@contextlib.asynccontextmanager
async def _watched() -> AsyncIterator[dict[str, Massager | None]]:
    """`DEVICES` each connected by a bare `Massager` that reads its statuses, nothing else.

    What a bridge's device agent does when nothing is commanded, minus the
    bridge: the link, the simulator's status reports, `Massager.statuses`. All
    connect at once, as the bridge's agents do: connected one after another,
    the massagers' reports would fall at other moments and wake the loop more
    often, which would be measured as a difference that is not the bridge's.
    """
    massagers: dict[str, Massager | None] = dict.fromkeys(DEVICES)

    async def watch(name: str) -> None:
        async with Massager.connect(f"sim://{name}?seed=1") as massager:
            massagers[name] = massager
            try:
                async for _ in massager.statuses():
                    pass
            finally:
                massagers[name] = None

    watching = [asyncio.create_task(watch(name)) for name in DEVICES]
    try:
        yield massagers
    finally:
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)


async def _idle(
    broker: Broker, folder: Path, seconds: float, rounds: int
) -> tuple[list[float], list[float]]:
    """(bridge, bare) CPU % of ``rounds`` idle windows each, in turn, on the same massagers.

    The row gives the mean of the windows, not their median: a full garbage
    collection (tens of ms with 100 massagers) lands in one window now and then,
    and it is part of what idling costs.
    """
    bridged: list[float] = []
    bare: list[float] = []
    for _ in range(rounds):
        async with _bridge(broker, folder, DEVICES) as bridge:

            def agents() -> dict[str, Massager | None]:
                # Not counted as connected until the bridge is on the broker too.
                online = bridge.client is not None
                return {n: a.massager if online else None for n, a in bridge.agents.items()}

            bridged.append(await _idle_window("the bridge", agents, seconds))
        async with _watched() as massagers:
            bare.append(await _idle_window("the bare watchers", lambda: massagers, seconds))
    return bridged, bare


async def _throughput(stack: Send, echo: Send, per_round: int) -> tuple[float, float, float | None]:
    """(stack, echo) commands a second and the spread of their ratio over `ROUNDS` turns.

    Each turn sends ``per_round`` commands per device, for each side.
    """
    for send in (stack, echo):  # warm-up
        await _sustained(send, max(1, WARMUP // len(DEVICES)))
    commands = dict.fromkeys((stack, echo), 0)
    seconds = dict.fromkeys((stack, echo), 0.0)
    ratios = []
    for _ in range(ROUNDS):
        rate = {}
        for send in (echo, stack):
            done, took = await _sustained(send, per_round)
            commands[send] += done
            seconds[send] += took
            rate[send] = done / took
        ratios.append(rate[stack] / rate[echo])
    return commands[stack] / seconds[stack], commands[echo] / seconds[echo], spread(ratios)


@dataclass
class _Results:
    """What the run on the broker measured: (stack, echo) for each figure."""

    round_trip: tuple[list[float], list[float]]
    throughput: tuple[float, float, float | None]
    steady: tuple[list[float], list[float]]
    idle_cpu: tuple[list[float], list[float]]


async def _on_broker(
    broker: Broker, folder: Path, count: int, idle_s: float, idle_rounds: int
) -> _Results:
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

            idle_cpu = await _idle(broker, folder, idle_s, idle_rounds)

            async with _bridge(broker, folder, DEVICES):
                await _ready(driver, DEVICES)
                await client.subscribe("massager/+/response", qos=1)
                senders = _Senders(driver)
                stack, echo = senders.stack, senders.echo
                throughput = await _throughput(stack, echo, max(1, count // len(DEVICES)))
                senders.check_devices()
                steady = await _steady(stack, echo, count)
                senders.check_devices()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    return _Results(round_trip, throughput, steady, idle_cpu)


def measure(count: int) -> list[Row]:
    """The MQTT rows.

    ``count`` samples per latency figure, `ROUNDS` times ``count`` commands per
    side for the throughput, and idle windows of ``count / 300`` seconds (at
    most `IDLE_WINDOW_S`), 2 to `IDLE_ROUNDS` of them per side.
    """
    idle_s = min(IDLE_WINDOW_S, count / 300)
    idle_rounds = max(2, min(IDLE_ROUNDS, count // 600))
    with tempfile.TemporaryDirectory(prefix="massager-ctl-bench-") as name:
        folder = Path(name)
        with _private_dirs(folder), _quiet_mqtt_log(), run_broker(folder / "broker") as broker:
            got = asyncio.run(_on_broker(broker, folder, count, idle_s, idle_rounds))
    ms = 1e3
    (trip, trip_echo), (steady, steady_echo) = got.round_trip, got.steady
    fleet = f"{len(DEVICES)} devices"
    rate, rate_echo, rate_spread = got.throughput
    at_rate = in_blocks(steady, steady_echo, p99)
    idle, idle_bare = got.idle_cpu
    return [
        *latency_rows("command -> state round trip over MQTT", trip, trip_echo,
                      "bare aiomqtt echo through the same broker, in turn", scale=ms, unit="ms"),
        Row(f"{fleet} on one bridge: commands/s sustained ({ROUNDS} rounds)", rate, "/s",
            rate_echo, f"bare aiomqtt echo, {IN_FLIGHT} in flight, in turn", rate_spread),
        Row(f"{fleet}: p99 command -> answer at a steady {RATE}/s "
            f"(median of {at_rate.blocks} blocks)", at_rate.value * ms, "ms",
            at_rate.baseline * ms, f"bare aiomqtt echo at {RATE}/s, alternating with them",
            at_rate.spread),
        Row(f"{fleet} idle: CPU of the bridge + its {len(DEVICES)} sim massagers, in-process "
            f"(mean of {len(idle)} windows of {idle_s:g} s)", mean(idle), "%", mean(idle_bare),
            f"the same {len(DEVICES)} sim massagers, each watched by a bare Massager "
            "(no bridge, no MQTT), windows in turn",
            spread([b / a for b, a in zip(idle, idle_bare, strict=True)])),
    ]  # fmt: skip
