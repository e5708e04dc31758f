"""The rules the fuzzer and the property tests hold the protocol and the firmware to.

Theory of operation
-------------------
Both the coverage-guided harness (`tools.fuzz`) and the Hypothesis properties
under ``tests/`` drive the code under test through this package, so a rule is
written once and a broken one fails the same way in both: an `AssertionError`
that names the rule. Any other exception escaping the code under test is a
finding too (the decoders promise `RemoteProtocolError` and nothing else; the
firmware promises not to raise at all).

- `tools.invariants.framing`: `check_decoder`, SPEC 3's deframing, against a
  reading of the stream written out from the spec.
- `tools.invariants.messages`: `check_message`, a payload decoded soundly or
  refused.
- `tools.invariants.firmware`: `CheckedFirmware`, the safety, link, state and
  authentication rules on a simulated firmware after every input.
- `tools.invariants.configs`: the devices worth fuzzing (`PRESETS`,
  `fuzz_config`) and the key a paired one holds (`FUZZ_KEY`).
- `tools.invariants.frames`: frames as a controller sends them
  (`command_frame`, `plain_keepalive`).

The names below are importable from here, as the harness and the tests do.
"""

from __future__ import annotations

from .configs import FUZZ_KEY, FUZZ_KEY_ID, PRESETS, fuzz_config, fuzz_memory
from .firmware import CheckedFirmware, Sent
from .frames import command_frame, plain_keepalive
from .framing import (
    AUTH_TRAILER,
    MAX_BLOCK,
    MAX_FRAME,
    MAX_PAYLOAD,
    MIN_FRAME,
    check_decoder,
    cobs_decode,
    crc16_ccitt_false,
    pieces,
    reencodes_to,
)
from .messages import check_message

__all__ = [
    "AUTH_TRAILER",
    "FUZZ_KEY",
    "FUZZ_KEY_ID",
    "MAX_BLOCK",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "MIN_FRAME",
    "PRESETS",
    "CheckedFirmware",
    "Sent",
    "check_decoder",
    "check_message",
    "cobs_decode",
    "command_frame",
    "crc16_ccitt_false",
    "fuzz_config",
    "fuzz_memory",
    "pieces",
    "plain_keepalive",
    "reencodes_to",
]
