"""Reading a TOML file into a pydantic model, with errors that name the file and the field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InputError

M = TypeVar("M", bound=BaseModel)


def load_model(
    path: Path,
    model: type[M],
    error: type[InputError],
    *,
    what: str,
    defaults: dict[str, Any] | None = None,
) -> M:
    """Read ``path`` as TOML and validate it as ``model``.

    ``what`` names the kind of file in messages ("profile", "config file");
    ``defaults`` fill keys the file leaves out.

    Raises:
        error: the file cannot be read, is not TOML, or breaks the schema; the
            message starts with the path and names every field at fault.
    """
    try:
        if path.exists() and not path.is_file():
            # A FIFO would block the read for ever; a directory or device is no file.
            raise error(f"{path}: not a regular file; move it away")
        text = path.read_text(encoding="utf-8")
    except OSError as problem:
        raise error(f"{path}: cannot read it: {problem.strerror or problem}") from None
    except UnicodeDecodeError as problem:
        raise error(f"{path}: {not_utf8(problem)}; save it as UTF-8") from None
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path}: not valid TOML: {problem}") from None
    try:
        return model.model_validate({**(defaults or {}), **data})
    except ValidationError as problem:
        raise error(f"{path}: {describe_errors(problem, what)}") from None


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``, with nesting too deep for it as a decode error too.

    tomllib parses arrays and inline tables by recursion: a file of 5,000 ``[``
    would end in a RecursionError, a traceback rather than a message.

    Raises:
        tomllib.TOMLDecodeError: not TOML, or nested too deeply.
    """
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError("nested too deeply") from None


def not_utf8(problem: UnicodeDecodeError) -> str:
    """``not UTF-8 text (byte 0xe9 on line 2)``: where a file stops being UTF-8."""
    line = problem.object[: problem.start].count(b"\n") + 1
    return f"not UTF-8 text (byte 0x{problem.object[problem.start]:02x} on line {line})"


def describe_errors(error: ValidationError, what: str) -> str:
    """One line naming each field at fault, as ``steps[2].intensity: ...``."""
    problems = []
    for item in error.errors():
        where = ""
        for part in item["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"is not a field of a {what} (misspelled?)"
        elif item["type"] in ("model_type", "model_attributes_type", "dict_type"):
            # Not pydantic's "dictionary or instance of SafetyLimits": TOML calls it a table.
            message = "should be a table of its own settings (a [section])"
        problems.append(f"{where or what}: {message}")
    return "; ".join(problems)
