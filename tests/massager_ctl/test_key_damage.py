"""A damaged key file: stop and vent still go out, everything else says what is wrong.

The device is the simulator on a real TCP port, paired as a person pairs: in
this process, with the command line run in a subprocess as a person runs it
(or a program run in virtual time), or served by ``massager-sim serve``. Each
test damages the user's ``keys.json`` one way: cut-off JSON, bytes that are not
text, a directory, a FIFO (which would block a read for ever), a key that is
not hex, a key of the wrong length, spent counters; and under a running
program also a key deleted or replaced by another program. (Unreadable
permissions take the path of a directory, and cannot be shown to a test run as
root.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator

import pytest

from firmware_protocol import Button, EndReason, SessionState
from firmware_protocol.auth import MAX_COUNTER
from massager_ctl.errors import ConfigError
from massager_ctl.keystore import KeyStore, PairedKey
from massager_ctl.paths import config_file, journal_file, keys_file
from massager_ctl.programs import supervisor as supervisor_module
from massager_ctl.programs.profiles import Profile
from massager_ctl.programs.runner import Progress
from massager_ctl.programs.supervisor import ProgramSupervisor
from simulator.serve import TcpEndpoint
from tests.massager_ctl.test_cli import (
    CLI,
    ctl,
    json_lines,
    start_in_background,
    wait_for_pressure,
)
from tests.massager_ctl.test_pairing import a_device
from tests.served import pair_in_process, serve

AT_CONNECT = ["garbage", "not text", "directory", "fifo", "bad key", "short key", "spent"]
"""Ways the file can be damaged before a command runs."""
WHILE_RUNNING = ["garbage", "not text", "directory", "bad key", "spent", "unpaired", "replaced"]
"""Ways the file can be damaged under a running program (a FIFO is never read: not a file)."""


def damage(kind: str, device: str) -> None:
    """Damage this test's key file, which holds a good key for ``device``, one way."""
    path = keys_file()
    data = json.loads(path.read_text())
    entry = data["keys"][device]
    if kind == "garbage":
        path.write_text('{"keys": {"socket://')  # cut off mid-write
    elif kind == "not text":
        path.write_bytes(b"\x00\xff\xfe garbage \x80")
    elif kind == "directory":
        path.unlink()
        path.mkdir()
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path, 0o600)
    else:
        if kind == "bad key":
            entry["key"] = "zz" * 32
        elif kind == "short key":
            entry["key"] = "00"  # hex, but one byte: it would sign, and sign wrongly
        elif kind == "spent":
            entry["next_counter"] = MAX_COUNTER - 1
        elif kind == "unpaired":
            del data["keys"][device]
        elif kind == "replaced":
            entry["key"] = "11" * 32
        else:
            raise AssertionError(kind)
        path.write_text(json.dumps(data))


async def massager_ctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``massager-ctl ARGS`` in a subprocess, while this test's loop serves the device."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):  # a read of a FIFO would block for ever
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"massager-ctl {' '.join(args)} hung") from None
    assert process.returncode is not None
    result = subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())
    assert "Traceback" not in result.stderr, result.stderr
    return result


@contextlib.asynccontextmanager
async def a_paired_device() -> AsyncIterator[TcpEndpoint]:
    """A massager that requires pairing, paired with this test's controller."""
    async with a_device() as device:
        await pair_in_process(device.host, device.url)
        yield device


def said_about_the_key_file(stderr: str, prefix: str) -> str:
    """The one line that names the key file, which must start with ``prefix``."""
    [line] = [line for line in stderr.splitlines() if str(keys_file()) in line]
    assert line.startswith(prefix), stderr
    return line


def test_a_key_file_that_cannot_be_read_or_written_is_named_in_a_config_error() -> None:
    store = KeyStore.default()
    lock = keys_file().with_name("keys.json.lock")
    lock.mkdir(parents=True)  # the lock taken before every change
    key = PairedKey.model_validate(
        {"device": "socket://h:1", "key_id": 1, "key": "00" * 32, "paired_at": "2026-01-01T00:00Z"}
    )
    in_the_way = r"keys\.json: cannot write the keys: .*keys\.json\.lock is a folder, not a file$"
    with pytest.raises(ConfigError, match=in_the_way):
        store.put(key)
    lock.rmdir()
    keys_file().write_text("[" * 100_000)  # JSON nested too deep to parse
    with pytest.raises(ConfigError, match=r"keys\.json: the file is not valid"):
        store.names()


