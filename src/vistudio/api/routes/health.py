"""Liveness and Prometheus metrics; mounted at the root, outside /api/v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from vistudio import __version__
from vistudio.api.deps import StudioDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(studio: StudioDep) -> dict[str, Any]:
    with studio.sessions() as s:
        s.execute(select(1))
    return {"status": "ok", "version": __version__}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(studio: StudioDep) -> Response:
    """Prometheus text: request and job metrics of this server and of worker processes, and the
    queue, dead-letter and index gauges read from the database (docs/operations.md)."""
    from vistudio.telemetry.metrics import CONTENT_TYPE

    return Response(studio.metrics.exposition(studio), media_type=CONTENT_TYPE)
