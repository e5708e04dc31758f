"""The MQTT bridge against a real Mosquitto, with mosquitto_pub and mosquitto_sub beside it.

Real time, real broker (`tests.broker`), the simulator in the test's process.
Each test names its own device, so retained topics of one test never reach
another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from massager_ctl.journal import Journal
from massager_ctl.mqtt import Bridge, BrokerAddress, parse_broker_url
from massager_ctl.paths import journal_file, user_profiles_dir
from massager_ctl.settings import Settings
from massager_ctl.urls import parse_device_url
from tests.broker import USERS, Broker
from tests.massager_ctl.test_daemon import short_profile

pytestmark = pytest.mark.looptime(False)


def fresh_name() -> str:
    return f"t{secrets.token_hex(3)}"


async def mosquitto_pub(broker: Broker, topic: str, payload: str, *flags: str) -> None:
    """Publish as the independent command-line client does."""
    process = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-p", str(broker.port), "-u", "admin", "-P", USERS["admin"],
        "-q", "1", "-t", topic, "-m", payload, *flags,
    )  # fmt: skip
    assert await process.wait() == 0


def sub_command(broker: Broker, topic: str, count: int, within: float) -> list[str]:
    """mosquitto_sub for the first ``count`` messages on ``topic``, as ``topic payload``."""
    return ["mosquitto_sub", "-p", str(broker.port), "-u", "admin", "-P", USERS["admin"],
            "-t", topic, "-v", "-C", str(count), "-W", str(int(within))]  # fmt: skip


async def mosquitto_sub(broker: Broker, topic: str, count: int, within: float = 5) -> list[str]:
    """The first ``count`` messages (retained ones first) on ``topic``, as ``topic payload``."""
    process = await asyncio.create_subprocess_exec(
        *sub_command(broker, topic, count, within), stdout=subprocess.PIPE
    )
    out, _ = await process.communicate()
    return out.decode().splitlines()


class Listener:
    """Everything published under the device's topics, as seen by a separate client."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: list[tuple[str, Any]] = []
        self._new = asyncio.Event()

    async def collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload.decode() if isinstance(message.payload, bytes) else ""
            with contextlib.suppress(ValueError):
                payload = json.loads(payload)
            self.seen.append((str(message.topic), payload))
            self._new.set()

    async def wait(
        self, topic: str, check: Any = lambda p: True, within: float = 10, after: int = 0
    ) -> Any:
        """The first payload on ``topic`` (from message ``after`` on) for which ``check`` holds."""
        async with asyncio.timeout(within):
            index = after
            while True:
                for seen_topic, payload in self.seen[index:]:
                    if seen_topic == topic and check(payload):
                        return payload
                index = len(self.seen)
                self._new.clear()
                await self._new.wait()


def a_bridge(broker: str | BrokerAddress, devices: dict[str, str], **options: Any) -> Bridge:
    """A bridge to ``broker`` for ``devices`` (name to URL), with the test's journal."""
    address = parse_broker_url(broker) if isinstance(broker, str) else broker
    return Bridge(address, {name: parse_device_url(url) for name, url in devices.items()},
                  settings=Settings(), journal=Journal(journal_file()),
                  profiles_dir=user_profiles_dir(), **options)  # fmt: skip


