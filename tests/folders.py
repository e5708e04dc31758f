"""A folder that cannot be written, as the operating system refuses it to its user.

Tests may run as root, whom a folder's mode does not stop, so `read_only` does
not rely on the mode alone: while it is in force, every call that would add,
remove or rename an entry of the folder fails with the error the kernel gives
anyone else (EACCES, "Permission denied"). As with a folder's mode, a file
already in it may still be opened and written, as its own mode allows. It acts
in this process only: run the command in-process (`run_cli`) to see it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _entry(target: object, folder: Path) -> bool:
    """Whether ``target`` names an entry of ``folder`` (not a file descriptor)."""
    if isinstance(target, int):
        return False
    return Path(os.fsdecode(target)).absolute().parent == folder  # type: ignore[arg-type]


def _denied(target: object) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(target))  # type: ignore[arg-type]


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``folder`` read-only for this process: no entry added, removed or renamed."""
    folder = folder.absolute()
    real_open, real_io_open = os.open, io.open

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and _entry(path, folder) and not os.path.lexists(path):
            raise _denied(path)
        return real_open(path, flags, *args, **kwargs)

    def guarded_io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        creates = "x" in mode or (("w" in mode or "a" in mode) and not os.path.lexists(file))
        if creates and _entry(file, folder):
            raise _denied(file)
        return real_io_open(file, mode, *args, **kwargs)

    def guard(patch: pytest.MonkeyPatch, name: str, *paths: int) -> None:
        real = getattr(os, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            for index in paths:
                if index >= len(args) or not _entry(args[index], folder):
                    continue
                if name != "mkdir" or not os.path.lexists(args[index]):  # else: EEXIST
                    raise _denied(args[index])
            return real(*args, **kwargs)

        patch.setattr(os, name, guarded)

    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(os, "open", guarded_open)
            patch.setattr(io, "open", guarded_io_open)
            for name, paths in {"mkdir": (0,), "rmdir": (0,), "unlink": (0,), "remove": (0,),
                                "rename": (0, 1), "replace": (0, 1)}.items():  # fmt: skip
                guard(patch, name, *paths)
            yield
    finally:
        folder.chmod(mode & 0o7777)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``massager-ctl ARGS`` in this process: its exit code, stdout and stderr.

    An exception that escapes `main` (a traceback, for a person) fails the test.
    """
    from massager_ctl.cli import main

    capsys.readouterr()
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err
