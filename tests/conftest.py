"""Shared test set-up: isolated user folders, virtual time for async tests, hypothesis."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.broker import Broker, run_broker

settings.register_profile(
    "default",
    deadline=None,  # virtual-time tests do real work per example; wall time is bench's job
    suppress_health_check=[HealthCheck.too_slow],
)
# `pytest --hypothesis-profile=debug` reports the first failure without shrinking it.
settings.register_profile("debug", parent=settings.get_profile("default"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # fmt: skip
settings.load_profile("default")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test in virtual time unless it says otherwise.

    One idle loop turn is enough before the clock jumps: in-process tests have no
    I/O that could make something ready while the loop waits. Tests with real I/O
    mark themselves ``@pytest.mark.looptime(False)``.
    """
    for item in items:
        function = getattr(item, "function", None)
        if inspect.iscoroutinefunction(function) and item.get_closest_marker("looptime") is None:
            item.add_marker(pytest.mark.looptime(noop_cycles=1))


@pytest.fixture(autouse=True)
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Every test gets its own config, state and runtime folders, and no device from outside.

    The runtime folder holds the local doors of holders: one per test, so that no
    test knocks on another's (its name is short: a socket's path is at most 107 bytes).
    """
    dirs = {"XDG_CONFIG_HOME": tmp_path / "config", "XDG_STATE_HOME": tmp_path / "state",
            "XDG_RUNTIME_DIR": tmp_path / "run"}  # fmt: skip
    for name, path in dirs.items():
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    for name in ("MASSAGER_CTL_DEVICE", "MASSAGER_CTL_CONFIG", "MASSAGER_CTL_JSON"):
        monkeypatch.delenv(name, raising=False)
    return dirs


@pytest.fixture(scope="session")
def _main_thread_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(autouse=True)
def _current_event_loop(_main_thread_loop: asyncio.AbstractEventLoop) -> None:
    """Give the main thread a loop we own and close.

    pytest-asyncio 1.5 asks ``asyncio.get_event_loop()`` for the current loop around
    each async test; when none is set (a sync test ran ``asyncio.run``) Python 3.11
    makes a new one that nobody closes, and our warnings-as-errors setting turns
    that into a failure at the end of the session (pytest-asyncio issue #724).
    """
    asyncio.set_event_loop(_main_thread_loop)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One real Mosquitto for the whole session (see `tests.broker`)."""
    with run_broker(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running
