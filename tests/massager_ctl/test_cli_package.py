"""The command line as a package: a lazy group, one way to show a result, settings read once.

``--help`` describes every command from `massager_ctl.cli.COMMANDS` without
importing one, and must say exactly what the commands' own help says.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from massager_ctl.cli import COMMANDS, cli, main

FAMILIES = {f"massager_ctl.cli.{where.module}" for where in COMMANDS.values()}

PROBE = """
import json, sys
from massager_ctl.cli import main

try:
    main(sys.argv[2:])
except SystemExit:
    pass
with open(sys.argv[1], "w") as report:
    json.dump(sorted(sys.modules), report)
"""


def families_loaded(tmp_path: Path, *args: str) -> set[str]:
    """The command modules a fresh interpreter imported to run ``massager-ctl ARGS``."""
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(report.read_text())) & FAMILIES


@pytest.mark.parametrize(
    ("args", "family"),
    [
        (("--help",), None),
        (("stop", "--help"), "device"),
        (("stop", "--device", "sim://"), "device"),
        (("safety",), "journal"),
        (("schedule", "list"), "schedule"),
    ],
)
def test_a_command_imports_its_own_family_only(
    tmp_path: Path, args: tuple[str, ...], family: str | None
) -> None:
    wanted = set() if family is None else {f"massager_ctl.cli.{family}"}
    assert families_loaded(tmp_path, *args) == wanted


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_summary_is_the_first_paragraph_of_the_commands_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert command.name == name
    module = importlib.import_module(f"massager_ctl.cli.{COMMANDS[name].module}")
    assert getattr(module, COMMANDS[name].attribute) is command
    first = (command.help or "").partition("\n\n")[0]
    assert " ".join(first.split()) == COMMANDS[name].summary


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", ["40", "60", "80", "120"])
def test_help_says_the_same_before_and_after_the_commands_are_imported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setattr(cli.commands, "loaded", {})  # as in a fresh process: none imported
    lazy = help_text(capsys)
    assert not cli.commands.loaded
    everything = dict(cli.commands.items())  # each imported now
    assert sorted(everything) == sorted(COMMANDS)
    assert help_text(capsys) == lazy
    assert re.search(r"\n  start +Run a bedtime PROFILE", lazy), lazy


def test_every_result_but_the_safety_note_has_its_text_in_render() -> None:
    from massager_ctl import render
    from massager_ctl.cli import results

    kinds = [
        value
        for value in vars(results).values()
        if isinstance(value, type) and issubclass(value, results.Result)
    ]
    assert len(kinds) > 10
    untold = render.show_text.dispatch(results.Result)
    without = {kind.__name__ for kind in kinds if render.show_text.dispatch(kind) is untold}
    # The base has none, and the safety note is plain text said without rich.
    assert without == {"Result", "SafetyNote"}


def test_a_start_reads_the_config_file_once_for_device_resume_window_and_limits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from massager_ctl import config, paths

    # A real massager for the limits (its own firmware), named only in the config file.
    paths.config_file().parent.mkdir(parents=True, exist_ok=True)
    paths.config_file().write_text(
        'device = "sim://?firmware=2.1.0"\nresume_window_s = 20\n[limits]\nminutes_per_day = 0.5\n'
    )
    reads: list[Path | None] = []
    read = config.load_settings

    def counted(path: Path | None = None) -> config.Settings:
        reads.append(path)
        return read(path)

    monkeypatch.setattr(config, "load_settings", counted)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["start", "--mode", "wave", "--intensity", "1", "--duration", "1m", "--json"])
    [error] = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1:]
    assert (exited.value.code, error["error"]) == (3, "LimitReached")
    assert "minutes_per_day" in error["message"]  # the limit came from that one read
    assert len(reads) == 1
    # The next run reads it again: a change made between two commands is seen.
    with pytest.raises(SystemExit):
        main(["profiles", "--json"])
    with pytest.raises(SystemExit):
        main(["history", "--json"])
    assert len(reads) == 2
