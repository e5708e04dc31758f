"""Decoding one message's payload: a sound message, or a `RemoteProtocolError`.

`check_message` is what the fuzzer's decoder target runs on every frame it
finds. The message decoders read bytes from anyone on the link, so they may
refuse a payload only with `RemoteProtocolError`; what they accept is of the
type asked for and encodes back to a prefix of the payload (SPEC 13: a receiver
ignores only the bytes after the fields it knows).
"""

from __future__ import annotations

from firmware_protocol import Message, RemoteProtocolError
from firmware_protocol.messages import decode_message


def check_message(msg_type: int, payload: bytes) -> Message | None:
    """Decode ``payload`` as a message of ``msg_type``; assert that decoding is sound.

    `decode_message` may raise `RemoteProtocolError` (returned here as None) and
    nothing else. What it accepts is of the type asked for, its own encoding is a
    prefix of the payload (a receiver ignores only bytes after the fields it knows,
    SPEC 13), and that encoding decodes to the same message.
    """
    try:
        message = decode_message(msg_type, payload)
    except RemoteProtocolError:
        return None
    assert msg_type == message.TYPE, f"{message} decoded from type 0x{msg_type:02x}"
    encoded = message.encode_payload()
    assert payload.startswith(encoded), f"{message} encodes to {encoded.hex()}, not a prefix"
    assert decode_message(msg_type, encoded) == message
    return message
