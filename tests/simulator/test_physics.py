"""The plant: exact integration, relief valve, leak, noise, battery."""

from __future__ import annotations

import random
import statistics

import pytest

from simulator import DeviceConfig, Plant


def plant(**config: object) -> Plant:
    return Plant(DeviceConfig(seed=3, **config), random.Random(3))  # type: ignore[arg-type]


def test_one_long_step_equals_many_small_ones() -> None:
    coarse, fine = plant(), plant()
    for p in (coarse, fine):
        p.exhausts = [False] * 8
        p.inlets = [True, True] + [False] * 6
        p.pump = True
    coarse.advance(1.3)
    for _ in range(13000):
        fine.advance(0.0001)
    assert coarse.pressures == pytest.approx(fine.pressures, rel=1e-6)


def test_fill_slows_when_the_pump_is_shared_and_the_inlet_limits_a_lone_chamber() -> None:
    rises = []
    for count in (1, 2, 4, 8):
        p = plant()
        p.exhausts = [False] * 8
        p.inlets = [i < count for i in range(8)]
        p.pump = True
        p.advance(0.05)
        rises.append(p.pressures[0] / 0.05)
    one, two, four, eight = rises
    assert eight < one / 2.5  # the pump's flow is shared
    # One inlet's orifice caps the rate: alone is no faster than sharing with two.
    assert one == pytest.approx(two)
    assert four < two  # beyond three chambers the pump, not the inlet, sets the pace
    assert one < 300 / 4.5 * 1.01


def test_relief_valve_holds_the_ceiling_whatever_happens() -> None:
    p = plant()
    p.exhausts = [False] * 8
    p.faults.pump_stuck_on = True
    p.faults.inlet_stuck_open = {3}
    p.advance(60.0)
    assert p.pressures[3] == pytest.approx(130.0)
    assert p.max_pressure_seen <= 130.0
    assert p.relief_events > 0


def test_exhaust_empties_and_leak_is_slow() -> None:
    p = plant()
    p.pressures = [100.0] * 8
    p.exhausts = [True] * 4 + [False] * 4
    p.advance(5.0)
    assert max(p.pressures[:4]) < 1.0
    assert 95.0 < p.pressures[4] < 100.0


def test_sensor_noise_has_the_configured_spread() -> None:
    p = plant(sensor_noise_mmhg=0.5)
    p.pressures = [50.0] * 8
    readings = [p.read(0) for _ in range(20000)]
    assert statistics.fmean(readings) == pytest.approx(50.0, abs=0.02)
    assert statistics.stdev(readings) == pytest.approx(0.5, rel=0.05)
    assert plant().read(5) == 0.0  # never below zero, even with noise


def test_battery_drains_faster_while_pumping_and_charges_when_plugged() -> None:
    idle, pumping, charging = plant(), plant(), plant(charging=True, battery_pct=50.0)
    pumping.pump = True
    for p in (idle, pumping, charging):
        p.advance(3600.0)
    assert idle.battery_pct == pytest.approx(99.0)
    assert pumping.battery_pct == pytest.approx(40.0)
    assert charging.battery_pct == pytest.approx(90.0)
