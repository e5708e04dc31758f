"""No escape sequence from outside reaches the terminal.

Found by an attack: a rating note, a profile file's title, description and step
notes, and what a massager (or anyone on an unsigned line) announces as its
model, firmware and modes were printed as they were: ``\\x1b[2J`` cleared the
screen, and a crafted sequence could rewrite a pressure or a warning already
shown. Such text is now shown with its control characters as codes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from massager_ctl.device import Massager
from massager_ctl.paths import user_profiles_dir
from simulator import DeviceConfig
from simulator.host import DeviceHost
from simulator.serve import TcpEndpoint

ESC = "\x1b"
HOSTILE = "calm\x1b[2J\x1b]0;owned\x07\x9b31m\u202eok"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "massager_ctl", *args], capture_output=True, text=True, timeout=60
    )


def test_a_rating_note_is_shown_without_its_escape_sequences() -> None:
    rated = run("rate", "6", "--note", HOSTILE)
    assert rated.returncode == 0, rated.stderr
    assert ESC not in rated.stdout
    assert "\\x1b[2J" in rated.stdout
    for args in (("history", "--all"), ("history", "--all", "--json")):
        shown = run(*args)
        assert shown.returncode == 0, shown.stderr
        assert ESC not in shown.stdout
        assert "\u202e" not in shown.stdout
        assert "\\x1b[2J" in shown.stdout.replace("\\\\", "\\")


def test_a_shared_profile_file_cannot_write_escape_sequences() -> None:
    folder = user_profiles_dir()
    folder.mkdir(parents=True)
    toml = HOSTILE.encode("unicode_escape").decode().replace("\\x", "\\u00")
    Path(folder, "shared.toml").write_text(
        f'title = "Shared {toml}"\ndescription = "d {toml}"\nwhy = "w"\n'
        f'[[steps]]\nmode = "wave"\nintensity = 1\nminutes = 1\nnote = "n {toml}"\n'
    )
    for args in (("profiles",), ("profiles", "--json"), ("start", "shared", "--speed", "100")):
        shown = run(*args)
        assert shown.returncode == 0, shown.stderr
        assert ESC not in shown.stdout + shown.stderr, args
        assert "\x9b" not in shown.stdout + shown.stderr, args


@pytest.mark.looptime(False)
async def test_what_a_massager_announces_is_shown_without_escape_sequences() -> None:
    host = DeviceHost(
        DeviceConfig(seed=1, model="Air\x1b[2JLeg", serial="S\u202e1", pairing_required=False)
    )
    host.start()
    endpoint = TcpEndpoint(host)
    url = await endpoint.open("127.0.0.1", 0)
    try:
        async with Massager.connect(url) as massager:
            assert massager.info.model == "Air\\x1b[2JLeg"
            assert massager.info.serial == "S\\u202e1"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "massager_ctl", "status", "--device", url,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert ESC not in out.decode() + err.decode()
        assert "Air\\x1b[2JLeg" in out.decode()
    finally:
        await endpoint.close()
        host.stop()
