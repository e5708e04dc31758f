"""The ``massager-ctl`` command line.

Every command takes ``--device URL`` (or ``MASSAGER_CTL_DEVICE``, or ``device`` in
the config file; with none of them, the built-in simulator) and ``--json``.
Commands return data and `render` shows it; `main` is the one place that turns
errors into a one-line message and an exit status (see `errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import ConfigError, InputError, LinkError, MassagerError

if TYPE_CHECKING:
    from datetime import datetime

    from click.shell_completion import CompletionItem

    from .device import Massager
    from .models import DeviceInfo, DeviceStatus
    from .mqtt import Bridge
    from .profiles import Profile
    from .programs import ProgramResult
    from .render import ProgramDisplay
    from .schedule import Clash, Schedule
    from .settings import Settings
    from .supervisor import ResumePolicy
    from .urls import DeviceAddress

T = TypeVar("T")

SPEEDS = (0.1, 1000.0)
"""The slowest and the fastest ``--speed``, as `massager-sim serve --speed` takes them."""

DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)(?:min|m))?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)


class FiniteRange(click.FloatRange):
    """A `click.FloatRange` that also refuses NaN, which every comparison lets through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, if it is a number within the range (NaN is not)."""
        number = super().convert(value, param, ctx)
        if number != number:  # NaN, the one float unequal to itself
            self.fail(f"{value} is not a number", param, ctx)
        return number


def parse_duration(text: str, option: str, *, bare: bool = True) -> float:
    """Seconds in ``90s``, ``10m``, ``1h``, ``1h30m``; a bare number is minutes.

    One rule for every duration option: a number without a unit is minutes, as
    on a massager's timer. Options that are mostly a few seconds (``--resume-window``,
    ``--timeout``, ``--scan``) pass ``bare=False`` and take a bare number only if it
    is 0: they were counted in seconds once, and a habit of ``--resume-window 30``
    must not become half an hour without a word.

    >>> parse_duration("1h30m", "--duration"), parse_duration("90s", "--duration")
    (5400.0, 90.0)
    >>> parse_duration("45", "--duration"), parse_duration("0", "--scan", bare=False)
    (2700.0, 0.0)
    >>> parse_duration("30", "--resume-window", bare=False)
    Traceback (most recent call last):
    ...
    massager_ctl.errors.InputError: --resume-window 30 needs a unit: write 30s or 30m

    Raises:
        InputError: not a duration, or a bare number where a unit is needed; names ``option``.
    """
    text = "".join(text.split()).lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        if not bare and float(text) != 0:
            raise InputError(f"{option} {text} needs a unit: write {text}s or {text}m")
        return float(text) * 60
    match = DURATION.match(text)
    if not text or match is None:
        raise InputError(f"{option} {text!r} is not a duration; write 90s, 10m, 1h or 1h30m")
    parts = match.groupdict()
    return float(parts["h"] or 0) * 3600 + float(parts["m"] or 0) * 60 + float(parts["s"] or 0)


# --- shared options -----------------------------------------------------------------


def _device_given(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Check ``--device`` as soon as it is given: empty is an error, not the default.

    A URL from ``MASSAGER_CTL_DEVICE`` is not one the person typed just now: its
    error names the variable, or they would look for the mistake in the command.
    """
    from click.core import ParameterSource

    from .urls import SimAddress, parse_device_url

    if value is None:
        return None
    from_env = ctx.get_parameter_source(param.name or "") == ParameterSource.ENVIRONMENT
    if not value.strip():
        raise InputError(
            "--device is empty; give a device URL such as sim:// or socket://HOST:PORT"
        )
    try:
        address = parse_device_url(value)
        if isinstance(address, SimAddress) and address.options:
            from .transports.sim import config_from_options

            config_from_options(address.options, str(address))
    except InputError as error:
        if not from_env:
            raise
        raise type(error)(f"MASSAGER_CTL_DEVICE (in the environment): {error}") from None
    return value


device_option = click.option(
    "--device",
    "device",
    envvar="MASSAGER_CTL_DEVICE",
    metavar="URL",
    callback=_device_given,
    help="Device URL: sim://, serial:///dev/ttyUSB0, socket://HOST:PORT, ble://ADDRESS "
    "[env MASSAGER_CTL_DEVICE].",
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="MASSAGER_CTL_JSON",
    help="Print JSON lines for scripts instead of text [env MASSAGER_CTL_JSON].",
)


def resolve_device(option: str | None, *, quiet: bool = False) -> DeviceAddress:
    """The device to use: the option, else the config file, else the built-in simulator."""
    from .config import load_settings
    from .render import errors
    from .urls import DEFAULT_DEVICE, parse_device_url

    if option is not None and not option.strip():
        raise InputError("the device URL is empty; give one such as sim:// or socket://HOST:PORT")
    text = option or load_settings().device
    if text is None:
        if not quiet:
            errors().print(
                f"No device given or configured: using the built-in simulator ({DEFAULT_DEVICE})."
            )
        text = DEFAULT_DEVICE
    return parse_device_url(text)


def run_async(
    make: Callable[[], Awaitable[T]],
    *,
    speed: float | None = None,
    on_press: Callable[[int], None] | None = None,
) -> T:
    """Run a coroutine to completion; SIGTERM and SIGHUP cancel it like Ctrl-C does.

    The first Ctrl-C (or SIGTERM) cancels it, and its own exit paths stop or vent
    the massager. Further presses, as a person in a panic makes them, and further
    signals never cut that short: they only say that it is ending safely (through
    ``on_press``, which hears the number of presses so far, in the loop). asyncio's
    own runner would raise KeyboardInterrupt wherever the code happened to be (a
    traceback and no vent), and a second cancel would interrupt the wait for the
    vent (no ending said).

    With ``speed`` the event loop's clock runs that many times faster (simulator only).
    """
    from simulator.clock import scaled_runner

    presses = 0
    said = 0  # the presses `on_press` has heard of
    cancelled = False
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[T] | None = None

    def cancel_once() -> None:
        nonlocal cancelled
        if task is not None and not cancelled:
            cancelled = True
            task.cancel()

    def pressed() -> None:  # in the loop, never inside a signal handler
        nonlocal said
        cancel_once()
        if presses > said:
            said = presses
            (on_press or _ending_safely)(presses)

    def on_sigint(signum: int, frame: object) -> None:
        # A plain signal handler, not the loop's: it stays in place after the loop has
        # closed, so that a press in the last milliseconds is never a traceback either.
        nonlocal presses
        presses += 1
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed just now
                loop.call_soon_threadsafe(pressed)

    async def main() -> T:
        nonlocal loop, task
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        # Not possible off the main thread or on platforms without signals; fine then.
        # SIGHUP is a terminal closed under a running program: end it as SIGTERM does
        # (vented and journaled), not killed with its session left open. The daemon
        # puts its own SIGHUP handler (reload) in place of this one.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.add_signal_handler(signum, cancel_once)
        if presses:  # pressed while the loop was being made: not lost
            pressed()
        try:
            return await make()
        finally:
            # Before the loop closes: asyncio closes its wake-up pipe before it removes
            # its signal handlers, and a press in between was an "Exception ignored"
            # traceback about the wake-up fd.
            for signum in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                    loop.remove_signal_handler(signum)

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: asyncio's own handling then
        previous = None
    try:
        with scaled_runner(speed) as runner:
            return runner.run(main())
    except asyncio.CancelledError:
        if presses:
            raise KeyboardInterrupt from None  # exit 130, as Ctrl-C
        raise
    finally:
        if previous is not None:
            # After a press the process only ends: more presses are ignored, also while
            # the interpreter shuts down (when a Python handler would no longer run and
            # the press would kill it, with no ending said).
            signal.signal(signal.SIGINT, signal.SIG_IGN if presses else previous)