@contextlib.asynccontextmanager
async def listening(
    broker: Broker, *topics: str, broker_timeout: float = 10
) -> AsyncIterator[Listener]:
    """A separate client (user admin) collecting everything on ``topics``.

    ``broker_timeout`` bounds each broker operation (aiomqtt's default is 10 s). A test
    whose virtual clock races ahead while the broker answers in real time, such
    as the soak night, passes a longer one.
    """
    client = aiomqtt.Client(
        "127.0.0.1", broker.port, username="admin", password=USERS["admin"], timeout=broker_timeout
    )
    async with client:
        for topic in topics:
            await client.subscribe(topic)
        listener = Listener(client)
        async with in_background(listener.collect()):
            yield listener


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """``work`` running in a task; cancelled (cleanly) at the end."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def running(bridge: Bridge) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """The bridge running in a task; cancelled (cleanly) at the end."""
    return in_background(bridge.run())


@contextlib.asynccontextmanager
async def bridged(
    broker: Broker,
    name: str,
    url: str = "sim://",
    *,
    topics: tuple[str, ...] = (),
    **options: Any,
) -> AsyncIterator[Listener]:
    """A bridge for one device named ``name``, and a listener on its topics and ``topics``."""
    own = (f"massager/{name}/#", f"massager/{name}", "massager/bridge/state")
    bridge = a_bridge(broker.url("bridge"), {name: url}, **options)
    async with listening(broker, *own, *topics) as listener, running(bridge):
        await listener.wait(f"massager/{name}/availability", lambda p: p["state"] == "online")
        yield listener


async def test_the_bridge_announces_itself_and_its_device_retained(broker: Broker) -> None:
    name = fresh_name()
    async with bridged(broker, name) as seen:
        await seen.wait(f"massager/{name}", lambda p: p["state"] == "idle")
        # A subscriber arriving later gets the retained state at once.
        later = await mosquitto_sub(broker, f"massager/{name}/#", count=1)
        assert later[0].startswith(f"massager/{name}/availability")
        assert json.loads(later[0].split(" ", 1)[1]) == {"state": "online"}
        [state] = await mosquitto_sub(broker, f"massager/{name}", count=1)
        assert json.loads(state.split(" ", 1)[1])["state"] == "idle"
        [bridge] = await mosquitto_sub(broker, "massager/bridge/state", count=1)
        assert bridge.endswith('{"state": "online"}')


async def test_a_profile_started_over_mqtt_runs_journaled_and_stops_vented(
    broker: Broker,
) -> None:
    short_profile("short", 0.5)
    name = fresh_name()
    async with bridged(broker, name) as seen:
        await mosquitto_pub(broker, f"massager/{name}/set",
                            '{"action": "start", "profile": "short", "id": "s1"}')  # fmt: skip
        answer = await seen.wait(f"massager/{name}/response", lambda p: p.get("id") == "s1")
        assert answer == {"ok": True, "id": "s1", "action": "start", "message": "started short"}
        running = await seen.wait(
            f"massager/{name}",
            lambda p: p["state"] == "running" and max(p["pressures_mmhg"]) > 20,
        )
        assert (running["program"], running["step"], running["steps"]) == ("short", 1, 1)
        assert running["ends_at"].endswith("Z")
        await mosquitto_pub(broker, f"massager/{name}/set", '{"action": "stop", "id": "s2"}')
        stopped = await seen.wait(f"massager/{name}/response", lambda p: p.get("id") == "s2")
        assert stopped["ok"] is True
        # The stop went out on the program's link; the program ended once the chambers were.
        assert stopped["message"] == "stop: the program ended; the chambers are empty"
        vented = lambda p: p["state"] == "idle" and max(p["pressures_mmhg"]) < 5  # noqa: E731
        await seen.wait(f"massager/{name}", vented)
    [session] = Journal(journal_file()).sessions()
    assert (session.source, session.profile, session.ended) == ("mqtt", "short", "stopped")
    assert session.pressure_s > 0


async def test_mode_intensity_pause_and_resume_reach_the_massager_idle_and_in_a_program(
    broker: Broker,
) -> None:
    short_profile("short", 0.5)
    name = fresh_name()
    set_topic, state = f"massager/{name}/set", f"massager/{name}"
    async with bridged(broker, name) as seen:
        # Idle: the preset changes, and the state says so.
        await mosquitto_pub(broker, set_topic, '{"action": "intensity", "intensity": 3}')
        await seen.wait(state, lambda p: p["intensity"] == 3 and p["state"] == "idle")
        await mosquitto_pub(broker, set_topic, '{"action": "start", "profile": "short"}')
        await seen.wait(state, lambda p: p["state"] == "running" and p["program"] == "short")
        # In a program: on the program's own link, for the step it is in.
        await mosquitto_pub(broker, set_topic, '{"action": "mode", "mode": "pulse", "id": "m"}')
        answer = await seen.wait(f"{state}/response", lambda p: p.get("id") == "m")
        assert answer["ok"] is True, answer
        await seen.wait(state, lambda p: p["mode"] == "pulse" and p["state"] == "running")
        await mosquitto_pub(broker, set_topic, '{"action": "pause"}')
        paused = await seen.wait(state, lambda p: p["state"] == "paused")
        assert paused["program"] == "short"
        await mosquitto_pub(broker, set_topic, '{"action": "resume", "id": "r"}')
        await seen.wait(state, lambda p: p["state"] == "running" and p["mode"] == "pulse")
        assert (await seen.wait(f"{state}/response", lambda p: p.get("id") == "r"))["ok"]
        await mosquitto_pub(broker, set_topic, '{"action": "vent"}')
        await seen.wait(state, lambda p: p["state"] == "idle" and p["program"] is None)
        # Pausing an idle massager is the device's to refuse, and the answer says why.
        await mosquitto_pub(broker, set_topic, '{"action": "pause", "id": "p2"}')
        refused = await seen.wait(f"{state}/response", lambda p: p.get("id") == "p2")
        assert refused["ok"] is False
        assert refused["error"]
    [session] = Journal(journal_file()).sessions()
    assert session.ended == "stopped"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("not json", "Invalid JSON"),
        ('{"action": "jump"}', "action: Input should be 'start', 'program', 'mode', 'intensity'"),
        ('{"action": "start"}', "start needs a profile: name one, or choose one first"),
        ('{"action": "start", "profile": "/etc/x.toml"}', "profile: String should match"),
        ('{"action": "mode"}', "mode needs mode"),
        ('{"action": "stop", "intensity": 2}', "stop takes no intensity"),
        ('{"action": "intensity", "intensity": 11}', "intensity: Input should be less than"),
        ('{"action": "mode", "mode": "tickle"}', "no mode 'tickle'; it offers"),
        ('{"action": "stop", "volume": 11}', "volume: is not a field of a command"),
        ('{"action": "start", "profile": "no-such"}', "no-such"),
    ],
)
async def test_a_bad_command_is_answered_and_the_bridge_goes_on(
    broker: Broker, payload: str, error: str
) -> None:
    name = fresh_name()
    async with bridged(broker, name) as seen:
        await mosquitto_pub(broker, f"massager/{name}/set", payload)
        answer = await seen.wait(f"massager/{name}/response")
        assert answer["ok"] is False
        assert error in answer["error"]
        before = len([t for t, _ in seen.seen if t == f"massager/{name}"])
        await mosquitto_pub(broker, f"massager/{name}/get", "")
        await seen.wait(f"massager/{name}", lambda p: len(
            [t for t, _ in seen.seen if t == f"massager/{name}"]) > before)  # fmt: skip


async def test_a_retained_command_is_cleared_and_never_run(broker: Broker) -> None:
    short_profile("short", 0.5)
    name = fresh_name()
    # Left retained before the bridge came: it would start the massager on every restart.
    await mosquitto_pub(broker, f"massager/{name}/set",
                        '{"action": "start", "profile": "short"}', "-r")  # fmt: skip
    async with bridged(broker, name) as seen:
        answer = await seen.wait(f"massager/{name}/response")
        assert answer == {"ok": False, "error": "a retained command is never run; it was cleared"}
        # And published retained while the bridge listens (Retain As Published).
        await mosquitto_pub(broker, f"massager/{name}/set", '{"action": "vent"}', "-r")
        answers = lambda p: len([t for t, _ in seen.seen if t.endswith("/response")]) == 2  # noqa: E731
        await seen.wait(f"massager/{name}/response", answers)
        await asyncio.sleep(1)
        assert all(p["state"] == "idle" for t, p in seen.seen if t == f"massager/{name}")
    assert await mosquitto_sub(broker, f"massager/{name}/set", count=1, within=1) == []
    assert Journal(journal_file()).sessions() == []


async def test_an_mqtt5_request_is_answered_on_its_response_topic(broker: Broker) -> None:
    name = fresh_name()
    async with bridged(broker, name), aiomqtt.Client(
        "127.0.0.1", broker.port, username="admin", password=USERS["admin"],
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as phone:  # fmt: skip
        await phone.subscribe(f"massager/{name}/replies")
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"massager/{name}/replies"
        properties.CorrelationData = b"req-7"
        await phone.publish(f"massager/{name}/set", '{"action": "jump"}', qos=1,
                            properties=properties)  # fmt: skip
        async with asyncio.timeout(5):
            message = await anext(aiter(phone.messages))
        assert json.loads(message.payload)["ok"] is False  # type: ignore[arg-type]
        assert message.properties is not None
        assert message.properties.CorrelationData == b"req-7"


def test_the_broker_says_offline_for_a_bridge_that_vanished(broker: Broker) -> None:
    name = fresh_name()
    bridge = subprocess.Popen(
        [sys.executable, "-m", "massager_ctl", "bridge", "--broker", broker.url("bridge"),
         "--device", "x=sim://", "--base", f"massager/{name}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # A base of its own: each bridge on a broker has its own bridge/state and will.
        topic = f"massager/{name}/bridge/state"
        online = subprocess.run(sub_command(broker, topic, 1, within=20), capture_output=True,
                                text=True, check=False)  # fmt: skip
        assert online.stdout.split(" ", 1) == [topic, '{"state": "online"}\n']
        bridge.send_signal(signal.SIGKILL)
        bridge.wait(5)
        # The broker publishes the will when it notices (at once: the socket closed).
        offline = subprocess.run(sub_command(broker, topic, 1, within=10), capture_output=True,
                                 text=True, check=False)  # fmt: skip
        assert offline.stdout.split(" ", 1) == [topic, '{"state": "offline"}\n']
    finally:
        if bridge.poll() is None:
            bridge.kill()
        bridge.communicate()


@pytest.mark.parametrize(
    ("credentials", "refusal"),
    # (Mosquitto answers an MQTT 5 client "not authorized" for a wrong password too.)
    [("", "Not authorized"), ("bridge:wrong@", "Not authorized")],
)
def test_a_refused_login_ends_the_bridge_with_a_clear_error(
    broker: Broker, credentials: str, refusal: str
) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "massager_ctl", "bridge", "--broker",
         f"mqtt://{credentials}127.0.0.1:{broker.port}", "--device", "x=sim://"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ran.returncode == 2
    assert f"the broker mqtt://{credentials.split(':')[0]}" in ran.stderr
    assert refusal.lower() in ran.stderr.lower()
    assert "wrong" not in ran.stderr  # the password is never shown


async def test_a_user_allowed_one_device_cannot_command_another(broker: Broker) -> None:
    short_profile("short", 0.5)
    bridge = a_bridge(broker.url("bridge"), {"bedroom": "sim://bedroom", "kitchen": "sim://k"})
    running = asyncio.create_task(bridge.run())
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, username="phone",
                                  password=USERS["phone"]) as phone:  # fmt: skip
            await phone.subscribe("massager/+/response")
            await asyncio.sleep(1)  # the bridge is up
            await phone.publish("massager/kitchen/set", '{"action": "vent", "id": "k1"}', qos=1)
            await phone.publish("massager/bedroom/set", '{"action": "vent", "id": "b1"}', qos=1)
            async with asyncio.timeout(5):
                message = await anext(aiter(phone.messages))
            assert str(message.topic) == "massager/bedroom/response"
            assert json.loads(message.payload)["id"] == "b1"  # type: ignore[arg-type]
            with pytest.raises(TimeoutError):  # the broker dropped the kitchen command
                async with asyncio.timeout(1):
                    await anext(aiter(phone.messages))
        assert "denied publish" in broker.log().lower()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_command_with_an_id_runs_once(broker: Broker) -> None:
    short_profile("short", 0.5)
    name = fresh_name()
    async with bridged(broker, name) as seen:
        start = '{"action": "start", "profile": "short", "id": "once"}'
        await mosquitto_pub(broker, f"massager/{name}/set", start)
        await seen.wait(f"massager/{name}/response", lambda p: p.get("ok"))
        await mosquitto_pub(broker, f"massager/{name}/set", start)  # delivered again
        again = await seen.wait(f"massager/{name}/response", lambda p: p.get("duplicate"))
        assert again["ok"] is True
        assert again["message"] == "started short"
        stopping = len(seen.seen)
        await mosquitto_pub(broker, f"massager/{name}/set", '{"action": "stop"}')
        await seen.wait(f"massager/{name}", lambda p: p["state"] == "idle", after=stopping)
    assert len(Journal(journal_file()).sessions()) == 1


async def test_an_old_command_is_refused_and_stop_is_never_kept_waiting(broker: Broker) -> None:
    short_profile("short", 0.5)
    name = fresh_name()
    async with bridged(broker, name) as seen:
        old = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
        command = {"action": "start", "profile": "short", "at": old}
        await mosquitto_pub(broker, f"massager/{name}/set", json.dumps(command))
        answer = await seen.wait(f"massager/{name}/response")
        assert "sent 30 s ago; commands older than 10 s are refused" in answer["error"]
        fresh = datetime.now(UTC).isoformat()
        command = {"action": "start", "profile": "short", "at": fresh, "id": "s"}
        await mosquitto_pub(broker, f"massager/{name}/set", json.dumps(command))
        await mosquitto_pub(broker, f"massager/{name}/set", '{"action": "vent", "id": "v"}')
        vented = await seen.wait(f"massager/{name}/response", lambda p: p.get("id") == "v")
        assert vented["ok"] is True
        started = await seen.wait(f"massager/{name}/response", lambda p: p.get("id") == "s")
        # Either the start came first and the vent ended it, or the vent came while the
        # start was on its way and called it off: never a program running after a vent.
        if started["ok"]:
            # The vent ended it, or came before its link opened (then nothing began).
            ended = [s.ended for s in Journal(journal_file()).sessions()]
            assert ended in (["stopped"], []), ended
        else:
            assert "a stop or vent came first" in started["error"]
            assert Journal(journal_file()).sessions() == []
        await asyncio.sleep(1)
        states = [p["state"] for t, p in seen.seen if t == f"massager/{name}"]
        assert states[-1] == "idle"
