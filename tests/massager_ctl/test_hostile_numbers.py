"""Numbers no one should give, and firmware strings no simulator writes.

Found by an attack: ``--speed nan`` passed click's range (every comparison with
NaN is false) and ended in a traceback, in massager-ctl and massager-sim alike;
a firmware announcing ``sim-+0x`` or ``sim-1+99999999999999999999x`` was answered
"give --speed 0" or "give --speed 1e+20", which no --speed takes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from massager_ctl.cli import check_speed
from massager_ctl.device import Massager
from massager_ctl.errors import InputError


@pytest.mark.parametrize(
    "args",
    [
        ("massager_ctl", "start", "--mode", "wave", "--intensity", "1", "--duration", "1m",
         "--speed", "nan"),
        ("massager_ctl", "pair", "sim://", "--speed", "NaN"),
        ("simulator", "serve", "--tcp", "127.0.0.1:0", "--speed", "nan"),
        ("simulator", "run", "--for", "nan"),
    ],
)  # fmt: skip
def test_nan_is_refused_as_a_usage_error(args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "is not a number" in result.stderr


@pytest.mark.parametrize(
    "firmware", ["sim-+0x", "sim-1+0.0x", "sim-1+99999999999999999999x", "sim-1+0.01x"]
)
async def test_a_speed_no_controller_can_keep_is_said_so(firmware: str) -> None:
    async with Massager.connect("sim://") as massager:
        info = massager.info.model_copy(update={"firmware": firmware})
    for speed in (None, 0.1, 1000.0):
        with pytest.raises(InputError, match="announces a speed no controller can keep") as said:
            check_speed(info, speed)
        assert firmware in str(said.value)
        assert "give --speed" not in str(said.value)
