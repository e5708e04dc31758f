"""A profile's limits hold against every front door, and forged frames end nothing.

Frames from the massager are not signed yet, so someone who can put bytes on
the line can forge a press on the remote, a STATUS and a SESSION_ENDED. Here
they are injected toward the controller below the transport (`FaultyTransport`
over the in-process simulator), encoded with firmware_protocol as a forger
would, with a good CRC. The checks are the simulated massager's own: its
intensity, and the highest pressure its chambers ever reached. Virtual time.
"""

from __future__ import annotations

import asyncio
import dataclasses

import looptime
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from firmware_protocol import (
    Button,
    ButtonPressed,
    EndReason,
    Fault,
    FaultRaised,
    Frame,
    Message,
    Mode,
    SessionEnded,
    SessionStarted,
    SessionState,
    StartSource,
    Status,
    StatusFlag,
)
from massager_ctl.device import Massager
from massager_ctl.errors import BeyondLimits
from massager_ctl.programs.profiles import Profile
from massager_ctl.programs.runner import Outcome, ProgramRunner
from massager_ctl.programs.supervisor import ProgramSupervisor
from massager_ctl.transports.faults import Cable, LinkFaults
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


def forged(*messages: Message) -> bytes:
    """Frames as someone injecting into the line sends them: unsigned, any seq, a good CRC."""
    return b"".join(
        Frame(40_000 + i, m.TYPE, m.encode_payload()).encode() for i, m in enumerate(messages)
    )


def firmware_now(address: SimAddress = ADDRESS) -> Firmware:
    """The device's firmware, brought up to the loop's present."""
    host = simulated_device(address)
    host.sync()
    return host.firmware


def status_like_now(**changes: object) -> Status:
    """The massager's true STATUS at this moment, with ``changes`` forged into it."""
    return dataclasses.replace(firmware_now().status(), **changes)  # type: ignore[arg-type]


def idle_status(reason: EndReason) -> Status:
    """A forged STATUS saying the session ended for ``reason`` and the chambers are empty."""
    chambers = len(firmware_now().plant.pressures)
    return status_like_now(
        state=SessionState.IDLE, flags=StatusFlag.NONE, seconds_left=0, session_elapsed_s=0,
        last_end=reason, inlet_mask=0, exhaust_mask=0, pressures_dmmhg=(0,) * chambers,
    )  # fmt: skip


def plus_to_3() -> list[Message]:
    """A forged press of PLUS on the remote, and a STATUS saying the massager went to 3."""
    return [ButtonPressed(Button.PLUS), status_like_now(intensity=3)]


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


def inject(cable: Cable, *messages: Message) -> None:
    """Deliver forged frames to the controller, as if the massager had sent them."""
    assert cable.latest is not None
    cable.latest.inject(forged(*messages))


END_REPORTS = {
    "session_ended link_lost": lambda: [SessionEnded(EndReason.LINK_LOST, 60)],
    "session_ended remote": lambda: [SessionEnded(EndReason.REMOTE, 60)],
    "status idle, then session_ended": lambda: [
        idle_status(EndReason.STOPPED), SessionEnded(EndReason.STOPPED, 60)
    ],
}  # fmt: skip


@pytest.mark.parametrize("end", END_REPORTS)
async def test_forged_remote_frames_and_end_change_nothing(end: str) -> None:
    # The finding: a forged PLUS, a STATUS saying intensity 3 and a SESSION_ENDED made
    # the controller start again at 3 (about 110 mmHg) on a profile held to 1, and the
    # result said "completed".
    supervisor, cable = rig(gentle())
    loop = asyncio.get_running_loop()
    watch = Watch()
    loop.call_later(60, lambda: inject(cable, *plus_to_3(), *END_REPORTS[end]()))
    result = await supervisor.run()
    watch.stop()
    assert result.outcome == Outcome.COMPLETED, result.message
    assert result.resumes == 0  # nothing ended, so nothing was started again
    assert result.pressure_s == pytest.approx(600, abs=2)  # all of it, not up to the forgery
    assert {level for _, level in watch.levels} == {1}
    assert watch.highest_mmhg() < WITHIN_LEVEL_1_MMHG
    assert firmware_now().conn.stats.watchdog_trips == 0
    assert cable.made == 1


