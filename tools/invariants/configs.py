"""The devices the firmware is fuzzed on, and the key a paired one holds.

`PRESETS` are the reference device and corners of its configuration space (one
chamber, a nearly flat battery, a pump far stronger than its sampling, short
limits that a short input can reach); `fuzz_config` builds one, served without
pairing so that sessions run. A device fuzzed paired holds `FUZZ_KEY`
(`fuzz_memory`), which the harness signs with as its paired controller.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from firmware_protocol import Leg, Position
from simulator import DeviceConfig
from simulator.memory import DeviceMemory


def _unpaired() -> dict[str, Any]:
    # With pairing required, every unauthenticated START is refused and no session
    # ever runs; the fuzzers exercise sessions, so they serve the device open.
    return {"pairing_required": False} if "pairing_required" in DeviceConfig.model_fields else {}


# Beyond the reference device, sample 5 times slower than SPEC 10.1 asks, so that a
# fuzz input is cheap. The ceiling still holds (the relief valve), and overshoot
# trips the fault more often, which the fuzzer wants to reach anyway.
_SHORT = {"session_cap_s": 60, "max_lease_s": 60, "remote_session_s": 60, "control_period_s": 0.25}
_PATIENT = {"watchdog_ms": 10000}  # fewer keepalives to send while a session runs
PRESETS: tuple[dict[str, Any], ...] = (
    {},  # the reference device
    {**_SHORT, "pause_limit_s": 5, "watchdog_ms": 250, "status_interval_ms": 250},
    {**_SHORT, **_PATIENT, "legs": (Leg.LEFT,), "positions": (Position.FOOT,),
     "levels_mmhg": (50.0,), "cycle": False, "remote": False, "battery": False},
    {**_SHORT, **_PATIENT, "battery_pct": 6.0, "min_start_battery_pct": 5.5,
     "low_battery_pct": 5.0, "drain_pumping_pct_per_h": 600.0},
    # A pump far stronger than its sampling: fills overshoot, and the trip latches.
    {**_SHORT, **_PATIENT, "fill_tau_s": 0.1, "inlet_tau_s": 0.1, "supervise_period_s": 0.5,
     "sensor_noise_mmhg": 2.0, "hysteresis_mmhg": 0.5},
    {**_SHORT, "positions": tuple(Position), "charging": True, "battery_pct": 3.0,
     "sensor_noise_mmhg": 0.0, "watchdog_ms": 5000, "status_interval_ms": 1000},
)  # fmt: skip
"""Devices worth fuzzing: the reference one and corners of the configuration space."""


@cache
def fuzz_config(preset: int, seed: int = 1) -> DeviceConfig:
    """The device of ``PRESETS[preset % len(PRESETS)]``, seeded, with pairing off."""
    return DeviceConfig(seed=seed, **PRESETS[preset % len(PRESETS)], **_unpaired())


FUZZ_KEY = bytes(range(32))
"""The key a paired fuzzed device holds (key id `FUZZ_KEY_ID`); its controller signs with it."""
FUZZ_KEY_ID = 1


def fuzz_memory(paired: bool) -> DeviceMemory:
    """A fresh device's memory; ``paired``: holding `FUZZ_KEY` as key `FUZZ_KEY_ID`."""
    # A device that holds a key enforces SPEC 12 whatever its config says, as a
    # device does once anyone has paired with it.
    memory = DeviceMemory()
    if paired:
        key_id = memory.pairings.add("fuzz", FUZZ_KEY)
        assert key_id == FUZZ_KEY_ID
    return memory
