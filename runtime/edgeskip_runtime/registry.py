"""A small named registry for open sets (models, datasets, recipes, rankers, policies).

Modelled on timm's ``@register_model`` and torchvision's ``get_model`` / ``list_models``:
adding a model, dataset or policy is a new decorated function, never a new ``if`` branch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgeskip_runtime.errors import EdgeskipError

T = TypeVar("T")


class UnknownNameError(EdgeskipError, KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str, *, discover: str | None = None) -> None:
        """``discover``: a package whose public modules register entries when imported; they are
        imported on first lookup, so a new entry is a new file with no list to keep in sync."""
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover_package = discover

    def _discover(self) -> None:
        package, self._discover_package = self._discover_package, None
        if package is not None:
            path = importlib.import_module(package).__path__
            for info in pkgutil.iter_modules(path):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package}.{info.name}")

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (default: its ``__name__``, ``_`` -> ``-``)."""

        def decorate(obj: T) -> T:
            key = name or obj.__name__.replace("_", "-")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
