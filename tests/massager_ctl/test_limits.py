"""A profile's limits hold against every front door.

The checks are the simulated massager's own: its intensity, and the highest
pressure its chambers ever reached. Virtual time.
"""

from __future__ import annotations

import asyncio

import pytest

from firmware_protocol import (
    Button,
    Mode,
    SessionState,
)
from massager_ctl.device import Massager
from massager_ctl.errors import BeyondLimits
from massager_ctl.profiles import Profile
from massager_ctl.programs import Outcome, ProgramRunner
from massager_ctl.supervisor import ProgramSupervisor
from massager_ctl.transports.faults import Cable
from massager_ctl.transports.sim import SimTransport, simulated_device
from massager_ctl.urls import SimAddress
from simulator import Firmware

ADDRESS = SimAddress(name="bedside", options={"seed": "1"})
LEVEL_1_MMHG = 50.0
"""The simulator's level 1 target; level 2 aims at 80."""
WITHIN_LEVEL_1_MMHG = LEVEL_1_MMHG + 10
"""The most a chamber may reach while the massager runs at level 1 (control overshoot)."""


def gentle(*steps: dict[str, object], **limits: object) -> Profile:
    """A profile held to ``limits`` (max_intensity 1 unless given)."""
    return Profile.model_validate({
        "name": "gentle", "title": "Gentle", "description": "d", "why": "w",
        "limits": limits or {"max_intensity": 1},
        "steps": list(steps) or [{"mode": "wave", "intensity": 1, "minutes": 10}],
    })  # fmt: skip


def firmware_now(address: SimAddress = ADDRESS) -> Firmware:
    """The device's firmware, brought up to the loop's present."""
    host = simulated_device(address)
    host.sync()
    return host.firmware


class Watch:
    """Samples the true device four times a second of virtual time."""

    def __init__(self, address: SimAddress = ADDRESS) -> None:
        self.address = address
        self.levels: list[tuple[float, int]] = []
        """(when, intensity) whenever a session was on."""
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            fw = firmware_now(self.address)
            if fw.state in (SessionState.RUNNING, SessionState.PAUSED):
                self.levels.append((loop.time(), fw.intensity))
            await asyncio.sleep(0.25)

    def at(self, when: float) -> int:
        """The intensity sampled nearest after ``when``."""
        return next(level for t, level in self.levels if t >= when)

    def stop(self) -> None:
        self.task.cancel()

    def highest_mmhg(self) -> float:
        """The highest pressure any chamber ever reached."""
        return firmware_now(self.address).plant.max_pressure_seen


def rig(profile: Profile) -> tuple[ProgramSupervisor, Cable]:
    cable = Cable(lambda: SimTransport(ADDRESS), seed=7)
    return ProgramSupervisor(ADDRESS, profile, open_link=cable.transport), cable


async def test_a_remote_change_beyond_the_limits_stands_for_its_step_only() -> None:
    # The person's own hand: PLUS on the remote takes the massager to 2 on a profile held
    # to 1. It stands for the step (the controller does not undo what the massager did),
    # but a resume after a lost link starts the step's own 1, as does the next step.
    profile = gentle(
        {"mode": "wave", "intensity": 1, "minutes": 4},
        {"mode": "pulse", "intensity": 1, "minutes": 4},
    )
    supervisor, cable = rig(profile)
    loop = asyncio.get_running_loop()
    watch = Watch()
    loop.call_later(30, lambda: simulated_device(ADDRESS).press(Button.PLUS))
    loop.call_later(100, cable.unplug)
    loop.call_later(103, cable.plug)
    result = await supervisor.run()
    watch.stop()
    assert result.outcome == Outcome.COMPLETED, result.message
    assert result.resumes == 1
    assert watch.at(60) == 2  # it stood
    assert watch.at(110) == 1  # not carried into the resume
    assert watch.at(300) == 1  # nor into the next step
    assert max(level for t, level in watch.levels if t > 103) == 1


async def test_a_remote_change_within_the_limits_is_still_resumed() -> None:
    profile = gentle({"mode": "wave", "intensity": 1, "minutes": 4}, max_intensity=2)
    supervisor, cable = rig(profile)
    loop = asyncio.get_running_loop()
    watch = Watch()
    loop.call_later(30, lambda: simulated_device(ADDRESS).press(Button.PLUS))
    loop.call_later(100, cable.unplug)
    loop.call_later(103, cable.plug)
    result = await supervisor.run()
    watch.stop()
    assert (result.outcome, result.resumes) == (Outcome.COMPLETED, 1)
    assert watch.at(110) == 2


async def test_changes_beyond_the_limits_are_refused_with_the_limit_named() -> None:
    profile = gentle(
        {"mode": "wave", "intensity": 1, "minutes": 3}, max_intensity=2, max_pressure_mmhg=70
    )
    async with Massager.connect(ADDRESS) as massager:
        runner = ProgramRunner(massager, profile)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(30)
        with pytest.raises(
            BeyondLimits, match="intensity 3 is above this program's max_intensity 2"
        ):
            await runner.adjust(intensity=3)
        with pytest.raises(
            BeyondLimits,
            match="intensity 2 aims at 80 mmHg, above this program's max_pressure_mmhg 70",
        ):
            await runner.adjust(intensity=2)
        with pytest.raises(BeyondLimits, match="max_pressure_mmhg 70"):
            await runner.adjust(mode="cycle")  # whatever cycle the massager holds
        await runner.adjust(mode="pulse")  # at the step's 1: within them
        await asyncio.sleep(1)
        fw = firmware_now()
        assert (fw.mode, fw.intensity) == (Mode.PULSE, 1)
        result = await task  # and the program went on
    assert result.outcome == Outcome.COMPLETED
    assert firmware_now().plant.max_pressure_seen < WITHIN_LEVEL_1_MMHG


async def test_leaving_a_cycle_step_runs_at_a_level_within_the_limits() -> None:
    profile = gentle(
        {"minutes": 3, "cycle": {"pressure_mmhg": 29, "inflate_s": 2, "hold_s": 5,
                                 "release_s": 3, "rest_s": 5}},
        max_pressure_mmhg=60,
    )  # fmt: skip
    async with Massager.connect(ADDRESS) as massager:
        await massager.set_intensity(3)  # the preset a deep program left behind
        runner = ProgramRunner(massager, profile)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(20)
        with pytest.raises(BeyondLimits, match="intensity 3 aims at 110 mmHg"):
            await runner.adjust(mode="wave")
        await runner.adjust(intensity=1)
        await runner.adjust(mode="wave")
        await asyncio.sleep(1)
        fw = firmware_now()
        assert (fw.mode, fw.intensity) == (Mode.WAVE, 1)
        assert (await task).outcome == Outcome.COMPLETED
    assert firmware_now().plant.max_pressure_seen < WITHIN_LEVEL_1_MMHG
