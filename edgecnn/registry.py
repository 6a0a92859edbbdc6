"""Device side: a small name -> object registry with helpful errors (after timm's ``@register_model``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from edgecnn.errors import UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, known: list[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest known name, or ''."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    if not close:
        lowered = [k for k in known if name.lower() in k.lower() or k.lower() in name.lower()]
        close = lowered[:1]
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Maps names to objects of one kind; duplicate names raise, unknown names suggest.

    Args:
        kind: what the registry holds, used in error messages ("model", "runtime", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an object under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, same_again: bool = False) -> None:
        """Register ``obj``; ``same_again``: registering the same object under the same name twice is fine (two
        modules that share a worker declare it both)."""
        if name in self._items and not (same_again and self._items[name] == obj):
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise UnknownNameError(
                f"unknown {self.kind} '{name}' (known: {', '.join(known)}).{did_you_mean(name, known)}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
