"""Map page (the project's **Map** tab, ``/projects/{name}/geo``): where its photos were taken, on a
Leaflet map (vendored) over a vendored world outline, with OpenStreetMap tiles when the workspace
is online. The clusters come from the API (``/api/v1/projects/{p}/geo/clusters``, counted in the
database); a selected area lists its photos below the map (``/geo/photos``, an htmx fragment, newest
first) with a link to the Dataset grid filtered to that area (``?bbox=``).

Not the *embedding* map (``/map``, web/pages/map.py: images placed by likeness), hence ``geo``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import geo, projects
from vistudio.web.pages._common import error_fragment, error_page, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE = 60
OUTLINE = "/static/vendor/leaflet/world-110m.geojson"
BBoxText = Annotated[str, Query(max_length=200)]


def _photos(base: str, page: dict[str, Any], bbox: str) -> dict[str, Any]:
    shown = page["offset"] + len(page["items"])
    more = None
    if shown < page["total"]:
        more = f"{base}/geo/photos?" + urlencode({"bbox": bbox, "offset": shown})
    return {**page, "bbox_text": bbox, "more_url": more, "shown": shown}


@router.get("/projects/{name}/geo", response_class=HTMLResponse)
def geo_page(request: Request, studio: StudioDep, name: str, bbox: BBoxText = "") -> Response:
    """The map; ``?bbox=W,S,E,N`` opens with that area selected (the Dataset grid's "on the map")."""
    try:
        project = projects.get_project(studio, name)
        summary = geo.summary(studio, project=project["id"])
        selected = geo.parse_bbox(bbox).text() if bbox else None
    except VistudioError as exc:
        return error_page(request, exc)
    base = "/projects/" + quote(project["name"], safe="")
    config = {
        "api": "/api/v1/projects/" + quote(project["name"], safe="") + "/geo",
        "photos": base + "/geo/photos",
        "dataset": base,
        "bounds": summary["bounds"],
        "tiles": summary["tiles"],
        "outline": OUTLINE,
        "selected": selected,
        "max_zoom": 19,  # OpenStreetMap's deepest tiles
    }
    return render(
        request,
        "geo.html",
        {"project": project, "tab": "geo", "base": base, "summary": summary, "config": config},
    )


@router.get("/projects/{name}/geo/photos", response_class=HTMLResponse)
def geo_photos(
    request: Request,
    studio: StudioDep,
    name: str,
    bbox: BBoxText = "",
    offset: Annotated[str, Query(max_length=12)] = "0",
) -> Response:
    """The photos of a selected area, newest first: its heading and first tiles, or (``offset``) the
    next tiles, swapped in for the "More" button."""
    try:
        if not (offset.isascii() and offset.isdigit()):
            raise InvalidInput("offset must be a whole number")
        if not bbox:
            raise InvalidInput("choose an area on the map (bbox=west,south,east,north)")
        project = projects.get_project(studio, name)
        box = geo.parse_bbox(bbox)
        page = geo.photos(studio, project=project["id"], bbox=box, offset=int(offset), limit=PAGE)
    except VistudioError as exc:
        return error_fragment(request, exc)
    base = "/projects/" + quote(project["name"], safe="")
    ctx = {"project": project, "base": base, **_photos(base, page, box.text())}
    template = "fragments/geo_tiles.html" if int(offset) else "fragments/geo_photos.html"
    return render(request, template, ctx)
