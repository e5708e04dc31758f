"""Home Assistant MQTT discovery: each massager appears as one device with its entities.

Pure: `discovery` builds the retained config messages (`DiscoveryConfig`) from
what the massager announced; the bridge publishes them under the discovery
prefix (default ``homeassistant``) once the massager has answered, and again
whenever Home Assistant says ``online`` on ``<prefix>/status``.

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
from typing import Literal

from pydantic import BaseModel

from ..holder.commands import Command
from ..models import DeviceInfo
from .topics import Topics

STATES = ["idle", "running", "paused", "fault", "offline"]


class Entity(BaseModel):
    """One entity's own keys, in the order they are sent; a key left None is not sent."""

    name: str
    device_class: str | None = None
    unit_of_measurement: str | None = None
    icon: str | None = None
    options: list[str] | None = None
    min: int | None = None
    max: int | None = None
    step: int | None = None
    mode: str | None = None
    state_class: str | None = None
    suggested_display_precision: int | None = None
    entity_category: str | None = None
    state_topic: str | None = None
    value_template: str | None = None
    command_topic: str | None = None
    command_template: str | None = None
    payload_press: str | None = None
    json_attributes_topic: str | None = None
    json_attributes_template: str | None = None


class HassDevice(BaseModel):
    """The device the entities belong to: one per massager on the bus."""

    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    serial_number: str
    sw_version: str


class Origin(BaseModel):
    """What published the config."""

    name: str
    sw_version: str


class AvailabilityTopic(BaseModel):
    """A topic that says whether the entities are available."""

    topic: str
    value_template: str


class DiscoveryConfig(BaseModel):
    """One entity's retained config: its own keys, then what every entity shares."""

    entity: Entity
    device: HassDevice
    origin: Origin
    availability: list[AvailabilityTopic]
    availability_mode: Literal["all"] = "all"
    unique_id: str
    object_id: str
    """The same as unique_id, for older versions of Home Assistant."""
    default_entity_id: str

    def as_json(self) -> str:
        """The config as published: the entity's keys first, as Home Assistant's examples do."""
        own = self.entity.model_dump(mode="json", exclude_none=True)
        return json.dumps({**own, **self.model_dump(mode="json", exclude={"entity"})})


def _press(action: Literal["start", "stop", "vent"]) -> str:
    """A button's payload: the bridge's own command, as JSON."""
    return json.dumps(Command(action=action).model_dump(mode="json", exclude_none=True))


def discovery(
    *,
    prefix: str,
    base: str,
    name: str,
    info: DeviceInfo,
    profiles: list[str],
    version: str,
) -> list[tuple[str, DiscoveryConfig]]:
    """The retained config messages, as (topic, config), for the massager ``name``.

    ``profiles`` are the names the program select offers. The unique ids come
    from the base topic and the device's name, as its topics do: one name, one
    device on the bus (serial numbers need not be unique: every simulator's is
    the same unless its URL sets one).
    """
    topics = Topics(base, prefix)
    state = topics.state(name)
    node = _slug(f"{base}_{name}")
    device = HassDevice(
        identifiers=[node],
        name=f"Massager {name}",
        manufacturer="massager-ctl",
        model=info.model,
        serial_number=info.serial,
        sw_version=info.firmware,
    )
    origin = Origin(name="massager-ctl", sw_version=version)
    available = "{{ value_json.state }}"
    availability = [
        AvailabilityTopic(topic=topics.bridge_state, value_template=available),
        AvailabilityTopic(topic=topics.availability(name), value_template=available),
    ]
    set_topic = topics.command(name)
    modes = [mode for mode in info.modes if mode != "cycle"]  # cycle needs a profile's cycle
    levels = [level.level for level in info.levels]
    entities: dict[tuple[str, str], Entity] = {
        ("select", "mode"): Entity(
            name="Mode", icon="mdi:waves", options=modes, state_topic=state,
            # A cycle step's mode is no option here: unknown rather than an error.
            value_template="{{ value_json.mode if value_json.mode != 'cycle' else None }}",
            command_topic=set_topic,
            command_template='{"action": "mode", "mode": "{{ value }}"}',
        ),
        ("number", "intensity"): Entity(
            name="Intensity", icon="mdi:gauge", min=min(levels), max=max(levels),
            step=1, mode="slider", state_topic=state,
            value_template="{{ value_json.intensity }}", command_topic=set_topic,
            command_template='{"action": "intensity", "intensity": {{ value | int }}}',
        ),
        ("select", "program"): Entity(
            name="Program", icon="mdi:playlist-play", options=profiles,
            state_topic=state, value_template="{{ value_json.chosen_program }}",
            command_topic=set_topic,
            command_template='{"action": "program", "profile": "{{ value }}"}',
        ),
        ("button", "start"): Entity(
            name="Start", icon="mdi:play", command_topic=set_topic, payload_press=_press("start"),
        ),
        ("button", "stop"): Entity(
            name="Stop", icon="mdi:stop", command_topic=set_topic, payload_press=_press("stop"),
        ),
        ("button", "vent"): Entity(
            name="Vent", icon="mdi:weather-windy", command_topic=set_topic,
            payload_press=_press("vent"),
        ),
        ("sensor", "state"): Entity(
            name="Session state", device_class="enum", options=STATES,
            state_topic=state, value_template="{{ value_json.state }}",
        ),
        ("sensor", "ends_at"): Entity(
            # A moment, so Home Assistant counts down itself and the bus stays quiet.
            name="Session ends at", device_class="timestamp", state_topic=state,
            value_template="{{ value_json.ends_at }}",  # null renders None: unknown
        ),
        ("sensor", "pressure"): Entity(
            name="Pressure", device_class="pressure", unit_of_measurement="mmHg",
            state_class="measurement", suggested_display_precision=0,
            state_topic=state,
            value_template="{{ value_json.pressures_mmhg | max if value_json.pressures_mmhg "
            "else 0 }}",
        ),
        ("sensor", "battery"): Entity(
            name="Battery", device_class="battery", unit_of_measurement="%",
            state_class="measurement", state_topic=state,
            value_template="{{ value_json.battery_pct }}",
        ),
        ("binary_sensor", "fault"): Entity(
            # The fault's name is an attribute: a new firmware's bits would break an enum.
            name="Fault", device_class="problem", state_topic=state,
            value_template="{{ 'ON' if value_json.faults else 'OFF' }}",
            json_attributes_topic=state,
            json_attributes_template="{{ {'faults': value_json.faults} | tojson }}",
        ),
        ("sensor", "link_quality"): Entity(
            name="Link quality", unit_of_measurement="%", icon="mdi:signal",
            state_class="measurement", entity_category="diagnostic",
            state_topic=state, value_template="{{ value_json.link_quality }}",
        ),
    }  # fmt: skip
    messages = []
    for (component, key), entity in entities.items():
        unique = f"{node}_{key}"
        config = DiscoveryConfig(
            entity=entity, device=device, origin=origin, availability=availability,
            unique_id=unique, object_id=unique, default_entity_id=f"{component}.{unique}",
        )  # fmt: skip
        messages.append((f"{prefix}/{component}/{node}/{key}/config", config))
    return messages


def _slug(text: str) -> str:
    """Letters, digits, ``-`` and ``_`` only, as discovery topics and unique ids want.

    ``-`` and ``_`` stay apart, so devices ``a-b`` and ``a_b`` stay two.
    """
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())
