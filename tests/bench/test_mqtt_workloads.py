"""The MQTT rows' workloads refuse to be timed when they did not do their work.

No broker here: a stand-in driver answers as a broken bridge or echo would, and
the idle windows are given massagers that are not connected or not idle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from bench import mqtt
from bench.rows import WorkloadFailed
from massager_ctl.device import Massager


class _Answering:
    """A stand-in for the MQTT driver that answers every ask with ``answer(payload)``."""

    def __init__(self, answer: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
        self.answer = answer
        self.client = SimpleNamespace(subscribe=self._nothing, unsubscribe=self._nothing)

    @staticmethod
    async def _nothing(*args: object, **kwargs: object) -> None:
        return None

    async def ask(self, topic: str, payload: str, key: str) -> dict[str, Any]:
        """The answer to ``payload`` on ``topic``, at once."""
        return self.answer(topic, json.loads(payload))


def test_mqtt_commands_refuse_an_answer_that_is_not_ok() -> None:
    driver = _Answering(lambda topic, sent: {"ok": False, "id": sent["id"], "error": "offline"})
    senders = mqtt._Senders(driver)  # type: ignore[arg-type]
    with pytest.raises(WorkloadFailed, match="offline"):
        asyncio.run(senders.stack("d000"))


def test_the_mqtt_echo_refuses_a_message_that_came_back_changed() -> None:
    driver = _Answering(lambda topic, sent: {**sent, "intensity": 0})
    senders = mqtt._Senders(driver)  # type: ignore[arg-type]
    with pytest.raises(WorkloadFailed, match="the echo sent"):
        asyncio.run(senders.echo("d000"))


def test_mqtt_commands_answered_ok_must_show_on_the_massagers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bridge says ok, but the simulated massager never got the command.
    monkeypatch.setattr(mqtt, "DEVICES", ["d000"])
    driver = _Answering(lambda topic, sent: {"ok": True, "id": sent["id"]})
    senders = mqtt._Senders(driver)  # type: ignore[arg-type]

    async def main() -> None:
        await senders.stack("d000")
        senders.check_devices()

    with pytest.raises(WorkloadFailed, match="d000 was last sent intensity 2 and is at 1"):
        asyncio.run(main())


def _running(topic: str, sent: dict[str, Any]) -> dict[str, Any]:
    """The echo as sent, but a state that is not idle: a session runs."""
    return sent if topic.startswith("bench/echo/") else {**sent, "state": "running"}


def _mode_echoed(topic: str, sent: dict[str, Any]) -> dict[str, Any]:
    """An echo whose action changed on the way; the state as the command asks."""
    return (
        {**sent, "action": "mode"} if topic.startswith("bench/echo/") else {**sent, "state": "idle"}
    )


@pytest.mark.parametrize(
    ("answer", "why"), [(_running, "was sent; state"), (_mode_echoed, "the echo sent")]
)
def test_the_mqtt_round_trip_refuses_a_state_or_echo_that_is_not_the_command(
    answer: Callable[[str, dict[str, Any]], dict[str, Any]], why: str
) -> None:
    with pytest.raises(WorkloadFailed, match=why):
        asyncio.run(mqtt._round_trips(_Answering(answer), 10))  # type: ignore[arg-type]


def test_an_mqtt_command_without_an_answer_fails_its_workload() -> None:
    async def lost(*args: object, **kwargs: object) -> None:
        return None

    driver = mqtt._Driver(SimpleNamespace(publish=lost))  # type: ignore[arg-type]
    with pytest.raises(WorkloadFailed, match="no answer"):
        asyncio.run(driver.ask("massager/d000/set", "{}", "x", within=0.01))


def test_the_idle_window_refuses_massagers_that_are_not_connected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mqtt, "DEVICES", ["d000", "d001"])
    monkeypatch.setattr(mqtt, "CONNECT_WITHIN_S", 0.05)
    with pytest.raises(WorkloadFailed, match="2 massagers did not connect"):
        asyncio.run(mqtt._idle_window("here", lambda: dict.fromkeys(mqtt.DEVICES), 0.01))


def test_the_idle_window_refuses_a_massager_that_is_not_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mqtt, "DEVICES", ["d000"])
    monkeypatch.setattr(mqtt, "SETTLE_S", 0.01)

    async def main() -> None:
        async with Massager.connect("sim://d000?seed=1") as massager:
            await massager.start("wave", 1, duration_s=60)
            await massager.wait_for(lambda status: status.state == "running", timeout_s=5)
            await mqtt._idle_window("here", lambda: {"d000": massager}, 0.01)

    with pytest.raises(WorkloadFailed, match="d000 is running, not idle"):
        asyncio.run(main())
