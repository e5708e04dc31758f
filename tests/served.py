"""``massager-sim serve`` in its own process, as a person runs it in another terminal."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Served:
    """A running ``massager-sim serve`` and the device URL it printed."""

    process: subprocess.Popen[str]
    url: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def stderr(self) -> str:
        """What it logged (after it stopped)."""
        assert self.process.stderr is not None
        return self.process.stderr.read()


@contextlib.contextmanager
def serve(*args: str, first_line_timeout: float = 20) -> Iterator[Served]:
    """Start ``massager-sim serve ARGS``, read the URL from its first line, stop it at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], first_line_timeout)
        assert ready, "massager-sim serve printed no URL"
        url = process.stdout.readline().strip()
        assert url, f"massager-sim serve exited: {process.wait()}"
        yield Served(process, url)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # in case a test left it stopped
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
