"""Text from outside (a device, a file, the journal) made safe to print on a terminal.

A massager or anyone on its line names the model, the firmware and the modes; a
profile file shared by someone else has a title and notes; a BLE advertisement
names itself. Printed as they are, an escape sequence among them could clear the
screen, rewrite what is shown (a pressure, a warning) or retitle the terminal.
"""

from __future__ import annotations

import re

_BREAKS = re.compile(r"[\t\n\r\v\f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls, DEL, and the bidirectional overrides that reorder what is shown."""


def _code(match: re.Match[str]) -> str:
    number = ord(match.group())
    return f"\\x{number:02x}" if number < 256 else f"\\u{number:04x}"


def printable(text: str) -> str:
    r"""``text`` that can neither move the cursor nor hide itself.

    A line break is a space; every other control character is shown by its code.

    >>> printable("calm\x1b[2J\nnow")
    'calm\\x1b[2J now'
    """
    return _CONTROL.sub(_code, _BREAKS.sub(" ", text))
