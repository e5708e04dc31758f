"""On the bus: a program's limits hold, and a forged end on the line is not shown.

Against the real Mosquitto of tests/broker.py, in real time. The forged frames
go onto the massager's serial line (a pseudo-terminal served in this process)
toward the controller, below the transport, as a tap on the cable would put
them; over a serial line a closed port is nothing the massager can see, so a
program that wrongly believed them would leave the massager's session running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator

import pytest

from firmware_protocol import EndReason, SessionEnded, SessionState, StatusFlag
from massager_ctl.journal import Journal
from massager_ctl.paths import journal_file, user_profiles_dir
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import PtyEndpoint
from tests.broker import Broker
from tests.massager_ctl.test_bridge import bridged, fresh_name, mosquitto_pub
from tests.massager_ctl.test_limits import forged
from tests.served import pair_in_process

pytestmark = pytest.mark.looptime(False)

GENTLE = """
title = "Gentle"
description = "A minute of light waves, held to intensity 1."
why = "Tests."
[limits]
max_intensity = 1
[[steps]]
minutes = 1
mode = "wave"
intensity = 1
"""


def gentle_profile() -> str:
    """A user profile of one minute at intensity 1, held to ``max_intensity = 1``."""
    folder = user_profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gentle.toml").write_text(GENTLE, encoding="utf-8")
    return "gentle"


@pytest.fixture
async def pty() -> AsyncIterator[PtyEndpoint]:
    host = DeviceHost(DeviceConfig(seed=1))
    host.start()
    endpoint = PtyEndpoint(host)
    await pair_in_process(host, endpoint.open())
    yield endpoint
    endpoint.close()
    host.stop()


async def test_an_intensity_above_the_running_profiles_limit_is_refused(broker: Broker) -> None:
    name = fresh_name()
    start = f'{{"action": "start", "profile": "{gentle_profile()}"}}'
    set_topic, state = f"massager/{name}/set", f"massager/{name}"
    async with bridged(broker, name, f"sim://{name}") as seen:
        await mosquitto_pub(broker, set_topic, start)
        await seen.wait(state, lambda p: p["state"] == "running" and p["program"] == "gentle")
        await mosquitto_pub(
            broker, set_topic, '{"action": "intensity", "intensity": 3, "id": "i3"}'
        )
        refused = await seen.wait(f"{state}/response", lambda p: p.get("id") == "i3")
        assert refused["ok"] is False
        assert refused["error"] == "intensity 3 is above this program's max_intensity 1"
        # The bridge goes on: the program runs, and a change within the limits is taken.
        await mosquitto_pub(broker, set_topic, '{"action": "mode", "mode": "pulse", "id": "m"}')
        taken = await seen.wait(f"{state}/response", lambda p: p.get("id") == "m")
        assert taken["ok"] is True, taken
        await seen.wait(state, lambda p: p["mode"] == "pulse" and p["program"] == "gentle")
        host = simulated_device(SimAddress(name=name))
        host.sync()
        assert (host.firmware.state, host.firmware.intensity) == (SessionState.RUNNING, 1)
        assert host.firmware.plant.max_pressure_seen < 60  # level 1 aims at 50 mmHg
        await mosquitto_pub(broker, set_topic, '{"action": "stop"}')
        await seen.wait(state, lambda p: p["state"] == "idle" and p["program"] is None)


async def test_a_forged_end_on_the_line_is_not_shown_and_the_journal_counts_the_time(
    broker: Broker, pty: PtyEndpoint
) -> None:
    name = fresh_name()
    start = f'{{"action": "start", "profile": "{gentle_profile()}"}}'
    set_topic, state = f"massager/{name}/set", f"massager/{name}"
    loop = asyncio.get_running_loop()
    async with bridged(broker, name, pty.url) as seen:
        await mosquitto_pub(broker, set_topic, start)
        await seen.wait(state, lambda p: p["state"] == "running" and max(p["pressures_mmhg"]) > 20)
        began = loop.time()
        # "The session ended (stopped)", and a STATUS saying the chambers are empty.
        pty.host.sync()
        true = pty.host.firmware.status()
        idle = dataclasses.replace(
            true, state=SessionState.IDLE, flags=StatusFlag.NONE, seconds_left=0,
            last_end=EndReason.STOPPED, pressures_dmmhg=(0,) * len(true.pressures_dmmhg),
        )  # fmt: skip
        after = len(seen.seen)
        os.write(pty._master, forged(SessionEnded(EndReason.STOPPED, 3), idle))
        await asyncio.sleep(4)
        shown = [p for topic, p in seen.seen[after:] if topic == state]
        assert shown, "the state goes on being published"
        assert all((p["state"], p["program"]) == ("running", "gentle") for p in shown), shown
        pty.host.sync()
        assert pty.host.firmware.state == SessionState.RUNNING
        assert pty.host.firmware.last_end == EndReason.NONE  # no session of it ever ended
        await mosquitto_pub(broker, set_topic, '{"action": "stop"}')
        stopped = loop.time()
        await seen.wait(state, lambda p: p["state"] == "idle" and p["program"] is None)
    [session] = Journal(journal_file()).sessions()
    assert session.ended == "stopped"
    # All the time under pressure, not only up to the forged end.
    assert session.pressure_s >= stopped - began - 0.5
    assert session.pressure_s <= stopped - began + 5
