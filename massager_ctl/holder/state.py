"""The one stream of state a holder publishes, which every front door renders."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from firmware_protocol import LinkStats


class DeviceState(BaseModel):
    """What one massager is doing, as every front door shows it (MQTT retains it as JSON)."""

    state: str
    """idle, running, paused, fault, or offline."""
    program: str | None = None
    chosen_program: str | None = None
    """The profile a ``start`` without one starts."""
    step: int | None = None
    steps: int | None = None
    ends_at: datetime | None = None
    """When the program ends: a moment, not a countdown."""
    mode: str | None = None
    intensity: int | None = None
    pressures_mmhg: list[float] = Field(default_factory=list)
    battery_pct: int | None = None
    faults: list[str] = Field(default_factory=list)
    fault: str | None = None
    """The first fault in plain language (its name first, then what to do), or None."""
    link_quality: int | None = None
    """Percent of frames since the link opened that arrived whole and needed no resend."""


def link_quality(stats: LinkStats) -> int:
    """The share of frames, in percent, that arrived whole and needed no resend.

    >>> link_quality(LinkStats(frames=98, crc_errors=1, retransmits=1))
    98
    """
    bad = stats.crc_errors + stats.malformed + stats.oversized + stats.retransmits + stats.timeouts
    total = stats.frames + bad
    return 100 if total == 0 else round(100 * stats.frames / total)
