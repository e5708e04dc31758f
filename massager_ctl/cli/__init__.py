"""The ``massager-ctl`` command line.

Every command takes ``--device URL`` (or ``MASSAGER_CTL_DEVICE``, or ``device`` in
the config file; with none of them, the built-in simulator) and ``--json``.
Commands return results (`results`) and `results.show` shows them, as text
(`render`) or as JSON; `main` is the one place that turns errors into a
one-line message and an exit status (see `errors`).

The commands live by family, one module each, imported only when one of them
runs (`app.LazyGroup`): `program` (start), `device` (stop, vent, status, reset,
pair, unpair, devices), `profiles`, `schedule`, `service` (daemon, bridge) and
`journal` (history, rate, safety).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import MassagerError
from ..lazy import lazy_names
from .app import LazyCommand, LazyGroup, first_press_ends

if TYPE_CHECKING:
    from ..holder.holder import VENT_WAIT_S
    from ..render import FRESH_SIMULATOR, reset_message, stopped_message
    from .app import (
        SPEEDS,
        FiniteRange,
        check_speed,
        complete_profile,
        device_option,
        json_option,
        parse_duration,
        resolve_device,
        run_async,
    )
    from .device import clear_fault, fresh_simulator, stop_or_vent
    from .program import check_limits
    from .service import make_bridge

__all__ = [
    "COMMANDS",
    "FRESH_SIMULATOR",
    "SPEEDS",
    "VENT_WAIT_S",
    "FiniteRange",
    "check_limits",
    "check_speed",
    "clear_fault",
    "cli",
    "complete_profile",
    "device_option",
    "fresh_simulator",
    "json_option",
    "json_wanted",
    "main",
    "make_bridge",
    "parse_duration",
    "reset_message",
    "resolve_device",
    "run_async",
    "stop_or_vent",
    "stopped_message",
]

COMMANDS = {
    "bridge": LazyCommand("service", "bridge", "Put massagers on an MQTT broker: state, "
                          "commands, and Home Assistant discovery."),
    "daemon": LazyCommand("service", "daemon", "Run the bedtime schedules: each program when "
                          "it is due, once, never late."),
    "devices": LazyCommand("device", "devices", "List Bluetooth LE massagers, serial ports, "
                           "and any device URLs given."),
    "intensity": LazyCommand("device", "intensity", "Set the intensity LEVEL (1 is the "
                             "gentlest): the running session's, or the next."),
    "mode": LazyCommand("device", "mode", "Switch the massager to MODE (wave, pulse, ...): the "
                        "running session's, or the next."),
    "pause": LazyCommand("device", "pause", "Pause the running session (the chambers let go); "
                         "resume goes on."),
    "history": LazyCommand("journal", "history", "The sessions and ratings of recent weeks, "
                           "and each week against the goal."),
    "pair": LazyCommand("device", "pair", "Pair with the massager at URL while its pairing "
                        "window is open."),
    "profiles": LazyCommand("profiles", "profiles", "List the bedtime programs (yours first, "
                            "then the shipped ones)."),
    "rate": LazyCommand("journal", "rate", "Record how restless the legs are: 0 calm ... 10 "
                        "the worst (lower is better)."),
    "reset": LazyCommand("device", "reset", "Clear a latched fault once its cause is mended "
                         "(the massager checks, and may refuse)."),
    "resume": LazyCommand("device", "resume", "Resume a paused session."),
    "safety": LazyCommand("journal", "safety", "Who should not use compression, and when to "
                          "stop."),
    "schedule": LazyCommand("schedule", "schedule", "Bedtime schedules: which program runs on "
                            "which evenings (`daemon` runs them)."),
    "start": LazyCommand("program", "start", "Run a bedtime PROFILE (a name or a .toml file), "
                         "or one ad-hoc step."),
    "status": LazyCommand("device", "status", "Show what the massager is and what it is doing."),
    "stop": LazyCommand("device", "stop", "End the session and release the chambers."),
    "unpair": LazyCommand("device", "unpair", "Have the massager at URL forget this "
                          "controller, and delete the key here."),
    "vent": LazyCommand("device", "vent", "Emergency: end the session and dump all pressure "
                        "at once."),
}  # fmt: skip
"""Every command of ``massager-ctl``: the module it is in, and what ``--help`` says of it.

A summary is the first paragraph of the command's help (tests/massager_ctl/test_cli_package.py
holds them equal).
"""


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="massager-ctl")
def cli() -> None:
    """Control an air-compression leg massager: bedtime programs, status, stop."""


# --- the one place errors become messages and exit codes ---------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``massager-ctl``."""
    args = sys.argv[1:] if argv is None else argv
    as_json = json_wanted(args)
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, first_press_ends)
    try:
        code: Any = cli.main(args=args, prog_name="massager-ctl", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.ClickException as error:
        # A command group given no command shows its help (click 8.2 and later raise for
        # it): help asked for, if in few words, and no error to give a script.
        asked_help = type(error).__name__ == "NoArgsIsHelpError"
        if as_json and not asked_help:
            from .results import Failure, show

            kind = "UsageError" if isinstance(error, click.UsageError) else type(error).__name__
            show(Failure(kind, error.format_message()), as_json=True)
        else:
            error.show()
        code = error.exit_code
    except click.exceptions.Abort:
        code = 130
    except MassagerError as error:
        from .results import Failure, show

        # One JSON object in JSON mode, else lines on stderr (not both).
        show(Failure(type(error).__name__, str(error)), as_json=as_json)
        code = error.exit_code
    except KeyboardInterrupt:
        code = 130
    except BaseException as error:
        if not _cancelled(error):
            raise
        code = 143  # SIGTERM
    sys.exit(code if isinstance(code, int) else 0)


def _cancelled(error: BaseException) -> bool:
    """Whether ``error`` is asyncio's CancelledError, without importing asyncio for it.

    Only a command that ran a loop can raise it, and that command imported asyncio;
    ``--help`` and the commands that run none start without it.
    """
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


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


_ELSEWHERE = {
    **dict.fromkeys(
        ["SPEEDS", "FiniteRange", "check_speed", "complete_profile", "device_option",
         "json_option", "parse_duration", "resolve_device", "run_async"], ".app"),
    **dict.fromkeys(
        ["clear_fault", "fresh_simulator", "stop_or_vent"], ".device"),
    "VENT_WAIT_S": "..holder.holder",
    **dict.fromkeys(["FRESH_SIMULATOR", "reset_message", "stopped_message"], "..render"),
    "check_limits": ".program",
    "make_bridge": ".service",
}  # fmt: skip
"""What ``massager_ctl.cli`` gave before it was a package, and the module it is in now."""


# Loaded on first use: `from massager_ctl.cli import main` must not import every family.
__getattr__ = lazy_names(__name__, _ELSEWHERE)
