"""Running a profile on a massager, step by step, and saying how it ended.

The first step is a START whose lease is the step's length plus a small margin,
so a controller that dies mid-step leaves at most that margin of pressure behind
(and the device's watchdog ends it within a second anyway). Each later step is a
RENEW of the same session, which the device refuses if the session has ended:
a stop pressed on the remote just as a step ends is never undone by the next
step starting pressure again. The step clock stops while the device is
paused (from the remote, say). A change made on the remote (mode, intensity)
stands until the next step begins: the person's choice wins for the step they
are in. A stop on the remote, a fault, a lost link or any other end reported by
the device ends the program, and the result says which.

After a lost link, `ProgramRunner.resume` goes on over a fresh connection from
where the program stood: the step that was running gets what was left of it, in
the mode and intensity last chosen on the remote if someone changed them. Time
counts as pressure up to the moment the loss was noticed, and through the
outage if the device kept the session; not while the device was vented. It
resumes only if the device's last session ended with LINK_LOST and no STOP or
VENT has reached it since, or if our session is still on. So it does not resume
over a stop on the remote, a stop or vent from another controller or
`massager-ctl stop`, the session cap, a fault, or a session someone started on
the remote. `supervisor` decides when to try, and does not try for a program
that was paused when the link went.

A profile's limits (``max_intensity``, ``max_pressure_mmhg``) bind every change
while it runs, whoever asks. `ProgramRunner.adjust` (the MQTT bridge, a
schedule's program on the bridge's link) refuses a mode or intensity beyond
them before sending anything, and names the limit (`BeyondLimits`); and every
START and RENEW is checked again before it is sent. A change made on the remote
(seen as a BUTTON event, then a STATUS showing it) is the person's own hand: the
massager did it, and it stands for the step they are in. It is carried into a
resume only if it is within the limits; beyond them the resumed step runs at its
own mode and intensity. It falls back rather than clamp to the limit: a clamped
level is a setting nobody chose, it may be above the step's own, and the report
of the change came in frames the massager does not sign yet. A later step always
runs its own setting.

The runner sends no STOP or VENT within a step, so an end it hears of (a
SESSION_ENDED event, or a STATUS showing no session) is someone else's doing, or
a garbled or forged frame. It asks for a fresh status (GET_STATUS) before it
believes one. If the fresh status shows our session still on, the program goes
on as if nothing had been heard, its pressure time still counted; if it shows
none, the program ends for the reason the fresh status gives. If the request
fails, the link is lost, and the program takes the lost-link path above. Once
it believes an end (but a lost link's, after which it may resume), the runner
sends STOP even to a massager that reports no session: that report may be
forged as well, and a program that says it has ended must have ended the
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from firmware_protocol import ErrorCode

from ..device import Cycle, Massager, Updates
from ..errors import (
    BeyondLimits,
    CommandPreempted,
    CommandRefused,
    DeviceRefused,
    LinkError,
    MassagerError,
)
from ..models import ButtonUpdate, DeviceStatus, DeviceUpdate, SessionEndedUpdate, explain_faults
from .profiles import LEASE_MARGIN_S, Profile, Step, check_profile

log = logging.getLogger(__name__)

RAMP_UPDATE_S = 60.0
"""How often a ramping step sends its next pressures."""
VENT_WAIT_S = 15.0


class Outcome(StrEnum):
    """How a program ended."""

    COMPLETED = "completed"
    STOPPED = "stopped"
    VENTED = "vented"
    STOPPED_ON_REMOTE = "stopped_on_remote"
    INTERRUPTED = "interrupted"
    LINK_LOST = "link_lost"
    FAULT = "fault"
    SESSION_CAP = "session_cap"
    BATTERY = "battery"
    PAUSE_TIMEOUT = "pause_timeout"
    LEASE_ENDED = "lease_ended"
    REFUSED = "refused"
    TAKEN_OVER = "taken_over"
    NOT_VENTED = "not_vented"


_DEVICE_REASONS: dict[str, Outcome] = {
    "completed": Outcome.LEASE_ENDED,
    "stopped": Outcome.STOPPED,
    "vented": Outcome.VENTED,
    "remote": Outcome.STOPPED_ON_REMOTE,
    "link_lost": Outcome.LINK_LOST,
    "fault": Outcome.FAULT,
    "session_cap": Outcome.SESSION_CAP,
    "battery": Outcome.BATTERY,
    "pause_timeout": Outcome.PAUSE_TIMEOUT,
}

MESSAGES: dict[Outcome, str] = {
    Outcome.COMPLETED: "the program ran to the end",
    Outcome.STOPPED: "a stop command ended the program",
    Outcome.VENTED: "an emergency vent ended the program",
    Outcome.STOPPED_ON_REMOTE: "stopped with the remote's power button",
    Outcome.INTERRUPTED: "interrupted; the massager was vented",
    Outcome.LINK_LOST: "the link to the massager was lost; it vents by itself",
    Outcome.FAULT: "the massager reported a fault and vented",
    Outcome.SESSION_CAP: "the massager's session cap ended the program",
    Outcome.BATTERY: "the battery ran too low to go on",
    Outcome.PAUSE_TIMEOUT: "paused for longer than the massager allows",
    Outcome.LEASE_ENDED: "the massager ended a step before the controller moved on",
    Outcome.REFUSED: "the massager refused a command",
    Outcome.TAKEN_OVER: "someone started a session on the remote while the link was down; "
    "it was left running",
    Outcome.NOT_VENTED: "the session ended, but the chambers were not seen to empty",
}

EXIT_CODES: dict[Outcome, int] = {
    Outcome.COMPLETED: 0,
    Outcome.STOPPED: 0,
    Outcome.VENTED: 0,
    Outcome.STOPPED_ON_REMOTE: 0,
    Outcome.TAKEN_OVER: 0,
    Outcome.INTERRUPTED: 130,
    Outcome.REFUSED: 3,
    Outcome.LINK_LOST: 4,
    Outcome.FAULT: 5,
    Outcome.NOT_VENTED: 5,
}
"""Exit status of ``massager-ctl start`` per outcome; any other outcome exits 1."""

SETTLED = frozenset(
    {
        Outcome.COMPLETED,
        Outcome.STOPPED,
        Outcome.VENTED,
        Outcome.STOPPED_ON_REMOTE,
        Outcome.SESSION_CAP,
        Outcome.BATTERY,
        Outcome.PAUSE_TIMEOUT,
        Outcome.LEASE_ENDED,
        Outcome.REFUSED,
    }
)
"""Endings that claim the session is over and the legs free: said only once the massager
has shown its chambers empty, with no fault (SPEC 10.11)."""


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True)


class Progress(_Report):
    """Where a running program is, sent with every status report."""

    kind: str = "progress"
    profile: str
    step: int
    steps: int
    step_label: str
    step_left_s: float
    program_elapsed_s: float
    program_left_s: float
    status: DeviceStatus


class ProgramResult(_Report):
    """How a program ended."""

    kind: str = "result"
    profile: str
    outcome: Outcome
    message: str
    steps_done: int
    steps: int
    pressure_s: float
    final_status: DeviceStatus | None
    resumes: int = 0

    @property
    def exit_code(self) -> int:
        """The CLI's exit status for this outcome."""
        return EXIT_CODES.get(self.outcome, 1)


