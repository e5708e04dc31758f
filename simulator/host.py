"""Running a simulated massager on an asyncio event loop.

`DeviceHost` drives a `Firmware` with the loop's clock: it advances the firmware
when bytes or button presses arrive and when the firmware's next deadline comes,
and hands every byte the firmware sends to whoever is attached as the link. The
firmware keeps running (a session stays on, the watchdog keeps counting) while no
link is attached, exactly as a device on a table does.

>>> import asyncio
>>> async def demo():
...     host = DeviceHost(DeviceConfig(seed=1))
...     host.start()
...     host.press(Button.POWER)
...     await asyncio.sleep(0.1)
...     state = host.firmware.state
...     host.stop()
...     return state
>>> asyncio.run(demo())
<SessionState.RUNNING: 1>
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from firmware_protocol import Button

from .config import DeviceConfig
from .firmware import Firmware
from .memory import DeviceMemory


class DeviceHost:
    """One simulated device living on the running event loop."""

    def __init__(
        self, config: DeviceConfig | None = None, memory: DeviceMemory | None = None
    ) -> None:
        self.config = config or DeviceConfig()
        self.memory = memory or DeviceMemory()
        """Survives `stop` and `start`, as a device's flash survives a power cycle."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._firmware: Firmware | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._link: Callable[[bytes], None] | None = None

    @property
    def firmware(self) -> Firmware:
        """The firmware (and through it the plant) of this device."""
        if self._firmware is None:
            raise RuntimeError("the device is not started")
        return self._firmware

    @property
    def running(self) -> bool:
        """Whether the device has been started and not stopped."""
        return self._firmware is not None

    def start(self) -> None:
        """Power the device on, on the running loop's clock."""
        if self._firmware is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._firmware = _firmware_class(self.config)(
            self.config, now=self._loop.time(), memory=self.memory
        )
        self._wake()

    def stop(self) -> None:
        """Power the device off (no more timers; bytes are no longer handled)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._firmware = None
        self._link = None

    def restart(self) -> None:
        """Switch the device off and on again, as its power switch does.

        Its memory (the paired controllers and their counters) survives, and a
        link attached stays attached (the cable is still plugged in), but the
        firmware starts from nothing: no controller, no session, uptime 0.
        """
        link = self._link
        self.stop()
        self.start()
        self._link = link

    def attach(self, on_bytes: Callable[[bytes], None]) -> None:
        """Connect a link: ``on_bytes`` receives everything the device sends from now on."""
        self._link = on_bytes

    def detach(self) -> None:
        """The link is gone (cable pulled, BLE disconnected): the firmware is told at once."""
        self._link = None
        if self._firmware is not None and self._loop is not None:
            self._firmware.link_down(self._loop.time())
            self._wake()

    def feed(self, data: bytes) -> None:
        """Bytes arrive at the device from the link."""
        if self._firmware is None or self._loop is None:
            return
        self._firmware.receive_data(data, self._loop.time())
        self._wake()

    def press(self, button: Button) -> None:
        """Press a button on the handheld remote."""
        if self._firmware is None or self._loop is None:
            return
        self._firmware.press(button, self._loop.time())
        self._wake()

    def open_pairing(self) -> None:
        """Hold the remote's pairing button: one controller may pair within the window."""
        if self._firmware is None or self._loop is None:
            return
        self._firmware.open_pairing(self._loop.time())
        self._wake()

    def sync(self) -> None:
        """Bring the device up to the loop's present (before reading its true state)."""
        if self._firmware is not None and self._loop is not None:
            self._firmware.advance(self._loop.time())
            self._wake()

    def _on_timer(self) -> None:
        woken_for = self._timer_at
        self._timer = self._timer_at = None
        if self._firmware is None or self._loop is None:
            return
        # The loop fires a timer up to one clock tick before its float deadline (looptime
        # counts whole microseconds). Run to the moment it woke us for, or the firmware
        # finds nothing due, asks again, and the loop wakes twice for one deadline.
        now = self._loop.time()
        self._firmware.advance(now if woken_for is None else max(now, woken_for))
        self._wake()

    def _wake(self) -> None:
        firmware, loop = self._firmware, self._loop
        if firmware is None or loop is None:
            return
        data = firmware.data_to_send()
        if data and self._link is not None:
            self._link(data)
        deadline = firmware.next_deadline()
        if self._timer_at == deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline


def _firmware_class(config: DeviceConfig) -> type[Firmware]:
    """The firmware to run: with one rule broken on purpose when the config says so."""
    if not config.broken:
        return Firmware
    from .conformance.broken import BrokenFirmware  # only for a device broken on purpose

    return BrokenFirmware


__all__ = ["Button", "DeviceConfig", "DeviceHost"]
