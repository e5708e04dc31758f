"""massager-ctl against ``massager-sim serve --ble`` in another process, as two terminals run them.

The simulator is a GATT peripheral on its virtual radio; massager-ctl joins that
radio over TCP (the ``?hci=`` in the URL the simulator prints) and reaches it
through bleak and the Bumble backend. Real processes, real sockets, real time.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.massager_ctl.test_cli import ctl, json_lines
from tests.massager_ctl.test_cli_serial import ADHOC, controller, until_progress
from tests.served import serve

pytestmark = pytest.mark.looptime(False)


def status_of(url: str) -> dict:
    result = ctl("status", "--device", url, "--json")
    assert result.returncode == 0, result.stderr
    return json_lines(result.stdout)[-1]["status"]


def test_devices_finds_the_served_massager_and_a_program_runs_on_it() -> None:
    with serve("--ble") as served:
        assert served.url.startswith("ble://")
        assert "?hci=tcp-client:127.0.0.1:" in served.url
        radio = served.url.split("?hci=")[1]
        listed = ctl("devices", "--hci", radio, "--scan", "1s", "--probe", "--json")
        assert listed.returncode == 0, listed.stderr
        [found] = [e for e in json_lines(listed.stdout)[-1]["devices"] if e["url"] == served.url]
        assert found["description"] == "AirLeg"
        assert found["rssi"] < 0
        assert found["answered"] is True
        assert found["model"] == "AirLeg Sim 8"

        result = ctl("start", *ADHOC, "--duration", "3s", "--device", served.url, "--json")
        assert result.returncode == 0, result.stderr
        lines = json_lines(result.stdout)
        assert lines[0]["event"] == "connected"
        progress = [line for line in lines if line["kind"] == "progress"]
        assert max(max(p["status"]["pressures_mmhg"]) for p in progress) > 30
        assert lines[-1]["outcome"] == "completed"
        status = status_of(served.url)
        assert status["state"] == "idle"
        assert status["last_end"] == "stopped"


def test_a_killed_controller_leaves_the_radio_and_the_device_vents() -> None:
    with serve("--ble") as served:
        with controller("start", *ADHOC, "--duration", "1m", "--device", served.url,
                        "--json") as process:  # fmt: skip
            until_progress(process, above_mmhg=30)
            process.send_signal(signal.SIGKILL)
            process.wait()
        # Its TCP connection to the radio closed, so its virtual controller is gone
        # and the massager sees the BLE link end: it vents at once, not by watchdog.
        status = status_of(served.url)
        assert status["state"] == "idle"
        assert status["last_end"] == "link_lost"
        assert max(status["pressures_mmhg"]) < 5


def test_a_massager_switched_off_mid_program_ends_it_after_the_window() -> None:
    with serve("--ble") as served:
        with controller("start", *ADHOC, "--duration", "1m", "--resume-window", "2s",
                        "--device", served.url, "--json") as process:  # fmt: skip
            until_progress(process)
            started = time.monotonic()
            assert served.stop() == 0
            out, err = process.communicate(timeout=60)
        assert process.returncode == 4, err
        events = [x["event"] for x in json_lines(out) if x["kind"] == "link"]
        assert events[-2:] == ["lost", "gave_up"]
        assert time.monotonic() - started < 30
