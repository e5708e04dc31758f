"""Named hardware faults to break a simulated massager with, for tests and ``massager-sim``.

Each fault in `CATALOGUE` breaks one part of the plant (`simulator.physics.Plant`,
through its `InjectedFaults`, below the firmware, where hardware would be), says
how to repair it, and says which `Fault` bit the firmware is expected to latch
when it notices. The firmware is never told: it finds out from what it senses
(see `simulator.diagnostics`).

A fault is written ``NAME`` or ``NAME@SECONDS``: the second form strikes that
many device seconds after the device was switched on, so a session can be
running when it does (``massager-sim run --press power --fault pump-dead@30``,
``sim://?faults=pump-dead@30,sensor-drift``).

``link-noise`` is not a hardware fault: it damages bytes on the link at the
device's end of a served endpoint (``massager-sim serve --fault link-noise``),
through `simulator.noise.NoisyHost`; the protocol's checksums and retransmissions
must cope.

This module imports nothing else of the simulator: the config validates its
``faults`` with `parse_faults`, and the plant schedules them with `schedule_all`,
so both build on it. A fault reaches the plant only through `Breakable`, the
few parts of it a fault touches.

>>> [str(f) for f in parse_faults("pump-dead@30, sensor-stuck")]
['pump-dead@30', 'sensor-stuck']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol

from firmware_protocol import EndReason, Fault

STUCK_SENSOR_MMHG = 42.0
"""What a stuck sensor reads: a mid-scale value, so that a vented device cannot hide it."""
DRIFT_MMHG_PER_S = 0.5
"""How fast a drifting sensor's offset grows: 30 mmHg a minute."""
LEAK_MULTIPLIER = 50.0
"""A leaking chamber loses air this many times faster than normal (a time constant of 6 s)."""
BATTERY_DRAIN_MULTIPLIER = 600.0
"""A failing battery drains this many times faster: a full one runs low in about a minute
of pumping, and from low to empty in about half a minute."""


@dataclass
class InjectedFaults:
    """Hardware faults a test can switch on; the firmware must cope with them.

    Chambers are numbered as the firmware numbers them (leg by leg, foot first).
    """

    pump_stuck_on: bool = False
    """The motor runs whatever the firmware commands (a welded relay)."""
    pump_dead: bool = False
    """The motor turns (it draws current) but moves no air: a split diaphragm, a hose off."""
    inlet_stuck_open: set[int] = field(default_factory=set)
    inlet_stuck_shut: set[int] = field(default_factory=set)
    exhaust_stuck_shut: set[int] = field(default_factory=set)
    leak_multiplier: dict[int, float] = field(default_factory=dict)
    """Chamber -> how many times faster than normal it leaks (a torn wrap, a loose hose)."""
    sensor_offset_mmhg: float = 0.0
    """Added to every chamber's reading."""
    sensor_stuck: dict[int, float] = field(default_factory=dict)
    """Chamber -> the constant its sensor reads, whatever the pressure (no noise either)."""
    sensor_drift_mmhg_per_s: dict[int, float] = field(default_factory=dict)
    """Chamber -> how fast its sensor's offset grows."""
    sensor_drifted_mmhg: dict[int, float] = field(default_factory=dict)
    """Chamber -> how far its sensor has drifted so far (grown by `Plant.advance`)."""
    battery_drain_multiplier: float = 1.0
    """How many times faster than normal the battery drains (a failing cell)."""

    @property
    def active(self) -> bool:
        """Whether anything is broken at all."""
        return any(getattr(self, f.name) != _HEALTHY[f.name] for f in fields(self))


_HEALTHY = {f.name: getattr(InjectedFaults(), f.name) for f in fields(InjectedFaults)}


class Shape(Protocol):
    """What a fault needs to know of a device (`simulator.config.DeviceConfig` is one)."""

    @property
    def chamber_count(self) -> int:
        """How many chambers the device has."""
        ...

    @property
    def positions(self) -> Sequence[object]:
        """The chamber positions of one leg, from the foot upward."""
        ...


