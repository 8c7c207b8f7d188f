"""The dataset exports of a project (its ``dataset_export`` jobs) and the download of API exports."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from vistudio.errors import Conflict, NotFound
from vistudio.services.dataset_export.export import JOB_KIND
from vistudio.services.projects import find_project
from vistudio.studio import Studio


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def _downloadable(studio: Studio, path: str | None) -> Path | None:
    """The export's zip when it lies under the workspace's ``exports/datasets/`` (made through the
    API) and is still there; CLI exports live in the user's folders and are not served."""
    if not path:
        return None
    root = (studio.home / "exports" / "datasets").resolve()
    real = Path(path).resolve()
    if real.suffix == ".zip" and real.is_relative_to(root) and real.is_file():
        return real
    return None


def _item(studio: Studio, project: str, job: Any) -> dict[str, Any]:
    params = job.params or {}
    result = (job.result or {}).get("export") or {}
    path = result.get("path") or params.get("out")
    shown = path
    if path:
        try:
            shown = Path(path).relative_to(studio.home).as_posix()
        except ValueError:
            shown = path
    ready = job.status == "succeeded" and _downloadable(studio, path) is not None
    return {
        "job_id": job.id,
        "status": job.status,
        "format": params.get("format"),
        "zip": bool(params.get("zip")),
        "by_split": params.get("by_split"),
        "filters": params.get("filters") or {},
        "path": shown,
        "samples": result.get("samples"),
        "annotations": result.get("annotations"),
        "dropped": result.get("dropped"),
        "converted": result.get("converted"),
        "failed_count": result.get("failed_count"),
        "progress": {"done": job.progress_done, "total": job.progress_total},
        "error": (job.error or {}).get("message"),
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "download_url": f"/api/v1/datasets/{project}/exports/{job.id}/download" if ready else None,
    }


def list_dataset_exports(
    studio: Studio, *, project: str | int, offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    """The project's dataset exports, newest first → ``{"items", "total"}``."""
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    jobs, total = studio.queue.list(kind=JOB_KIND, project_id=project_id, offset=offset, limit=limit)
    return {"items": [_item(studio, name, j) for j in jobs], "total": total}


def export_archive(studio: Studio, *, project: str | int, job_id: int) -> tuple[Path, str]:
    """The zip of an API export of ``project`` and the name to download it as."""
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    try:
        job = studio.queue.get(job_id)
    except NotFound:
        raise NotFound(f"dataset export {job_id} not found in project {name!r}") from None
    if job.kind != JOB_KIND or job.project_id != project_id:
        raise NotFound(f"dataset export {job_id} not found in project {name!r}")
    if job.status != "succeeded":
        raise Conflict(f"dataset export {job_id} is {job.status}: there is no file to download yet")
    path = ((job.result or {}).get("export") or {}).get("path")
    archive = _downloadable(studio, path)
    if archive is None:
        raise NotFound(
            f"dataset export {job_id} has no zip in the workspace to download "
            "(exports made with the CLI stay where they were written)"
        )
    fmt = (job.params or {}).get("format", "dataset")
    return archive, f"{name}-{fmt}-{job_id}.zip"
