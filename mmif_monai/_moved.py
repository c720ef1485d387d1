"""Old import paths of modules that moved: they keep working, with a DeprecationWarning naming the new place."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["forward_names", "alias_modules"]


def forward_names(old: str, new: str, names: Collection[str] | None = None) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for module ``old`` that hands out module ``new``'s public names (``names``,
    or its ``__all__``), each with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        target = importlib.import_module(new)
        if name not in (names if names is not None else getattr(target, "__all__", ())):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {new}", DeprecationWarning, stacklevel=2)
        return getattr(target, name)

    return __getattr__


def alias_modules(aliases: Mapping[str, str]) -> None:
    """Make each old dotted module name (key) import as the module now at its new name (value).

    Called from the old package's ``__init__``: Python imports a package before its submodules and then takes a
    submodule already in ``sys.modules``, so ``import old.sub`` gets the new module itself, not a copy.
    """
    for old, new in aliases.items():
        module = importlib.import_module(new)
        sys.modules[old] = module
        parent, _, child = old.rpartition(".")
        setattr(sys.modules[parent], child, module)  # as an import of the submodule would set it