def complete_profile(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of a profile argument: the names, yours and the shipped ones.

    What looks like a path (a ``/`` in it, or ``.toml``) is left to the shell's
    own file completion.
    """
    from click.shell_completion import CompletionItem

    from .config import user_profiles_dir
    from .profiles import available_profiles

    if "/" in incomplete or incomplete.endswith(".toml"):
        return [CompletionItem(incomplete, type="file")]
    return [
        CompletionItem(name)
        for name in available_profiles(user_profiles_dir())
        if name.startswith(incomplete)
    ]


def _ending_safely(presses: int) -> None:
    if presses >= 2:
        sys.stderr.write("ending safely (any running program is vented first); one moment\n")


def _first_press_ends(signum: int, frame: object) -> None:
    """Ctrl-C outside `run_async` (nothing runs on a massager): end; ignore further presses.

    A second press while the interpreter shuts down would otherwise kill it by the
    signal, with no exit status of its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


# --- the commands -------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="massager-ctl")
def cli() -> None:
    """Control an air-compression leg massager: bedtime programs, status, stop."""


@cli.command()
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
    from .config import first_run_note, load_settings
    from .prose import prose
    from .render import ProgramDisplay, errors
    from .supervisor import ResumePolicy
    from .urls import SimAddress

    chosen = _choose_profile(profile, mode, intensity, duration)
    address = resolve_device(device, quiet=as_json)
    if not isinstance(address, SimAddress):  # sim:// keeps its keys in memory
        _key_for_start(address)
    window = (
        load_settings().resume_window_s
        if resume_window is None
        else parse_duration(resume_window, "--resume-window", bare=False)
    )
    if not 0 <= window <= 3600:
        raise InputError("--resume-window must be between 0 and 1h")
    connect_timeout_s = None
    if speed is not None:
        # Opening a link takes real time (a BLE scan and connection most of all); on a
        # clock running `speed` times faster its timeout must be that much longer.
        from .transports import open_transport

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
        lambda: _start(address, chosen, display, policy, require, chosen.total_minutes * 60),
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
    from .keystore import KeyStore, device_name

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

    from .config import config_file, journal_file, load_settings
    from .envelope import check_journal
    from .journal import Journal

    limits = load_settings().limits
    _journaled(
        lambda: check_journal(
            Journal(journal_file()),
            planned_s=planned_s,
            now=datetime.now(UTC),
            limits=limits,
            config=str(config_file()),
        ),
        "limits",
    )


def check_speed(info: DeviceInfo, speed: float | None, *, doing: str = "start") -> None:
    """Refuse to run at another pace than the device's, before anything is sent.

    A real massager keeps real time, so --speed is refused on it. A served
    simulator says its speed (`DeviceInfo.simulator_speed`) and must be met at
    exactly that speed: a controller on another clock sends its keepalives late
    or in bursts on the device's, and the device vents and the link is lost
    again and again. ``doing`` names what was refused ("start", "pairing").

    Raises:
        InputError: the speeds differ; says both, and the option that matches.
    """
    nothing = "nothing was started" if doing == "start" else "nothing was paired"
    if speed is not None and not info.is_simulator:
        raise InputError(
            f"--speed works only with the simulator, and {info.model} (firmware "
            f"{info.firmware}) is a real massager; {nothing}"
        )
    served = info.simulator_speed
    asked = 1.0 if speed is None else speed
    if served is None or math.isclose(served, asked, rel_tol=1e-5):
        return
    if not SPEEDS[0] <= served <= SPEEDS[1]:
        # A damaged or hostile firmware string: no --speed can meet it.
        raise InputError(
            f"this simulator announces a speed no controller can keep (firmware "
            f"{info.firmware}; --speed takes {SPEEDS[0]:g} to {SPEEDS[1]:g}); {nothing}"
        )
    runs = "real time" if served == 1 else f"{served:g}x real time"
    at = "real time" if asked == 1 else f"{asked:g}x"
    fix = "give no --speed" if served == 1 else f"give --speed {served:g}"
    raise InputError(
        f"this simulator runs at {runs}, and this {doing} at {at}: the two clocks would "
        f"not agree (a session's proofs of life would come late, and it would vent); "
        f"{fix}; {nothing}"
    )


def _choose_profile(
    name: str | None, mode: str | None, intensity: int | None, duration: str | None
) -> Profile:
    from .config import user_profiles_dir
    from .profiles import ADHOC, Profile, find_profile

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
) -> int:
    from .config import journal_file
    from .journal import Journal
    from .session import JournaledProgram

    program = JournaledProgram(
        address,
        profile,
        journal=Journal(journal_file()),
        source="cli",
        policy=policy,
        on_progress=display.progress,
        on_link=display.link,
        on_journal_error=lambda error: _journal_warning(error, "journal"),
        require=require,
        limits=lambda: check_limits(planned_s),
    )
    try:
        result = await program.run()
    except asyncio.CancelledError:
        display.finish(program.interrupted_result or _not_begun(profile))
        raise
    except BaseException:
        display.close()
        raise
    display.finish(result)
    return result.exit_code


def _not_begun(profile: Profile) -> ProgramResult:
    """How a program interrupted before it began ended: with no start sent.

    The supervisor has an interrupted result from the moment a program may have
    started (it vents then), so without one nothing was started.
    """
    from .programs import Outcome, ProgramResult

    return ProgramResult(
        profile=profile.name,
        outcome=Outcome.INTERRUPTED,
        message="interrupted before the program began; nothing was started",
        steps_done=0,
        steps=len(profile.steps),
        pressure_s=0.0,
        final_status=None,
    )


def _journaled(use: Callable[[], T], purpose: str) -> T | None:
    """Use the journal; if it cannot be used, say so and go on (the massager first)."""
    from .journal import JournalError

    try:
        return use()
    except JournalError as error:
        _journal_warning(error, purpose)
        return None


def _journal_warning(error: Exception, purpose: str) -> None:
    from .render import errors, escape

    consequence = {
        "journal": "this session is not journaled",
        "limits": "the safety limits cannot be checked against past sessions",
        "rating": "the rating was recorded, but not which session it follows",
    }[purpose]
    errors().print(f"[yellow]warning:[/] {escape(str(error))}; {consequence}", soft_wrap=True)


VENT_WAIT_S = 15.0


