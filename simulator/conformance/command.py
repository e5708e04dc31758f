"""``massager-sim conformance URL``: read the options, run the suite, print, pick the exit code."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from massager_ctl.errors import DeviceURLError
from massager_ctl.urls import parse_device_url

from . import checks  # noqa: F401  (registers the checks)
from .hands import hands_for
from .report import WRAPS_OFF, as_json, as_text
from .suite import Options, Report, SuiteError, known_sections, run


def check_sections(sections: tuple[str, ...]) -> tuple[str, ...]:
    """The ``--section`` values, each the number of a section (or a chapter) some check names.

    Raises:
        click.BadParameter: a section no check names; the message lists those that are.
    """
    known = known_sections()
    chapters = {s.split(".")[0] for s in known}
    for wanted in sections:
        if wanted not in known and wanted not in chapters:
            raise click.BadParameter(
                f"no check names section {wanted!r}; sections: {', '.join(known)}",
                param_hint="--section",
            )
    return sections


def run_command(
    url: str,
    *,
    inflate: bool = False,
    as_json_report: bool = False,
    sections: tuple[str, ...] = (),
    speed: float | None = None,
    patience_s: float = 30.0,
    restart_step: bool = False,
    restart_command: str | None = None,
    fault_step: bool = False,
) -> int:
    """Run the suite as the command does; return the exit code (0 pass, 1 a check failed).

    Raises:
        click.BadParameter: a URL that is not a device address, or an unknown section.
    """
    try:
        address = parse_device_url(url)
    except DeviceURLError as error:
        raise click.BadParameter(str(error), param_hint="URL") from None
    options = Options(inflate, check_sections(sections), speed, patience_s)
    hands = hands_for(
        address,
        restart_step=restart_step,
        restart_command=restart_command,
        fault_step=fault_step,
    )
    if inflate:
        click.echo(WRAPS_OFF, err=as_json_report)
        if not as_json_report:
            click.echo()

    def say(text: str) -> None:
        click.echo(f"massager-sim conformance: {text}", err=True)

    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        report: Report = asyncio.run(run(address, url, options, hands, signals=signals, say=say))
    except SuiteError as error:
        say(str(error))
        if as_json_report:  # a report all the same: a program reads stdout
            click.echo(as_json(Report(url, results=[error.as_result()])))
        return 1
    except KeyboardInterrupt:  # before the run could take the signal itself
        say("interrupted")
        return 128 + signal.SIGINT
    except Exception as error:  # a bug of the suite: said, never a traceback
        say(f"the suite stopped on an error of its own: {type(error).__name__}: {error}")
        return 1
    if as_json_report:
        click.echo(as_json(report))
    else:
        click.echo(as_text(report, color=sys.stdout.isatty()))
    if report.halted is not None:
        confirmed, how = report.halted
        if confirmed and report.interrupted:
            say(f"STOP and VENT sent: confirmed: {how}")
        elif not confirmed:
            say(
                f"STOP and VENT sent: NOT confirmed: {how}. Switch the massager off at its "
                "power switch before anyone wears it"
            )
    if report.interrupted is not None:
        return 128 + signal.Signals[report.interrupted]
    return 1 if report.failed or (report.halted and not report.halted[0]) else 0
