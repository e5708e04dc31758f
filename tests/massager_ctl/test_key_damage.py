"""A damaged key file: it says what is wrong, and a program it breaks ends vented.

The device is the simulator on a real TCP port in this process, paired as a
person pairs; the program runs in virtual time. Under a running program the
user's ``keys.json`` is damaged one way: cut-off JSON, bytes that are not text,
a directory, a key that is not hex, spent counters, a key deleted or replaced
by another program.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator

import pytest

from firmware_protocol import EndReason, SessionState
from firmware_protocol.auth import MAX_COUNTER
from massager_ctl.errors import ConfigError
from massager_ctl.keystore import KeyStore, PairedKey, keys_file
from massager_ctl.profiles import Profile
from massager_ctl.programs import Progress
from massager_ctl.supervisor import ProgramSupervisor
from simulator.serve import TcpEndpoint
from tests.massager_ctl.test_pairing import a_device
from tests.served import pair_in_process

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


@contextlib.asynccontextmanager
async def a_paired_device() -> AsyncIterator[TcpEndpoint]:
    """A massager that requires pairing, paired with this test's controller."""
    async with a_device() as device:
        await pair_in_process(device.host, device.url)
        yield device


def test_a_key_file_that_cannot_be_read_or_written_is_named_in_a_config_error() -> None:
    store = KeyStore.default()
    lock = keys_file().with_name("keys.json.lock")
    lock.mkdir(parents=True)  # the lock taken before every change
    key = PairedKey.model_validate(
        {"device": "socket://h:1", "key_id": 1, "key": "00" * 32, "paired_at": "2026-01-01T00:00Z"}
    )
    with pytest.raises(ConfigError, match=r"keys\.json\.lock: cannot write the keys"):
        store.put(key)
    lock.rmdir()
    keys_file().write_text("[" * 100_000)  # JSON nested too deep to parse
    with pytest.raises(ConfigError, match=r"keys\.json: the file is not valid"):
        store.names()


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
async def test_a_key_file_damaged_mid_program_ends_it_vented_and_says_why(kind: str) -> None:
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
        assert took < 2 * 60  # a block is about a minute of keepalives
