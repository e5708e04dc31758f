"""What the controller knows of a device, in the units people use.

The protocol speaks tenths of mmHg and numeric codes; these frozen models speak
mmHg, seconds and names, and are what the API returns and ``--json`` prints.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from firmware_protocol import (
    PROTOCOL_VERSION,
    ButtonPressed,
    Capabilities,
    DeviceEvent,
    Fault,
    FaultRaised,
    Feature,
    SessionEnded,
    SessionStarted,
    Status,
    StatusFlag,
)

from .printable import printable

State = Literal["idle", "running", "paused", "fault"]

_SPEED = re.compile(r"\+(\d+(?:\.\d+)?)x$")
"""A served simulator's speed, at the end of its firmware version (`simulator.cli`)."""


def _name(value: object) -> str:
    # A code a later protocol revision added is a bare number here (SPEC.md §13).
    name = getattr(value, "name", None)
    return (name or str(int(value))).lower()  # type: ignore[call-overload]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Chamber(_Model):
    """One chamber: which leg, where on it, and its rank from the foot (0) upward."""

    leg: str
    position: str
    rank: int


class IntensityLevel(_Model):
    """An intensity level and the peak pressure it aims for."""

    level: int
    target_mmhg: float


class DeviceInfo(_Model):
    """What a device announced when the link opened."""

    model: str
    firmware: str
    serial: str
    protocol_version: int
    chambers: tuple[Chamber, ...]
    modes: dict[str, int]
    levels: tuple[IntensityLevel, ...]
    ceiling_mmhg: float
    max_target_mmhg: float
    session_cap_s: int
    max_lease_s: int
    watchdog_s: float
    status_interval_s: float
    pause_limit_s: int
    supports_cycle: bool
    has_battery: bool
    has_remote: bool
    signs: bool = True
    """It signs its own frames on an authenticated link (SPEC §12.3); older ones do not."""

    @classmethod
    def from_capabilities(cls, caps: Capabilities) -> DeviceInfo:
        """Translate the CAPABILITIES message."""
        by_leg: dict[int, list[int]] = {}
        for chamber in caps.chambers:
            by_leg.setdefault(chamber.leg, []).append(chamber.position)
        chambers = tuple(
            Chamber(
                leg=_name(c.leg),
                position=_name(c.position),
                rank=sorted(by_leg[c.leg]).index(c.position),
            )
            for c in caps.chambers
        )
        # Anyone on an unsigned line can write these: no escape sequence in them
        # reaches a terminal.
        return cls(
            model=printable(caps.model),
            firmware=printable(caps.firmware),
            serial=printable(caps.serial),
            protocol_version=PROTOCOL_VERSION,
            chambers=chambers,
            modes={printable(m.name): m.mode for m in caps.modes},
            levels=tuple(
                IntensityLevel(level=lv.level, target_mmhg=lv.target_dmmhg / 10)
                for lv in caps.levels
            ),
            ceiling_mmhg=caps.ceiling_dmmhg / 10,
            max_target_mmhg=caps.max_target_dmmhg / 10,
            session_cap_s=caps.session_cap_s,
            max_lease_s=caps.max_lease_s,
            watchdog_s=caps.watchdog_ms / 1000,
            status_interval_s=caps.status_interval_ms / 1000,
            pause_limit_s=caps.pause_limit_s,
            supports_cycle=bool(caps.features & Feature.CYCLE),
            signs=bool(caps.features & Feature.SIGNED_LINK),
            has_battery=bool(caps.features & Feature.BATTERY),
            has_remote=bool(caps.features & Feature.REMOTE),
        )

    @property
    def ranks(self) -> int:
        """How many chamber places there are from the foot upward."""
        return max(c.rank for c in self.chambers) + 1

    def mode_name(self, mode: int) -> str:
        """The name of a mode number (``mode-N`` for one the device did not announce)."""
        for name, number in self.modes.items():
            if number == mode:
                return name
        return "none" if mode == 0 else f"mode-{mode}"

    @property
    def is_simulator(self) -> bool:
        """Whether this is massager-sim, which announces a firmware version ``sim-...``."""
        return self.firmware.startswith("sim-")

    @property
    def simulator_speed(self) -> float | None:
        """How many times faster than real time this simulator runs; None: a real massager.

        ``massager-sim serve --speed 20`` says so after its firmware version
        (``sim-0.1.0+20x``); a simulator that says nothing runs at real time.
        """
        if not self.is_simulator:
            return None
        match = _SPEED.search(self.firmware)
        return float(match.group(1)) if match else 1.0

    def no_intensity(self, level: int | None) -> str:
        """Words for a level it lacks, the same from every front door and check.

        ``this massager has no intensity 7; it offers 1, 2, 3``
        """
        offered = ", ".join(str(lv.level) for lv in self.levels)
        return f"this massager has no intensity {level}; it offers {offered}"

    def no_mode(self, mode: str, offered: Iterable[str] | None = None) -> str:
        """Words for a mode it lacks; ``offered`` narrows the list (default: every mode)."""
        listed = ", ".join(self.modes if offered is None else offered)
        return f"this massager has no mode {mode!r}; it offers {listed}"

    def level(self, level: int) -> IntensityLevel | None:
        """The announced level ``level``, or None."""
        return next((lv for lv in self.levels if lv.level == level), None)


