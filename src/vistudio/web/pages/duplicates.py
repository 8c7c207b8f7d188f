"""Duplicates page: the groups of one level side by side, the suggested keeper, and the decisions
(keep, hide others, remove others after a confirm step) with undo, over htmx."""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import duplicates, projects
from vistudio.web.pages._common import RowId, error_fragment, error_page, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE_SIZE = 20
SHOWN_MEMBERS = 12  # a group of hundreds of identical frames shows this many first…
MEMBERS_PAGE = 48  # …then "show more" loads this many at a time
RECENT_REMOVALS = 10  # removals listed with an undo (a removed group is no group any more)
Text = Annotated[str, Query(max_length=40)]
LEVELS = {
    "exact": ("Exact", "Files with identical bytes"),
    "perceptual": ("Perceptual", "Resized, re-encoded, turned or mirrored copies"),
    "semantic": ("Semantic", "Pictures whose embeddings are nearly the same"),
}
STATUSES = {"open": "To review", "reviewed": "Reviewed", "all": "All"}


def _threshold(value: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"the threshold must be a number (got {value[:20]!r})") from None
    if not math.isfinite(number):
        raise InvalidInput("the threshold must be a finite number")
    return number


def _error_target(group: str) -> dict[str, str]:
    """htmx headers that put an error inside the group's card (the card itself stays)."""
    target = f"#err-{group}" if duplicates.GROUP_KEY.match(group) else "#dup-page-error"
    return {"HX-Retarget": target, "HX-Reswap": "innerHTML"}


def _base(project: dict[str, Any]) -> str:
    return f"/projects/{quote(project['name'], safe='')}/duplicates"


def _card_context(
    project: dict[str, Any], group: dict[str, Any], level: str, threshold: Any, **extra: Any
) -> dict[str, Any]:
    return {
        "project": project,
        "g": group,
        "level": level,
        "threshold": "" if threshold is None else f"{threshold:g}",
        "base": _base(project),
        "shown_members": SHOWN_MEMBERS,
        "members_page": MEMBERS_PAGE,
        **extra,
    }


