"""What the simulated massager is: its announced capabilities and its physics.

One validated model describes the device. The defaults are a typical two-leg,
eight-chamber consumer massager; tests and ``sim://`` URLs change single fields
(``sim://?cycle=false`` is a device without the programmable cycle).
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from firmware_protocol import Leg, Position

from .faults import parse_faults


class DeviceConfig(BaseModel):
    """Everything that makes one simulated massager; frozen, validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "AirLeg Sim 8"
    firmware: str = "sim-0.1.0"
    serial: str = "SIM-000001"
    ble_name: str = Field(
        "AirLeg",
        pattern=r"^[\x21-\x7e]{1,8}$",
        description="the name it advertises over BLE: up to 8 printable ASCII characters, "
        "which fit beside the flags and the 128-bit service UUID in one advertising packet",
    )

    legs: tuple[Leg, ...] = (Leg.LEFT, Leg.RIGHT)
    positions: tuple[Position, ...] = (Position.FOOT, Position.CALF, Position.KNEE, Position.THIGH)
    levels_mmhg: tuple[float, ...] = (50.0, 80.0, 110.0)
    cycle: bool = Field(True, description="offers the programmable cycle")
    battery: bool = True
    remote: bool = True
    pairing_required: bool = Field(
        True,
        description="refuse start, mode, intensity and cycles from a controller that has not "
        "paired, as a real device does; false serves it open until the first pairing "
        "(for development only)",
    )
    pairing_window_s: int = Field(
        60, ge=1, le=3600, description="how long the pairing window stays open once opened"
    )

    ceiling_mmhg: float = Field(130.0, description="no chamber may ever exceed this")
    max_target_mmhg: float = Field(120.0, description="highest target accepted in a cycle")
    trip_margin_mmhg: float = Field(
        5.0, gt=0, description="the firmware trips this far below the ceiling"
    )
    session_cap_s: int = Field(5400, ge=60, le=65535)
    max_lease_s: int = Field(5400, ge=1, le=65535)
    signs: bool = Field(
        True, description="signs its own frames on an authenticated link; false: an older firmware"
    )
    watchdog_ms: int = Field(1000, ge=100, le=10000)
    status_interval_ms: int = Field(500, ge=50, le=10000)
    pause_limit_s: int = Field(600, ge=1, le=65535)
    remote_session_s: int = Field(900, ge=60, le=65535, description="auto-off of a remote start")

    battery_pct: float = Field(100.0, ge=0.0, le=100.0)
    charging: bool = False
    min_start_battery_pct: float = 10.0
    low_battery_pct: float = 5.0
    drain_pumping_pct_per_h: float = 60.0
    drain_idle_pct_per_h: float = 1.0
    charge_pct_per_h: float = 40.0

    # physics
    pump_stall_mmhg: float = Field(300.0, description="pressure at which the pump stops delivering")
    fill_tau_s: float = Field(1.5, gt=0, description="fill time constant: the pump on one chamber")
    inlet_tau_s: float = Field(
        4.5, gt=0, description="fastest fill one inlet valve allows (its orifice limits flow)"
    )
    exhaust_tau_s: float = Field(0.8, gt=0)
    dump_tau_s: float = Field(0.25, gt=0)
    leak_tau_s: float = Field(300.0, gt=0)
    sensor_noise_mmhg: float = Field(0.3, ge=0)
    hysteresis_mmhg: float = Field(2.0, ge=0)

    # firmware timing
    control_period_s: float = Field(0.05, gt=0, description="sampling while the pump runs")
    supervise_period_s: float = Field(0.25, gt=0, description="sampling otherwise")

    # patterns
    wave_stage_s: float = 3.0
    wave_hold_s: float = 4.0
    wave_release_s: float = 6.0
    pulse_inflate_s: float = 6.0
    pulse_hold_s: float = 3.0
    pulse_release_s: float = 5.0

    seed: int | None = Field(None, description="seeds the sensor noise; None for a random seed")

    faults: str = Field(
        "",
        description="hardware faults to inject: NAME[@SECONDS], comma-separated, e.g. "
        "pump-dead@30 (device seconds; simulator.faults lists the names)",
    )

    broken: str = Field(
        "",
        description="a rule of the protocol the firmware breaks on purpose, to show that the "
        "conformance suite catches it (simulator.conformance.rules lists them); empty: none",
    )

    @field_validator("broken")
    @classmethod
    def _known_rule(cls, name: str) -> str:
        if name:
            from .conformance.rules import RULES  # a leaf: names only, no broken firmware

            if name not in RULES:
                raise ValueError(f"no broken rule {name!r}; rules: {', '.join(RULES)}")
        return name

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, text: str) -> str:
        parse_faults(text, link=False)
        return text

    @model_validator(mode="after")
    def _consistent(self) -> DeviceConfig:
        if not self.legs or not self.positions:
            raise ValueError("a device has at least one leg and one chamber position")
        if len(self.legs) * len(self.positions) > 16:
            raise ValueError("at most 16 chambers")
        if len(set(self.positions)) != len(self.positions) or list(self.positions) != sorted(
            self.positions
        ):
            raise ValueError("chamber positions must differ and run from the foot upward")
        if not self.levels_mmhg or list(self.levels_mmhg) != sorted(self.levels_mmhg):
            raise ValueError("levels_mmhg must be one or more pressures in rising order")
        trip = self.ceiling_mmhg - self.trip_margin_mmhg
        if self.max_target_mmhg >= trip or max(self.levels_mmhg) >= trip:
            raise ValueError("every target must stay below the trip level (ceiling - margin)")
        if self.max_lease_s > self.session_cap_s:
            raise ValueError("max_lease_s cannot exceed session_cap_s")
        return self

    @classmethod
    def from_options(cls, options: dict[str, str]) -> DeviceConfig:
        """Build a config from text options (URL query, ``--set key=value``).

        Raises:
            ValueError: an unknown option, or a value that does not fit; the
                message names the option and lists the known ones.
        """
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            raise ValueError(
                f"no option {', '.join(unknown)}; options: {', '.join(cls.option_names())}"
            )
        try:
            return cls.model_validate(options)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"options are not valid: {problems}") from None

    @classmethod
    def option_names(cls) -> list[str]:
        """Fields that can be set from text: the single numbers, flags and names."""
        simple = (bool, int, float, str, int | None)
        return sorted(n for n, f in cls.model_fields.items() if f.annotation in simple)

    @property
    def chamber_count(self) -> int:
        """How many chambers the device has."""
        return len(self.legs) * len(self.positions)

    @property
    def trip_mmhg(self) -> float:
        """Measured pressure at which the firmware trips and latches OVERPRESSURE."""
        return self.ceiling_mmhg - self.trip_margin_mmhg
