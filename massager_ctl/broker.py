"""Where the MQTT broker is: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` (TLS).

The password may instead come from ``MASSAGER_CTL_MQTT_PASSWORD``; it is never
part of what is shown or logged (`BrokerAddress.__str__` leaves it out).

>>> b = parse_broker_url("mqtt://bridge:secret@localhost")
>>> (b.host, b.port, b.username, b.password, str(b))
('localhost', 1883, 'bridge', 'secret', 'mqtt://bridge@localhost:1883')
"""

from __future__ import annotations

import os
import socket
import ssl
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.enums import MQTTProtocolVersion
from pydantic import BaseModel, ConfigDict

from .errors import InputError

FORMS = "mqtt://HOST:PORT, mqtts://HOST:PORT (TLS), or with USER:PASSWORD@ before HOST"


class BrokerURLError(InputError):
    """A broker address that is not in one of the accepted forms."""


class BrokerAddress(BaseModel):
    """A parsed broker URL."""

    model_config = ConfigDict(frozen=True)

    tls: bool
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def client(self, *, identifier: str, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
        """An aiomqtt client for this broker (MQTT 5, TCP_NODELAY: see the bench)."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            protocol=MQTTProtocolVersion.MQTTv5,
            will=will,
            tls_context=ssl.create_default_context() if self.tls else None,
            # Nagle's algorithm against delayed ACKs made a QoS 1 round trip ~88 ms.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            timeout=10,
        )


def parse_broker_url(text: str) -> BrokerAddress:
    """Parse a broker URL.

    Raises:
        BrokerURLError: not one of the accepted forms (the message lists them).
    """
    parts = urlsplit(text.strip())
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerURLError(f"{text!r} is not a broker address; write {FORMS}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise BrokerURLError(f"{text!r} has a bad port; write {FORMS}") from None
    password = unquote(parts.password) if parts.password else None
    return BrokerAddress(
        tls=parts.scheme == "mqtts",
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=password or os.environ.get("MASSAGER_CTL_MQTT_PASSWORD"),
    )
