"""Settings: the config file, where things are kept, and the first-run note.

The config file is ``config.toml`` in the user's config folder (platformdirs:
``$XDG_CONFIG_HOME/massager-ctl`` on Linux). Every key is optional::

    device = "serial:///dev/ttyUSB0"   # used when --device is not given
    resume_window_s = 30               # after a lost link, resume if back within this
    weekly_goal = 2                    # sessions a week that `history` counts toward
    grace_minutes = 10                 # the daemon starts a run at most this late

    [limits]                           # the safety envelope (see `envelope`)
    sessions_per_day = 3
    minutes_per_day = 120
    rest_minutes = 30

    [mqtt]                             # the bridge (see `broker.MqttSettings`)
    broker = "mqtt://bridge@localhost:1883"

Command-line options win over environment variables (``MASSAGER_CTL_DEVICE``),
which win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .broker import MqttSettings
from .envelope import Limits
from .errors import ConfigError, DeviceURLError
from .tomlfiles import load_model
from .urls import parse_device_url

APP = "massager-ctl"

SAFETY_NOTE = """\
Before you use compression on your legs: do not use it, and ask a doctor first,
if you have or may have a blood clot (deep vein thrombosis), if you have had one,
or have heart failure, severe peripheral artery disease, an infection, an open
wound or fresh skin graft on the legs, a recent fracture, severe neuropathy
(you may not feel too much pressure), or if you are pregnant. Stop at once if
you feel pain, numbness or tingling."""

FIRST_RUN_TAIL = "This note is shown once; read it again with `massager-ctl safety`."
"""Said after the note only when it comes unasked, before the first start."""


class Settings(BaseModel):
    """The contents of the config file.

    Numbers are strict: ``weekly_goal = true`` or ``resume_window_s = "30"`` is an
    error naming the field, never read as 1 or 30.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str | None = None
    resume_window_s: float = Field(30.0, ge=0, le=3600, strict=True)
    weekly_goal: int = Field(2, ge=1, le=21, strict=True)
    grace_minutes: float = Field(10, ge=1, le=240, strict=True)
    limits: Limits = Field(default_factory=Limits)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_device_url(value)
            except DeviceURLError as error:
                raise ValueError(str(error)) from None
        return value


def config_dir() -> Path:
    """The user's massager-ctl config folder (may not exist yet)."""
    return platformdirs.user_config_path(APP)


def state_dir() -> Path:
    """Where massager-ctl keeps what it learns (the first-run stamp, the journal)."""
    return platformdirs.user_state_path(APP)


def schedules_file() -> Path:
    """The bedtime schedules."""
    return config_dir() / "schedules.toml"


def journal_file() -> Path:
    """The journal of sessions and ratings."""
    return state_dir() / "journal.sqlite3"


def user_profiles_dir() -> Path:
    """The user's own profiles; a name here hides a shipped profile of the same name."""
    return config_dir() / "profiles"


def config_file() -> Path:
    """The config file's path: ``MASSAGER_CTL_CONFIG`` if set, else in `config_dir`."""
    override = os.environ.get("MASSAGER_CTL_CONFIG")
    return Path(override) if override else config_dir() / "config.toml"


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file; a missing file means defaults.

    Raises:
        ConfigError: the file is not TOML or has a bad value; the message names both.
    """
    path = path or config_file()
    if not path.exists():
        return Settings()
    return load_model(path, Settings, ConfigError, what="config file")


def first_run_note() -> str | None:
    """The safety note, saying it shows once, if never shown for this user; else None.

    Showing it is recorded at once; a read-only state folder only means the note
    shows again next time.
    """
    stamp = state_dir() / "safety-note-shown"
    if stamp.exists():
        return None
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    except OSError:
        pass
    return f"{SAFETY_NOTE}\n{FIRST_RUN_TAIL}"
