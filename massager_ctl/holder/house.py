"""The holders of one process, and what they share: settings, journal, profiles, limits.

Several doors may share the holders of one process (``daemon --bridge``: the
schedules and MQTT reach the same massagers), and a start through any of them
is held to the safety limits counting the others' starts that the journal does
not hold yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import MassagerError
from ..urls import DeviceAddress
from .holder import Holder

if TYPE_CHECKING:
    from ..journal import Journal, Session
    from ..programs.journaled import JournaledProgram
    from ..programs.profiles import Profile
    from ..settings import Settings

Kind = Literal["start", "daemon", "bridge", "daemon --bridge", "web"]
"""What holds massagers in a process, as `massager-ctl status` says it."""


class House:
    """The holders of this process, by device (see the module text).

    ``config`` names the config file, for a limit's message to point to.
    """

    def __init__(
        self,
        *,
        kind: Kind,
        settings: Settings,
        journal: Journal,
        profiles_dir: Path | None,
        config: str = "config.toml",
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.kind: Kind = kind
        self.settings = settings
        self.journal = journal
        self.profiles_dir = profiles_dir
        self.config = config
        self.log = log
        self.holders: dict[str, Holder] = {}
        """By device key (`device_key`)."""

    def hold(
        self, address: DeviceAddress, *, name: str | None = None, watch: bool = False
    ) -> Holder:
        """The holder of ``address`` in this process, made if there is none.

        Raises:
            MassagerError: it is held here under another name.
        """
        key = device_key(address)
        holder = self.holders.get(key)
        if holder is None:
            holder = self.holders[key] = Holder(address, self, name=name, watch=watch)
        elif name is not None and holder.name != name:
            raise MassagerError(f"{address} is held here already, as {holder.name}")
        return holder

    def get(self, address: DeviceAddress) -> Holder | None:
        """The holder of ``address`` in this process, if there is one."""
        return self.holders.get(device_key(address))

    def let_go(self, holder: Holder) -> None:
        """Forget ``holder`` (its door is closed and it runs nothing)."""
        key = device_key(holder.address)
        if self.holders.get(key) is holder:
            del self.holders[key]

    def profile(self, name: str) -> Profile:
        """The profile named ``name`` (the user's folder first, then the shipped ones).

        Raises:
            ProfileError: there is none, or it is not valid.
        """
        from ..programs.profiles import find_profile

        return find_profile(name, self.profiles_dir)

    def check_limits(self, profile: Profile, now: datetime, *, holder: Holder) -> None:
        """Hold a start of ``profile`` on ``holder`` to the safety limits, counting the others.

        Raises:
            LimitReached: which limit, when, and the setting behind it.
            JournalError: the journal cannot be read.
        """
        from ..programs.limits import check_journal

        check_journal(self.journal, planned_s=profile.total_minutes * 60, now=now,
                      limits=self.settings.limits, config=self.config,
                      starting=self.starting_sessions(but=holder))  # fmt: skip

    def starting_sessions(self, *, but: Holder | None = None) -> list[Session]:
        """Programs started through these holders that the journal does not hold yet.

        A session is journaled once its massager answers; until then the limits
        count it from here, so two starts at once cannot both slip through.
        """
        from ..journal import Session

        starting = []
        for other in self.holders.values():
            found = other.starting_session() if other is not but else None
            if found is not None:
                name, started_at, planned_s, source = found
                starting.append(Session.starting(device=str(other.address), profile=name,
                                                 source=source, started_at=started_at,
                                                 planned_s=planned_s))  # fmt: skip
        return starting

    def journaled(
        self,
        holder: Holder,
        profile: Profile,
        *,
        source: str,
        limits: Callable[[], None] | None = None,
    ) -> JournaledProgram:
        """A program of ``profile`` on ``holder``'s massager, journaled with ``source``."""
        from ..programs.journaled import JournaledProgram
        from ..programs.supervisor import ResumePolicy

        return JournaledProgram(
            holder.address, profile, journal=self.journal, source=source,
            policy=ResumePolicy(window_s=self.settings.resume_window_s),
            on_journal_error=lambda error: self.log(f"{holder.name}: {error}"),
            limits=limits,
        )  # fmt: skip


def device_key(address: DeviceAddress) -> str:
    """What names one massager for holding it: its URL without options that keep the device.

    Two URLs that differ only in a baud rate or a Bluetooth radio name one massager.
    """
    from ..keystore import device_name

    return device_name(address)
