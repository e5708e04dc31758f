"""The MQTT bridge: massagers on a broker, in the Zigbee2MQTT style of topics.

Under a base topic (default ``massager``):

- ``<base>/bridge/state``: ``{"state": "online"}``, retained; the broker
  publishes ``offline`` (the bridge's last will) if the bridge vanishes.
- ``<base>/<device>``: the device's state as retained JSON (`DeviceState`).
- ``<base>/<device>/availability``: ``{"state": "online"|"offline"}``, retained.
- ``<base>/<device>/set``: a JSON `Command`: start a profile, choose one, mode,
  intensity, pause, resume, stop, or vent. ``<base>/<device>/get`` publishes
  the state again.
- ``<base>/<device>/response``: the answer to every command, ``{"ok": ...}``
  with the command's ``id`` and, on failure, what was wrong; also sent to the
  MQTT 5 response topic with its correlation data when the command has one.
- ``<base>/bridge/request/<op>`` (``devices``, ``profiles``, ``schedules``),
  answered on ``<base>/bridge/response/<op>`` as ``{"ok", "data"|"error",
  "transaction"}``, the request's ``transaction`` echoed (and on the MQTT 5
  response topic, as for commands).
- ``<discovery prefix>/.../config``: Home Assistant discovery (`hass`), retained,
  sent again when Home Assistant says ``online`` on ``<prefix>/status``.

On the bus, safety first: a retained command is never run (it is cleared, and
the answer says so), every payload is validated and a bad one is answered with
what was wrong while the bridge goes on, a start is held to the safety limits
and journaled (source ``mqtt``), and stop and vent end a running program at once
with the massager vented. The bridge reconnects to the broker with exponential
backoff and jitter; a program keeps running while the broker is away.

The topics are laid out in `topics`, every JSON published is a model of
`payloads` (or the holder's `Reply` and `DeviceState`, or a `hass` config), and
this is the one module that talks to the broker (aiomqtt, and paho under it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from .. import __version__
from ..device import Massager
from ..errors import ConfigError, InputError, MassagerError
from ..holder import Command, DeviceState, Holder, House, Reply
from ..holder.commands import PROFILE_NAME
from ..holder.door import HeldElsewhere, LocalDoor
from ..holder.holder import Change, backoff, cancelled
from ..journal import Journal
from ..models import DeviceInfo
from ..paths import config_file, schedules_file
from ..programs.journaled import JournaledProgram
from ..programs.profiles import available_profiles, load_profile
from ..schedules.schedule import ScheduleBook
from ..settings import Settings
from ..tomlfiles import describe_errors
from ..urls import DeviceAddress
from .broker import BrokerAddress
from .hass import discovery
from .payloads import (
    Availability,
    BridgeState,
    BrokenProfile,
    DeviceEntry,
    ProfileEntry,
    Request,
    RequestData,
    RequestReply,
    SchedulesData,
)
from .topics import REQUESTS, Addressed, Topics

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
REFUSED_LOGIN = {4, 5, 134, 135}
"""CONNACK codes for bad credentials or no permission (MQTT 3.1.1 and 5)."""
CLAIM_AGAIN_S = 30.0
"""How often the bridge tries again to hold a massager another program holds."""


def unexpected(error: Exception, log: Callable[[str], None], topic: object) -> str:
    """Log an error no code path expected, in one line, and say it for the sender's answer."""
    said = f"an unexpected error ({type(error).__name__}: {error}); please report it"
    log(f"{topic}: {said}")
    return said


class BrokerRefused(ConfigError):
    """The broker refused the bridge's user name, password or permission to connect."""