class Breakable(Protocol):
    """The parts of a plant a fault touches (`simulator.physics.Plant` is one).

    Written out here so that the catalogue needs nothing of the physics, which
    builds on the catalogue to schedule the faults its config names.
    """

    charging: bool

    @property
    def config(self) -> Shape:
        """The device the plant is."""
        ...

    @property
    def faults(self) -> InjectedFaults:
        """Its broken parts."""
        ...

    def schedule(self, at_s: float, change: Callable[[Breakable], None]) -> None:
        """Call ``change(plant)`` when the plant's clock reaches ``at_s``."""
        ...


def _chamber(plant: Breakable, wanted: int) -> int:
    # A device with fewer chambers than the default still gets the fault somewhere.
    return wanted % plant.config.chamber_count


def _thigh(plant: Breakable) -> int:
    """The left leg's top chamber: a wave keeps it empty while the others fill."""
    return len(plant.config.positions) - 1


@dataclass(frozen=True)
class FaultKind:
    """One named fault: what breaks, how to repair it, and what the firmware should latch."""

    name: str
    description: str
    latches: Fault
    """The bit the firmware latches when it notices."""
    inject: Callable[[Breakable], None]
    repair: Callable[[Breakable], None]
    ends_with: EndReason = EndReason.FAULT
    """How a session running when it strikes ends (a failing battery ends it as low first)."""


def _set_pump_dead(on: bool) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        plant.faults.pump_dead = on

    return change


def _set_pump_stuck_on(on: bool) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        plant.faults.pump_stuck_on = on

    return change


def _valve(
    which: str, where: Callable[[Breakable], int], broken: bool
) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        chambers: set[int] = getattr(plant.faults, which)
        chamber = _chamber(plant, where(plant))
        if broken:
            chambers.add(chamber)
        else:
            chambers.discard(chamber)

    return change


def _leak(broken: bool) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        chamber = _chamber(plant, 1)
        if broken:
            plant.faults.leak_multiplier[chamber] = LEAK_MULTIPLIER
        else:
            plant.faults.leak_multiplier.pop(chamber, None)

    return change


def _stuck_sensor(broken: bool) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        chamber = _chamber(plant, 1)
        if broken:
            plant.faults.sensor_stuck[chamber] = STUCK_SENSOR_MMHG
        else:
            plant.faults.sensor_stuck.pop(chamber, None)

    return change


def _drifting_sensor(broken: bool) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        chamber = _chamber(plant, 2)
        faults = plant.faults
        if broken:
            faults.sensor_drift_mmhg_per_s[chamber] = DRIFT_MMHG_PER_S
        else:  # a new (or recalibrated) sensor reads true again
            faults.sensor_drift_mmhg_per_s.pop(chamber, None)
            faults.sensor_drifted_mmhg.pop(chamber, None)

    return change


def _battery(broken: bool) -> Callable[[Breakable], None]:
    def change(plant: Breakable) -> None:
        if broken:
            plant.faults.battery_drain_multiplier = BATTERY_DRAIN_MULTIPLIER
        else:  # a new cell, and the charger plugged in: an empty battery stays empty otherwise
            plant.faults.battery_drain_multiplier = 1.0
            plant.charging = True

    return change


def _kind(
    name: str,
    description: str,
    latches: Fault,
    change: Callable[[bool], Callable[[Breakable], None]],
    ends_with: EndReason = EndReason.FAULT,
) -> FaultKind:
    return FaultKind(name, description, latches, change(True), change(False), ends_with)


