"""The workspace's structured log, read back: all lines, or one job's (CLI, API, job page)."""

from __future__ import annotations

from typing import Any

from vistudio.studio import Studio
from vistudio.telemetry.logs import read_lines

MAX_LINES = 5000


def log_lines(studio: Studio, *, job_id: int | None = None, limit: int = 200) -> dict[str, Any]:
    """The newest ``limit`` lines, oldest first (one job's with ``job_id``; a missing job is 404):
    ``{"items": [...], "total": N, "skipped": K}`` where ``skipped`` counts unreadable lines."""
    if job_id is not None:
        studio.queue.get(job_id)  # NotFound for a job that does not exist
    page = read_lines(studio.home, job_id=job_id, limit=max(0, min(limit, MAX_LINES)))
    return {"items": page.items, "total": len(page.items), "skipped": page.skipped}
