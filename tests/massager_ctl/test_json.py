"""JSON for scripts: every command, every line an object that says its kind.

Run in this process through `main`, the way the entry point runs it (the
subprocess tests in test_cli.py cover the entry point itself): forty runs of
the whole command line cost seconds here, and minutes as subprocesses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import click
import pytest

from massager_ctl.cli import cli, main

ADHOC = ("--mode", "wave", "--intensity", "2", "--duration", "20s", "--speed", "200")


class Run:
    """What one run of massager-ctl printed, and its exit status."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def objects(self) -> list[dict[str, Any]]:
        """Every stdout line, each of which must be one JSON object with a kind."""
        found = []
        for line in self.out.splitlines():
            value = json.loads(line)
            assert isinstance(value, dict), line
            assert isinstance(value.get("kind"), str), line
            found.append(value)
        return found


Runner = Callable[..., Run]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    def go(*args: str) -> Run:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        code = exited.value.code
        return Run(code if isinstance(code, int) else 0, captured.out, captured.err)

    return go


def leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every command one can run, as its words: ("schedule", "add"), ("profiles",) ..."""
    found: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        words = (*path, name)
        if isinstance(command, click.Group):
            found |= leaf_commands(command, words)
            if command.invoke_without_command:
                found.add(words)
        else:
            found.add(words)
    return found


def walk(run: Runner, extra: tuple[str, ...]) -> dict[tuple[str, ...], Run]:
    """Run every command once, in an order in which each has what it needs."""
    runs: dict[tuple[str, ...], Run] = {}

    def one(words: tuple[str, ...], *args: str) -> Run:
        result = runs[words] = run(*words, *args, *extra)
        return result

    one(("start",), *ADHOC)
    one(("status",))
    one(("stop",))
    one(("vent",))
    one(("mode",), "pulse")
    one(("intensity",), "2")
    # Nothing runs on a new simulator: the massager refuses, and says so as JSON too.
    one(("pause",))
    one(("resume",))
    one(("reset",))
    one(("pair",), "sim://")
    one(("unpair",), "sim://bedroom", "--forget-only")
    one(("devices",), "sim://", "--scan", "0")
    one(("profiles",))
    one(("profiles", "show"), "evening-45")
    added = one(("schedule", "add"), "evening-45", "--days", "mon,thu", "--at", "21:30")
    [schedule] = added.objects
    one(("schedule", "list"))
    one(("schedule", "next"))
    one(("schedule", "disable"), schedule["id"])
    one(("schedule", "enable"), schedule["id"])
    one(("schedule", "remove"), schedule["id"])
    one(("rate",), "3")
    one(("history",))
    one(("safety",))
    # The two that run until stopped: a broker they cannot use ends them at once.
    one(("daemon",), "--broker", "ftp://nowhere")
    one(("bridge",), "--broker", "ftp://nowhere")
    return runs


@pytest.mark.parametrize("how", ["--json", "MASSAGER_CTL_JSON=1"])
def test_every_command_prints_only_objects_that_say_their_kind(
    run: Runner, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra: tuple[str, ...] = ("--json",)
    if how.startswith("MASSAGER_CTL_JSON"):
        monkeypatch.setenv("MASSAGER_CTL_JSON", "1")
        extra = ()
    runs = walk(run, extra)
    assert set(runs) == leaf_commands(), "a command is missing from the walk"
    for words, result in runs.items():
        objects = result.objects  # each line an object with a kind
        assert objects, f"{words}: nothing printed"
        if words in {("daemon",), ("bridge",), ("pause",), ("resume",)}:
            assert result.code in (2, 3), (words, result.err)  # a bad option; refused
            assert objects[-1]["kind"] == "error"
        else:
            assert result.code == 0, (words, result.out, result.err)
    # The lists are objects too, with the list inside.
    assert {p["name"] for p in runs["profiles",].objects[0]["profiles"]} >= {"evening-45"}
    assert any(d["url"] == "sim://" for d in runs["devices",].objects[0]["devices"])
    assert runs["profiles", "show"].objects[0]["kind"] == "profile"
    assert runs["schedule", "disable"].objects[0]["enabled"] is False
    assert runs["schedule", "remove"].objects[0]["change"] == "removed"


def test_schedule_list_says_when_each_schedule_next_starts(run: Runner) -> None:
    added = run("schedule", "add", "evening-45", "--days", "daily", "--at", "21:30", "--json")
    [schedule] = added.objects
    other = run("schedule", "add", "wind-down-30", "--days", "sat", "--at", "20:00", "--json")
    run("schedule", "disable", other.objects[0]["id"])
    [listed] = run("schedule", "list", "--json").objects
    assert listed["kind"] == "schedules"
    by_id = {s["id"]: s for s in listed["schedules"]}
    [upcoming] = run("schedule", "next", "--count", "1", "--json").objects
    assert upcoming["kind"] == "upcoming"
    assert by_id[schedule["id"]]["next"] == upcoming["runs"][0]["at"]
    assert by_id[other.objects[0]["id"]]["next"] is None  # disabled: no next start


USAGE_ERRORS = [
    ("profiles", "--json", "--bogus"),
    ("rate", "--json"),
    ("history", "--goal", "0", "--json"),
    ("schedule", "next", "--json", "--count", "many"),
    ("status", "--json", "--device"),
    ("rate", "--json", "--note"),
]


@pytest.mark.parametrize("args", USAGE_ERRORS)
@pytest.mark.parametrize("how", ["--json", "MASSAGER_CTL_JSON=1"])
def test_usage_errors_are_one_json_object_with_exit_2(
    run: Runner, args: tuple[str, ...], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how != "--json":
        monkeypatch.setenv("MASSAGER_CTL_JSON", "1")
        args = tuple(arg for arg in args if arg != "--json")
    result = run(*args)
    assert result.code == 2
    [error] = result.objects
    assert error["kind"] == "error"
    assert error["error"] == "UsageError"
    assert error["message"]
    assert result.err == ""  # said once, as JSON, not again as text


def test_a_usage_error_outside_any_command_is_json_too(
    run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASSAGER_CTL_JSON", "1")
    result = run("nosuchcommand")
    assert result.code == 2
    [error] = result.objects
    assert error["error"] == "UsageError"
    assert "nosuchcommand" in error["message"]


def test_an_error_in_json_mode_is_said_once(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSAGER_CTL_JSON", "1")
    result = run("start", "nope")
    assert result.code == 2
    [error] = result.objects
    assert error == {"kind": "error", "error": "ProfileNotFound", "message": error["message"]}
    assert "no profile named 'nope'" in error["message"]
    assert "nope" not in result.err
    # Without JSON, the same error is a line of text on stderr, and nothing on stdout.
    monkeypatch.setenv("MASSAGER_CTL_JSON", "0")
    text = run("start", "nope")
    assert (text.code, text.out) == (2, "")
    assert text.err.startswith("error: no profile named 'nope'")


def decimals(value: float) -> int:
    """How many decimals a number printed in JSON has (0.1 -> 1, 80.0 -> 0)."""
    text = repr(value)
    return 0 if math.isclose(value, round(value)) else len(text.split(".")[1])


def numbers(value: Any, key: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, float):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v, key)


def test_numbers_are_rounded_to_what_they_mean(run: Runner) -> None:
    result = run("start", *ADHOC, "--json")
    assert result.code == 0, result.err
    lines = result.objects
    assert [line["kind"] for line in lines[:2]] == ["link", "progress"]
    assert lines[-1]["kind"] == "result"
    seen: set[str] = set()
    for line in lines:
        for key, value in numbers(line):
            seen.add(key)
            if key.endswith(("_s", "_mmhg")):
                assert decimals(value) <= 1, (key, value)  # a tenth of a second, of a mmHg
            else:
                assert decimals(value) <= 3, (key, value)
    assert {"step_left_s", "program_left_s", "pressures_mmhg", "pressure_s"} <= seen
