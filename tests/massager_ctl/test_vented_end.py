"""A program is called done only once the massager has shown its chambers empty.

Found by a probe: with an exhaust stuck shut near the end, ``start`` said "the
program ran to the end (chambers at 74 mmHg or less)" and exited 0, while a
chamber held 74 mmHg for ever, no fault latched, the dump valve shut. The
massager now latches a fault (SPEC 10.11) and the controller says so, exit 5;
one that does not (an older firmware, here its watch switched off below the
transport) gets an honest "not seen to empty", exit 5 too.
"""

from __future__ import annotations

import pytest

from firmware_protocol import Fault, SessionState
from massager_ctl.programs.profiles import Profile
from massager_ctl.programs.runner import Outcome
from massager_ctl.programs.supervisor import ProgramSupervisor
from massager_ctl.transports.sim import simulated_device
from massager_ctl.urls import SimAddress
from simulator.diagnostics import Diagnostics
from tests.massager_ctl.test_cli import ctl

STUCK = "sim://?faults=exhaust-stuck-shut@50&seed=1&charging=true"
ONE_MINUTE = Profile.model_validate(
    {
        "name": "one",
        "title": "One minute",
        "description": "d",
        "why": "w",
        "steps": [{"mode": "wave", "intensity": 2, "minutes": 1}],
    }
)


def test_the_cli_says_a_program_that_left_a_chamber_full_ended_on_a_fault() -> None:
    result = ctl(
        "start", "--mode", "wave", "--intensity", "2", "--duration", "1m",
        "--device", STUCK, "--speed", "60", timeout=120,
    )  # fmt: skip
    assert result.returncode == 5, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "the program ran to the end, but then the massager found a fault" in said
    assert "valve" in said
    assert "Traceback" not in result.stderr


async def test_a_program_ends_on_the_fault_the_massager_latched_as_it_vented() -> None:
    address = SimAddress(name="stuck", options={"faults": "exhaust-stuck-shut@50", "seed": "1"})
    result = await ProgramSupervisor(address, ONE_MINUTE).run()
    assert result.outcome is Outcome.FAULT
    assert result.exit_code == 5
    assert result.final_status is not None
    assert "valve" in result.final_status.faults
    host = simulated_device(address)
    host.sync()
    snapshot = host.firmware.snapshot()
    assert snapshot.state is SessionState.FAULT
    assert snapshot.dump
    assert max(snapshot.pressures_mmhg) < 5.0


async def test_a_massager_that_never_empties_nor_says_why_is_not_called_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An older firmware: it watches nothing (below the transport, where hardware is).
    monkeypatch.setattr(Diagnostics, "observe", lambda *args: Fault.NONE)
    address = SimAddress(name="old", options={"faults": "exhaust-stuck-shut@50", "seed": "1"})
    result = await ProgramSupervisor(address, ONE_MINUTE).run()
    assert result.outcome is Outcome.NOT_VENTED
    assert result.exit_code == 5
    assert "chambers still read up to" in result.message
    assert "massager-ctl vent" in result.message
    host = simulated_device(address)
    host.sync()
    assert max(host.firmware.snapshot().pressures_mmhg) > 20  # it really is still full
