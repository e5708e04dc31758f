"""A fault reaches the person in plain words: on the command line, in the journal, over MQTT.

The simulated massager is broken with ``sim://?faults=...`` (see `simulator.faults`);
its firmware finds the fault, and each path must say which and what to do.
"""

from __future__ import annotations

import json

import pytest

from firmware_protocol import Fault
from massager_ctl.device import Massager
from massager_ctl.journal import Journal
from massager_ctl.models import FAULT_EXPLANATIONS, explain_fault, explain_faults, fault_bit_names
from massager_ctl.paths import journal_file
from massager_ctl.programs.profiles import find_profile
from massager_ctl.programs.runner import Outcome, run_program
from tests.broker import Broker
from tests.massager_ctl.test_bridge import bridged, fresh_name
from tests.massager_ctl.test_cli import ctl, json_lines

PUMP_SAYS = "pump: the pump ran but no pressure rose"
CLEAR = "then clear the fault with the remote's power button (or massager-ctl reset)"


def test_every_fault_bit_has_words_and_an_unknown_one_is_still_explained() -> None:
    for bit in Fault:
        if bit == Fault.NONE:
            continue
        [name] = fault_bit_names(bit)
        assert name in FAULT_EXPLANATIONS
        assert explain_fault(name).startswith(f"{name.replace('_', ' ')}: ")
        assert explain_fault(name).endswith(f"{CLEAR}.")
    assert explain_faults(("leak", "valve")).count(CLEAR) == 2
    [unknown] = fault_bit_names(Fault(1 << 12))
    assert explain_fault(unknown).startswith("fault-bit-12: a fault this version")


async def test_a_program_ended_by_a_fault_says_which_and_what_to_do() -> None:
    async with Massager.connect("sim://leaky?seed=1&faults=chamber-leak@60") as m:
        result = await run_program(m, find_profile("evening-45"))
    assert result.outcome == Outcome.FAULT
    assert result.message.startswith("the massager stopped on a fault. leak: a chamber loses air")
    assert "Check the wraps and the hose connections for a leak" in result.message
    assert result.message.endswith(f"{CLEAR}.")
    assert result.pressure_s == pytest.approx(60, abs=15)


def test_the_command_line_and_the_journal_explain_a_fault() -> None:
    device = "sim://?seed=1&faults=pump-dead@30"
    text = ctl("start", "--device", device, "--mode", "wave", "--intensity", "2",
               "--duration", "5m", "--speed", "100")  # fmt: skip
    assert text.returncode == 5, text.stderr
    shown = " ".join(text.stdout.split())  # the terminal wraps long lines
    assert PUMP_SAYS in shown
    assert CLEAR in shown
    scripted = ctl("start", "--device", device, "--mode", "pulse", "--intensity", "3",
                   "--duration", "5m", "--speed", "100", "--json")  # fmt: skip
    assert scripted.returncode == 5, scripted.stderr
    result = json_lines(scripted.stdout)[-1]
    assert result["outcome"] == "fault"
    assert result["final_status"]["faults"] == ["pump"]
    assert result["message"].startswith(f"the massager stopped on a fault. {PUMP_SAYS}")
    sessions = Journal(journal_file()).sessions()
    assert [s.ended for s in sessions] == ["fault", "fault"]
    assert all(PUMP_SAYS in s.message and CLEAR in s.message for s in sessions)
    history = json.loads(ctl("history", "--all", "--json").stdout)  # demos: shown when asked
    assert PUMP_SAYS in history["sessions"][-1]["message"]


@pytest.mark.looptime(False)
async def test_the_mqtt_state_explains_the_fault(broker: Broker) -> None:
    name = fresh_name()
    # A stuck sensor is found at rest too: ten equal readings, a tenth of a second apart.
    url = f"sim://{name}?faults=sensor-stuck&status_interval_ms=100"
    async with bridged(broker, name, url) as seen:
        state = await seen.wait(f"massager/{name}", lambda p: p["state"] == "fault", within=10)
    assert state["faults"] == ["sensor"]
    assert state["fault"].startswith("sensor: a pressure sensor reads wrong")
    assert state["fault"].endswith(f"{CLEAR}.")