async def stop_or_vent(
    address: DeviceAddress,
    action: str,
    warnings: list[str] | None = None,
    went_out: list[bool] | None = None,
) -> DeviceStatus:
    """Send STOP or VENT and wait (bounded) until the chambers are empty.

    Neither needs a key (SPEC §7.4), so the key file is not even opened until they
    have gone out: a file that is damaged, or locked by a program that hangs, can
    neither stop nor delay them. Then the file is checked, and what is wrong with
    it is added to ``warnings``. ``went_out`` gets True as soon as the first STOP
    or VENT is on the line (a Ctrl-C after it can no longer call it back).

    Raises:
        DeviceFault: the massager reports a fault and still holds pressure.
        MassagerError: it still holds pressure after the wait, with no fault to say why.
    """
    from firmware_protocol import Stop, Vent

    from .device import Massager
    from .errors import DeviceFault
    from .keystore import KeyStore, device_name
    from .models import explain_faults
    from .urls import SimAddress

    # sim:// keeps its keys in memory, in this process: nothing local to fail.
    keys = None if isinstance(address, SimAddress) else KeyStore(None)
    # Sent first as soon as the link is open, and again once the massager answered:
    # the first reaches it even when its answers cannot come back (SPEC 7.4).
    first = Stop() if action == "stop" else Vent()
    on_first = None if went_out is None else (lambda: went_out.append(True))
    async with Massager.connect(address, keys=keys, first=first, on_first=on_first) as massager:
        await (massager.stop() if action == "stop" else massager.vent())
        if keys is not None and warnings is not None:
            try:
                KeyStore.default().check(device_name(address))
            except ConfigError as error:
                warnings.append(str(error))
        try:
            status = await massager.wait_vented(timeout_s=VENT_WAIT_S)
        except TimeoutError:
            status = massager.status
        else:
            if not status.faults:
                return status
            # Empty, through the dump valve a fault opened: a chamber that would not
            # let its air out, say (SPEC 10.11). The legs are free; the massager is not well.
            raise DeviceFault(
                f"{action} was taken and the chambers are empty, but the massager reports "
                f"a fault. {explain_faults(status.faults)}"
            )
    held = f"chambers still read up to {status.peak_mmhg:.0f} mmHg after {VENT_WAIT_S:g} s"
    if status.faults:
        raise DeviceFault(
            f"{action} was taken, but the massager reports {', '.join(status.faults)}; {held}"
        )
    raise MassagerError(f"{action} was taken, but {held}; check the wraps and the hoses")


def _one_shot(device: str | None, as_json: bool, action: str) -> int:
    """Stop or vent whatever the key file, config file or journal hold; then say what is wrong.

    The exit status says whether the stop or vent reached the massager; a damaged
    file beside it is a warning, after the result.
    """
    from .render import console, emit_json

    warnings: list[str] = []
    address = _device_to_stop(device, as_json, action, warnings)
    from .errors import DeviceInUse

    went_out: list[bool] = []
    try:
        status = run_async(lambda: stop_or_vent(address, action, warnings, went_out))
    except KeyboardInterrupt:
        # Ctrl-C while it waited: say whether the stop or vent had already gone out
        # (it cannot be called back), instead of ending with no word at all.
        if went_out:
            said = (
                f"{action}: interrupted; the {action} had gone out as the link opened, but "
                "it was not confirmed, so whether the massager took it is not known"
            )
        else:
            said = f"{action}: interrupted before the link opened; nothing was sent"
        sys.stderr.write(said + "\n")
        _warn(warnings)
        raise
    except DeviceInUse as error:
        _warn(warnings)
        raise DeviceInUse(
            f"{error}. {_what_was_sent(error, action)} Stop the program that holds it: if "
            "massager-ctl runs a program on it in another terminal, press Ctrl-C there (it "
            "vents the massager); the daemon: `systemctl --user stop massager-ctl`; a bridge: "
            "Ctrl-C or SIGTERM. Or press the power button on the massager's remote, which stops "
            "it at once"
        ) from None
    except LinkError as error:
        _warn(warnings)
        # A massager has one link: most often a program of ours holds it (until the
        # one holder of issue 20 takes commands from every terminal).
        raise type(error)(
            f"{error}. {_what_was_sent(error, action)} If massager-ctl runs a program on it in "
            "another terminal, press Ctrl-C there (it vents the massager); or press the power "
            "button on the massager's remote, which stops it at once"
        ) from None
    except BaseException:
        _warn(warnings)
        raise
    fresh = fresh_simulator(address)
    if as_json:
        emit_json({"kind": action, "device": str(address), "status": status,
                   "fresh_simulator": fresh, "warnings": warnings})  # fmt: skip
    elif fresh:
        console().print(
            f"{action}: sent to a new built-in simulator, started for this command; nothing "
            f"was running on it. {FRESH_SIMULATOR}",
            markup=False,
            soft_wrap=True,
        )
    else:
        console().print(stopped_message(action, status), markup=False)
    _warn(warnings)
    return 0


def _what_was_sent(error: LinkError, action: str) -> str:
    """Whether a failed stop or vent went out at all, in words (`LinkError.sent_first`)."""
    from .errors import DeviceInUse

    if not error.sent_first:
        return "Nothing was sent."
    if isinstance(error, DeviceInUse):
        return (
            f"The {action} went out on the line, but what holds the line turned this "
            "controller away, so it most likely did not reach the massager."
        )
    return (
        f"The {action} was sent as soon as the link opened, but no answer came back, so "
        "whether the massager took it is not known."
    )


def stopped_message(action: str, status: DeviceStatus) -> str:
    """What a stop or vent that emptied the chambers says (it waits until they are)."""
    return f"{action}: done; the chambers are empty ({status.peak_mmhg:.0f} mmHg at most)"


FRESH_SIMULATOR = (
    "A `massager-ctl start` in another terminal runs a simulator of its own, which "
    "this command cannot reach: to stop it, press Ctrl-C in its terminal."
)
"""Said by every one-shot command on ``sim://`` (see `fresh_simulator`)."""


def fresh_simulator(address: DeviceAddress) -> bool:
    """Whether a one-shot command on ``address`` acts on a new simulator of its own.

    The built-in simulator lives in the process that uses it: a `stop`, `vent`,
    `status` or `reset` on ``sim://`` starts one for itself, and never reaches
    the simulator a `start` runs in another terminal. Their output says so,
    rather than "done" as if that program had been stopped.
    """
    from .urls import SimAddress

    return isinstance(address, SimAddress)


def _device_to_stop(
    option: str | None, quiet: bool, action: str, warnings: list[str]
) -> DeviceAddress:
    """As `resolve_device`, but a damaged config file that still names a device warns.

    Raises:
        ConfigError: the config file is damaged and names no usable device.
    """
    from .config import config_file
    from .urls import parse_device_url

    try:
        return resolve_device(option, quiet=quiet)
    except (ConfigError, UnicodeDecodeError) as error:  # the loader lets bytes through
        problem = str(error) if isinstance(error, ConfigError) else f"{config_file()}: not text"
    named = _device_in(config_file())
    if named is None:
        raise ConfigError(
            f"{problem}; it names no device to {action}, so nothing was sent: give --device URL"
        )
    warnings.append(f"{problem}; the device it names ({named}) was used")
    return parse_device_url(named)


_DEVICE_LINE = re.compile(r"""^\s*device\s*=\s*(["'])([^"'\n]*)\1\s*(?:#.*)?$""")


