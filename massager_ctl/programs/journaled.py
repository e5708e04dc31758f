"""A program run as a journaled session: what `start` and the daemon both do.

The session is written to the journal once a massager answered and took the
program: a link that never opened, a profile the massager cannot run, or a start
the safety limits refuse put no pressure on a leg, and leave no trace. It is
completed with how the program ended, also when it is cancelled (Ctrl-C,
SIGTERM) or fails. The massager comes first: a journal that cannot be written is
reported through ``on_journal_error`` and the program goes on.

A session on a simulator (``sim://``, or ``massager-sim serve``, which announces
a firmware ``sim-...``) is a demo at every speed: it squeezes no leg, so the
safety limits neither refuse it nor count it, and it is journaled as a demo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from ..journal import Journal, JournalError
from ..models import DeviceInfo
from ..urls import DeviceAddress
from .profiles import Profile
from .runner import ProgramResult, Progress
from .supervisor import LinkNotice, ProgramSupervisor, ResumePolicy


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JournaledProgram:
    """Runs ``profile`` on ``address`` under a `ProgramSupervisor`, journaling the session.

    ``require`` may refuse the massager by what it announced (as the supervisor's);
    ``limits`` checks the safety limits, raising `LimitReached`: both are called
    once the massager answered and the profile fits it, ``limits`` only if it is
    not a simulator, and before anything is sent or journaled.
    """

    def __init__(
        self,
        address: DeviceAddress,
        profile: Profile,
        *,
        journal: Journal,
        source: str,
        policy: ResumePolicy,
        on_progress: Callable[[Progress], None] | None = None,
        on_link: Callable[[LinkNotice], None] | None = None,
        on_journal_error: Callable[[JournalError], None] | None = None,
        require: Callable[[DeviceInfo], None] | None = None,
        limits: Callable[[], None] | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.address = address
        self.profile = profile
        self.journal = journal
        self.source = source
        self.result: ProgramResult | None = None
        """How the program ended, once `run` returned."""
        self.session_id: int | None = None
        """The journal's id for the session, once it began (None if the journal failed)."""
        self.began = False
        """Whether a massager answered, so that a session began."""
        self.demo: bool | None = None
        """Whether the massager is a simulator (None until it answered)."""
        self._require = require
        self._limits = limits
        self._began_at: datetime | None = None
        self._on_link = on_link
        self._on_journal_error = on_journal_error
        self._now = now
        self.supervisor = ProgramSupervisor(
            address,
            profile,
            policy=policy,
            on_progress=on_progress,
            on_link=self._link,
            require=self._admit,
        )

    @property
    def interrupted_result(self) -> ProgramResult | None:
        """How a cancelled program ended, if it had begun."""
        return self.supervisor.interrupted_result

    def _write(self, write: Callable[[], int | None]) -> int | None:
        try:
            return write()
        except JournalError as error:
            if self._on_journal_error is not None:
                self._on_journal_error(error)
            return None

    def _admit(self, info: DeviceInfo) -> None:
        """Once the massager has said what it is and the profile fits it: may it start?

        Runs with no pause before the session is journaled, so no other start of
        this process slips between the limits' check and the journal.
        """
        if self._require is not None:
            self._require(info)
        self.demo = info.is_simulator
        if not self.demo and self._limits is not None:
            self._limits()

    def _link(self, notice: LinkNotice) -> None:
        if notice.event == "connected" and not self.began:
            self.began = True
            self._began_at = self._now()
            self.session_id = self._write(
                lambda: self.journal.begin(
                    str(self.address),
                    self.profile.name,
                    self.source,
                    planned_s=self.profile.total_minutes * 60,
                    demo=bool(self.demo),
                    now=self._now(),
                )
            )
        if self._on_link is not None:
            self._on_link(notice)

    def _record(self, result: ProgramResult | None) -> None:
        session_id = self.session_id
        if session_id is None:
            return
        if result is None:
            # Ended by an error with no result: count the time since it began as under
            # pressure, so the limits err on the safe side.
            began = self._began_at or self._now()
            elapsed = (self._now() - began).total_seconds()
            outcome, pressure_s, message = "error", max(0.0, elapsed), "ended by an error"
        else:
            outcome, pressure_s, message = (
                str(result.outcome), result.pressure_s, result.message
            )  # fmt: skip
        self._write(
            lambda: self.journal.end(
                session_id, outcome, pressure_s=pressure_s, message=message, now=self._now()
            )
        )

    async def run(self) -> ProgramResult:
        """Run the program to its end; the session is completed however it ends."""
        try:
            result = await self.supervisor.run()
        except asyncio.CancelledError:
            self._record(self.supervisor.interrupted_result)
            raise
        except BaseException:
            self._record(None)
            raise
        self._record(result)
        self.result = result
        return result