async def test_forged_frames_then_a_real_outage_resume_at_the_steps_own_intensity() -> None:
    # The link really goes as the forged end arrives: the fresh status cannot be had,
    # so the lost-link path decides, and the forged choice of 3 is not carried over.
    supervisor, cable = rig(gentle())
    loop = asyncio.get_running_loop()
    watch = Watch()

    def forge_then_cut() -> None:
        inject(cable, *plus_to_3(), SessionEnded(EndReason.LINK_LOST, 60))
        cable.unplug()

    loop.call_later(60, forge_then_cut)
    loop.call_later(63, cable.plug)
    result = await supervisor.run()
    watch.stop()
    assert result.outcome == Outcome.COMPLETED, result.message
    assert result.resumes == 1
    assert result.pressure_s == pytest.approx(600, abs=3)
    assert watch.at(64) == 1
    assert {level for _, level in watch.levels} == {1}
    assert watch.highest_mmhg() < WITHIN_LEVEL_1_MMHG


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


async def test_a_real_end_is_believed_once_a_fresh_status_shows_it() -> None:
    supervisor, _ = rig(gentle())
    loop = asyncio.get_running_loop()
    loop.call_later(90, lambda: simulated_device(ADDRESS).press(Button.POWER))
    result = await supervisor.run()
    assert result.outcome == Outcome.STOPPED_ON_REMOTE
    assert result.pressure_s == pytest.approx(90, abs=1)
    assert firmware_now().state == SessionState.IDLE


async def test_a_forger_who_answers_ahead_of_the_massager_is_not_believed() -> None:
    # Before the massager signed its frames, a forger who answered the request for a
    # fresh status ahead of it (its frames slowed on the line) could end a program
    # early. Now the controller drops every frame the massager did not sign for the
    # link (SPEC 12.3): the program runs to its end.
    cable = Cable(lambda: SimTransport(ADDRESS), rx=LinkFaults(delay_s=0.05), seed=7)
    async with Massager.connect(ADDRESS, transport=cable.transport()) as massager:
        assert massager.authenticated
        loop = asyncio.get_running_loop()
        loop.call_later(60, lambda: inject(cable, SessionEnded(EndReason.REMOTE, 60)))
        for tick in range(1, 100):  # whatever status the controller looks at is forged
            loop.call_later(60 + tick / 100, lambda: inject(cable, idle_status(EndReason.REMOTE)))
        result = await ProgramRunner(massager, gentle()).run()
        dropped = massager.link_stats.unsigned_dropped
    assert result.outcome == Outcome.COMPLETED
    assert result.pressure_s == pytest.approx(600, abs=2)
    assert dropped >= 100  # every forged frame, counted


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


# --- the property: no sequence of forged frames raises the pressure beyond the limits --

PROPERTY_ADDRESS = SimAddress(name="forged", options={"seed": "3"})
# Weighted toward what a forger who wants pressure sends, and with it first (where
# hypothesis starts and shrinks to): running reports, a higher level, the remote's PLUS,
# and a lost link (after which the controller starts again).
STATES = st.sampled_from([SessionState.RUNNING, *SessionState, SessionState.RUNNING])
LEVELS = st.sampled_from([3, 2, 1, 0, 3, 4])
REASONS = st.sampled_from(
    [EndReason.LINK_LOST, *(r for r in EndReason if r != EndReason.NONE), EndReason.LINK_LOST]
)
BUTTONS = st.sampled_from([Button.PLUS, *Button])

Forged = Message | dict[str, object]
"""A forged frame: a message, or the fields forged into a STATUS like the massager's own."""


@st.composite
def forged_frames(draw: st.DrawFn) -> Forged:
    """One frame a forger sends toward the controller."""
    kind = draw(st.sampled_from(["button", "status", "ended", "started", "fault"]))
    if kind == "status":
        return {
            "state": draw(STATES), "intensity": draw(LEVELS),
            "mode": draw(st.sampled_from([1, 2, 0x80, 7])),
            "flags": StatusFlag(draw(st.integers(0, 0x7F)) | StatusFlag.LINK_SESSION),
            "last_end": draw(REASONS),
        }  # fmt: skip
    if kind == "button":
        return ButtonPressed(draw(BUTTONS))
    if kind == "ended":
        return SessionEnded(draw(REASONS), draw(st.integers(0, 600)))
    if kind == "started":
        return SessionStarted(draw(st.sampled_from(list(StartSource))), 1, draw(LEVELS), 60)
    return FaultRaised(Fault.OVERPRESSURE)


