"""Events pages of a photo library: the events, newest first (cover, name, dates, photos), and one
event's page (rename, merge with the event before or after, split before a photo, its photos).
Actions are plain form posts answered with a redirect (htmx boosts them), so every action also
works without scripts; an error is the page again with the message."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.ml.events import date_span
from vistudio.services import events, projects
from vistudio.web.pages._common import RowId, error_page, hidden_section, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE = 60
PHOTOS = 300


def _base(project: dict[str, Any]) -> str:
    return "/projects/" + quote(project["name"], safe="") + "/events"


def _shown(e: dict[str, Any]) -> dict[str, Any]:
    from datetime import date

    first, last = date.fromisoformat(e["start"][:10]), date.fromisoformat(e["end"][:10])
    return {
        **e,
        "dates": date_span(first, last),
        "year": e["start"][:4],
        "cover_url": _thumb(e["cover_sample_id"]),
    }


def _thumb(sample_id: int | None) -> str | None:
    return f"/api/v1/samples/{sample_id}/thumbnail" if sample_id else None


@router.get("/projects/{name}/events", response_class=HTMLResponse)
def events_page(
    request: Request, studio: StudioDep, name: str, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0
) -> Response:
    try:
        project = projects.get_project(studio, name)
        if (missing := hidden_section(request, project, "events")) is not None:
            return missing
        listed = events.list_events(studio, project=project["id"], offset=offset, limit=PAGE)
    except VistudioError as exc:
        return error_page(request, exc)
    items = [_shown(e) for e in listed["items"]]
    return render(
        request,
        "events.html",
        {
            "project": project,
            "tab": "events",
            "nav": "projects",
            "base": _base(project),
            "listed": listed,
            "items": items,
            "next_offset": offset + len(items) if offset + len(items) < listed["total"] else None,
            "prev_offset": max(offset - PAGE, 0) if offset else None,
        },
    )


@router.get("/projects/{name}/events/{event}", response_class=HTMLResponse)
def event_page(
    request: Request,
    studio: StudioDep,
    name: str,
    event: RowId,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    error: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    try:
        project = projects.get_project(studio, name)
        if (missing := hidden_section(request, project, "events")) is not None:
            return missing
        got = events.get_event(studio, project=project["id"], event=event, offset=offset, limit=PHOTOS)
    except VistudioError as exc:
        return error_page(request, exc)
    e = _shown(got["event"])
    several_days = e["start"][:10] != e["end"][:10]
    photos = [{**p, "when": _when(p["time"], with_day=several_days)} for p in got["photos"]]
    return render(
        request,
        "event.html",
        {
            "project": project,
            "tab": "events",
            "nav": "projects",
            "base": _base(project),
            "e": e,
            "photos": photos,
            "offset": offset,
            "previous": got["previous"],
            "next": got["next"],
            "next_offset": offset + PHOTOS if offset + PHOTOS < e["photos"] else None,
            "error": error,
        },
    )


def _when(time: str | None, *, with_day: bool) -> str:
    """A photo's time in an event: ``14:05``, or ``3 May 14:05`` when the event spans days."""
    if not time:
        return ""
    from datetime import datetime

    t = datetime.fromisoformat(time)
    return f"{t.day} {t:%b %H:%M}" if with_day else f"{t:%H:%M}"


def _done(project_name: str, event: int, error: str | None = None) -> RedirectResponse:
    url = "/projects/" + quote(project_name, safe="") + f"/events/{event}"
    if error:
        url += "?error=" + quote(error[:300], safe="")
    return RedirectResponse(url, status_code=303)


@router.post("/projects/{name}/events/{event}/rename")
def rename(
    studio: StudioDep,
    name: str,
    event: RowId,
    new_name: Annotated[str, Form(alias="name", max_length=400)] = "",
) -> Response:
    try:
        events.rename_event(studio, project=name, event=event, name=new_name)
    except VistudioError as exc:
        return _done(name, event, exc.message)
    return _done(name, event)


@router.post("/projects/{name}/events/{event}/merge")
def merge(studio: StudioDep, name: str, event: RowId, other: Annotated[int, Form(ge=1)]) -> Response:
    """Merge with the event before or after (``other``); the page of the merged event follows."""
    try:
        out = events.merge_events(studio, project=name, events=[event, other])
    except VistudioError as exc:
        return _done(name, event, exc.message)
    return _done(name, out["event"]["id"])


@router.post("/projects/{name}/events/{event}/split")
def split(studio: StudioDep, name: str, event: RowId, at: Annotated[int, Form(ge=1)]) -> Response:
    """Split before the photo ``at``; this event's page follows (the new one is "next")."""
    try:
        events.split_event(studio, project=name, event=event, at=at)
    except VistudioError as exc:
        return _done(name, event, exc.message)
    return _done(name, event)


@router.post("/projects/{name}/events/refresh")
def refresh(studio: StudioDep, name: str) -> Response:
    with suppress(VistudioError):  # the events page says what is wrong with the project
        events.refresh(studio, project=name)
    return RedirectResponse("/projects/" + quote(name, safe="") + "/events", status_code=303)
