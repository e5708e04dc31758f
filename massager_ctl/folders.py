"""Why a file could not be written, in words that name the file or folder at fault.

An ``OSError`` names the path the system call was given (a temporary file, a
lock, a folder that was to be made), not the one a person can fix. These words
name what is in the way: a folder not writable by this user, a file where a
folder should be, a read-only disk.

>>> import errno
>>> why_not_written(Path("/"), PermissionError(errno.EACCES, "Permission denied", "/x"))
'the folder / is not writable by you (Permission denied)'
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def why_not_written(path: Path, error: OSError) -> str:
    """Why ``path`` (or something beside it: a lock, a temporary file) could not be written.

    Returns words to follow ``cannot write ...:``, as ``/home/me/.config is a
    file, not a folder`` or ``the folder ... is not writable by you (Permission denied)``.
    """
    target = Path(os.fsdecode(error.filename)) if error.filename else path
    reason = error.strerror or str(error)
    blocker = _file_in_the_way(target)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    is_file = target.exists() and not target.is_dir()
    if error.errno == errno.EEXIST and is_file:  # a folder to be made, and a file in its place
        return f"{target} is a file, not a folder"
    if error.errno == errno.EISDIR:
        return f"{target} is a folder, not a file"
    where = f"the file {target}" if is_file else f"the folder {_nearest_folder(target)}"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{where} is not writable by you ({reason})"
    if error.errno == errno.EROFS:
        return f"{where} is on a read-only file system"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no room is left for {where} ({reason})"
    return f"{where}: {reason}"


def _file_in_the_way(target: Path) -> Path | None:
    """The first of ``target``'s folders that exists but is not a folder, if one does."""
    for folder in reversed(target.parents):
        if folder.exists() and not folder.is_dir():
            return folder
        if not folder.exists():
            return None
    return None


def _nearest_folder(target: Path) -> Path:
    """``target`` if it is a folder, else the closest of its folders that exists."""
    if target.is_dir():
        return target
    for folder in target.parents:
        if folder.is_dir():
            return folder
    return target.parent
