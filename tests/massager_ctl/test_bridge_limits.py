"""On the bus: a program's limits hold.

Against the real Mosquitto of tests/broker.py, in real time.
"""

from __future__ import annotations

import pytest

from firmware_protocol import SessionState
from massager_ctl.config import user_profiles_dir
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress
from tests.broker import Broker
from tests.massager_ctl.test_bridge import bridged, fresh_name, mosquitto_pub

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
