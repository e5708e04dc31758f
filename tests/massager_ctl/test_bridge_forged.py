"""Forged commands over MQTT never start the pump.

Against the real Mosquitto of tests/broker.py: the broker authenticates clients
and its ACL says who may command which massager; the bridge takes commands
only from its own `set` topics and never from retained messages; the massager
takes a start only over the bridge's authenticated link. The check is the
massager's own pump, not the answers.
"""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress
from tests.broker import USERS, Broker
from tests.massager_ctl.test_bridge import a_bridge, listening, mosquitto_pub, running
from tests.massager_ctl.test_daemon import short_profile

pytestmark = pytest.mark.looptime(False)

START = json.dumps({"action": "start", "profile": "short"})


async def test_forged_mqtt_commands_never_start_the_pump(broker: Broker) -> None:
    short_profile("short", 0.5)
    kitchen = SimAddress(name="kitchen-forged")
    bridge = a_bridge(
        broker.url("bridge"), {"bedroom": "sim://bedroom-forged", "kitchen": str(kitchen)}
    )
    async with listening(broker, "massager/kitchen/#") as seen, running(bridge):
        await seen.wait("massager/kitchen/availability", lambda p: p["state"] == "online")
        # No password, or a guessed one: the broker refuses the client outright.
        for credentials in ({}, {"username": "phone", "password": "guess"}):
            with pytest.raises(aiomqtt.MqttError):
                async with aiomqtt.Client("127.0.0.1", broker.port, **credentials) as client:
                    await client.publish("massager/kitchen/set", START, qos=1)
        # A real user the ACL allows only the bedroom: the broker drops the publish.
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username="phone", password=USERS["phone"]
        ) as phone:
            await phone.publish("massager/kitchen/set", START, qos=1)
            # Nor does a command dressed as the bridge's own state or response topic run.
            await phone.publish("massager/kitchen", START, qos=1)
        await asyncio.sleep(2)
        assert "denied publish" in broker.log().lower()
    # A start left retained while the bridge was away is cleared when it comes back,
    # never run: it may be hours old, and nobody is watching for it to act.
    await mosquitto_pub(broker, "massager/kitchen/set", START, "-r")
    async with listening(broker, "massager/kitchen/#") as seen, running(bridge):
        await seen.wait("massager/kitchen/availability", lambda p: p["state"] == "online")
        await asyncio.sleep(2)
    host = simulated_device(kitchen)
    host.sync()
    assert host.firmware.plant.pump_seconds == 0
    assert host.firmware.last_end.name == "NONE"  # no session ever began
