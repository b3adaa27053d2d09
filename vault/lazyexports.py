"""A package's re-exported names, imported when first used (PEP 562), not with the package.

Every ``certescrow`` command imports some module of ``vault`` and ``agent`` (the configuration
names the vault's default path); importing all of what their ``__init__`` re-exports (the X.509
and PKCS#12 parsers, the reader, the live-chain client) cost every command, ``policy actions``
included, about half of its start. Generic on purpose: the agent's package uses it too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``, whose ``exports`` map each
    re-exported name to the relative module that defines it. A name is imported once, then
    kept in the package's namespace like an eager import."""
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exports})

    return getattr_, dir_
