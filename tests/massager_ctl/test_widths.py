"""Any terminal: at 40, 60, 80 and 120 columns nothing a person needs is lost or torn.

The live panel and ``status`` keep every chamber, ``profiles`` every name one
must type, and sentences break between words; into a pipe a sentence stays on
one line whatever width the environment claims.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from massager_ctl.config import FIRST_RUN_TAIL, SAFETY_NOTE
from massager_ctl.device import Massager
from massager_ctl.models import DeviceInfo, DeviceStatus
from massager_ctl.programs.profiles import available_profiles, find_profile
from massager_ctl.programs.runner import Progress
from massager_ctl.prose import prose
from massager_ctl.render import ProgramDisplay, status_view
from tests.terminal import Terminal

WIDTHS = [40, 60, 80, 120]
CLI = [sys.executable, "-m", "massager_ctl"]
PRESSURES = (48.7, 49.7, 50.7, 51.7, 52.7, 53.7, 54.7, 55.7)
"""One reading per chamber, each different, so that each can be looked for."""


async def a_running_massager() -> tuple[DeviceInfo, DeviceStatus]:
    async with Massager.connect("sim://") as massager:
        status = await massager.refresh()
        info = massager.info
    assert len(info.chambers) == len(PRESSURES)
    running = status.model_copy(
        update={"state": "running", "mode": "wave", "intensity": 2, "pressures_mmhg": PRESSURES}
    )
    return info, running


def shown(renderable: RenderableType, width: int) -> list[str]:
    out = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    out.print(renderable)
    out.file.close()
    lines = out.export_text().splitlines()
    assert all(len(line) <= width for line in lines)
    return lines


def assert_every_chamber(lines: list[str], info: DeviceInfo) -> None:
    text = "\n".join(lines)
    for pressure in PRESSURES:
        assert re.search(rf"(?<![\d.]){pressure:.1f}(?![\d.])", text), (pressure, text)
    for chamber in info.chambers:
        assert re.search(rf"\b{chamber.position}\b", text), (chamber.position, text)
        assert re.search(rf"\b{chamber.leg}\b", text), (chamber.leg, text)
    assert "…" not in text, text
    assert "mmHg" in text


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_live_panel_shows_every_chamber_the_setting_and_the_unit(
    width: int, tmp_path: Path
) -> None:
    info, status = await a_running_massager()
    profile = find_profile("evening-45", tmp_path)
    display = ProgramDisplay(profile, json=False)
    display.info = info
    progress = Progress(
        profile=profile.name, step=1, steps=5, step_label=profile.steps[0].note,
        step_left_s=285, program_elapsed_s=15, program_left_s=2685, status=status,
    )  # fmt: skip
    lines = shown(display.panel(progress), width)
    assert_every_chamber(lines, info)
    text = "\n".join(lines)
    assert "wave, intensity 2 (80 mmHg)" in text, text
    assert "running" in text
    # Each phrase whole on its line, never "program 44:45" and "left" apart.
    for phrase in ("step 4:45 left", "program 44:45 left", "battery 100%", "step 1/5:"):
        assert any(phrase in line for line in lines), (phrase, text)


@pytest.mark.parametrize("width", WIDTHS)
async def test_status_shows_every_chamber_at_any_width(width: int) -> None:
    info, status = await a_running_massager()
    lines = shown(status_view(info, status, "sim://"), width)
    assert_every_chamber(lines, info)
    assert any("serial SIM-" in line for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_status_through_a_pipe_keeps_the_thigh(width: int) -> None:
    result = subprocess.run(
        [*CLI, "status", "--device", "sim://"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, COLUMNS=str(width)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"\bthigh\b", result.stdout), result.stdout
    readings = re.findall(r"(?<![\d.])\d+\.\d(?![\d.])", result.stdout)
    assert len(readings) == 8, result.stdout  # one per chamber, none cut off
    assert "…" not in result.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_profiles_shows_every_name_whole(width: int) -> None:
    result = subprocess.run(
        [*CLI, "profiles"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, COLUMNS=str(width)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    words = set(result.stdout.split())
    for name in available_profiles(None):
        assert name in words, (name, result.stdout)
    assert "…" not in result.stdout
    assert "programmable cycle" in result.stdout


def assert_wrapped_between_words(lines: list[str], width: int, text: str = SAFETY_NOTE) -> None:
    """Greedy word wrap: each line as full as it can be, no word broken, nothing left out."""
    assert prose(" ".join(lines)) == prose(text), "\n".join(lines)
    for line, after in itertools.pairwise(lines):
        assert len(line) + 1 + len(after.split()[0]) > width, (line, after)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_safety_note_breaks_between_words_on_a_terminal(width: int) -> None:
    with Terminal("safety", columns=width) as term:
        assert term.wait() == 0
        lines = term.screen.lines()
    assert_wrapped_between_words(lines, width)


def test_the_first_run_note_breaks_between_words_at_80_columns() -> None:
    args = ("start", "--mode", "wave", "--intensity", "1", "--duration", "5s", "--speed", "50")
    with Terminal(*args, columns=80) as term:
        assert term.wait() == 0
        lines = term.screen.lines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Before you use"))
    last = next(i for i, line in enumerate(lines) if line.endswith("massager-ctl safety`."))
    assert_wrapped_between_words(lines[first : last + 1], 80, f"{SAFETY_NOTE}\n{FIRST_RUN_TAIL}")


def test_piped_output_keeps_each_sentence_on_one_line() -> None:
    env = dict(os.environ, COLUMNS="40")
    note = subprocess.run([*CLI, "safety"], capture_output=True, text=True, env=env, timeout=60)
    assert note.stdout.strip() == prose(SAFETY_NOTE)
    run = subprocess.run(
        [*CLI, "start", "--mode", "pulse", "--intensity", "1", "--duration", "30s",
         "--speed", "100"], capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    ending = run.stdout.splitlines()[-1]
    assert "the program ran to the end" in ending
    assert re.search(r"; the chambers are empty \(\d mmHg at most\)\)$", ending), run.stdout
    assert prose(f"{SAFETY_NOTE}\n{FIRST_RUN_TAIL}") in run.stderr.splitlines()
    assert "No device given or configured: using the built-in simulator (sim://)." in run.stderr
    steps = [line for line in run.stdout.splitlines() if line.startswith("step 1/1")]
    assert steps
    assert "pulse, intensity 1 (50 mmHg)" in steps[0]
    assert steps[0].rstrip().endswith("%"), steps[0]  # "... battery 100%": not torn
