"""Home Assistant MQTT discovery: each massager appears as one device with its entities.

Pure: `discovery` builds the retained config messages from what the massager
announced; the bridge publishes them under the discovery prefix (default
``homeassistant``) once the massager has answered, and again whenever Home
Assistant says ``online`` on ``<prefix>/status``.

The entities read the device's retained state topic, and command through its
``set`` topic with the bridge's own JSON commands:

- mode (select) and intensity (number): the running session's, or the preset;
- program (select): which profile the start button starts (choosing one puts no
  pressure on anyone's legs); start, stop and vent (buttons);
- session state (enum sensor), session ends at (a timestamp, not a countdown),
  pressure (mmHg, the highest chamber), battery, link quality, and fault (a
  problem sensor, with the faults' names as an attribute).

Every entity is unavailable unless both the bridge and the massager are online.
"""

from __future__ import annotations

import json
from typing import Any

from ..models import DeviceInfo

STATES = ["idle", "running", "paused", "fault", "offline"]


def discovery(
    *,
    prefix: str,
    base: str,
    name: str,
    info: DeviceInfo,
    profiles: list[str],
    version: str,
) -> list[tuple[str, str]]:
    """The retained config messages, as (topic, JSON), for the massager ``name``.

    ``profiles`` are the names the program select offers. The unique ids come
    from the base topic and the device's name, as its topics do: one name, one
    device on the bus (serial numbers need not be unique: every simulator's is
    the same unless its URL sets one).
    """
    state = f"{base}/{name}"
    node = _slug(f"{base}_{name}")
    device = {
        "identifiers": [node],
        "name": f"Massager {name}",
        "manufacturer": "massager-ctl",
        "model": info.model,
        "serial_number": info.serial,
        "sw_version": info.firmware,
    }
    common: dict[str, Any] = {
        "device": device,
        "origin": {"name": "massager-ctl", "sw_version": version},
        "availability": [
            {"topic": f"{base}/bridge/state", "value_template": "{{ value_json.state }}"},
            {"topic": f"{state}/availability", "value_template": "{{ value_json.state }}"},
        ],
        "availability_mode": "all",
    }
    set_topic = f"{state}/set"
    modes = [mode for mode in info.modes if mode != "cycle"]  # cycle needs a profile's cycle
    levels = [level.level for level in info.levels]
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("select", "mode"): {
            "name": "Mode", "icon": "mdi:waves", "options": modes, "state_topic": state,
            # A cycle step's mode is no option here: unknown rather than an error.
            "value_template": "{{ value_json.mode if value_json.mode != 'cycle' else None }}",
            "command_topic": set_topic,
            "command_template": '{"action": "mode", "mode": "{{ value }}"}',
        },
        ("number", "intensity"): {
            "name": "Intensity", "icon": "mdi:gauge", "min": min(levels), "max": max(levels),
            "step": 1, "mode": "slider", "state_topic": state,
            "value_template": "{{ value_json.intensity }}", "command_topic": set_topic,
            "command_template": '{"action": "intensity", "intensity": {{ value | int }}}',
        },
        ("select", "program"): {
            "name": "Program", "icon": "mdi:playlist-play", "options": profiles,
            "state_topic": state, "value_template": "{{ value_json.chosen_program }}",
            "command_topic": set_topic,
            "command_template": '{"action": "program", "profile": "{{ value }}"}',
        },
        ("button", "start"): {
            "name": "Start", "icon": "mdi:play", "command_topic": set_topic,
            "payload_press": json.dumps({"action": "start"}),
        },
        ("button", "stop"): {
            "name": "Stop", "icon": "mdi:stop", "command_topic": set_topic,
            "payload_press": json.dumps({"action": "stop"}),
        },
        ("button", "vent"): {
            "name": "Vent", "icon": "mdi:weather-windy", "command_topic": set_topic,
            "payload_press": json.dumps({"action": "vent"}),
        },
        ("sensor", "state"): {
            "name": "Session state", "device_class": "enum", "options": STATES,
            "state_topic": state, "value_template": "{{ value_json.state }}",
        },
        ("sensor", "ends_at"): {
            # A moment, so Home Assistant counts down itself and the bus stays quiet.
            "name": "Session ends at", "device_class": "timestamp", "state_topic": state,
            "value_template": "{{ value_json.ends_at }}",  # null renders None: unknown
        },
        ("sensor", "pressure"): {
            "name": "Pressure", "device_class": "pressure", "unit_of_measurement": "mmHg",
            "state_class": "measurement", "suggested_display_precision": 0,
            "state_topic": state,
            "value_template": "{{ value_json.pressures_mmhg | max if value_json.pressures_mmhg "
            "else 0 }}",
        },
        ("sensor", "battery"): {
            "name": "Battery", "device_class": "battery", "unit_of_measurement": "%",
            "state_class": "measurement", "state_topic": state,
            "value_template": "{{ value_json.battery_pct }}",
        },
        ("binary_sensor", "fault"): {
            # The fault's name is an attribute: a new firmware's bits would break an enum.
            "name": "Fault", "device_class": "problem", "state_topic": state,
            "value_template": "{{ 'ON' if value_json.faults else 'OFF' }}",
            "json_attributes_topic": state,
            "json_attributes_template": "{{ {'faults': value_json.faults} | tojson }}",
        },
        ("sensor", "link_quality"): {
            "name": "Link quality", "unit_of_measurement": "%", "icon": "mdi:signal",
            "state_class": "measurement", "entity_category": "diagnostic",
            "state_topic": state, "value_template": "{{ value_json.link_quality }}",
        },
    }  # fmt: skip
    messages = []
    for (component, key), config in entities.items():
        unique = f"{node}_{key}"
        body = {
            **config,
            **common,
            "unique_id": unique,
            "object_id": unique,
            "default_entity_id": f"{component}.{unique}",
        }  # (object_id for older versions)
        messages.append((f"{prefix}/{component}/{node}/{key}/config", json.dumps(body)))
    return messages


def _slug(text: str) -> str:
    """Letters, digits, ``-`` and ``_`` only, as discovery topics and unique ids want.

    ``-`` and ``_`` stay apart, so devices ``a-b`` and ``a_b`` stay two.
    """
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())