_CHARGING = int(StatusFlag.CHARGING)
_PUMP_ON = int(StatusFlag.PUMP_ON)
_DUMP_OPEN = int(StatusFlag.DUMP_OPEN)
_LINK_SESSION = int(StatusFlag.LINK_SESSION)
_CYCLE_LOADED = int(StatusFlag.CYCLE_LOADED)
_STOP_SINCE_END = int(StatusFlag.STOP_SINCE_END)


@functools.lru_cache(maxsize=256)  # bounded: the masks come from the device
def _mask_bits(mask: int, count: int) -> tuple[bool, ...]:
    """Bit i of ``mask`` for the first ``count`` chambers (few valve patterns recur)."""
    return tuple(bool(mask >> i & 1) for i in range(count))


class DeviceStatus(_Model):
    """One STATUS report, translated. Pressures are as the device's sensors read them."""

    kind: Literal["status"] = "status"
    uptime_s: float
    state: State
    mode: str
    intensity: int
    seconds_left: int
    session_elapsed_s: int
    battery_pct: int
    charging: bool
    pump_on: bool
    dump_open: bool
    link_session: bool
    cycle_loaded: bool
    stop_since_end: bool = False
    """Someone sent STOP or VENT after the last session ended."""
    faults: tuple[str, ...]
    last_end: str
    pressures_mmhg: tuple[float, ...]
    inlets_open: tuple[bool, ...]
    exhausts_open: tuple[bool, ...]

    @classmethod
    def from_message(cls, status: Status, info: DeviceInfo) -> DeviceStatus:
        """Translate a STATUS message using the device's announced modes."""
        count = len(status.pressures_dmmhg)
        flags = int(status.flags)  # bit tests on an int: IntFlag's & builds a member each
        # The protocol layer has validated every field already; STATUS arrives twice a
        # second and sits on every command's round trip, so skip validating it again.
        return cls.model_construct(
            uptime_s=status.uptime_ms / 1000,
            state=_name(status.state),  # type: ignore[arg-type]
            mode=info.mode_name(status.mode),
            intensity=status.intensity,
            seconds_left=status.seconds_left,
            session_elapsed_s=status.session_elapsed_s,
            battery_pct=status.battery_pct,
            charging=bool(flags & _CHARGING),
            pump_on=bool(flags & _PUMP_ON),
            dump_open=bool(flags & _DUMP_OPEN),
            link_session=bool(flags & _LINK_SESSION),
            cycle_loaded=bool(flags & _CYCLE_LOADED),
            stop_since_end=bool(flags & _STOP_SINCE_END),
            faults=fault_bit_names(status.faults),
            last_end=_name(status.last_end),
            pressures_mmhg=tuple(p / 10 for p in status.pressures_dmmhg),
            inlets_open=_mask_bits(status.inlet_mask, count),
            exhausts_open=_mask_bits(status.exhaust_mask, count),
        )

    @property
    def active(self) -> bool:
        """Whether a session is on (running or paused)."""
        return self.state in ("running", "paused")

    @property
    def peak_mmhg(self) -> float:
        """The highest chamber pressure in this report."""
        return max(self.pressures_mmhg, default=0.0)


