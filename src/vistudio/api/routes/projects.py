from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vistudio.api.deps import Limit, Offset, PrincipalDep, StudioDep
from vistudio.services import access, projects, samples, targets

router = APIRouter(prefix="/projects", tags=["projects"])


class ProjectCreate(BaseModel):
    name: str = Field(max_length=200)
    task: str = Field(max_length=40)


class ProjectRename(BaseModel):
    name: str = Field(max_length=200)


class MemberRole(BaseModel):
    role: str = Field(max_length=16, description="owner | editor | viewer | none (removes the member)")


@router.get("")
def list_projects(
    studio: StudioDep, principal: PrincipalDep, offset: Offset = 0, limit: Limit = 100
) -> dict[str, Any]:
    """The projects the caller may see (all of them before users exist)."""
    visible = access.visible_project_ids(studio, principal)
    return projects.list_projects(studio, offset=offset, limit=limit, visible=visible)


@router.post("", status_code=201)
def create_project(studio: StudioDep, principal: PrincipalDep, body: ProjectCreate) -> dict[str, Any]:
    """A new project, owned by the caller once users exist."""
    return {
        "project": projects.create_project(studio, name=body.name, task=body.task, owner=principal.user_id)
    }


@router.get("/{project}/members")
def list_members(studio: StudioDep, project: str) -> dict[str, Any]:
    """The project's owner and members with their roles."""
    return access.project_members(studio, project)


@router.put("/{project}/members/{user}")
def share_project(
    studio: StudioDep, principal: PrincipalDep, project: str, user: str, body: MemberRole
) -> dict[str, Any]:
    """Share the project with a user (its owner or an admin); recorded in the audit log."""
    return access.share_project(studio, project=project, user=user, role=body.role, actor=principal.name)


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
