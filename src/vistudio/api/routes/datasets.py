"""Dataset export: a project's samples and ground truth as COCO, YOLO, VOC, DOTA, CSV or class
folders, zipped under the workspace; the list of a project's exports and their download."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vistudio.api.deps import Id, Limit, Offset, StudioDep
from vistudio.api.routes.edits import SampleFilter
from vistudio.errors import BadRequest
from vistudio.services import dataset_export, views

router = APIRouter(prefix="/datasets", tags=["datasets"])


class DatasetExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(max_length=16, description="coco, yolo, voc, dota, csv or folders")
    filters: SampleFilter | None = None
    view: str | None = Field(None, max_length=100, description="a saved view's samples (instead of filters)")
    version: str | None = Field(
        None,
        max_length=100,
        description="a dataset version (name or number): its samples with the labels it had",
    )
    by_split: str | None = Field(
        None,
        max_length=200,
        description="a split: one set per subset (YOLO train/val/test, COCO one json each)",
    )
    zip: bool = Field(True, description="API exports are always zipped")
    dry_run: bool = Field(False, description="only count what the format would drop: 200, nothing written")


@router.post("/{project}/export", status_code=202, response_model=None)
def export_dataset(
    studio: StudioDep, project: str, body: DatasetExportRequest
) -> dict[str, Any] | JSONResponse:
    """Queue an export (202 ``{"job"}``) to ``exports/datasets/<project>/<format>-<job id>.zip``
    in the workspace; with ``dry_run``: 200 with what it would write and drop."""
    filters = body.filters.model_dump(exclude_defaults=True) if body.filters else None
    if body.view is not None:
        if filters:
            raise BadRequest("give either a view or filters")
        filters = views.view_filter(studio, project=project, name=body.view)
    if body.version is not None and filters:
        raise BadRequest("give either a version or a view / filters: a version is exported whole")
    if body.dry_run:
        preview = dataset_export.preview_export(
            studio,
            project=project,
            format=body.format,
            filters=filters,
            by_split=body.by_split,
            version=body.version,
        )
        return JSONResponse(preview, status_code=200)
    job = dataset_export.start_dataset_export(
        studio,
        project=project,
        format=body.format,
        out=None,
        zip=body.zip,
        filters=filters,
        by_split=body.by_split,
        version=body.version,
    )
    return {"job": job}


@router.get("/{project}/exports")
def list_exports(studio: StudioDep, project: str, offset: Offset = 0, limit: Limit = 50) -> dict[str, Any]:
    """The project's dataset exports, newest first, with ``download_url`` once a zip is ready."""
    return dataset_export.list_dataset_exports(studio, project=project, offset=offset, limit=limit)


@router.get("/{project}/exports/{job_id}/download", response_class=FileResponse)
def download_export(studio: StudioDep, project: str, job_id: Id) -> FileResponse:
    """The zip of a finished API export (409 while it runs)."""
    path, filename = dataset_export.export_archive(studio, project=project, job_id=job_id)
    return FileResponse(path, media_type="application/zip", filename=filename)