def _device_in(path: Path) -> str | None:
    """The ``device`` a config file names, if it can be read at all, whatever else is wrong.

    A stop or vent must not be held back by the rest of the file: bytes that are not
    UTF-8, TOML nested too deep or broken elsewhere, so when the file does not parse
    its top-level ``device = "..."`` line is read on its own. Nothing but a regular
    file is opened (a FIFO would block the read for ever).
    """
    from .tomlfiles import parse_toml
    from .urls import parse_device_url

    try:
        if not path.is_file():
            return None
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    candidates: list[object] = []
    try:
        candidates.append(parse_toml(text).get("device"))
    except ValueError:  # TOMLDecodeError
        for line in text.splitlines():
            if line.lstrip().startswith("["):
                break  # past the top level: a device there belongs to a table
            match = _DEVICE_LINE.match(line)
            if match:
                candidates.append(match.group(2))
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                parse_device_url(candidate)
            except ValueError:
                continue
            return candidate
    return None


def _warn(warnings: list[str]) -> None:
    from .render import errors, escape

    for warning in warnings:
        errors().print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


@cli.command()
@device_option
@json_option
def stop(device: str | None, as_json: bool) -> int:
    """End the session and release the chambers."""
    return _one_shot(device, as_json, "stop")


@cli.command()
@device_option
@json_option
def vent(device: str | None, as_json: bool) -> int:
    """Emergency: end the session and dump all pressure at once."""
    return _one_shot(device, as_json, "vent")


@cli.command()
@device_option
@json_option
def status(device: str | None, as_json: bool) -> int:
    """Show what the massager is and what it is doing."""
    address = resolve_device(device, quiet=as_json)

    async def go() -> int:
        from .device import Massager
        from .render import console, emit_json, escape, status_view

        fresh = fresh_simulator(address)
        async with Massager.connect(address) as massager:
            current = await massager.refresh()
            if as_json:
                emit_json(
                    {
                        "kind": "device",
                        "device": str(address),
                        "info": massager.info,
                        "status": current,
                        "link": vars(massager.link_stats),
                        "authenticated": massager.authenticated,
                        "auth_problem": massager.auth_problem,
                        "fresh_simulator": fresh,
                    }
                )
            else:
                console().print(
                    status_view(
                        massager.info,
                        current,
                        str(address),
                        massager.link_stats,
                        auth=_auth_line(massager),
                    )
                )
                if fresh:
                    console().print(
                        "[yellow]This is a new built-in simulator, started for this command.[/] "
                        + escape(FRESH_SIMULATOR),
                        soft_wrap=True,
                    )
        return 0

    return run_async(go)


def _auth_line(massager: Massager) -> str:
    if massager.authenticated:
        return "authenticated: this controller is paired (start, mode and intensity allowed)"
    why = massager.auth_problem or "this controller is not paired with it"
    return f"[yellow]not authenticated[/]: {why}; only status, stop and vent work"


@cli.command()
@device_option
@json_option
def reset(device: str | None, as_json: bool) -> int:
    """Clear a latched fault once its cause is mended (the massager checks, and may refuse)."""
    from .render import console, emit_json

    address = resolve_device(device, quiet=as_json)
    cleared, status = run_async(lambda: clear_fault(address))
    fresh = fresh_simulator(address)
    if as_json:
        emit_json({"kind": "reset", "device": str(address), "cleared": list(cleared),
                   "status": status, "fresh_simulator": fresh})  # fmt: skip
    else:
        said = reset_message(cleared, status)
        if fresh:
            said += f" (a new built-in simulator, started for this command). {FRESH_SIMULATOR}"
        console().print(said, markup=False, soft_wrap=True)
    return 0


async def clear_fault(address: DeviceAddress) -> tuple[tuple[str, ...], DeviceStatus]:
    """Clear the massager's latched faults: the faults cleared, and its status after.

    With no fault latched nothing is sent, and none are cleared.

    Raises:
        CommandRefused: the massager refuses (the cause of the fault is still there).
        DeviceFault: it took the reset but still reports a fault.
    """
    from .device import Massager
    from .errors import DeviceFault
    from .models import explain_faults

    async with Massager.connect(address) as massager:
        latched = (await massager.refresh()).faults
        if not latched:
            return (), massager.status
        await massager.reset_fault()
        status = await massager.refresh()
    if status.faults:
        raise DeviceFault(
            "the massager took the reset but still reports a fault. "
            + explain_faults(status.faults)
        )
    return latched, status


def reset_message(cleared: tuple[str, ...], status: DeviceStatus) -> str:
    """What `reset` says: which faults it cleared, or that there was none."""
    if not cleared:
        return f"reset: there was no fault to clear; the massager is {status.state}"
    names = [name.replace("_", " ") for name in cleared]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    faults = "fault is" if len(names) == 1 else "faults are"
    return f"reset: the {listed} {faults} cleared; the massager is {status.state}"


@cli.command()
@click.argument("url", required=False)
@click.option("--name", help="What the massager calls this controller (default: the host name).")
@click.option(
    "--speed",
    type=FiniteRange(min=SPEEDS[0], max=SPEEDS[1]),
    help="Keep time with a simulator served with `massager-sim serve --speed`.",
)
@click.option(
    "--accept-unsigned-device",
    is_flag=True,
    help="Pair with an older massager that does not sign what it sends (see Pairing in the "
    "README): anyone who can reach its line could then show a false state.",
)
@json_option
def pair(
    url: str | None,
    name: str | None,
    speed: float | None,
    accept_unsigned_device: bool,
    as_json: bool,
) -> int:
    """Pair with the massager at URL while its pairing window is open.

    Hold the massager's pairing button first (massager-sim: serve with
    --pairing-window, or send it SIGUSR1). The shared key is kept in keys.json
    in the config folder, readable by you only. The built-in simulator (sim://)
    pairs by itself.
    """
    import socket

    from .urls import SimAddress

    address = resolve_device(url, quiet=as_json)

    async def go() -> int:
        from .device import Massager
        from .render import console, emit_json

        async with Massager.connect(address) as massager:
            if isinstance(address, SimAddress):
                paired = massager.paired_key  # it paired itself on connect
            else:
                check_speed(massager.info, speed, doing="pairing")
                paired = await massager.pair(
                    name or f"massager-ctl@{socket.gethostname()}",
                    accept_unsigned=accept_unsigned_device,
                )
            assert paired is not None
            if as_json:
                emit_json(
                    {
                        "kind": "paired",
                        "device": paired.device,
                        "key_id": paired.key_id,
                        "model": paired.model,
                        "serial": paired.serial,
                        "authenticated": massager.authenticated,
                    }
                )
            else:
                console().print(
                    f"paired with {paired.model} (serial {paired.serial}) at {paired.device} "
                    f"as key {paired.key_id}; the link is "
                    + ("authenticated" if massager.authenticated else "NOT authenticated")
                )
        return 0

    return run_async(go, speed=speed)