class DeviceAgent:
    """One massager on the bus: the bridge's door onto its holder (which watches it).

    The holder does the work (see `massager_ctl.holder`); the agent publishes
    what the holder tells, and holds the massager with its local door open for
    as long as the bridge runs, so that `massager-ctl stop` in a terminal reaches
    it too. A massager another program holds (a `start` in a terminal) is shown
    offline, and claimed again every `CLAIM_AGAIN_S` until it is free.
    """

    def __init__(self, name: str, address: DeviceAddress, bridge: Bridge) -> None:
        self.name = name
        self.address = address
        self.bridge = bridge
        self.holder = bridge.house.hold(address, name=name, watch=True)
        self.holder.listen(self._changed)
        self._holding: asyncio.Task[None] | None = None

    @property
    def state(self) -> DeviceState:
        """The state the holder last told."""
        return self.holder.state

    @property
    def available(self) -> bool:
        """Whether the massager answers."""
        return self.holder.available

    @property
    def info(self) -> DeviceInfo | None:
        """What the massager announced when it last answered."""
        return self.holder.info

    @property
    def running(self) -> JournaledProgram | None:
        """The program that holds the link, whichever door started it."""
        return self.holder.running

    @property
    def program(self) -> asyncio.Task[Any] | None:
        """The task that runs the program, while one runs."""
        return self.holder._program_task

    @property
    def massager(self) -> Massager | None:
        """The quiet watch's link, while the massager answers on it."""
        return self.holder._watch_link

    def _changed(self, holder: Holder, change: Change) -> None:
        if change == "state":
            self.bridge.publish_state(self)
        elif change == "availability":
            self.bridge.publish_availability(self)
        else:
            self.bridge.publish_discovery(self)

    def begin(self) -> None:
        """Hold the massager (its local door open) and watch it, until `end`."""
        if self._holding is None:
            self._holding = asyncio.create_task(self._hold(), name=f"hold {self.name}")

    async def _hold(self) -> None:
        while True:
            try:
                async with LocalDoor(self.holder, self.bridge.house):
                    self.holder.begin()
                    await asyncio.Event().wait()  # until the bridge ends
            except HeldElsewhere as error:
                self.bridge.log(f"{self.name}: {error}; trying again in {CLAIM_AGAIN_S:g} s")
            except ConfigError as error:
                # No local door (the runtime folder): the bus still reaches the massager.
                self.bridge.log(f"{self.name}: {error}; other terminals cannot reach it")
                self.holder.begin()
                await asyncio.Event().wait()
            await asyncio.sleep(CLAIM_AGAIN_S)

    async def end(self) -> None:
        """Stop watching, end a program the bus started (the massager vents), close the door.

        A program a door runs in its own task (the daemon's) is that door's to end.
        """
        await self.holder.end()
        task, self._holding = self._holding, None
        await cancelled(task)

    async def command(self, command: Command) -> str:
        """Carry out a command (no id or age rules: see `Holder.command`); what happened.

        Raises:
            MassagerError: refused (a limit, a profile, the device), with why.
        """
        return await self.holder._act(command, "mqtt")

    def lent(self, program: JournaledProgram) -> Any:
        """Hold the link for ``program``, run by someone else (the daemon's schedules)."""
        return self.holder.program(program, source=program.source)


