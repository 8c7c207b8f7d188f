"""Jobs page: the queue with live progress, cancel and retry, the dead-letter tab and job details."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.access import principal_of
from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.services import access, logs, projects
from vistudio.studio import Studio
from vistudio.web.pages._common import ACTIVE_STATUSES, RowId, error_fragment, render, row_id

router = APIRouter(tags=["web"], include_in_schema=False)
TABS = {"all": None, "active": "queued,running", "failed": "failed", "dead": "dead"}
PAGE = 100
EVENTS = 200  # newest events shown in a job's log
LOG_LINES = 200  # newest lines of the JSON log shown for a job
TRACEBACK_LINES = 12  # the tail shown open; the whole traceback stays one click away
Tab = Annotated[str, Query(max_length=20)]
JobParam = Annotated[str, Query(max_length=19)]


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.removesuffix("Z")) if value else None


def duration(seconds: float | None) -> str:
    """``"0.4 s"``, ``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``; ``"—"`` when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _timings(job: dict[str, Any]) -> dict[str, Any]:
    """How long the job waited and ran; a running job's duration counts up to now."""
    created, started, finished = (_parse(job[k]) for k in ("created_at", "started_at", "finished_at"))
    now = datetime.now(UTC).replace(tzinfo=None)  # the database stores naive UTC
    end = finished or (now if job["status"] == "running" else None)
    return {
        "waited": duration((started - created).total_seconds()) if started and created else "—",
        "duration": duration((end - started).total_seconds()) if started and end else "—",
    }


def _pct(job: dict[str, Any]) -> int:
    p = job["progress"]
    if p["total"]:
        return min(100, round(100 * p["done"] / p["total"]))
    return 100 if job["status"] == "succeeded" else 0


def _table(studio: Studio, tab: str, request: Request) -> dict[str, Any]:
    tab = tab if tab in TABS else "all"
    visible = access.visible_project_ids(studio, principal_of(request))
    items, total = studio.queue.list(status=TABS[tab], project_ids=visible, limit=PAGE)
    names = {p["id"]: p["name"] for p in projects.list_projects(studio, limit=1000)["items"]}
    jobs = [job_dict(j) for j in items]
    for j in jobs:
        j["project_name"] = names.get(j["project_id"])
        j["pct"] = _pct(j)
        j.update(_timings(j))
    # dead jobs counted separately so the tab can show how many wait in the dead-letter queue
    _, dead = studio.queue.list(status="dead", project_ids=visible, limit=1)
    return {
        "jobs": jobs,
        "total": total,
        "tab": tab,
        "tabs": list(TABS),
        "dead_count": dead,
        "polling": any(j["status"] in ACTIVE_STATUSES for j in jobs),
    }


def _detail(studio: Studio, job_id: int) -> dict[str, Any]:
    """One job for the detail panel: timings, progress, the traceback's tail and the event log."""
    job = job_dict(studio.queue.get(job_id))
    job["pct"] = _pct(job)
    job.update(_timings(job))
    tb = ((job["error"] or {}).get("traceback") or "").rstrip().splitlines()
    events, ticks = studio.queue.event_log(job_id, limit=EVENTS)
    return {
        "job": job,
        "traceback_tail": "\n".join(tb[-TRACEBACK_LINES:]),
        "traceback_cut": len(tb) > TRACEBACK_LINES,
        "events": [
            {"id": e.id, "at": e.at.isoformat() + "Z", "kind": e.kind, "data": e.data} for e in events
        ],
        "progress_events": ticks,
        "events_limit": EVENTS,
        # the job's lines of the workspace's JSON log (services/logs.py): what its worker wrote
        "log": logs.log_lines(studio, job_id=job_id, limit=LOG_LINES),
        "log_limit": LOG_LINES,
    }


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, studio: StudioDep, tab: Tab = "all", job: JobParam = "") -> Response:
    """The list; ``?job=N`` (the import and scan panels link there) opens job N's detail at once."""
    detail: dict[str, Any] | None = None
    detail_error: VistudioError | None = None
    if job:
        try:
            detail = _detail(studio, row_id(job, "job"))
        except VistudioError as exc:
            detail_error = exc
    return render(
        request,
        "jobs.html",
        {
            **_table(studio, tab, request),
            **(detail or {}),
            "nav": "jobs",
            "detail": detail is not None,
            "detail_error": {"message": detail_error.message, "code": detail_error.code}
            if detail_error
            else None,
        },
    )


@router.get("/jobs/table", response_class=HTMLResponse)
def jobs_table(request: Request, studio: StudioDep, tab: Tab = "all") -> Response:
    return render(request, "fragments/jobs_table.html", _table(studio, tab, request))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(request: Request, studio: StudioDep, job_id: RowId) -> Response:
    try:
        ctx = _detail(studio, job_id)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/job_detail.html", ctx)


def _act(request: Request, studio: Studio, job_id: int, tab: str, action: str) -> Response:
    try:
        if action == "cancel":
            studio.queue.cancel(job_id)
        else:
            studio.queue.requeue(job_id)
    except VistudioError as exc:
        # the message goes above the table; the table itself stays
        return error_fragment(request, exc, headers={"HX-Retarget": "#job-errors", "HX-Reswap": "innerHTML"})
    return render(request, "fragments/jobs_table.html", _table(studio, tab, request))


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, studio: StudioDep, job_id: RowId, tab: Tab = "all") -> Response:
    return _act(request, studio, job_id, tab, "cancel")


@router.post("/jobs/{job_id}/requeue", response_class=HTMLResponse)
def requeue(request: Request, studio: StudioDep, job_id: RowId, tab: Tab = "all") -> Response:
    return _act(request, studio, job_id, tab, "requeue")
