"""Names a package gives without importing the modules that hold them until first used.

The subpackages and the CLI use it; ``massager_ctl/__init__.py`` keeps its own few
lines, so that importing the package (for `paths`, say) loads nothing else.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``where`` loaded from its module.

    ``where`` maps a name to a module relative to the package (``".device"``, or
    ``"..render"``). Once loaded a name is a plain attribute of the package, so the
    import happens once; `massager-ctl --help` and the CLI's fast commands import
    nothing they do not show.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
