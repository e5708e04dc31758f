"""Bedtime programs: one pydantic schema for every profile TOML file, and where they live.

A profile is a list of steps. A step runs a fixed mode at an intensity, or a
programmable cycle (pressures by place from the foot up, and fill / hold /
release / rest times), for some minutes. A cycle step may ramp its pressures in
and out slowly. Every profile says why it is built the way it is.

>>> profile = Profile.model_validate({
...     "name": "demo", "title": "Demo", "description": "d", "why": "w",
...     "steps": [{"mode": "wave", "intensity": 1, "minutes": 5}],
... })
>>> profile.total_minutes
5.0

Profiles are found by name in the user's profile folder first, then among the
profiles shipped with massager-ctl; a path to a ``.toml`` file works too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import ProfileError, ProfileNotFound, ProfileRefused
from ..printable import printable
from ..tomlfiles import load_model

if TYPE_CHECKING:
    from ..models import DeviceInfo  # hints only: listing profiles needs no protocol

MAX_PRESSURE_MMHG = 200.0
"""No profile may name a pressure above this, whatever the device."""
LEASE_MARGIN_S = 5.0
"""Extra seconds the runner adds to each step's lease, so a step never ends on the
device before the controller moves on; a step that another follows must fit the
device with it (the last may take the device's whole lease)."""
ADHOC = "adhoc"
"""The name of the one-step program `massager-ctl start --mode ...` makes."""


def _counted(low: int, high: int, whole: str, item: str) -> WrapValidator:
    """Check how many items a list has on what was written, beside its items' own errors.

    pydantic counts a tuple's items after validating them, leaving out those that
    failed: one step with a wrong intensity also read "steps: Tuple should have at
    least 1 item", and 51 steps, one of them wrong, were not too many.
    """

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        count = len(value) if isinstance(value, list | tuple) else None
        problem = None
        if count is not None and count < low:
            problem = f"{whole} has at least {low} {item}{'s' * (low != 1)}, not {count}"
        elif count is not None and count > high:
            problem = f"{whole} has at most {high} {item}s, not {count}"
        try:
            validated = handler(value)
        except ValidationError as error:
            if problem is None:
                raise
            # Every error of the items (as they were worded), and the count's.
            details: list[Any] = [
                {"type": PydanticCustomError(e["type"], e["msg"]), "loc": e["loc"],
                 "input": e["input"]}
                for e in error.errors()
            ]  # fmt: skip
            details.append({"type": PydanticCustomError("count", problem), "loc": (),
                            "input": value})  # fmt: skip
            raise ValidationError.from_exception_data(error.title, details) from None
        if problem is not None:
            raise PydanticCustomError("count", problem)
        return validated

    return WrapValidator(check)


class _Schema(BaseModel):
    # Strict: `intensity = true` or `minutes = "10"` is an error naming the field, never
    # 1 or 10. Tuples are read from TOML lists, so those fields say `strict=False` and
    # keep their items strict themselves.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class CycleSpec(_Schema):
    """A programmable cycle: its pressures and its fill, hold, release and rest times.

    Give one of: ``pressure_mmhg`` (every chamber the same), ``foot_mmhg`` with
    ``step_down_mmhg`` (a gradient, highest at the foot), or ``pressures_mmhg``
    (one per place, foot first).
    """

    order: Literal["sequential", "simultaneous"] = "sequential"
    pressure_mmhg: float | None = Field(None, gt=0, le=MAX_PRESSURE_MMHG)
    foot_mmhg: float | None = Field(None, gt=0, le=MAX_PRESSURE_MMHG)
    step_down_mmhg: float = Field(0.0, ge=0, le=30)
    pressures_mmhg: (
        Annotated[tuple[StrictFloat, ...], _counted(1, 8, "a cycle", "pressure")] | None
    ) = Field(None, strict=False)
    inflate_s: float = Field(gt=0, le=600)
    hold_s: float = Field(ge=0, le=600)
    release_s: float = Field(ge=0, le=600)
    rest_s: float = Field(ge=0, le=3600)

    @model_validator(mode="after")
    def _one_pressure_form(self) -> Self:
        given = [
            name
            for name in ("pressure_mmhg", "foot_mmhg", "pressures_mmhg")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of pressure_mmhg, foot_mmhg (with step_down_mmhg) or "
                f"pressures_mmhg (got {', '.join(given) or 'none'})"
            )
        if self.step_down_mmhg and self.foot_mmhg is None:
            raise ValueError("step_down_mmhg goes with foot_mmhg")
        if self.pressures_mmhg is not None:
            for p in self.pressures_mmhg:
                if not 0 < p <= MAX_PRESSURE_MMHG:
                    raise ValueError(f"pressures_mmhg must be in (0, {MAX_PRESSURE_MMHG:g}]")
        return self

    def pressures(self, places: int) -> tuple[float, ...]:
        """Pressures for a device with ``places`` chambers per leg, foot first.

        Raises:
            ValueError: an explicit list of another length, or a gradient that reaches 0.
        """
        if self.pressures_mmhg is not None:
            if len(self.pressures_mmhg) != places:
                raise ValueError(
                    f"the cycle lists {len(self.pressures_mmhg)} pressures "
                    f"but the device has {places} chambers per leg"
                )
            return self.pressures_mmhg
        if self.pressure_mmhg is not None:
            return (self.pressure_mmhg,) * places
        assert self.foot_mmhg is not None
        gradient = tuple(self.foot_mmhg - i * self.step_down_mmhg for i in range(places))
        if gradient[-1] <= 0:
            raise ValueError(
                f"a gradient from {self.foot_mmhg:g} mmHg down {self.step_down_mmhg:g} per "
                f"chamber reaches zero on a device with {places} chambers per leg"
            )
        return gradient

    @property
    def peak_mmhg(self) -> float:
        """The highest pressure the cycle names."""
        if self.pressures_mmhg is not None:
            return max(self.pressures_mmhg)
        return self.pressure_mmhg if self.pressure_mmhg is not None else self.foot_mmhg or 0.0


class Step(_Schema):
    """One part of a program: a fixed mode at an intensity, or a cycle, for some minutes."""

    minutes: float = Field(gt=0, le=240)
    mode: str | None = Field(None, min_length=1)
    intensity: int | None = Field(None, ge=1, le=10)
    cycle: CycleSpec | None = None
    ramp_in_minutes: float = Field(0.0, ge=0)
    ramp_out_minutes: float = Field(0.0, ge=0)
    ramp_from: float = Field(0.5, gt=0, le=1, description="starting fraction of the pressures")
    note: str = ""

    @field_validator("note", mode="after")
    @classmethod
    def _printable(cls, value: str) -> str:
        # A file may come from anyone: no escape sequence in it reaches a terminal.
        return printable(value)

    @model_validator(mode="after")
    def _mode_or_cycle(self) -> Self:
        if self.cycle is not None:
            if self.mode is not None or self.intensity is not None:
                raise ValueError("a cycle step has no mode or intensity")
        else:
            if self.mode is None or self.intensity is None:
                raise ValueError("a step needs a mode and an intensity, or a cycle")
            if self.mode == "cycle":
                raise ValueError("mode 'cycle' is written as a [steps.cycle] table")
            if self.ramp_in_minutes or self.ramp_out_minutes:
                raise ValueError("ramps need a cycle step (fixed modes have fixed pressures)")
        if self.ramp_in_minutes + self.ramp_out_minutes > self.minutes:
            raise ValueError("ramp_in_minutes + ramp_out_minutes exceed the step's minutes")
        return self

    @property
    def seconds(self) -> float:
        """The step's length in seconds."""
        return self.minutes * 60

    def scale_at(self, elapsed_s: float) -> float:
        """The fraction of the cycle's pressures to use ``elapsed_s`` into the step."""
        floor = self.ramp_from
        ramp_in, ramp_out = self.ramp_in_minutes * 60, self.ramp_out_minutes * 60
        left = self.seconds - elapsed_s
        if ramp_in and elapsed_s < ramp_in:
            return floor + (1 - floor) * max(elapsed_s, 0.0) / ramp_in
        if ramp_out and left < ramp_out:
            return floor + (1 - floor) * max(left, 0.0) / ramp_out
        return 1.0

    def describe(self) -> str:
        """A few words for displays: ``wave, intensity 2`` or ``cycle 45-25 mmHg``."""
        if self.cycle is None:
            return f"{self.mode}, intensity {self.intensity}"
        spec = self.cycle
        if spec.pressure_mmhg is not None:
            pressures = f"{spec.pressure_mmhg:g} mmHg"
        elif spec.foot_mmhg is not None:
            pressures = f"{spec.foot_mmhg:g} mmHg at the foot, -{spec.step_down_mmhg:g} per chamber"
        else:
            pressures = "/".join(f"{p:g}" for p in spec.pressures_mmhg or ()) + " mmHg"
        ramp = " with ramps" if self.ramp_in_minutes or self.ramp_out_minutes else ""
        return f"{spec.order} cycle, {pressures}{ramp}"


class ProfileLimits(_Schema):
    """Bounds the profile itself sets; a device whose levels exceed them is refused.

    They bind the profile's own steps, and every change asked for while it runs
    (see `massager_ctl.programs.runner`).
    """

    max_pressure_mmhg: float = Field(MAX_PRESSURE_MMHG, gt=0, le=MAX_PRESSURE_MMHG)
    max_intensity: int | None = Field(None, ge=1)

    def refusal(self, intensity: int, info: DeviceInfo) -> str | None:
        """Why running at ``intensity`` on the device ``info`` describes breaks these limits.

        Returns the limit it breaks, in words (``intensity 3 is above this program's
        max_intensity 1``), or None when it breaks none. A level the device lacks is
        the device's to refuse, not a limit's.
        """
        cap = self.max_intensity
        if cap is not None and intensity > cap:
            return f"intensity {intensity} is above this program's max_intensity {cap}"
        level = info.level(intensity)
        if level is not None and level.target_mmhg > self.max_pressure_mmhg:
            return (
                f"intensity {intensity} aims at {level.target_mmhg:g} mmHg, above this "
                f"program's max_pressure_mmhg {self.max_pressure_mmhg:g}"
            )
        return None

    def binds_cycles(self, info: DeviceInfo) -> bool:
        """Whether ``max_pressure_mmhg`` is below the highest pressure the device accepts.

        Then a cycle the controller did not load itself (its pressures unknown here)
        may break it.
        """
        return self.max_pressure_mmhg < info.max_target_mmhg


class Profile(_Schema):
    """A bedtime program."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    why: str = Field(min_length=1, description="the evidence or technique it follows")
    sources: tuple[str, ...] = Field((), strict=False)
    steps: Annotated[tuple[Step, ...], _counted(1, 50, "a profile", "step")] = Field(strict=False)
    limits: ProfileLimits = ProfileLimits()

    @field_validator("title", "description", "why", mode="before")
    @classmethod
    def _reflow(cls, value: object) -> object:
        # TOML multi-line strings keep their line breaks; displays wrap text themselves.
        # A file may come from anyone: no escape sequence in it reaches a terminal.
        return printable(" ".join(value.split())) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _within_own_limits(self) -> Self:
        for index, step in enumerate(self.steps, 1):
            cap = self.limits.max_intensity
            if step.intensity is not None and cap is not None and step.intensity > cap:
                raise ValueError(f"step {index} uses intensity {step.intensity} above max {cap}")
            if step.cycle is not None and step.cycle.peak_mmhg > self.limits.max_pressure_mmhg:
                raise ValueError(
                    f"step {index} asks {step.cycle.peak_mmhg:g} mmHg, above the profile's "
                    f"max_pressure_mmhg {self.limits.max_pressure_mmhg:g}"
                )
        return self

    @property
    def total_minutes(self) -> float:
        """The program's length in minutes."""
        return sum(step.minutes for step in self.steps)

    @property
    def needs_cycle(self) -> bool:
        """Whether any step needs the programmable cycle."""
        return any(step.cycle is not None for step in self.steps)


# --- checking a profile against a device -----------------------------------------


def check_profile(profile: Profile, info: DeviceInfo) -> None:
    """Refuse, before anything is sent, a profile that asks more than the device offers.

    Raises:
        ProfileRefused: with every reason found, not only the first.
    """
    reasons: list[str] = []
    total_s = profile.total_minutes * 60
    if total_s > info.session_cap_s:
        reasons.append(
            f"it runs {profile.total_minutes:g} min but the device caps a session at "
            f"{info.session_cap_s / 60:g} min"
        )
    for index, step in enumerate(profile.steps, 1):
        where = f"step {index}"
        # A step is one lease. The last may take the whole lease (the massager ends it
        # as the program ends); one that another follows leaves the margin for the RENEW.
        last = index == len(profile.steps)
        allowed = info.max_lease_s - (0 if last else LEASE_MARGIN_S)
        if step.seconds > allowed:
            reasons.append(
                f"{where} runs {span(step.seconds)} but the device allows at most "
                f"{span(allowed)} per step" + ("" if last else " before another step")
            )
        if step.cycle is None:
            # The device's own words (as the bridge and `Massager` say them), and the
            # step named only when there is more than one to tell apart.
            which = f"{where}: " if len(profile.steps) > 1 else ""
            assert step.mode is not None  # a step without a cycle has a mode (validated)
            if step.mode not in info.modes:
                offered = (m for m in info.modes if m != "cycle")
                reasons.append(which + info.no_mode(step.mode, offered))
            assert step.intensity is not None
            level = info.level(step.intensity)
            if level is None:
                reasons.append(which + info.no_intensity(step.intensity))
            elif level.target_mmhg > profile.limits.max_pressure_mmhg:
                reasons.append(
                    f"{where}: the device's intensity {step.intensity} aims at "
                    f"{level.target_mmhg:g} mmHg, above this profile's limit of "
                    f"{profile.limits.max_pressure_mmhg:g} mmHg"
                )
            continue
        if not info.supports_cycle:
            reasons.append(f"{where} needs the programmable cycle, which the device lacks")
            continue
        try:
            pressures = step.cycle.pressures(info.ranks)
        except ValueError as error:
            reasons.append(f"{where}: {error}")
            continue
        if max(pressures) > info.max_target_mmhg:
            reasons.append(
                f"{where} asks {max(pressures):g} mmHg; the device accepts at most "
                f"{info.max_target_mmhg:g} mmHg (its ceiling is {info.ceiling_mmhg:g})"
            )
    if reasons:
        raise ProfileRefused(profile.name, reasons, adhoc=profile.name == ADHOC)


def span(seconds: float) -> str:
    """A length in whole minutes and seconds, as a person says it.

    >>> span(5400), span(5395), span(55), span(89.99)
    ('90 min', '89 min 55 s', '55 s', '1 min 30 s')
    """
    minutes, secs = divmod(round(seconds), 60)
    if minutes and secs:
        return f"{minutes} min {secs} s"
    return f"{minutes} min" if minutes else f"{secs} s"


# --- files ------------------------------------------------------------------------


def load_profile(path: Path, known: Mapping[str, Path] | None = None) -> Profile:
    """Read and validate one profile file; its name is the file's stem.

    A ``name`` in the file may only repeat the stem: otherwise ``start mine``
    would run, journal and show a program under another name, perhaps that of
    another profile. ``known`` are the profiles found by name (`available_profiles`;
    by default those beside this file and the shipped ones): a file that is not
    the one a name finds may not take that name.

    Raises:
        ProfileError: the file cannot be read, is not TOML, or breaks the schema;
            the message names the file and every field at fault. Or it calls itself
            by another profile's name; the message names both files.
    """
    profile = load_model(path, Profile, ProfileError, what="profile", defaults={"name": path.stem})
    known = available_profiles(path.parent) if known is None else known
    other = known.get(profile.name)
    if other is not None and other.resolve() != path.resolve():
        if profile.name != path.stem:
            raise ProfileError(
                f"{path}: name: {profile.name!r} is the name of another profile, {other}; a "
                "profile is named by its file: remove the name line, or rename the file"
            )
        raise ProfileError(
            f"{path}: its name {profile.name!r} (the file's) is the name of another profile, "
            f"{other}; rename the file"
        )
    if profile.name != path.stem:
        raise ProfileError(
            f"{path}: name: {profile.name!r} is not the file's name {path.stem!r}; a profile "
            "is named by its file: remove the name line, or rename the file"
        )
    return profile


def builtin_profiles_dir() -> Path:
    """Where the shipped profiles are.

    That is the repository's ``profiles/`` in a checkout, and the copy inside the
    package once installed from a wheel.
    """
    checkout = Path(__file__).resolve().parent.parent.parent / "profiles"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("massager_ctl") / "_builtin_profiles"))


