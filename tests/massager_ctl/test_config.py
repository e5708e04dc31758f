"""The config file and the first-run note."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from massager_ctl.config import FIRST_RUN_TAIL, SAFETY_NOTE, first_run_note, load_settings
from massager_ctl.errors import ConfigError
from massager_ctl.paths import config_file
from tests.massager_ctl.test_cli import ctl


def test_missing_config_means_defaults() -> None:
    assert load_settings().device is None


def test_config_file_lives_under_xdg_config_home(user_dirs: dict[str, Path]) -> None:
    assert config_file() == user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "config.toml"


def test_bad_config_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('device = "usb0"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: device: 'usb0' is not a device address")
    path.write_text("devise = 'sim://'\n")
    with pytest.raises(
        ConfigError, match=r"devise: is not a field of a config file \(misspelled\?\)"
    ):
        load_settings(path)
    path.write_text("device = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_the_safety_note_shows_once() -> None:
    assert first_run_note() == f"{SAFETY_NOTE}\n{FIRST_RUN_TAIL}"
    assert "blood clot" in SAFETY_NOTE
    assert first_run_note() is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("weekly_goal = true", "weekly_goal: Input should be a valid integer"),
        ('weekly_goal = "3"', "weekly_goal: Input should be a valid integer"),
        ("weekly_goal = 2.0", "weekly_goal: Input should be a valid integer"),
        ('resume_window_s = "30"', "resume_window_s: Input should be a valid number"),
        ("resume_window_s = true", "resume_window_s: Input should be a valid number"),
        ("grace_minutes = false", "grace_minutes: Input should be a valid number"),
        ("[limits]\nsessions_per_day = true", "limits.sessions_per_day: Input should be a valid"),
        ('[limits]\nminutes_per_day = "90"', "limits.minutes_per_day: Input should be a valid"),
        ('[limits]\nrest_minutes = "30"', "limits.rest_minutes: Input should be a valid number"),
    ],
)
def test_a_number_of_another_type_is_refused_naming_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: {field}")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('device = "sim://caf\xe9"\n'.encode("latin-1"), "not UTF-8 text (byte 0xe9 on line 1)"),
        (("x = " + "[" * 5000 + "]" * 5000 + "\n").encode(), "not valid TOML: nested too deeply"),
    ],
    ids=["latin-1", "nested"],
)
def test_a_config_file_that_cannot_be_read_is_one_line_and_exit_2(
    user_dirs: dict[str, Path], content: bytes, problem: str
) -> None:
    path = user_dirs["XDG_CONFIG_HOME"] / "massager-ctl" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{re.escape(f'{path}: {problem}')}"):
        load_settings(path)
    ran = ctl("status")
    assert ran.returncode == 2
    assert ran.stderr.startswith(f"error: {path}: {problem}")
    assert len(ran.stderr.strip().splitlines()) == 1


def test_limits_that_are_not_a_table_say_so_in_toml_words(user_dirs: dict[str, Path]) -> None:
    # pydantic's own words named a class of the code ("instance of SafetyLimits").
    config_file().parent.mkdir(parents=True, exist_ok=True)
    config_file().write_text("limits = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).endswith("limits: should be a table of its own settings (a [section])")
