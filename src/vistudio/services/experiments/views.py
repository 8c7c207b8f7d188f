"""Experiments as dicts for the API, CLI and pages, and reconciling an experiment with its
finished job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from vistudio.db import Job, utcnow
from vistudio.db.training import Checkpoint, Experiment
from vistudio.jobs.queue import FINISHED
from vistudio.services.experiments.lookup import checkpoint_path

if TYPE_CHECKING:
    from vistudio.studio import Studio

ACTIVE = ("queued", "running")


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def checkpoint_dict(studio: Studio, row: Checkpoint) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "sha256": row.sha256,
        "size": row.size,
        "epoch": row.epoch,
        "step": row.step,
        "metrics": row.metrics,
        "path": str(checkpoint_path(studio, row.sha256)),
        "created_at": _iso(row.created_at),
    }


def experiment_dict(
    studio: Studio,
    exp: Experiment,
    *,
    project: str | None = None,
    checkpoints: list[Checkpoint] | None = None,
    job: Job | None = None,
    live: dict[str, Any] | None = None,
    warnings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": exp.id,
        "name": exp.name,
        "project_id": exp.project_id,
        "task": exp.task,
        "status": exp.status,
        "split": exp.config.get("split"),
        "split_id": exp.split_id,
        "version_id": exp.version_id,
        "model": exp.config.get("model"),
        "config": exp.config,
        "classes": exp.classes,
        "epochs": exp.config.get("epochs"),
        "epochs_done": exp.epochs_done,
        "monitor": exp.config.get("monitor"),
        "best_metrics": exp.best_metrics,
        "final_metrics": exp.final_metrics,
        "error": exp.error,
        "job_id": exp.job_id,
        "created_at": _iso(exp.created_at),
        "started_at": _iso(exp.started_at),
        "finished_at": _iso(exp.finished_at),
    }
    if project is not None:
        d["project"] = project
    if checkpoints is not None:
        d["checkpoints"] = [checkpoint_dict(studio, c) for c in sorted(checkpoints, key=lambda c: c.kind)]
    if warnings is not None:
        d["warnings"] = warnings
    if job is not None:
        d["live"] = live
        d["job"] = {
            "id": job.id,
            "status": job.status,
            "attempts": job.attempts,
            "cancel_requested": job.cancel_requested,
            "progress": {
                "done": job.progress_done,
                "total": job.progress_total,
                "message": job.progress_message,
            },
        }
    return d


def _reconcile(studio: Studio, experiments: list[Experiment]) -> None:
    """An experiment still marked queued/running whose job has finished (its worker died on its
    last attempt, the job was cancelled before it started…) takes the job's outcome."""
    stale = [e for e in experiments if e.status in ACTIVE]
    if not stale:
        return
    with studio.sessions() as s:
        jobs = {
            j.id: j for j in s.scalars(select(Job).where(Job.id.in_([e.job_id for e in stale if e.job_id])))
        }
    fixes: dict[int, tuple[str, str | None]] = {}
    for e in stale:
        job = jobs.get(e.job_id or -1)
        if job is None:
            fixes[e.id] = ("failed", "the training job was deleted")
        elif job.status in FINISHED and job.status != "succeeded":
            if job.status == "cancelled":
                fixes[e.id] = ("stopped", None)
            else:
                fixes[e.id] = (
                    "failed",
                    f"the training job is {job.status}: {(job.error or {}).get('message')}",
                )
    if not fixes:
        return
    with studio.sessions.begin() as s:
        for exp_id, (status, error) in fixes.items():
            row = s.get(Experiment, exp_id)
            if row is not None and row.status in ACTIVE:
                row.status = status
                row.error = error or row.error
                row.finished_at = row.finished_at or utcnow()
    for e in stale:
        if e.id in fixes:
            e.status, e.error = fixes[e.id][0], fixes[e.id][1] or e.error
