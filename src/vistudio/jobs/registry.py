"""Job handlers register by kind; workers look them up by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vistudio.jobs.worker import JobContext

Handler = Callable[["JobContext"], dict[str, Any]]
_HANDLERS: dict[str, Handler] = {}


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if kind in _HANDLERS:
            raise ValueError(f"job handler {kind!r} is already registered")
        _HANDLERS[kind] = fn
        return fn

    return register


def get_handler(kind: str) -> Handler:
    load_handlers()
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise KeyError(f"no handler for job kind {kind!r}; known: {sorted(_HANDLERS)}") from None


def handler_kinds() -> list[str]:
    load_handlers()
    return sorted(_HANDLERS)


def load_handlers() -> None:
    """Import the service modules that define handlers (idempotent)."""
    import vistudio.services.ingest  # noqa: F401
