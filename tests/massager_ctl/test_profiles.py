"""Profiles: the shipped ones are valid, bad files name file and field, devices refuse more."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from massager_ctl.errors import ProfileError, ProfileNotFound, ProfileRefused
from massager_ctl.models import DeviceInfo
from massager_ctl.programs.profiles import (
    BrokenProfile,
    Profile,
    available_profiles,
    builtin_profiles_dir,
    check_profile,
    find_profile,
    load_profile,
    read_profiles,
)
from simulator import DeviceConfig, Firmware
from tests.massager_ctl.test_cli import ctl

SHIPPED = sorted(p.stem for p in builtin_profiles_dir().glob("*.toml"))


def device_info(**config: object) -> DeviceInfo:
    return DeviceInfo.from_capabilities(Firmware(DeviceConfig(**config)).capabilities)  # type: ignore[arg-type]


def test_at_least_five_profiles_ship() -> None:
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_valid_says_why_and_fits_the_simulator(name: str) -> None:
    profile = find_profile(name)
    assert profile.name == name
    assert len(profile.why) > 100  # every profile explains the evidence it follows
    assert profile.sources
    check_profile(profile, device_info())


def test_the_library_covers_the_evidence() -> None:
    profiles = {name: find_profile(name) for name in SHIPPED}
    minutes = {name: p.total_minutes for name, p in profiles.items()}
    assert minutes["evening-45"] == 45
    trial = profiles["trial-compression-60"]
    assert trial.total_minutes == 60
    [step] = trial.steps
    assert step.cycle is not None
    assert step.cycle.pressure_mmhg == pytest.approx(29)
    assert step.cycle.hold_s == 5
    assert step.cycle.inflate_s + step.cycle.hold_s + step.cycle.release_s + step.cycle.rest_s == 60
    wind_down = profiles["wind-down-30"]
    assert wind_down.steps[0].ramp_in_minutes > 0
    assert wind_down.steps[0].ramp_out_minutes > 0
    gradient = wind_down.steps[0].cycle
    assert gradient is not None
    assert 5 <= gradient.step_down_mmhg <= 10
    assert "effleurage" in profiles["effleurage-wave-30"].why.lower()
    assert any(step.intensity == 3 for step in profiles["deep-pressure-30"].steps)


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CYCLE_WITHOUT_PRESSURE = """
[[steps]]
minutes = 5
[steps.cycle]
inflate_s = 2
hold_s = 1
release_s = 1
rest_s = 1
"""

GOOD = """
title = "Mine"
description = "d"
why = "w"
[[steps]]
minutes = 10
mode = "wave"
intensity = 2
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD.replace("intensity = 2", 'intensity = "two"'), "steps[0].intensity"),
        (GOOD.replace("intensity = 2", "intensity = 0"), "steps[0].intensity"),
        (GOOD.replace("minutes = 10", "minutes = -1"), "steps[0].minutes"),
        (GOOD.replace('title = "Mine"', ""), "title: Field required"),
        (GOOD + "\ncolour = 'blue'", "colour: is not a field of a profile (misspelled?)"),
        (GOOD.replace('mode = "wave"', ""), "steps[0]: a step needs a mode and an intensity"),
        (GOOD + CYCLE_WITHOUT_PRESSURE, "steps[1].cycle: give exactly one of"),
        (GOOD + "\n[limits]\nmax_intensity = 1\n", "step 1 uses intensity 2 above max 1"),
    ],
)
def test_malformed_profile_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert field in message


def test_toml_syntax_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'title = "unterminated\n')
    with pytest.raises(ProfileError, match=rf"{path}: not valid TOML: .*line 1"):
        load_profile(path)


def test_profiles_by_name_path_and_user_folder(tmp_path: Path) -> None:
    user = tmp_path / "profiles"
    user.mkdir()
    write(user, GOOD.replace("Mine", "My evening"), "evening-45.toml")
    write(user, GOOD, "quick.toml")
    assert find_profile("evening-45", user).title == "My evening"  # the user's wins
    assert "quick" in available_profiles(user)
    assert find_profile(str(user / "quick.toml")).name == "quick"
    with pytest.raises(ProfileNotFound, match=r"known: .*deep-pressure-30"):
        find_profile("nope", user)
    with pytest.raises(ProfileNotFound, match="no such profile file"):
        find_profile(str(tmp_path / "missing.toml"))