@cli.command()
@click.argument("url", required=False)
@click.option(
    "--forget-only",
    is_flag=True,
    help="Only delete this controller's key, without telling the massager (it is gone, "
    "or it was reset). The massager keeps its slot until it is reset.",
)
@json_option
def unpair(url: str | None, forget_only: bool, as_json: bool) -> int:
    """Have the massager at URL forget this controller, and delete the key here."""
    from .keystore import KeyStore, device_name

    address = resolve_device(url, quiet=as_json)
    device = device_name(address)

    async def go() -> int:
        from .device import Massager
        from .render import console, emit_json

        if forget_only:
            removed = KeyStore.default().remove(device)
        else:
            async with Massager.connect(address) as massager:
                if massager.key_problem is not None:
                    raise ConfigError(
                        f"{massager.key_problem}. Without the key the massager cannot be "
                        "told to forget it, so nothing was unpaired"
                    )
                if not massager.authenticated:
                    raise MassagerError(
                        f"not paired with {device}"
                        + (f" ({massager.auth_problem})" if massager.auth_problem else "")
                        + "; nothing to unpair (--forget-only deletes a key the massager "
                        "no longer knows)"
                    )
                await massager.unpair()
                removed = True
        if as_json:
            emit_json({"kind": "unpaired", "device": device, "removed": removed})
        else:
            console().print(
                f"unpaired from {device}" if removed else f"no key for {device} was kept"
            )
        return 0

    return run_async(go)


@cli.command()
@click.argument("urls", nargs=-1, metavar="[URL]...")
@click.option("--probe", is_flag=True, help="Say HELLO on each port and show what answers.")
@click.option(
    "--baudrate",
    type=click.IntRange(min=300),
    default=115200,
    show_default=True,
    help="Baud rate for the serial ports listed.",
)
@click.option(
    "--timeout",
    "wait",
    default="2s",
    show_default=True,
    metavar="DURATION",
    help="How long a probe waits, with a unit: 2s, 1m (a Bluetooth one at least 10 s).",
)
@click.option(
    "--scan",
    "scan_for",
    default="3s",
    show_default=True,
    metavar="DURATION",
    help="How long to listen for Bluetooth LE massagers, with a unit: 3s, 1m (0 skips the scan).",
)
@click.option(
    "--hci",
    "hci",
    multiple=True,
    metavar="SPEC",
    help="Also scan this Bumble radio, e.g. tcp-client:127.0.0.1:7001 (repeatable); "
    "the system's Bluetooth is then listed only if it can scan.",
)
@json_option
def devices(
    urls: tuple[str, ...],
    probe: bool,
    baudrate: int,
    wait: str,
    scan_for: str,
    hci: tuple[str, ...],
    as_json: bool,
) -> int:
    """List Bluetooth LE massagers, serial ports, and any device URLs given.

    Bluetooth massagers are found by scanning for the massager service on the
    system's radio and on each radio named by --hci or by a ble://...?hci= URL
    given. With --probe each entry is opened and sent a HELLO (a few bytes: only
    probe ports whose other devices do not mind), and the massagers that answer
    say what they are. The built-in simulator (sim://) is always there.
    """
    from rich.table import Table

    from .discovery import given, probe_all, radios, scan_all, serial_ports, unique
    from .render import console, emit_json, escape

    timeout_s = parse_duration(wait, "--timeout", bare=False)
    scan_s = parse_duration(scan_for, "--scan", bare=False)
    named = given(list(urls))
    found = []
    if scan_s > 0:
        found = run_async(lambda: scan_all(radios(list(urls), list(hci)), timeout_s=scan_s))
    # A massager heard advertising is shown with what the scan saw, even if also given.
    entries = unique(found + named + serial_ports(baudrate))
    if probe:
        entries = run_async(lambda: probe_all(entries, timeout_s=timeout_s))
    if as_json:
        emit_json({"kind": "devices", "devices": [e.model_dump() for e in entries]})
        return 0
    table = Table(box=None)
    table.add_column("device", no_wrap=True)
    for name in ("what", "id", "answer"):
        table.add_column(name)
    if not any(e.kind == "sim" for e in entries):
        table.add_row("sim://", "the built-in simulator", "", "always there")
    notes = [e for e in entries if e.answered is None and e.problem]
    for entry in entries:
        if entry in notes:
            continue
        what = " ".join(x for x in (entry.manufacturer, entry.description) if x)
        ident = entry.usb_id or (f"{entry.rssi} dBm" if entry.rssi is not None else "")
        if entry.answered is None:
            answer = "[dim]not probed[/]"
        elif entry.answered:
            answer = (
                f"[green]{entry.model}[/] firmware {entry.firmware}, serial {entry.device_serial}"
            )
        else:
            answer = f"[yellow]no massager[/] [dim]({entry.problem})[/]"
        table.add_row(entry.url, what, ident, answer)
    console().print(table)
    for entry in notes:
        console().print(f"[yellow]{escape(entry.url)}[/] {escape(entry.problem or '')}",
                        soft_wrap=True)  # fmt: skip
    if not probe and entries:
        console().print("[dim]Add --probe to see which of them are massagers.[/]")
    return 0


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def profiles(ctx: click.Context, as_json: bool) -> int | None:
    """List the bedtime programs (yours first, then the shipped ones).

    A profile file that cannot be used is listed as broken, with what is wrong
    in it, beside the others (with --json: an entry with ``file`` and ``error``).
    """
    if ctx.invoked_subcommand is not None:
        return None
    from .config import user_profiles_dir
    from .profiles import read_profiles
    from .render import ProfileList, console, emit_json

    found, broken = read_profiles(user_profiles_dir())
    if as_json:
        emit_json({"kind": "profiles", "profiles": [
            {"name": p.name, "title": p.title, "minutes": p.total_minutes,
             "needs_cycle": p.needs_cycle, "path": str(path)}
            for p, path in found
        ], "broken": [entry.as_json() for entry in broken]})  # fmt: skip
        return 0
    console().print(ProfileList([profile for profile, _ in found], broken))
    return 0


@profiles.command("show")
@click.argument("name", shell_complete=complete_profile)
@json_option
def profiles_show(name: str, as_json: bool) -> int:
    """Show one profile in full: its steps and why it is built that way."""
    from .config import user_profiles_dir
    from .profiles import available_profiles, find_profile
    from .render import console, emit_json, profile_view

    profile = find_profile(name, user_profiles_dir())
    path = available_profiles(user_profiles_dir()).get(name, name)
    if as_json:
        emit_json({"kind": "profile"} | profile.model_dump(mode="json"))
    else:
        console().print(profile_view(profile, str(path)))
    return 0


@cli.group()
def schedule() -> None:
    """Bedtime schedules: which program runs on which evenings (`daemon` runs them)."""


@schedule.command("add")
@click.argument("profile", shell_complete=complete_profile)
@click.option("--days", required=True, help="mon,thu or daily, weekdays, weekends.")
@click.option("--at", "at", metavar="HH:MM", help="Start at this local time.")
@click.option("--before", metavar="HH:MM", help="When symptoms usually begin ...")
@click.option("--lead", metavar="DURATION", help="... and how long before it to start: 60m, "
              "1h (a bare number is minutes).")  # fmt: skip
