"""Trying things costs nothing: a refused start leaves no trace, and a simulator is a demo.

A start refused before any pressure (by the massager's capabilities or by the
safety limits) is not journaled and counts toward nothing; what was typed is
checked before the limits; a session on a simulator, built in or served, is a
demo at every speed, which no limit refuses and none counts. The same holds for
the command line, the daemon (in `test_daemon`) and the MQTT bridge.

A real massager is stood in for by the simulator announcing a firmware of its
own (`REAL`), so that the limits hold it as they would hardware.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from massager_ctl.holder import Command
from massager_ctl.journal import Journal
from massager_ctl.mqtt import DeviceAgent
from massager_ctl.paths import journal_file
from massager_ctl.programs.limits import LimitReached, SafetyLimits, check_journal
from tests.massager_ctl.test_bridge import a_bridge
from tests.massager_ctl.test_cli import CLI, ctl, json_lines
from tests.massager_ctl.test_daemon import short_profile
from tests.massager_ctl.test_envelope import REAL
from tests.served import serve


def journal() -> Journal:
    """This test's journal, where the command line writes."""
    return Journal(journal_file())


def a_session_ended_minutes_ago(minutes: float, device: str = REAL) -> None:
    """A 30-minute session on a real massager that ended ``minutes`` ago."""
    now = datetime.now(UTC)
    began = journal().begin(device, "wind-down-30", "cli", planned_s=1800,
                            now=now - timedelta(minutes=30 + minutes))  # fmt: skip
    journal().end(began, "completed", pressure_s=1800, now=now - timedelta(minutes=minutes))


