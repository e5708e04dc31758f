"""The report: results grouped by SPEC.md section, as text for a person or JSON for a program."""

from __future__ import annotations

import json

import click

from .suite import Report, Result

SECTIONS = {
    "3.3": "Receiving",
    "4": "Sequence numbers and replies",
    "5.2": "CAPABILITIES",
    "7.1": "Opening",
    "7.2": "What the device answers on its own",
    "7.3": "Proof of life and link loss",
    "7.4": "Stop and vent first",
    "7.5": "Status reports",
    "8.2": "Commands by state",
    "8.3": "Value checks, then effects",
    "8.4": "Triggers",
    "10.3": "Proof of life",
    "10.6": "Session cap",
    "10.8": "Faults latch",
    "10.9": "Valves fail open",
    "10.11": "No pressure outside a session",
    "12.1": "The tag and the counter",
    "12.2": "Pairing",
    "12.3": "The authenticated link",
    "12.4": "Unpairing",
    "13": "Extending the protocol",
}
"""The title of each section a check names, as SPEC.md heads it."""

WRAPS_OFF = (
    "--inflate: the suite starts sessions at intensity 1 (the lowest level) for a few "
    "seconds at a time. Take the wraps off the legs first: nobody may wear them while it runs."
)

_MARK = {"pass": ("pass", "green"), "fail": ("FAIL", "red"), "not tested": ("not tested", "yellow")}


def section_key(section: str) -> tuple[int, ...]:
    """Sort key of a section number: ``"10.3"`` after ``"8.4"``.

    >>> sorted(["10.3", "8.4", "4"], key=section_key)
    ['4', '8.4', '10.3']
    """
    return tuple(int(part) for part in section.split("."))


def by_section(results: list[Result]) -> list[tuple[str, list[Result]]]:
    """The results grouped by section, sections in the order of SPEC.md."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.section, []).append(result)
    return sorted(groups.items(), key=lambda item: section_key(item[0]))


def as_json(report: Report) -> str:
    """The ``--json`` report: a list of {section, check, result, detail}, by section."""
    ordered = [r.as_json() for _, group in by_section(report.results) for r in group]
    return json.dumps(ordered, indent=2)


def as_text(report: Report, *, color: bool | None = None) -> str:
    """The report for a person: the device, then each section with its checks."""
    lines = []
    caps = report.caps
    if caps is not None:
        speed = f", at {report.speed:g}x real time" if report.speed != 1 else ""
        lines.append(
            f"{report.url}: {caps.model}, firmware {caps.firmware}, serial {caps.serial}{speed}"
        )
    for _, group in by_section(report.results):
        section = group[0].section
        lines.append("")
        lines.append(click.style(f"§{section} {SECTIONS.get(section, '')}".rstrip(), bold=True))
        for result in group:
            word, colour = _MARK[result.result]
            mark = click.style(f"{word:<10}", fg=colour)
            lines.append(f"  {mark} {result.check}: {result.rule}")
            if result.result != "pass" and result.detail:
                lines += [f"             {line}" for line in result.detail.splitlines()]
    counts = {kind: sum(r.result == kind for r in report.results) for kind in _MARK}
    lines.append("")
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append(
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['not tested']} not tested"
    )
    text = "\n".join(lines)
    return text if color is not False else click.unstyle(text)
