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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from firmware_protocol import LinkStats

from . import __version__
from .broker import BrokerAddress
from .config import config_file, schedules_file
from .device import Massager
from .envelope import check_journal
from .errors import CalledOff, ConfigError, InputError, MassagerError
from .hass import discovery
from .journal import Journal, Session
from .models import DeviceInfo, DeviceStatus, explain_fault
from .profiles import Profile, available_profiles, find_profile, load_profile
from .programs import Progress
from .schedule import ScheduleBook
from .session import JournaledProgram
from .settings import Settings
from .supervisor import ResumePolicy
from .tomlfiles import describe_errors
from .urls import DeviceAddress, parse_device_url

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
"""A profile as the bus may name it: a name, never a path."""
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
MAX_AGE_S = 10.0
"""A command sent longer ago than this is refused: the moment it was meant for has passed."""
REMEMBERED_IDS = 1000
"""How many command ids a device remembers, to run each once."""
REFUSED_LOGIN = {4, 5, 134, 135}
"""CONNACK codes for bad credentials or no permission (MQTT 3.1.1 and 5)."""
PRESSURE_EVERY_S = 1.0
"""How often a state with only new pressures is published."""
PRESSURE_STEP_MMHG = 1.0
"""How far a chamber's pressure must move for a state with only new pressures."""


ACTIONS_WITH: dict[str, str] = {
    "start": "profile", "program": "profile", "mode": "mode", "intensity": "intensity",
}  # fmt: skip
"""The actions that take a value, and its field (``start``'s is optional)."""


class Command(BaseModel):
    """What may be sent to ``<base>/<device>/set``.

    ``start`` takes a ``profile`` (else the one chosen with ``program``),
    ``program`` a ``profile`` (chosen for a later start; nothing runs), ``mode``
    a ``mode`` and ``intensity`` an ``intensity``; ``pause``, ``resume``,
    ``stop`` and ``vent`` take nothing. Types are strict: ``"intensity": true``
    or ``"3"`` is refused, never run as 1 or 3.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["start", "program", "mode", "intensity", "pause", "resume", "stop", "vent"]
    profile: str | None = Field(None, pattern=PROFILE_NAME.pattern, max_length=40)
    """A profile by name (never a path: the bus must not name files to read)."""
    mode: str | None = Field(None, min_length=1, max_length=32)
    """The mode to switch to (for ``mode``): the running session's, or the preset."""
    intensity: int | None = Field(None, ge=1, le=10)
    """The intensity level (for ``intensity``)."""
    id: str | None = Field(None, min_length=1, max_length=64)
    """Echoed in the answer; a command with an id runs once, however often delivered."""
    at: datetime | None = None
    """When it was sent; a command older than `MAX_AGE_S` (or as far ahead) is refused."""

    @model_validator(mode="after")
    def _value_for_action(self) -> Command:
        needed = ACTIONS_WITH.get(self.action)
        for field in ACTIONS_WITH.values():
            given = getattr(self, field) is not None
            if field == needed and not given and self.action != "start":
                raise ValueError(f"{self.action} needs {field}")
            if field != needed and given:
                raise ValueError(f"{self.action} takes no {field}")
        return self


class DeviceState(BaseModel):
    """The retained state of one massager."""

    state: str
    """idle, running, paused, fault, or offline."""
    program: str | None = None
    chosen_program: str | None = None
    """The profile a ``start`` without one starts."""
    step: int | None = None
    steps: int | None = None
    ends_at: datetime | None = None
    """When the program ends: a moment, not a countdown."""
    mode: str | None = None
    intensity: int | None = None
    pressures_mmhg: list[float] = Field(default_factory=list)
    battery_pct: int | None = None
    faults: list[str] = Field(default_factory=list)
    fault: str | None = None
    """The first fault in plain language (its name first, then what to do), or None."""
    link_quality: int | None = None
    """Percent of frames since the link opened that arrived whole and needed no resend."""


def link_quality(stats: LinkStats) -> int:
    """The share of frames, in percent, that arrived whole and needed no resend.

    >>> link_quality(LinkStats(frames=98, crc_errors=1, retransmits=1))
    98
    """
    bad = stats.crc_errors + stats.malformed + stats.oversized + stats.retransmits + stats.timeouts
    total = stats.frames + bad
    return 100 if total == 0 else round(100 * stats.frames / total)


