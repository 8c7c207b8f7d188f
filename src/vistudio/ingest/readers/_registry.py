"""The reader registry: format name -> function that parses a source folder or file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vistudio.ingest.types import ParsedSource

Reader = Callable[[Path], ParsedSource]

_READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator registering a reader under ``name``; a second reader with that name is refused."""

    def decorate(fn: Reader) -> Reader:
        if name in _READERS:
            raise ValueError(f"reader {name!r} is already registered")
        _READERS[name] = fn
        return fn

    return decorate


def get_reader(name: str) -> Reader | None:
    """The reader registered as ``name``, or None."""
    return _READERS.get(name)


def known_formats() -> list[str]:
    """Registered format names, sorted."""
    return sorted(_READERS)