@st.composite
def attacks(draw: st.DrawFn) -> list[Forged]:
    """A forged change on the remote (a press, then a STATUS showing it), then a forged end."""
    press = ButtonPressed(draw(st.sampled_from([Button.PLUS, Button.MODE, Button.MINUS])))
    change: dict[str, object] = {
        "state": draw(STATES), "intensity": draw(LEVELS),
        "mode": draw(st.sampled_from([1, 2, 0x80, 7])),
        "flags": StatusFlag.LINK_SESSION | StatusFlag.CONTROLLER_PRESENT,
    }  # fmt: skip
    frames: list[Forged] = [press, change]
    reason = draw(REASONS)
    how = draw(st.sampled_from(["event", "status", "both"]))
    if how in ("status", "both"):
        frames.append({"state": SessionState.IDLE, "flags": StatusFlag.NONE, "last_end": reason})
    if how in ("event", "both"):
        frames.append(SessionEnded(reason, draw(st.integers(0, 600))))
    return frames


CUT = "cut"
"""The link really drops, for two seconds."""
Plan = list[tuple[float, str | list[Forged]]]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """An attack at some moment (the link perhaps dropping just then), and other frames or cuts."""
    at = draw(st.floats(1, 110))
    plan: Plan = [(at, draw(attacks()))]
    if draw(st.booleans()):
        plan.append((at, CUT))
    others = st.just(CUT) | st.lists(forged_frames(), min_size=1, max_size=4)
    plan += draw(st.lists(st.tuples(st.floats(1, 130), others), max_size=6))
    return plan


async def forged_program(plan: Plan) -> list[int]:
    """Run a short profile held to 1 while ``plan`` happens; the levels the massager ran at."""
    profile = gentle(
        {"mode": "wave", "intensity": 1, "minutes": 1},
        {"mode": "pulse", "intensity": 1, "minutes": 1},
    )
    cable = Cable(lambda: SimTransport(PROPERTY_ADDRESS), seed=11)
    supervisor = ProgramSupervisor(PROPERTY_ADDRESS, profile, open_link=cable.transport)
    loop = asyncio.get_running_loop()
    watch = Watch(PROPERTY_ADDRESS)

    def act(what: str | list[Forged]) -> None:
        if isinstance(what, str):
            cable.unplug()
            loop.call_later(2, cable.plug)
            return
        true = firmware_now(PROPERTY_ADDRESS).status()
        messages = [
            dataclasses.replace(true, **frame) if isinstance(frame, dict) else frame  # type: ignore[arg-type]
            for frame in what
        ]
        if cable.latest is not None:
            cable.latest.inject(forged(*messages))

    for at, what in plan:
        loop.call_later(at, act, what)
    await supervisor.run()
    await asyncio.sleep(5)
    watch.stop()
    await asyncio.gather(watch.task, return_exceptions=True)
    assert watch.highest_mmhg() < WITHIN_LEVEL_1_MMHG
    return [level for _, level in watch.levels]


THE_FINDING: Plan = [
    (30.0, [ButtonPressed(Button.PLUS), {"state": SessionState.RUNNING, "intensity": 3},
            SessionEnded(EndReason.LINK_LOST, 30)]),
]  # fmt: skip
"""The issue's attack: a PLUS, a STATUS saying 3, and a SESSION_ENDED saying the link was lost."""


@settings(max_examples=40)
@given(plans())
@example(THE_FINDING)
@example([*THE_FINDING, (30.0, CUT)])
def test_no_forged_frames_raise_the_massager_beyond_the_profile_limit(plan: Plan) -> None:
    loop = looptime.new_event_loop(noop_cycles=1)  # each example on its own virtual clock
    try:
        levels = loop.run_until_complete(forged_program(plan))
    finally:
        loop.close()
    assert set(levels) <= {1}
