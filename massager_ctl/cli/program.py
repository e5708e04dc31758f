"""``start``: run a bedtime program, or one ad-hoc step, on a massager."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError, InputError
from .app import (
    SPEEDS,
    FiniteRange,
    check_speed,
    complete_profile,
    current_settings,
    device_option,
    journal_warning,
    journaled,
    json_option,
    parse_duration,
    resolve_device,
    run_async,
)

if TYPE_CHECKING:
    from ..models import DeviceInfo
    from ..programs.profiles import Profile
    from ..programs.runner import ProgramResult
    from ..programs.supervisor import ResumePolicy
    from ..render import ProgramDisplay
    from ..settings import Settings
    from ..urls import DeviceAddress


@click.command()
@click.argument("profile", required=False, shell_complete=complete_profile)
@click.option("--mode", help="Run one ad-hoc step in this mode instead of a profile.")
@click.option("--intensity", type=int, help="Intensity level of the ad-hoc step.")
@click.option(
    "--duration",
    metavar="DURATION",
    help="Length of the ad-hoc step: 90s, 10m, 1h30m (a bare number is minutes).",
)
@click.option(
    "--speed",
    type=FiniteRange(min=SPEEDS[0], max=SPEEDS[1]),
    help="Run this many times faster than real time: the built-in simulator, or one "
    "served by `massager-sim serve --speed` at the same speed (demo).",
)
@click.option(
    "--resume-window",
    metavar="DURATION",
    help="After a lost link, reconnect and resume if it is back within this long, "
    "with a unit: 30s, 2m (default 30s, or resume_window_s in the config file; "
    "0 never resumes).",
)
@device_option
@json_option
def start(
    profile: str | None,
    mode: str | None,
    intensity: int | None,
    duration: str | None,
    speed: float | None,
    resume_window: str | None,
    device: str | None,
    as_json: bool,
) -> int:
    """Run a bedtime PROFILE (a name or a .toml file), or one ad-hoc step.

    Ctrl-C ends it at once with the massager vented. If the link is lost the
    massager vents by itself; the program resumes if the link is back within
    the resume window, and otherwise ends and says why.

    The safety limits ([limits] in config.toml) are checked once the massager
    has said it can run the program. On a simulator (sim://, massager-sim
    serve) a session is a demo, at any speed: no limit refuses or counts it.
    """
    from ..config import first_run_note
    from ..programs.supervisor import ResumePolicy
    from ..prose import prose
    from ..render import ProgramDisplay, errors
    from ..urls import SimAddress

    chosen = _choose_profile(profile, mode, intensity, duration)
    address = resolve_device(device, quiet=as_json)
    if not isinstance(address, SimAddress):  # sim:// keeps its keys in memory
        _key_for_start(address)
    settings = current_settings()
    window = (
        settings.resume_window_s
        if resume_window is None
        else parse_duration(resume_window, "--resume-window", bare=False)
    )
    if not 0 <= window <= 3600:
        raise InputError("--resume-window must be between 0 and 1h")
    connect_timeout_s = None
    if speed is not None:
        # Opening a link takes real time (a BLE scan and connection most of all); on a
        # clock running `speed` times faster its timeout must be that much longer.
        from ..transports import open_transport

        connect_timeout_s = open_transport(address).connect_timeout_s * speed
    policy = ResumePolicy(window_s=window, connect_timeout_s=connect_timeout_s)
    note = first_run_note()
    if note:
        errors().print(prose(note), style="yellow", markup=False)
    # sim:// runs in this process, on this clock: always at the speed asked.
    require = None if isinstance(address, SimAddress) else (lambda info: check_speed(info, speed))
    # The limits are checked once the massager has said what it is and that it can run
    # the program: a typo is said at once, and a simulator (a demo, at any speed: it
    # squeezes no leg) is neither refused nor counted.
    display = ProgramDisplay(chosen, json=as_json)
    return run_async(
        lambda: _start(
            address, chosen, display, policy, require, chosen.total_minutes * 60, settings
        ),
        speed=speed,
        on_press=display.pressed,
    )


def _key_for_start(address: DeviceAddress) -> None:
    """Refuse a start whose key cannot be used, before anything is sent or journaled.

    Not a start unsigned instead: a massager this controller paired with takes
    a start only signed with that key, and one that would take it unsigned
    would leave the session open to anyone on the line.

    Raises:
        ConfigError: the key file, or the key in it, cannot be used; says what to do.
    """
    from ..keystore import KeyStore, device_name

    try:
        KeyStore.default().check(device_name(address))
    except ConfigError as error:
        raise ConfigError(
            f"{error}. Without the key this controller cannot sign a start, which a "
            "paired massager takes only signed; nothing was started"
        ) from None


def check_limits(planned_s: float) -> None:
    """Refuse a start the safety limits do not allow; a journal that cannot be read warns.

    Raises:
        LimitReached: which limit, from when the start is allowed, and the setting
            in config.toml behind it.
    """
    from datetime import UTC, datetime

    from ..journal import Journal
    from ..paths import config_file, journal_file
    from ..programs.limits import check_journal

    limits = current_settings().limits
    journaled(
        lambda: check_journal(
            Journal(journal_file()),
            planned_s=planned_s,
            now=datetime.now(UTC),
            limits=limits,
            config=str(config_file()),
        ),
        "limits",
    )


def _choose_profile(
    name: str | None, mode: str | None, intensity: int | None, duration: str | None
) -> Profile:
    from ..paths import user_profiles_dir
    from ..programs.profiles import ADHOC, Profile, find_profile

    adhoc = mode is not None or intensity is not None or duration is not None
    if name is not None and adhoc:
        raise InputError("give a profile, or --mode/--intensity/--duration, not both")
    if name is not None:
        return find_profile(name, user_profiles_dir())
    if not adhoc:
        raise InputError("give a profile name (see `massager-ctl profiles`) or --mode, "
                         "--intensity and --duration")  # fmt: skip
    if mode is None or intensity is None or duration is None:
        raise InputError("an ad-hoc step needs all of --mode, --intensity and --duration")
    seconds = parse_duration(duration, "--duration")
    if seconds <= 0:
        raise InputError("--duration must be longer than zero")
    return Profile.model_validate(
        {
            "name": ADHOC,
            "title": f"{mode}, intensity {intensity}, {duration}",
            "description": "One step chosen on the command line.",
            "why": "Chosen by hand, like pressing buttons on the remote.",
            "steps": [{"mode": mode, "intensity": intensity, "minutes": seconds / 60}],
        }
    )


async def _start(
    address: DeviceAddress,
    profile: Profile,
    display: ProgramDisplay,
    policy: ResumePolicy,
    require: Callable[[DeviceInfo], None] | None,
    planned_s: float,
    settings: Settings,
) -> int:
    from ..errors import CalledOff
    from ..holder import Holder, House
    from ..holder.door import halted_since, holding, process_started_at
    from ..journal import Journal
    from ..paths import config_file, journal_file, user_profiles_dir
    from ..programs.journaled import JournaledProgram

    journal = Journal(journal_file())
    house = House(kind="start", settings=settings, journal=journal,
                  profiles_dir=user_profiles_dir(), config=str(config_file()))  # fmt: skip
    program = JournaledProgram(
        address,
        profile,
        journal=journal,
        source="cli",
        policy=policy,
        on_progress=display.progress,
        on_link=display.link,
        on_journal_error=lambda error: journal_warning(error, "journal"),
        require=require,
        limits=lambda: check_limits(planned_s),
    )
    held: list[Holder] = []
    try:
        # Held with its local door open: `massager-ctl stop` in another terminal reaches
        # it, and a second start on this massager is told who holds it.
        async with holding(house, address) as holder, holder.program(program, source="cli"):
            held.append(holder)
            if halted_since(address, process_started_at()):
                # A stop came while this start was on its way, before its door was open
                # for the stop to find: the stop wins.
                raise CalledOff(
                    "a stop or vent from another terminal came as this start began; "
                    "nothing was started"
                )
            result = await program.run()
    except asyncio.CancelledError:
        halted = held[0].halted_by if held else None
        task = asyncio.current_task()
        if halted is not None and task is not None and task.uncancel() == 0:
            # Called off by a stop from another terminal (its link was not up to take
            # it): a person stopped it, not a signal.
            ended = program.interrupted_result or _not_begun(profile, by=halted)
            display.finish(ended)
            return 0
        display.finish(program.interrupted_result or _not_begun(profile))
        raise
    except BaseException:
        display.close()
        raise
    display.finish(result)
    return result.exit_code


def _not_begun(profile: Profile, *, by: str | None = None) -> ProgramResult:
    """How a program interrupted before it began ended: with no start sent.

    The supervisor has an interrupted result from the moment a program may have
    started (it vents then), so without one nothing was started.
    """
    from ..programs.runner import Outcome, ProgramResult

    return ProgramResult(
        profile=profile.name,
        outcome=Outcome.INTERRUPTED,
        message=(
            "interrupted before the program began; nothing was started"
            if by is None
            else f"called off by a {by} from another terminal before it began; nothing was started"
        ),
        steps_done=0,
        steps=len(profile.steps),
        pressure_s=0.0,
        final_status=None,
    )
