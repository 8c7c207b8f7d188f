from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vistudio.api.deps import Limit, Offset, StudioDep
from vistudio.services import projects, samples, targets

router = APIRouter(prefix="/projects", tags=["projects"])


class ProjectCreate(BaseModel):
    name: str = Field(max_length=200)
    task: str = Field(max_length=40)


class ProjectRename(BaseModel):
    name: str = Field(max_length=200)


@router.get("")
def list_projects(studio: StudioDep, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
    return projects.list_projects(studio, offset=offset, limit=limit)


@router.post("", status_code=201)
def create_project(studio: StudioDep, body: ProjectCreate) -> dict[str, Any]:
    return {"project": projects.create_project(studio, name=body.name, task=body.task)}


@router.get("/{project}")
def get_project(studio: StudioDep, project: str) -> dict[str, Any]:
    return {"project": projects.get_project(studio, project)}


@router.get("/{project}/classes")
def class_counts(studio: StudioDep, project: str) -> dict[str, Any]:
    counts = samples.class_counts(studio, project=project)
    return {"items": [{"name": k, "samples": v} for k, v in counts.items()], "total": len(counts)}


@router.get("/{project}/targets")
def target_statistics(studio: StudioDep, project: str) -> dict[str, Any]:
    """Regression: each target's count, min, max, mean, std and histogram over the images with
    usable values, and how many images were left out (and why)."""
    return targets.target_statistics(studio, project=project)


@router.patch("/{project}")
def rename_project(studio: StudioDep, project: str, body: ProjectRename) -> dict[str, Any]:
    return {"project": projects.rename_project(studio, project, body.name)}


@router.delete("/{project}")
def delete_project(studio: StudioDep, project: str) -> dict[str, Any]:
    return projects.delete_project(studio, project)
