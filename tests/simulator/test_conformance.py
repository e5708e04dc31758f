"""The conformance suite against the simulator: it passes over every transport, and each
rule the simulator breaks on purpose fails the check that names it.

Everything below the suite is real: massager-ctl's transports, a pseudo-terminal,
a TCP socket, the virtual BLE radio, the simulator's firmware. Runs in this
process share one event loop with the simulator, on virtual time (``sim://``,
BLE) or on a clock 20 times faster than real time (pty, TCP); runs through the
command are separate processes, the simulator served at 10 times real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from firmware_protocol import (
    Button,
    EndReason,
    Frame,
    FrameDecoder,
    MessageType,
    Mode,
    Renew,
    SessionState,
    Start,
    Status,
    StatusFlag,
    decode_message,
)
from massager_ctl.transports.sim import SimTransport, simulated_device
from massager_ctl.urls import SimAddress, parse_device_url
from simulator.clock import scaled_runner
from simulator.config import DeviceConfig
from simulator.conformance import checks  # noqa: F401  (registers the checks)
from simulator.conformance import hands as hands_module
from simulator.conformance.broken import RULES
from simulator.conformance.hands import Hands, MakerHands, hands_for
from simulator.conformance.probe import Probe
from simulator.conformance.report import SECTIONS, as_json, as_text
from simulator.conformance.suite import CHECKS, NotTested, Options, Report, Result, run
from simulator.faults import CATALOGUE
from simulator.firmware import Firmware
from simulator.host import DeviceHost
from simulator.serve import PtyEndpoint, TcpEndpoint
from tests.massager_ctl.test_ble import on_air
from tests.served import Served, serve
from tests.simulator.hostile import Misdeeds, Relay, counting, lying, relayed

SPEC = Path(__file__).parents[2] / "firmware_protocol" / "SPEC.md"
QUICK = {"pause_limit_s": "5", "session_cap_s": "60", "max_lease_s": "60"}
"""A simulator whose pause limit and session cap the suite can wait for (with patience)."""
EVERYTHING = Options(inflate=True, patience_s=70)


class HandsOn(Hands):
    """A maker's hands on a simulator served in this process: pairing, restart, a fault."""

    def __init__(self, host: DeviceHost) -> None:
        self.host = host

    async def open_pairing(self) -> None:
        self.host.open_pairing()

    def why_no_restart(self) -> str | None:
        return None

    async def restart(self) -> None:
        self.host.restart()

    def why_no_fault(self) -> str | None:
        return None

    async def cause_fault(self) -> str:
        self.host.sync()
        CATALOGUE["sensor-stuck"].inject(self.host.firmware.plant)
        return "a stuck sensor"

    async def clear_fault(self) -> None:
        self.host.sync()
        CATALOGUE["sensor-stuck"].repair(self.host.firmware.plant)


def outcomes(report: Report) -> dict[str, str]:
    return {result.check: result.result for result in report.results}


def failures(report: Report) -> str:
    """The report of what did not pass, for an assertion's message."""
    return as_text(report, color=False)


def quick_config() -> DeviceConfig:
    return DeviceConfig.model_validate({"seed": 1, **QUICK})


async def run_sim(query: str, options: Options = EVERYTHING) -> Report:
    url = f"sim://{query}"
    address = parse_device_url(url)
    return await run(address, url, options, hands_for(address))


# --- on the simulator in this process (sim://, virtual time) -------------------------------


async def test_every_check_passes_on_the_simulator() -> None:
    query = "&".join(f"{k}={v}" for k, v in QUICK.items())
    report = await run_sim(f"passes?seed=1&{query}")
    assert set(outcomes(report).values()) == {"pass"}, failures(report)
    assert set(outcomes(report)) == {c.name for c in CHECKS}
    assert report.caps is not None
    assert report.caps.model == "AirLeg Sim 8"