def device_name(text: str) -> tuple[str, DeviceAddress]:
    """``NAME=URL`` or a bare URL (named after it) into a topic-safe name and an address.

    ``bridge`` is refused: ``<base>/bridge/...`` are the bridge's own topics.

    >>> device_name("bedroom=sim://")[0], device_name("serial:///dev/ttyUSB0")[0]
    ('bedroom', 'ttyusb0')

    Raises:
        InputError: the name (given, or as the URL would give it) cannot be a topic word.
    """
    name, _, url = text.partition("=") if "=" in text.split("://")[0] else ("", "", text)
    address = parse_device_url(url)
    if not name:
        where = str(address).split("://", 1)[1].split("?", 1)[0]
        tail = re.split(r"[/:]", where.strip("/"))
        given = next((part for part in reversed(tail) if part), "sim")
        name = re.sub(r"[^a-z0-9_-]", "-", given.lower()) or "sim"
        if not NAME.match(name):
            # Say what the URL holds ('+'), not what cleaning it made of it ('-').
            raise InputError(
                f"{url!r} would be named {given!r} on the bus, which is not a device name for "
                f"topics (a-z, 0-9, - and _, from a letter or digit); name it, as NAME={url}"
            )
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a device name for topics: use a-z, 0-9, - and _")
    if name == "bridge":
        raise InputError(
            "a device may not be named 'bridge': BASE/bridge/ are the bridge's own topics "
            "(its state, requests and answers); give it another name, as NAME=URL"
        )
    return name, address


def unexpected(error: Exception, log: Callable[[str], None], topic: object) -> str:
    """Log an error no code path expected, in one line, and say it for the sender's answer."""
    said = f"an unexpected error ({type(error).__name__}: {error}); please report it"
    log(f"{topic}: {said}")
    return said


def backoff(attempt: int) -> float:
    """Seconds before reconnect ``attempt`` (1, 2, ...): doubling to a minute, with jitter."""
    ceiling = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** min(attempt - 1, 16))
    return random.uniform(ceiling / 2, ceiling)


