"""A whole night, eight hours of virtual time, on a bad link with a broker that restarts.

The bridge runs the massager for the night from MQTT commands sent through the
real Mosquitto broker. Every few minutes the radio drops the link; one chunk
of bytes in fifty arrives with a bit flipped, and now and then noise reaches the
massager on its own; the broker restarts in the middle of a program; a client
the ACL does not allow tries to start the pump; and late in the night the pump
sticks on and the massager trips.

A sampler looks at the massager's true state every virtual second and holds it
to the rules that matter to the person wearing it:

- no chamber above the ceiling, ever;
- no session longer than the massager's cap;
- no session begins unless an authenticated command arrived since the last one
  ended or faulted (the pairing's counter moved);
- memory stays flat: the live Python objects at the end of the night are
  within a few percent of those after its first hour.

The figures are in docs/testing.md; ``pytest tests/massager_ctl/test_soak.py -s``
prints them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt
import pytest

from firmware_protocol import SessionState
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress
from simulator.host import DeviceHost
from tests.broker import USERS, Broker
from tests.massager_ctl.test_bridge import a_bridge, listening, running
from tests.massager_ctl.test_daemon import short_profile

HOUR = 3600.0
NIGHT_S = 8 * HOUR
SEED = 20261122


@dataclass
class Watch:
    """What the sampler saw over the night."""

    samples: int = 0
    peak_mmhg: float = 0.0
    longest_session_s: float = 0.0
    sessions: int = 0
    starts_without_auth: list[float] = field(default_factory=list)
    link_drops: int = 0
    corrupted_chunks: int = 0
    noise_bursts: int = 0
    objects_after_first_hour: int = 0
    objects_at_dawn: int = 0


def corrupting(host: DeviceHost, rng: random.Random, watch: Watch) -> None:
    """Flip a bit in one chunk in fifty the massager sends, on every link it will have."""
    attach = host.attach

    def attach_noisy(on_bytes: Callable[[bytes], None]) -> None:
        def deliver(data: bytes) -> None:
            if data and rng.random() < 0.02:
                spoilt = bytearray(data)
                spoilt[rng.randrange(len(spoilt))] ^= 1 << rng.randrange(8)
                data = bytes(spoilt)
                watch.corrupted_chunks += 1
            on_bytes(data)

        attach(deliver)

    host.attach = attach_noisy  # type: ignore[method-assign]


async def sampler(host: DeviceHost, watch: Watch, ceiling: float, cap: float) -> None:
    """Check the rules on the massager's true state once a virtual second."""
    running_before = False
    counter_at_last_end = 0
    while True:
        host.sync()
        fw = host.firmware
        snap = fw.snapshot()
        watch.samples += 1
        watch.peak_mmhg = max(watch.peak_mmhg, fw.plant.max_pressure_seen)
        assert fw.plant.max_pressure_seen <= ceiling, f"above the ceiling at {snap.uptime_s:.0f} s"
        assert snap.elapsed_s <= cap + 1e-6, f"a session past its cap at {snap.uptime_s:.0f} s"
        watch.longest_session_s = max(watch.longest_session_s, snap.elapsed_s)
        counter = max((p.counter for p in fw.memory.pairings), default=0)
        active = snap.state in (SessionState.RUNNING, SessionState.PAUSED)
        if active and not running_before:
            watch.sessions += 1
            if counter <= counter_at_last_end:
                watch.starts_without_auth.append(snap.uptime_s)
        if not active:
            counter_at_last_end = counter
        running_before = active
        await asyncio.sleep(1.0)


async def command(broker: Broker, payload: dict[str, str], *, user: str = "admin") -> None:
    """Publish one command to the massager, as a phone or Home Assistant would.

    The broker answers in real milliseconds, while the massager's timers move the
    virtual clock on meanwhile: aiomqtt's default 10 s would run out in virtual
    time before the broker's reply arrived, so this client waits an hour of it.
    """
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=USERS[user], timeout=HOUR
    ) as client:
        await client.publish("massager/soak/set", json.dumps(payload), qos=1)


