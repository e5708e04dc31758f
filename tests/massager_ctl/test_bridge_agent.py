"""The bridge's handover of a massager's link, in virtual time, with no broker.

A stop or vent must call off every start still on its way, whoever started it
(a command on the bus, or the daemon borrowing the link); these are the races
between them, driven on the in-process simulator.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from massager_ctl.errors import CalledOff, MassagerError
from massager_ctl.holder import Command
from massager_ctl.holder.holder import cancelled
from massager_ctl.journal import Journal
from massager_ctl.mqtt import BrokerURLError, parse_broker_url
from massager_ctl.paths import journal_file, user_profiles_dir
from massager_ctl.programs.journaled import JournaledProgram
from massager_ctl.programs.limits import LimitReached
from massager_ctl.programs.profiles import find_profile
from massager_ctl.programs.supervisor import ResumePolicy
from tests.massager_ctl.test_bridge import a_bridge
from tests.massager_ctl.test_daemon import short_profile


@contextlib.asynccontextmanager
async def agent_of(name: str = "bed"):
    """A bridge that never reaches a broker, and its one agent, watching ``sim://NAME``."""
    bridge = a_bridge("mqtt://127.0.0.1:1", {name: f"sim://{name}"})
    agent = bridge.agents[name]
    agent.begin()
    await asyncio.sleep(1)
    assert agent.available
    try:
        yield agent
    finally:
        await agent.end()


async def test_a_stop_while_the_daemon_borrows_the_link_calls_its_start_off() -> None:
    short_profile("short", 1)
    async with agent_of() as agent:
        program = JournaledProgram(agent.address, find_profile("short", user_profiles_dir()),
                                   journal=Journal(journal_file()), source="schedule",
                                   policy=ResumePolicy())  # fmt: skip

        async def borrowed() -> None:
            async with agent.lent(program):
                await program.run()

        task = asyncio.create_task(borrowed())
        await asyncio.sleep(0)  # the lend is closing the watcher's link
        answer = await agent.command(Command(action="stop"))
        assert "called off" in answer
        with pytest.raises(CalledOff):
            await task
        assert not program.began
        await asyncio.sleep(1)
        assert agent.available, "the bridge watches the massager again"
        assert agent.state.state == "idle"


async def test_a_stop_calls_off_every_start_waiting_not_only_the_first() -> None:
    short_profile("short", 1)
    async with agent_of() as agent:
        start = Command(action="start", profile="short")
        first = asyncio.create_task(agent.command(start))
        second = asyncio.create_task(agent.command(start))
        await asyncio.sleep(0)
        assert "called off" in await agent.command(Command(action="vent"))
        for task in (first, second):
            with pytest.raises(MassagerError, match="stop or vent came first"):
                await task
        await asyncio.sleep(2)
        assert agent.program is None
        assert agent.state.state == "idle"
        assert max(agent.state.pressures_mmhg) < 5


async def test_a_program_stopped_before_its_first_step_leaves_the_agent_watching() -> None:
    short_profile("short", 1)
    async with agent_of() as agent:
        assert await agent.command(Command(action="start", profile="short")) == "started short"
        # The stop lands before the program's task ever ran.
        await agent.command(Command(action="stop"))
        await asyncio.sleep(1)
        assert agent.program is None
        assert agent.running is None
        assert agent.available
        assert await agent.command(Command(action="intensity", intensity=2)) == "intensity 2"


async def test_cancelled_passes_a_cancel_of_its_caller_on() -> None:
    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1)  # a vent, say
            raise

    inner = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(cancelled(inner))
    await asyncio.sleep(0.1)
    waiting.cancel()  # SIGTERM reaching the one who waits
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(2)
    assert inner.cancelled()


def test_a_broker_address_error_never_shows_the_password() -> None:
    with pytest.raises(BrokerURLError) as error:
        parse_broker_url("mqtt://bridge:hunter2@host:99999")
    assert "hunter2" not in str(error.value)
    assert "mqtt://bridge:***@host:99999" in str(error.value)


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("phone/replies", True),
        ("massager/bed/replies", True),
        ("massager/bridge/response/mine", True),
        ("massager/kitchen", False),  # a state
        ("massager/kitchen/availability", False),
        ("massager/kitchen/set", False),  # a command, with the bridge's rights
        ("massager/bridge/state", False),
        ("massager/bridge/request/devices", False),
        ("homeassistant/sensor/x/state/config", False),
    ],
)
def test_a_response_topic_is_never_one_of_the_bridges_own(topic: str, allowed: bool) -> None:
    bridge = a_bridge("mqtt://h", {})
    assert bridge.topics.may_answer_on(topic) is allowed


async def test_two_starts_at_once_on_two_massagers_are_held_to_the_limits_together() -> None:
    short_profile("short", 1)
    # Massagers that do not announce themselves as simulators: a demo is not held to them.
    urls = {name: f"sim://{name}?firmware=2.1.0" for name in ("left", "right")}
    bridge = a_bridge("mqtt://127.0.0.1:1", urls)
    for agent in bridge.agents.values():
        agent.begin()
    await asyncio.sleep(1)
    start = Command(action="start", profile="short")
    # Neither is journaled yet when the other is checked: the limits see both anyway.
    answers = await asyncio.gather(
        *(agent.command(start) for agent in bridge.agents.values()), return_exceptions=True
    )
    try:
        assert sorted(map(type, answers), key=str) == sorted([str, LimitReached], key=str), answers
        [refused] = [a for a in answers if isinstance(a, LimitReached)]
        assert "a session is still running" in str(refused)
        await asyncio.sleep(1)  # the one started connects and is journaled
    finally:
        await asyncio.gather(*(agent.end() for agent in bridge.agents.values()))
    assert len(Journal(journal_file()).sessions()) == 1
