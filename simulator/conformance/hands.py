"""What a person at the device does for the suite: open the pairing window, restart it, break it.

Some rules can only be checked with a hand on the device: pairing needs its
window open, replay after a restart needs a restart, a latched fault needs a
fault. For ``sim://`` the suite reaches the simulator in its own process and
does all three itself. For any other device it asks the maker when told to
(``--restart-step``, ``--fault-step``: it says what to do and waits for Enter),
runs a command (``--restart-command``), or reports the check not tested and
says which option would test it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from massager_ctl.urls import DeviceAddress, SimAddress

if TYPE_CHECKING:
    from simulator.host import DeviceHost

RESTART_HOW = (
    "needs the device restarted: run with --restart-step (you switch it off and on when "
    "asked) or --restart-command CMD (a command that restarts it)"
)
FAULT_HOW = (
    "needs a fault the device can detect, and nothing here can cause one: run with "
    "--fault-step (you cause one when asked, e.g. a hose pinched shut) or use sim://"
)


RESTART_COMMAND_S = 60.0
"""Real seconds a --restart-command may take before the suite gives up on it."""


class Hands:
    """A device nobody attends: the suite can open nothing, restart nothing, break nothing."""

    async def open_pairing(self) -> None:
        """Open the pairing window, if these hands can (otherwise it must be open already)."""

    def why_no_restart(self) -> str | None:
        """Why the device cannot be restarted here, or None if it can."""
        return RESTART_HOW

    async def restart(self) -> None:
        """Switch the device off and on again; returns once it is back on."""
        raise NotImplementedError

    def why_no_fault(self) -> str | None:
        """Why no fault can be caused here, or None if one can."""
        return FAULT_HOW

    async def cause_fault(self) -> str:
        """Cause a fault the device detects; returns what was done, in words."""
        raise NotImplementedError

    async def clear_fault(self) -> None:
        """Take the cause of the fault away again."""
        raise NotImplementedError


class SimHands(Hands):
    """The simulator in this process (``sim://``): the suite's own hands on it."""

    FAULT = "sensor-stuck"
    """A fault the firmware notices in any state, idle too, within a few seconds."""

    def __init__(self, address: SimAddress) -> None:
        self.address = address

    def _host(self) -> DeviceHost:
        from massager_ctl.transports.sim import simulated_device

        return simulated_device(self.address)

    async def open_pairing(self) -> None:  # noqa: D102
        self._host().open_pairing()

    def why_no_restart(self) -> str | None:  # noqa: D102
        return None

    async def restart(self) -> None:  # noqa: D102
        self._host().restart()

    def why_no_fault(self) -> str | None:  # noqa: D102
        return None

    async def cause_fault(self) -> str:  # noqa: D102
        from simulator.faults import CATALOGUE

        host = self._host()
        host.sync()
        kind = CATALOGUE[self.FAULT]
        kind.inject(host.firmware.plant)
        host.sync()
        return f"the simulator's {self.FAULT}: {kind.description}"

    async def clear_fault(self) -> None:  # noqa: D102
        from simulator.faults import CATALOGUE

        host = self._host()
        host.sync()
        CATALOGUE[self.FAULT].repair(host.firmware.plant)
        host.sync()


class MakerHands(Hands):
    """A maker at the device, asked at each step, or a command that restarts it."""

    def __init__(
        self,
        *,
        restart_step: bool = False,
        restart_command: str | None = None,
        fault_step: bool = False,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.restart_step = restart_step
        self.restart_command = restart_command
        self.fault_step = fault_step
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))

    async def _ask(self, what: str) -> None:
        self.say(f"\n>>> {what}, then press Enter.")
        line = await _read_line()
        if not line:
            from .suite import NotTested  # the runner's; imported here, where it is needed

            raise NotTested(f"no answer on standard input to: {what}")

    def why_no_restart(self) -> str | None:  # noqa: D102
        return None if self.restart_step or self.restart_command else RESTART_HOW

    async def restart(self) -> None:  # noqa: D102
        if self.restart_command:
            from .suite import NotTested  # the runner's; imported here, where it is needed

            process = await asyncio.create_subprocess_shell(self.restart_command)
            try:
                async with asyncio.timeout(RESTART_COMMAND_S):
                    code = await process.wait()
            except TimeoutError:
                raise NotTested(
                    f"--restart-command did not finish in {RESTART_COMMAND_S:g} s"
                ) from None
            finally:
                if process.returncode is None:  # timed out, or the run was interrupted
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await asyncio.shield(process.wait())
            if code != 0:
                raise NotTested(f"--restart-command exited with status {code}")
            return
        await self._ask("Switch the massager off and on again (its memory must survive)")

    def why_no_fault(self) -> str | None:  # noqa: D102
        return None if self.fault_step else FAULT_HOW

    async def cause_fault(self) -> str:  # noqa: D102
        await self._ask(
            "Cause a fault the massager detects (for example, pinch a hose shut or "
            "disconnect a chamber's sensor) and leave it so"
        )
        return "a fault the maker caused"

    async def clear_fault(self) -> None:  # noqa: D102
        await self._ask("Take the cause of the fault away again")


async def _read_line() -> str:
    """A line from standard input, read in a thread that never holds the program up.

    `asyncio.to_thread` would: interrupted at the question (Ctrl-C), the run
    could not end until someone pressed Enter, as the loop waits for its threads.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(line: str) -> None:
        if not answer.done():
            answer.set_result(line)

    def read() -> None:
        line = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, line)

    threading.Thread(target=read, name="conformance-stdin", daemon=True).start()
    return await answer


def hands_for(
    address: DeviceAddress,
    *,
    restart_step: bool = False,
    restart_command: str | None = None,
    fault_step: bool = False,
) -> Hands:
    """The hands the suite has on the device at ``address``."""
    if isinstance(address, SimAddress):
        return SimHands(address)
    return MakerHands(
        restart_step=restart_step, restart_command=restart_command, fault_step=fault_step
    )
