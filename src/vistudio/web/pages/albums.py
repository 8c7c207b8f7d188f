"""Albums pages of a photo library: the albums (cards with cover, name, count, a smart badge; a
form to make one, with the query syntax's help and its errors inline) and one album's page
(its photos; rename, a smart album's query, cover, remove and reorder a manual album's photos,
delete with an undo banner). Actions are plain form posts answered with a redirect, so every
action works without scripts; albums.js adds drag and drop to reorder (the API's order call)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.query_syntax import EXAMPLE, KEYS
from vistudio.services import albums, projects
from vistudio.web.pages._common import RowId, error_page, hidden_section, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE = 60
PHOTOS = 200
Text = Annotated[str, Form(max_length=2000)]


def dataset_extras(studio: Any, project: dict[str, Any]) -> dict[str, Any]:
    """What a library's Dataset page adds: the "On this day" strip (today, the server's local date)
    and the manual albums for "Add to album"."""
    return {
        "on_this_day": albums.on_this_day(studio, project=project["id"], per_year=8),
        "album_choices": albums.album_names(studio, project=project["id"]),
    }


def _base(project_name: str) -> str:
    return "/projects/" + quote(project_name, safe="") + "/albums"


def _back(url: str, **params: Any) -> RedirectResponse:
    kept = {k: str(v)[:300] for k, v in params.items() if v not in (None, "")}
    return RedirectResponse(url + ("?" + urlencode(kept) if kept else ""), status_code=303)


@router.get("/projects/{name}/albums", response_class=HTMLResponse)
def albums_page(
    request: Request,
    studio: StudioDep,
    name: str,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    error: Annotated[str | None, Query(max_length=300)] = None,
    column: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    new_name: Annotated[str | None, Query(alias="name", max_length=400)] = None,
    new_query: Annotated[str | None, Query(alias="query", max_length=2000)] = None,
    deleted: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    try:
        project = projects.get_project(studio, name)
        if (missing := hidden_section(request, project, "albums")) is not None:
            return missing
        listed = albums.list_albums(studio, project=project["id"], offset=offset, limit=PAGE)
    except VistudioError as exc:
        return error_page(request, exc)
    return render(
        request,
        "albums.html",
        {
            "project": project,
            "tab": "albums",
            "nav": "projects",
            "base": _base(project["name"]),
            "listed": listed,
            "items": listed["items"],
            "next_offset": offset + PAGE if offset + PAGE < listed["total"] else None,
            "prev_offset": max(offset - PAGE, 0) if offset else None,
            "error": error,
            "column": column,
            "form": {"name": new_name or "", "query": new_query or ""},
            "deleted": deleted,
            "keys": KEYS,
            "example": EXAMPLE,
        },
    )


@router.post("/projects/{name}/albums")
def create(
    studio: StudioDep,
    name: str,
    album_name: Annotated[str, Form(alias="name", max_length=2000)] = "",
    query: Text = "",
) -> Response:
    """Make an album: smart when a query is given; its page follows (the list again on an error)."""
    kind = "smart" if query.strip() else "manual"
    try:
        made = albums.create_album(studio, project=name, name=album_name, kind=kind, query=query or None)
    except VistudioError as exc:
        return _back(
            _base(name), error=exc.message, column=exc.details.get("column"), name=album_name, query=query
        )
    return _back(f"{_base(name)}/{made['album']['id']}")


@router.post("/projects/{name}/albums/restore")
def restore(studio: StudioDep, name: str, album: Annotated[int, Form(ge=1, le=2**63 - 1)]) -> Response:
    try:
        albums.restore_album(studio, project=name, album=album)
    except VistudioError as exc:
        return _back(_base(name), error=exc.message)
    return _back(f"{_base(name)}/{album}")


@router.get("/projects/{name}/albums/{album}", response_class=HTMLResponse)
def album_page(
    request: Request,
    studio: StudioDep,
    name: str,
    album: RowId,
    cursor: Annotated[str | None, Query(max_length=80)] = None,
    error: Annotated[str | None, Query(max_length=300)] = None,
    column: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> Response:
    try:
        project = projects.get_project(studio, name)
        if (missing := hidden_section(request, project, "albums")) is not None:
            return missing
        got = albums.get_album(studio, project=project["id"], album=album, cursor=cursor, limit=PHOTOS)
    except VistudioError as exc:
        return error_page(request, exc)
    return render(
        request,
        "album.html",
        {
            "project": project,
            "tab": "albums",
            "nav": "projects",
            "base": _base(project["name"]),
            "a": got["album"],
            "items": got["items"],
            "notices": got["notices"],
            "next_cursor": got["next_cursor"],
            "first_page": cursor is None,
            "error": error,
            "column": column,
            "keys": KEYS,
        },
    )


def _act(name: str, album: int, call: Any) -> Response:
    try:
        call()
    except VistudioError as exc:
        return _back(f"{_base(name)}/{album}", error=exc.message, column=exc.details.get("column"))
    return _back(f"{_base(name)}/{album}")


@router.post("/projects/{name}/albums/{album}/rename")
def rename(
    studio: StudioDep,
    name: str,
    album: RowId,
    new_name: Annotated[str, Form(alias="name", max_length=2000)] = "",
) -> Response:
    return _act(name, album, lambda: albums.update_album(studio, project=name, album=album, name=new_name))


@router.post("/projects/{name}/albums/{album}/query")
def change_query(studio: StudioDep, name: str, album: RowId, query: Text = "") -> Response:
    return _act(name, album, lambda: albums.update_album(studio, project=name, album=album, query=query))


@router.post("/projects/{name}/albums/{album}/cover")
def cover(
    studio: StudioDep, name: str, album: RowId, sample_id: Annotated[int, Form(ge=0, le=2**63 - 1)] = 0
) -> Response:
    """Make a photo the cover; 0: back to the first photo."""
    return _act(
        name,
        album,
        lambda: albums.update_album(
            studio, project=name, album=album, cover_sample_id=sample_id or None, reset_cover=not sample_id
        ),
    )


@router.post("/projects/{name}/albums/{album}/remove")
def remove(
    studio: StudioDep, name: str, album: RowId, sample_id: Annotated[int, Form(ge=1, le=2**63 - 1)]
) -> Response:
    return _act(
        name, album, lambda: albums.remove_photos(studio, project=name, album=album, sample_ids=[sample_id])
    )


@router.post("/projects/{name}/albums/{album}/move")
def move(
    studio: StudioDep,
    name: str,
    album: RowId,
    sample_id: Annotated[int, Form(ge=1, le=2**63 - 1)],
    before: Annotated[int, Form(ge=0, le=2**63 - 1)] = 0,
) -> Response:
    """Move a photo before another (``before``; 0: to the end)."""
    return _act(
        name,
        album,
        lambda: albums.move_photo(
            studio, project=name, album=album, sample_id=sample_id, before=before or None
        ),
    )


@router.post("/projects/{name}/albums/{album}/delete")
def delete(studio: StudioDep, name: str, album: RowId) -> Response:
    """Delete, then the list with an undo banner."""
    try:
        albums.delete_album(studio, project=name, album=album)
    except VistudioError as exc:
        return _back(f"{_base(name)}/{album}", error=exc.message)
    return _back(_base(name), deleted=album)
