"""Cold start: a command run as a person runs it, in a fresh process, beside ``python -c pass``.

Each command runs in its own interpreter (``python -m massager_ctl ...``), with
folders of its own, so no user's config or journal is read; the baseline is
the same interpreter doing nothing. They are run in turn, round after round, so
a busy moment lands on all of them, and the median of the rounds is kept.

Every run must exit 0, and each command must print what it is there for (the
safety note, the shipped profiles, a rating put in the journal beforehand, the
simulator's state): a command that failed fast would otherwise look fast.

Bytecode is cached as on a user's machine: one unmeasured round first writes
it (``PYTHONDONTWRITEBYTECODE`` is dropped for the children).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .rows import Row, WorkloadFailed, p50, spread


@dataclass(frozen=True)
class Command:
    """A command line and a text its output must contain."""

    name: str
    argv: tuple[str, ...]
    shows: str


CTL = (sys.executable, "-m", "massager_ctl")
BASELINE = Command("python -c pass", (sys.executable, "-c", "pass"), "")
NOTE = "coldstart"
"""The note of the rating `history` must show."""
COMMANDS = (
    Command("--help", (*CTL, "--help"), "Usage: massager-ctl"),
    Command("safety", (*CTL, "safety"), "blood clot"),
    Command("profiles", (*CTL, "profiles"), "evening-45"),
    Command("history", (*CTL, "history"), NOTE),
    Command("status --device sim://", (*CTL, "status", "--device", "sim://"), "idle"),
)


def run(command: Command, env: Mapping[str, str]) -> float:
    """Wall seconds of one run of ``command``, after checking that it did its work.

    Raises:
        WorkloadFailed: it exited with an error or did not print ``command.shows``.
    """
    start = time.perf_counter()
    result = subprocess.run(command.argv, capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or command.shows not in result.stdout:
        raise WorkloadFailed(
            f"{command.name} exited {result.returncode} without printing {command.shows!r}: "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )
    return elapsed


def environment(home: Path) -> dict[str, str]:
    """This process's environment with the user's folders in ``home`` and no device chosen."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MASSAGER_CTL_") and name != "PYTHONDONTWRITEBYTECODE"
    }
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        (home / name).mkdir()
        env[name] = str(home / name)
    return env


def measure(rounds: int) -> list[Row]:
    """One row per command: the median wall time of ``rounds`` runs beside ``python -c pass``."""
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as folder:
        env = environment(Path(folder))
        run(Command("rate", (*CTL, "rate", "3", "--note", NOTE), "3/10"), env)
        everything = (BASELINE, *COMMANDS)
        for command in everything:  # unmeasured: writes the bytecode, warms the file cache
            run(command, env)
        samples: dict[str, list[float]] = {command.name: [] for command in everything}
        for _ in range(rounds):
            for command in everything:
                samples[command.name].append(run(command, env))
    baseline = samples[BASELINE.name]

    def ratios(command: Command) -> list[float]:
        return [t / b for t, b in zip(samples[command.name], baseline, strict=True)]

    return [
        Row(f"cold start: massager-ctl {command.name} (median of {rounds})",
            p50(samples[command.name]) * 1000, "ms", p50(baseline) * 1000, BASELINE.name,
            spread(ratios(command)))
        for command in COMMANDS
    ]  # fmt: skip