def search_dirs(user_dir: Path | None) -> list[Path]:
    """Folders searched for profiles by name, first match wins."""
    dirs = [user_dir] if user_dir is not None else []
    return [*dirs, builtin_profiles_dir()]


def available_profiles(user_dir: Path | None = None) -> dict[str, Path]:
    """Every profile name and its file; a user's profile hides a shipped one of that name."""
    found: dict[str, Path] = {}
    for folder in reversed(search_dirs(user_dir)):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class BrokenProfile:
    """A profile file that cannot be used: its name, its file, and what is wrong in it."""

    name: str
    file: Path
    error: str
    """What is wrong, naming each field at fault (the file is in ``file``)."""

    def as_json(self) -> dict[str, str]:
        """``{"name": ..., "file": ..., "error": ...}``."""
        return {"name": self.name, "file": str(self.file), "error": self.error}


def read_profiles(
    user_dir: Path | None = None,
) -> tuple[list[tuple[Profile, Path]], list[BrokenProfile]]:
    """Every profile found by name, and each file that cannot be used, both by name.

    One broken file is listed, with its error, beside the others; it never hides them.
    """
    known = available_profiles(user_dir)
    found: list[tuple[Profile, Path]] = []
    broken: list[BrokenProfile] = []
    for name, path in known.items():
        try:
            found.append((load_profile(path, known), path))
        except ProfileError as error:
            # Its message starts with the path, which the entry holds on its own.
            error_text = str(error).removeprefix(f"{path}: ")
            broken.append(BrokenProfile(name, path, error_text))
    return found, broken


def find_profile(name_or_path: str, user_dir: Path | None = None) -> Profile:
    """Load a profile by name, or from a path to a TOML file.

    Raises:
        ProfileNotFound: neither a file nor a known name; the message lists the names.
        ProfileError: the file is malformed.
    """
    candidate = Path(name_or_path).expanduser()
    known = available_profiles(user_dir)
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        if not candidate.is_file():
            raise ProfileNotFound(f"{candidate}: no such profile file")
        return load_profile(candidate, known)
    path = known.get(name_or_path)
    if path is None:
        raise ProfileNotFound(
            f"no profile named {name_or_path!r}; known: {', '.join(known) or 'none'}"
        )
    return load_profile(path, known)
