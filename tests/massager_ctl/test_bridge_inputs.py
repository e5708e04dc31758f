"""What the bus sends means what it says, and every message is answered.

Against the real Mosquitto of `tests.broker`, with the simulator in the test's
process, as in `test_bridge`: a number that is not a number, a profile file that
cannot be read, a response topic no one can publish to, a transaction too long
to echo, and device names the bridge's own topics would collide with.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from massager_ctl.journal import Journal
from massager_ctl.paths import journal_file, user_profiles_dir
from tests.broker import USERS, Broker
from tests.massager_ctl.test_bridge import bridged, fresh_name, mosquitto_pub
from tests.massager_ctl.test_cli import ctl

pytestmark = pytest.mark.looptime(False)

NOT_AN_INTEGER = "Input should be a valid integer"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ('{"action": "intensity", "intensity": true}', f"intensity: {NOT_AN_INTEGER}"),
        ('{"action": "intensity", "intensity": "3"}', f"intensity: {NOT_AN_INTEGER}"),
        ('{"action": "intensity", "intensity": 3.0}', f"intensity: {NOT_AN_INTEGER}"),
        ('{"action": "stop", "at": 1700000000}', "at: Input should be a valid datetime"),
        ('{"action": "stop", "id": 7}', "id: Input should be a valid string"),
    ],
    ids=["true", "string", "float", "at-number", "id-number"],
)  # fmt: skip
async def test_a_value_of_another_type_is_refused_not_converted(
    broker: Broker, payload: str, error: str
) -> None:
    name = fresh_name()
    async with bridged(broker, name) as seen:
        idle = await seen.wait(f"massager/{name}", lambda p: p["state"] == "idle")
        await mosquitto_pub(broker, f"massager/{name}/set", payload)
        answer = await seen.wait(f"massager/{name}/response")
        assert answer == {"ok": False, "error": error}
        # Nothing changed, and the bridge goes on: the state asked for again is as it was.
        after = len(seen.seen)
        await mosquitto_pub(broker, f"massager/{name}/get", "")
        state = await seen.wait(f"massager/{name}", after=after)
        assert (state["state"], state["intensity"]) == ("idle", idle["intensity"])


async def test_a_profile_that_cannot_be_read_is_answered_on_every_request(
    broker: Broker,
) -> None:
    folder = user_profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latin.toml").write_bytes('title = "Caf\xe9"\n'.encode("latin-1"))
    (folder / "deep.toml").write_text("title = " + "[" * 5000 + "]" * 5000 + "\n")
    latin = f"{folder / 'latin.toml'}: not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8"
    deep = f"{folder / 'deep.toml'}: not valid TOML: nested too deeply"
    name = fresh_name()
    response = "massager/bridge/response"
    async with bridged(broker, name, topics=(f"{response}/#",)) as seen:
        await mosquitto_pub(broker, "massager/bridge/request/profiles", '{"transaction": "p1"}')
        listed = await seen.wait(f"{response}/profiles", lambda p: p.get("transaction") == "p1")
        assert listed["ok"] is True
        by_name = {entry["name"]: entry for entry in listed["data"]}
        assert by_name["latin"] == {"name": "latin", "error": latin}
        assert by_name["deep"] == {"name": "deep", "error": deep}
        assert "evening-45" in by_name
        for profile, error in (("latin", latin), ("deep", deep)):
            start = json.dumps({"action": "start", "profile": profile, "id": f"s-{profile}"})
            for attempt in range(2):  # a retry with the same id is run again, not "in progress"
                after = len(seen.seen)
                await mosquitto_pub(broker, f"massager/{name}/set", start)
                answer = await seen.wait(f"massager/{name}/response", after=after)
                assert answer == {"ok": False, "id": f"s-{profile}", "action": "start",
                                  "error": error}, attempt  # fmt: skip
        assert Journal(journal_file()).sessions() == []


async def test_a_wildcard_response_topic_is_refused_and_the_command_still_answered(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    name = fresh_name()
    logged: list[str] = []
    response = "massager/bridge/response/devices"
    async with bridged(broker, name, topics=(response,), log=logged.append) as seen, \
            aiomqtt.Client("127.0.0.1", broker.port, username="admin", password=USERS["admin"],
                           protocol=aiomqtt.ProtocolVersion.V5) as phone:  # fmt: skip
        for number, topic in enumerate(["replies/+/phone", "replies/#", "+"]):
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = topic
            properties.CorrelationData = b"c"
            command = json.dumps({"action": "stop", "id": f"w{number}"})
            await phone.publish(f"massager/{name}/set", command, qos=1, properties=properties)
            answer = await seen.wait(f"massager/{name}/response",
                                     lambda p, n=number: p.get("id") == f"w{n}")  # fmt: skip
            assert answer["ok"] is True
            request = json.dumps({"transaction": f"r{number}"})
            await phone.publish("massager/bridge/request/devices", request, qos=1,
                                properties=properties)  # fmt: skip
            await seen.wait(response, lambda p, n=number: p.get("transaction") == f"r{n}")
            refused = f"not answering on {topic}: a response topic may not hold + or #"
            assert logged.count(refused) == 2, logged
        # The bridge goes on: a command with a good response topic is answered on it.
        await phone.subscribe(f"massager/{name}/replies")
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"massager/{name}/replies"
        await phone.publish(f"massager/{name}/set", '{"action": "stop"}', qos=1,
                            properties=properties)  # fmt: skip
        async with asyncio.timeout(5):
            reply = await anext(aiter(phone.messages))
        assert json.loads(reply.payload)["ok"] is True  # type: ignore[arg-type]
    gc.collect()  # a task that died with an exception says so when it is collected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("device", "said"),
    [
        ("sim://+", "'sim://+' would be named '+' on the bus, which is not a device name"),
        ("sim://%23", "'sim://%23' would be named '#' on the bus, which is not a device name"),
        ("+=sim://", "'+' is not a device name"),
        ("bridge=sim://", "a device may not be named 'bridge'"),
        ("sim://bridge", "a device may not be named 'bridge'"),
        ("serial:///dev/BRIDGE", "a device may not be named 'bridge'"),
    ],
)
def test_a_device_name_the_topics_cannot_carry_is_refused_naming_it(device: str, said: str) -> None:
    ran = ctl("bridge", "--broker", "mqtt://127.0.0.1:1", "--device", device)
    assert ran.returncode == 2
    assert ran.stderr.startswith(f"error: {said}"), ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_a_device_named_bridge_in_the_config_file_is_refused(user_dirs: dict[str, Path]) -> None:
    config = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[mqtt]\nbroker = "mqtt://127.0.0.1:1"\n[mqtt.devices]\nbridge = "sim://"\n')
    ran = ctl("bridge")
    assert ran.returncode == 2
    assert "a device may not be named 'bridge': BASE/bridge/ are the bridge's own topics" in (
        ran.stderr
    )


@pytest.mark.parametrize(
    ("transaction", "error"),
    [
        ("x" * 1_000_000, "transaction: at most 64 characters, not 1,000,000"),
        (2**70, "transaction: a whole number of at most 64 bits"),
        (True, "transaction: a string or a whole number, not true"),
        (1.5, "transaction: a string or a whole number, not 1.5"),
    ],
    ids=["1MB", "huge-int", "true", "float"],
)
async def test_a_transaction_too_long_to_echo_is_refused(
    broker: Broker, transaction: object, error: str
) -> None:
    name = fresh_name()
    response = "massager/bridge/response/devices"
    async with (
        bridged(broker, name, topics=(response,)) as seen,
        aiomqtt.Client(
            "127.0.0.1", broker.port, username="admin", password=USERS["admin"]
        ) as phone,
    ):
        await phone.publish("massager/bridge/request/devices",
                            json.dumps({"transaction": transaction}), qos=1)  # fmt: skip
        answer = await seen.wait(response)
        assert answer == {"ok": False, "error": error}
        # Bounds, not a ban: the longest allowed is echoed, and the bridge goes on.
        await phone.publish("massager/bridge/request/devices",
                            json.dumps({"transaction": "t" * 64}), qos=1)  # fmt: skip
        echoed = await seen.wait(response, lambda p: p.get("ok"))
        assert echoed["transaction"] == "t" * 64