class ProgramRunner:
    """Runs one profile on one massager; `run` returns how it ended.

    ``on_progress`` is called with a `Progress` for every status report.
    `interrupted` builds the result for a program cancelled from outside, and
    `resume` goes on over a new connection after the link was lost.
    """

    def __init__(
        self,
        massager: Massager,
        profile: Profile,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        ramp_update_s: float = RAMP_UPDATE_S,
    ) -> None:
        self.massager = massager
        self.profile = profile
        self.on_progress = on_progress
        self.ramp_update_s = ramp_update_s
        self.step_index = 0
        self.step_elapsed_s = 0.0
        self.steps_done = 0
        self.pressure_s = 0.0
        self.program_elapsed_s = 0.0
        self.resumes = 0
        self.started = False  # our START has been sent: it may have run
        self.paused = False  # the last report we saw had the session paused
        self.chosen: tuple[str, int] | None = None  # set on the remote during this step
        self._remote_pressed = False
        self._running = False  # pressure time is being counted
        self._tick = 0.0  # loop time up to which it has been counted

    async def run(self) -> ProgramResult:
        """Run the profile to its end, or until something ends it.

        Raises:
            ProfileRefused: before anything is sent, if the device cannot run it.
        """
        check_profile(self.profile, self.massager.info)
        return await self._run(keep_session=False)

    async def resume(self, massager: Massager) -> ProgramResult:
        """Go on over ``massager``, a fresh connection, after the link was lost.

        Returns at once, without sending anything that adds pressure, when the
        device says the program should not go on (see the module's docstring).

        Raises:
            ProfileRefused: the device now at the address cannot run the profile.
        """
        self.massager = massager
        status = massager.status
        if status.faults:
            return await self._result(Outcome.FAULT)
        if status.active and not status.link_session:
            return await self._result(Outcome.TAKEN_OVER, stop=False)
        if self.step_index >= len(self.profile.steps):
            # The link went during the final STOP; finish it if it did not arrive.
            return await self._result(Outcome.COMPLETED)
        if not status.active and status.stop_since_end:
            return await self._result(
                Outcome.STOPPED,
                "a stop or vent reached the massager while the link was down; the program "
                "does not resume",
            )
        if not status.active and status.last_end != "link_lost":
            if not self.started:
                return await self._result(
                    Outcome.LINK_LOST,
                    "the link was lost before the massager confirmed the start, and it "
                    "reports no lost session; the program was not started again",
                )
            step = self.profile.steps[self.step_index]
            return await self._result(self._ended(status.last_end, step, self.step_elapsed_s))
        check_profile(self.profile, massager.info)
        self.resumes += 1
        self.paused = status.state == "paused"
        if status.state == "running" and self._running:
            # Our session outlived the outage: it was pressing all along.
            self._count(asyncio.get_running_loop().time())
        # The device may have kept our session (the link came back within its
        # watchdog): then RENEW it, which also leaves a pause on the remote alone.
        return await self._run(keep_session=status.active)

    async def _run(self, *, keep_session: bool) -> ProgramResult:
        updates = self.massager.updates()
        first = True
        try:
            while self.step_index < len(self.profile.steps):
                step = self.profile.steps[self.step_index]
                ended = await self._begin_step(step, updates, first=first, keep=keep_session)
                first = keep_session = False
                if ended is None:
                    ended = await self._run_step(step, updates)
                if ended is not None:
                    return await self._result(ended)
                self.steps_done += 1
                self.step_index += 1
                self.step_elapsed_s = 0.0
                self.chosen = None
            await self.massager.stop()
            return await self._result(Outcome.COMPLETED)
        except CommandPreempted:
            # Someone else's stop or vent overtook ours; the device says which.
            return await self._result(Outcome.STOPPED)
        except CommandRefused as error:
            if error.code == ErrorCode.BATTERY_LOW:  # the next step's start, on a drained battery
                return await self._result(Outcome.BATTERY, f"{MESSAGES[Outcome.BATTERY]} ({error})")
            return await self._result(Outcome.REFUSED, str(error))
        except DeviceRefused as error:
            return await self._result(Outcome.REFUSED, str(error))
        except LinkError as error:
            self._count(asyncio.get_running_loop().time())  # it pressed until we noticed
            return await self._result(Outcome.LINK_LOST, f"{MESSAGES[Outcome.LINK_LOST]} ({error})")

    async def adjust(self, *, mode: str | None = None, intensity: int | None = None) -> None:
        """Change the running step's mode or intensity, as the remote's buttons do.

        The change stands until the next step begins, and over a resume of this
        step after a lost link. It is held to the profile's limits first: the
        intensity asked for, or for a new mode the intensity it will run at.

        Raises:
            BeyondLimits: the change would go beyond the profile's limits (the
                message names the limit); nothing was sent.
            DeviceRefused, CommandRefused: the device lacks the mode or level, or
                no session is on.
        """
        massager = self.massager
        step = self.profile.steps[min(self.step_index, len(self.profile.steps) - 1)]
        limits = self.profile.limits
        level = intensity
        preset = False  # the level is the massager's own preset, to be set again
        if mode == "cycle" and step.cycle is None and limits.binds_cycles(massager.info):
            raise BeyondLimits(
                "mode cycle would run the cycle the massager holds, which this step did not "
                "load; its pressures cannot be held to this program's max_pressure_mmhg "
                f"{limits.max_pressure_mmhg:g}"
            )
        if mode is not None and mode != "cycle" and level is None:
            if step.cycle is None:
                level = (self.chosen or (step.mode, step.intensity))[1]
            else:
                # Out of a cycle the massager runs the mode at its preset level, which
                # this program never set: check it, and send it again before the mode,
                # so that the level checked is the level that runs.
                level, preset = massager.status.intensity, True
        if level is not None and (why := limits.refusal(level, massager.info)) is not None:
            raise BeyondLimits(why)
        if preset:
            assert level is not None
            await massager.set_intensity(level)
        if mode is not None:
            await massager.set_mode(mode)
        if intensity is not None:
            await massager.set_intensity(intensity)
        if step.cycle is None and mode != "cycle":  # a cycle step keeps its own cycle
            before_mode, before_level = self.chosen or (step.mode, step.intensity)
            chosen_mode, chosen_level = mode or before_mode, intensity or before_level
            assert chosen_mode is not None
            assert chosen_level is not None
            self.chosen = (chosen_mode, chosen_level)

    async def interrupted(self) -> ProgramResult:
        """Vent, wait (bounded) for the chambers to empty, and report the interruption."""
        # If the link is gone the vent cannot be sent; the device's watchdog vents.
        with contextlib.suppress(MassagerError):
            await self.massager.vent()
        return await self._result(Outcome.INTERRUPTED)

    async def _begin_step(
        self, step: Step, updates: Updates, *, first: bool, keep: bool
    ) -> Outcome | None:
        """START the first step of a connection, RENEW the others (and a kept session).

        Returns an outcome if the session is gone.
        """
        massager = self.massager
        if not first and self._end_among(updates.pending()) is not None:
            fresh = await self._fresh_after_end()
            if not _ours_on(fresh):
                return _DEVICE_REASONS.get(fresh.last_end, Outcome.STOPPED)
        # The margin never asks more than the massager grants: a last step as long as its
        # lease (`check_profile`) is ended by the massager as the program ends.
        lease = min(step.seconds - self.step_elapsed_s + LEASE_MARGIN_S, massager.info.max_lease_s)
        mode, level = ("cycle", None) if step.cycle is not None else (step.mode, step.intensity)
        if first and self.chosen is not None:
            if self.profile.limits.refusal(self.chosen[1], massager.info) is None:
                mode, level = self.chosen  # resuming a step the person adjusted on the remote
            else:
                self.chosen = None  # beyond the limits: the step's own setting, not a clamp
        assert mode is not None
        why = None if level is None else self.profile.limits.refusal(level, massager.info)
        if why is not None:
            raise BeyondLimits(why)  # the profile's own steps were checked; never sent
        new_session = first and not keep
        try:
            if step.cycle is not None:
                await massager.load_cycle(self._cycle(step, self.step_elapsed_s))
            if new_session:
                self.started = True  # from the moment it may reach the device
                await massager.start(mode, level, duration_s=lease)
            else:
                await massager.renew(mode, level, duration_s=lease)
        except CommandRefused as error:
            if new_session or error.code != ErrorCode.BAD_STATE:
                raise
            # The session ended just before our RENEW; its end is already queued.
            return self._end_among(updates.pending()) or Outcome.STOPPED
        return None

    @staticmethod
    def _end_among(items: list[DeviceUpdate]) -> Outcome | None:
        for item in items:
            if isinstance(item, SessionEndedUpdate):
                return _DEVICE_REASONS.get(item.reason, Outcome.STOPPED)
            if isinstance(item, DeviceStatus) and not item.active:
                return _DEVICE_REASONS.get(item.last_end, Outcome.STOPPED)
        return None

    async def _fresh_after_end(self) -> DeviceStatus:
        """A fresh status, asked for because a frame said that the session ended.

        Raises:
            LinkError: none came: the link is lost (the lost-link path decides).
        """
        fresh = await self.massager.refresh()
        if _ours_on(fresh):
            # Not signed yet, so a garbled or forged frame can say so: say nothing ended.
            log.warning(
                "a frame said the session ended, but a fresh status shows it %s; the "
                "program goes on",
                fresh.state,
            )
        return fresh

    def _count(self, now: float) -> None:
        """Add the time since the last count to the step's and the program's pressure time."""
        if self._running:
            spent = max(0.0, now - self._tick)
            self.step_elapsed_s += spent
            self.pressure_s += spent
            self.program_elapsed_s += spent
        self._tick = now

    async def _run_step(self, step: Step, updates: Updates) -> Outcome | None:
        massager = self.massager
        loop = asyncio.get_running_loop()
        ramping = bool(step.ramp_in_minutes or step.ramp_out_minutes)
        next_ramp = (self.step_elapsed_s // self.ramp_update_s + 1) * self.ramp_update_s
        if not ramping:
            next_ramp = float("inf")
        self._running = not self.paused
        self._tick = loop.time()
        seen_running = False  # reports queued before this step's START say nothing of it
        self._remote_pressed = False
        # Within a millisecond is done: a remainder of float residue would set a timer
        # the clock cannot tell from now (a virtual clock never moves for it: a spin).
        while step.seconds - self.step_elapsed_s > 1e-3:
            wait = min(step.seconds, next_ramp) - self.step_elapsed_s if self._running else None
            try:
                async with asyncio.timeout(wait):
                    update: DeviceUpdate | None = await anext(updates)
            except TimeoutError:
                update = None
            self._count(loop.time())
            # An end reported by its event, or by a status (its event lost on the way).
            if isinstance(update, SessionEndedUpdate) or (
                isinstance(update, DeviceStatus) and seen_running and not update.active
            ):
                fresh = await self._fresh_after_end()
                if not _ours_on(fresh):
                    return self._ended(fresh.last_end, step, self.step_elapsed_s)
                self._count(loop.time())  # it pressed while we asked
                update = fresh
            elapsed = self.step_elapsed_s
            if isinstance(update, ButtonUpdate) and update.button in ("mode", "plus", "minus"):
                self._remote_pressed = True
            if isinstance(update, DeviceStatus):
                self._running = update.state == "running"
                self.paused = update.state == "paused"
                seen_running = seen_running or self._running
                if (
                    self._remote_pressed
                    and step.cycle is None
                    and update.active
                    and update.mode in massager.info.modes  # one it announced: no garble
                    and update.mode != "cycle"  # needs a cycle loaded; keep the step's
                ):
                    self.chosen = (update.mode, update.intensity)
                self._report(step, elapsed, update)
            if ramping and elapsed >= next_ramp and elapsed < step.seconds:
                await massager.load_cycle(self._cycle(step, elapsed))
                next_ramp += self.ramp_update_s
        self._running = False
        return None

    def _ended(self, reason: str, step: Step, elapsed: float) -> Outcome:
        outcome = _DEVICE_REASONS.get(reason, Outcome.STOPPED)
        last_step = self.step_index == len(self.profile.steps) - 1
        # The last lease may end on the device a moment before our own clock.
        near_end = elapsed >= step.seconds - LEASE_MARGIN_S
        if outcome == Outcome.LEASE_ENDED and last_step and near_end:
            return Outcome.COMPLETED
        return outcome

    def _cycle(self, step: Step, elapsed_s: float) -> Cycle:
        spec = step.cycle
        assert spec is not None
        scale = step.scale_at(elapsed_s)
        pressures = spec.pressures(self.massager.info.ranks)
        return Cycle(
            order=spec.order,
            pressures_mmhg=tuple(round(p * scale, 1) for p in pressures),
            inflate_s=spec.inflate_s,
            hold_s=spec.hold_s,
            release_s=spec.release_s,
            rest_s=spec.rest_s,
        )

    def _report(self, step: Step, elapsed: float, status: DeviceStatus) -> None:
        if self.on_progress is None:
            return
        total = self.profile.total_minutes * 60
        self.on_progress(
            Progress(
                profile=self.profile.name,
                step=self.step_index + 1,
                steps=len(self.profile.steps),
                step_label=step.note or step.describe(),
                step_left_s=max(step.seconds - elapsed, 0.0),
                program_elapsed_s=self.program_elapsed_s,
                program_left_s=max(total - self.program_elapsed_s, 0.0),
                status=status,
            )
        )

    async def _result(
        self, outcome: Outcome, message: str | None = None, *, stop: bool = True
    ) -> ProgramResult:
        massager = self.massager
        final = massager.status  # the last known, if the link is gone
        vented = False  # seen empty, with no session on, over a live link
        if massager.connected and stop:
            try:
                # e.g. a refused step leaves the last one running. Not after a lost
                # link: the device ended the session itself (the status may not say so
                # yet), and a STOP would forbid the resume that is to come (§6). Also
                # when the status says no session is on: it may be forged (they are not
                # signed yet), and a program that says it ended must have ended it.
                ended = outcome == Outcome.COMPLETED and not final.active  # stopped in _run
                if not ended and outcome not in (Outcome.INTERRUPTED, Outcome.LINK_LOST):
                    with contextlib.suppress(CommandPreempted):
                        # Another stop or vent overtook this one: the end is the same.
                        await massager.stop()
                final = await massager.wait_vented(timeout_s=VENT_WAIT_S)
                vented = True
            except (TimeoutError, MassagerError):
                final = massager.status
        if message is None and outcome == Outcome.FAULT and final.faults:
            # Say which fault and what to do about it: this is what the person reads.
            message = f"the massager stopped on a fault. {explain_faults(final.faults)}"
        elif outcome == Outcome.INTERRUPTED and not vented:
            message = (
                "interrupted; the vent was not confirmed "
                f"({_unconfirmed(massager, final)}). The massager vents by itself within a "
                "second of losing its controller; if the wraps stay tight, press the "
                "power button on its remote or take them off"
            )
        elif outcome in SETTLED and stop and final.faults:
            # The massager latched a fault as the session ended: a chamber that did not
            # empty, say. It has vented through its dump valve; the end was not clean.
            message = (
                f"{message or MESSAGES[outcome]}, but then the massager found a fault and "
                f"vented. {explain_faults(final.faults)}"
            )
            outcome = Outcome.FAULT
        elif outcome in SETTLED and stop and not vented:
            message = (
                f"{message or MESSAGES[outcome]}, but the chambers were not seen to empty "
                f"({_unconfirmed(massager, final)}). Run massager-ctl vent; if the wraps stay "
                "tight, take them off and have the massager checked"
            )
            outcome = Outcome.NOT_VENTED
        return ProgramResult(
            profile=self.profile.name,
            outcome=outcome,
            message=message or MESSAGES[outcome],
            steps_done=self.steps_done,
            steps=len(self.profile.steps),
            pressure_s=round(self.pressure_s, 1),
            final_status=final,
            resumes=self.resumes,
        )


def _unconfirmed(massager: Massager, status: DeviceStatus) -> str:
    """Why the chambers were not seen to empty, for the person to read."""
    if not massager.connected:
        return "the link to the massager is down"
    if status.active:
        return f"it still reports a session {status.state}"
    return f"chambers still read up to {status.peak_mmhg:.0f} mmHg after {VENT_WAIT_S:g} s"


def _ours_on(status: DeviceStatus) -> bool:
    """Whether ``status`` shows a session on that a controller started (ours, in a program)."""
    return status.active and status.link_session


async def run_program(
    massager: Massager,
    profile: Profile,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> ProgramResult:
    """Run ``profile`` on ``massager`` and return how it ended (see `ProgramRunner`)."""
    return await ProgramRunner(massager, profile, on_progress=on_progress).run()
