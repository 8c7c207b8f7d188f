"""Job handlers register by kind; workers look them up by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vistudio.registry import Registry

if TYPE_CHECKING:
    from vistudio.jobs.worker import JobContext

Handler = Callable[["JobContext"], dict[str, Any]]
HANDLERS: Registry[Handler] = Registry("job handler")
job_handler = HANDLERS.register


def get_handler(kind: str) -> Handler:
    load_handlers()
    return HANDLERS.get(kind)


def handler_kinds() -> list[str]:
    load_handlers()
    return HANDLERS.names()


def load_handlers() -> None:
    """Import the service modules that define handlers (idempotent)."""
    import vistudio.services.captions
    import vistudio.services.dataset_export
    import vistudio.services.duplicates
    import vistudio.services.embedding_map
    import vistudio.services.embeddings
    import vistudio.services.enrich
    import vistudio.services.evaluation
    import vistudio.services.events
    import vistudio.services.experiments
    import vistudio.services.exports
    import vistudio.services.faces
    import vistudio.services.ingest
    import vistudio.services.label_errors
    import vistudio.services.library
    import vistudio.services.people
    import vistudio.services.places
    import vistudio.services.runs
    import vistudio.services.text_index  # noqa: F401
