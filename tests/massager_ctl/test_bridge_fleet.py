"""The bridge among others: TLS and config, several bridges on one broker, a broker
restart mid-program, and the daemon hosting the bridge. Real Mosquitto, real time.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from massager_ctl.cli import make_bridge
from massager_ctl.config import Settings, load_settings
from massager_ctl.errors import ConfigError
from massager_ctl.journal import Journal
from massager_ctl.mqtt import parse_broker_url
from massager_ctl.paths import config_file, journal_file, schedules_file, user_profiles_dir
from massager_ctl.schedules.daemon import Daemon, DaemonEvent
from massager_ctl.schedules.schedule import ScheduleBook
from simulator.clock import VirtualWallClock
from tests.broker import USERS, Broker, run_broker
from tests.massager_ctl.test_bridge import (
    a_bridge,
    fresh_name,
    listening,
    mosquitto_pub,
    mosquitto_sub,
    running,
)
from tests.massager_ctl.test_daemon import DAILY, schedules, short_profile

pytestmark = pytest.mark.looptime(False)


def write_config(text: str) -> None:
    config_file().parent.mkdir(parents=True, exist_ok=True)
    config_file().write_text(text, encoding="utf-8")


async def test_tls_with_a_ca_and_a_client_certificate_from_the_config(broker: Broker) -> None:
    name = fresh_name()
    certificates = broker.certificates
    write_config(f"""
