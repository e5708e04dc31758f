"""Device addresses: one string names a massager and the way to reach it.

>>> parse_device_url("sim://")
SimAddress(name='default', options={})
>>> parse_device_url("serial:///dev/ttyUSB0?baudrate=9600")
SerialAddress(path='/dev/ttyUSB0', baudrate=9600)
>>> parse_device_url("ble://AA:BB:CC:DD:EE:FF")
BleAddress(address='AA:BB:CC:DD:EE:FF', name_prefix=None, hci=None)
>>> str(parse_device_url("ble://AirLeg?hci=tcp-client:127.0.0.1:7001"))
'ble://AirLeg?hci=tcp-client:127.0.0.1:7001'
>>> parse_device_url("usb0")
Traceback (most recent call last):
...
massager_ctl.errors.DeviceURLError: 'usb0' is not a device address. Accepted forms:
  sim://                        the built-in simulator (sim://NAME for another one, ?seed=1 ...)
  serial:///dev/ttyUSB0         a serial port (?baudrate=115200)
  socket://HOST:PORT            serial over TCP
  ble://AA:BB:CC:DD:EE:FF       a Bluetooth LE massager by address
  ble://NAME-PREFIX             a Bluetooth LE massager by the start of its advertised name
                                (?hci=tcp-client:HOST:PORT for the simulator's virtual radio)
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from .errors import DeviceURLError

DEFAULT_DEVICE = "sim://"
"""The massager used when none is given or configured: the built-in simulator."""

FORMS = """\
  sim://                        the built-in simulator (sim://NAME for another one, ?seed=1 ...)
  serial:///dev/ttyUSB0         a serial port (?baudrate=115200)
  socket://HOST:PORT            serial over TCP
  ble://AA:BB:CC:DD:EE:FF       a Bluetooth LE massager by address
  ble://NAME-PREFIX             a Bluetooth LE massager by the start of its advertised name
                                (?hci=tcp-client:HOST:PORT for the simulator's virtual radio)"""

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")


class _Address(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SimAddress(_Address):
    """The simulator in this process; devices of the same name are the same device."""

    scheme: Literal["sim"] = Field("sim", repr=False)
    name: str = "default"
    options: dict[str, str] = Field(default_factory=dict)

    def __str__(self) -> str:
        name = "" if self.name == "default" else self.name
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"sim://{name}" + (f"?{query}" if query else "")


class SerialAddress(_Address):
    """A serial port on this computer."""

    scheme: Literal["serial"] = Field("serial", repr=False)
    path: str
    baudrate: int = 115200

    def __str__(self) -> str:
        return f"serial://{self.path}?baudrate={self.baudrate}"


class SocketAddress(_Address):
    """Serial over TCP (pyserial's socket:// form)."""

    scheme: Literal["socket"] = Field("socket", repr=False)
    host: str
    port: int

    def __str__(self) -> str:
        return f"socket://{self.host}:{self.port}"


class BleAddress(_Address):
    """A Bluetooth LE massager, by address or by the start of its advertised name.

    ``hci`` names the radio when it is not the system's: a Bumble HCI transport,
    such as ``tcp-client:127.0.0.1:7001`` for the simulator's virtual radio.
    """

    scheme: Literal["ble"] = Field("ble", repr=False)
    address: str | None = None
    name_prefix: str | None = None
    hci: str | None = None

    def __str__(self) -> str:
        query = f"?hci={self.hci}" if self.hci else ""
        return f"ble://{self.address or self.name_prefix}{query}"


DeviceAddress = SimAddress | SerialAddress | SocketAddress | BleAddress


def _bad(text: str, why: str = "is not a device address") -> DeviceURLError:
    return DeviceURLError(f"{text!r} {why}. Accepted forms:\n{FORMS}")


def parse_device_url(text: str) -> DeviceAddress:
    """Parse a device URL into its address.

    Raises:
        DeviceURLError: not one of the accepted forms; the message lists them.
    """
    if "://" not in text:
        raise _bad(text)
    parts = urlsplit(text)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    scheme = parts.scheme.lower()
    if scheme == "sim":
        return SimAddress(name=unquote(parts.netloc) or "default", options=query)
    if scheme == "serial":
        path = unquote(parts.netloc + parts.path)
        if not path.startswith("/") or len(path) < 2:
            raise _bad(text, "needs the port's path, as in serial:///dev/ttyUSB0")
        unknown = set(query) - {"baudrate"}
        if unknown:
            raise _bad(text, f"has unknown options {sorted(unknown)}")
        baud = query.get("baudrate", "115200")
        if not baud.isdigit() or int(baud) <= 0:
            raise _bad(text, "has a baudrate that is not a positive number")
        return SerialAddress(path=path, baudrate=int(baud))
    if scheme == "socket":
        host = parts.hostname
        _, colon, port_text = parts.netloc.rpartition(":")
        if not host or not colon or not port_text.isdigit():
            raise _bad(text, "needs a host and a port, as in socket://127.0.0.1:7000")
        if not 1 <= int(port_text) <= 65535:
            raise _bad(text, f"has port {int(port_text)}, out of range: a port is 1 to 65535")
        return SocketAddress(host=host, port=int(port_text))
    if scheme == "ble":
        target = unquote(parts.netloc + parts.path).strip("/")
        if not target:
            raise _bad(text, "needs an address or a name prefix")
        unknown = set(query) - {"hci"}
        if unknown:
            raise _bad(text, f"has unknown options {sorted(unknown)}")
        hci = query.get("hci")
        if hci is not None and ":" not in hci:
            raise _bad(text, "has an hci radio that is not a transport like tcp-client:HOST:PORT")
        if _MAC.match(target) or _UUID.match(target):
            return BleAddress(address=target.upper(), hci=hci)
        return BleAddress(name_prefix=target, hci=hci)
    raise _bad(text, f"has an unknown scheme {parts.scheme!r}")