def test_a_device_without_the_cycle_refuses_cycle_profiles_before_anything_is_sent() -> None:
    with pytest.raises(ProfileRefused) as caught:
        check_profile(find_profile("trial-compression-60"), device_info(cycle=False))
    assert caught.value.reasons == ["step 1 needs the programmable cycle, which the device lacks"]


def test_every_reason_is_given_not_only_the_first() -> None:
    profile = Profile.model_validate({
        "name": "greedy", "title": "t", "description": "d", "why": "w",
        "steps": [
            {"mode": "wave", "intensity": 4, "minutes": 50},
            {"mode": "knead", "intensity": 1, "minutes": 50},
            {"minutes": 5, "cycle": {"pressure_mmhg": 125, "inflate_s": 2, "hold_s": 1,
                                     "release_s": 1, "rest_s": 1}},
            {"minutes": 5, "cycle": {"pressures_mmhg": [40, 30], "inflate_s": 2, "hold_s": 1,
                                     "release_s": 1, "rest_s": 1}},
        ],
    })  # fmt: skip
    with pytest.raises(ProfileRefused) as caught:
        check_profile(profile, device_info(session_cap_s=3600, max_lease_s=2405))
    reasons = caught.value.reasons
    assert reasons == [
        "it runs 110 min but the device caps a session at 60 min",
        "step 1 runs 50 min but the device allows at most 40 min per step before another step",
        "step 1: this massager has no intensity 4; it offers 1, 2, 3",
        "step 2 runs 50 min but the device allows at most 40 min per step before another step",
        "step 2: this massager has no mode 'knead'; it offers wave, pulse",
        "step 3 asks 125 mmHg; the device accepts at most 120 mmHg (its ceiling is 130)",
        "step 4: the cycle lists 2 pressures but the device has 4 chambers per leg",
    ]


def test_a_profile_that_caps_pressure_refuses_a_device_whose_levels_are_stronger() -> None:
    profile = Profile.model_validate({
        "name": "soft", "title": "t", "description": "d", "why": "w",
        "limits": {"max_pressure_mmhg": 60},
        "steps": [{"mode": "wave", "intensity": 2, "minutes": 5}],
    })  # fmt: skip
    with pytest.raises(ProfileRefused, match="aims at 80 mmHg, above this profile's limit of 60"):
        check_profile(profile, device_info())


def test_ramps_scale_pressures_in_and_out() -> None:
    step = find_profile("wind-down-30").steps[0]
    assert step.scale_at(0) == pytest.approx(0.5)
    assert step.scale_at(150) == pytest.approx(0.75)
    assert step.scale_at(600) == 1.0
    assert step.scale_at(30 * 60 - 150) == pytest.approx(0.75)
    assert step.scale_at(30 * 60) == pytest.approx(0.5)


def test_a_step_another_follows_must_leave_room_for_the_lease_margin() -> None:
    profile = short_profile(minutes=1)
    check_profile(profile, device_info(max_lease_s=65))
    with pytest.raises(ProfileRefused) as caught:
        check_profile(profile, device_info(max_lease_s=60))
    # Said in minutes and seconds, not as 0.916667 min; the last step may take the lease.
    assert caught.value.reasons == [
        "step 1 runs 1 min but the device allows at most 55 s per step before another step"
    ]


def test_a_last_step_may_take_the_whole_lease_and_no_more() -> None:
    whole = Profile.model_validate({
        "name": "long", "title": "t", "description": "d", "why": "w",
        "steps": [{"mode": "wave", "intensity": 1, "minutes": 90}],
    })  # fmt: skip
    check_profile(whole, device_info())  # 90 min: the simulator's lease and session cap
    with pytest.raises(ProfileRefused) as caught:
        check_profile(whole, device_info(max_lease_s=5395))
    assert caught.value.reasons == [
        "step 1 runs 90 min but the device allows at most 89 min 55 s per step"
    ]


def test_a_step_the_device_lacks_is_refused_in_the_massagers_own_words() -> None:
    one = Profile.model_validate({
        "name": "mine", "title": "t", "description": "d", "why": "w",
        "steps": [{"mode": "wave", "intensity": 7, "minutes": 5}],
    })  # fmt: skip
    with pytest.raises(ProfileRefused) as caught:
        check_profile(one, device_info())
    assert str(caught.value) == (
        "profile 'mine' cannot run on this device: this massager has no intensity 7; "
        "it offers 1, 2, 3"
    )


