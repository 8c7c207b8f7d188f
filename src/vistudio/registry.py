"""Registries by name (tasks, job handlers, source readers…): one decorator, duplicates refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries registered once at import time and then looked up by name."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self.entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self.entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self.entries)
