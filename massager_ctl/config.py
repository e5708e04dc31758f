"""The config file and the first-run note (where things are kept is `paths`).

The config file is ``config.toml`` in the user's config folder (platformdirs:
``$XDG_CONFIG_HOME/massager-ctl`` on Linux). Every key is optional::

    device = "serial:///dev/ttyUSB0"   # used when --device is not given
    resume_window_s = 30               # after a lost link, resume if back within this
    weekly_goal = 2                    # sessions a week that `history` counts toward
    grace_minutes = 10                 # the daemon starts a run at most this late

    [limits]                           # the safety envelope (see `programs.limits`)
    sessions_per_day = 3
    minutes_per_day = 120
    rest_minutes = 30

    [mqtt]                             # the bridge (see `mqtt.broker.MqttSettings`)
    broker = "mqtt://bridge@localhost:1883"

Command-line options win over environment variables (``MASSAGER_CTL_DEVICE``),
which win over the file. The file's model is `settings.Settings`; this module
imports neither it nor pydantic until the file is read, so that the commands that
need only a path or the safety note start quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .paths import config_file, state_dir

if TYPE_CHECKING:
    from .settings import Settings

SAFETY_NOTE = """\
Before you use compression on your legs: do not use it, and ask a doctor first,
if you have or may have a blood clot (deep vein thrombosis), if you have had one,
or have heart failure, severe peripheral artery disease, an infection, an open
wound or fresh skin graft on the legs, a recent fracture, severe neuropathy
(you may not feel too much pressure), or if you are pregnant. Stop at once if
you feel pain, numbness or tingling."""

FIRST_RUN_TAIL = "This note is shown once; read it again with `massager-ctl safety`."
"""Said after the note only when it comes unasked, before the first start."""


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file; a missing file means defaults.

    Raises:
        ConfigError: the file is not TOML or has a bad value; the message names both.
    """
    from .settings import Settings
    from .tomlfiles import load_model

    path = path or config_file()
    if not path.exists():
        return Settings()
    return load_model(path, Settings, ConfigError, what="config file")


def __getattr__(name: str) -> object:
    # `Settings` lived here once: keep ``from .config import Settings`` working
    # without importing pydantic for every user of this module.
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
