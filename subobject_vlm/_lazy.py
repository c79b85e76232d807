"""Lazy package attributes (PEP 562): a package names what it exports and where; a name is imported on first use.

So ``from subobject_vlm import epoc`` loads numpy and OpenCV, not torch, and ``subobject-vlm --help`` loads
neither.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable


class _LazyPackage(types.ModuleType):
    """A package module whose exported names win over its same-named submodules (``segmentation.epoc`` the
    function, not the module ``segmentation/epoc.py``), as they did when ``__init__`` imported them eagerly."""

    def __setattr__(self, name: str, value: object) -> None:
        exports = self.__dict__.get("_EXPORTS", {})
        if (
            isinstance(value, types.ModuleType)
            and name in exports
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            return  # the import system binding the submodule: keep the export
        super().__setattr__(name, value)


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``; ``exports`` maps a public name to its submodule (``".epoc"``)."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        setattr(sys.modules[package], name, value)  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*exports, *vars(sys.modules[package])})

    sys.modules[package].__class__ = _LazyPackage
    return __getattr__, __dir__
