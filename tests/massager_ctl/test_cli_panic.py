"""Ctrl-C pressed in a panic: the massager is vented, and the last thing on screen says so.

Run as a person runs it: on a terminal (where the live panel is drawn and
Ctrl-C reaches the program through the terminal), and piped or with --json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator

import pytest

from massager_ctl.cli import run_async
from tests.terminal import Screen, Terminal

CLI = [sys.executable, "-m", "massager_ctl"]
PRESS_GAP_S = 0.03
"""Three Ctrl-C this far apart: how a person in a panic presses it."""


def peak_on(screen: Screen) -> float:
    """The highest pressure the live panel shows (0 if none is shown)."""
    numbers = [float(n) for line in screen.lines() if line.startswith("│")
               for n in re.findall(r"\b\d+\.\d\b", line)]  # fmt: skip
    return max(numbers, default=0.0)


def test_ctrl_c_pressed_in_a_panic_on_a_terminal_leaves_the_ending_on_screen() -> None:
    with Terminal("start", "--mode", "wave", "--intensity", "2", "--duration", "10m") as term:
        term.wait_for(lambda screen: peak_on(screen) > 45)
        for _ in range(3):
            term.press(b"\x03")
            term.pump(PRESS_GAP_S)
        code = term.wait()
        lines = term.screen.lines()
        echoes = termios.tcgetattr(term.fd)[3] & termios.ECHO  # the panel turned it off
    shown = "\n".join(lines)
    assert code == 130, shown
    assert "Traceback" not in shown
    # The ending is the last thing said, and no panel is left claiming the program runs.
    assert "interrupted; the massager was vented" in " ".join(lines[-3:]), shown
    assert "running" not in shown, shown
    assert "step 1/1" not in lines[-1]
    assert echoes, "the terminal was left not echoing what is typed"


def test_closing_the_terminal_under_a_program_vents_and_ends_its_session() -> None:
    # A closed terminal window sends SIGHUP: by default it would kill the program with
    # its journal entry left open and no vent of its own (only the massager's watchdog).
    from massager_ctl.journal import Journal
    from massager_ctl.paths import journal_file

    with Terminal("start", "--mode", "wave", "--intensity", "2", "--duration", "10m") as term:
        term.wait_for(lambda screen: peak_on(screen) > 45)
        os.close(term.fd)  # the window is closed: the kernel hangs the session up
        term.fd = os.open(os.devnull, os.O_RDONLY)  # for close() at the end
        _, status = os.waitpid(term.pid, 0)
        term.returncode = os.waitstatus_to_exitcode(status)
    # Not killed by the signal (a negative status); the ending it wrote had no reader,
    # so the exit status is only "not a clean exit".
    assert term.returncode > 0
    [session] = Journal(journal_file()).sessions()
    assert session.ended_at is not None
    assert session.outcome == "interrupted"
    assert session.message == "interrupted; the massager was vented"


@pytest.fixture
def silent_massager() -> Iterator[socket.socket]:
    """A TCP port that takes the connection and never answers, as a hung adapter does."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        yield listener


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_before_the_program_began_says_nothing_was_started(
    silent_massager: socket.socket, as_json: bool
) -> None:
    port = silent_massager.getsockname()[1]
    args = ["start", "--mode", "wave", "--intensity", "1", "--duration", "1m",
            "--device", f"socket://127.0.0.1:{port}"] + (["--json"] if as_json else [])  # fmt: skip
    process = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        connection, _ = silent_massager.accept()  # it is saying HELLO now, and waits
        with connection:
            for _ in range(3):
                process.send_signal(signal.SIGINT)
                time.sleep(PRESS_GAP_S)
            out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, (process.returncode, err)
    assert "Traceback" not in err
    if as_json:
        final = json.loads(out.splitlines()[-1])
        assert final["kind"] == "result"
        assert final["outcome"] == "interrupted"
        assert final["pressure_s"] == 0
        assert "nothing was started" in final["message"]
    else:
        assert "interrupted before the program began; nothing was started" in out.splitlines()[-1]


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGTERM, signal.SIGINT, signal.SIGINT, signal.SIGINT],
        [signal.SIGTERM, signal.SIGTERM],
        [signal.SIGINT, signal.SIGTERM],
    ],
    ids=["term-then-ctrl-c", "term-twice", "ctrl-c-then-term"],
)
def test_a_second_signal_never_cuts_the_vent_short(signals: list[int]) -> None:
    # At real speed the vent takes about a second: every later signal lands in it.
    process = subprocess.Popen(
        [*CLI, "start", "--mode", "wave", "--intensity", "2", "--duration", "10m", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        for line in process.stdout:
            report = json.loads(line)
            if report["kind"] == "progress" and max(report["status"]["pressures_mmhg"]) > 45:
                break
        for signum in signals:
            process.send_signal(signum)
            time.sleep(PRESS_GAP_S)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (130, 143), (process.returncode, err)
    final = json.loads(out.splitlines()[-1])
    assert final["kind"] == "result", err
    assert final["outcome"] == "interrupted"
    assert final["message"] == "interrupted; the massager was vented"
    assert max(final["final_status"]["pressures_mmhg"]) < 5


def test_ctrl_c_in_a_pipe_ends_with_the_ending_line_and_says_it_is_venting() -> None:
    process = subprocess.Popen(
        [*CLI, "start", "evening-45", "--speed", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        assert process.stdout.readline().startswith("step 1/5")
        for _ in range(3):
            process.send_signal(signal.SIGINT)
            time.sleep(PRESS_GAP_S)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "interrupted; the massager was vented" in out.splitlines()[-1]
    assert "Traceback" not in err
    assert "the massager is being vented" in err


def test_no_press_or_signal_cuts_the_ending_short() -> None:
    # The contract under every command: the first signal cancels once; what the
    # cancelled task then awaits (a vent and its wait) runs to its end however
    # often Ctrl-C is pressed or SIGTERM sent, and each press is heard.
    heard: list[object] = []
    running = threading.Event()

    async def program() -> None:
        running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            heard.append("venting")
            await asyncio.sleep(0.5)  # as a vent's wait takes: no press may cut it short
            heard.append("vented")
            raise

    def panic() -> None:
        if not running.wait(30):
            return
        for signum in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), signum)
            time.sleep(PRESS_GAP_S)

    previous = signal.getsignal(signal.SIGINT)
    presser = threading.Thread(target=panic)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_async(program, on_press=heard.append)
    finally:
        presser.join()
        signal.signal(signal.SIGINT, previous)
    assert heard.count("venting") == 1
    assert heard[-1] == "vented", heard
    assert [press for press in heard if isinstance(press, int)] == [1, 2, 3]
