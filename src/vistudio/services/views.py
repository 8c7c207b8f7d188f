"""Saved views — a named filter and sort of a project's samples, one URL each — and the one reading
of the Dataset grid's query string (``grid_filters``) that the grid, views and bulk edits share.

A view stores the grid's query parameters as the user set them (``label``, ``tag``, ``subset`` as
``split:subset``, ``annotated`` yes/no, ``taken_from``/``taken_to`` as dates, ``duplicates``, ``q``,
``min_objects``, ``max_objects``, ``object_size``, ``sort``, ``order``); they are checked when the
view is saved, and read again each time it is used, so a view follows the data (new samples that
match appear in it).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from vistudio.db.views import SavedView
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services.geo import parse_bbox
from vistudio.services.projects import find_project
from vistudio.studio import Studio

GRID_KEYS = (
    "label",
    "tag",
    "subset",
    "annotated",
    "taken_from",
    "taken_to",
    "duplicates",
    "q",
    "min_objects",
    "max_objects",
    "object_size",
    "sort",
    "order",
    "bbox",
)
_NAME = re.compile(r"^[\w][\w .:+()-]{0,99}$")


def parse_day(value: str, field: str, *, end: bool) -> datetime | None:
    """A date of a filter (``YYYY-MM-DD``): the start of that day, or its end."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a date like 2024-05-31 (got {value[:40]!r})") from None
    return datetime.combine(day, time.max if end else time.min)


def _object_count(params: dict[str, str], key: str) -> int | None:
    text = params.get(key, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 7):
        raise InvalidInput(f"the number of objects must be a whole number from 0 ({key}: {text[:20]!r})")
    return int(text)


def grid_filters(params: dict[str, str]) -> dict[str, Any]:
    """The grid's query string as ``samples.list_samples`` keyword arguments (filters, ``sort``,
    ``order``), raising InvalidInput for a malformed value."""
    out: dict[str, Any] = {}
    if params.get("label"):
        out["label"] = params["label"]
    if params.get("tag"):
        out["tag"] = params["tag"]
    if params.get("subset"):
        split, _, subset = params["subset"].partition(":")
        out["split"] = split or None
        out["subset"] = subset or None
    annotated = params.get("annotated", "")
    if annotated not in ("", "yes", "no"):
        raise InvalidInput("annotations filter is 'yes', 'no' or empty")
    if annotated:
        out["has_annotations"] = annotated == "yes"
    out["taken_from"] = parse_day(params.get("taken_from", ""), "from date", end=False)
    out["taken_to"] = parse_day(params.get("taken_to", ""), "to date", end=True)
    if out["taken_from"] and out["taken_to"] and out["taken_from"] > out["taken_to"]:
        raise InvalidInput("the 'from' date is after the 'to' date")
    out["duplicates_only"] = params.get("duplicates") in ("1", "on", "true", "yes")
    if params.get("q"):
        out["q"] = params["q"]
    for key in ("min_objects", "max_objects"):
        if (n := _object_count(params, key)) is not None:
            out[key] = n
    if params.get("object_size"):
        out["object_size"] = params["object_size"]
    if params.get("bbox"):  # an area of the map (services/geo.py): west,south,east,north
        out["bbox"] = parse_bbox(params["bbox"]).text()
    out["sort"] = params.get("sort") or "name"
    out["order"] = params.get("order") or "asc"
    return out


def selection_filter(params: dict[str, str]) -> dict[str, Any]:
    """The grid's query string as a bulk edit's ``filter`` (no sort, no empty values)."""
    return {
        k: v for k, v in grid_filters(params).items() if k not in ("sort", "order") and v not in (None, False)
    }


def _view_dict(v: SavedView, project: str) -> dict[str, Any]:
    from urllib.parse import quote

    return {
        "id": v.id,
        "name": v.name,
        "query": v.query,
        "url": f"/projects/{quote(project, safe='')}?view={quote(v.name, safe='')}",
        "created_at": v.created_at.isoformat(),
        "updated_at": v.updated_at.isoformat(),
    }


def _checked(s: Any, p: Any, query: dict[str, Any]) -> dict[str, str]:
    from vistudio.services.samples import SORTS, matching_query

    if not isinstance(query, dict):
        raise InvalidInput("a view's query is an object of the grid's filters")
    unknown = sorted(set(query) - set(GRID_KEYS))
    if unknown:
        raise InvalidInput(f"unknown filter {unknown[0]!r}; a view keeps {', '.join(GRID_KEYS)}")
    clean = {k: str(v).strip() for k, v in query.items() if v not in (None, "") and str(v).strip()}
    if any(len(v) > 200 for v in clean.values()):
        raise InvalidInput("a filter value is at most 200 characters")
    filters = grid_filters(clean)
    sort, order = filters.pop("sort"), filters.pop("order")
    if sort not in SORTS or order not in ("asc", "desc"):
        raise InvalidInput(f"sort is one of {', '.join(SORTS)} and order asc or desc")
    matching_query(s, p, **filters)  # an unknown class, split or size is refused now, not later
    return clean


def save_view(
    studio: Studio, *, project: str | int, name: str, query: dict[str, Any], replace: bool = False
) -> dict[str, Any]:
    """Save the filter and sort as a named view (``replace`` an existing view of that name)."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InvalidInput(
            "a view name is 1 to 100 letters, digits, spaces or . : + - ( ) _, starting with a letter or digit"
        )
    try:
        with studio.sessions.begin() as s:
            p = find_project(s, project)
            clean = _checked(s, p, query)
            row = s.scalar(select(SavedView).where(SavedView.project_id == p.id, SavedView.name == name))
            if row is not None and not replace:
                raise Conflict(f"view {name!r} already exists in {p.name!r}; replace it or pick another name")
            if row is None:
                row = SavedView(project_id=p.id, name=name, query=clean)
                s.add(row)
            else:
                row.query = clean
            s.flush()
            return _view_dict(row, p.name)
    except IntegrityError:
        raise Conflict(f"view {name!r} was saved at the same moment; try again") from None


def list_views(studio: Studio, *, project: str | int) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = list(
            s.scalars(
                select(SavedView).where(SavedView.project_id == p.id).order_by(func.lower(SavedView.name))
            )
        )
        return {"items": [_view_dict(v, p.name) for v in rows], "total": len(rows)}


def _find(s: Any, p: Any, name: str) -> SavedView:
    row = s.scalar(select(SavedView).where(SavedView.project_id == p.id, SavedView.name == name))
    if row is None:
        raise NotFound(f"view {name!r} not found in project {p.name!r}")
    return row


def get_view(studio: Studio, *, project: str | int, name: str) -> dict[str, Any]:
    with studio.sessions() as s:
        p = find_project(s, project)
        return _view_dict(_find(s, p, name), p.name)


def delete_view(studio: Studio, *, project: str | int, name: str) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        s.delete(_find(s, p, name))
        return {"deleted": name}


def view_filter(studio: Studio, *, project: str | int, name: str) -> dict[str, Any]:
    """A view as a bulk edit's ``filter`` (what ``vistudio tag --view`` and exports select)."""
    return selection_filter(get_view(studio, project=project, name=name)["query"])
