"""Where the MQTT broker is: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` (TLS).

The password may instead come from ``MASSAGER_CTL_MQTT_PASSWORD`` or the
``[mqtt]`` table of config.toml (`MqttSettings`); it is never part of what is
shown or logged (`BrokerAddress.__str__` and its repr leave it out). Over
``mqtts://`` the broker's certificate is checked against the system's CAs, or
against ``ca_file``; ``cert_file`` and ``key_file`` give a client certificate.

>>> b = parse_broker_url("mqtt://bridge:secret@localhost")
>>> (b.host, b.port, b.username, str(b), b.password)
('localhost', 1883, 'bridge', 'mqtt://bridge@localhost:1883', SecretStr('**********'))
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    import aiomqtt

FORMS = "mqtt://HOST:PORT, mqtts://HOST:PORT (TLS), or with USER:PASSWORD@ before HOST"
BASE_TOPIC = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
"""A base topic: plain words, joined by ``/``."""
DISCOVERY_PREFIX = re.compile(r"^([A-Za-z0-9_-]+)?$")
"""Home Assistant's discovery prefix: one plain word, or empty for none."""


class BrokerURLError(InputError):
    """A broker address that is not in one of the accepted forms."""


class BrokerAddress(BaseModel):
    """A parsed broker URL."""

    model_config = ConfigDict(frozen=True)

    tls: bool
    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    """The CA that signed the broker's certificate (else the system's CAs)."""
    cert_file: Path | None = None
    """A client certificate (PEM), for brokers that require one."""
    key_file: Path | None = None
    """Its private key, if not in ``cert_file``."""

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def client(
        self,
        *,
        identifier: str,
        will: aiomqtt.Will | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> aiomqtt.Client:
        """An aiomqtt client for this broker (MQTT 5, TCP_NODELAY: see the bench).

        ``tls_context`` is used when given (built once, so a reconnect never
        reads the key files again); else `tls_context` builds one.
        """
        # Imported here: the settings that name a broker are read by commands that
        # never open one, and the MQTT client is among the slowest imports we have.
        import aiomqtt

        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            tls_context=tls_context or self.tls_context(),
            # Nagle's algorithm against delayed ACKs made a QoS 1 round trip ~88 ms.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            timeout=10,
        )
        # A burst of 100 massagers' states is normal here, not worth a warning each time.
        client.pending_calls_threshold = 1000
        return client

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``mqtts://`` (None for ``mqtt://``).

        Raises:
            ConfigError: a CA, certificate or key file cannot be read or used; names it.
        """
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"the MQTT ca_file {self.ca_file}: {_why(error)}") from None
        if self.cert_file is not None:
            try:
                # A key that wants a password would make OpenSSL ask on the terminal.
                context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
            except (OSError, ssl.SSLError) as error:
                files = " and ".join(str(f) for f in (self.cert_file, self.key_file) if f)
                raise ConfigError(f"the MQTT client certificate {files}: {_why(error)}") from None
        return context


def _no_password() -> str:
    raise ssl.SSLError("the key is encrypted; give the bridge a key without a passphrase")


def _why(error: OSError | ssl.SSLError) -> str:
    return error.strerror or str(error) if isinstance(error, OSError) else str(error)


class MqttSettings(BaseModel):
    """The ``[mqtt]`` table of config.toml: the bridge's broker and devices.

    ::

        [mqtt]
        broker = "mqtts://bridge@broker.home:8883"
        password = "..."                 # or MASSAGER_CTL_MQTT_PASSWORD
        ca_file = "/etc/ssl/home-ca.pem" # else the system's CAs
        cert_file = "bridge.pem"         # a client certificate, if the broker wants one
        key_file = "bridge.key"
        base = "massager"
        discovery_prefix = "homeassistant"   # "" for no Home Assistant discovery
        [mqtt.devices]
        bedroom = "ble://AirLeg"
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    broker: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    base: str = Field("massager", pattern=BASE_TOPIC.pattern)
    discovery_prefix: str = Field("homeassistant", pattern=DISCOVERY_PREFIX.pattern)
    devices: dict[str, str] = Field(default_factory=dict)
    """Names (topic words) and device URLs."""

    @field_validator("broker")
    @classmethod
    def _valid_broker(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_broker_url(value)
            except BrokerURLError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _files_need_tls(self) -> MqttSettings:
        files = self.ca_file or self.cert_file or self.key_file
        if files and self.broker and not self.broker.startswith("mqtts://"):
            raise ValueError("ca_file, cert_file and key_file need an mqtts:// broker")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self

    def address(self, url: str | None = None) -> BrokerAddress:
        """The broker at ``url`` (else the configured one), with the configured secrets and files.

        Raises:
            ConfigError: no broker given or configured.
            BrokerURLError: ``url`` is not a broker address.
        """
        text = url or self.broker
        if text is None:
            raise ConfigError("no MQTT broker: give --broker, or broker in [mqtt] of config.toml")
        address = parse_broker_url(text)
        files = {"ca_file": self.ca_file, "cert_file": self.cert_file, "key_file": self.key_file}
        if address.tls:
            address = address.model_copy(update={k: v for k, v in files.items() if v})
        if address.password is None and self.password is not None:
            address = address.model_copy(update={"password": self.password})
        return address


def parse_broker_url(text: str) -> BrokerAddress:
    """Parse a broker URL.

    Raises:
        BrokerURLError: not one of the accepted forms (the message lists them).
    """
    parts = urlsplit(text.strip())
    shown = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", text)  # never the password
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerURLError(f"{shown!r} is not a broker address; write {FORMS}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise BrokerURLError(f"{shown!r} has a bad port; write {FORMS}") from None
    password = unquote(parts.password) if parts.password else None
    password = password or os.environ.get("MASSAGER_CTL_MQTT_PASSWORD")
    return BrokerAddress(
        tls=parts.scheme == "mqtts",
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=SecretStr(password) if password else None,
    )