@router.get("/projects/{name}/duplicates", response_class=HTMLResponse)
def duplicates_page(
    request: Request,
    studio: StudioDep,
    name: str,
    level: Text = "perceptual",
    threshold: Text = "",
    status: Text = "open",
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_page(request, exc)
    level = level if level in LEVELS else "perceptual"
    status = status if status in STATUSES else "open"
    result: dict[str, Any] | None = None
    problem: str | None = None
    try:
        result = duplicates.list_groups(
            studio,
            project=project["id"],
            level=level,
            threshold=_threshold(threshold),
            status=status,
            offset=offset,
            limit=PAGE_SIZE,
        )
    except VistudioError as exc:
        problem = exc.message
    base = _base(project)
    shown_threshold = threshold.strip()
    if result is not None and result["threshold"] is not None:
        shown_threshold = f"{result['threshold']:g}"

    def link(**changes: Any) -> str:
        params = {
            "level": level,
            "threshold": threshold.strip(),
            "status": status,
            "offset": offset,
            **changes,
        }
        return base + "?" + urlencode({k: v for k, v in params.items() if v not in ("", None, 0)})

    removals = duplicates.list_decisions(
        studio, project=project["id"], action="remove", limit=RECENT_REMOVALS
    )
    pages: dict[str, str | None] = {"prev": None, "next": None}
    if result is not None:
        if offset > 0:
            pages["prev"] = link(offset=max(0, offset - PAGE_SIZE))
        if offset + PAGE_SIZE < result["total"]:
            pages["next"] = link(offset=offset + PAGE_SIZE)
    return render(
        request,
        "duplicates.html",
        {
            "project": project,
            "tab": "duplicates",
            "nav": "projects",
            "base": base,
            "levels": LEVELS,
            "statuses": STATUSES,
            "level": level,
            "status": status,
            "threshold": shown_threshold,
            "result": result,
            "problem": problem,
            "pages": pages,
            "offset": offset,
            "level_links": {k: link(level=k, threshold="", offset=0) for k in LEVELS},
            "status_links": {k: link(status=k, offset=0) for k in STATUSES},
            "shown_members": SHOWN_MEMBERS,
            "members_page": MEMBERS_PAGE,
            "limits": {"bits": duplicates.MAX_BITS, "similarity": duplicates.MIN_SIMILARITY},
            "removals": removals,
        },
    )


@router.get("/projects/{name}/duplicates/{group}/members", response_class=HTMLResponse)
def members(
    request: Request,
    studio: StudioDep,
    name: str,
    group: str,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    level: Text = "perceptual",
    threshold: Text = "",
) -> Response:
    """The next members of a group ("show more"): their cards and, while some are left, the next
    "show more"."""
    try:
        project = projects.get_project(studio, name)
        value = _threshold(threshold)
        g = duplicates.get_group(
            studio,
            project=project["id"],
            group=group[:40],
            threshold=value,
            offset=offset,
            limit=MEMBERS_PAGE,
        )
    except VistudioError as exc:
        return error_fragment(request, exc)  # in place of the "show more" row that asked
    return render(
        request,
        "fragments/duplicate_members.html",
        # the window asked for, not the rows shown: a member removed meanwhile must not shift the pages
        _card_context(project, g, level, value, members=g["samples"], next_offset=offset + MEMBERS_PAGE),
    )


@router.post("/projects/{name}/duplicates/{group}/decide", response_class=HTMLResponse)
def decide(
    request: Request,
    studio: StudioDep,
    name: str,
    group: str,
    action: Annotated[str, Form(max_length=16)],
    level: Annotated[str, Form(max_length=16)] = "perceptual",
    threshold: Annotated[str, Form(max_length=40)] = "",
    keeper: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        project = projects.get_project(studio, name)
        keeper_id = (
            int(keeper)
            if keeper.strip().isascii() and keeper.strip().isdigit() and len(keeper.strip()) < 19
            else None
        )
        if keeper.strip() and keeper_id is None:
            raise InvalidInput("the keeper must be a sample id")
        value = _threshold(threshold)
        out = duplicates.decide(
            studio,
            project=project["id"],
            group=group[:40],
            action=action,
            threshold=value,
            keeper=keeper_id,
        )
    except VistudioError as exc:
        return error_fragment(request, exc, headers=_error_target(group))
    return render(
        request,
        "fragments/duplicate_group.html",
        _card_context(project, out["group"], level, value, just_decided=True),
    )


@router.post("/projects/{name}/duplicates/decisions/{decision_id}/undo", response_class=HTMLResponse)
def undo(
    request: Request,
    studio: StudioDep,
    name: str,
    decision_id: RowId,
    group: Annotated[str, Form(max_length=40)] = "",
    level: Annotated[str, Form(max_length=16)] = "perceptual",
    threshold: Annotated[str, Form(max_length=40)] = "",
    where: Annotated[str, Form(max_length=16)] = "group",
) -> Response:
    try:
        project = projects.get_project(studio, name)
        value = _threshold(threshold)
        out = duplicates.undo(studio, project=project["id"], decision=decision_id)
    except VistudioError as exc:
        if where == "removals":
            return error_fragment(
                request,
                exc,
                headers={"HX-Retarget": f"#removal-{decision_id}-error", "HX-Reswap": "innerHTML"},
            )
        return error_fragment(request, exc, headers=_error_target(group))
    if where == "removals":
        return render(request, "fragments/duplicate_removal.html", {"r": out["undone"], "undone": out})
    try:
        again = duplicates.get_group(
            studio, project=project["id"], group=group or out["undone"]["group"], threshold=value
        )
    except VistudioError:
        again = None  # the group changed meanwhile: say what was done, the list shows the rest
    if again is None:
        return render(
            request,
            "fragments/duplicate_undone.html",
            {
                "undone": out["undone"],
                "restored": out["restored"],
                "not_restored": out["not_restored"],
                "level": level,
            },
        )
    return render(
        request,
        "fragments/duplicate_group.html",
        _card_context(project, again, level, value, undone=out),
    )
