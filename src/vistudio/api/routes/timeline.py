"""The timeline of a project (photos by date, keyset-paginated) and its places job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from vistudio.api.deps import StudioDep
from vistudio.services import places, timeline

router = APIRouter(tags=["timeline"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]


@router.get("/projects/{project}/timeline")
def timeline_buckets(
    studio: StudioDep,
    project: ProjectRef,
    by: Literal["year", "month", "day"] = "month",
) -> dict[str, Any]:
    """Photo counts per year, month or day, newest first (``groups``), and ``no_date``: photos
    with neither an EXIF nor a file date. ``backfill``: the job filling file dates and places of
    photos imported before the timeline existed, while one is queued or running."""
    return timeline.buckets(studio, project=project, by=by)


@router.get("/projects/{project}/timeline/photos")
def timeline_photos(
    studio: StudioDep,
    project: ProjectRef,
    cursor: Annotated[
        str | None, Query(max_length=100, description="next_cursor of the previous page")
    ] = None,
    at: Annotated[
        str | None,
        Query(
            max_length=20, description="jump: a year, month or day (2019, 2019-06, 2019-06-15) or 'nodate'"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=timeline.MAX_LIMIT)] = timeline.DEFAULT_LIMIT,
) -> dict[str, Any]:
    """One page of photos, newest first (the undated last), each with ``time``, ``time_source``
    (``exif``, ``file``: the file's modification time, or null) and ``place``. Follow
    ``next_cursor`` for the next page (null at the end); never an offset."""
    return timeline.photos(studio, project=project, cursor=cursor, at=at, limit=limit)


@router.post("/projects/{project}/places", status_code=202)
def start_places(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """Queue the places job (``202 {"job"}``, or the one already queued or running): place names
    of photos with a GPS position not yet looked up, file dates of photos that predate them."""
    return {"job": places.start_places(studio, project=project)}
