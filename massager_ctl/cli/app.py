"""What every family of commands shares: the options, the device, durations, running async.

Also the lazy group the root command is (`LazyGroup`): a command's module is
imported when that command runs, so that ``massager-ctl stop`` loads neither
the scheduler nor the MQTT bridge, and ``--help`` none of the commands at all.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import InputError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from ..models import DeviceInfo
    from ..settings import Settings
    from ..urls import DeviceAddress

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

    from ..urls import SimAddress, parse_device_url

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
            from ..transports.sim import config_from_options

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


SETTINGS_KEY = "massager_ctl.settings"
"""Where `current_settings` keeps the settings in the click context's ``meta``."""


def current_settings() -> Settings:
    """The config file's settings, read once in a run of massager-ctl and kept for it.

    A `start` needs them for the device, the resume window and the safety limits:
    read once, all three come from the same file, and the file is parsed once.
    They are read when first needed, so a damaged file is said where it was before.
    Outside a command (a helper called on its own) the file is read each time.

    Raises:
        ConfigError: the file cannot be used (not kept: each use says it again).
    """
    from ..config import load_settings

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return load_settings()
    kept: Settings | None = ctx.meta.get(SETTINGS_KEY)
    if kept is None:
        kept = ctx.meta[SETTINGS_KEY] = load_settings()
    return kept


def resolve_device(option: str | None, *, quiet: bool = False) -> DeviceAddress:
    """The device to use: the option, else the config file, else the built-in simulator."""
    from ..render import errors
    from ..urls import DEFAULT_DEVICE, parse_device_url

    if option is not None and not option.strip():
        raise InputError("the device URL is empty; give one such as sim:// or socket://HOST:PORT")
    text = option or current_settings().device
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
    import asyncio

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

    from ..paths import user_profiles_dir
    from ..programs.profiles import available_profiles

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


def first_press_ends(signum: int, frame: object) -> None:
    """Ctrl-C outside `run_async` (nothing runs on a massager): end; ignore further presses.

    A second press while the interpreter shuts down would otherwise kill it by the
    signal, with no exit status of its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


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


def journaled(use: Callable[[], T], purpose: str) -> T | None:
    """Use the journal; if it cannot be used, say so and go on (the massager first)."""
    from ..journal import JournalError

    try:
        return use()
    except JournalError as error:
        journal_warning(error, purpose)
        return None


def journal_warning(error: Exception, purpose: str) -> None:
    """Warn that the journal cannot be used for ``purpose``, and what is lost by it."""
    from ..render import errors, escape

    consequence = {
        "journal": "this session is not journaled",
        "limits": "the safety limits cannot be checked against past sessions",
        "rating": "the rating was recorded, but not which session it follows",
    }[purpose]
    errors().print(f"[yellow]warning:[/] {escape(str(error))}; {consequence}", soft_wrap=True)


def warn(warnings: list[str]) -> None:
    """Say each warning on stderr, after the result it goes with."""
    if not warnings:
        return  # rich is not loaded for nothing: a stop with --json needs none of it
    from ..render import warning

    for text in warnings:
        warning(text)


# --- the lazy group ------------------------------------------------------------------


@dataclass(frozen=True)
class LazyCommand:
    """A command of the root group, known by its name before its module is imported."""

    module: str
    """The module of this package that defines it, such as ``device``."""
    attribute: str
    """The command's name in that module."""
    summary: str
    """The first paragraph of its help: what ``massager-ctl --help`` shortens."""


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name, each imported on first use.

    Listing the names, or asking whether there is one, imports nothing.
    """

    def __init__(self, lazy: dict[str, LazyCommand]) -> None:
        self.lazy = lazy
        self.loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self.loaded.get(name)
        if command is None:
            where = self.lazy[name]
            module = importlib.import_module(f"{__package__}.{where.module}")
            command = self.loaded[name] = getattr(module, where.attribute)
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.lazy.pop(name, None)
        self.loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self.lazy or name in self.loaded

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.lazy, *self.loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self.lazy, *self.loaded]))


class LazyGroup(click.Group):
    """A group whose commands are imported when one runs (click's lazy-loading pattern).

    ``--help`` lists them from their summaries (`LazyCommand.summary`) and
    imports none.
    """

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: LazyCommands = LazyCommands(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The names, sorted as click sorts them; nothing is imported."""
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported now if it was not yet."""
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click writes the list of commands, without importing one to describe it."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.summary_line(name, limit)) for name in names])

    def summary_line(self, name: str, limit: int) -> str:
        """A command's line in ``--help``: click's own shortening of its summary."""
        loaded = self.commands.loaded.get(name)
        if loaded is not None:
            return loaded.get_short_help_str(limit)
        summary = self.commands.lazy[name].summary
        return click.Command(name, help=summary).get_short_help_str(limit)
