"""Running a program on the device at an address, riding out a lost link.

When the link goes (the port vanished, the device went silent, its watchdog
forgot us), the device vents by itself; `ProgramSupervisor` then reconnects with
a bounded exponential backoff. If the link is back within the policy's window
(default 30 s) the program resumes by a fresh start, as `ProgramRunner.resume`
describes; otherwise it ends and says how long it waited. A window of 0 never
reconnects. Each outage gets its own window; after ``max_resumes`` resumes the
program ends rather than start pressure again and again on a flapping link. It
resumes only on the same device (by the serial number it announced), and a
resumed step gets only what was left of it.

>>> import asyncio
>>> from massager_ctl.programs.profiles import find_profile
>>> async def demo():
...     supervisor = ProgramSupervisor("sim://?seed=1", find_profile("effleurage-wave-30"))
...     return (await supervisor.run()).outcome
>>> import looptime  # virtual time, so the half hour takes no time
>>> with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(noop_cycles=1)) as runner:
...     runner.run(demo())
<Outcome.COMPLETED: 'completed'>
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..device import Massager
from ..errors import ConnectFailed
from ..models import DeviceInfo
from ..transports import Transport, open_transport
from ..urls import DeviceAddress, parse_device_url
from .profiles import Profile, check_profile
from .runner import Outcome, ProgramResult, ProgramRunner, Progress

MIN_ATTEMPT_S = 1e-3
"""A window with less than this left is closed. No link opens that fast, and a remainder
of rounding (1e-14 s) would not move the event loop's clock: asyncio runs a timer that
near at once, and the loop would try again and again without end."""


SIGNED_FRAMES_PER_S = 10
"""What a program's link signs a second, with room to spare: a keepalive on its rhythm and
one on each challenge (4 and 4 a second at the reference watchdog), and the commands."""


class ResumePolicy(BaseModel):
    """How a program rides out a lost link."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_s: float = Field(30.0, ge=0, le=3600)
    """Resume only if the link is back within this many seconds; 0 never reconnects."""
    first_retry_s: float = Field(0.25, gt=0)
    """The wait after the first failed reconnect; it doubles after each one ..."""
    max_retry_s: float = Field(4.0, gt=0)
    """... up to this."""
    connect_timeout_s: float | None = Field(None, gt=0)
    """How long one attempt may take to open the link and hear the device; by default
    the transport's own (5 s; 20 s over BLE, which scans first)."""
    max_resumes: int = Field(10, ge=0)
    """After this many resumes in one program, a lost link ends it."""


LinkEvent = Literal["connected", "lost", "back", "gave_up"]


class LinkNotice(BaseModel):
    """What happened to the link while a program runs (for the display and for scripts)."""

    model_config = ConfigDict(frozen=True)

    kind: str = "link"
    event: LinkEvent
    message: str
    info: DeviceInfo | None = None


