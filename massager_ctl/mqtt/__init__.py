"""The MQTT front door: massagers on a broker, a door onto their holders.

- `topics`: the topic layout under a base, which topics the bridge answers on,
  and the names massagers go by on the bus (pure);
- `payloads`: what is sent to the bridge and every JSON it publishes, as models
  (pure; a command and its reply are the holder's `Command` and `Reply`);
- `broker`: where the broker is, and the ``[mqtt]`` settings (pure);
- `hass`: Home Assistant discovery (pure);
- `bridge`: the bridge itself, the only module that talks to a broker.

The names load on first use: the settings read `broker` in every command, and
the MQTT client is among the slowest imports there are, needed only by the bridge.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Bridge": "bridge",
    "BrokerRefused": "bridge",
    "DeviceAgent": "bridge",
    "BrokerAddress": "broker",
    "BrokerURLError": "broker",
    "MqttSettings": "broker",
    "parse_broker_url": "broker",
    "BASE_TOPIC": "broker",
    "DISCOVERY_PREFIX": "broker",
    "Topics": "topics",
    "topic_name": "topics",
}

__all__ = [
    "BASE_TOPIC",
    "DISCOVERY_PREFIX",
    "Bridge",
    "BrokerAddress",
    "BrokerRefused",
    "BrokerURLError",
    "DeviceAgent",
    "MqttSettings",
    "Topics",
    "parse_broker_url",
    "topic_name",
]

if TYPE_CHECKING:
    from .bridge import Bridge, BrokerRefused, DeviceAgent
    from .broker import (
        BASE_TOPIC,
        DISCOVERY_PREFIX,
        BrokerAddress,
        BrokerURLError,
        MqttSettings,
        parse_broker_url,
    )
    from .topics import Topics, topic_name


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value