CATALOGUE: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        _kind(
            "pump-dead",
            "the pump runs but moves no air (a split diaphragm, a hose off "
            "the pump): nothing fills",
            Fault.PUMP,
            _set_pump_dead,
        ),
        _kind(
            "pump-stuck-on",
            "the pump will not stop (a welded relay): it runs while commanded off",
            Fault.PUMP,
            _set_pump_stuck_on,
        ),
        _kind(
            "inlet-stuck-open",
            "the left thigh's inlet valve stays open: it fills whenever the pump runs",
            Fault.VALVE,
            lambda broken: _valve("inlet_stuck_open", _thigh, broken),
        ),
        _kind(
            "inlet-stuck-shut",
            "the left foot's inlet valve stays shut: that chamber cannot fill",
            Fault.VALVE,
            lambda broken: _valve("inlet_stuck_shut", lambda _: 0, broken),
        ),
        _kind(
            "exhaust-stuck-shut",
            "the left foot's exhaust valve stays shut: that chamber "
            "cannot empty (only the dump valve lets it out)",
            Fault.VALVE,
            lambda broken: _valve("exhaust_stuck_shut", lambda _: 0, broken),
        ),
        _kind(
            "chamber-leak",
            f"the left calf leaks {LEAK_MULTIPLIER:g}x faster than normal "
            "(a torn wrap, a loose hose): the pump runs on and on to hold it",
            Fault.LEAK,
            _leak,
        ),
        _kind(
            "sensor-stuck",
            f"the left calf's pressure sensor reads {STUCK_SENSOR_MMHG:g} "
            "mmHg whatever the pressure",
            Fault.SENSOR,
            _stuck_sensor,
        ),
        _kind(
            "sensor-drift",
            f"the left knee's pressure sensor drifts upward by {DRIFT_MMHG_PER_S:g} mmHg a second",
            Fault.SENSOR,
            _drifting_sensor,
        ),
        _kind(
            "battery-drain",
            f"the battery drains {BATTERY_DRAIN_MULTIPLIER:g}x faster: "
            "a session ends on low battery, then the battery runs empty",
            Fault.BATTERY_EMPTY,
            _battery,
            EndReason.BATTERY,
        ),
    )
}
"""Every named hardware fault, by name."""

LINK_NOISE = "link-noise"
LINK_NOISE_DESCRIPTION = (
    "bytes on the served link are damaged or lost at the device's end (massager-sim serve only)"
)


@dataclass(frozen=True)
class ScheduledFault:
    """A fault and the device second it strikes at (0: from the start)."""

    name: str
    at_s: float = 0.0

    @property
    def kind(self) -> FaultKind | None:
        """The hardware fault, or None for ``link-noise``."""
        return CATALOGUE.get(self.name)

    def __str__(self) -> str:
        return f"{self.name}@{self.at_s:g}" if self.at_s else self.name


def injectable_fault_names() -> list[str]:
    """Every fault name `parse_fault` takes."""
    return [*CATALOGUE, LINK_NOISE]


def describe_faults() -> str:
    """One line per fault name, for ``--help``."""
    lines = [f"{kind.name}: {kind.description}" for kind in CATALOGUE.values()]
    return "\n".join([*lines, f"{LINK_NOISE}: {LINK_NOISE_DESCRIPTION}"])


def parse_fault(text: str) -> ScheduledFault:
    """``NAME`` or ``NAME@SECONDS`` as a `ScheduledFault`.

    Raises:
        ValueError: an unknown name (the message lists the known ones), or a time
            that is not a number of seconds from zero up.
    """
    name, _, at = text.strip().partition("@")
    name = name.strip().lower()
    if name not in injectable_fault_names():
        raise ValueError(f"no fault {name!r}; faults: {', '.join(injectable_fault_names())}")
    try:
        seconds = float(at) if at.strip() else 0.0
    except ValueError:
        raise ValueError(f"{at!r} in {text.strip()!r} is not a number of seconds") from None
    if not 0.0 <= seconds < float("inf"):
        raise ValueError(f"{text.strip()!r}: a fault strikes at 0 seconds or later")
    return ScheduledFault(name, seconds)


def parse_faults(text: str, *, link: bool = True) -> list[ScheduledFault]:
    """A comma-separated list of faults (empty text: none); see `parse_fault`.

    Raises:
        ValueError: as `parse_fault`, for the first bad entry; ``link-noise`` when
            ``link`` is false (a device inside the controller's process has no wire).
    """
    faults = [parse_fault(part) for part in text.split(",") if part.strip()]
    if not link and any(f.name == LINK_NOISE for f in faults):
        raise ValueError(f"{LINK_NOISE} is for massager-sim serve, which has a wire to damage")
    return faults


def inject(plant: Breakable, fault: ScheduledFault) -> None:
    """Break ``plant`` as ``fault`` says, now or at its time (``link-noise``: nothing here)."""
    kind = fault.kind
    if kind is not None:
        plant.schedule(fault.at_s, kind.inject)


def schedule_all(plant: Breakable, text: str) -> None:
    """Inject every fault of a comma-separated list (`DeviceConfig.faults`)."""
    for fault in parse_faults(text):
        inject(plant, fault)