@device_option
@click.option("--tz", help="IANA time zone, e.g. Europe/Berlin [default: this computer's].")
@json_option
def schedule_add(
    profile: str,
    days: str,
    at: str | None,
    before: str | None,
    lead: str | None,
    device: str | None,
    tz: str | None,
    as_json: bool,
) -> int:
    """Add a schedule: PROFILE on --days, --at a time or --before/--lead symptoms.

    The same program at the same times is refused; one that would keep another
    schedule from running (closer than a program and the rest after it) is
    added with a warning that names the other.
    """
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from .config import load_settings, schedules_file, user_profiles_dir
    from .profiles import find_profile
    from .render import console, emit_json, errors, escape
    from .schedule import Schedule, ScheduleBook, ScheduleError, new_id, parse_clock, parse_days
    from .tomlfiles import describe_errors

    find_profile(profile, user_profiles_dir())  # a typo is caught now, not at bedtime
    limits = load_settings().limits  # a broken config file is said before anything is added
    fields: dict[str, Any] = {
        "id": new_id(),
        "profile": profile,
        "days": parse_days(days),
        "created": datetime.now(UTC).replace(microsecond=0),
    }
    if at is not None:
        fields["at"] = parse_clock(at, "--at")
    if before is not None:
        fields["before"] = parse_clock(before, "--before")
    if lead is not None:
        fields["lead_s"] = parse_duration(lead, "--lead")
    if device is not None:
        fields["device"] = device
    if tz is not None:
        fields["tz"] = tz
    book = ScheduleBook(schedules_file())
    try:
        added = book.add(Schedule.model_validate(fields))
    except ValidationError as error:
        raise ScheduleError(describe_errors(error, "schedule").replace("lead_s", "lead")) from None
    warnings = [
        f"{clash.describe()}; added all the same"
        for clash in _clashes(added, book.load_each()[0], limits.rest_minutes)
    ]
    if as_json:
        emit_json({"kind": "schedule"} | added.model_dump(mode="json") | {"warnings": warnings})
    else:
        upcoming = added.runs_after(datetime.now(UTC), count=1)[0].astimezone()
        console().print(
            f"added {added.id}: {added.profile} {added.describe()}; first run "
            f"{upcoming:%a %d %b %H:%M} (`massager-ctl daemon` runs it)",
            markup=False,
        )
        for warning in warnings:
            errors().print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    return 0


def _clashes(added: Schedule, schedules: list[Schedule], rest_minutes: float) -> list[Clash]:
    """The schedules ``added`` would keep from running, or that would keep it."""
    from datetime import UTC, datetime, timedelta

    from .config import user_profiles_dir
    from .profiles import find_profile
    from .schedule import clashes

    minutes: dict[str, float] = {}
    for name in {s.profile for s in schedules} | {added.profile}:
        try:
            minutes[name] = find_profile(name, user_profiles_dir()).total_minutes
        except MassagerError:
            continue  # gone or broken: the daemon refuses its runs, which keep nothing away
    others = [s for s in schedules if s.id != added.id]
    return clashes(added, others, minutes=minutes, rest=timedelta(minutes=rest_minutes),
                   after=datetime.now(UTC))  # fmt: skip


@schedule.command("list")
@json_option
def schedule_list(as_json: bool) -> int:
    """Every schedule, with its next start."""
    from datetime import UTC, datetime

    from rich.table import Table
    from rich.text import Text

    from .config import schedules_file
    from .render import console, emit_json
    from .schedule import ScheduleBook

    # One table that is not a schedule is listed as broken: the others still run.
    schedules, broken = ScheduleBook(schedules_file()).load_each()
    now = datetime.now(UTC)
    if as_json:
        emit_json({"kind": "schedules", "schedules": [
            s.model_dump(mode="json") | {"next": _next_start(s, now)} for s in schedules
        ], "broken": [entry.as_json() for entry in broken]})  # fmt: skip
        return 0
    table = Table("id", "profile", "when", "device", "next", box=None)
    for s in schedules:
        upcoming = s.runs_after(now, count=1)[0].astimezone()
        table.add_row(s.id, s.profile, s.describe(), s.device or "(default)",
                      f"{upcoming:%a %d %b %H:%M}" if s.enabled else "disabled")  # fmt: skip
    for entry in broken:
        when = Text(f"broken: {entry}", style="red", overflow="fold")
        table.add_row(entry.id or "?", entry.profile or "", when, "", "not run")
    empty = not schedules and not broken
    console().print("No schedules yet; add one with `schedule add`." if empty else table)
    return 0


def _next_start(schedule: Schedule, now: datetime) -> str | None:
    """When ``schedule`` next starts (ISO 8601, in its zone), or None while it is disabled."""
    if not schedule.enabled:
        return None
    upcoming = schedule.runs_after(now, count=1)
    return upcoming[0].isoformat() if upcoming else None


def _book_change(schedule_id: str, change: str, as_json: bool) -> int:
    from .config import schedules_file
    from .render import console, emit_json
    from .schedule import ScheduleBook

    book = ScheduleBook(schedules_file())
    changed = (
        book.remove(schedule_id) if change == "removed"
        else book.set_enabled(schedule_id, change == "enabled")
    )  # fmt: skip
    if as_json:
        emit_json({"kind": "schedule", "change": change} | changed.model_dump(mode="json"))
    else:
        console().print(f"{change} {changed.id}: {changed.profile} {changed.describe()}")
    return 0


@schedule.command("remove")
@click.argument("schedule_id", metavar="ID")
@json_option
def schedule_remove(schedule_id: str, as_json: bool) -> int:
    """Remove a schedule."""
    return _book_change(schedule_id, "removed", as_json)


@schedule.command("enable")
@click.argument("schedule_id", metavar="ID")
@json_option
def schedule_enable(schedule_id: str, as_json: bool) -> int:
    """Enable a schedule."""
    return _book_change(schedule_id, "enabled", as_json)


@schedule.command("disable")
@click.argument("schedule_id", metavar="ID")
@json_option
def schedule_disable(schedule_id: str, as_json: bool) -> int:
    """Disable a schedule (kept, but it does not run)."""
    return _book_change(schedule_id, "disabled", as_json)


@schedule.command("next")
@click.option("--count", type=click.IntRange(1, 366), default=5, show_default=True)
@json_option
def schedule_next(count: int, as_json: bool) -> int:
    """The next starts of the enabled schedules, in this computer's local time."""
    from datetime import UTC, datetime

    from rich.table import Table

    from .config import schedules_file
    from .render import console, emit_json, errors, escape
    from .schedule import ScheduleBook, next_runs

    schedules, broken = ScheduleBook(schedules_file()).load_each()
    for entry in broken:  # the others run: say which does not
        errors().print(f"[yellow]warning:[/] {escape(str(entry))}; it does not run", soft_wrap=True)
    runs = next_runs(schedules, datetime.now(UTC), count=count)
    if as_json:
        emit_json({"kind": "upcoming", "runs": [
            {"at": run.isoformat(), "schedule": s.id, "profile": s.profile} for run, s in runs
        ]})  # fmt: skip
        return 0
    table = Table("local time", "schedule", "profile", "in its zone", box=None)
    for run, s in runs:
        table.add_row(f"{run.astimezone():%a %d %b %H:%M}", s.id, s.profile,
                      f"{run:%H:%M} {s.tz}")  # fmt: skip
    console().print(table if runs else "Nothing scheduled; add one with `schedule add`.")
    return 0


