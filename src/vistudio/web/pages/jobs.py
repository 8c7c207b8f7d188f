"""Jobs page: the queue with live progress, cancel and retry, the dead-letter tab and job details."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.services import projects
from vistudio.studio import Studio
from vistudio.web.pages._common import ACTIVE_STATUSES, RowId, error_fragment, render

router = APIRouter(tags=["web"], include_in_schema=False)
TABS = {"all": None, "active": "queued,running", "failed": "failed", "dead": "dead"}
PAGE = 100
Tab = Annotated[str, Query(max_length=20)]


def _table(studio: Studio, tab: str) -> dict[str, Any]:
    tab = tab if tab in TABS else "all"
    items, total = studio.queue.list(status=TABS[tab], limit=PAGE)
    names = {p["id"]: p["name"] for p in projects.list_projects(studio, limit=1000)["items"]}
    jobs = [job_dict(j) for j in items]
    for j in jobs:
        j["project_name"] = names.get(j["project_id"])
        p = j["progress"]
        j["pct"] = (
            round(100 * p["done"] / p["total"]) if p["total"] else (100 if j["status"] == "succeeded" else 0)
        )
    # dead jobs counted separately so the tab can show how many wait in the dead-letter queue
    _, dead = studio.queue.list(status="dead", limit=1)
    return {
        "jobs": jobs,
        "total": total,
        "tab": tab,
        "tabs": list(TABS),
        "dead_count": dead,
        "polling": any(j["status"] in ACTIVE_STATUSES for j in jobs),
    }


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, studio: StudioDep, tab: Tab = "all") -> Response:
    return render(request, "jobs.html", {**_table(studio, tab), "nav": "jobs"})


@router.get("/jobs/table", response_class=HTMLResponse)
def jobs_table(request: Request, studio: StudioDep, tab: Tab = "all") -> Response:
    return render(request, "fragments/jobs_table.html", _table(studio, tab))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_detail(request: Request, studio: StudioDep, job_id: RowId) -> Response:
    try:
        job = job_dict(studio.queue.get(job_id))
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/job_detail.html", {"job": job})


def _act(request: Request, studio: Studio, job_id: int, tab: str, action: str) -> Response:
    try:
        if action == "cancel":
            studio.queue.cancel(job_id)
        else:
            studio.queue.requeue(job_id)
    except VistudioError as exc:
        # the message goes above the table; the table itself stays
        return error_fragment(request, exc, headers={"HX-Retarget": "#job-errors", "HX-Reswap": "innerHTML"})
    return render(request, "fragments/jobs_table.html", _table(studio, tab))


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel(request: Request, studio: StudioDep, job_id: RowId, tab: Tab = "all") -> Response:
    return _act(request, studio, job_id, tab, "cancel")


@router.post("/jobs/{job_id}/requeue", response_class=HTMLResponse)
def requeue(request: Request, studio: StudioDep, job_id: RowId, tab: Tab = "all") -> Response:
    return _act(request, studio, job_id, tab, "requeue")
