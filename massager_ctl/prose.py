"""Running text that fits any terminal: paragraphs, not lines broken for 80 columns.

Kept free of rich so that `massager-ctl safety` starts fast.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import TextIO


def prose(text: str) -> str:
    r"""``text`` with each paragraph on one line, blank lines between paragraphs.

    >>> prose("Stop at once if\nyou feel pain.\n\nRead it again.")
    'Stop at once if you feel pain.\n\nRead it again.'
    """
    return "\n\n".join(" ".join(par.split()) for par in text.split("\n\n") if par.strip())


def fill(text: str, stream: TextIO | None = None) -> str:
    """``text`` wrapped between words to the width of the terminal ``stream`` is on.

    Not a terminal (a pipe, a file): a line per paragraph, for the reader to wrap.
    """
    stream = sys.stdout if stream is None else stream
    flowing = prose(text)
    if not stream.isatty():
        return flowing
    width = shutil.get_terminal_size().columns
    return "\n\n".join(textwrap.fill(par, width) for par in flowing.split("\n\n"))
