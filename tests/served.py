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

from simulator.host import DeviceHost


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


def pair(url: str, *options: str) -> None:
    """``massager-ctl pair URL``, as a user does once; the key goes to this test's config folder."""
    result = subprocess.run(
        [sys.executable, "-m", "massager_ctl", "pair", url, "--json", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '"authenticated": true' in result.stdout, result.stdout


@contextlib.contextmanager
def serve(*args: str, first_line_timeout: float = 20, paired: bool = True) -> Iterator[Served]:
    """Start ``massager-sim serve ARGS``, read the URL from its first line, stop it at the end.

    Like a real massager it takes commands only from a paired controller. With
    ``paired`` its pairing window is open at start and this test's controller
    pairs with ``massager-ctl pair`` before the test goes on.
    """
    if paired:
        args = (*args, "--pairing-window", "120")
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
        if paired:
            speed = (
                args[args.index("--speed") : args.index("--speed") + 2] if "--speed" in args else ()
            )
            pair(url, *speed)
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


async def pair_in_process(host: DeviceHost, url: str) -> None:
    """Pair this test's controller with a device served in this process, as `pair` does.

    The key goes to the test's own key file, where every later connect finds it.
    """
    from massager_ctl.device import Massager

    host.open_pairing()
    async with Massager.connect(url) as massager:
        await massager.pair("test")
        assert massager.authenticated