@functools.cache
def fault_bit_names(faults: Fault) -> tuple[str, ...]:
    """Names of the fault bits that are set (``fault-bit-N`` for ones this version lacks)."""
    return tuple(
        _name(Fault(1 << bit)) if (1 << bit) in set(Fault) else f"fault-bit-{bit}"
        for bit in range(16)
        if int(faults) >> bit & 1
    )


CLEAR_FAULT = "clear the fault with the remote's power button (or massager-ctl reset)"
"""How a person clears a latched fault (the device refuses until the cause is gone)."""

FAULT_EXPLANATIONS: dict[str, str] = {
    "overpressure": "a chamber reached the pressure limit; the massager vented. Check that "
    "no hose is pinched and the wraps are not too tight",
    "sensor": "a pressure sensor reads wrong (stuck, or showing pressure in an empty "
    "chamber); the massager vented. Switch it off and on",
    "pump": "the pump ran but no pressure rose, or the pump would not stop; the massager "
    "vented. Check the hose and the pump",
    "valve": "a valve is stuck: a chamber would not fill, or would not empty, as it was "
    "told; the massager vented. Check the hoses and the wraps",
    "leak": "a chamber loses air far faster than it should, so the pump could not hold the "
    "pressure; the massager vented. Check the wraps and the hose connections for a leak",
    "battery_empty": "the battery is empty; the massager vented. Connect the charger",
    "overheat": "the massager overheated; it vented. Let it cool down",
    "internal": "the massager's firmware found an internal error; it vented. Switch it off and on",
}
"""What each fault means to a person, and what to do, by the names of `fault_bit_names`."""


def explain_fault(name: str) -> str:
    """One fault in plain language: ``"pump: the pump ran but ..., then clear the fault ..."``."""
    what = FAULT_EXPLANATIONS.get(
        name,
        "a fault this version of massager-ctl does not know; the massager vented. Check it over",
    )
    return f"{name.replace('_', ' ')}: {what}, then {CLEAR_FAULT}."


def explain_faults(names: tuple[str, ...] | list[str]) -> str:
    """Every fault of ``names`` in plain language, one sentence each (empty: none)."""
    return " ".join(explain_fault(name) for name in names)


class SessionStartedUpdate(_Model):
    """A session started (by us, by another controller, or on the remote)."""

    kind: Literal["session_started"] = "session_started"
    source: str
    mode: str
    intensity: int
    lease_s: int


class SessionEndedUpdate(_Model):
    """A session ended, why, and its seconds under pressure."""

    kind: Literal["session_ended"] = "session_ended"
    reason: str
    pressure_s: int


class ButtonUpdate(_Model):
    """Someone pressed a button on the handheld remote."""

    kind: Literal["button"] = "button"
    button: str


class FaultUpdate(_Model):
    """The device latched faults and vented."""

    kind: Literal["fault"] = "fault"
    faults: tuple[str, ...]


DeviceUpdate = DeviceStatus | SessionStartedUpdate | SessionEndedUpdate | ButtonUpdate | FaultUpdate


def update_from_event(event: DeviceEvent, info: DeviceInfo) -> DeviceUpdate:
    """Translate an EVENT message."""
    if isinstance(event, SessionStarted):
        return SessionStartedUpdate(
            source=_name(event.source),
            mode=info.mode_name(event.mode),
            intensity=event.intensity,
            lease_s=event.lease_s,
        )
    if isinstance(event, SessionEnded):
        return SessionEndedUpdate(reason=_name(event.reason), pressure_s=event.pressure_s)
    if isinstance(event, ButtonPressed):
        return ButtonUpdate(button=_name(event.button))
    if isinstance(event, FaultRaised):
        return FaultUpdate(faults=fault_bit_names(event.faults))
    raise TypeError(f"no translation for {type(event).__name__}")
