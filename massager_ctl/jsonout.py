"""JSON lines for scripts: with ``--json`` every object is one line on stdout.

Apart from `render` so that a command with nothing to draw (``safety --json``)
need not import rich or pydantic; `render` re-exports `emit_json`, the one way to
print JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def emit_json(obj: BaseModel | Mapping[str, Any]) -> None:
    """Print one JSON object on one line and flush, for scripts reading a stream.

    Every object names what it is in ``kind``, so that a script can tell the
    lines of a stream apart; numbers are rounded to what they mean (`json_ready`).

    Raises:
        TypeError: the object has no ``kind`` (a mistake in massager-ctl, not input).
    """
    data = _dumped(obj) if not isinstance(obj, Mapping) else dict(obj)
    if "kind" not in data:
        raise TypeError(f"a JSON line needs a kind: {sorted(data)}")
    line = json.dumps(json_ready(data), default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _dumped(model: Any) -> Any:
    # A pydantic model, known by its method without importing pydantic.
    return model.model_dump(mode="json")


_PLACES = (("_s", 1), ("_mmhg", 1), ("minutes", 2))
"""Decimals by the end of a key: seconds and pressures to a tenth, minutes to a
hundredth (0.6 s); any other number to three places."""


def json_ready(value: Any, key: str = "") -> Any:
    """``value`` with every float rounded to what its key says it measures.

    The clock and the sensors give floats such as ``299.9999604900004``: noise
    past what a second or a mmHg means to anyone.

    >>> json_ready({"step_left_s": 299.9999604900004, "pressures_mmhg": [80.04, -0.01]})
    {'step_left_s': 300.0, 'pressures_mmhg': [80.0, 0.0]}
    """
    if isinstance(value, float):
        places = next((n for end, n in _PLACES if key.endswith(end)), 3)
        return round(value, places) + 0.0  # + 0.0: no "-0.0" for a reading of -0.01
    if hasattr(value, "model_dump"):
        value = _dumped(value)
    if isinstance(value, Mapping):
        return {k: json_ready(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v, key) for v in value]
    return value