@pytest.mark.looptime(False)
@pytest.mark.parametrize("kind", AT_CONNECT)
async def test_stop_and_vent_reach_the_massager_whatever_the_key_file_holds(kind: str) -> None:
    async with a_paired_device() as device:
        damage(kind, device.url)
        firmware = device.host.firmware
        for action, reason in (("stop", EndReason.STOPPED), ("vent", EndReason.VENTED)):
            device.host.press(Button.POWER)  # a session started on the remote
            assert firmware.state is SessionState.RUNNING
            result = await massager_ctl(action, "--device", device.url)
            assert result.returncode == 0, result.stderr
            assert f"{action}: done" in result.stdout
            said_about_the_key_file(result.stderr, "warning: ")
            device.host.sync()
            assert firmware.state is SessionState.IDLE
            assert firmware.last_end is reason
        as_json = await massager_ctl("vent", "--device", device.url, "--json")
        assert as_json.returncode == 0
        [report] = json_lines(as_json.stdout)
        [warning] = report["warnings"]
        assert str(keys_file()) in warning


@pytest.mark.looptime(False)
async def test_stop_and_vent_go_out_whatever_the_config_file_and_journal_hold() -> None:
    async with a_paired_device() as device:
        damage("garbage", device.url)
        journal_file().parent.mkdir(parents=True, exist_ok=True)
        journal_file().write_bytes(b"not a database")
        config = config_file()
        # A mistake beside the device: the device it names is still the one to stop.
        config.write_text(f'device = "{device.url}"\nweekly_goal = "often"\n')
        device.host.press(Button.POWER)
        assert device.host.firmware.state is SessionState.RUNNING
        result = await massager_ctl("vent")
        assert result.returncode == 0, result.stderr
        assert "vent: done" in result.stdout
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 2, result.stderr
        assert str(config) in warnings[0]
        assert f"the device it names ({device.url}) was used" in warnings[0]
        assert str(keys_file()) in warnings[1]
        device.host.sync()
        assert device.host.firmware.last_end is EndReason.VENTED
        # A config file that names no device it can read: nothing to guess, nothing sent.
        config.write_text("device = [oops\n")
        lost = await massager_ctl("stop")
        assert lost.returncode == 2
        assert "nothing was sent: give --device URL" in lost.stderr
        assert str(config) in lost.stderr
        given = await massager_ctl("stop", "--device", device.url)
        assert given.returncode == 0, given.stderr


@pytest.mark.looptime(False)
@pytest.mark.parametrize("kind", AT_CONNECT)
async def test_every_other_command_says_what_is_wrong_with_the_key_file(kind: str) -> None:
    async with a_paired_device() as device:
        damage(kind, device.url)
        url = device.url
        host = device.host

        looked = await massager_ctl("status", "--device", url, "--json")
        assert looked.returncode == 0, looked.stderr  # anyone may look
        report = json_lines(looked.stdout)[-1]
        assert report["authenticated"] is False
        assert str(keys_file()) in report["auth_problem"]
        assert "not authenticated" in (await massager_ctl("status", "--device", url)).stdout

        # A key that exists but cannot be read: a start is refused here, not sent unsigned.
        refused = await massager_ctl("start", "--mode", "wave", "--intensity", "1",
                                     "--duration", "1m", "--device", url)  # fmt: skip
        assert refused.returncode == 2
        line = said_about_the_key_file(refused.stderr, "error: ")
        assert line.endswith("nothing was started")
        host.sync()
        assert host.firmware.plant.pump_seconds == 0
        assert not journal_file().exists()  # refused before the journal, so nothing to count

        # With no fault latched, reset has nothing to send, and needs no key to say so.
        reset = await massager_ctl("reset", "--device", url)
        assert reset.returncode == 0, reset.stderr
        assert "there was no fault to clear" in reset.stdout
        result = await massager_ctl("unpair", url)
        assert result.returncode == 2, result.stderr
        said_about_the_key_file(result.stderr, "error: ")
        assert len(host.memory.pairings) == 1  # still paired: nothing was unpaired

        host.open_pairing()
        paired = await massager_ctl("pair", url, "--json")
        if kind in ("garbage", "not text", "directory", "fifo"):
            # The file could not keep a new key: the massager was not asked for a slot.
            assert paired.returncode == 2
            said_about_the_key_file("error: " + json_lines(paired.stdout)[-1]["message"], "error: ")
            assert len(host.memory.pairings) == 1
        else:
            # Pairing again mends a key that cannot be used; the old one keeps its slot
            # on the massager (only it could have signed the UNPAIR) until a reset.
            assert paired.returncode == 0, paired.stderr
            assert json_lines(paired.stdout)[-1]["authenticated"] is True
            assert KeyStore.default().check(url) is not None
            assert len(host.memory.pairings) == 2


def ad_hoc(minutes: float) -> Profile:
    return Profile.model_validate(
        {
            "name": "adhoc",
            "title": "one step",
            "description": "One wave step.",
            "why": "A test.",
            "steps": [{"mode": "wave", "intensity": 2, "minutes": minutes}],
        }
    )


