"""Broken hardware: the firmware finds every named fault, latches it, vents, and stays latched.

Each fault of `simulator.faults.CATALOGUE` strikes a running session; the firmware
must notice it from what it senses, latch the bit the catalogue names, end the
session, vent, refuse START, refuse RESET_FAULT while the part is broken and take
it once the part is mended. Then the other side: hours of normal use latch nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys

import pytest

import firmware_protocol as fp
from firmware_protocol import EndReason, ErrorCode, Fault, Mode, SessionState
from simulator import DeviceConfig, Plant
from simulator.diagnostics import self_test
from simulator.faults import (
    CATALOGUE,
    LINK_NOISE,
    ScheduledFault,
    inject,
    parse_fault,
    parse_faults,
)
from simulator.firmware import RESET_BELOW_MMHG
from simulator.noise import NoisyHost

from .rig import Rig

ACK = "ack"
STRIKES_AT = 30.0
"""Device seconds after switch-on when the fault strikes (the session starts at once)."""
FOUND_WITHIN = {"sensor-drift": 90.0, "battery-drain": 180.0}
"""How long the firmware may take to notice; 60 s for the others."""


def nak(code: ErrorCode) -> str:
    return f"nak {code.name}"


def broken_session(name: str, mode: int = Mode.WAVE, level: int = 2) -> tuple[Rig, float]:
    """A session that ``name`` strikes at `STRIKES_AT`; returns the rig once the device faulted
    and the seconds the firmware took to notice."""
    rig = Rig()
    rig.connect()
    inject(rig.plant, ScheduledFault(name, STRIKES_AT))
    assert rig.command(fp.Start(mode, level, 3000)) == ACK
    rig.run(STRIKES_AT - 1)
    assert rig.fw.state == SessionState.RUNNING
    assert rig.fw.faults == Fault.NONE  # nothing is found before it breaks
    limit = STRIKES_AT + FOUND_WITHIN.get(name, 60.0)
    while rig.fw.state != SessionState.FAULT and rig.now < limit:
        rig.run(0.25)
    return rig, rig.now - STRIKES_AT


CASES = [(name, Mode.WAVE) for name in CATALOGUE] + [
    (name, Mode.PULSE) for name in CATALOGUE if name != "inlet-stuck-open"
]
"""Every fault in wave mode, and in pulse mode those that show in it (an inlet stuck open
shows only while other chambers fill alone, which pulse mode never does)."""


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n}-{Mode(m).name}" for n, m in CASES])
def test_every_fault_is_found_latched_vented_and_held_until_mended(name: str, mode: int) -> None:
    kind = CATALOGUE[name]
    rig, took = broken_session(name, mode)
    fw = rig.fw
    assert fw.state == SessionState.FAULT, f"{name} was not noticed in {took:.0f} s"
    assert fw.faults == kind.latches
    assert [e.faults for e in rig.events_of(fp.FaultRaised)] == [kind.latches]
    assert [e.reason for e in rig.events_of(fp.SessionEnded)] == [kind.ends_with]
    assert fw.status().faults == kind.latches  # what a controller is told
    # Vented: every exhaust and the dump valve open, the pump commanded off. The dump
    # valve empties even a chamber whose exhaust is stuck shut.
    rig.run(3)
    snapshot = fw.snapshot()
    assert snapshot.dump
    assert all(rig.plant.exhausts)
    assert not any(rig.plant.inlets)
    assert not rig.plant.pump
    assert snapshot.pump == (name == "pump-stuck-on")  # only a stuck relay keeps it turning
    assert max(snapshot.pressures_mmhg) < RESET_BELOW_MMHG
    # Latched: no start, and no reset while the part is broken.
    assert rig.command(fp.Start(Mode.WAVE, 1, 60)) == nak(ErrorCode.FAULT_LATCHED)
    rig.run(5)
    assert rig.command(fp.ResetFault()) == nak(ErrorCode.FAULT_PERSISTS)
    rig.fw.press(fp.Button.POWER, rig.now)  # the remote's power button cannot clear it either
    assert fw.state == SessionState.FAULT
    # Mended: the reset is taken, nothing restarts, and a new session runs clean.
    kind.repair(rig.plant)
    rig.run(5)
    assert rig.command(fp.ResetFault()) == ACK
    assert fw.state == SessionState.IDLE
    assert fw.faults == Fault.NONE
    rig.run(5)
    assert fw.state == SessionState.IDLE
    assert rig.command(fp.Start(mode, 2, 600)) == ACK
    rig.run(120)
    assert fw.state == SessionState.RUNNING
    assert fw.faults == Fault.NONE


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_each_fault_is_found_in_good_time(name: str) -> None:
    _, took = broken_session(name)
    bound = {
        "pump-dead": 5,  # the next fill stalls for two seconds
        "pump-stuck-on": 12,  # five seconds of current with the pump commanded off
        "sensor-stuck": 5,  # ten equal readings
        "chamber-leak": 10,  # three seconds of holding
        "inlet-stuck-shut": 25,  # the foot's next fill: within one wave (22 s)
        "exhaust-stuck-shut": 25,  # its next release
        "inlet-stuck-open": 30,  # two fills of other chambers
        "sensor-drift": 60,  # 30 mmHg a minute; found above 10 mmHg in an emptied chamber
        "battery-drain": 120,
    }[name]
    assert took <= bound


def test_a_stuck_inlet_shut_is_told_from_a_dead_pump() -> None:
    # Both leave a chamber that will not fill; only with a dead pump do all of them stall.
    for name, expected in (("inlet-stuck-shut", Fault.VALVE), ("pump-dead", Fault.PUMP)):
        for level in (1, 3):
            rig, _ = broken_session(name, Mode.WAVE, level)
            assert rig.fw.faults == expected, (name, level)


def test_a_failing_battery_first_ends_the_session_then_latches_when_empty() -> None:
    rig, _ = broken_session("battery-drain")
    ended_low = rig.events_of(fp.SessionEnded)
    assert [e.reason for e in ended_low] == [EndReason.BATTERY]
    assert rig.plant.battery_pct == 0.0
    assert rig.fw.faults == Fault.BATTERY_EMPTY
    assert rig.fw.last_end == EndReason.BATTERY  # the latch came later, with no session on


@pytest.mark.parametrize("mode", [Mode.WAVE, Mode.PULSE])
@pytest.mark.parametrize("chamber", [0, 2, 5])
@pytest.mark.parametrize("at", [20.0, 23.3, 26.6, 29.9, 33.2, 36.5, 39.8])
def test_a_runaway_pump_behind_a_stuck_inlet_still_trips_the_ceiling_first(
    mode: int, chamber: int, at: float
) -> None:
    # A pump stuck on, an inlet stuck open and that chamber's exhaust stuck shut: the
    # chamber climbs until the ceiling trip; no slower rule may claim it first.
    rig = Rig()
    rig.connect()
    assert rig.command(fp.Start(mode, 3, 600)) == ACK
    rig.run(at)
    faults = rig.plant.faults
    faults.pump_stuck_on, faults.inlet_stuck_open, faults.exhaust_stuck_shut = (
        True,
        {chamber},
        {chamber},
    )
    rig.run(30)
    assert rig.fw.faults == Fault.OVERPRESSURE
    assert rig.plant.max_pressure_seen <= rig.fw.config.ceiling_mmhg


def normal_use(seed: int, hours: float) -> Rig:
    """Sessions of every mode, level and kind of cycle, with the changes a person makes."""
    rng = random.Random(seed)
    rig = Rig(seed=seed, charging=True)
    rig.connect()
    cycles = [
        fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 30, 50, 60, 40, (450, 380, 310, 240) * 2),
        fp.SetCycle(fp.CycleOrder.SIMULTANEOUS, 30, 50, 250, 300, (290,) * 8),  # the trial
        fp.SetCycle(fp.CycleOrder.SIMULTANEOUS, 200, 100, 200, 0, (1200,) * 8),  # slow ramps
        fp.SetCycle(fp.CycleOrder.SEQUENTIAL, 5, 5, 5, 0, (150, 120, 100, 80) * 2),
    ]
    plan = [(mode, level) for mode in (Mode.WAVE, Mode.PULSE) for level in (1, 2, 3)]
    plan += [(Mode.CYCLE, i) for i in range(len(cycles))]
    while rig.now < hours * 3600:
        rng.shuffle(plan)
        for mode, level in plan:
            if mode == Mode.CYCLE:
                assert rig.command(cycles[level]) == ACK
            assert rig.command(fp.Start(mode, level if mode != Mode.CYCLE else 0, 900)) == ACK
            for _ in range(rng.randint(1, 6)):
                rig.run(rng.uniform(20, 150), step=0.5)
                change = rng.random()
                if change < 0.3 and mode != Mode.CYCLE:
                    rig.command(fp.SetIntensity(rng.randint(1, 3)))
                elif change < 0.45:
                    rig.command(fp.Pause())
                    rig.run(rng.uniform(1, 20), step=0.5)
                    rig.command(fp.Resume())
                elif change < 0.55:
                    rig.fw.press(rng.choice([fp.Button.PLUS, fp.Button.MINUS]), rig.now)
            rig.command(fp.Stop())
            rig.run(rng.uniform(1, 30), step=0.5)
    return rig


@pytest.mark.parametrize("seed", [1, 2])
def test_hours_of_normal_use_latch_nothing(seed: int) -> None:
    rig = normal_use(seed, hours=1.5)
    assert rig.fw.config.sensor_noise_mmhg > 0  # the noise the rules must not mistake
    assert rig.events_of(fp.FaultRaised) == []
    assert rig.fw.faults == Fault.NONE
    assert rig.fw.diagnostics.probes == 0  # healthy fills never need the pump probed
    ended = {e.reason for e in rig.events_of(fp.SessionEnded)}
    assert ended <= {EndReason.STOPPED, EndReason.COMPLETED}
    assert len(rig.events_of(fp.SessionEnded)) >= 15


def test_the_reset_self_test_passes_healthy_hardware_and_fails_each_broken_part() -> None:
    def plant() -> Plant:
        return Plant(DeviceConfig(seed=5), random.Random(5))

    assert self_test(plant())
    healthy = plant()
    healthy.pressures = [15.0] * 8  # just below the reset limit
    assert self_test(healthy)
    for name in ("pump-dead", "inlet-stuck-open", "inlet-stuck-shut", "exhaust-stuck-shut",
                 "chamber-leak"):  # fmt: skip
        broken = plant()
        CATALOGUE[name].inject(broken)
        assert not self_test(broken), name
        before = list(broken.pressures)
        CATALOGUE[name].repair(broken)
        assert self_test(broken), name
        assert broken.pressures == before  # the test runs on a copy


def test_a_scheduled_fault_strikes_at_its_second_and_the_physics_stays_exact() -> None:
    def filling() -> Plant:
        plant = Plant(DeviceConfig(seed=2), random.Random(2))
        plant.exhausts = [False] * 8
        plant.inlets = [True] + [False] * 7
        plant.pump = True
        return plant

    scheduled, by_hand = filling(), filling()
    inject(scheduled, parse_fault("pump-dead@2.5"))
    assert scheduled.pending
    scheduled.advance(10.0)  # one step across the moment it strikes
    by_hand.advance(2.5)
    by_hand.faults.pump_dead = True
    by_hand.advance(7.5)
    assert not scheduled.pending
    assert scheduled.faults.pump_dead
    assert scheduled.pressures == pytest.approx(by_hand.pressures, rel=1e-12)
    assert scheduled.clock == pytest.approx(10.0)


def test_fault_names_parse_and_bad_ones_say_what_exists() -> None:
    assert parse_faults(" pump-dead@30 , sensor-stuck ") == [
        ScheduledFault("pump-dead", 30.0),
        ScheduledFault("sensor-stuck", 0.0),
    ]
    assert parse_faults("") == []
    with pytest.raises(ValueError, match="no fault 'pump-gone'; faults: pump-dead, "):
        parse_fault("pump-gone")
    with pytest.raises(ValueError, match="'soon' in 'pump-dead@soon' is not a number"):
        parse_fault("pump-dead@soon")
    with pytest.raises(ValueError, match="0 seconds or later"):
        parse_fault("pump-dead@-1")
    with pytest.raises(ValueError, match="faults: Value error, no fault 'nope'"):
        DeviceConfig.from_options({"faults": "nope"})
    with pytest.raises(ValueError, match="link-noise is for massager-sim serve"):
        DeviceConfig.from_options({"faults": LINK_NOISE})
    config = DeviceConfig.from_options({"faults": "sensor-stuck@1,chamber-leak"})
    plant = Plant(config, random.Random(1))
    assert plant.faults.leak_multiplier  # from the start
    assert not plant.faults.sensor_stuck  # at one second
    assert plant.pending
    plant.advance(1.0)
    assert plant.faults.sensor_stuck


async def test_link_noise_damages_bytes_from_its_second_and_the_protocol_copes() -> None:
    loop = asyncio.get_running_loop()
    host = NoisyHost(DeviceConfig(seed=3), start_s=10.0, error_rate=0.01, seed=3)
    host.start()
    ctl = fp.Connection(fp.Role.CONTROLLER)
    host.attach(lambda data: ctl.receive_data(data, loop.time()))
    answered: list[int] = []
    asked: list[int] = []

    async def exchange(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(0.05)
            ctl.handle_timer(loop.time())
            host.feed(ctl.data_to_send())
            answered.extend(e.seq for e in ctl.events() if isinstance(e, fp.Replied))

    asked.append(ctl.send(fp.Hello("noisy"), loop.time()))
    await exchange(9.0)
    assert host.damaged == 0  # not before its time
    assert ctl.state == fp.LinkState.READY
    for _ in range(60):
        asked.append(ctl.send(fp.GetStatus(), loop.time()))
        await exchange(0.5)
    host.stop()
    assert host.damaged > 20
    assert ctl.stats.crc_errors + ctl.stats.malformed > 0  # the noise reached the controller
    assert ctl.stats.retransmits > 0  # and the device: requests were lost and sent again
    assert len(answered) >= len(asked) * 0.9  # yet nearly every request was answered


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args], capture_output=True, text=True, timeout=30
    )


def test_massager_sim_run_with_a_fault_shows_it_latched() -> None:
    result = sim("run", "--press", "power", "--fault", "pump-dead@5", "--for", "30",
                 "--every", "5", "--speed", "100", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    states = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["state"] for s in states[:2]] == ["idle", "running"]
    assert states[-1]["state"] == "fault"
    assert states[-1]["faults"] == "pump"
    assert states[-1]["last_end"] == "fault"
    assert states[-1]["dump"] is True
    assert max(states[-1]["pressures_mmhg"]) < 5


def test_massager_sim_lists_its_faults_and_refuses_unknown_ones() -> None:
    listed = json.loads(sim("faults", "--json").stdout)
    assert set(listed) == {*CATALOGUE, LINK_NOISE}
    bad = sim("run", "--fault", "gremlins", "--for", "0")
    assert bad.returncode == 2
    assert "no fault 'gremlins'; faults: pump-dead" in bad.stderr
    no_link = sim("run", "--fault", "link-noise", "--for", "0")
    assert no_link.returncode == 2
    assert "link-noise needs a link: use serve" in no_link.stderr
