"""Photos on a map: where a project's photos with a GPS position are (bounds and counts), clusters
of them per zoom level, and the photos inside an area (services/geo.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from vistudio.api.deps import Offset, StudioDep
from vistudio.services import geo

router = APIRouter(tags=["geo"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]
BBoxParam = Annotated[
    str | None,
    Query(
        max_length=200,
        description="west,south,east,north in degrees (west > east: across the antimeridian); "
        "default: the whole world",
        examples=["-10,35,5,44"],
    ),
]


@router.get("/projects/{project}/geo")
def geo_summary(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """How many photos have a GPS position (``with_gps``) and how many not (``without_gps``), the
    box around them (``bounds``: ``[west, south, east, north]``, null when none), and the online
    tiles (``tiles``: null when the workspace is offline)."""
    return geo.summary(studio, project=project)


@router.get("/projects/{project}/geo/clusters")
def geo_clusters(
    studio: StudioDep,
    project: ProjectRef,
    bbox: BBoxParam = None,
    zoom: Annotated[int, Query(ge=0, le=geo.MAX_ZOOM, description="the map's zoom level")] = 0,
) -> dict[str, Any]:
    """The photos inside ``bbox`` as clusters: one per occupied cell of ``360 / 2**(zoom + 2)``
    degrees (``count``, mean position ``lat``/``lon``, ``bounds`` of its photos, ``sample_id`` for a
    thumbnail), most photos first; ``photos``: how many are inside. Counted in the database: the
    answer has at most one cluster per cell, however many photos there are. An area of more than
    65,536 cells at that zoom is a 422."""
    return geo.clusters(studio, project=project, bbox=bbox, zoom=zoom)


@router.get("/projects/{project}/geo/photos")
def geo_photos(
    studio: StudioDep,
    project: ProjectRef,
    bbox: BBoxParam = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=geo.MAX_LIMIT, description="rows to return")] = geo.DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The photos inside ``bbox``, newest first (the undated last): ``{"items": [{"id", "name",
    "width", "height", "time", "lat", "lon", "place", "thumbnail_url"}], "total", "offset",
    "limit"}``."""
    return geo.photos(studio, project=project, bbox=bbox, offset=offset, limit=limit)
