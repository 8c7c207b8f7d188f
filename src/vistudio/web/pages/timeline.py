"""Timeline page: a project's photos by date, newest first, under month and day headings, with a
year/month scrubber that jumps to a date (``?at=2019-06``) and infinite scroll that follows the
keyset cursor (``/timeline/page?cursor=…``, an htmx fragment). Photos dated by their file's time
(no EXIF date) carry a "file date" marker; undated photos come last under "No date"."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.services import projects, timeline
from vistudio.web.pages._common import error_fragment, error_page, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE = 120
Cursor = Annotated[str | None, Query(max_length=100)]
Short = Annotated[str | None, Query(max_length=20)]


def _day(item: dict[str, Any]) -> str:
    return (item["time"] or timeline.NO_DATE)[:10]


def _rows(items: list[dict[str, Any]], prev: str) -> list[dict[str, Any]]:
    """The page's items, each with the month and day headings to show before it (those that
    change from the item before it, the last of the previous page being ``prev``)."""
    out = []
    for item in items:
        day = _day(item)
        month_heading = day_heading = None
        if day != prev:
            if day == timeline.NO_DATE:
                month_heading = {"key": day, "label": "No date"}
            else:
                if day[:7] != prev[:7]:
                    month_heading = {"key": day[:7], "label": timeline.group_label(day[:7])}
                day_heading = {"key": day, "label": timeline.group_label(day)}
        out.append({**item, "day": day, "month_heading": month_heading, "day_heading": day_heading})
        prev = day
    return out


def _fragment(base: str, page: dict[str, Any], prev: str) -> dict[str, Any]:
    rows = _rows(page["items"], prev)
    next_url = None
    if page["next_cursor"]:
        next_url = f"{base}/timeline/page?" + urlencode(
            {"cursor": page["next_cursor"], "prev": rows[-1]["day"]}
        )
    return {"rows": rows, "next_url": next_url}


@router.get("/projects/{name}/timeline", response_class=HTMLResponse)
def timeline_page(request: Request, studio: StudioDep, name: str, at: Short = None) -> Response:
    try:
        project = projects.get_project(studio, name)
        buckets = timeline.buckets(studio, project=project["id"], by="month")
        page = timeline.photos(studio, project=project["id"], at=at or None, limit=PAGE)
    except VistudioError as exc:
        return error_page(request, exc)
    base = "/projects/" + quote(project["name"], safe="")
    years: dict[str, dict[str, Any]] = {}
    for g in buckets["groups"]:
        year = years.setdefault(g["key"][:4], {"key": g["key"][:4], "count": 0, "months": []})
        year["count"] += g["count"]
        year["months"].append({**g, "short": g["label"][:3]})
    return render(
        request,
        "timeline.html",
        {
            "project": project,
            "tab": "timeline",
            "base": base,
            "at": at or "",
            "buckets": buckets,
            "years": list(years.values()),
            **_fragment(base, page, ""),
        },
    )


@router.get("/projects/{name}/timeline/page", response_class=HTMLResponse)
def timeline_more(
    request: Request, studio: StudioDep, name: str, cursor: Cursor = None, prev: Short = ""
) -> Response:
    """The next page of the timeline as tiles and headings (htmx swaps it in for its sentinel)."""
    try:
        project = projects.get_project(studio, name)
        page = timeline.photos(studio, project=project["id"], cursor=cursor, limit=PAGE)
    except VistudioError as exc:
        return error_fragment(request, exc)
    base = "/projects/" + quote(project["name"], safe="")
    return render(
        request,
        "fragments/timeline_rows.html",
        {"project": project, "base": base, **_fragment(base, page, prev or "")},
    )
