"""massager-ctl on a pseudo-terminal, as a person runs it, and the screen it leaves.

`Terminal` starts the command line on a pty of a given size (so rich draws its
live panel, as it does only on a terminal), presses keys as a person does
(Ctrl-C goes through the terminal's line discipline, which signals the whole
foreground process group), and keeps a `Screen`: a small emulator of the few
control sequences rich writes (cursor up, erase line, colours), enough to tell
what is left on the screen at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from collections.abc import Callable

CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b[()][0-9A-B]|(.)", re.S)


class Screen:
    """What a terminal ``columns`` wide shows (with its scrollback: no row is lost)."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        """Interpret what the program wrote."""
        for match in CONTROL.finditer(text):
            params, final, char = match.group(1), match.group(2), match.group(3)
            if char is not None:
                self._char(char)
            elif final == "A":
                self.row = max(0, self.row - int(params or 1))
            elif final == "K" and params == "2":
                self.rows[self.row] = []
            elif final == "K":  # to the end of the line
                del self.rows[self.row][self.col :]
            elif final == "G":
                self.col = int(params or 1) - 1
            # colours, cursor shown or hidden: nothing on the screen changes

    def _char(self, char: str) -> None:
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self._down()
        elif char == "\b":
            self.col = max(0, self.col - 1)
        elif char >= " ":
            if self.col >= self.columns:  # the terminal wraps before the next character
                self._down()
                self.col = 0
            line = self.rows[self.row]
            line.extend(" " * (self.col + 1 - len(line)))
            line[self.col] = char
            self.col += 1

    def _down(self) -> None:
        self.row += 1
        if self.row == len(self.rows):
            self.rows.append([])

    def lines(self) -> list[str]:
        """Every row, right-trimmed, with trailing empty rows left off."""
        text = ["".join(row).rstrip() for row in self.rows]
        while text and not text[-1]:
            text.pop()
        return text

    def text(self) -> str:
        """The rows as one text."""
        return "\n".join(self.lines())


class Terminal:
    """``massager-ctl ARGS`` on a pty ``columns`` wide, in its own session, like a shell runs it."""

    def __init__(self, *args: str, columns: int = 100, env: dict[str, str] | None = None) -> None:
        self.columns = columns
        self.screen = Screen(columns)
        self.raw = b""
        self.returncode: int | None = None
        environment = dict(env or os.environ, TERM="xterm-256color")
        for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
            environment.pop(name, None)
        size = struct.pack("HHHH", 50, columns, 0, 0)
        pid, fd = pty.fork()
        if pid == 0:  # the child: size its terminal, then become massager-ctl
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, size)
                argv = [sys.executable, "-m", "massager_ctl", *args]
                os.execve(sys.executable, argv, environment)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd

    def pump(self, seconds: float) -> None:
        """Read what it writes for ``seconds`` (or until it has ended)."""
        deadline = time.monotonic() + seconds
        while self.returncode is None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, min(left, 0.05)))
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: every copy of the terminal's other end is closed
                    data = b""
                if data:
                    self.raw += data
                    self.screen.feed(data.decode(errors="replace"))
                else:
                    self._reap(block=True)
            else:
                self._reap(block=False)
            if left <= 0:
                return

    def _reap(self, *, block: bool) -> None:
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):  # what was written before it ended
                while data := os.read(self.fd, 65536):
                    self.raw += data
                    self.screen.feed(data.decode(errors="replace"))

    def wait_for(self, seen: Callable[[Screen], bool], timeout: float = 30) -> None:
        """Read until ``seen(screen)``; fail if it does not come within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not seen(self.screen):
            assert self.returncode is None, f"ended with {self.returncode}:\n{self.screen.text()}"
            assert time.monotonic() < deadline, (
                f"not seen within {timeout} s:\n{self.screen.text()}"
            )
            self.pump(0.05)

    def press(self, keys: bytes) -> None:
        """Type ``keys`` (``b"\\x03"`` is Ctrl-C)."""
        os.write(self.fd, keys)

    def wait(self, timeout: float = 30) -> int:
        """The exit status (negative: killed by that signal), once it has ended."""
        deadline = time.monotonic() + timeout
        while self.returncode is None and time.monotonic() < deadline:
            self.pump(0.1)
        assert self.returncode is not None, f"still running:\n{self.screen.text()}"
        return self.returncode

    def close(self) -> None:
        """Kill it if it still runs (a failed test must not leave it), and close the pty."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
            self._reap(block=True)
        os.close(self.fd)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
