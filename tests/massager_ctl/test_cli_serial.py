"""massager-ctl against ``massager-sim serve`` in another process, as two terminals would run them.

Everything here is real: two processes, a pseudo-terminal or a TCP port between
them, real time. Programs last a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.massager_ctl.test_cli import CLI, ctl, json_lines
from tests.served import serve

ADHOC = ["--mode", "wave", "--intensity", "2"]


@contextlib.contextmanager
def controller(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``massager-ctl ARGS`` in the background, killed if the test ends first."""
    process = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def until_progress(process: subprocess.Popen[str], *, above_mmhg: float | None = None) -> None:
    """Read ``start --json`` output until a progress line (with a chamber above ``above_mmhg``)."""
    assert process.stdout is not None
    for line in process.stdout:
        report = json.loads(line)
        if report["kind"] == "progress" and (
            above_mmhg is None or max(report["status"]["pressures_mmhg"]) > above_mmhg
        ):
            return
    raise AssertionError("the program ended before it reported progress")


@pytest.mark.parametrize("endpoint", [["--serial"], ["--tcp", "127.0.0.1:0"]])
def test_a_program_runs_on_a_served_simulator(endpoint: list[str]) -> None:
    with serve(*endpoint) as served:
        scheme = "serial:///dev/" if endpoint == ["--serial"] else "socket://127.0.0.1:"
        assert served.url.startswith(scheme)
        result = ctl("start", *ADHOC, "--duration", "3s", "--device", served.url, "--json")
        assert result.returncode == 0, result.stderr
        lines = json_lines(result.stdout)
        assert lines[0]["kind"] == "link"
        assert lines[0]["event"] == "connected"
        assert lines[0]["info"]["model"] == "AirLeg Sim 8"
        progress = [line for line in lines if line["kind"] == "progress"]
        assert max(max(p["status"]["pressures_mmhg"]) for p in progress) > 30
        final = lines[-1]
        assert final["outcome"] == "completed"
        assert max(final["final_status"]["pressures_mmhg"]) < 5
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
        assert status["status"]["state"] == "idle"
        assert status["status"]["last_end"] == "stopped"
        link = status["link"]
        for counter in ("frames_sent", "frames", "crc_errors", "resyncs"):
            assert counter in link
        assert link["frames"] > 0
        assert link["crc_errors"] == 0
        text = ctl("status", "--device", served.url)
        assert "frames sent" in text.stdout
        assert "CRC errors" in text.stdout
    assert served.stop() == 0


def test_both_sides_can_run_faster_together() -> None:
    # 10x: the keepalive's margin (half a second of device time, SPEC 7.3) is 50 ms of real
    # time, which two processes on a loaded machine keep; at 20x it was not always kept.
    with serve("--serial", "--speed", "10") as served:
        started = time.monotonic()
        result = ctl("start", *ADHOC, "--duration", "1m", "--speed", "10", "--device", served.url)
        took = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert "ran to the end" in result.stdout
    assert took < 20  # a minute of device time in a few seconds (plus start-up)


def test_speed_is_refused_for_a_massager_that_is_not_the_simulator() -> None:
    # A device that does not announce itself as massager-sim keeps real time.
    with serve("--serial", "--set", "firmware=2.4.1", "--set", "model=AirLeg Pro") as served:
        result = ctl("start", *ADHOC, "--duration", "1m", "--speed", "10", "--device", served.url)
        assert result.returncode == 2
        assert "AirLeg Pro (firmware 2.4.1) is a real massager" in result.stderr
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
        assert status["status"]["last_end"] == "none"  # nothing was started


def test_the_device_vents_by_itself_when_the_controller_dies() -> None:
    with serve("--serial") as served:
        with controller("start", *ADHOC, "--duration", "1m", "--device", served.url,
                        "--json") as running:  # fmt: skip
            until_progress(running, above_mmhg=30)
            running.kill()  # no chance to send anything: only the device's watchdog is left
        time.sleep(3)
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]["status"]
        assert status["state"] == "idle"
        assert status["last_end"] == "link_lost"
        assert max(status["pressures_mmhg"]) < 5


def test_a_frozen_device_is_noticed_and_the_program_resumes_when_it_answers_again() -> None:
    with serve("--serial") as served:
        with controller("start", *ADHOC, "--duration", "5s", "--device", served.url,
                        "--json") as running:  # fmt: skip
            time.sleep(2.5)
            served.process.send_signal(signal.SIGSTOP)  # the port is there; nothing answers
            time.sleep(3)
            served.process.send_signal(signal.SIGCONT)
            out, err = running.communicate(timeout=30)
        lines = json_lines(out)
        events = [line["event"] for line in lines if line["kind"] == "link"]
        assert events == ["connected", "lost", "back"], err
        lost = next(line for line in lines if line.get("event") == "lost")
        assert "went silent" in lost["message"]
        assert lines[-1]["outcome"] == "completed"
        assert lines[-1]["resumes"] == 1
        assert running.returncode == 0


def test_the_simulator_going_away_ends_the_program_after_the_window() -> None:
    with serve("--serial") as served:
        args = ["--duration", "1m", "--device", served.url, "--resume-window", "2s"]
        with controller("start", *ADHOC, *args) as running:
            time.sleep(2.5)
            assert served.stop() == 0  # SIGTERM: the device switches off, the pty closes
            out, err = running.communicate(timeout=30)
    assert running.returncode == 4, err
    assert "reconnecting for up to 2 s" in out
    said = " ".join(out.split())  # as a person reads it, however the lines were wrapped
    assert said.count("did not come back within 2 s") == 1  # in the ending line, said once


def test_devices_probes_the_urls_it_is_given() -> None:
    with serve("--serial") as served, serve("--tcp", "127.0.0.1:0") as tcp:
        result = ctl("devices", served.url, tcp.url, "socket://127.0.0.1:1", "--probe",
                     "--timeout", "1s", "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        found = {entry["url"]: entry for entry in json.loads(result.stdout)["devices"]}
        assert found[served.url + "?baudrate=115200"]["answered"] is True
        assert found[served.url + "?baudrate=115200"]["model"] == "AirLeg Sim 8"
        assert found[tcp.url]["answered"] is True
        refused = found["socket://127.0.0.1:1"]
        assert refused["answered"] is False
        assert "connection refused" in refused["problem"]
        listed = ctl("devices")
        assert listed.returncode == 0
        assert "sim://" in listed.stdout


def test_a_start_at_another_speed_than_the_served_simulator_is_refused_naming_both() -> None:
    with serve("--tcp", "127.0.0.1:0", "--speed", "20") as served:
        faster = ctl("start", *ADHOC, "--duration", "1m", "--speed", "10", "--device", served.url)
        plain = ctl("start", *ADHOC, "--duration", "1m", "--device", served.url, "--json")
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
    assert faster.returncode == 2, faster.stderr
    assert "runs at 20x real time, and this start at 10x" in faster.stderr
    assert "give --speed 20" in faster.stderr
    assert plain.returncode == 2, plain.stderr
    [error] = json_lines(plain.stdout)  # with --json, said once: as JSON
    assert error["kind"] == "error"
    assert "runs at 20x real time, and this start at real time" in error["message"]
    assert status["status"]["last_end"] == "none"  # nothing was started, no pressure
    assert status["status"]["session_elapsed_s"] == 0
    with serve("--tcp", "127.0.0.1:0") as served:
        sped = ctl("start", *ADHOC, "--duration", "1m", "--speed", "10", "--device", served.url)
    assert sped.returncode == 2, sped.stderr
    assert "runs at real time, and this start at 10x" in sped.stderr
    assert "give no --speed" in sped.stderr
