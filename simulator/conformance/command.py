"""``massager-sim conformance URL``: read the options, run the suite, print, pick the exit code."""

from __future__ import annotations

import asyncio
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
    try:
        report: Report = asyncio.run(run(address, url, options, hands))
    except SuiteError as error:
        click.echo(f"massager-sim conformance: {error}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("massager-sim conformance: interrupted", err=True)
        return 130
    except Exception as error:  # a bug of the suite: said, never a traceback
        click.echo(
            f"massager-sim conformance: the suite stopped on an error of its own: "
            f"{type(error).__name__}: {error}",
            err=True,
        )
        return 1
    if as_json_report:
        click.echo(as_json(report))
    else:
        click.echo(as_text(report, color=sys.stdout.isatty()))
    return 1 if report.failed else 0
