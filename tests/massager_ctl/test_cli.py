"""The massager-ctl command line, run as a person or a script runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "massager_ctl"]


def ctl(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") or line.startswith("[")
    ]


def test_help_lists_the_commands() -> None:
    result = ctl("--help")
    assert result.returncode == 0
    for command in ("start", "stop", "vent", "status", "profiles", "safety"):
        assert command in result.stdout


def test_profiles_list_and_show() -> None:
    listing = json.loads(ctl("profiles", "--json").stdout)
    assert listing["kind"] == "profiles"
    names = {p["name"] for p in listing["profiles"]}
    assert {"evening-45", "trial-compression-60", "effleurage-wave-30", "wind-down-30",
            "deep-pressure-30"} <= names  # fmt: skip
    shown = json.loads(ctl("profiles", "show", "trial-compression-60", "--json").stdout)
    assert shown["steps"][0]["cycle"]["pressure_mmhg"] == 29
    assert "Lettieri" in shown["why"]
    text = ctl("profiles", "show", "wind-down-30")
    assert text.returncode == 0
    assert "Kamm" in text.stdout


def test_an_ad_hoc_step_runs_on_the_simulator_and_reports_json() -> None:
    result = ctl("start", "--mode", "wave", "--intensity", "2", "--duration", "90s",
                 "--speed", "100", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    progress = [line for line in lines if line["kind"] == "progress"]
    assert progress
    assert max(max(p["status"]["pressures_mmhg"]) for p in progress) > 60
    final = lines[-1]
    assert final["kind"] == "result"
    assert final["outcome"] == "completed"
    assert final["pressure_s"] == pytest.approx(90, abs=2)
    assert max(final["final_status"]["pressures_mmhg"]) < 5


def test_text_output_when_not_a_terminal() -> None:
    result = ctl(
        "start", "--mode", "pulse", "--intensity", "1", "--duration", "30s", "--speed", "100"
    )
    assert result.returncode == 0, result.stderr
    assert "step 1/1" in result.stdout
    assert "the program ran to the end" in result.stdout
    assert "using the built-in simulator (sim://)" in result.stderr


def start_in_background(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "start", *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_pressure(process: subprocess.Popen[str], mmhg: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"the program ended early: {process.stderr.read() if process.stderr else ''}"
        report = json.loads(line)
        if report["kind"] == "progress" and max(report["status"]["pressures_mmhg"]) > mmhg:
            return
    raise AssertionError("no pressure within 30 s")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_program_vents_the_device_and_says_so(signum: int, code: int) -> None:
    process = start_in_background("evening-45", "--speed", "20")
    try:
        wait_for_pressure(process, 30)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # a failure above must not leave it running
            process.kill()
            process.communicate()
    assert process.returncode == code, err
    final = json_lines(out)[-1]
    assert final["kind"] == "result"
    assert final["outcome"] == "interrupted"
    status = final["final_status"]
    assert status["state"] == "idle"
    assert status["last_end"] == "vented"
    assert max(status["pressures_mmhg"]) < 5


@pytest.mark.parametrize("gap_s", [0.001, 0.03])
def test_ctrl_c_pressed_in_a_panic_still_vents_and_ends_with_the_result(gap_s: float) -> None:
    # Found by an attack: a second Ctrl-C 1 ms after the first raised KeyboardInterrupt
    # wherever the code was: a traceback, and no ending line.
    process = start_in_background("evening-45", "--speed", "20")
    try:
        wait_for_pressure(process, 30)
        for _ in range(3):
            process.send_signal(signal.SIGINT)
            time.sleep(gap_s)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, (process.returncode, err)
    assert "Traceback" not in err
    final = json_lines(out)[-1]
    assert final["kind"] == "result"
    assert final["outcome"] == "interrupted"
    assert final["final_status"]["last_end"] == "vented"
    assert max(final["final_status"]["pressures_mmhg"]) < 5


def test_a_bad_device_address_lists_the_accepted_forms() -> None:
    result = ctl("status", "--device", "usb0")
    assert result.returncode == 2
    assert "error: 'usb0' is not a device address. Accepted forms:" in result.stderr
    assert "serial:///dev/ttyUSB0" in result.stderr
    assert "ble://AA:BB:CC:DD:EE:FF" in result.stderr


def test_ble_without_a_bluetooth_service_says_so() -> None:
    # The system's Bluetooth (BlueZ) is reached over D-Bus; point it at nothing.
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/bus")
    result = ctl("status", "--device", "ble://AA:BB:CC:DD:EE:FF", env=env)
    assert result.returncode == 4
    assert "Bluetooth is unavailable" in result.stderr
    assert "bluetoothd" in result.stderr
    listed = ctl("devices", "--json", env=env)
    assert listed.returncode == 0
    [ble] = [e for e in json_lines(listed.stdout)[-1]["devices"] if e["kind"] == "ble"]
    assert "Bluetooth is unavailable" in ble["problem"]


def test_a_malformed_profile_names_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "t"\ndescription = "d"\nwhy = "w"\n[[steps]]\nminutes = 5\n'
                   'mode = "wave"\nintensity = "high"\n')  # fmt: skip
    result = ctl("start", str(bad), "--json")
    assert result.returncode == 2
    [error] = json_lines(result.stdout)
    assert error["kind"] == "error"
    assert error["error"] == "ProfileError"
    assert f"{bad}: steps[0].intensity" in error["message"]
    assert f"{bad}: steps[0].intensity" in ctl("start", str(bad)).stderr


def test_a_profile_the_device_cannot_run_is_refused_with_exit_3() -> None:
    result = ctl("start", "trial-compression-60", "--device", "sim://?cycle=false")
    assert result.returncode == 3
    assert "needs the programmable cycle, which the device lacks" in result.stderr


def test_usage_errors() -> None:
    assert ctl("start").returncode == 2
    assert ctl("start", "--mode", "wave").returncode == 2
    both = ctl("start", "evening-45", "--mode", "wave")
    assert both.returncode == 2
    assert "not both" in both.stderr
    assert "is not a duration" in ctl("start", "--mode", "wave", "--intensity", "1",
                                      "--duration", "soon").stderr  # fmt: skip
    assert ctl("profiles", "show", "nope").returncode == 2


def test_status_stop_and_vent_on_the_simulator() -> None:
    status = json_lines(ctl("status", "--json").stdout)[-1]
    assert status["info"]["model"] == "AirLeg Sim 8"
    assert status["status"]["state"] == "idle"
    assert status["link"]["crc_errors"] == 0
    for action in ("stop", "vent"):
        result = ctl(action, "--json")
        assert result.returncode == 0, result.stderr
        assert json_lines(result.stdout)[-1]["kind"] == action
    assert "AirLeg Sim 8" in ctl("status").stdout


@pytest.mark.parametrize("device", [None, "sim://", "sim://bedroom?seed=2"])
def test_stop_vent_and_status_on_the_simulator_say_it_is_a_new_one(device: str | None) -> None:
    # With nothing holding it, each command runs its own built-in simulator: "stop:
    # done" would read as if it had stopped something.
    where = () if device is None else ("--device", device)
    for action in ("stop", "vent", "status"):
        text = ctl(action, *where)
        assert text.returncode == 0, text.stderr
        said = " ".join(text.stdout.split())
        assert "a new built-in simulator, started for this command" in said
        assert "Nothing on this computer holds this simulator" in said
        assert "done" not in said
        listed = json_lines(ctl(action, *where, "--json").stdout)[-1]
        assert listed["fresh_simulator"] is True


def test_reset_with_no_fault_says_there_was_none() -> None:
    result = ctl("reset")
    assert result.returncode == 0, result.stderr
    assert "there was no fault to clear" in result.stdout
    assert "cleared" not in result.stdout.replace("no fault to clear", "")
    listed = json_lines(ctl("reset", "--json").stdout)[-1]
    assert listed["kind"] == "reset"
    assert listed["cleared"] == []


async def test_reset_names_the_fault_it_cleared() -> None:
    import asyncio

    from firmware_protocol import Button
    from massager_ctl.cli import clear_fault, reset_message
    from massager_ctl.transports.sim import simulated_device
    from massager_ctl.urls import parse_device_url

    broken = parse_device_url("sim://broken?faults=pump-dead")
    host = simulated_device(broken)
    host.press(Button.POWER)
    await asyncio.sleep(20)
    assert host.firmware.status().faults  # latched: the pump moved no air
    host.firmware.plant.faults.pump_dead = False  # mended
    cleared, status = await clear_fault(broken)
    assert cleared == ("pump",)
    assert not status.faults
    said = reset_message(cleared, status)
    assert said == "reset: the pump fault is cleared; the massager is idle"
    again, status = await clear_fault(broken)
    assert again == ()
    said = reset_message(again, status)
    assert said == "reset: there was no fault to clear; the massager is idle"


async def test_stop_and_vent_say_the_chambers_are_empty() -> None:
    from massager_ctl.cli import stop_or_vent, stopped_message
    from massager_ctl.urls import parse_device_url

    status = await stop_or_vent(parse_device_url("sim://bed"), "vent")
    said = stopped_message("vent", status)
    assert re.fullmatch(r"vent: done; the chambers are empty \([0-4] mmHg at most\)", said), said
    assert "or less" not in said


def test_safety_asked_for_does_not_say_it_is_shown_once() -> None:
    asked = ctl("safety")
    assert "blood clot" in asked.stdout
    assert "shown once" not in asked.stdout
    assert "shown once" not in json.loads(ctl("safety", "--json").stdout)["note"]
    args = ("start", "--mode", "wave", "--intensity", "1", "--duration", "5s", "--speed", "50")
    first = " ".join(ctl(*args).stderr.split())
    assert "blood clot" in first
    assert "This note is shown once; read it again with `massager-ctl safety`." in first


def test_devices_with_a_radio_named_does_not_report_the_system_bluetooth() -> None:
    # A person who names the radio to scan has no use for "BlueZ cannot be reached".
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/bus")
    radio = "tcp-client:127.0.0.1:1"  # nothing listens there
    listed = ctl("devices", "--hci", radio, "--scan", "1s", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    ble = [e for e in json_lines(listed.stdout)[-1]["devices"] if e["kind"] == "ble"]
    assert [e["url"] for e in ble] == [f"ble://?hci={radio}"]
    assert "cannot reach the Bluetooth radio tcp-client:127.0.0.1:1" in ble[0]["problem"]
    text = ctl("devices", "--hci", radio, "--scan", "1s", env=env)
    assert text.returncode == 0, text.stderr
    assert "BlueZ" not in text.stdout + text.stderr
    assert "tcp-client:127.0.0.1:1" in text.stdout


def test_the_device_comes_from_the_config_file_or_environment(user_dirs: dict[str, Path]) -> None:
    folder = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl"
    folder.mkdir()
    (folder / "config.toml").write_text('device = "sim://bedroom?seed=3"\n')
    assert json_lines(ctl("status", "--json").stdout)[-1]["device"] == "sim://bedroom?seed=3"
    env = dict(os.environ, MASSAGER_CTL_DEVICE="sim://hall")
    assert json_lines(ctl("status", "--json", env=env).stdout)[-1]["device"] == "sim://hall"
    (folder / "config.toml").write_text('device = "usb0"\n')
    broken = ctl("status")
    assert broken.returncode == 2
    assert "config.toml: device: 'usb0' is not a device address" in broken.stderr


def test_the_safety_note_shows_on_the_first_start_only() -> None:
    args = ("start", "--mode", "wave", "--intensity", "1", "--duration", "5s", "--speed", "50")
    first, second = ctl(*args), ctl(*args)
    assert "blood clot" in first.stderr
    assert "blood clot" not in second.stderr
    assert "blood clot" in ctl("safety").stdout
    assert "blood clot" in json.loads(ctl("safety", "--json").stdout)["note"]


async def test_stop_and_vent_report_a_massager_that_will_not_vent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from firmware_protocol import Button, Fault
    from massager_ctl.cli import stop_or_vent
    from massager_ctl.errors import DeviceFault, MassagerError
    from massager_ctl.transports.sim import simulated_device
    from massager_ctl.urls import parse_device_url
    from simulator.diagnostics import Diagnostics

    stuck = parse_device_url("sim://stuck")
    host = simulated_device(stuck)
    host.press(Button.POWER)
    await asyncio.sleep(14)  # the wave's hold: every chamber is full
    host.firmware.plant.faults.exhaust_stuck_shut = set(range(8))  # STOP cannot let air out
    # The massager latches a fault and empties them through its dump valve (SPEC 10.11).
    with pytest.raises(DeviceFault, match="the chambers are empty, but the massager reports"):
        await stop_or_vent(stuck, "stop")
    assert "valve" in host.firmware.status().faults.name.lower()  # type: ignore[union-attr]
    # An older firmware, which does not watch its chambers between sessions, leaves
    # them full: said so, with what to do.
    old = parse_device_url("sim://old")
    old_host = simulated_device(old)
    old_host.press(Button.POWER)
    await asyncio.sleep(14)
    old_host.firmware.plant.faults.exhaust_stuck_shut = set(range(8))
    with monkeypatch.context() as patch:
        patch.setattr(Diagnostics, "observe", lambda *args: Fault.NONE)
        with pytest.raises(MassagerError, match=r"stop was taken, but chambers still read up to"):
            await stop_or_vent(old, "stop")
    faults = host.firmware.plant.faults
    faults.pump_stuck_on, faults.inlet_stuck_open = True, {0}  # latched, and still it fills
    await asyncio.sleep(20)
    with pytest.raises(DeviceFault, match="the massager reports valve; chambers still read up to"):
        await stop_or_vent(stuck, "vent")
    assert (await stop_or_vent(parse_device_url("sim://fine"), "vent")).peak_mmhg < 5


def test_profiles_lists_the_others_when_one_of_yours_cannot_be_read(
    user_dirs: dict[str, Path],
) -> None:
    folder = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "profiles"
    folder.mkdir(parents=True)
    (folder / "latin.toml").write_bytes('title = "Caf\xe9"\n'.encode("latin-1"))
    (folder / "deep.toml").write_text("title = " + "[" * 5000 + "]" * 5000 + "\n")
    mine = 'title = "Mine"\ndescription = "d"\nwhy = "w"\n[[steps]]\nminutes = 5\nmode = "wave"\n'
    (folder / "mine.toml").write_text(mine + "intensity = 1\n")
    (folder / "strong.toml").write_text(mine + "intensity = 11\n")
    errors = {
        "latin": "not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8",
        "deep": "not valid TOML: nested too deeply",
        "strong": "steps[0].intensity: Input should be less than or equal to 10",
    }
    listed = ctl("profiles", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    entries = {entry["name"]: entry for entry in listing["profiles"] + listing["broken"]}
    for name, error in errors.items():
        assert entries[name] == {"name": name, "file": str(folder / f"{name}.toml"),
                                 "error": error}  # fmt: skip
    assert entries["mine"]["title"] == "Mine"
    assert "evening-45" in entries
    shown = ctl("profiles", env=dict(os.environ, COLUMNS="400"))
    assert (shown.returncode, shown.stderr) == (0, "")
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in shown.stdout.splitlines()}
    assert rows["mine"].startswith("5 Mine")
    assert rows["evening-45"].startswith("45 Evening relief")
    for name, error in errors.items():
        assert rows[name] == f"broken: {folder / name}.toml: {error}"
    one = ctl("profiles", "show", "latin")
    latin = f"{folder / 'latin.toml'}: {errors['latin']}"
    assert (one.returncode, one.stderr) == (2, f"error: {latin}\n")


async def test_the_speed_a_served_simulator_announces_must_be_met() -> None:
    from massager_ctl.cli import check_speed
    from massager_ctl.device import Massager
    from massager_ctl.errors import InputError

    async with Massager.connect("sim://") as massager:
        info = massager.info
    at = {
        firmware: info.model_copy(update={"firmware": firmware})
        for firmware in ("sim-0.1.0", "sim-0.1.0+2.5x", "sim-0.1.0+1000x", "2.4.1", "2.4.1+20x")
    }
    assert [i.simulator_speed for i in at.values()] == [1.0, 2.5, 1000.0, None, None]
    check_speed(at["sim-0.1.0"], None)
    check_speed(at["sim-0.1.0"], 1)
    check_speed(at["sim-0.1.0+2.5x"], 2.5)
    check_speed(at["2.4.1"], None)  # a real massager keeps real time, as we do
    check_speed(at["2.4.1+20x"], None)  # its version is its own business
    with pytest.raises(InputError, match=r"runs at 2.5x real time, and this start at 3x.*"
                       r"give --speed 2.5; nothing was started"):  # fmt: skip
        check_speed(at["sim-0.1.0+2.5x"], 3)
    with pytest.raises(InputError, match=r"runs at 1000x real time, and this pairing at real "
                       r"time.*give --speed 1000; nothing was paired"):  # fmt: skip
        check_speed(at["sim-0.1.0+1000x"], None, doing="pairing")
    with pytest.raises(InputError, match=r"runs at real time, and this start at 0.5x.*give no"):
        check_speed(at["sim-0.1.0"], 0.5)
    with pytest.raises(InputError, match=r"2.4.1\) is a real massager; nothing was started"):
        check_speed(at["2.4.1"], 20)


def words(text: str) -> str:
    """Text with its line breaks undone (help is wrapped to the terminal)."""
    return " ".join(text.split())


def test_durations_follow_one_rule_and_each_help_says_it() -> None:
    from massager_ctl.cli import parse_duration
    from massager_ctl.errors import InputError

    assert parse_duration("10", "--duration") == 600  # a bare number is minutes
    assert parse_duration("1h 30m", "--duration") == parse_duration("90min", "--lead") == 5400
    assert parse_duration("30s", "--resume-window", bare=False) == 30
    assert parse_duration("0", "--scan", bare=False) == 0
    with pytest.raises(InputError, match="--resume-window 30 needs a unit: write 30s or 30m"):
        parse_duration("30", "--resume-window", bare=False)
    start = words(ctl("start", "--help").stdout)
    assert "1h30m (a bare number is minutes)" in start
    assert "within this long, with a unit: 30s, 2m" in start
    devices = words(ctl("devices", "--help").stdout)
    assert "How long a probe waits, with a unit: 2s, 1m" in devices
    assert "massagers, with a unit: 3s, 1m" in devices
    assert "60m, 1h (a bare number is minutes)" in words(ctl("schedule", "add", "--help").stdout)
    refused = ctl("start", "evening-45", "--resume-window", "30")
    assert refused.returncode == 2
    assert refused.stderr.endswith("error: --resume-window 30 needs a unit: write 30s or 30m\n")
    assert "--timeout 'soon' is not a duration" in ctl("devices", "--timeout", "soon").stderr


def test_a_step_as_long_as_the_massagers_lease_is_taken() -> None:
    # The simulator's lease and session cap at 2 min here (90 min by default) keep it short.
    device = "sim://?session_cap_s=120&max_lease_s=120"
    result = ctl("start", "--mode", "wave", "--intensity", "1", "--duration", "2m",
                 "--device", device, "--speed", "100", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[-1]["outcome"] == "completed"


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("--device", ""), {}, "error: --device is empty; give a device URL such as sim://"),
        ((), {"MASSAGER_CTL_DEVICE": "usb0"},
         "error: MASSAGER_CTL_DEVICE (in the environment): 'usb0' is not a device address."),
        ((), {"MASSAGER_CTL_DEVICE": "sim://?seed=abc"},
         "error: MASSAGER_CTL_DEVICE (in the environment): sim://?seed=abc: seed must be a "
         "whole number, not 'abc'"),
        (("--device", "sim://?seed=abc"), {},
         "error: sim://?seed=abc: seed must be a whole number, not 'abc'"),
        (("--device", "socket://127.0.0.1:99999"), {},
         "error: 'socket://127.0.0.1:99999' has port 99999, out of range: a port is 1 to 65535."),
    ],
)  # fmt: skip
def test_a_bad_device_says_where_it_came_from_and_what_is_wrong(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    result = ctl("status", *args, env=dict(os.environ, **env))
    assert result.returncode == 2
    assert result.stderr.startswith(says), result.stderr
    assert result.stderr.count("error:") == 1


def test_a_rating_out_of_range_says_the_range() -> None:
    for score in ("-1", "11"):
        result = ctl("rate", score)
        assert result.returncode == 2
        assert result.stderr == f"error: a rating is 0 (calm) to 10 (the worst), not {score}\n"


def test_a_level_the_massager_lacks_is_said_in_its_own_words() -> None:
    result = ctl("start", "--mode", "wave", "--intensity", "7", "--duration", "1m",
                 "--speed", "100")  # fmt: skip
    assert result.returncode == 3
    # The words `Massager.set_intensity` (the bridge, the remote's front doors) uses.
    assert result.stderr.endswith("error: this massager has no intensity 7; it offers 1, 2, 3\n")


def complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last word of ``line`` (click's protocol)."""
    words = line.split(" ")
    env = dict(env or os.environ, _MASSAGER_CTL_COMPLETE="bash_complete",
               COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))  # fmt: skip
    result = subprocess.run(CLI, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_profile_names_complete_in_the_shell(user_dirs: dict[str, Path]) -> None:
    folder = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "profiles"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text("")  # listed by name even before it is valid
    offered = complete("massager-ctl start ")
    assert {"plain,mine", "plain,evening-45", "plain,wind-down-30"} <= set(offered)
    assert complete("massager-ctl start ev") == ["plain,evening-45"]
    assert complete("massager-ctl profiles show wind") == ["plain,wind-down-30"]
    assert complete("massager-ctl schedule add tri") == ["plain,trial-compression-60"]
    assert complete("massager-ctl start ./my") == ["file,./my"]  # the shell's file completion


def test_a_good_profile_starts_beside_a_broken_one_which_names_its_file_and_field(
    user_dirs: dict[str, Path],
) -> None:
    folder = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "profiles"
    folder.mkdir(parents=True)
    mine = 'title = "Mine"\ndescription = "d"\nwhy = "w"\n[[steps]]\nminutes = 1\nmode = "wave"\n'
    (folder / "mine.toml").write_text(mine + "intensity = 1\n")
    (folder / "strong.toml").write_text(mine + "intensity = 11\n")
    (folder / "latin.toml").write_bytes(b'title = "Caf\xe9"\n')
    ran = ctl("start", "mine", "--speed", "100", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json_lines(ran.stdout)[-1]["outcome"] == "completed"
    refused = ctl("start", "strong", "--speed", "100")
    assert refused.returncode == 2
    assert refused.stderr == (f"error: {folder / 'strong.toml'}: steps[0].intensity: Input "
                              "should be less than or equal to 10\n")  # fmt: skip
