"""massager-ctl's errors: one root, a few kinds, each with the exit code the CLI uses.

Every message is a plain sentence a person can act on; the CLI prints it on one
line. Exit codes: 1 anything else, 2 bad input (a device address, a profile, an
option), 3 the device cannot or will not do it, 4 the link failed, 5 the device
reports a fault, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware_protocol.enums import ErrorCode


class MassagerError(Exception):
    """Root of every error massager-ctl raises on purpose."""

    exit_code = 1


class InputError(MassagerError):
    """Something a person typed or wrote is not usable as it is."""

    exit_code = 2


class DeviceURLError(InputError, ValueError):
    """A device address that is not in one of the accepted forms."""


class ProfileError(InputError):
    """A profile file that cannot be read or does not follow the schema."""


class ProfileNotFound(ProfileError):
    """No profile has that name, and no file has that path."""


class ConfigError(InputError):
    """The configuration file is unreadable or has a bad value."""


class CalledOff(MassagerError):
    """A stop or vent came while a start was on its way; the program was not started."""


class DeviceRefused(MassagerError):
    """The device cannot, or will not, do what was asked."""

    exit_code = 3


class ProfileRefused(DeviceRefused):
    """A profile asks for more than the connected device announces."""

    def __init__(self, profile: str, reasons: list[str], *, adhoc: bool = False) -> None:
        self.profile = profile
        self.reasons = reasons
        # A step typed on the command line is no profile to the person who typed it.
        head = "" if adhoc else f"profile {profile!r} cannot run on this device: "
        super().__init__(head + "; ".join(reasons))


class BeyondLimits(DeviceRefused):
    """A change would take a running program beyond its profile's limits; nothing was sent."""


class CommandRefused(DeviceRefused):
    """The device answered a command with NAK.

    ``code`` says why: an `ErrorCode`, or the number of a code this version does not know.
    """

    def __init__(self, command: str, code: ErrorCode | int, explanation: str) -> None:
        self.command = command
        self.code = code
        super().__init__(f"the device refused {command}: {explanation}")


class LinkError(MassagerError):
    """The link to the device failed."""

    exit_code = 4
    sent_first = False
    """Whether a STOP or VENT went out before it failed (`Massager.connect`'s ``first``)."""


class ConnectFailed(LinkError):
    """No usable link to the device could be opened."""


class ConnectTimedOut(ConnectFailed):
    """Opening the link, or hearing the device answer, took longer than allowed."""


class DeviceInUse(ConnectFailed):
    """Another program holds the device's one link (a serial port, a served TCP port)."""


class DeviceNotFound(ConnectFailed):
    """The device was not heard (out of range, switched off, or connected elsewhere)."""


class BluetoothUnavailable(ConnectFailed):
    """There is no usable Bluetooth radio (no adapter, no Bluetooth service, radio off)."""


class LinkLost(LinkError):
    """The link went down or the device went silent."""


class CommandTimeout(LinkError):
    """A command got no answer after every retry."""


class CommandPreempted(MassagerError):
    """A stop or vent was sent while this command waited; it will not run."""


class DeviceFault(MassagerError):
    """The device has latched a fault and vented."""

    exit_code = 5
