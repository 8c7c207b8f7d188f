"""The reader registry: format name -> function that parses a source folder or file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vistudio.ingest.types import ParsedSource
from vistudio.registry import Registry

Reader = Callable[[Path], ParsedSource]
READERS: Registry[Reader] = Registry("reader")
register_reader = READERS.register


def get_reader(name: str) -> Reader | None:
    """The reader registered as ``name``, or None."""
    return READERS.entries.get(name)


def known_formats() -> list[str]:
    """Registered format names, sorted."""
    return READERS.names()
