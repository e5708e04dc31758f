"""``massager-ctl daemon`` as a service runs it: real processes, real time, a real timer.

The daemon runs a schedule due this minute on a simulator served on a
pseudo-terminal, hears a schedule added by `schedule add` through the watched
file, and on SIGTERM ends the program with the massager vented and exits 0.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import select
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from massager_ctl.journal import Journal
from massager_ctl.schedules.wallclock import SystemClock
from tests.massager_ctl.test_cli import ctl, json_lines
from tests.massager_ctl.test_cli_serial import controller
from tests.served import serve


@pytest.mark.looptime(False)
async def test_the_system_clock_wakes_at_a_wall_clock_moment_without_polling() -> None:
    clock = SystemClock()
    assert not clock.polls  # Linux: a timerfd, no re-checks
    target = clock.now() + timedelta(seconds=0.3)
    await clock.sleep_until(target)
    woke = clock.now()
    assert target <= woke < target + timedelta(seconds=0.2)
    started = time.monotonic()
    await clock.sleep_until(clock.now() - timedelta(hours=1))  # a moment past: at once
    assert time.monotonic() - started < 0.05
    # Waits, finished or cancelled, leave no timer behind.
    await asyncio.gather(*(clock.sleep_until(clock.now()) for _ in range(50)))
    assert clock.timers_open == 0
    waiting = asyncio.ensure_future(clock.sleep_until(clock.now() + timedelta(hours=1)))
    await asyncio.sleep(0.05)
    assert clock.timers_open == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert clock.timers_open == 0


def events(process: subprocess.Popen[str], until: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Read the daemon's JSON lines until one of event ``until``."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = process.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        seen.append(event)
        if event["event"] == until:
            return seen
    raise AssertionError(f"no {until!r} event; the daemon said {seen}")


def test_the_daemon_runs_a_due_schedule_hears_changes_and_vents_on_sigterm(
    user_dirs: dict[str, Path],
) -> None:
    profiles = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "ten.toml").write_text(
        'title = "Ten minutes"\ndescription = "d"\nwhy = "w"\n'
        '[[steps]]\nminutes = 10\nmode = "wave"\nintensity = 3\n'
    )
    now = datetime.now(UTC)
    if now.second > 50:  # keep "this minute" and the added schedule's minute apart
        time.sleep(61 - now.second)
        now = datetime.now(UTC)
    with serve("--serial") as served:
        # Written by hand, with no created time: due this minute, so within the grace.
        schedules = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "schedules.toml"
        schedules.write_text(
            f'[[schedule]]\nid = "now1"\nprofile = "ten"\n'
            f'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
            f'at = {now:%H:%M}:00\ntz = "UTC"\ndevice = "{served.url}"\n'
        )
        with controller("daemon", "--json") as daemon:
            said = events(daemon, until="started")
            assert said[0]["event"] == "watching"
            assert said[-1]["schedule"] == "now1"
            time.sleep(3)  # the pressure rises
            soon = now + timedelta(minutes=3)
            added = ctl("schedule", "add", "ten", "--days", "daily", "--at", f"{soon:%H:%M}",
                        "--tz", "UTC", "--device", served.url)  # fmt: skip
            assert added.returncode == 0, added.stderr
            heard = events(daemon, until="next")
            assert heard[-1]["due"].startswith(f"{soon:%Y-%m-%dT%H:%M}")
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=30)
            assert daemon.returncode == 0, err
            ending = [e for e in json_lines(out) if e["event"] in ("stopping", "ended")]
            assert [e["event"] for e in ending] == ["stopping", "ended"]
            assert "ended as the daemon stops" in ending[-1]["message"]
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
        assert status["status"]["state"] == "idle"
        assert max(status["status"]["pressures_mmhg"]) < 5
    journal = Journal(user_dirs["XDG_STATE_HOME"] / "massager-ctl" / "journal.sqlite3")
    [session] = journal.sessions()
    assert (session.source, session.ended, session.profile) == ("schedule", "stopped", "ten")
    assert session.pressure_s > 1


def test_the_systemd_unit_runs_the_daemon_as_the_readme_installs_it() -> None:
    root = Path(__file__).resolve().parents[2]
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(root / "contrib" / "massager-ctl.service")
    service = unit["Service"]
    assert service["ExecStart"] == "@MASSAGER_CTL@ daemon"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 15  # venting is confirmed within 15 s
    assert unit["Install"]["WantedBy"] == "default.target"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert 'sed "s|@MASSAGER_CTL@|$PWD/.venv/bin/massager-ctl|" contrib/massager-ctl.service' in (
        readme
    )
    assert "systemctl --user enable --now massager-ctl" in readme
