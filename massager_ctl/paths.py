"""Where massager-ctl keeps things: the user's folders and the files in them.

A leaf: it imports the standard library only (and platformdirs, when a folder
is first asked for), so that any module may name a file without loading the
config model, the journal or the device code.

- config folder (platformdirs: ``$XDG_CONFIG_HOME/massager-ctl`` on Linux):
  ``config.toml``, ``schedules.toml``, ``keys.json`` and the user's ``profiles/``;
- state folder (``$XDG_STATE_HOME/massager-ctl``): the journal and the
  first-run stamp;
- runtime folder (``$XDG_RUNTIME_DIR/massager-ctl``): the local doors' sockets.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

APP = "massager-ctl"


def config_dir() -> Path:
    """The user's massager-ctl config folder (may not exist yet)."""
    import platformdirs

    return platformdirs.user_config_path(APP)


def state_dir() -> Path:
    """Where massager-ctl keeps what it learns (the first-run stamp, the journal)."""
    import platformdirs

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


def keys_file() -> Path:
    """Where the keys of paired massagers are kept."""
    return config_dir() / "keys.json"


def runtime_dir() -> Path:
    """The user's runtime folder for massager-ctl's doors (made 0700 when it is used).

    ``$XDG_RUNTIME_DIR/massager-ctl``; where there is no runtime folder (macOS, a
    container with no login session), a folder of this user's in the system's
    temporary folder.
    """
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    try:
        usable = bool(base) and Path(base).is_absolute() and Path(base).is_dir()
    except OSError:  # another user's (after su), a name too long: not ours to use
        usable = False
    if usable:
        return Path(base) / "massager-ctl"
    return Path(tempfile.gettempdir()) / f"massager-ctl-{os.getuid()}"