async def test_without_inflate_nothing_starts_and_the_session_checks_say_why() -> None:
    report = await run_sim("gentle?seed=1", Options())
    results = {r.check: r for r in report.results}
    for item in CHECKS:
        if item.inflate:
            assert results[item.name].result == "not tested"
            assert "needs --inflate" in results[item.name].detail
    assert "fail" not in outcomes(report).values(), failures(report)
    host = simulated_device(SimAddress(name="gentle", options={"seed": "1"}))
    host.sync()
    assert host.firmware.last_end.name == "NONE"  # no session ever ran


async def test_a_device_that_does_not_pair_leaves_the_signed_checks_not_tested() -> None:
    # Nobody holds the pairing button (no hands), and the device requires pairing.
    url = "sim://closed?seed=1"
    report = await run(parse_device_url(url), url, Options(sections=("4", "12")), Hands())
    results = {r.check: r for r in report.results}
    assert results["pairing"].result == "not tested"
    assert "hold the pairing button and run again" in results["pairing"].detail
    assert results["resend"].result == "not tested"
    assert "hold the pairing button" in results["resend"].detail
    assert results["restart"].result == "not tested"
    assert "fail" not in outcomes(report).values(), failures(report)


async def test_a_preset_intensity_above_1_fails_no_check() -> None:
    # The device's owner left the remote's preset at level 2: nothing of the suite's doing.
    url = "sim://preset2?seed=1"
    address = SimAddress(name="preset2", options={"seed": "1"})
    host = simulated_device(address)
    host.sync()
    host.press(Button.PLUS)
    host.sync()
    assert host.firmware.intensity == 2
    report = await run(address, url, Options(sections=("7.4", "8")), hands_for(address))
    assert "fail" not in outcomes(report).values(), failures(report)
    host.sync()
    assert host.firmware.intensity == 2  # the preset put back


@pytest.mark.parametrize("rule", list(RULES))
async def test_each_broken_rule_fails_its_check_naming_its_section(rule: str) -> None:
    broken = RULES[rule]
    query = "&".join(f"{k}={v}" for k, v in QUICK.items())
    options = Options(inflate=True, sections=(broken.section,), patience_s=70)
    report = await run_sim(f"{rule}?broken={rule}&seed=1&{query}", options)
    [result] = [r for r in report.results if r.check == broken.check]
    assert result.result == "fail", failures(report)
    assert result.section == broken.section
    assert report.failed
    shown = as_text(report, color=False)
    assert f"§{broken.section} " in shown
    assert f"FAIL       {broken.check}:" in shown


async def test_a_broken_simulator_keeps_every_rule_but_its_own() -> None:
    # Broken in section 10.9 only: the value checks of 8.3 and the link of 4 still hold.
    options = Options(sections=("4", "8.3"))
    report = await run_sim("exhausts?broken=idle-exhausts-closed&seed=1", options)
    assert "fail" not in outcomes(report).values(), failures(report)


def test_every_check_has_a_broken_rule_that_fails_it() -> None:
    sections = {c.name: c.section for c in CHECKS}
    assert {r.check for r in RULES.values()} == set(sections)
    for rule in RULES.values():
        assert sections[rule.check] == rule.section


def test_each_section_a_check_names_is_a_heading_of_the_spec() -> None:
    spec = SPEC.read_text()
    for section in {c.section for c in CHECKS}:
        title = SECTIONS[section]
        chapter, _, item = section.partition(".")
        if chapter == "10":  # the safety requirements are a numbered list
            assert f"{item}. **{title}.**" in spec, section
        else:
            assert re.search(rf"^#+ {re.escape(section)}\.? {re.escape(title)}$", spec, re.M), (
                section
            )


# --- over real transports in this process ----------------------------------------------------


@pytest.fixture
def scaled() -> Iterator[asyncio.Runner]:
    """A loop 20 times faster than real time, for the device and the suite together."""
    with scaled_runner(20) as runner:
        yield runner


@pytest.mark.parametrize("endpoint", ["pty", "tcp"])
def test_every_check_passes_over_a_pty_and_tcp(endpoint: str, scaled: asyncio.Runner) -> None:
    async def main() -> Report:
        host = DeviceHost(quick_config())
        host.start()
        served: PtyEndpoint | TcpEndpoint
        if endpoint == "pty":
            served = PtyEndpoint(host)
            url = served.open()
        else:
            served = TcpEndpoint(host)
            url = await served.open("127.0.0.1", 0)
        try:
            return await run(parse_device_url(url), url, EVERYTHING, HandsOn(host))
        finally:
            if isinstance(served, PtyEndpoint):
                served.close()
            else:
                await served.close()
            host.stop()

    report = scaled.run(main())
    assert set(outcomes(report).values()) == {"pass"}, failures(report)