def until_pressure_then_ctrl_c(*args: str) -> tuple[int, list[dict[str, object]], str]:
    """`start ARGS` as a person runs it: once the first report shows it running, Ctrl-C."""
    process = subprocess.Popen([*CLI, "start", *args, "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(json.loads(line))
            if lines[-1]["kind"] == "progress":
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, lines + json_lines(out), err


@pytest.mark.parametrize(
    ("args", "device", "why"),
    [
        (("--mode", "wave", "--intensity", "7", "--duration", "1m"), REAL,
         "this massager has no intensity 7; it offers 1, 2, 3"),
        (("--mode", "knead", "--intensity", "1", "--duration", "1m"), REAL,
         "this massager has no mode 'knead'; it offers wave, pulse"),
        (("evening-45",), f"{REAL}&session_cap_s=1200&max_lease_s=1200",
         "it runs 45 min but the device caps a session at 20 min"),
        (("trial-compression-60",), f"{REAL}&cycle=false",
         "needs the programmable cycle, which the device lacks"),
    ],
    ids=["intensity-7", "a-mode-it-lacks", "too-long-for-it", "no-cycle"],
)  # fmt: skip
def test_a_start_refused_before_any_pressure_leaves_no_trace(
    args: tuple[str, ...], device: str, why: str
) -> None:
    refused = ctl("start", *args, "--device", device)
    assert refused.returncode == 3, refused.stderr
    assert why in refused.stderr
    assert journal().sessions() == []
    history = json_lines(ctl("history", "--json", "--all").stdout)[-1]
    assert history["sessions"] == []
    assert history["hidden"] == {"demos": 0, "no_pressure": 0}
    assert history["weeks"][-1]["sessions"] == 0
    # Nothing for the limits to count: a long program may start at once.
    check_journal(journal(), planned_s=3600, now=datetime.now(UTC), limits=SafetyLimits())


def test_the_issues_sequence_intensity_7_then_a_program() -> None:
    refused = ctl("start", "--mode", "wave", "--intensity", "7", "--duration", "1m",
                  "--device", REAL)  # fmt: skip
    assert refused.returncode == 3
    code, lines, err = until_pressure_then_ctrl_c("evening-45", "--device", REAL)
    assert code == 130, err
    assert "rest at least" not in err
    assert lines[-1]["outcome"] == "interrupted"
    [session] = journal().sessions()  # only the program that ran
    assert (session.profile, session.demo, session.ended) == ("evening-45", False, "stopped")


def test_what_was_typed_is_checked_before_the_limits(user_dirs: dict[str, Path]) -> None:
    a_session_ended_minutes_ago(5)
    typo = ctl("start", "--mode", "wavee", "--intensity", "1", "--duration", "1m",
               "--device", REAL)  # fmt: skip
    assert typo.returncode == 3
    assert "this massager has no mode 'wavee'; it offers wave, pulse" in typo.stderr
    assert "rest" not in typo.stderr
    refused = ctl("start", "--mode", "wave", "--intensity", "1", "--duration", "1m",
                  "--device", REAL)  # fmt: skip
    assert refused.returncode == 3
    config = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "config.toml"
    [line] = refused.stderr.splitlines()[-1:]
    assert line.startswith("error: rest at least 30 min between sessions (the last ended at ")
    assert line.endswith(f"(this limit is rest_minutes in [limits] of {config}: change it there)")
    assert len(journal().sessions()) == 1


def test_using_it_in_order_on_the_simulator_never_locks_one_out() -> None:
    # The README's "Using it": a program, Ctrl-C, an ad-hoc step, all on sim://, here
    # right after a real session, when the limits would refuse a real start.
    a_session_ended_minutes_ago(5)
    code, _, err = until_pressure_then_ctrl_c("evening-45")  # at real speed
    assert code == 130, err
    adhoc = ctl("start", "--mode", "wave", "--intensity", "2", "--duration", "30s",
                "--speed", "100")  # fmt: skip
    assert adhoc.returncode == 0, adhoc.stderr
    real, *demos = journal().sessions()
    assert [(s.profile, s.source, s.demo) for s in demos] == [
        ("evening-45", "cli", True),
        ("adhoc", "cli", True),
    ]
    history = json_lines(ctl("history", "--json").stdout)[-1]
    assert [s["id"] for s in history["sessions"]] == [real.id]  # demos hidden
    assert history["hidden"] == {"demos": 2, "no_pressure": 0}
    assert history["weeks"][-1]["sessions"] == 1
    # And for the limits the demos are not there: a real start is still refused for
    # the real session's rest, not longer.
    with pytest.raises(LimitReached, match="rest at least 30 min") as caught:
        check_journal(journal(), planned_s=60, now=datetime.now(UTC), limits=SafetyLimits())
    assert caught.value.setting == "rest_minutes"
    assert caught.value.allowed_at == real.ended_at + timedelta(minutes=30)


def test_a_served_simulator_announces_itself_and_is_a_demo() -> None:
    a_session_ended_minutes_ago(5)
    with serve("--tcp", "127.0.0.1:0") as served:
        code, lines, err = until_pressure_then_ctrl_c("--mode", "wave", "--intensity", "1",
                                                      "--duration", "10m", "--device",
                                                      served.url)  # fmt: skip
    assert code == 130, err
    assert lines[0]["info"]["firmware"].startswith("sim-")
    [_, demo] = journal().sessions()
    assert (demo.device, demo.demo) == (served.url, True)


# --- the MQTT bridge -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def watched(url: str) -> AsyncIterator[tuple[DeviceAgent, list[str]]]:
    """A bridge that never reaches a broker, its one agent watching ``url``, and its log."""
    log: list[str] = []
    bridge = a_bridge("mqtt://127.0.0.1:1", {"bed": url}, log=log.append)
    agent = bridge.agents["bed"]
    agent.begin()
    await asyncio.sleep(1)
    assert agent.available
    try:
        yield agent, log
    finally:
        await agent.end()


async def test_a_start_over_mqtt_on_a_simulator_is_a_demo_no_limit_refuses() -> None:
    short_profile("short", 1)
    a_session_ended_minutes_ago(5)
    async with watched("sim://bed") as (agent, _):
        assert await agent.command(Command(action="start", profile="short")) == "started short"
        await asyncio.sleep(120)
    [_, demo] = journal().sessions()
    assert (demo.source, demo.demo, demo.ended) == ("mqtt", True, "completed")


async def test_over_mqtt_a_real_massager_is_held_to_the_limits_naming_the_setting() -> None:
    short_profile("short", 1)
    a_session_ended_minutes_ago(5)
    async with watched(REAL) as (agent, _):
        with pytest.raises(
            LimitReached, match=r"rest at least 30 min .* rest_minutes in \[limits\]"
        ):
            await agent.command(Command(action="start", profile="short"))
    assert len(journal().sessions()) == 1


async def test_a_massager_seen_as_a_simulator_is_checked_again_when_it_answers() -> None:
    # What the watcher last heard says simulator; the program's own link finds a real
    # massager (replaced at that address, say): the limits hold it all the same.
    short_profile("short", 1)
    a_session_ended_minutes_ago(5)
    async with watched(REAL) as (agent, log):
        assert agent.info is not None
        agent.holder.info = agent.info.model_copy(update={"firmware": "sim-0.1.0"})
        assert await agent.command(Command(action="start", profile="short")) == "started short"
        await asyncio.sleep(5)
    assert any("rest at least 30 min" in line for line in log), log
    assert len(journal().sessions()) == 1  # the refused start left no trace
