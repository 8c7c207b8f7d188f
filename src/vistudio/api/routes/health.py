"""Liveness and Prometheus metrics; mounted at the root, outside /api/v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select

from vistudio import __version__
from vistudio.api.deps import StudioDep
from vistudio.db import Job, Project, Sample

router = APIRouter(tags=["health"])


@router.get("/health")
def health(studio: StudioDep) -> dict[str, Any]:
    with studio.sessions() as s:
        s.execute(select(1))
    return {"status": "ok", "version": __version__}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(studio: StudioDep) -> str:
    with studio.sessions() as s:
        projects = s.scalar(select(func.count(Project.id))) or 0
        samples = s.scalar(select(func.count(Sample.id))) or 0
        jobs = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    lines = [
        "# HELP vistudio_projects Number of projects.",
        "# TYPE vistudio_projects gauge",
        f"vistudio_projects {projects}",
        "# HELP vistudio_samples Number of samples in all projects.",
        "# TYPE vistudio_samples gauge",
        f"vistudio_samples {samples}",
        "# HELP vistudio_jobs Jobs by status.",
        "# TYPE vistudio_jobs gauge",
    ]
    for status in ("queued", "running", "succeeded", "failed", "dead", "cancelled"):
        lines.append(f'vistudio_jobs{{status="{status}"}} {jobs.get(status, 0)}')
    return "\n".join(lines) + "\n"
