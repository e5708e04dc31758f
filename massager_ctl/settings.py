"""The contents of the config file, as one validated model.

`config.load_settings` reads the file into a `Settings`; `config` itself stays
free of pydantic, so that a command that only needs a path or the safety note
starts at once (see the cold-start rows of the bench).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import DeviceURLError
from .mqtt.broker import MqttSettings
from .programs.limits import SafetyLimits


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
    limits: SafetyLimits = Field(default_factory=SafetyLimits)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str | None) -> str | None:
        if value is not None:
            from .urls import parse_device_url

            try:
                parse_device_url(value)
            except DeviceURLError as error:
                raise ValueError(str(error)) from None
        return value
