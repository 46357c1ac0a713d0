"""Modules that register themselves by declaring a name: the sensor drivers (`KIND`) and the
upstream transports (`FORMAT`). Adding one is adding a module to its package."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType


def discover(package: str, path: Iterable[str], attribute: str) -> dict[str, ModuleType]:
    """Every module of `package` that declares `attribute`, by its value, in module-name
    order. Modules without it are helpers. Importing must be cheap: a module imports its
    hardware or network library when it is used, never at module level."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda info: info.name):
        module = importlib.import_module(f"{package}.{info.name}")
        name = getattr(module, attribute, None)
        if name is not None:
            if name in found:
                raise RuntimeError(
                    f"{package}: {attribute} {name!r} is declared by both"
                    f" {found[name].__name__} and {module.__name__}"
                )
            found[name] = module
    return found
