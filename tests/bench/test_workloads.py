"""Each bench workload refuses to be timed when it did not do its work (no timings asserted).

A workload that silently did nothing (a refused command, an echo that came
back changed, a program that never ran) is fast, and its row would be a lie:
each must raise `WorkloadFailed` instead. These tests break one thing each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from bench import ble, links, program, roundtrip
from bench.rows import WorkloadFailed
from firmware_protocol import Button, Signer
from massager_ctl.device import Massager
from massager_ctl.programs.runner import Outcome


@pytest.fixture
def always_intensity_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Massager.set_intensity` sends 1 whatever it is asked: acknowledged, but not the work."""
    real = Massager.set_intensity

    async def one(self: Massager, level: int) -> None:
        await real(self, 1)

    monkeypatch.setattr(Massager, "set_intensity", one)


def test_the_bare_sim_exchange_refuses_frames_that_decode_to_something_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(roundtrip, "decode_message", lambda msg_type, payload: None)
    with pytest.raises(WorkloadFailed, match="bare frames decoded"):
        roundtrip.Bare().round_trip(0)


@pytest.mark.usefixtures("always_intensity_one")
def test_the_sim_round_trip_refuses_a_command_the_device_does_not_show() -> None:
    with pytest.raises(WorkloadFailed, match="intensity 2 was acknowledged but the device is at 1"):
        asyncio.run(roundtrip.side_by_side(10))


@pytest.mark.usefixtures("always_intensity_one")
@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_a_link_round_trip_refuses_a_command_the_device_does_not_show(kind: str) -> None:
    with pytest.raises(WorkloadFailed, match="intensity 2 was acknowledged"):
        asyncio.run(links.side_by_side(kind, 10))


def test_the_pty_echo_refuses_bytes_that_came_back_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def backwards(self: links._PtyEcho) -> None:
        os.write(self.master, os.read(self.master, 4096)[::-1])

    monkeypatch.setattr(links._PtyEcho, "_echo", backwards)
    with pytest.raises(WorkloadFailed, match="the pty echo sent"):
        asyncio.run(links.side_by_side("pty", 10))


def test_the_tcp_echo_refuses_bytes_that_came_back_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def shouted(self: links._EchoServer, data: bytes) -> None:
        self.transport.write(data.upper())

    monkeypatch.setattr(links._EchoServer, "data_received", shouted)
    with pytest.raises(WorkloadFailed, match="the tcp echo sent"):
        asyncio.run(links.side_by_side("tcp", 10))


def test_the_ble_echo_refuses_bytes_that_came_back_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = ble._Echo._written

    def backwards(self: ble._Echo, connection: Any, value: bytes) -> None:
        written(self, connection, value[::-1])

    monkeypatch.setattr(ble._Echo, "_written", backwards)
    with pytest.raises(WorkloadFailed, match="the GATT echo sent"):
        asyncio.run(ble.side_by_side(10))


def test_the_bare_link_program_refuses_a_link_the_firmware_does_not_trust(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Signed with a key the firmware does not hold, every START is refused and the
    # pump never runs: the row measured nothing so before it checked its own work.
    def a_stranger(key_id: int, key: bytes, next_counter: Callable[[], int]) -> Signer:
        return Signer(key_id, bytes(32), next_counter)

    monkeypatch.setattr(program, "Signer", a_stranger)
    with pytest.raises(WorkloadFailed, match="not authenticated"):
        program.firmware_and_bare_link()


def test_the_bare_link_program_refuses_sessions_that_end_before_their_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Leases a fifth of each step: every START is taken and the pump still runs for
    # more than 5 % of the program, but each session ends long before its step does
    # and the row would time a fifth of the work.
    real_start = program.Start

    def short(mode: int, intensity: int, lease_s: int) -> object:
        return real_start(mode, intensity, max(1, (lease_s - 5) // 5))

    monkeypatch.setattr(program, "Start", short)
    with pytest.raises(WorkloadFailed, match="session ended COMPLETED before its step did"):
        program.firmware_and_bare_link()


@pytest.mark.parametrize(
    ("outcome", "why"),
    [(Outcome.STOPPED, "program ended stopped"), (Outcome.COMPLETED, "the pump ran 0.0 s")],
)
@pytest.mark.parametrize("clock", ["full_stack", "full_stack_on_looptime"])
def test_the_full_stack_program_refuses_a_program_that_did_not_run(
    monkeypatch: pytest.MonkeyPatch, outcome: Outcome, why: str, clock: str
) -> None:
    # Said done (or not) at once: the simulated device never pumped.
    async def said(massager: Massager, profile: object) -> SimpleNamespace:
        return SimpleNamespace(outcome=outcome)

    monkeypatch.setattr(program, "run_program", said)
    with pytest.raises(WorkloadFailed, match=why):
        getattr(program, clock)()


def test_the_firmware_alone_refuses_a_session_that_never_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MODE instead of POWER: an idle device changes its mode and starts nothing.
    monkeypatch.setattr(program, "Button", SimpleNamespace(POWER=Button.MODE))
    with pytest.raises(WorkloadFailed, match="own session ended NONE"):
        program.firmware_alone()


def test_the_firmware_alone_refuses_a_session_shorter_than_the_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A third of the program: it completes and pumps more than 5 % of 45 minutes,
    # so the row timed a third of the work as all of it.
    real = program.DeviceConfig

    def fifteen_minutes(**fields: Any) -> Any:
        return real(**{**fields, "remote_session_s": 15 * 60})

    monkeypatch.setattr(program, "DeviceConfig", fifteen_minutes)
    with pytest.raises(WorkloadFailed, match="ended COMPLETED before the 45 minutes"):
        program.firmware_alone()