def short_profile(minutes: float) -> Profile:
    return Profile.model_validate({
        "name": "one", "title": "t", "description": "d", "why": "w",
        "steps": [{"mode": "wave", "intensity": 1, "minutes": minutes}] * 2,
    })  # fmt: skip


CYCLE = """
[[steps]]
minutes = 5
[steps.cycle]
pressures_mmhg = [45, 38, 31, 24]
inflate_s = 2
hold_s = 1
release_s = 1
rest_s = 1
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD.replace("intensity = 2", "intensity = true"), "steps[0].intensity: Input should"),
        (GOOD.replace("intensity = 2", 'intensity = "2"'), "steps[0].intensity: Input should"),
        (GOOD.replace("intensity = 2", "intensity = 2.0"), "steps[0].intensity: Input should"),
        (GOOD.replace("minutes = 10", 'minutes = "10"'), "steps[0].minutes: Input should"),
        (GOOD.replace("minutes = 10", "minutes = true"), "steps[0].minutes: Input should"),
        (GOOD + "\n[limits]\nmax_intensity = true\n", "limits.max_intensity: Input should"),
        (GOOD + "\n[limits]\nmax_pressure_mmhg = '80'\n", "limits.max_pressure_mmhg: Input"),
        (GOOD + CYCLE.replace("inflate_s = 2", 'inflate_s = "2"'), "steps[1].cycle.inflate_s:"),
        (GOOD + CYCLE.replace("38, 31", "true, 31"), "steps[1].cycle.pressures_mmhg[1]: Input"),
        (GOOD + CYCLE.replace("minutes = 5", "minutes = 5\nramp_from = true"),
         "steps[1].ramp_from: Input should"),
    ],
    ids=["intensity-true", "intensity-str", "intensity-float", "minutes-str", "minutes-true",
         "max-intensity-true", "max-pressure-str", "inflate-str", "pressure-true", "ramp-true"],
)  # fmt: skip
def test_a_number_of_another_type_in_a_profile_is_refused(
    tmp_path: Path, text: str, field: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(f"{path}: {field}")


def test_whole_numbers_and_lists_still_read_as_they_did(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, 'sources = ["a", "b"]\n' + GOOD + CYCLE))
    assert profile.steps[0].minutes == 10.0
    assert profile.steps[1].cycle is not None
    assert profile.steps[1].cycle.pressures_mmhg == (45.0, 38.0, 31.0, 24.0)


NOT_UTF8 = GOOD.replace("Mine", "Caf\xe9").encode("latin-1")
DEEP = "title = " + "[" * 5000 + "]" * 5000 + "\n"


def test_a_file_that_is_not_utf8_or_nests_too_deep_is_a_profile_error(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(NOT_UTF8)
    with pytest.raises(ProfileError) as caught:
        load_profile(latin)
    assert str(caught.value) == f"{latin}: not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"
    deep = write(tmp_path, DEEP, "deep.toml")
    with pytest.raises(ProfileError) as caught:
        load_profile(deep)
    assert str(caught.value) == f"{deep}: not valid TOML: nested too deeply"


def test_a_profile_cannot_call_itself_by_another_profiles_name(tmp_path: Path) -> None:
    user = tmp_path / "profiles"
    user.mkdir()
    shipped = builtin_profiles_dir() / "evening-45.toml"
    mine = write(user, 'name = "evening-45"\n' + GOOD, "mine.toml")
    clash = (f"{mine}: name: 'evening-45' is the name of another profile, {shipped}; a "
             "profile is named by its file: remove the name line, or rename the file")  # fmt: skip
    for found in ("mine", str(mine)):
        with pytest.raises(ProfileError) as caught:
            find_profile(found, user)
        assert str(caught.value) == clash
    with pytest.raises(ProfileError, match="^" + re.escape(clash)):
        load_profile(mine)
    # Between two of your own, too.
    quick = write(user, GOOD, "quick.toml")
    other = write(user, 'name = "quick"\n' + GOOD, "other.toml")
    with pytest.raises(ProfileError, match=re.escape(f"another profile, {quick};")):
        find_profile("other", user)
    other.unlink()
    # A file elsewhere named like a known profile, run by its path, is another profile too.
    elsewhere = write(tmp_path, GOOD, "evening-45.toml")
    with pytest.raises(ProfileError) as caught:
        find_profile(str(elsewhere), user)
    assert str(caught.value) == (
        f"{elsewhere}: its name 'evening-45' (the file's) is the name of another profile, "
        f"{shipped}; rename the file"
    )
    # A name that is the file's own is no clash, and a profile of yours may hide a shipped one.
    assert find_profile("quick", user).name == "quick"
    write(user, 'name = "evening-45"\n' + GOOD.replace("Mine", "My evening"), "evening-45.toml")
    assert find_profile("evening-45", user).title == "My evening"
    # Any other name is not the file's, and would be found by neither.
    write(user, 'name = "later"\n' + GOOD, "soon.toml")
    with pytest.raises(ProfileError, match=r"soon.toml: name: 'later' is not the file's name"):
        find_profile("soon", user)


def test_start_names_both_files_of_a_clash(user_dirs: dict[str, Path]) -> None:
    user = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "profiles"
    user.mkdir(parents=True)
    mine = write(user, 'name = "evening-45"\n' + GOOD, "mine.toml")
    ran = ctl("start", "mine", "--speed", "100")
    assert ran.returncode == 2
    shipped = builtin_profiles_dir() / "evening-45.toml"
    assert ran.stderr.startswith(f"error: {mine}: name: 'evening-45' is the name of another "
                                 f"profile, {shipped};")  # fmt: skip


def steps(*lines: str) -> str:
    """A profile whose steps are the TOML ``lines`` (one step's inline table each)."""
    return 'title = "Mine"\ndescription = "d"\nwhy = "w"\nsteps = [\n' + ",\n".join(lines) + "\n]\n"


FINE = '{minutes = 1, mode = "wave", intensity = 1}'
ONE_CYCLE = "{{minutes = 1, cycle = {{pressures_mmhg = [{}], inflate_s = 1, hold_s = 0, release_s = 1, rest_s = 1}}}}"  # noqa: E501


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        (GOOD.replace("intensity = 2", "intensity = 11"),
         ["steps[0].intensity: Input should be less than or equal to 10"]),
        (steps(FINE, '{minutes = 1, mode = "wave", intensity = "2"}'),
         ["steps[1].intensity: Input should be a valid integer"]),
        (steps(ONE_CYCLE.format("30, 'x'")),
         ["steps[0].cycle.pressures_mmhg[1]: Input should be a valid number"]),
        # The number of items is told when it is wrong, whatever the items hold.
        (steps(), ["steps: a profile has at least 1 step, not 0"]),
        (steps(*[FINE] * 50, FINE.replace("1}", "0}")),
         ["steps[50].intensity: Input should be greater than or equal to 1",
          "steps: a profile has at most 50 steps, not 51"]),
        (steps(ONE_CYCLE.format(", ".join(["30"] * 8 + ["'x'"]))),
         ["steps[0].cycle.pressures_mmhg[8]: Input should be a valid number",
          "steps[0].cycle.pressures_mmhg: a cycle has at most 8 pressures, not 9"]),
        (steps(ONE_CYCLE.format("")), ["steps[0].cycle.pressures_mmhg: a cycle has at least 1 "
                                   "pressure, not 0"]),
    ],
)  # fmt: skip
def test_a_profile_error_names_only_the_real_errors(
    tmp_path: Path, text: str, errors: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value) == f"{path}: " + "; ".join(errors)


def test_read_profiles_lists_the_broken_beside_the_good(tmp_path: Path) -> None:
    user = tmp_path / "profiles"
    user.mkdir()
    write(user, GOOD, "good.toml")
    (user / "latin.toml").write_bytes(NOT_UTF8)
    write(user, GOOD.replace("intensity = 2", "intensity = 11"), "strong.toml")
    found, broken = read_profiles(user)
    assert [p.name for p, _ in found] == sorted({"good", *SHIPPED})
    assert {p.name: path for p, path in found}["good"] == user / "good.toml"
    assert broken == [
        BrokenProfile("latin", user / "latin.toml",
                      "not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"),
        BrokenProfile("strong", user / "strong.toml",
                      "steps[0].intensity: Input should be less than or equal to 10"),
    ]  # fmt: skip
    assert broken[0].as_json() == {
        "name": "latin",
        "file": str(user / "latin.toml"),
        "error": "not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8",
    }
