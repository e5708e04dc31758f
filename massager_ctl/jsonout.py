"""JSON lines for scripts: with ``--json`` every object is one line on stdout.

Apart from `render` so that a command with nothing to draw (``safety --json``)
need not import rich; `render` re-exports `emit_json`, the one way to print JSON.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def emit_json(obj: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Print one JSON document on one line and flush, for scripts reading a stream."""
    if hasattr(obj, "model_dump_json"):  # a pydantic model, known without importing pydantic
        line = obj.model_dump_json()
    else:
        line = json.dumps(obj, default=_jsonable)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _jsonable(value: object) -> object:
    if hasattr(value, "model_dump"):  # a pydantic model
        return value.model_dump(mode="json")
    return str(value)