@pytest.mark.timeout(600)
async def test_a_night_on_a_bad_link_keeps_every_rule(broker: Broker) -> None:
    short_profile("night", 45)
    rng = random.Random(SEED)
    watch = Watch()
    # A firmware of its own, not "sim-...": held to the limits as a real massager is
    # (a simulator's sessions are demos, which the limits neither refuse nor count).
    address = SimAddress(name="soak", options={"firmware": "2.1.0"})
    host = simulated_device(address)
    corrupting(host, rng, watch)
    config = host.config
    loop = asyncio.get_running_loop()
    began = loop.time()
    real_began = time.monotonic()
    bridge = a_bridge(broker.url("bridge"), {"soak": str(address)})

    async def radio_drops() -> None:
        while True:
            await asyncio.sleep(rng.uniform(120, 420))  # every two to seven minutes
            host.detach()
            watch.link_drops += 1

    async def line_noise() -> None:
        while True:
            await asyncio.sleep(rng.uniform(300, 900))
            host.feed(rng.randbytes(rng.randint(1, 40)))
            watch.noise_bursts += 1

    async def at(hours: float) -> None:
        await asyncio.sleep(max(0.0, began + hours * HOUR - loop.time()))

    async with listening(broker, "massager/soak/#", broker_timeout=HOUR) as seen, running(bridge):
        # Virtual time: the device's timers run the clock on while the real broker
        # answers, so 10 s (the default) can pass before it does on a busy machine.
        await seen.wait("massager/soak/availability", lambda p: p["state"] == "online", within=HOUR)
        tasks = [
            asyncio.create_task(sampler(host, watch, config.ceiling_mmhg, config.session_cap_s)),
            asyncio.create_task(radio_drops()),
            asyncio.create_task(line_noise()),
        ]
        try:
            await command(broker, {"action": "start", "profile": "night"})
            await at(1)
            gc.collect()
            watch.objects_after_first_hour = len(gc.get_objects())
            await command(broker, {"action": "start", "profile": "night"})
            # The ACL allows the phone only the bedroom: its start never reaches us.
            await command(broker, {"action": "start", "profile": "night"}, user="phone")
            await at(2.5)
            await command(broker, {"action": "start", "profile": "night"})
            await at(2.75)
            broker.restart()  # mid-program: the program runs on
            await at(4)
            await command(broker, {"action": "start", "profile": "night"})
            await at(4.5)
            plant = host.firmware.plant
            plant.faults.pump_stuck_on = True
            plant.faults.inlet_stuck_open = {0}  # the ceiling trip must catch it
            await at(5)
            plant.faults.pump_stuck_on = False
            plant.faults.inlet_stuck_open = set()
            # A fault latched: a start is refused until someone clears it at the device.
            await command(broker, {"action": "start", "profile": "night"})
            await at(8)
            gc.collect()
            watch.objects_at_dawn = len(gc.get_objects())
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if not isinstance(result, asyncio.CancelledError):
            raise result  # the sampler's assertion, with its moment
    fw = host.firmware
    print(
        f"\nsoak: {NIGHT_S / HOUR:.0f} h virtual in {time.monotonic() - real_began:.1f} s real; "
        f"{watch.samples} samples, peak {watch.peak_mmhg:.1f} mmHg (ceiling "
        f"{config.ceiling_mmhg:g}), longest session {watch.longest_session_s / 60:.1f} min "
        f"(cap {config.session_cap_s / 60:.0f}), {watch.sessions} sessions, "
        f"{watch.link_drops} link drops, {watch.corrupted_chunks} corrupted chunks, "
        f"{watch.noise_bursts} noise bursts; objects {watch.objects_after_first_hour} after "
        f"1 h, {watch.objects_at_dawn} at dawn"
    )
    assert loop.time() - began >= NIGHT_S
    assert watch.samples >= NIGHT_S * 0.99
    assert watch.peak_mmhg <= config.ceiling_mmhg
    assert watch.longest_session_s <= config.session_cap_s
    assert watch.starts_without_auth == []
    assert watch.sessions >= 4  # the night really ran programs
    assert watch.link_drops >= 60
    assert watch.corrupted_chunks > 100
    assert fw.faults  # the stuck pump tripped and stayed latched
    assert fw.state is SessionState.FAULT
    assert fw.plant.pump_seconds > 0
    growth = watch.objects_at_dawn / watch.objects_after_first_hour
    assert growth < 1.05, f"memory grew {growth:.2%} over the night"
