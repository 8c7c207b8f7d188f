from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from vistudio.api.deps import Limit, Offset, PrincipalDep, StudioDep
from vistudio.api.routes.imports import _inside_roots
from vistudio.services import access, runs

router = APIRouter(prefix="/runs", tags=["runs"])
RunId = Annotated[str, Query(max_length=40)]


class RunRequest(BaseModel):
    pipeline: dict[str, Any] | str = Field(description="the pipeline as a mapping, or its YAML text")
    input: str | None = Field(
        default=None, max_length=4096, description="a server folder (inside VISTUDIO_IMPORT_ROOTS)"
    )
    files: list[str] | None = Field(default=None, max_length=100_000)
    project: str | None = Field(default=None, max_length=200)
    split: str | None = Field(default=None, max_length=64)
    subset: str | None = Field(default=None, max_length=16)
    mode: str | None = Field(default=None, max_length=16)
    tag: str | None = Field(default=None, max_length=64)
    ground_truth: str | None = Field(default=None, max_length=4096)
    dry_run: bool = False


class CleanRequest(BaseModel):
    runs: list[str] | None = Field(default=None, max_length=10_000)
    older_than_days: float | None = Field(default=None, ge=0, le=100_000)
    keep_errors: bool = False
    include_tagged: bool = False
    dry_run: bool = False


@router.post("", status_code=202)
def start_run(studio: StudioDep, body: RunRequest) -> dict[str, Any]:
    roots = studio.settings.import_roots

    def server_path(p: str | None) -> Path | None:
        return _inside_roots(Path(p), roots) if p else None

    job = runs.start_run(
        studio,
        pipeline=body.pipeline,
        input_dir=server_path(body.input),
        files=[_inside_roots(Path(f), roots) for f in body.files] if body.files else None,
        project=body.project,
        split=body.split,
        subset=body.subset,
        mode=body.mode,
        tag=body.tag,
        ground_truth=server_path(body.ground_truth),
        dry_run=body.dry_run,
    )
    return {"job": job}


@router.get("")
def list_runs(
    studio: StudioDep,
    principal: PrincipalDep,
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: Annotated[str | None, Query(max_length=100)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    slower_than_ms: Annotated[float | None, Query(ge=0, le=1e12)] = None,
    metric: Annotated[str | None, Query(max_length=200)] = None,
    metric_above: Annotated[float | None, Query(ge=-1e300, le=1e300)] = None,
    metric_below: Annotated[float | None, Query(ge=-1e300, le=1e300)] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Runs, newest first: those over no project and over the projects the caller may see."""
    visible = access.visible_run_ids(studio, principal)
    found = runs.list_runs(
        studio,
        pipeline=pipeline,
        since=since,
        until=until,
        status=status,
        tag=tag,
        slower_than_ms=slower_than_ms,
        metric=metric,
        metric_above=metric_above,
        metric_below=metric_below,
        offset=offset if visible is None else 0,
        limit=limit if visible is None else 2**62,
    )
    if visible is None:
        return found
    kept = [r for r in found["items"] if r["id"] in visible]
    return {"items": kept[offset : offset + limit], "total": len(kept)}


@router.get("/usage")
def usage(studio: StudioDep, principal: PrincipalDep) -> dict[str, Any]:
    """Bytes saved per mode (all runs), and the largest runs the caller may see."""
    out = runs.disk_usage(studio)
    visible = access.visible_run_ids(studio, principal)
    if visible is not None:
        out["largest_runs"] = [r for r in out["largest_runs"] if r["id"] in visible]
    return out


@router.get("/compare")
def compare(
    studio: StudioDep,
    principal: PrincipalDep,
    a: RunId,
    b: RunId,
    threshold: Annotated[float, Query(ge=0, le=100)] = 0.05,
) -> dict[str, Any]:
    access.check_runs(studio, principal, [a, b])  # a run of a hidden project: as a missing one
    return runs.compare_runs(studio, a, b, threshold=threshold)


@router.post("/clean")
def clean(studio: StudioDep, body: CleanRequest) -> dict[str, Any]:
    return runs.clean_runs(
        studio,
        older_than_days=body.older_than_days,
        run_ids=body.runs,
        keep_errors=body.keep_errors,
        keep_tagged=not body.include_tagged,
        dry_run=body.dry_run,
    )


@router.get("/{run_id}")
def get_run(studio: StudioDep, run_id: str) -> dict[str, Any]:
    return {"run": runs.get_run(studio, run_id)}