@pytest.mark.parametrize("kind", WHILE_RUNNING)
async def test_a_key_file_damaged_mid_program_ends_it_vented_and_says_why(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A program reserves its counters for its whole length at once; one that outruns
    # them (reserved for a tenth of its frames here) needs the file again mid-way.
    monkeypatch.setattr(supervisor_module, "SIGNED_FRAMES_PER_S", 0.5)
    async with a_paired_device() as device:
        firmware = device.host.firmware
        pressing = asyncio.Event()

        def progress(report: Progress) -> None:
            if report.status.peak_mmhg > 30:
                pressing.set()

        supervisor = ProgramSupervisor(device.url, ad_hoc(20), on_progress=progress)
        program = asyncio.create_task(supervisor.run())
        await asyncio.wait_for(pressing.wait(), 60)
        damage(kind, device.url)
        started = asyncio.get_running_loop().time()
        # The keepalives use up the block of counters reserved before, then need the file.
        with pytest.raises(ConfigError) as error:
            await asyncio.wait_for(program, 600)
        took = asyncio.get_running_loop().time() - started
        message = str(error.value)
        assert message.startswith(f"{keys_file()}: "), message
        assert "sent the massager a VENT" in message
        device.host.sync()
        # Ended by our VENT, not by the device's watchdog after keepalives stopped.
        assert firmware.last_end is EndReason.VENTED
        assert firmware.state is SessionState.IDLE
        await asyncio.sleep(15)
        assert max(firmware.plant.pressures) < 5
        assert supervisor.attempts == 0  # not taken for a lost link, so never resumed
        assert took < 10 * 60  # the block reserved: 1,624 frames, 8 a second


@pytest.mark.looptime(False)
def test_a_program_runs_on_when_its_key_file_breaks_and_the_next_command_says_so() -> None:
    # The counters for the whole program were reserved as it began: the key is in
    # memory, and the file is not needed again until the next connection.
    with serve("--tcp", "127.0.0.1:0", "--speed", "20") as served:
        process = start_in_background("--mode", "wave", "--intensity", "2", "--duration", "10m",
                                      "--speed", "20", "--device", served.url)  # fmt: skip
        try:
            wait_for_pressure(process, 30)
            damage("garbage", served.url)
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:  # a failure above must not leave it running
                process.kill()
                process.communicate()
        assert "Traceback" not in err, err
        assert process.returncode == 0, err
        assert json_lines(out)[-1]["outcome"] == "completed"
        looked = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
        assert str(keys_file()) in looked["auth_problem"]


@pytest.mark.looptime(False)
async def test_a_key_file_locked_by_a_hung_program_neither_stops_nor_delays_a_vent() -> None:
    import filelock

    async with a_paired_device() as device:
        lock = filelock.FileLock(keys_file().with_name("keys.json.lock"))
        with lock:  # held, as by a program stopped with SIGSTOP mid-reservation
            device.host.press(Button.POWER)
            loop = asyncio.get_running_loop()
            began = loop.time()
            result = await massager_ctl("vent", "--device", device.url)
            took = loop.time() - began
        assert result.returncode == 0, result.stderr
        assert "vent: done" in result.stdout
        device.host.sync()
        assert device.host.firmware.last_end is EndReason.VENTED
        # Reading the key to check it takes no lock: only a change to the file does.
        assert took < 5.0, f"the vent waited {took:.1f} s for a lock"


@pytest.mark.looptime(False)
@pytest.mark.parametrize("damage_kind", ["nested too deep", "not utf-8 elsewhere", "fifo"])
async def test_stop_and_vent_find_the_device_in_a_config_file_broken_any_way(
    damage_kind: str,
) -> None:
    # Found by an attack: 2,000 nested brackets beside a good device line gave a
    # RecursionError and no vent; a byte that is not UTF-8 on another line, "names no
    # device"; a FIFO in its place, a stop that hung for ever.
    async with a_paired_device() as device:
        config = config_file()
        config.parent.mkdir(parents=True, exist_ok=True)
        if damage_kind == "nested too deep":
            config.write_text(f'device = "{device.url}"\nx = {"[" * 2000}{"]" * 2000}\n')
        elif damage_kind == "not utf-8 elsewhere":
            config.write_bytes(f'device = "{device.url}"\n# caf\xe9\n'.encode("latin-1"))
        else:
            os.mkfifo(config, 0o600)
        device.host.press(Button.POWER)
        result = await massager_ctl("vent")
        if damage_kind == "fifo":  # it names nothing that can be read: says so at once
            assert result.returncode == 2, result.stderr
            assert "nothing was sent: give --device URL" in result.stderr
            given = await massager_ctl("vent", "--device", device.url)
            assert given.returncode == 0, given.stderr
        else:
            assert result.returncode == 0, result.stderr
            assert "vent: done" in result.stdout
            assert f"the device it names ({device.url}) was used" in result.stderr
        device.host.sync()
        assert device.host.firmware.last_end is EndReason.VENTED
