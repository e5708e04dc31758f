"""Pairing from the controller's side: the key file, the Massager API and the CLI.

The device is the simulator served on a real TCP port in this process (the
in-process tests) or by ``massager-sim serve`` in another process (the CLI
tests); only the user's key file is this test's own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_protocol import ErrorCode, SessionState
from massager_ctl.device import Massager
from massager_ctl.errors import CommandRefused, ConfigError, DeviceRefused, MassagerError
from massager_ctl.keystore import COUNTER_BLOCK, KeyStore
from massager_ctl.paths import keys_file
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import TcpEndpoint
from tests.folders import read_only, run_cli
from tests.massager_ctl.test_cli import ctl, json_lines
from tests.served import pair_in_process, serve


@contextlib.asynccontextmanager
async def a_device(**config: object) -> AsyncIterator[TcpEndpoint]:
    """A massager nobody has paired with yet, on a TCP port (made in the test: its clock)."""
    host = DeviceHost(DeviceConfig(seed=1, **config))  # type: ignore[arg-type]
    host.start()
    endpoint = TcpEndpoint(host)
    await endpoint.open("127.0.0.1", 0)
    try:
        yield endpoint
    finally:
        await endpoint.close()
        host.stop()


async def test_an_unpaired_controller_cannot_start_the_pump() -> None:
    async with a_device() as device:
        async with Massager.connect(device.url) as massager:
            assert not massager.authenticated
            assert massager.auth_problem is None  # no key: nothing went wrong, it is a stranger
            with pytest.raises(
                CommandRefused, match=r"not paired with it.*massager-ctl pair"
            ) as error:
                await massager.start("wave", 2, duration_s=60)
            assert error.value.code == ErrorCode.NOT_AUTHENTICATED
            await massager.stop()  # stopping is for anyone
        device.host.sync()
        assert device.host.firmware.plant.pump_seconds == 0
        assert device.host.firmware.state is SessionState.IDLE


async def test_pairing_needs_the_window_then_the_link_is_authenticated() -> None:
    async with a_device() as device:
        async with Massager.connect(device.url) as massager:
            with pytest.raises(CommandRefused, match="pairing window is not open"):
                await massager.pair()
            device.host.open_pairing()
            paired = await massager.pair("bedside")
            assert massager.authenticated
            await massager.start("wave", 2, duration_s=60)
            await massager.wait_for(lambda s: s.peak_mmhg > 20, timeout_s=30)
        assert paired.key_id == 1
        assert [p.name for p in device.host.memory.pairings] == ["bedside"]
        # A later connection finds the key in the file and is authenticated at once.
        async with Massager.connect(device.url) as again:
            assert again.authenticated
            assert again.paired_key is not None
            assert again.paired_key.key_id == 1


async def test_a_name_of_many_bytes_is_cut_to_32_bytes_not_32_characters() -> None:
    # 28 characters, 34 bytes: cut by characters it was still too long for the wire.
    name = "Schläfzimmer Ölmässäge für Ä"
    assert len(name) <= 32 < len(name.encode())
    async with a_device() as device:
        async with Massager.connect(device.url) as massager:
            device.host.open_pairing()
            await massager.pair(name)
            assert massager.authenticated
        [pairing] = device.host.memory.pairings
        assert len(pairing.name.encode()) <= 32
        assert name.startswith(pairing.name)


async def test_a_key_the_device_forgot_falls_back_to_an_unauthenticated_link() -> None:
    async with a_device() as device:
        device.host.open_pairing()
        async with Massager.connect(device.url) as massager:
            await massager.pair()
        device.host.memory.pairings.remove(1)  # the massager was reset
        async with Massager.connect(device.url) as massager:
            assert not massager.authenticated
            assert massager.auth_problem is not None
            assert "pair again" in massager.auth_problem
            status = await massager.refresh()  # looking still works
            assert status.state == "idle"


async def test_unpair_forgets_the_key_on_both_sides() -> None:
    async with a_device() as device:
        device.host.open_pairing()
        async with Massager.connect(device.url) as massager:
            await massager.pair()
            await massager.unpair()
            assert not massager.authenticated
            with pytest.raises(CommandRefused):
                await massager.start("wave", 1, duration_s=30)
        assert len(device.host.memory.pairings) == 0
        assert KeyStore.default().names() == []


async def test_the_key_file_is_owner_only_and_no_key_reaches_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with a_device() as device:
        caplog.set_level(logging.DEBUG)
        device.host.open_pairing()
        async with Massager.connect(device.url) as massager:
            paired = await massager.pair()
            await massager.start("pulse", 1, duration_s=30)
        path = keys_file()
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o077 == 0
        secret = paired.key.get_secret_value()
        assert secret not in repr(paired)
        assert secret not in str(paired)
        assert secret not in caplog.text
        assert json.loads(path.read_text())["keys"][paired.device]["key"] == secret


def test_a_loosened_key_file_is_made_owner_only_again(caplog: pytest.LogCaptureFixture) -> None:
    store = KeyStore.default()
    path = keys_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"keys": {}}')
    path.chmod(0o644)
    assert store.names() == []
    assert path.stat().st_mode & 0o777 == 0o600
    assert "made it owner-only" in caplog.text


def test_a_broken_key_file_names_the_file_and_the_field() -> None:
    path = keys_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"keys": {"sim://": {"device": "sim://", "key_id": 0}}}')
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"keys\.json: keys\.sim://\.key_id is not valid"):
        KeyStore.default().names()


def test_counters_never_repeat_across_connections_and_processes() -> None:
    from datetime import UTC, datetime

    from massager_ctl.keystore import PairedKey

    first = KeyStore.default()
    first.put(
        PairedKey(device="socket://h:1", key_id=1, key="00" * 32, paired_at=datetime.now(UTC))  # type: ignore[arg-type]
    )
    one = first.signer("socket://h:1")
    assert one is not None
    used = [one.next_counter() for _ in range(COUNTER_BLOCK + 3)]  # crosses into a second block
    # Another connection, or another process reading the same file, starts above all of them.
    other = KeyStore.default().signer("socket://h:1")
    assert other is not None
    later = other.next_counter()
    assert later > max(used)
    assert len(set(used)) == len(used)
    assert used == sorted(used)
    KeyStore.default().remove("socket://h:1")
    for _ in range(COUNTER_BLOCK - 1):  # the block already reserved is used up first
        other.next_counter()
    with pytest.raises(MassagerError, match="no longer paired"):
        other.next_counter()


async def test_the_built_in_simulator_pairs_itself_and_writes_no_key_file() -> None:
    async with Massager.connect("sim://self-paired") as massager:
        assert massager.authenticated
        await massager.start("wave", 1, duration_s=30)
    assert not keys_file().exists()


@pytest.mark.looptime(False)
def test_the_cli_pairs_with_a_served_simulator_only_while_its_window_is_open() -> None:
    with serve("--tcp", "127.0.0.1:0", paired=False) as served:
        refused = ctl("start", "--mode", "wave", "--intensity", "2", "--duration", "30s",
                      "--device", served.url)  # fmt: skip
        assert refused.returncode != 0
        said = " ".join((refused.stdout + refused.stderr).split())  # as wrapped to the terminal
        assert "not paired with it" in said
        assert "massager-ctl pair" in said
        closed = ctl("pair", served.url)
        assert closed.returncode != 0
        assert "pairing window is not open" in closed.stderr
        status = ctl("status", "--device", served.url)
        assert "not authenticated" in status.stdout
        served.process.send_signal(signal.SIGUSR1)  # the pairing button, held
        time.sleep(0.5)
        paired = ctl("pair", served.url, "--json")
        assert paired.returncode == 0, paired.stderr
        [report] = json_lines(paired.stdout)
        assert report["kind"] == "paired"
        assert report["authenticated"] is True
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
        assert status["authenticated"] is True
        assert (
            "authenticated: this controller is paired"
            in ctl("status", "--device", served.url).stdout
        )
        unpaired = ctl("unpair", served.url)
        assert unpaired.returncode == 0, unpaired.stderr
        assert "not authenticated" in ctl("status", "--device", served.url).stdout
    assert served.stop() == 0


@pytest.mark.looptime(False)
def test_reset_is_refused_while_the_cause_remains_and_says_so() -> None:
    with serve("--tcp", "127.0.0.1:0", "--fault", "sensor-stuck@1") as served:
        ended = ctl("start", "--mode", "wave", "--intensity", "1", "--duration", "30s",
                    "--device", served.url)  # fmt: skip
        said = " ".join((ended.stdout + ended.stderr).split())
        assert "sensor" in said
        assert "massager-ctl reset" in said
        refused = ctl("reset", "--device", served.url)
        assert refused.returncode != 0
        assert "the fault's cause is still present" in " ".join(refused.stderr.split())
        status = json_lines(ctl("status", "--device", served.url, "--json").stdout)[-1]
        assert status["status"]["state"] == "fault"


async def test_a_massager_that_does_not_sign_is_paired_only_if_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with a_device(signs=False) as device:  # an older firmware
        device.host.open_pairing()
        async with Massager.connect(device.url) as massager:
            assert not massager.info.signs
            with pytest.raises(DeviceRefused, match="does not sign what it sends"):
                await massager.pair("test")
            assert massager.paired_key is None  # nothing kept, nothing sent
            assert device.host.firmware.memory.pairings.pairings == {}
            paired = await massager.pair("test", accept_unsigned=True)
            assert not paired.device_signs
            assert massager.authenticated
        with caplog.at_level(logging.WARNING):
            async with Massager.connect(device.url) as massager:
                assert massager.authenticated
                await massager.start("wave", 1, duration_s=60)  # it works, and says so
        assert "does not sign what it sends" in caplog.text


async def test_a_key_paired_as_signing_takes_no_unsigned_answer() -> None:
    # The massager's firmware replaced by an older one (or a fake in its place): the
    # key says it signs, so its unsigned answers are not believed, and the link fails.
    async with a_device() as device:
        await pair_in_process(device.host, device.url)
        device.host.firmware.conn.device_signs = False
        with pytest.raises(MassagerError, match="not signed with this controller's key"):
            async with Massager.connect(device.url, timeout_s=3):
                pass


def test_pair_names_the_risk_of_a_massager_that_does_not_sign_and_takes_it_if_told() -> None:
    older = ("--serial", "--set", "signs=false", "--pairing-window", "120")
    with serve(*older, paired=False) as served:
        refused = ctl("pair", served.url)
        assert refused.returncode == 3, refused.stderr
        assert "does not sign what it sends" in refused.stderr
        assert "--accept-unsigned-device" in refused.stderr
        taken = ctl("pair", served.url, "--accept-unsigned-device", "--json")
        assert taken.returncode == 0, taken.stderr
        assert json_lines(taken.stdout)[-1]["authenticated"] is True


@pytest.mark.looptime(False)
def test_pair_names_a_config_folder_that_cannot_be_written(
    user_dirs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config_home = user_dirs["XDG_CONFIG_HOME"]
    keys = config_home / "massager-ctl" / "keys.json"
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    with serve("--tcp", "127.0.0.1:0", paired=False) as served:
        served.process.send_signal(signal.SIGUSR1)  # the pairing button, held
        time.sleep(0.5)
        with read_only(config_home, monkeypatch):
            code, out, err = run_cli(capsys, "pair", served.url)
        assert (code, out) == (2, "")
        assert err == (f"error: {keys}: cannot write the keys: the folder {config_home} is not "
                       "writable by you (Permission denied); nothing was paired\n")  # fmt: skip
        for home in (afile, afile / "cfg"):
            env = dict(os.environ, XDG_CONFIG_HOME=str(home))
            refused = ctl("pair", served.url, env=env)
            assert refused.returncode == 2
            where = home / "massager-ctl" / "keys.json"
            assert refused.stderr == (f"error: {where}: cannot write the keys: {afile} is a "
                                      "file, not a folder; nothing was paired\n")  # fmt: skip
        # Nothing was paired on either side: the window is still open, for a pairing that
        # keeps its key.
        assert ctl("pair", served.url).returncode == 0
        assert keys.exists()
