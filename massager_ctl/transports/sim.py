"""``sim://``: the simulator in this process, reached through an in-memory byte pipe.

Devices live per event loop and per name, so two connections to ``sim://bedroom``
in one process talk to the same device, and a device outlives a closed link as
hardware does (it notices the link went down and vents by itself). URL query
options set fields of `simulator.DeviceConfig` (``sim://?seed=1&cycle=false``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from simulator import DeviceConfig, Firmware
from simulator.host import DeviceHost

from ..errors import DeviceURLError
from ..keystore import KeyStore
from ..urls import SimAddress
from .base import Transport, TransportClosed

_DEVICES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, DeviceHost]] = (
    weakref.WeakKeyDictionary()
)


def config_from_options(options: dict[str, str], url: str = "sim://") -> DeviceConfig:
    """Build a `DeviceConfig` from the options of the simulator's ``url``.

    Raises:
        DeviceURLError: an option it does not have, or a value that does not fit,
            in a sentence that names the URL and the option.
    """
    known = DeviceConfig.option_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DeviceURLError(
            f"{url}: the simulator has no option {', '.join(unknown)}; "
            f"its options are {', '.join(known)}"
        )
    try:
        return DeviceConfig.model_validate(options)
    except ValidationError as error:
        problems = "; ".join(_option_problem(item) for item in error.errors())
        raise DeviceURLError(f"{url}: {problems}") from None


_WANTED = {
    "int_parsing": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _option_problem(item: Mapping[str, Any]) -> str:
    """One pydantic error about a simulator option, as words: ``seed must be a whole number``."""
    name = ".".join(map(str, item["loc"]))
    given = item.get("input")
    if item["type"] in _WANTED:
        return f"{name} must be {_WANTED[item['type']]}, not {given!r}"
    if item["type"] in _BOUNDS:
        key, words = _BOUNDS[item["type"]]
        return f"{name} must be {words} {item.get('ctx', {}).get(key):g}, not {given}"
    message = item["msg"].removeprefix("Value error, ")
    return f"{name}: {message}" if name else message


def simulated_device(address: SimAddress) -> DeviceHost:
    """The simulated device for ``address`` on this loop, powered on at first use.

    A device switched off later (``host.stop()``) stays off: like unplugged
    hardware it takes bytes and answers nothing until it is started again.
    """
    loop = asyncio.get_running_loop()
    devices = _DEVICES.setdefault(loop, {})
    host = devices.get(address.name)
    if host is None:
        host = devices[address.name] = DeviceHost(
            config_from_options(address.options, str(address))
        )
        host.start()
    return host


class SimTransport(Transport):
    """An in-memory link to a simulated device in this process."""

    description = "the built-in simulator"

    def __init__(self, address: SimAddress) -> None:
        self.address = address
        self._host: DeviceHost | None = None
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False

    @property
    def firmware(self) -> Firmware:
        """The simulated device's firmware (tests look at its true state)."""
        if self._host is None:
            raise TransportClosed("the simulator link is not open")
        return self._host.firmware

    @property
    def host(self) -> DeviceHost:
        """The simulated device itself (tests press its remote's buttons)."""
        if self._host is None:
            raise TransportClosed("the simulator link is not open")
        return self._host

    async def open(self) -> None:  # noqa: D102
        self._host = simulated_device(self.address)
        self._host.attach(self._incoming.put_nowait)
        self._closed = False

    def device_keys(self) -> KeyStore:
        """The keys this process paired with the simulated device, in memory (`simulated_keys`)."""
        return simulated_keys(self.address)

    def open_pairing(self) -> bool:
        """Hold the simulated remote's pairing button: its remote is within reach."""
        simulated_device(self.address).open_pairing()
        return True

    def write(self, data: bytes) -> None:  # noqa: D102
        if self._closed or self._host is None:
            raise TransportClosed("the simulator link is closed")
        # Deliver on the next loop turn, as a wire would: never re-enter the caller.
        asyncio.get_running_loop().call_soon(self._host.feed, data)

    async def read(self) -> bytes:  # noqa: D102
        if self._closed:
            raise TransportClosed("the simulator link is closed")
        data = await self._incoming.get()
        if data is None:
            raise TransportClosed("the simulator link was cut")
        return data

    def cut(self) -> None:
        """Pull the cable: both ends see the link go down (for tests of link loss)."""
        if self._host is not None and not self._closed:
            self._host.detach()
        self._closed = True
        self._incoming.put_nowait(None)

    async def close(self) -> None:  # noqa: D102
        self.cut()


_KEYS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, KeyStore]] = (
    weakref.WeakKeyDictionary()
)


def simulated_keys(address: SimAddress) -> KeyStore:
    """This controller's keys for the simulated devices of this loop, in memory.

    The device lives and dies with this process, and so does what it paired; a
    key in the user's key file would outlive the device that knew it.
    """
    stores = _KEYS.setdefault(asyncio.get_running_loop(), {})
    return stores.setdefault(address.name, KeyStore(None))
