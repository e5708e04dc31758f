"""Frames as a controller sends them, for the fuzz harness and the tests.

What `CheckedFirmware` is fed: `command_frame` builds a command (a message, or
a raw type and payload of any kind the fuzzer chose), signed or not, and
`plain_keepalive` the keepalive of an open link. They check nothing; they are
here so that the harness and the Hypothesis properties build frames alike.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_protocol import PROTOCOL_VERSION, Frame, KeepAlive, Message

from .framing import MAX_PAYLOAD


def command_frame(seq: int, message_or_type: Message | int, payload: bytes = b"", *,
                  version: int = PROTOCOL_VERSION, key: bytes | None = None,
                  counter: int = 1, nonce: bytes = b"") -> Frame:  # fmt: skip
    """A frame from a controller: a message, or a raw type and payload (cut to fit).

    With ``key`` the frame carries an auth trailer signed with it, for ``counter``.
    After a signed HELLO every tag also covers the link's 8-byte ``nonce`` from
    CAPABILITIES (SPEC 12.3); the HELLO itself is signed without one.
    """
    msg_type: int
    if isinstance(message_or_type, Message):
        msg_type, payload = message_or_type.TYPE, message_or_type.encode_payload()
    else:
        msg_type = message_or_type
    frame = Frame(seq & 0xFFFF, msg_type & 0xFF, payload[:MAX_PAYLOAD], version & 0xFF)
    return frame.signed(key, counter & 0xFFFFFFFF, nonce) if key is not None else frame


def plain_keepalive(seq: int = 1) -> Callable[[int | None], bytes]:
    """What a controller on an open link sends: an unsigned KEEPALIVE answering the challenge."""
    return lambda challenge: command_frame(seq, KeepAlive(challenge)).encode()
