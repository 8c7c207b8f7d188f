"""API: duplicate groups per level (exact, perceptual, semantic) and review decisions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from vistudio.api.deps import MAX_ID, Id, Offset, StudioDep
from vistudio.services import duplicates

router = APIRouter(prefix="/duplicates", tags=["duplicates"])

ProjectRef = Annotated[str, Path(max_length=200)]
GroupRef = Annotated[str, Path(max_length=40)]
GroupLimit = Annotated[int, Query(ge=1, le=duplicates.MAX_LIMIT, description="groups to return")]


class DecisionRequest(BaseModel):
    action: str = Field(max_length=16, description="keep | hide | remove")
    keeper: int | None = Field(default=None, ge=1, le=MAX_ID, description="a sample of the group")
    level: str | None = Field(default=None, max_length=16, description="implied by the group id")
    threshold: float | None = Field(default=None, description="the threshold the group was listed with")


@router.get("/{project}")
def list_groups(
    studio: StudioDep,
    project: ProjectRef,
    level: Annotated[str, Query(max_length=16, description="exact | perceptual | semantic")] = "perceptual",
    threshold: Annotated[
        float | None, Query(description="bits (perceptual, 0-16) or cosine similarity (semantic, 0.8-1)")
    ] = None,
    status: Annotated[str, Query(max_length=16, description="all | open | reviewed")] = "all",
    offset: Offset = 0,
    limit: GroupLimit = 50,
) -> dict[str, Any]:
    """One page of duplicate groups, largest first: ``{"items": [group], "total", "counts", ...}``."""
    return duplicates.list_groups(
        studio, project=project, level=level, threshold=threshold, status=status, offset=offset, limit=limit
    )


@router.get("/{project}/groups/{group}")
def get_group(
    studio: StudioDep,
    project: ProjectRef,
    group: GroupRef,
    threshold: Annotated[float | None, Query(description="the threshold the group was listed with")] = None,
    offset: Offset = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=duplicates.MAX_LIMIT, description="members to return (default: all)")
    ] = None,
) -> dict[str, Any]:
    """One group with its decision; ``offset``/``limit`` page through its members (``size``
    counts them all)."""
    return duplicates.get_group(
        studio, project=project, group=group, threshold=threshold, offset=offset, limit=limit
    )


@router.post("/{project}/groups/{group}/decision", status_code=201)
def decide(studio: StudioDep, project: ProjectRef, group: GroupRef, body: DecisionRequest) -> dict[str, Any]:
    """Keep (mark reviewed), hide the others, or remove the others from the project."""
    return duplicates.decide(
        studio,
        project=project,
        group=group,
        action=body.action,
        level=body.level,
        threshold=body.threshold,
        keeper=body.keeper,
    )


@router.get("/{project}/decisions")
def list_decisions(
    studio: StudioDep,
    project: ProjectRef,
    action: Annotated[str | None, Query(max_length=16, description="keep | hide | remove")] = None,
    offset: Offset = 0,
    limit: GroupLimit = 50,
) -> dict[str, Any]:
    """Decisions, newest first; a removal lists what it removed (``removed``)."""
    return duplicates.list_decisions(studio, project=project, action=action, offset=offset, limit=limit)


@router.post("/{project}/decisions/{decision_id}/undo")
def undo(studio: StudioDep, project: ProjectRef, decision_id: Id) -> dict[str, Any]:
    """Take a decision back (a removal: while the removed samples' blobs are not collected)."""
    return duplicates.undo(studio, project=project, decision=decision_id)


@router.post("/{project}/hashes", status_code=202)
def start_hashing(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """Queue the rotation/mirror hashing of samples not hashed yet (one job per project at a time)."""
    return {"job": duplicates.start_hashing(studio, project=project)}