async def cancelled(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (its own clean-up, a vent, done).

    A task already being cancelled is not cancelled again (that would cut short
    the vent of its clean-up). A cancel of the caller itself still propagates.
    """
    if task is None or task is asyncio.current_task():
        return
    if not task.cancelling():
        task.cancel()
    await asyncio.wait({task})  # raises only if the caller is cancelled
    if not task.cancelled():
        task.exception()  # retrieved: its own code said what went wrong


MAX_TRANSACTION = 64
"""The longest transaction string echoed; a longer one is refused, not sent back."""


def _transaction(value: object) -> object:
    """A transaction short enough to echo: a string of `MAX_TRANSACTION` or a 64-bit number.

    Raises:
        ValueError: what is wrong with it (one message, not one per type of the union).
    """
    if value is None:
        return value
    if isinstance(value, str):
        if len(value) > MAX_TRANSACTION:
            raise ValueError(f"at most {MAX_TRANSACTION} characters, not {len(value):,}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise ValueError("a whole number of at most 64 bits")
        return value
    raise ValueError(f"a string or a whole number, not {json.dumps(value)[:20]}")


class Request(BaseModel):
    """What may be sent to ``<base>/bridge/request/<op>`` (an empty payload too)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    transaction: Annotated[str | int | None, BeforeValidator(_transaction)] = None
    """Echoed in the response, to pair it with its request (bounded: see `_transaction`)."""


REQUESTS = ("devices", "profiles", "schedules")
"""The ops of ``<base>/bridge/request/<op>``."""


class BrokerRefused(ConfigError):
    """The broker refused the bridge's user name, password or permission to connect."""


class DeviceAgent:
    """One massager on the bus: watches it while idle, runs programs, answers commands."""

    def __init__(self, name: str, address: DeviceAddress, bridge: Bridge) -> None:
        self.name = name
        self.address = address
        self.bridge = bridge
        self.state = DeviceState(state="offline")
        self.available = False
        self.massager: Massager | None = None
        self.program: asyncio.Task[None] | None = None
        self.running: JournaledProgram | None = None
        self.info: DeviceInfo | None = None
        """What the massager announced when it last answered."""
        self.chosen_program: str | None = None
        self._watching: asyncio.Task[None] | None = None
        self._shown_at = float("-inf")
        self._seen_ids: OrderedDict[str, str] = OrderedDict()
        self._starting = asyncio.Lock()
        self._halts = 0
        self._ended = False
        self._lending = False
        self._started_at = datetime.now(UTC)
        self._reserved: Profile | None = None
        self._checked = False  # the program starting was held to the limits before it connected

    def seen(self, command_id: str) -> str | None:
        """What a command with this id did before, if it came already."""
        return self._seen_ids.get(command_id)

    def remember(self, command_id: str, outcome: str) -> None:
        """Remember what the command with this id did (the last `REMEMBERED_IDS`)."""
        self._seen_ids[command_id] = outcome
        while len(self._seen_ids) > REMEMBERED_IDS:
            self._seen_ids.popitem(last=False)

    def forget(self, command_id: str) -> None:
        """Forget a command id (its command failed, so a retry should run)."""
        self._seen_ids.pop(command_id, None)

    def begin(self) -> None:
        """Start watching the device (not once the bridge has ended)."""
        if not self._ended:
            self._watching = asyncio.create_task(self._watch())

    async def end(self) -> None:
        """Stop watching, and end a program the bridge started (the massager vents).

        A program lent the link (the daemon's) runs on, on its own link.
        """
        self._ended = True
        if not self._lending:
            await cancelled(self.program)
        await cancelled(self._watching)

    async def _watch(self) -> None:
        attempt = 0
        while True:
            try:
                async with Massager.connect(self.address) as massager:
                    self.massager, attempt = massager, 0
                    if self.info != massager.info:
                        self.info = massager.info
                        self.bridge.publish_discovery(self)
                    self._set_available(True)
                    self._show(massager.status, massager)
                    async for status in massager.statuses():
                        self._show(status, massager)
            except MassagerError as error:
                self.bridge.log(f"{self.name}: {error}")
            finally:
                self.massager = None
            self._set_available(False)
            attempt += 1
            await asyncio.sleep(backoff(attempt))

    def _set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            self.bridge.publish_availability(self)
            if not available:
                self.state = DeviceState(state="offline")
                self.bridge.publish_state(self)

    def _show(
        self, status: DeviceStatus, massager: Massager | None, progress: Progress | None = None
    ) -> None:
        state = DeviceState(
            state=status.state, mode=status.mode, intensity=status.intensity,
            pressures_mmhg=[round(p, 1) for p in status.pressures_mmhg],
            battery_pct=status.battery_pct, faults=list(status.faults),
            fault=explain_fault(status.faults[0]) if status.faults else None,
            link_quality=link_quality(massager.link_stats) if massager is not None else None,
            chosen_program=self.chosen_program,
        )  # fmt: skip
        if progress is not None:
            ends = datetime.now(UTC) + timedelta(seconds=progress.program_left_s)
            state = state.model_copy(update={
                "program": progress.profile, "step": progress.step, "steps": progress.steps,
                "ends_at": ends.replace(microsecond=0),
            })  # fmt: skip
        # Pressures move with every report (4 a second): sent at most once a second, and
        # only if a chamber moved by PRESSURE_STEP_MMHG (vented chambers read sensor noise);
        # everything else at once.
        now = asyncio.get_running_loop().time()
        others_changed = state.model_copy(update={"pressures_mmhg": []}) != (
            self.state.model_copy(update={"pressures_mmhg": []})
        )
        before = self.state.pressures_mmhg
        moved = len(before) != len(state.pressures_mmhg) or any(
            abs(a - b) >= PRESSURE_STEP_MMHG
            for a, b in zip(before, state.pressures_mmhg, strict=True)
        )
        if others_changed or (moved and now - self._shown_at >= PRESSURE_EVERY_S):
            self.state, self._shown_at = state, now
            self.bridge.publish_state(self)

    async def command(self, command: Command) -> str:
        """Carry out a command; returns what happened.

        Raises:
            MassagerError: refused (a limit, a profile, the device), with why.
        """
        if command.action in ("stop", "vent"):
            self._halts += 1  # calls off a start still on its way (see `_start`)
            if self.program is not None and not self.program.done():
                await cancelled(self.program)  # the program ends at once, vented
                return f"{command.action}: the program ended, the massager vented"
            if self._starting.locked():
                # The link is being handed over; whatever it still reaches is told too.
                if self.massager is not None:
                    with contextlib.suppress(MassagerError):
                        await self._halt(self.massager, command.action)
                return f"{command.action}: the start on its way was called off"
            if self.massager is None:
                raise MassagerError(f"{self.name} is offline")
            await self._halt(self.massager, command.action)
            return f"{command.action}: done"
        if command.action == "program":
            assert command.profile is not None
            find_profile(command.profile, self.bridge.profiles_dir)  # it must exist
            self.chosen_program = command.profile
            self.state = self.state.model_copy(update={"chosen_program": command.profile})
            self.bridge.publish_state(self)
            return f"program {command.profile} chosen; start starts it"
        if command.action == "start":
            profile = command.profile or self.chosen_program
            if profile is None:
                raise InputError(
                    "start needs a profile: name one, or choose one first with "
                    '{"action": "program", "profile": NAME}'
                )
            halts = self._halts  # before waiting: a stop meanwhile calls this start off
            async with self._starting:  # one start at a time; stop and vent never wait for it
                return await self._start(profile, halts)
        return await self._adjust(command)

    @staticmethod
    async def _halt(massager: Massager, action: str) -> None:
        await (massager.stop() if action == "stop" else massager.vent())

    async def _adjust(self, command: Command) -> str:
        """Mode, intensity, pause or resume: on the program's link if one runs."""
        running = self.running
        runner = running.supervisor.runner if running is not None else None
        if runner is not None:
            if not runner.massager.connected:
                raise MassagerError(f"{self.name}'s link is down; the program is reconnecting")
            massager = runner.massager
        elif self.massager is not None:
            massager = self.massager
        else:
            busy = running is not None or self._starting.locked()
            raise MassagerError(f"{self.name} is {'connecting' if busy else 'offline'}; try again")
        if command.action in ("mode", "intensity"):
            if runner is not None:
                await runner.adjust(mode=command.mode, intensity=command.intensity)
            elif command.mode is not None:
                await massager.set_mode(command.mode)
            else:
                assert command.intensity is not None
                await massager.set_intensity(command.intensity)
            value = command.mode if command.mode is not None else command.intensity
            return f"{command.action} {value}"
        await (massager.pause() if command.action == "pause" else massager.resume())
        return f"{command.action}: done"

    async def _start(self, profile_name: str, halts: int) -> str:
        if self._halts != halts:
            raise CalledOff("a stop or vent came first; the start was called off")
        if self.program is not None and not self.program.done():
            raise MassagerError(f"{self.name} is already running a program; stop it first")
        profile = find_profile(profile_name, self.bridge.profiles_dir)
        now = datetime.now(UTC)
        # A simulator (a demo: it squeezes no leg) is not held to the limits. Whether
        # the massager is one is known for sure only once the program's own link
        # answers, where the limits are checked again; here they answer the command.
        demo = self.info is not None and self.info.is_simulator
        self._checked = not demo
        if not demo:
            self._check_limits(profile, now)
            # Counted by the limits from the check on: another start meanwhile sees it.
            self._reserved, self._started_at = profile, now
        try:
            await self._take_link(halts, profile.name)
        finally:
            self._reserved = None
        program = JournaledProgram(
            self.address, profile, journal=self.bridge.journal, source="mqtt",
            policy=ResumePolicy(window_s=self.bridge.settings.resume_window_s),
            on_progress=self._progress,
            on_journal_error=lambda error: self.bridge.log(f"{self.name}: {error}"),
            limits=lambda: self._check_limits(profile, datetime.now(UTC)),
        )  # fmt: skip
        self.running = program
        self.program = asyncio.create_task(self._run(program))
        # Clean-up in a callback: a task cancelled before its first step never runs `finally`.
        self.program.add_done_callback(self._program_ended)
        return f"started {profile.name}"

    def _check_limits(self, profile: Profile, now: datetime) -> None:
        """Hold a start of ``profile`` to the safety limits, counting the others' starts.

        Raises:
            LimitReached: which limit, when, and the setting behind it.
            JournalError: the journal cannot be read.
        """
        others = (a.starting_session() for a in self.bridge.agents.values() if a is not self)
        check_journal(self.bridge.journal, planned_s=profile.total_minutes * 60, now=now,
                      limits=self.bridge.settings.limits, config=str(config_file()),
                      starting=[s for s in others if s is not None])  # fmt: skip

    async def _take_link(self, halts: int, what: str) -> None:
        """Close the watcher's link for a program (a massager serves one controller).

        Raises:
            CalledOff: a stop or vent came since ``halts`` was read; watching goes on.
        """
        await cancelled(self._watching)
        if self._halts != halts:
            self.begin()
            raise CalledOff(f"a stop or vent came first; {what} was not started")

    def starting_session(self) -> Session | None:
        """A program of the bridge's that the journal does not hold yet (it is connecting)."""
        running = self.running
        if running is not None and not self._lending and running.session_id is None:
            if running.demo or (not running.began and not self._checked):
                return None  # a demo: it squeezes no leg
            profile = running.profile
        elif self._reserved is not None:
            profile = self._reserved
        else:
            return None
        return Session.starting(device=str(self.address), profile=profile.name, source="mqtt",
                                started_at=self._started_at,
                                planned_s=profile.total_minutes * 60)  # fmt: skip

    def _program_ended(self, task: asyncio.Task[None]) -> None:
        if self.program is task:
            self.running = self.program = None
            self.begin()  # watch again, with the link back

    @contextlib.asynccontextmanager
    async def lent(self, program: JournaledProgram) -> AsyncIterator[None]:
        """Lend the link to ``program``, run by someone else (the daemon's schedules).

        While it runs, its state is published, mode, intensity, pause and resume
        reach it, and a stop or vent cancels the task that runs it (which vents).

        Raises:
            MassagerError: a program started over MQTT is running.
        """
        halts = self._halts
        async with self._starting:
            if self.program is not None and not self.program.done():
                raise MassagerError(f"{self.name} is running a program started over MQTT")
            await self._take_link(halts, program.profile.name)
            program.supervisor.on_progress = self._progress
            self.running, self.program = program, asyncio.current_task()
            self._lending = True
        try:
            yield
        finally:
            self.running = self.program = None
            self._lending = False
            self.begin()

    async def _run(self, program: JournaledProgram) -> None:
        try:
            result = await program.run()
            self.bridge.log(f"{self.name}: {result.outcome}: {result.message}")
        except MassagerError as error:
            self.bridge.log(f"{self.name}: {error}")

    def _progress(self, progress: Progress) -> None:
        runner = self.running.supervisor.runner if self.running is not None else None
        self._show(progress.status, runner.massager if runner is not None else None, progress)


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
    ) -> None:
        self.broker = broker
        self._tls = broker.tls_context()  # once: a bad file is said now, not on each retry
        self.base = base
        self.discovery_prefix = discovery_prefix or None
        self.schedules_path = schedules_path or schedules_file()
        self.settings = settings
        self.journal = journal
        self.profiles_dir = profiles_dir
        self.log = log
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
        will = aiomqtt.Will(f"{self.base}/bridge/state", json.dumps({"state": "offline"}),
                            qos=1, retain=True)  # fmt: skip
        async with self.broker.client(identifier=f"massager-ctl-{random.getrandbits(32):08x}",
                                      will=will, tls_context=self._tls) as client:  # fmt: skip
            self.accepted = True
            self.log(f"connected to {self.broker}")
            # Retain As Published: a command someone published retained arrives marked so.
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            await client.subscribe(f"{self.base}/+/set", options=options)
            await client.subscribe(f"{self.base}/+/get", options=options)
            await client.subscribe(f"{self.base}/bridge/request/+", options=options)
            if self.discovery_prefix:
                await client.subscribe(f"{self.discovery_prefix}/status")
            # Online only once listening: a command sent on seeing it is heard.
            self.client = client
            await client.publish(f"{self.base}/bridge/state", json.dumps({"state": "online"}),
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
        offline = json.dumps({"state": "offline"})
        topics = [f"{self.base}/{agent.name}/availability" for agent in self.agents.values()]
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                for topic in [*topics, f"{self.base}/bridge/state"]:
                    await client.publish(topic, offline, qos=1, retain=True)

    def _send(self, topic: str, payload: BaseModel | dict[str, Any] | str, *, retain: bool) -> None:
        client = self.client
        if client is None:
            return  # said again on the next connection
        if isinstance(payload, BaseModel):
            body = payload.model_dump_json()
        else:
            body = payload if isinstance(payload, str) else json.dumps(payload)
        task = asyncio.ensure_future(client.publish(topic, body, qos=1, retain=retain))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # lost with the link

    def publish_state(self, agent: DeviceAgent) -> None:
        """Publish a device's state, retained."""
        self._send(f"{self.base}/{agent.name}", agent.state, retain=True)

    def publish_availability(self, agent: DeviceAgent) -> None:
        """Publish whether a device is reachable, retained."""
        state = "online" if agent.available else "offline"
        self._send(f"{self.base}/{agent.name}/availability", {"state": state}, retain=True)

    def starting_sessions(self) -> list[Session]:
        """Programs started over MQTT that are still connecting, for the safety limits.

        A session is journaled once its massager answers; until then the limits
        count it from here, so two starts at once cannot both slip through.
        """
        found = (agent.starting_session() for agent in self.agents.values())
        return [session for session in found if session is not None]

    def lent(self, address: DeviceAddress, program: JournaledProgram) -> Any:
        """An async context that lends the link of a bridged massager at ``address``.

        For a massager the bridge does not hold, a context that does nothing.
        """
        for agent in self.agents.values():
            if str(agent.address) == str(address):
                return agent.lent(program)
        return contextlib.nullcontext()

    def publish_discovery(self, *agents: DeviceAgent) -> None:
        """Publish massagers' Home Assistant discovery configs, retained.

        The profiles folder is read once for them all, not once per massager.
        """
        if self.discovery_prefix is None:
            return
        # A massager that has not answered yet is told about once it does.
        answered = [(agent.name, agent.info) for agent in agents if agent.info is not None]
        if not answered:
            return
        found = available_profiles(self.profiles_dir)
        profiles = [name for name in found if PROFILE_NAME.fullmatch(name)]
        for name, info in answered:
            for topic, body in discovery(
                prefix=self.discovery_prefix, base=self.base, name=name, info=info,
                profiles=profiles, version=__version__,
            ):  # fmt: skip
                self._send(topic, body, retain=True)

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        if self.discovery_prefix and topic == f"{self.discovery_prefix}/status":
            if message.payload == b"online":  # Home Assistant (re)started: tell it again
                self.publish_discovery(*self.agents.values())
        elif topic.startswith(f"{self.base}/bridge/request/"):
            await self._request(client, message, topic.rsplit("/", 1)[1])
        else:
            # An answer lost with the link: the sender may ask again.
            with contextlib.suppress(aiomqtt.MqttError):
                await self._handle(client, message)

    async def _request(self, client: aiomqtt.Client, message: aiomqtt.Message, op: str) -> None:
        """Answer ``<base>/bridge/request/<op>`` on ``<base>/bridge/response/<op>``."""
        where = f"{self.base}/bridge/response/{op}"
        if await self._cleared(client, message, where, "request is not answered"):
            return  # else answered again on every reconnect
        reply: dict[str, Any] = {"ok": False}
        try:
            request = Request.model_validate_json(message.payload or b"{}")
            reply["transaction"] = request.transaction
            if op not in REQUESTS:
                raise InputError(f"no request {op!r}; ask for {', '.join(REQUESTS)}")
            reply["data"] = self._requested(op)
            reply["ok"] = True
        except ValidationError as error:
            reply["error"] = describe_errors(error, "request")
        except MassagerError as error:
            reply["error"] = str(error)
        except OSError as error:  # an unreadable profile folder, say
            reply["error"] = f"could not read what was asked for: {error}"
        except Exception as error:  # a bug: the sender still gets an answer, the bridge goes on
            reply["error"] = unexpected(error, self.log, message.topic)
        with contextlib.suppress(aiomqtt.MqttError):
            await self._answer(client, where, message, reply)

    def _may_answer_on(self, topic: str) -> bool:
        """Whether a sender's response topic is none of the bridge's own topics."""
        prefix = self.discovery_prefix
        if prefix and (topic == prefix or topic.startswith(f"{prefix}/")):
            return False
        if not topic.startswith(f"{self.base}/"):
            return True
        parts = topic[len(self.base) + 1 :].split("/")
        own = {"set", "get", "availability", "state"}
        return len(parts) >= 2 and parts[-1] not in own and parts[:2] != ["bridge", "request"]

    def _requested(self, op: str) -> Any:
        """The data a bridge request asks for.

        Raises:
            MassagerError: the schedules file cannot be read at all.
        """
        if op == "devices":
            return [
                {"name": agent.name, "address": str(agent.address), "available": agent.available,
                 "state": agent.state.state, "model": agent.info.model if agent.info else None,
                 "serial": agent.info.serial if agent.info else None}
                for agent in self.agents.values()
            ]  # fmt: skip
        if op == "profiles":
            found: list[dict[str, object]] = []
            for name, path in available_profiles(self.profiles_dir).items():
                try:
                    profile = load_profile(path)
                except MassagerError as error:
                    found.append({"name": name, "error": str(error)})
                    continue
                minutes, steps = profile.total_minutes, len(profile.steps)
                found.append({"name": name, "title": profile.title, "minutes": minutes,
                              "steps": steps})  # fmt: skip
            return found
        schedules, broken = ScheduleBook(self.schedules_path).load_each()
        return {"schedules": [s.model_dump(mode="json") for s in schedules],
                "problems": [str(entry) for entry in broken]}  # fmt: skip

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        parts = str(message.topic)[len(self.base) + 1 :].split("/")
        agent = self.agents.get(parts[0])
        if agent is None or len(parts) != 2:
            return  # another bridge's device
        where = f"{self.base}/{agent.name}/response"
        if await self._cleared(client, message, where, "command is never run"):
            return  # else it would start the massager whenever anyone subscribes
        if parts[1] == "get":
            self.publish_state(agent)
            return
        reply: dict[str, Any] = {"ok": False}
        try:
            command = Command.model_validate_json(message.payload or b"")
            reply["id"], reply["action"] = command.id, command.action
            # Stop and vent are never held back as repeats: twice does no harm.
            once = command.id if command.action not in ("stop", "vent") else None
            before = agent.seen(once) if once else None
            if before is not None:
                # Delivered twice (QoS 1 may): run once, and answer as before.
                reply.update(ok=True, message=before, duplicate=True)
            else:
                self._check_age(command)
                if once:
                    agent.remember(once, "in progress")
                try:
                    reply["message"] = await agent.command(command)
                except BaseException:
                    if once:
                        agent.forget(once)  # failed: a retry with the same id runs
                    raise
                reply["ok"] = True
                if once:
                    agent.remember(once, reply["message"])
        except ValidationError as error:
            reply["error"] = describe_errors(error, "command")
        except MassagerError as error:
            reply["error"] = str(error)
        except Exception as error:  # a bug: the sender still gets an answer, the bridge goes on
            reply["error"] = unexpected(error, self.log, message.topic)
        await self._answer(client, where, message, reply)

    @staticmethod
    def _check_age(command: Command) -> None:
        """Refuse a command sent too long ago (or stamped too far ahead).

        Raises:
            InputError: how old it is.
        """
        if command.at is None:
            return
        sent = command.at if command.at.tzinfo else command.at.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - sent).total_seconds()
        if abs(age) > MAX_AGE_S:
            when = "sent" if age > 0 else "stamped"
            raise InputError(
                f"the command was {when} {abs(age):.0f} s {'ago' if age > 0 else 'ahead'}; "
                f"commands older than {MAX_AGE_S:g} s are refused (check the clocks)"
            )

    async def _cleared(self, client: aiomqtt.Client, message: aiomqtt.Message, where: str,
                       what: str) -> bool:  # fmt: skip
        """Whether ``message`` came retained: then it is not acted on, but cleared and answered.

        An empty retained message is the clearing itself, coming back: not answered.
        """
        if not message.retain:
            return False
        if message.payload:
            await client.publish(str(message.topic), b"", qos=1, retain=True)
            error = f"a retained {what}; it was cleared"
            self.log(f"{message.topic}: {error}")
            await self._answer(client, where, message, {"ok": False, "error": error})
        return True

    async def _answer(self, client: aiomqtt.Client, where: str, message: aiomqtt.Message,
                      reply: dict[str, Any]) -> None:  # fmt: skip
        """Publish ``reply`` on ``where``, and on the MQTT 5 response topic if one was named.

        Never on a response topic where the bridge's own rights would let a sender
        overwrite a state, an availability, a command or a discovery config.
        """
        body = json.dumps(reply)
        asked = message.properties
        topic = getattr(asked, "ResponseTopic", None) if asked is not None else None
        if topic and ("+" in topic or "#" in topic):
            # A topic filter, not a topic: nothing can be published there (paho raises).
            self.log(f"not answering on {topic}: a response topic may not hold + or #")
            topic = None
        if topic and not self._may_answer_on(topic):
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