async def test_every_check_passes_over_the_virtual_ble_radio() -> None:
    async with on_air(paired=False) as air:
        url = air.url
        hands = HandsOn(air.host)
        report = await run(parse_device_url(url), url, Options(inflate=True), hands)
    results = outcomes(report)
    # The radio's simulator keeps its own pause limit and session cap (600 s, 5400 s).
    assert results.pop("pause-limit") == results.pop("session-cap") == "not tested"
    assert set(results.values()) == {"pass"}, failures(report)


# --- the command ------------------------------------------------------------------------------


def conformance(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", "conformance", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def served(*args: str) -> contextlib.AbstractContextManager[Served]:
    """``massager-sim serve`` at 10x, its pairing window open for the suite to pair."""
    return serve(
        "--tcp", "127.0.0.1:0", "--speed", "10", "--pairing-window", "600",
        "--set", "pause_limit_s=5", *args, paired=False,
    )  # fmt: skip


def test_the_command_passes_a_served_simulator_and_restarts_it_with_a_command() -> None:
    with served() as device:
        restart = f"kill -HUP {device.process.pid}"
        result = conformance(device.url, "--inflate", "--json", "--restart-command", restart)
        assert device.stop() == 0
        log = device.stderr()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Take the wraps off the legs first" in result.stderr
    report = json.loads(result.stdout)
    assert all(set(entry) == {"section", "check", "result", "detail"} for entry in report)
    by_check = {entry["check"]: entry for entry in report}
    assert by_check["restart"]["result"] == "pass"
    assert "switched off and on again" in log
    # Nothing here can break a served simulator's hardware, and its cap is 90 minutes.
    assert by_check["faults-latch"]["result"] == "not tested"
    assert "--fault-step" in by_check["faults-latch"]["detail"]
    assert by_check["session-cap"]["result"] == "not tested"
    assert "--patience 5410" in by_check["session-cap"]["detail"]
    assert {e["result"] for e in report} == {"pass", "not tested"}
    sections = [entry["section"] for entry in report]
    assert sections.index("3.3") < sections.index("7.4") < sections.index("10.3")


def test_the_command_fails_a_broken_served_simulator_naming_the_section() -> None:
    with served("--broken", "stop-not-first") as device:
        result = conformance(device.url, "--section", "7.4")
        device.process.send_signal(signal.SIGUSR1)  # the pairing window, open again
        as_json_report = conformance(device.url, "--section", "7.4", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "§7.4 Stop and vent first" in result.stdout
    assert "FAIL       stop-first:" in result.stdout
    assert "not NAK PREEMPTED" in result.stdout
    assert "-> seq=" in result.stdout  # the frames, both ways
    assert "<- seq=" in result.stdout
    assert "Traceback" not in result.stderr
    assert as_json_report.returncode == 1
    [failed] = [e for e in json.loads(as_json_report.stdout) if e["result"] == "fail"]
    assert (failed["section"], failed["check"]) == ("7.4", "stop-first")


@contextlib.contextmanager
def asked_to_restart(url: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The suite run with --restart-step against ``url``, once it has asked the maker.

    Yields the process and what it said up to its question; killed on the way out
    if it has not ended.
    """
    asking = subprocess.Popen(
        [sys.executable, "-m", "simulator", "conformance", url, "--section", "12.1",
         "--restart-step", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert asking.stderr is not None
        asked = ""
        while ">>> " not in asked:
            line = asking.stderr.readline()
            assert line, "the suite ended without asking for a restart"
            asked += line
        yield asking, asked
    finally:
        if asking.poll() is None:
            asking.kill()
            asking.communicate()


def test_the_maker_restarts_the_device_when_asked() -> None:
    with served() as device, asked_to_restart(device.url) as (asking, asked):
        device.process.send_signal(signal.SIGHUP)  # the maker's hand on the switch
        out, _ = asking.communicate("\n", timeout=60)
    assert "Switch the massager off and on again" in asked
    assert asking.returncode == 0, out
    [restart] = [e for e in json.loads(out) if e["check"] == "restart"]
    assert restart["result"] == "pass"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["usb0"], "is not a device address"),
        (["sim://", "--section", "99"], "no check names section '99'"),
        (["sim://", "--speed", "0"], "--speed"),
    ],
)
def test_usage_errors_exit_2(args: list[str], said: str) -> None:
    result = conformance(*args)
    assert result.returncode == 2
    assert said in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def mute_port() -> Iterator[str]:
    """A TCP port that takes a connection and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def take() -> None:
        with contextlib.suppress(OSError):  # closed before anyone came
            accepted.append(listener.accept()[0])

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        yield f"socket://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(5)
        for connection in accepted:
            connection.close()


def test_a_device_that_does_not_answer_hello_gets_a_plain_message(mute_port: str) -> None:
    result = conformance(mute_port, "--json")
    assert result.returncode == 1
    assert "did not answer HELLO" in result.stderr
    assert "Traceback" not in result.stderr
    [entry] = json.loads(result.stdout)  # a program reading the report learns why
    assert (entry["section"], entry["check"], entry["result"]) == ("7.1", "hello", "fail")
    assert "did not answer HELLO" in entry["detail"]


def test_an_address_nothing_listens_on_gets_a_plain_message() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    result = conformance(f"socket://127.0.0.1:{port}")
    assert result.returncode == 1
    assert "massager-sim conformance: cannot reach" in result.stderr
    assert "Traceback" not in result.stderr
    as_json_report = conformance(f"socket://127.0.0.1:{port}", "--json")
    [entry] = json.loads(as_json_report.stdout)
    assert (entry["section"], entry["check"], entry["result"]) == ("2", "reachable", "fail")


def test_the_report_as_json_is_grouped_by_section() -> None:
    report = Report("sim://")
    report.results = [
        Result("10.3", "b", "rule b", "fail", "why"),
        Result("4", "a", "rule a", "pass"),
    ]
    assert json.loads(as_json(report)) == [
        {"section": "4", "check": "a", "result": "pass", "detail": "rule a"},
        {"section": "10.3", "check": "b", "result": "fail", "detail": "why"},
    ]


def test_the_simulator_command_loads_the_suite_only_when_it_runs() -> None:
    probe = "import sys, simulator.cli; print('simulator.conformance' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert loaded.stdout.strip() == "False", loaded.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "simulator", "conformance", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--inflate" in helped.stdout
    assert "firmware_protocol/SPEC.md" in helped.stdout


def test_serve_refuses_a_rule_it_cannot_break() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "serve", "--tcp", "127.0.0.1:0", "--broken", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no broken rule 'nope'" in result.stderr
    assert "stop-not-first" in result.stderr


def test_broken_lists_each_rule_with_the_check_that_catches_it() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "simulator", "broken"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0
    for name, rule in RULES.items():
        assert (
            f"{name}: {rule.does} (caught by {rule.check}, section {rule.section})" in listed.stdout
        )


def test_a_restart_that_did_not_happen_is_not_tested() -> None:
    with served() as device:
        result = conformance(device.url, "--section", "12.1", "--restart-command", "true")
    assert result.returncode == 0, result.stdout
    assert "not tested restart:" in result.stdout
    assert "the device did not restart: its uptime went on" in result.stdout


# --- a maker in a hurry: interrupted runs ------------------------------------------------------


def device_status(url: str) -> Status:
    """The STATUS of the served device at ``url``, asked with GET_STATUS as anyone may."""
    host, port = url.removeprefix("socket://").rsplit(":", 1)
    decoder = FrameDecoder()
    with socket.create_connection((host, int(port)), timeout=5) as line:
        line.sendall(b"\x00" + Frame(1, MessageType.GET_STATUS).encode())
        while True:
            data = line.recv(4096)
            assert data, "the device hung up"
            for frame in decoder.feed(data):
                if frame.msg_type == MessageType.STATUS:
                    status = decode_message(frame.msg_type, frame.payload)
                    assert isinstance(status, Status)
                    return status


class Snapshots:
    """The lines ``massager-sim serve --every`` prints, read as they come."""

    def __init__(self, device: Served) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        stream = device.process.stderr
        assert stream is not None
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError):  # closed at the end of the test
            for line in stream:
                self.lines.put(line)

    def wait_for(self, word: str, timeout: float = 20) -> str:
        """The next line with ``word`` in it."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                line = self.lines.get(timeout=left)
                if word in line:
                    return line
        raise AssertionError(f"no line with {word!r} in {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_the_device_stopped_and_vented(sig: signal.Signals) -> None:
    # The session-cap check holds a session for 60 device seconds (6 s here): stopped in it.
    with served("--set", "session_cap_s=60", "--set", "max_lease_s=60", "--every", "0.5") as device:
        snapshots = Snapshots(device)
        suite = subprocess.Popen(
            [sys.executable, "-m", "simulator", "conformance", device.url, "--inflate",
             "--section", "10.6", "--patience", "100", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            snapshots.wait_for(" running ")
            suite.send_signal(sig)
            out, err = suite.communicate(timeout=30)
        finally:
            if suite.poll() is None:
                suite.kill()
                suite.communicate()
        state = device_status(device.url)
    assert suite.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert "interrupted" in err
    assert "STOP and VENT sent: confirmed" in err, err
    report = json.loads(out)
    [cap] = [entry for entry in report if entry["check"] == "session-cap"]
    assert cap["result"] == "not tested"
    assert "interrupted" in cap["detail"]
    # The suite's own STOP ended it (not the watchdog, not the hang-up), and VENT opened the dump.
    assert state.state == SessionState.IDLE
    assert state.last_end == EndReason.STOPPED
    assert state.flags & StatusFlag.DUMP_OPEN
    assert max(state.pressures_dmmhg) < 100


async def test_a_device_that_keeps_air_after_the_suites_stop_is_reported() -> None:
    options = Options(inflate=True, sections=("8.2",))
    report = await run_sim("air?broken=air-after-stop&seed=1", options)
    results = {r.check: r for r in report.results}
    # table-session ends with the suite's own STOP: its check says what the device did after.
    assert results["table-session"].result == "fail"
    assert "after the check, a chamber still reads 20 mmHg" in results["table-session"].detail
    assert report.halted is not None
    confirmed, how = report.halted
    assert not confirmed
    assert "a chamber still reads 20 mmHg" in how


def test_the_command_says_a_stop_was_not_confirmed_and_fails() -> None:
    with served("--broken", "air-after-stop") as device:
        result = conformance(device.url, "--inflate", "--section", "10.11", "--json")
    assert result.returncode == 1
    assert "STOP and VENT sent: NOT confirmed: a chamber still reads 20 mmHg" in result.stderr
    assert "Switch the massager off" in result.stderr
    [vented] = json.loads(result.stdout)
    assert (vented["check"], vented["result"]) == ("vented-after-stop", "fail")


async def test_no_session_of_the_suite_runs_above_intensity_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, int, int]] = []
    status = Firmware.status

    def watched(self: Firmware) -> Status:
        report = status(self)
        if report.state in (SessionState.RUNNING, SessionState.PAUSED):
            seen.append((report.mode, report.intensity, max(report.pressures_dmmhg)))
        return report

    monkeypatch.setattr(Firmware, "status", watched)
    query = "&".join(f"{k}={v}" for k, v in QUICK.items())
    report = await run_sim(f"gentle-all?seed=1&{query}")
    assert set(outcomes(report).values()) == {"pass"}, failures(report)
    assert seen, "no session ran"
    assert {(mode, intensity) for mode, intensity, _ in seen} <= {(Mode.WAVE, 1), (Mode.PULSE, 1)}
    lowest = DeviceConfig().levels_mmhg[0] * 10
    assert max(pressure for _, _, pressure in seen) <= lowest * 1.1


def test_the_suite_refuses_to_build_a_start_above_intensity_1() -> None:
    async def main() -> None:
        probe = Probe(SimTransport(SimAddress(name="guard")))
        for message in (Start(Mode.WAVE, 2, 10), Renew(Mode.WAVE, 3, 10), Start(Mode.CYCLE, 0, 10)):
            with pytest.raises(RuntimeError, match="never starts a session above"):
                probe.build(message)
        probe.build(Start(Mode.WAVE, 1, 10))
        probe.build(Start(Mode.WAVE, 0, 10))  # refused by the device: the value checks

    asyncio.run(main())


# --- a stranger's device: hostile, broken or far away ---------------------------------------


@pytest.fixture(scope="module")
def open_device() -> Iterator[Served]:
    """``massager-sim serve`` at 10x that takes commands from anyone (a development device)."""
    with serve(
        "--tcp", "127.0.0.1:0", "--speed", "10", "--insecure-open", "--set", "pause_limit_s=5",
        paired=False,
    ) as device:  # fmt: skip
        yield device


def hostile(device: Served, misdeeds: Misdeeds, *args: str, bound: float = 30) -> Hostile:
    """The suite's run (``--json``) against ``device`` behind a relay doing ``misdeeds``.

    ``bound``: real seconds the run may take at most; a longer one is a hang.
    """
    with relayed(device.url, misdeeds) as relay:
        result = conformance(relay.url, "--json", *args, timeout=bound)
    assert "Traceback" not in result.stderr, result.stderr
    assert "an error of its own" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)  # valid JSON, whatever happened
    assert isinstance(report, list)
    for entry in report:
        assert set(entry) == {"section", "check", "result", "detail"}
        assert entry["result"] in ("pass", "fail", "not tested")
        assert entry["result"] == "pass" or entry["detail"], entry
    return Hostile(result.returncode, result.stderr, report)


@dataclass
class Hostile:
    """What the suite said about a hostile device."""

    code: int
    stderr: str
    report: list[dict[str, str]]

    def result(self, check: str) -> dict[str, str]:
        [entry] = [e for e in self.report if e["check"] == check]
        return entry


def test_a_device_that_answers_garbage_gets_a_plain_message(open_device: Served) -> None:
    said = hostile(open_device, Misdeeds(garbage=True), "--inflate")
    assert said.code == 1
    assert "did not answer HELLO" in said.stderr
    assert "STOP and VENT" not in said.stderr  # nothing was started, nothing to wait for
    [entry] = said.report
    assert (entry["section"], entry["check"], entry["result"]) == ("7.1", "hello", "fail")
    assert "did not answer HELLO" in entry["detail"]


@pytest.mark.parametrize(
    ("misdeed", "why"),
    [
        (counting(chambers=0), "chambers must be a tuple of 1..16"),
        (counting(levels=255), "payload is too short"),
    ],
    ids=["no chambers", "255 levels"],
)
def test_a_capabilities_that_cannot_be_read_is_said_so(
    open_device: Served, misdeed: Callable[[bytes], bytes], why: str
) -> None:
    said = hostile(open_device, Misdeeds(capabilities=misdeed))
    assert said.code == 1
    assert "answered HELLO with a CAPABILITIES that cannot be read" in said.stderr
    assert why in said.stderr
    [entry] = said.report
    assert (entry["section"], entry["result"]) == ("5.2", "fail")
    assert why in entry["detail"]


@pytest.mark.parametrize(
    ("misdeed", "sections"),
    [
        (lying(firmware="1.0+0x"), ("5.2", "7.5")),
        (lying(firmware="1.0+1e9x"), ("5.2",)),
        (lying(firmware="1.0+100000x"), ("5.2",)),
        (lying(ceiling_dmmhg=65535, max_target_dmmhg=65535), ("8.3",)),
    ],
    ids=["speed 0", "speed 1e9", "speed 100000", "no pressure too high"],
)
def test_absurd_capabilities_get_a_report(
    open_device: Served, misdeed: Callable[[bytes], bytes], sections: tuple[str, ...]
) -> None:
    args = [arg for section in sections for arg in ("--section", section)]
    said = hostile(open_device, Misdeeds(capabilities=misdeed), *args)
    assert {entry["section"] for entry in said.report} == set(sections)


async def test_a_check_the_device_leads_astray_fails_and_the_run_goes_on() -> None:
    # Whatever a check meets that the suite did not foresee: that check fails, saying so.
    async def astray(ctx: object) -> None:
        raise ValueError("max() arg is an empty sequence")

    [index] = [i for i, c in enumerate(CHECKS) if c.name == "capabilities"]
    kept = CHECKS[index]
    CHECKS[index] = dataclasses.replace(kept, run=astray)
    try:
        report = await run_sim("astray?seed=1", Options(sections=("5.2", "13")))
    finally:
        CHECKS[index] = kept
    results = {r.check: r for r in report.results}
    assert results["capabilities"].result == "fail"
    assert "could not go on with this check: ValueError" in results["capabilities"].detail
    assert results["extra-bytes"].result == "pass"


@pytest.mark.parametrize(
    ("misdeed", "sections", "why"),
    [
        (lying(watchdog_ms=65535), ("7.2", "7.3", "7.4", "10.3"), "longer than --patience 30"),
        (lying(status_interval_ms=65535), ("4", "7.5"), "longer than --patience 30"),
        (lying(watchdog_ms=0), ("7.3",), "announces watchdog_ms 0"),
        (lying(status_interval_ms=0), ("7.5",), "announces status_interval_ms 0"),
    ],
    ids=["watchdog 65535 ms", "status 65535 ms", "watchdog 0", "status 0"],
)
def test_absurd_timings_are_not_waited_for(
    open_device: Served, misdeed: Callable[[bytes], bytes], sections: tuple[str, ...], why: str
) -> None:
    # A minute of the device's time per rule would be ten here: the bound is --patience.
    args = [arg for section in sections for arg in ("--section", section)]
    said = hostile(open_device, Misdeeds(capabilities=misdeed), "--inflate", *args, bound=20)
    timed = [e for e in said.report if e["check"] in TIMED]
    assert timed
    for entry in timed:
        assert entry["result"] == "not tested", entry
        assert why in entry["detail"]


TIMED = {
    "watchdog",
    "challenges",
    "proof-of-life",
    "no-hello",
    "stop-from-anyone",
    "silent-session",
    "status-reports",
    "device-numbering",
}
"""The checks that wait for the watchdog or the status interval."""


@pytest.mark.parametrize(
    "per_s", [30_000, 200_000]
)  # the device runs at 10x: 10,000 a second is its limit
def test_a_device_that_floods_the_link_ends_the_run(open_device: Served, per_s: int) -> None:
    said = hostile(open_device, Misdeeds(flood_per_s=per_s), "--inflate", bound=20)
    assert said.code == 1
    assert "floods the link" in said.stderr + json.dumps(said.report)


def test_a_link_slower_than_the_watchdog_is_said_so(open_device: Served) -> None:
    # 200 ms each way to a device at 10x: 4 s of its time, where its watchdog is 1 s.
    said = hostile(open_device, Misdeeds(delay_s=0.2), "--inflate", bound=20)
    assert said.code == 1
    assert "too long for the device's watchdog (1 s)" in said.stderr
    [entry] = said.report
    assert (entry["section"], entry["check"], entry["result"]) == ("7.3", "watchdog", "fail")


def test_a_relay_that_delays_every_frame_200_ms_gets_a_report(scaled: asyncio.Runner) -> None:
    # A device at real speed 200 ms away each way, on a clock 20 times faster than real time.
    async def main() -> Report:
        host = DeviceHost(quick_config())
        host.start()
        served = TcpEndpoint(host)
        url = await served.open("127.0.0.1", 0)
        try:
            async with Relay(url, Misdeeds(delay_s=0.2)).here() as relay:
                options = Options(inflate=True, sections=("7.3", "7.5", "10.3"))
                return await run(parse_device_url(relay.url), relay.url, options, HandsOn(host))
        finally:
            await served.close()
            host.stop()

    report = scaled.run(main())
    json.loads(as_json(report))
    assert {r.check for r in report.results} == {
        "watchdog", "challenges", "proof-of-life", "status-reports", "silent-session",
    }  # fmt: skip
    for result in report.results:  # a round trip of 0.4 s fits a watchdog of 1 s
        assert result.result == "pass", failures(report)
    assert not [note for note in report.notes if "over half the device's watchdog" in note]


def test_a_device_that_says_everything_twice_fails_what_it_breaks(open_device: Served) -> None:
    said = hostile(open_device, Misdeeds(twice=True), "--section", "4", "--section", "7.1")
    assert said.code == 1
    assert said.result("device-numbering")["result"] == "fail"  # the same seq twice
    assert said.result("hello")["result"] == "fail"  # CAPABILITIES, then CAPABILITIES again
    assert said.result("resend")["result"] == "pass"  # a reply twice is still its reply


def test_blocks_longer_than_any_frame_are_dropped(open_device: Served) -> None:
    said = hostile(open_device, Misdeeds(huge=100_000), "--section", "3.3", "--section", "4")
    assert said.code == 0, said.report
    assert {entry["result"] for entry in said.report} == {"pass"}


def test_a_device_that_hangs_up_mid_check_gets_a_report(open_device: Served) -> None:
    said = hostile(open_device, Misdeeds(cut_after_s=1.0), "--inflate", bound=20)
    assert said.code == 1
    results = [entry["result"] for entry in said.report]
    assert "pass" in results
    [cut] = [e for e in said.report if e["result"] == "fail"]
    assert "the link closed during the check" in cut["detail"]
    lost = [e for e in said.report if "the link was lost earlier in the run" in e["detail"]]
    assert lost
    assert all(e["result"] == "not tested" for e in lost)
    assert "STOP and VENT sent: NOT confirmed: the link is gone" in said.stderr


def test_ctrl_c_at_a_question_to_the_maker_ends_the_run() -> None:
    with served() as device, asked_to_restart(device.url) as (asking, _):
        asking.send_signal(signal.SIGINT)  # the maker gives up; stdin stays open
        code = asking.wait(timeout=15)
        out, err = asking.communicate()
    assert code == 130, err
    [restart] = json.loads(out)
    assert (restart["check"], restart["result"]) == ("restart", "not tested")
    assert "interrupted (SIGINT)" in restart["detail"]


def test_no_answer_from_the_maker_is_not_a_failure_of_the_device() -> None:
    with served() as device:
        result = subprocess.run(
            [sys.executable, "-m", "simulator", "conformance", device.url, "--section", "12",
             "--restart-step", "--json"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = {entry["check"]: entry for entry in json.loads(result.stdout)}
    assert report["restart"]["result"] == "not tested"
    assert "no answer on standard input" in report["restart"]["detail"]
    # The link came back: the checks after it ran, and the suite unpaired at the end.
    assert report["device-signs"]["result"] == report["unpair"]["result"] == "pass"


@pytest.mark.looptime(False)
async def test_a_restart_command_that_never_ends_or_fails_is_not_tested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hands_module, "RESTART_COMMAND_S", 0.5)
    for command, said in (("sleep 30", "did not finish in 0.5 s"), ("exit 3", "status 3")):
        with pytest.raises(NotTested, match=said):
            await MakerHands(restart_command=command).restart()


async def test_a_device_that_will_not_stop_ends_the_run() -> None:
    options = Options(inflate=True, sections=("8", "10"))
    report = await run_sim("runaway?broken=stop-ignored&seed=1", options)
    results = {r.check: r for r in report.results}
    # table-session's STOP leaves it RUNNING; the suite's own STOP and VENT after it too.
    assert results["table-session"].result == "fail"
    assert "a session ran on after the suite's VENT" in results["table-session"].detail
    assert "the run ends" in results["table-session"].detail
    later = [r for r in report.results if r.section.startswith("10")]
    assert later
    assert all(r.result == "not tested" and "did not stop" in r.detail for r in later)
    assert report.halted is not None
    assert report.halted == (False, "the device still shows a session (RUNNING)")
