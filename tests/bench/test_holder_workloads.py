"""Each holder bench workload refuses to be timed when it did not do its work (no timings asserted).

An idle hour with the watch down is cheap, a remote press that never showed
proves nothing about watching, a kept link that does not sign writes no key
file, and a stop that vents (or never goes out) is not the stop being timed.
Each test breaks one thing; the workload must raise `WorkloadFailed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from bench import holder
from bench.rows import WorkloadFailed
from firmware_protocol import Button
from massager_ctl.device import Massager
from massager_ctl.holder import Holder
from massager_ctl.holder import holder as holder_module
from massager_ctl.keystore import KeyStore


@pytest.fixture
def mode_not_power(monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote's press at the end of the hour is MODE: an idle massager starts nothing."""
    monkeypatch.setattr(holder, "Button", SimpleNamespace(POWER=Button.MODE))


def test_the_watched_hour_refuses_a_watch_that_lost_its_massager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every status read times out: the watch drops the link and connects again and
    # again, and the hour costs little because nothing was watched most of it.
    monkeypatch.setattr(holder_module, "POLL_TIMEOUT_S", 0.0)
    with pytest.raises(WorkloadFailed, match="not available the whole hour"):
        holder.holder_hour()


@pytest.mark.usefixtures("mode_not_power")
def test_the_watched_hour_refuses_a_press_that_did_not_show() -> None:
    with pytest.raises(WorkloadFailed, match="press of the remote showing in the holder"):
        holder.holder_hour()


@pytest.mark.usefixtures("mode_not_power")
def test_the_kept_link_hour_refuses_a_press_that_did_not_show() -> None:
    with pytest.raises(WorkloadFailed, match="press of the remote did not show on the kept link"):
        holder.kept_link_hour()


def test_the_kept_link_hour_refuses_a_link_that_read_no_statuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(self: Massager) -> AsyncIterator[object]:
        await asyncio.Event().wait()  # no status ever comes: the hour passes reading nothing
        yield None

    monkeypatch.setattr(Massager, "statuses", never)
    with pytest.raises(WorkloadFailed, match="kept link read 0 statuses"):
        holder.kept_link_hour()


def test_the_key_file_row_refuses_a_kept_link_that_does_not_sign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The key is kept where no later link finds it: the kept link opens unsigned,
    # reserves no counter, and would count as cheap as the holder's watch.
    monkeypatch.setattr(KeyStore, "default", classmethod(lambda cls: cls(None)))
    with pytest.raises(WorkloadFailed, match="kept link to the paired massager is not signed"):
        holder.writes_in_an_hour()


def test_the_stop_row_refuses_a_stop_that_vents_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    halt = Holder.halt

    async def vent(self: Holder, action: str) -> str:
        return await halt(self, "vent")

    monkeypatch.setattr(Holder, "halt", vent)
    with pytest.raises(WorkloadFailed, match="the second process: the session ended VENTED"):
        holder.stops(1)


def test_the_stop_row_refuses_a_stop_that_never_reaches_the_massager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Answered ok at once, sent nowhere: the session runs on.
    async def said_done(self: Holder, action: str) -> str:
        return f"{action}: done"

    monkeypatch.setattr(Holder, "halt", said_done)
    monkeypatch.setattr(holder, "STOP_WITHIN_S", 0.5)
    with pytest.raises(WorkloadFailed, match=r"the session did not end within 0\.5 s"):
        holder.stops(1)


@pytest.mark.looptime(False)
def test_the_command_from_idle_refuses_an_intensity_the_massager_did_not_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def said_only(self: Massager, level: int) -> None:
        return None  # answered, as if sent: the massager never heard of it

    monkeypatch.setattr(Massager, "set_intensity", said_only)
    with pytest.raises(WorkloadFailed, match="acknowledged but the device is at"):
        holder.from_idle(1)


@pytest.mark.looptime(False)
def test_the_command_from_idle_refuses_a_link_left_awake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Massager, "go_quiet", lambda self: None)
    with pytest.raises(WorkloadFailed, match="did not go quiet"):
        holder.from_idle(1)