class Bridge:
    """Connects ``devices`` (name to address) to the broker at ``broker``."""

    def __init__(
        self,
        broker: BrokerAddress,
        devices: dict[str, DeviceAddress],
        *,
        settings: Settings,
        journal: Journal,
        profiles_dir: Path,
        base: str = "massager",
        discovery_prefix: str | None = "homeassistant",
        schedules_path: Path | None = None,
        log: Callable[[str], None] = lambda line: None,
        house: House | None = None,
    ) -> None:
        self.broker = broker
        self._tls = broker.tls_context()  # once: a bad file is said now, not on each retry
        self.topics = Topics(base, discovery_prefix or None)
        self.schedules_path = schedules_path or schedules_file()
        self.settings = settings
        self.journal = journal
        self.profiles_dir = profiles_dir
        self.log = log
        self.house = house or House(kind="bridge", settings=settings, journal=journal,
                                    profiles_dir=profiles_dir, config=str(config_file()),
                                    log=log)  # fmt: skip
        """The holders of this process: the bridge's, and the daemon's when it hosts one."""
        self.agents = {name: DeviceAgent(name, address, self) for name, address in devices.items()}
        self.client: aiomqtt.Client | None = None
        """The connection, once it is listening for commands."""
        self.accepted = False
        """Whether the broker ever accepted the bridge's login."""
        self._commands: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve until cancelled; reconnect with backoff when the broker is lost."""
        for agent in self.agents.values():
            agent.begin()
        attempt = 0
        try:
            while True:
                try:
                    await self._serve()
                except aiomqtt.MqttCodeError as error:
                    code = getattr(error.rc, "value", error.rc)
                    if not self.accepted and code in REFUSED_LOGIN:
                        # Credentials do not mend themselves: say so and stop.
                        raise BrokerRefused(
                            f"the broker {self.broker} refused the bridge: {error}; check the "
                            "user name and password (or the broker's ACL)"
                        ) from None
                    attempt = await self._lost(error, 0 if self.client else attempt)
                except aiomqtt.MqttError as error:
                    # A connection that was listening starts the backoff afresh.
                    attempt = await self._lost(error, 0 if self.client else attempt)
                else:
                    attempt = 0
        finally:
            for task in self._commands:
                task.cancel()  # a start still on its way must not outlive the bridge
            await asyncio.gather(*self._commands, return_exceptions=True)
            self._commands.clear()
            await asyncio.gather(*(agent.end() for agent in self.agents.values()))

    async def _lost(self, error: Exception, attempt: int) -> int:
        """Wait before reconnecting (exponential, with jitter); returns the attempt count."""
        self.client = None
        attempt += 1
        wait = backoff(attempt)
        self.log(f"broker {self.broker}: {error}; again in {wait:.1f} s")
        await asyncio.sleep(wait)
        return attempt

    async def _serve(self) -> None:
        will = aiomqtt.Will(self.topics.bridge_state, BridgeState(state="offline").as_json(),
                            qos=1, retain=True)  # fmt: skip
        async with self.broker.client(identifier=f"massager-ctl-{random.getrandbits(32):08x}",
                                      will=will, tls_context=self._tls) as client:  # fmt: skip
            self.accepted = True
            self.log(f"connected to {self.broker}")
            # Retain As Published: a command someone published retained arrives marked so.
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            for wanted in (*self.topics.commands, self.topics.requests):
                await client.subscribe(wanted, options=options)
            if self.topics.hass_status:
                await client.subscribe(self.topics.hass_status)
            # Online only once listening: a command sent on seeing it is heard.
            self.client = client
            await client.publish(self.topics.bridge_state, BridgeState(state="online").as_json(),
                                 qos=1, retain=True)  # fmt: skip
            for agent in self.agents.values():
                self.publish_availability(agent)
                self.publish_state(agent)
            self.publish_discovery(*self.agents.values())
            try:
                async for message in client.messages:
                    # Each command in its own task, so a stop or vent never waits behind a start.
                    task = asyncio.create_task(self._dispatch(client, message))
                    self._commands.add(task)
                    task.add_done_callback(self._commands.discard)
            except asyncio.CancelledError:
                await self._leave(client)
                raise

    async def _leave(self, client: aiomqtt.Client) -> None:
        """Say offline before a clean disconnect, which does not send the last will."""
        offline = [(self.topics.availability(agent.name), Availability(state="offline"))
                   for agent in self.agents.values()]  # fmt: skip
        offline.append((self.topics.bridge_state, BridgeState(state="offline")))
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                for topic, body in offline:
                    await client.publish(topic, body.as_json(), qos=1, retain=True)

    def _send(self, topic: str, body: str, *, retain: bool) -> None:
        client = self.client
        if client is None:
            return  # said again on the next connection
        task = asyncio.ensure_future(client.publish(topic, body, qos=1, retain=retain))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # lost with the link

    def publish_state(self, agent: DeviceAgent) -> None:
        """Publish a device's state, retained."""
        self._send(self.topics.state(agent.name), agent.state.model_dump_json(), retain=True)

    def publish_availability(self, agent: DeviceAgent) -> None:
        """Publish whether a device is reachable, retained."""
        body = Availability.of(agent.available).as_json()
        self._send(self.topics.availability(agent.name), body, retain=True)

    def publish_discovery(self, *agents: DeviceAgent) -> None:
        """Publish massagers' Home Assistant discovery configs, retained.

        The profiles folder is read once for them all, not once per massager.
        """
        prefix = self.topics.discovery_prefix
        if prefix is None:
            return
        # A massager that has not answered yet is told about once it does.
        answered = [(agent.name, agent.info) for agent in agents if agent.info is not None]
        if not answered:
            return
        found = available_profiles(self.profiles_dir)
        profiles = [name for name in found if PROFILE_NAME.fullmatch(name)]
        for name, info in answered:
            for topic, config in discovery(
                prefix=prefix, base=self.topics.base, name=name, info=info,
                profiles=profiles, version=__version__,
            ):  # fmt: skip
                self._send(topic, config.as_json(), retain=True)

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        if topic == self.topics.hass_status:
            if message.payload == b"online":  # Home Assistant (re)started: tell it again
                self.publish_discovery(*self.agents.values())
        elif (op := self.topics.request_op(topic)) is not None:
            await self._request(client, message, op)
        elif (addressed := self.topics.addressed(topic)) is not None:
            # An answer lost with the link: the sender may ask again.
            with contextlib.suppress(aiomqtt.MqttError):
                await self._handle(client, message, addressed)

    async def _request(self, client: aiomqtt.Client, message: aiomqtt.Message, op: str) -> None:
        """Answer ``<base>/bridge/request/<op>`` on ``<base>/bridge/response/<op>``."""
        where = self.topics.request_response(op)
        if await self._cleared(client, message, where, "request is not answered", RequestReply):
            return  # else answered again on every reconnect
        reply = RequestReply(ok=False)
        try:
            request = Request.model_validate_json(message.payload or b"{}")
            reply.transaction = request.transaction  # set, so echoed even when null
            if op not in REQUESTS:
                raise InputError(f"no request {op!r}; ask for {', '.join(REQUESTS)}")
            reply.data = self._requested(op)
            reply.ok = True
        except ValidationError as error:
            reply.error = describe_errors(error, "request")
        except MassagerError as error:
            reply.error = str(error)
        except OSError as error:  # an unreadable profile folder, say
            reply.error = f"could not read what was asked for: {error}"
        except Exception as error:  # a bug: the sender still gets an answer, the bridge goes on
            reply.error = unexpected(error, self.log, message.topic)
        with contextlib.suppress(aiomqtt.MqttError):
            await self._answer(client, where, message, reply)

    def _requested(self, op: str) -> RequestData:
        """The data a bridge request asks for.

        Raises:
            MassagerError: the schedules file cannot be read at all.
        """
        if op == "devices":
            return [
                DeviceEntry(name=agent.name, address=str(agent.address), available=agent.available,
                            state=agent.state.state,
                            model=agent.info.model if agent.info else None,
                            serial=agent.info.serial if agent.info else None)
                for agent in self.agents.values()
            ]  # fmt: skip
        if op == "profiles":
            found: list[ProfileEntry | BrokenProfile] = []
            for name, path in available_profiles(self.profiles_dir).items():
                try:
                    profile = load_profile(path)
                except MassagerError as error:
                    found.append(BrokenProfile(name=name, error=str(error)))
                    continue
                found.append(ProfileEntry(name=name, title=profile.title,
                                          minutes=profile.total_minutes,
                                          steps=len(profile.steps)))  # fmt: skip
            return found
        schedules, broken = ScheduleBook(self.schedules_path).load_each()
        return SchedulesData(schedules=schedules, problems=[str(entry) for entry in broken])

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message,
                      addressed: Addressed) -> None:  # fmt: skip
        agent = self.agents.get(addressed.device)
        if agent is None:
            return  # another bridge's device
        where = self.topics.response(agent.name)
        if await self._cleared(client, message, where, "command is never run", Reply):
            return  # else it would start the massager whenever anyone subscribes
        if addressed.verb == "get":
            self.publish_state(agent)
            return
        try:
            command = Command.model_validate_json(message.payload or b"")
        except ValidationError as error:
            reply = Reply(ok=False, error=describe_errors(error, "command"))
        else:
            try:
                reply = await agent.holder.command(command, source="mqtt")
            except Exception as error:  # a bug: the sender still gets an answer, the bridge goes on
                said = unexpected(error, self.log, message.topic)
                reply = Reply(ok=False, id=command.id, action=command.action, error=said)
        await self._answer(client, where, message, reply)

    async def _cleared(self, client: aiomqtt.Client, message: aiomqtt.Message, where: str,
                       what: str, answer: type[Reply | RequestReply]) -> bool:  # fmt: skip
        """Whether ``message`` came retained: then it is not acted on, but cleared and answered.

        The answer is an ``answer`` (the kind of reply the topic gets) that says so.

        An empty retained message is the clearing itself, coming back: not answered.
        """
        if not message.retain:
            return False
        if message.payload:
            await client.publish(str(message.topic), b"", qos=1, retain=True)
            error = f"a retained {what}; it was cleared"
            self.log(f"{message.topic}: {error}")
            await self._answer(client, where, message, answer(ok=False, error=error))
        return True

    async def _answer(self, client: aiomqtt.Client, where: str, message: aiomqtt.Message,
                      reply: Reply | RequestReply) -> None:  # fmt: skip
        """Publish ``reply`` on ``where``, and on the MQTT 5 response topic if one was named.

        Never on a response topic where the bridge's own rights would let a sender
        overwrite a state, an availability, a command or a discovery config.
        """
        body = reply.as_json()
        asked = message.properties
        topic = getattr(asked, "ResponseTopic", None) if asked is not None else None
        if topic and ("+" in topic or "#" in topic):
            # A topic filter, not a topic: nothing can be published there (paho raises).
            self.log(f"not answering on {topic}: a response topic may not hold + or #")
            topic = None
        if topic and not self.topics.may_answer_on(topic):
            self.log(f"not answering on {topic}: it is one of the bridge's own topics")
            topic = None
        # Logged first: whoever sees this answer can see why a response topic got none.
        await client.publish(where, body, qos=1)
        if topic:
            properties = Properties(PacketTypes.PUBLISH)
            correlation = getattr(asked, "CorrelationData", None)
            if correlation is not None:
                properties.CorrelationData = correlation
            await client.publish(topic, body, qos=1, properties=properties)
