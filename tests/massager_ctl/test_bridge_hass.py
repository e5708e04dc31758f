"""Home Assistant discovery and the bridge's requests, against the real Mosquitto.

The discovery templates are rendered with Jinja2, as Home Assistant renders
them, against the state the bridge really published; commands are sent as
Home Assistant would send them, from the rendered command templates.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import pytest

from massager_ctl.mqtt.hass import STATES
from massager_ctl.paths import schedules_file
from massager_ctl.schedules.schedule import Schedule, ScheduleBook
from tests.broker import Broker
from tests.massager_ctl.test_bridge import (
    Listener,
    bridged,
    fresh_name,
    mosquitto_pub,
    mosquitto_sub,
)
from tests.massager_ctl.test_daemon import short_profile

pytestmark = pytest.mark.looptime(False)

ENTITIES = {
    ("select", "mode"), ("number", "intensity"), ("select", "program"), ("button", "start"),
    ("button", "stop"), ("button", "vent"), ("sensor", "state"), ("sensor", "ends_at"),
    ("sensor", "pressure"), ("sensor", "battery"), ("binary_sensor", "fault"),
    ("sensor", "link_quality"),
}  # fmt: skip


def render(template: str, **values: Any) -> str:
    """A template rendered as Home Assistant renders it (Jinja2)."""
    return jinja2.Environment().from_string(template).render(**values)


async def configs(seen: Listener, name: str, after: int = 0) -> dict[tuple[str, str], Any]:
    """Every discovery config of the massager ``name``, from message ``after`` on."""
    found = {}
    for component, key in ENTITIES:
        topic = f"homeassistant/{component}/massager_{name}/{key}/config"
        found[component, key] = await seen.wait(topic, after=after)
    return found


async def press(broker: Broker, config: dict[str, Any], value: Any = None) -> None:
    """What Home Assistant publishes when a person uses the entity."""
    if "payload_press" in config:
        payload = config["payload_press"]
    else:
        payload = render(config["command_template"], value=value)
    await mosquitto_pub(broker, config["command_topic"], payload)


async def test_home_assistant_finds_the_massager_and_drives_it_through_its_entities(
    broker: Broker,
) -> None:
    short_profile("short", 0.5)
    name = fresh_name()
    state_topic = f"massager/{name}"
    async with bridged(broker, name, topics=("homeassistant/#",)) as seen:
        found = await configs(seen, name)
        idle = await seen.wait(state_topic, lambda p: p["state"] == "idle")
        devices = {json.dumps(c["device"], sort_keys=True) for c in found.values()}
        assert len(devices) == 1, "one device"
        assert json.loads(devices.pop())["model"] == "AirLeg Sim 8"
        assert len({c["unique_id"] for c in found.values()}) == len(ENTITIES)
        for config in found.values():
            assert [a["topic"] for a in config["availability"]] == [
                "massager/bridge/state",
                f"{state_topic}/availability",
            ]
            assert config["availability_mode"] == "all"
            for available in config["availability"]:
                assert render(available["value_template"], value_json={"state": "online"}) == (
                    "online"
                )
        # Each sensor's template, on the state really published.
        shown = {key: render(c["value_template"], value_json=idle)
                 for (_, key), c in found.items() if "value_template" in c}  # fmt: skip
        assert shown["state"] == "idle"
        assert shown["state"] in found["sensor", "state"]["options"] == STATES
        assert shown["mode"] in found["select", "mode"]["options"]
        assert found["number", "intensity"]["min"] <= int(shown["intensity"])
        assert int(shown["intensity"]) <= found["number", "intensity"]["max"] == 3
        assert shown["ends_at"] == "None"  # Home Assistant shows unknown
        assert float(shown["pressure"]) < 5
        assert 0 < int(shown["battery"]) <= 100
        assert shown["fault"] == "OFF"
        assert shown["link_quality"] == "100"
        assert "short" in found["select", "program"]["options"]

        # Used as a person uses them in Home Assistant.
        await press(broker, found["select", "mode"], "pulse")
        await seen.wait(state_topic, lambda p: p["mode"] == "pulse")
        await press(broker, found["number", "intensity"], 2.0)  # numbers come as floats
        await seen.wait(state_topic, lambda p: p["intensity"] == 2)
        await press(broker, found["select", "program"], "short")
        chosen = await seen.wait(state_topic, lambda p: p["chosen_program"] == "short")
        assert chosen["state"] == "idle", "choosing a program starts nothing"
        assert render(found["select", "program"]["value_template"], value_json=chosen) == "short"
        await press(broker, found["button", "start"])
        running = await seen.wait(state_topic, lambda p: p["state"] == "running")
        ends = render(found["sensor", "ends_at"]["value_template"], value_json=running)
        assert datetime.fromisoformat(ends).tzinfo is not None
        assert render(found["sensor", "state"]["value_template"], value_json=running) == "running"
        await press(broker, found["button", "stop"])
        await seen.wait(state_topic, lambda p: p["state"] == "idle" and p["program"] is None)


async def test_discovery_is_sent_again_when_home_assistant_comes_online(broker: Broker) -> None:
    name = fresh_name()
    async with bridged(broker, name, topics=("homeassistant/+/+/+/config",)) as seen:
        first = await configs(seen, name)
        mark = len(seen.seen)
        await mosquitto_pub(broker, "homeassistant/status", "online")
        assert await configs(seen, name, after=mark) == first


async def test_no_discovery_when_it_is_turned_off(broker: Broker) -> None:
    name = fresh_name()
    async with bridged(broker, name, topics=("homeassistant/#",), discovery_prefix="") as seen:
        await seen.wait(f"massager/{name}", lambda p: p["state"] == "idle")
        await mosquitto_pub(broker, "homeassistant/status", "online")
        mark = len(seen.seen)
        await mosquitto_pub(broker, f"massager/{name}/get", "")
        await seen.wait(f"massager/{name}", after=mark)
        assert not [topic for topic, _ in seen.seen if f"/massager_{name}/" in topic]


async def test_bridge_requests_list_devices_profiles_and_schedules(broker: Broker) -> None:
    short_profile("short", 0.5)
    evening = {"id": "evening", "profile": "short", "days": ["mon"], "at": "21:45", "tz": "UTC"}
    ScheduleBook(schedules_file()).save([Schedule.model_validate(evening)])
    name = fresh_name()
    response = "massager/bridge/response"
    async with bridged(broker, name, topics=(f"{response}/#",)) as seen:
        await mosquitto_pub(broker, "massager/bridge/request/devices", '{"transaction": "t1"}')
        devices = await seen.wait(f"{response}/devices", lambda p: p.get("transaction") == "t1")
        assert devices["ok"] is True
        [device] = devices["data"]
        assert (device["name"], device["address"], device["available"]) == (name, "sim://", True)
        assert device["serial"] == "SIM-000001"

        await mosquitto_pub(broker, "massager/bridge/request/profiles", '{"transaction": 7}')
        profiles = await seen.wait(f"{response}/profiles", lambda p: p.get("transaction") == 7)
        by_name = {p["name"]: p for p in profiles["data"]}
        assert by_name["short"] == {"name": "short", "title": "Check, 0.5 minutes",
                                    "minutes": 0.5, "steps": 1}  # fmt: skip
        assert "evening-45" in by_name

        await mosquitto_pub(broker, "massager/bridge/request/schedules", "")  # no transaction
        schedules = await seen.wait(f"{response}/schedules")
        [evening] = schedules["data"]["schedules"]
        assert (evening["id"], evening["at"], schedules["transaction"]) == ("evening", "21:45:00",
                                                                            None)  # fmt: skip

        await mosquitto_pub(broker, "massager/bridge/request/reboot", '{"transaction": "t3"}')
        unknown = await seen.wait(f"{response}/reboot")
        assert unknown == {
            "ok": False,
            "transaction": "t3",
            "error": "no request 'reboot'; ask for devices, profiles, schedules",
        }
        await mosquitto_pub(broker, "massager/bridge/request/devices", '{"transaction": [1]}')
        bad = await seen.wait(f"{response}/devices", lambda p: not p["ok"])
        assert "transaction" in bad["error"]
        # And it goes on answering.
        await mosquitto_pub(broker, "massager/bridge/request/devices", '{"transaction": "t4"}')
        await seen.wait(f"{response}/devices", lambda p: p.get("transaction") == "t4")
        # A retained request would be answered on every reconnect: cleared instead.
        await mosquitto_pub(broker, "massager/bridge/request/profiles", "{}", "-r")
        cleared = await seen.wait(f"{response}/profiles", lambda p: not p["ok"])
        assert cleared["error"] == "a retained request is not answered; it was cleared"
    assert await mosquitto_sub(broker, "massager/bridge/request/profiles", 1, within=1) == []