@cli.command()
@click.option("--bridge", "with_bridge", is_flag=True,
              help="Also run the MQTT bridge, as `bridge` with the [mqtt] settings.")  # fmt: skip
@click.option("--broker", "broker_url", metavar="URL",
              help="The bridge's broker (implies --bridge) [default: in [mqtt]].")  # fmt: skip
@json_option
def daemon(with_bridge: bool, broker_url: str | None, as_json: bool) -> int:
    """Run the bedtime schedules: each program when it is due, once, never late.

    Sleeps until the next start and wakes when the schedules change (the file
    is watched; SIGHUP does the same). A run found more than the grace window
    late (grace_minutes in config.toml, default 10) is journaled as missed.
    SIGTERM or Ctrl-C ends any running program with the massager vented. Meant
    to run as a systemd user service: see contrib/massager-ctl.service.

    With --bridge it also runs the MQTT bridge: a scheduled program on a
    bridged massager borrows the bridge's link, shows on the bus, and stops
    with a stop or vent sent there.
    """
    from .config import load_settings

    settings = load_settings()
    host = None
    if with_bridge or broker_url:
        host = make_bridge(settings, broker_url, as_json=as_json)
    return run_async(lambda: _daemon(settings, host, as_json))


async def _daemon(settings: Settings, host: Bridge | None, as_json: bool) -> int:
    from datetime import datetime

    from .config import journal_file, schedules_file, user_profiles_dir
    from .daemon import Daemon, DaemonEvent
    from .journal import Journal
    from .render import emit_json, errors, escape
    from .schedule import ScheduleBook
    from .wallclock import SystemClock

    def show(event: DaemonEvent) -> None:
        if as_json:
            emit_json(event)
            return
        style = {"error": "red", "missed": "yellow", "refused": "yellow", "busy": "yellow",
                 "unreachable": "yellow"}.get(event.event, "")  # fmt: skip
        when = datetime.now().astimezone()
        message = escape(event.message)
        line = f"{when:%Y-%m-%d %H:%M:%S} " + (f"[{style}]{message}[/]" if style
                                                else message)  # fmt: skip
        if event.schedule:
            line += f" [dim](schedule {event.schedule})[/]"
        errors().print(line, soft_wrap=True, highlight=False)

    clock = SystemClock()
    runner = Daemon(
        book=ScheduleBook(schedules_file()),
        journal=Journal(journal_file()),
        clock=clock,
        settings=settings,
        profiles_dir=user_profiles_dir(),
        on_event=show,
        house=host.house if host is not None else None,
    )
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, runner.reload)
    watcher = asyncio.create_task(_watch(schedules_file(), runner.reload))

    def watcher_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            why = task.exception() or "no inotify here"
            show(DaemonEvent(event="error", message=f"the schedules file is not watched "
                             f"({why}); after a change run `systemctl --user reload "
                             "massager-ctl` or send SIGHUP"))  # fmt: skip

    watcher.add_done_callback(watcher_ended)
    bridging = asyncio.create_task(host.run()) if host is not None else None

    def bridge_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # the schedules go on without it
            show(DaemonEvent(event="error", message=f"the MQTT bridge stopped: "
                             f"{task.exception()}; the schedules still run"))  # fmt: skip

    if bridging is not None:
        bridging.add_done_callback(bridge_ended)
    try:
        await runner.run()
    except asyncio.CancelledError:
        return 0  # SIGTERM or Ctrl-C: a clean stop, the programs ended and vented
    finally:
        watcher.cancel()
        if bridging is not None:
            bridging.cancel()
            await asyncio.gather(bridging, return_exceptions=True)
    return 0


async def _watch(path: Path, changed: Callable[[], None]) -> None:
    """Call ``changed`` whenever ``path`` is written, replaced or removed (Linux inotify).

    Without inotify (not Linux) the daemon re-reads the file whenever it wakes,
    which is at least once a minute there (`wallclock.FALLBACK_STEP_S`).
    """
    try:
        from asyncinotify import Inotify, Mask
    except ImportError:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with Inotify() as inotify:
        inotify.add_watch(
            path.parent, Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE
        )
        async for event in inotify:
            if event.name is not None and event.name.name == path.name:
                changed()


@cli.command()
@click.option("--broker", "broker_url", envvar="MASSAGER_CTL_BROKER", metavar="URL",
              help="mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://... [default: broker in "
              "[mqtt] of config.toml; env MASSAGER_CTL_BROKER; password also "
              "MASSAGER_CTL_MQTT_PASSWORD].")  # fmt: skip
@click.option("--device", "devices", multiple=True, metavar="[NAME=]URL",
              help="A massager to bridge (repeatable) [default: [mqtt.devices] in config.toml, "
              "else the configured device].")  # fmt: skip
@click.option("--base", help="The base topic [default: base in [mqtt], else massager].")
@click.option("--discovery-prefix", metavar="PREFIX", help="Home Assistant's discovery prefix; "
              "'' for none [default: discovery_prefix in [mqtt], else homeassistant].")  # fmt: skip
@json_option
def bridge(
    broker_url: str | None,
    devices: tuple[str, ...],
    base: str | None,
    discovery_prefix: str | None,
    as_json: bool,
) -> int:
    """Put massagers on an MQTT broker: state, commands, and Home Assistant discovery.

    Topics: BASE/bridge/state, BASE/NAME (state, retained), BASE/NAME/availability,
    BASE/NAME/set ({"action": "start", "profile": "evening-45"}, {"action": "stop"},
    {"action": "vent"}, mode, intensity, pause, resume), BASE/NAME/get,
    BASE/NAME/response, and BASE/bridge/request/{devices,profiles,schedules}.
    SIGTERM or Ctrl-C ends running programs with the massagers vented.
    """
    from .config import load_settings

    settings = load_settings()
    running = make_bridge(settings, broker_url, devices, base, discovery_prefix, as_json=as_json)

    async def serve() -> int:
        try:
            await running.run()
        except asyncio.CancelledError:
            return 0
        return 0

    return run_async(serve)


def make_bridge(
    settings: Settings,
    broker_url: str | None,
    devices: tuple[str, ...] = (),
    base: str | None = None,
    discovery_prefix: str | None = None,
    *,
    as_json: bool,
) -> Bridge:
    """The bridge the options and the ``[mqtt]`` settings describe (options win).

    Raises:
        InputError, ConfigError: a bad option or setting, a TLS file that cannot be used.
    """
    from .config import journal_file, user_profiles_dir
    from .journal import Journal
    from .mqtt import BASE_TOPIC, DISCOVERY_PREFIX, Bridge
    from .mqtt import topic_name as device_name
    from .urls import DEFAULT_DEVICE

    mqtt = settings.mqtt
    broker = mqtt.address(broker_url)
    base = base if base is not None else mqtt.base
    if not BASE_TOPIC.fullmatch(base):
        raise InputError(f"--base {base!r} is not a topic of plain words")
    prefix = discovery_prefix if discovery_prefix is not None else mqtt.discovery_prefix
    if not DISCOVERY_PREFIX.fullmatch(prefix):
        raise InputError(f"--discovery-prefix {prefix!r} is not one plain word")
    if devices:
        given = list(devices)
    elif mqtt.devices:
        given = [f"{name}={url}" for name, url in mqtt.devices.items()]
    else:
        given = [settings.device or DEFAULT_DEVICE]
    named = dict(device_name(text) for text in given)
    if len(named) != len(given):
        raise InputError("two devices have the same name; give them NAME=URL")

    def log(line: str) -> None:
        from .render import emit_json, errors

        if as_json:
            emit_json({"kind": "bridge", "message": line})
        else:
            errors().print(line, markup=False, highlight=False, soft_wrap=True)

    return Bridge(broker, named, settings=settings, journal=Journal(journal_file()),
                  profiles_dir=user_profiles_dir(), base=base, discovery_prefix=prefix,
                  log=log)  # fmt: skip