[mqtt]
broker = "mqtts://bridge@127.0.0.1:{broker.tls_port}"
password = "{USERS["bridge"]}"
ca_file = "{certificates.ca}"
cert_file = "{certificates.client_cert}"
key_file = "{certificates.client_key}"
discovery_prefix = ""
[mqtt.devices]
{name} = "sim://{name}"
""")
    said: list[str] = []
    bridge = make_bridge(load_settings(), None, as_json=True)
    bridge.log = said.append
    async with listening(broker, f"massager/{name}/#") as seen, running(bridge):
        await seen.wait(f"massager/{name}/availability", lambda p: p["state"] == "online")
    assert f"connected to mqtts://bridge@127.0.0.1:{broker.tls_port}" in said
    # The secret is in no line said, and not in the address's repr either.
    assert not [line for line in said if USERS["bridge"] in line]
    assert USERS["bridge"] not in repr(bridge.broker)


async def test_tls_without_the_client_certificate_is_refused_and_retried(broker: Broker) -> None:
    name = fresh_name()
    address = parse_broker_url(broker.url("bridge", tls=True)).model_copy(
        update={"ca_file": broker.certificates.ca}
    )
    said: list[str] = []
    bridge = a_bridge(address, {name: f"sim://{name}"}, log=said.append)
    # The broker drops the link after the handshake; the bridge hears it as a connect
    # that timed out (10 s), and backs off rather than crash or spin.
    async with running(bridge) as task:
        async with asyncio.timeout(30):
            while not [line for line in said if "again in" in line]:
                await asyncio.sleep(0.05)
                assert not task.done(), task
    assert not [line for line in said if line.startswith("connected")]
    assert await mosquitto_sub(broker, f"massager/{name}/availability", 1, within=1) == []


def test_tls_files_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    write_config(f'[mqtt]\nbroker = "mqtts://h"\nca_file = "{missing}"\n')
    with pytest.raises(ConfigError, match=f"the MQTT ca_file {missing}: No such file"):
        make_bridge(load_settings(), None, as_json=True)
    not_a_cert = tmp_path / "cert.pem"
    not_a_cert.write_text("hello")
    write_config(f'[mqtt]\nbroker = "mqtts://h"\ncert_file = "{not_a_cert}"\n')
    with pytest.raises(ConfigError, match=f"the MQTT client certificate {not_a_cert}"):
        make_bridge(load_settings(), None, as_json=True)
    write_config(f'[mqtt]\nbroker = "mqtt://h"\nca_file = "{missing}"\n')
    with pytest.raises(ConfigError, match="ca_file, cert_file and key_file need an mqtts://"):
        load_settings()
    write_config('[mqtt]\nbase = "massager"\n')
    with pytest.raises(ConfigError, match=r"no MQTT broker: give --broker, or broker in \[mqtt\]"):
        make_bridge(load_settings(), None, as_json=True)


async def test_several_bridges_on_one_broker_each_keep_to_their_own_devices(
    broker: Broker,
) -> None:
    short_profile("short", 0.5)
    ward_a, ward_b = f"massager/{fresh_name()}", f"massager/{fresh_name()}"
    # The same device name in both wards: the base keeps them apart.
    sim_a, sim_b = f"sim://{ward_a.split('/')[1]}", f"sim://{ward_b.split('/')[1]}"
    first = a_bridge(broker.url("bridge"), {"bed1": sim_a}, base=ward_a)
    second = a_bridge(broker.url("bridge"), {"bed1": sim_b}, base=ward_b)
    async with (
        listening(broker, f"{ward_a}/#", f"{ward_b}/#", "homeassistant/+/+/+/config") as seen,
        running(first),
        running(second),
    ):
        for ward in (ward_a, ward_b):
            await seen.wait(f"{ward}/bed1/availability", lambda p: p["state"] == "online")
        await mosquitto_pub(broker, f"{ward_a}/bed1/set", '{"action": "start", "profile": "short"}')
        await seen.wait(f"{ward_a}/bed1", lambda p: p["state"] == "running")
        mark = len(seen.seen)
        await mosquitto_pub(broker, f"{ward_b}/bed1/get", "")
        b_state = await seen.wait(f"{ward_b}/bed1", after=mark)
        assert b_state["state"] == "idle"
        # Each bridge answers its own requests only.
        await mosquitto_pub(broker, f"{ward_b}/bridge/request/devices", '{"transaction": 1}')
        [device] = (await seen.wait(f"{ward_b}/bridge/response/devices"))["data"]
        assert device["address"] == sim_b
        # Home Assistant sees two devices, not one.
        ids = {p["unique_id"] for t, p in seen.seen if t.endswith("/state/config")}
        slug = lambda ward: ward.replace("/", "_")  # noqa: E731
        assert {f"{slug(ward_a)}_bed1_state", f"{slug(ward_b)}_bed1_state"} <= ids
        # One bridge leaving says so, for itself only, and its program ends vented.
        await mosquitto_pub(broker, f"{ward_a}/bed1/set", '{"action": "stop"}')
        await seen.wait(f"{ward_a}/bed1", lambda p: p["state"] == "idle")
    after = {t: json.loads(line.split(" ", 1)[1]) for t, line in [
        (line.split(" ", 1)[0], line) for line in await mosquitto_sub(
            broker, f"{ward_a}/bridge/state", 1) + await mosquitto_sub(
            broker, f"{ward_b}/bridge/state", 1)]}  # fmt: skip
    assert after == {f"{ward_a}/bridge/state": {"state": "offline"},
                     f"{ward_b}/bridge/state": {"state": "offline"}}  # fmt: skip


async def test_a_broker_restart_mid_program_neither_stops_nor_restarts_it(
    tmp_path: Path,
) -> None:
    short_profile("short", 1)
    name = fresh_name()
    with run_broker(tmp_path / "own-broker") as broker:
        said: list[str] = []
        bridge = a_bridge(broker.url("bridge"), {name: f"sim://{name}"}, log=said.append)
        async with running(bridge):
            async with listening(broker, f"massager/{name}/#", f"massager/{name}") as seen:
                await seen.wait(f"massager/{name}/availability", lambda p: p["state"] == "online")
                await mosquitto_pub(broker, f"massager/{name}/set",
                                    '{"action": "start", "profile": "short"}')  # fmt: skip
                before = await seen.wait(f"massager/{name}", lambda p: p["state"] == "running")
            broker.restart()  # retained messages and sessions gone with it
            async with listening(broker, f"massager/{name}/#", f"massager/{name}") as seen:
                # The bridge comes back and says all again; the program ran on meanwhile.
                await seen.wait(f"massager/{name}/availability", lambda p: p["state"] == "online",
                                within=15)  # fmt: skip
                after = await seen.wait(f"massager/{name}", lambda p: p["state"] == "running")
                assert after["program"] == before["program"] == "short"
                assert after["ends_at"] == before["ends_at"], "not started again"
                assert [s.ended for s in Journal(journal_file()).sessions()] == ["unfinished"]
                await mosquitto_pub(broker, f"massager/{name}/set", '{"action": "stop"}')
                await seen.wait(f"massager/{name}", lambda p: p["state"] == "idle")
        assert len([line for line in said if line.startswith("connected")]) == 2
    [session] = Journal(journal_file()).sessions()
    assert (session.source, session.ended) == ("mqtt", "stopped")


async def test_the_daemon_hosts_the_bridge_a_scheduled_program_shows_and_stops_on_the_bus(
    broker: Broker,
) -> None:
    name = fresh_name()
    device = f"sim://{name}"
    short_profile("check-1", 1)
    schedules({"id": "evening", "days": DAILY, "at": "21:45", "tz": "Europe/Berlin",
               "device": device})  # fmt: skip
    berlin = ZoneInfo("Europe/Berlin")
    clock = VirtualWallClock(datetime(2026, 11, 23, 21, 44, 58, tzinfo=berlin))
    bridge = a_bridge(broker.url("bridge"), {name: device})
    events: list[DaemonEvent] = []
    daemon = Daemon(book=ScheduleBook(schedules_file()), journal=Journal(journal_file()),
                    clock=clock, settings=Settings(), profiles_dir=user_profiles_dir(),
                    on_event=events.append, house=bridge.house)  # fmt: skip
    state, commands = f"massager/{name}", f"massager/{name}/set"
    async with listening(broker, f"{state}/#", state) as seen, running(bridge):
        await seen.wait(f"{state}/availability", lambda p: p["state"] == "online")
        scheduling = asyncio.create_task(daemon.run())
        try:
            shown = await seen.wait(state, lambda p: p["state"] == "running")
            assert shown["program"] == "check-1"
            # The bridge's own link was lent: mode changes reach the program.
            await mosquitto_pub(
                broker, commands, '{"action": "intensity", "intensity": 2, "id": "i"}'
            )
            answer = await seen.wait(f"{state}/response", lambda p: p.get("id") == "i")
            assert answer["ok"] is True, answer
            await mosquitto_pub(broker, commands, '{"action": "stop", "id": "s"}')
            stopped = await seen.wait(f"{state}/response", lambda p: p.get("id") == "s")
            assert stopped["ok"] is True, stopped
            await seen.wait(state, lambda p: p["state"] == "idle" and p["program"] is None)
            # The bridge watches the massager again once the stop is answered (an idle
            # state can come first, while the program still confirms the vent).
            await mosquitto_pub(broker, commands, '{"action": "intensity", "intensity": 3}')
            await seen.wait(state, lambda p: p["intensity"] == 3)
        finally:
            scheduling.cancel()
            await asyncio.gather(scheduling, return_exceptions=True)
    ended = [e.message for e in events if e.event == "ended"]
    assert ended, events
    # The stop went out on the program's own link: the program saw it and ended so.
    assert ended[0] == "stopped: a stop command ended the program", events
    [session] = Journal(journal_file()).sessions()
    assert (session.source, session.ended, session.device) == ("schedule", "stopped", device)
    assert clock.now() - datetime(2026, 11, 23, 21, 45, tzinfo=berlin) < timedelta(minutes=1)
