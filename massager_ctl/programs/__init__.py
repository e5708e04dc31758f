"""Bedtime programs: what they are, how one runs, and the limits every start keeps.

- `profiles`: a program as written (`Profile`, its steps and own limits), found
  by name among the user's and the shipped ones (`find_profile`);
- `runner`: running one on a connected massager, step by step (`ProgramRunner`,
  `run_program`, and how it ended: `ProgramResult`, `Outcome`);
- `supervisor`: running one on the massager at an address, riding out a lost
  link (`ProgramSupervisor`, `ResumePolicy`);
- `journaled`: a supervised program written to the journal as a session
  (`JournaledProgram`), what ``start``, the daemon and the bridge run;
- `limits`: the safety limits of config.toml that every start is checked
  against (`check_journal`, `LimitReached`).

The names below load on first use, so that listing profiles loads no device code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

_PUBLIC = {
    "Profile": "profiles",
    "find_profile": "profiles",
    "load_profile": "profiles",
    "available_profiles": "profiles",
    "ProgramRunner": "runner",
    "ProgramResult": "runner",
    "Progress": "runner",
    "Outcome": "runner",
    "run_program": "runner",
    "ProgramSupervisor": "supervisor",
    "ResumePolicy": "supervisor",
    "LinkNotice": "supervisor",
    "JournaledProgram": "journaled",
    "LimitReached": "limits",
    "check_journal": "limits",
}

__all__ = [
    "JournaledProgram",
    "LimitReached",
    "LinkNotice",
    "Outcome",
    "Profile",
    "ProgramResult",
    "ProgramRunner",
    "ProgramSupervisor",
    "Progress",
    "ResumePolicy",
    "available_profiles",
    "check_journal",
    "find_profile",
    "load_profile",
    "run_program",
]

if TYPE_CHECKING:
    from .journaled import JournaledProgram
    from .limits import LimitReached, check_journal
    from .profiles import Profile, available_profiles, find_profile, load_profile
    from .runner import Outcome, ProgramResult, ProgramRunner, Progress, run_program
    from .supervisor import LinkNotice, ProgramSupervisor, ResumePolicy

__getattr__ = lazy_names(__name__, {name: f".{module}" for name, module in _PUBLIC.items()})
