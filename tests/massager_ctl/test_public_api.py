"""The package's facade: the public names import from ``massager_ctl``, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import massager_ctl
from massager_ctl import device, errors, models
from massager_ctl.programs import profiles, runner


def test_every_public_name_is_the_object_of_its_module() -> None:
    assert set(massager_ctl.__all__) == {"__version__", *massager_ctl._PUBLIC}
    homes = [device, errors, models, profiles, runner]
    for name in massager_ctl.__all__:
        if name == "__version__":
            continue
        value = getattr(massager_ctl, name)
        assert any(getattr(home, name, None) is value for home in homes), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Masager'"):
        _ = massager_ctl.Masager  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_model_library() -> None:
    # The CLI imports the package first: pydantic, the protocol and the simulator
    # load only when a command needs them.
    code = (
        "import sys, massager_ctl; "
        "print(sorted(m for m in ('pydantic', 'firmware_protocol', 'simulator', 'aiomqtt') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


async def test_a_program_runs_from_the_facade_alone() -> None:
    from massager_ctl import Massager, Outcome, find_profile, run_program

    async with Massager.connect("sim://facade?seed=1") as massager:
        result = await run_program(massager, find_profile("evening-45"))
    assert result.outcome == Outcome.COMPLETED