class ProgramSupervisor:
    """Runs ``profile`` on the device at ``device`` and reconnects per ``policy``.

    ``open_link`` makes the transport for each connection (by default the one
    the address names); tests wrap it in a `FaultyTransport`. ``on_link`` hears
    of every connect, loss and return; ``on_progress`` of every status report.
    On the first connection the profile is checked against what the device
    announces, and then ``require`` is called with that description; either
    raises to refuse the device, before anything is sent and before
    ``on_link`` hears of the connection (so nothing is journaled).
    """

    def __init__(
        self,
        device: str | DeviceAddress,
        profile: Profile,
        *,
        policy: ResumePolicy | None = None,
        open_link: Callable[[], Transport] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_link: Callable[[LinkNotice], None] | None = None,
        require: Callable[[DeviceInfo], None] | None = None,
    ) -> None:
        self.address = parse_device_url(device) if isinstance(device, str) else device
        self.profile = profile
        self.policy = policy or ResumePolicy()
        self.open_link = open_link or (lambda: open_transport(self.address))
        self.on_progress = on_progress
        self.on_link = on_link
        self.require = require
        self.device: DeviceInfo | None = None
        self.runner: ProgramRunner | None = None
        self.interrupted_result: ProgramResult | None = None
        self.attempts = 0
        """Reconnect attempts made, over every outage."""

    async def run(self) -> ProgramResult:
        """Run the program to its end, reconnecting after lost links as the policy allows.

        On cancellation (Ctrl-C) the device is vented if the link is up, and
        `interrupted_result` says how the program ended.

        Raises:
            ConnectFailed: the first connection could not be made.
            ProfileRefused: the device cannot run the profile.
        """
        result = await self._connected_run()
        while result.outcome == Outcome.LINK_LOST and self.policy.window_s > 0:
            if self.runner is not None and self.runner.paused:
                # Starting pressure again would undo the person's pause.
                return self._amended(
                    result,
                    Outcome.LINK_LOST,
                    "the link was lost while the program was paused; it does not resume by itself",
                )
            if result.resumes >= self.policy.max_resumes:
                return self._amended(
                    result,
                    Outcome.LINK_LOST,
                    f"the link was lost again after {result.resumes} resumes; the program ends "
                    "rather than start pressure again and again (check the connection)",
                )
            try:
                resumed = await self._reconnect(result)
            except _DifferentDevice as other:
                return self._amended(result, Outcome.LINK_LOST, str(other))
            if resumed is None:
                message = (
                    f"the link to the massager was lost and did not come back within "
                    f"{self.policy.window_s:g} s; it vents by itself"
                )
                self._notify("gave_up", message)
                return self._amended(result, Outcome.LINK_LOST, message)
            result = resumed
        return result

    async def _reconnect(self, lost: ProgramResult) -> ProgramResult | None:
        """Try until the window closes: the resumed program's result, or None.

        Raises:
            _DifferentDevice: another massager answered at the address.
        """
        loop = asyncio.get_running_loop()
        policy = self.policy
        deadline = loop.time() + policy.window_s
        self._notify("lost", f"{lost.message}; reconnecting for up to {policy.window_s:g} s")
        delay = policy.first_retry_s
        tries = 0
        try:
            while (left := deadline - loop.time()) >= MIN_ATTEMPT_S:
                self.attempts += 1
                tries += 1
                with contextlib.suppress(ConnectFailed):
                    return await self._connected_run(left, tries)
                await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
                delay = min(delay * 2, policy.max_retry_s)
        except asyncio.CancelledError:
            if self.interrupted_result is None:  # not already vented over a new link
                self.interrupted_result = self._amended(
                    lost,
                    Outcome.INTERRUPTED,
                    "interrupted while the link was down; the massager vents by itself",
                )
            raise
        return None

    async def _connected_run(self, left_s: float | None = None, tries: int = 0) -> ProgramResult:
        """Connect (within ``left_s`` at most), then start the program or resume it.

        Raises:
            ConnectFailed: no link.
        """
        link = self.open_link()
        timeout_s = self.policy.connect_timeout_s or link.connect_timeout_s
        if left_s is not None:
            timeout_s = min(timeout_s, left_s)
        # The counters for the whole program are reserved at once: the key file is
        # written once a connection, not every 256 frames (an SD card wears).
        frames = math.ceil(self.profile.total_minutes * 60 * SIGNED_FRAMES_PER_S) + 1024
        async with Massager.connect(
            self.address, transport=link, timeout_s=timeout_s, signed_frames=frames
        ) as massager:
            info = massager.info
            resuming = self.runner is not None
            if resuming:
                assert self.device is not None
                if (info.model, info.serial) != (self.device.model, self.device.serial):
                    # A port renumbered after a replug can be someone else's massager.
                    raise _DifferentDevice(
                        f"after the lost link a different massager ({info.model}, serial "
                        f"{info.serial}) answered at {self.address}; the program does not "
                        "resume on it"
                    )
                self._notify("back", f"the link is back after {tries} attempt(s)")
            else:
                # What was asked is checked before anything else (the safety limits
                # in ``require``, say): a typo is said at once.
                check_profile(self.profile, info)
                if self.require is not None:
                    self.require(info)
                self.device = info
                self._notify("connected", f"connected to {self.address}", info)
                self.runner = ProgramRunner(massager, self.profile, on_progress=self.on_progress)
            runner = self.runner
            assert runner is not None
            try:
                return await (runner.resume(massager) if resuming else runner.run())
            except asyncio.CancelledError:
                self.interrupted_result = await runner.interrupted()
                raise

    def _notify(self, event: LinkEvent, message: str, info: DeviceInfo | None = None) -> None:
        if self.on_link is not None:
            self.on_link(LinkNotice(event=event, message=message, info=info))

    def _amended(self, result: ProgramResult, outcome: Outcome, message: str) -> ProgramResult:
        return result.model_copy(update={"outcome": outcome, "message": message})


class _DifferentDevice(Exception):
    """Another massager than the program's answered at the address after a lost link."""


__all__ = ["LinkNotice", "ProgramSupervisor", "ResumePolicy"]
