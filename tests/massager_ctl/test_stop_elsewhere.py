"""A `start` in one terminal is stopped from another: through its holder, on every transport.

Real processes as two terminals run them: the program's `massager-ctl start`, and
`stop`, `vent`, `status`, `mode` in a second process, which find the holder by
its local door in the user's runtime folder. The massager is the built-in
simulator (it lives in the start's own process, so only the holder can reach
it), or one served by `massager-sim serve` on a pseudo-terminal, a TCP port, or
the virtual Bluetooth radio.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.massager_ctl.test_cli import ctl, json_lines
from tests.massager_ctl.test_cli_serial import ADHOC, controller, until_progress
from tests.served import serve

pytestmark = pytest.mark.looptime(False)

TRANSPORTS = ["sim", "--serial", "--tcp", "--ble"]


@contextlib.contextmanager
def a_massager(transport: str) -> Iterator[str]:
    """The URL of a massager on ``transport``: the built-in simulator, or one served."""
    if transport == "sim":
        yield "sim://?seed=4"
        return
    args = [transport, "127.0.0.1:0"] if transport == "--tcp" else [transport]
    with serve(*args) as served:
        yield served.url


def ended(process: subprocess.Popen[str]) -> tuple[int, dict]:
    """How ``start --json`` ended: its exit status and its last JSON line."""
    out, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    return process.returncode, json_lines(out)[-1]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_start_is_stopped_from_another_terminal(transport: str) -> None:
    with a_massager(transport) as url:
        program = ("start", *ADHOC, "--duration", "5m", "--device", url, "--json")
        with controller(*program) as running:
            until_progress(running, above_mmhg=10)
            seen = ctl("status", "--device", url, "--json")
            stopped = ctl("stop", "--device", url, "--json")
            code, last = ended(running)
    assert seen.returncode == 0, seen.stderr
    [held] = json_lines(seen.stdout)[-1]["held"]
    assert (held["holder"], held["state"]["state"]) == ("start", "running"), held
    assert held["device"].startswith(url)  # with the options it fills in (the baud rate)
    assert stopped.returncode == 0, stopped.stderr
    answer = json_lines(stopped.stdout)[-1]
    assert answer["kind"] == "stop"
    assert answer["message"] == "stop: the program ended; the chambers are empty", answer
    assert answer["held_by"]["pid"] == running.pid
    # The program saw the stop on its link, and ended so: not interrupted, not an error.
    assert code == 0
    assert last["outcome"] == "stopped", last
    assert max(last["final_status"]["pressures_mmhg"]) < 5


def test_vent_from_another_terminal_vents_and_mode_reaches_the_program() -> None:
    url = "sim://?seed=5"
    program = ("start", *ADHOC, "--duration", "5m", "--device", url, "--json")
    with controller(*program) as running:
        until_progress(running, above_mmhg=10)
        moved = ctl("intensity", "3", "--device", url)
        vented = ctl("vent", "--device", url)
        code, last = ended(running)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.startswith("intensity 3 (through massager-ctl start (pid"), moved.stdout
    assert vented.returncode == 0, vented.stderr
    assert code == 0
    assert last["outcome"] == "vented", last


def test_a_second_start_is_told_who_holds_the_massager_and_how_to_stop_it() -> None:
    url = "sim://?seed=6"
    program = ("start", *ADHOC, "--duration", "5m", "--device", url, "--json")
    with controller(*program) as running:
        until_progress(running)
        second = ctl("start", *ADHOC, "--duration", "1m", "--device", url)
        listed = ctl("status")
        assert running.poll() is None  # the first goes on, undisturbed
        ctl("stop", "--device", url)
        ended(running)
    assert second.returncode == 4, second.stderr
    assert f"{url} is held by massager-ctl start (pid {running.pid}" in second.stderr
    assert f"`massager-ctl stop --device {url}`, or Ctrl-C in its terminal" in second.stderr
    assert listed.returncode == 0, listed.stderr
    assert f"{url}: running" in listed.stdout
    assert f"held by massager-ctl start (pid {running.pid}" in listed.stdout


def test_a_holder_killed_leaves_nothing_that_blocks_the_next() -> None:
    url = "sim://?seed=7"
    program = ("start", *ADHOC, "--duration", "5m", "--device", url, "--json")
    with controller(*program) as running:
        until_progress(running)
        running.kill()  # no clean-up at all: its socket stays behind
        running.communicate()
    listed = ctl("status", "--json")
    assert json_lines(listed.stdout)[-1].get("held") is None, listed.stdout  # nothing held
    after = ctl("start", *ADHOC, "--duration", "2s", "--device", url, "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout.splitlines()[-1])["outcome"] == "completed"
