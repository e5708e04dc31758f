"""The bridge's topics under its base, in the Zigbee2MQTT style (pure: no client, no I/O).

`Topics` lays them out and reads a message's topic back into what it is for;
`Topics.may_answer_on` is the rule that keeps a sender's MQTT 5 response topic
off the bridge's own topics; `topic_name` gives each massager its topic word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..errors import InputError
from ..urls import DeviceAddress, parse_device_url

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
"""A massager's name on the bus: one topic word."""
BRIDGE = "bridge"
"""The word under the base for the bridge's own topics; no massager may take it."""
REQUESTS = ("devices", "profiles", "schedules")
"""The ops of ``<base>/bridge/request/<op>``."""
OWN_VERBS = frozenset({"set", "get", "availability", "state"})
"""The last words of the bridge's own topics under its base, that no answer may land on."""

Verb = Literal["set", "get"]


class Addressed(NamedTuple):
    """A message for one massager: ``<base>/<device>/<verb>``."""

    device: str
    verb: Verb


def topic_name(text: str) -> tuple[str, DeviceAddress]:
    """``NAME=URL`` or a bare URL (named after it) into a topic-safe name and an address.

    ``bridge`` is refused: ``<base>/bridge/...`` are the bridge's own topics.

    >>> topic_name("bedroom=sim://")[0], topic_name("serial:///dev/ttyUSB0")[0]
    ('bedroom', 'ttyusb0')

    Raises:
        InputError: the name (given, or as the URL would give it) cannot be a topic word.
    """
    name, _, url = text.partition("=") if "=" in text.split("://")[0] else ("", "", text)
    address = parse_device_url(url)
    if not name:
        where = str(address).split("://", 1)[1].split("?", 1)[0]
        tail = re.split(r"[/:]", where.strip("/"))
        given = next((part for part in reversed(tail) if part), "sim")
        name = re.sub(r"[^a-z0-9_-]", "-", given.lower()) or "sim"
        if not NAME.match(name):
            # Say what the URL holds ('+'), not what cleaning it made of it ('-').
            raise InputError(
                f"{url!r} would be named {given!r} on the bus, which is not a device name for "
                f"topics (a-z, 0-9, - and _, from a letter or digit); name it, as NAME={url}"
            )
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a device name for topics: use a-z, 0-9, - and _")
    if name == BRIDGE:
        raise InputError(
            "a device may not be named 'bridge': BASE/bridge/ are the bridge's own topics "
            "(its state, requests and answers); give it another name, as NAME=URL"
        )
    return name, address


@dataclass(frozen=True)
class Topics:
    """The topics of one bridge: under ``base``, and Home Assistant's under ``discovery_prefix``.

    >>> topics = Topics("massager", "homeassistant")
    >>> topics.state("bed"), topics.addressed("massager/bed/set")
    ('massager/bed', Addressed(device='bed', verb='set'))
    >>> topics.request_op("massager/bridge/request/devices")
    'devices'
    """

    base: str
    discovery_prefix: str | None = None
    """None: no Home Assistant discovery."""

    @property
    def bridge_state(self) -> str:
        """``{"state": "online"|"offline"}`` of the bridge itself, retained (its last will)."""
        return f"{self.base}/{BRIDGE}/state"

    def state(self, device: str) -> str:
        """A massager's state, retained."""
        return f"{self.base}/{device}"

    def availability(self, device: str) -> str:
        """Whether a massager answers, retained."""
        return f"{self.base}/{device}/availability"

    def command(self, device: str) -> str:
        """Where a massager's commands are sent."""
        return f"{self.base}/{device}/set"

    def response(self, device: str) -> str:
        """Where the answer to each of a massager's commands is published."""
        return f"{self.base}/{device}/response"

    def request_response(self, op: str) -> str:
        """Where ``<base>/bridge/request/<op>`` is answered."""
        return f"{self.base}/{BRIDGE}/response/{op}"

    @property
    def requests(self) -> str:
        """The filter of the bridge's requests."""
        return f"{self.base}/{BRIDGE}/request/+"

    @property
    def commands(self) -> tuple[str, str]:
        """The filters of every massager's ``set`` and ``get``."""
        return f"{self.base}/+/set", f"{self.base}/+/get"

    @property
    def hass_status(self) -> str | None:
        """Where Home Assistant says ``online`` when it (re)starts; None without discovery."""
        return f"{self.discovery_prefix}/status" if self.discovery_prefix else None

    def request_op(self, topic: str) -> str | None:
        """The op of a request topic (its last word, asked for or not), else None."""
        if topic.startswith(f"{self.base}/{BRIDGE}/request/"):
            return topic.rsplit("/", 1)[1]
        return None

    def addressed(self, topic: str) -> Addressed | None:
        """The massager and verb of ``<base>/<device>/set`` or ``/get``, else None."""
        if not topic.startswith(f"{self.base}/"):
            return None
        parts = topic[len(self.base) + 1 :].split("/")
        if len(parts) != 2 or parts[1] not in ("set", "get"):
            return None
        return Addressed(parts[0], "set" if parts[1] == "set" else "get")

    def may_answer_on(self, topic: str) -> bool:
        """Whether a sender's response topic is none of the bridge's own topics.

        The bridge's rights on the broker must not let a sender overwrite a
        state, an availability, a command or a discovery config by naming it.

        >>> topics = Topics("massager", "homeassistant")
        >>> [topics.may_answer_on(t) for t in ("app/replies", "massager/bed", "massager/bed/set",
        ...  "massager/bridge/request/devices", "homeassistant/status", "massager/app/replies")]
        [True, False, False, False, False, True]
        """
        prefix = self.discovery_prefix
        if prefix and (topic == prefix or topic.startswith(f"{prefix}/")):
            return False
        if not topic.startswith(f"{self.base}/"):
            return True
        parts = topic[len(self.base) + 1 :].split("/")
        return len(parts) >= 2 and parts[-1] not in OWN_VERBS and parts[:2] != [BRIDGE, "request"]
