"""The protocol's errors: one root, split by whose fault it is.

A `LocalProtocolError` means *we* asked for something the protocol forbids (a value
out of range, a message our role may not send). A `RemoteProtocolError` means the
*peer* sent something illegal. Decoding untrusted bytes raises only the remote one,
so a caller that feeds bytes from a wire needs exactly one ``except`` clause.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by firmware_protocol."""


class LocalProtocolError(ProtocolError, ValueError):
    """We tried to build or send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a message the protocol does not allow."""