@cli.command()
@click.option(
    "--weeks",
    type=click.IntRange(1, 520),
    default=4,
    show_default=True,
    help="How many weeks back, this one included.",
)
@click.option(
    "--goal",
    type=click.IntRange(1, 21),
    help="Sessions a week to aim for [default: weekly_goal in the config file, else 2].",
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also list demos (on a simulator) and starts that put no pressure on the legs.",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Print a CSV for a spreadsheet or a doctor: one row per session, with how the legs "
    "felt before and after.",
)
@json_option
def history(weeks: int, goal: int | None, everything: bool, as_csv: bool, as_json: bool) -> int:
    """The sessions and ratings of recent weeks, and each week against the goal.

    A rating made within 4 hours after a session is that session's "after", and
    one made within 4 hours before it its "before". Each week shows as a row of
    days: how the legs felt, and a mark for a session.
    """
    from datetime import datetime, timedelta

    from .config import journal_file, load_settings
    from .history import by_day, shown, tie, untied
    from .journal import Journal
    from .journal import weeks as by_week
    from .render import console, emit_json, history_view

    if as_csv and as_json:
        raise InputError("choose one of --csv and --json")
    goal = goal or load_settings().weekly_goal
    today = datetime.now().astimezone().date()
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first, datetime.min.time()).astimezone()
    journal = Journal(journal_file())
    sessions, ratings = journal.sessions(since), journal.ratings(since)
    began = journal.first_use()
    summary = by_week(sessions, ratings, goal=goal, first=first, last=today, today=today,
                      first_use=began.astimezone().date() if began else None)  # fmt: skip
    entries, hidden = shown(tie(sessions, ratings), everything=everything)
    if as_csv:
        from .history import write_csv

        write_csv(entries, sys.stdout)
    elif as_json:
        emit_json({
            "kind": "history", "goal": goal, "all": everything,
            "sessions": [e.as_json() for e in entries],
            "ratings": [r.model_dump(mode="json") for r in ratings],
            "weeks": [w.model_dump(mode="json") | {"met": w.met, "standing": w.standing}
                      for w in summary],
            "hidden": {"demos": hidden.demos, "no_pressure": hidden.no_pressure},
        })  # fmt: skip
    else:
        out = console()
        out.print(history_view(entries, untied(entries, ratings), summary,
                               by_day(sessions, ratings), hidden, today, out.width))  # fmt: skip
    return 0


# A score of -1 is a number to say is out of range, not an option click does not know.
@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("score", type=int, metavar="N")
@click.option("--note", default="", help="A few words: what helped, what did not.")
@json_option
def rate(score: int, note: str, as_json: bool) -> int:
    """Record how restless the legs are: 0 calm ... 10 the worst (lower is better).

    Made within 4 hours after a session, it is that session's "after" in
    `history`; within 4 hours before one, its "before".
    """
    from datetime import UTC, datetime

    from .config import journal_file
    from .history import RATING_WINDOW, after_which
    from .journal import Journal
    from .render import console, emit_json

    journal = Journal(journal_file())
    rating = journal.rate(score, note)
    recent = _journaled(lambda: journal.sessions(datetime.now(UTC) - 2 * RATING_WINDOW), "rating")
    after = after_which(rating, recent or [])
    if as_json:
        emit_json({"kind": "rating"} | rating.model_dump(mode="json")
                  | {"after_session": None if after is None else after.id})  # fmt: skip
    else:
        tied = ""
        if after is not None:
            tied = f", after {after.profile} (began {after.started_at.astimezone():%H:%M})"
        console().print(f"rated {rating.score}/10{tied}" + (f": {rating.note}" if rating.note
                        else ""), markup=False)  # fmt: skip
    return 0


@cli.command()
@json_option
def safety(as_json: bool) -> int:
    """Who should not use compression, and when to stop."""
    from .config import SAFETY_NOTE
    from .jsonout import emit_json
    from .prose import fill, prose

    if as_json:
        emit_json({"kind": "safety", "note": prose(SAFETY_NOTE)})
    else:
        click.echo(fill(SAFETY_NOTE))
    return 0


# --- the one place errors become messages and exit codes ---------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``massager-ctl``."""
    args = sys.argv[1:] if argv is None else argv
    as_json = json_wanted(args)
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, _first_press_ends)
    try:
        code: Any = cli.main(args=args, prog_name="massager-ctl", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.ClickException as error:
        # A command group given no command shows its help (click 8.2 and later raise for
        # it): help asked for, if in few words, and no error to give a script.
        asked_help = type(error).__name__ == "NoArgsIsHelpError"
        if as_json and not asked_help:
            kind = "UsageError" if isinstance(error, click.UsageError) else type(error).__name__
            _emit_error(kind, error.format_message())
        else:
            error.show()
        code = error.exit_code
    except click.exceptions.Abort:
        code = 130
    except MassagerError as error:
        _report(error, as_json)
        code = error.exit_code
    except KeyboardInterrupt:
        code = 130
    except asyncio.CancelledError:
        code = 143  # SIGTERM
    sys.exit(code if isinstance(code, int) else 0)


def json_wanted(args: list[str]) -> bool:
    """Whether this run speaks JSON: ``--json`` among the options, or ``MASSAGER_CTL_JSON``.

    Decided before click parses anything, so that an error click finds in the
    options is JSON too. The variable is read as click reads it for ``--json``.

    >>> json_wanted(["status", "--json"]), json_wanted(["rate", "--", "--json"])
    (True, False)
    """
    import os

    options = args[: args.index("--")] if "--" in args else args
    if "--json" in options:
        return True
    value = os.environ.get("MASSAGER_CTL_JSON", "").strip().lower()
    return value in {"1", "true", "t", "yes", "y", "on"}


def _report(error: MassagerError, as_json: bool) -> None:
    """Say what went wrong: one JSON object in JSON mode, else lines on stderr (not both)."""
    from .render import errors, escape

    if as_json:
        _emit_error(type(error).__name__, str(error))
        return
    first, *rest = str(error).splitlines() or [""]
    errors().print(f"[red]error:[/] {escape(first)}", soft_wrap=True)
    for line in rest:
        errors().print(line, soft_wrap=True, markup=False)


def _emit_error(kind: str, message: str) -> None:
    from .render import emit_json

    emit_json({"kind": "error", "error": kind, "message": message})
