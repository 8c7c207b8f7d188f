"""A project's events: photos grouped by when and where they were taken, merged, split, renamed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from vistudio.api.deps import StudioDep
from vistudio.services import events

router = APIRouter(tags=["events"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]


class RenameRequest(BaseModel):
    name: str | None = Field(
        default=None, max_length=events.MAX_NAME, description="empty: the worked-out name"
    )


class MergeRequest(BaseModel):
    events: list[int] = Field(min_length=2, max_length=1000, description="events next to each other in time")


class SplitRequest(BaseModel):
    at: int = Field(description="the photo (sample id) the new event starts at")


@router.get("/projects/{project}/events")
def list_events(
    studio: StudioDep,
    project: ProjectRef,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=events.MAX_LIMIT)] = 100,
) -> dict[str, Any]:
    """The events, newest first. ``stale``: the photos changed since they were worked out; the
    recomputation (``job``) is then queued."""
    return events.list_events(studio, project=project, offset=offset, limit=limit)


@router.post("/projects/{project}/events/refresh", status_code=202)
def refresh_events(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """Queue the recomputation of the events (``202 {"job"}``, or the one already queued)."""
    return events.refresh(studio, project=project)


@router.post("/projects/{project}/events/merge")
def merge_events(studio: StudioDep, project: ProjectRef, body: MergeRequest) -> dict[str, Any]:
    """Merge events that follow each other into the first (a 409 names any event between them)."""
    return events.merge_events(studio, project=project, events=body.events)


@router.get("/projects/{project}/events/{event}")
def get_event(
    studio: StudioDep,
    project: ProjectRef,
    event: int,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=events.MAX_LIMIT)] = 200,
) -> dict[str, Any]:
    """An event, a page of its photos in time order, and the ids of the events before and after."""
    return events.get_event(studio, project=project, event=event, offset=offset, limit=limit)


@router.patch("/projects/{project}/events/{event}")
def rename_event(studio: StudioDep, project: ProjectRef, event: int, body: RenameRequest) -> dict[str, Any]:
    """Name the event (kept by every recomputation); an empty name gives back the worked-out one."""
    return events.rename_event(studio, project=project, event=event, name=body.name)


@router.post("/projects/{project}/events/{event}/split")
def split_event(studio: StudioDep, project: ProjectRef, event: int, body: SplitRequest) -> dict[str, Any]:
    """Split the event before one of its photos: the photos from it on become a new event."""
    return events.split_event(studio, project=project, event=event, at=body.at)
