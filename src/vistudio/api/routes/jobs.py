from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from vistudio.api.access import still_allowed
from vistudio.api.deps import Id, Limit, Offset, PrincipalDep, StudioDep
from vistudio.api.errors import error_body
from vistudio.jobs.queue import FINISHED, job_dict
from vistudio.services import access, logs
from vistudio.services.projects import get_project

router = APIRouter(prefix="/jobs", tags=["jobs"])
POLL_SECONDS = 0.3
# how often an open event stream checks again that its token or session is still valid (and its
# access to the job's project): a revoked token ends the stream within this time
RECHECK_SECONDS = 5.0


@router.get("")
def list_jobs(
    studio: StudioDep,
    principal: PrincipalDep,
    status: Annotated[str | None, Query(max_length=100, description="comma-separated statuses")] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    project: Annotated[str | None, Query(max_length=200)] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    project_id = get_project(studio, project)["id"] if project else None
    items, total = studio.queue.list(
        status=status,
        kind=kind,
        project_id=project_id,
        project_ids=access.visible_project_ids(studio, principal),
        offset=offset,
        limit=limit,
    )
    return {"items": [job_dict(j) for j in items], "total": total}


@router.get("/{job_id}")
def get_job(studio: StudioDep, job_id: Id) -> dict[str, Any]:
    return {"job": job_dict(studio.queue.get(job_id))}


@router.post("/{job_id}/cancel")
def cancel_job(studio: StudioDep, job_id: Id) -> dict[str, Any]:
    return {"job": job_dict(studio.queue.cancel(job_id))}


@router.post("/{job_id}/requeue")
def requeue_job(studio: StudioDep, job_id: Id) -> dict[str, Any]:
    return {"job": job_dict(studio.queue.requeue(job_id))}


@router.get("/{job_id}/logs")
def job_logs(
    studio: StudioDep, job_id: Id, limit: Annotated[int, Query(ge=1, le=5000)] = 200
) -> dict[str, Any]:
    """The job's lines of the workspace's JSON log (newest ``limit``, oldest first); ``skipped``
    counts log lines that could not be read (corrupt)."""
    return logs.log_lines(studio, job_id=job_id, limit=limit)


@router.get("/{job_id}/events", response_class=StreamingResponse)
async def job_events(
    studio: StudioDep,
    request: Request,
    job_id: Id,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: progress, logs and status changes, until the job finishes. Every
    ``RECHECK_SECONDS`` the caller is checked again: a revoked or expired token, an ended session
    or a withdrawn membership ends the stream with a ``denied`` event (an error body, code
    ``unauthorized``)."""
    await run_in_threadpool(studio.queue.get, job_id)  # 404 before the stream starts
    after = (
        int(last_event_id)
        if last_event_id and last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) < 19
        else 0
    )

    async def stream() -> AsyncIterator[str]:
        nonlocal after
        yield "retry: 2000\n\n"
        checked = time.monotonic()
        while True:
            if time.monotonic() - checked >= RECHECK_SECONDS:
                if not await still_allowed(request):
                    body = error_body("unauthorized", "access ended: token revoked or expired, or signed out")
                    yield f"event: denied\ndata: {json.dumps(body)}\n\n"
                    return
                checked = time.monotonic()
            events = await run_in_threadpool(studio.queue.events_after, job_id, after)
            for ev in events:
                after = ev.id
                payload = {"id": ev.id, "at": ev.at.isoformat() + "Z", **ev.data}
                yield f"id: {ev.id}\nevent: {ev.kind}\ndata: {json.dumps(payload)}\n\n"
            if not events:
                job = await run_in_threadpool(studio.queue.get, job_id)
                if job.status in FINISHED:
                    yield f"event: end\ndata: {json.dumps(job_dict(job))}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
