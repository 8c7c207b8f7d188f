"""The review of a photo library's unplaced faces: one suggestion at a time ("Is this Barack
Obama?"), answered Yes (the face joins them) or No (never suggested there again), or skipped.
Each answer is a decision the People pages can undo; htmx swaps in the next suggestion, and a
plain form post is answered with a redirect, so that the page also works as ordinary forms."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import people, projects
from vistudio.studio import Studio
from vistudio.web.pages._common import error_fragment, error_page, hidden_section, is_htmx, render, row_id

router = APIRouter(tags=["web"], include_in_schema=False)
QUEUE_SCAN = 1000  # suggestions looked through to show again the face whose answer was undone
Ref = Annotated[str, Form(max_length=20)]
Offset = Annotated[int, Query(ge=0, le=2**62)]
RETARGET = {"HX-Retarget": "#review-error", "HX-Reswap": "innerHTML"}


def _base(project: dict[str, Any]) -> str:
    return f"/projects/{quote(project['name'], safe='')}/people"


def _context(
    studio: Studio,
    project: dict[str, Any],
    *,
    offset: int = 0,
    face: int | None = None,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the review shows: the suggestion at ``offset`` of the queue (the first past its end:
    skipping wraps around), or the one of ``face`` when it is still in the queue."""
    if face is not None:
        scan = people.review_queue(studio, project=project["id"], limit=QUEUE_SCAN)
        offset = next((i for i, x in enumerate(scan["items"]) if x["face"]["id"] == face), 0)
        queue = {"items": scan["items"][offset : offset + 1], "total": scan["total"]}
    else:
        queue = people.review_queue(studio, project=project["id"], offset=offset, limit=1)
    if not queue["items"] and queue["total"]:
        offset = 0
        queue = people.review_queue(studio, project=project["id"], limit=1)
    item = queue["items"][0] if queue["items"] else None
    who = None
    if item is not None:
        who = people.get_person(studio, project=project["id"], person=item["person"]["id"], limit=1)["person"]
    return {
        "project": project,
        "base": _base(project),
        "item": item,
        "who": who,
        "left": queue["total"],
        "offset": offset,
        "message": message,
        "photo_base": f"/projects/{quote(project['name'], safe='')}?sample=",
    }


def _answered(request: Request, ctx: dict[str, Any]) -> Response:
    if not is_htmx(request):
        query = f"?offset={ctx['offset']}" if ctx["offset"] else ""
        return RedirectResponse(f"{ctx['base']}/review{query}", status_code=303)
    return render(request, "fragments/people_review_body.html", ctx)


def _failed(request: Request, exc: VistudioError) -> Response:
    if is_htmx(request):
        return error_fragment(request, exc, headers=RETARGET)
    return error_page(request, exc)


@router.get("/projects/{name}/people/review", response_class=HTMLResponse)
def review_page(request: Request, studio: StudioDep, name: str, offset: Offset = 0) -> Response:
    """The review; ``offset``: the suggestion to show (skipping moves it on). htmx gets the body."""
    try:
        project = projects.get_project(studio, name)
        missing = hidden_section(request, project, "people")
        if missing is not None:
            return missing
        ctx = _context(studio, project, offset=offset)
    except VistudioError as exc:
        return _failed(request, exc)
    if is_htmx(request):
        return render(request, "fragments/people_review_body.html", ctx)
    return render(request, "people_review.html", {**ctx, "tab": "people", "nav": "projects"})


@router.post("/projects/{name}/people/review/answer", response_class=HTMLResponse)
def answer(
    request: Request,
    studio: StudioDep,
    name: str,
    face: Ref,
    person: Ref,
    said: Annotated[str, Form(alias="answer", max_length=10)],
    offset: Annotated[int, Form(ge=0, le=2**62)] = 0,
) -> Response:
    """Answer "is this face that person?" (``answer`` yes or no) → the next suggestion, which is
    the one now at ``offset`` (the answered face has left the queue)."""
    try:
        project = projects.get_project(studio, name)
        if said not in ("yes", "no"):
            raise InvalidInput("answer is yes or no")
        face_id, person_id = row_id(face.strip(), "the face"), row_id(person.strip(), "the person")
        who = people.get_person(studio, project=project["id"], person=person_id, limit=1)["person"]
        label = who["name"] or f"Unnamed person #{who['id']}"
        people.answer(studio, project=project["id"], face=face_id, person=person_id, yes=said == "yes")
        text = (
            f"Placed in {label}." if said == "yes" else f"Not {label}: it will not be suggested there again."
        )
        message = {"text": text, "can": "undo", "face": face_id}
        ctx = _context(studio, project, offset=offset, message=message)
    except VistudioError as exc:
        return _failed(request, exc)
    return _answered(request, ctx)


@router.post("/projects/{name}/people/review/undo", response_class=HTMLResponse)
def undo_redo(
    request: Request,
    studio: StudioDep,
    name: str,
    what: Annotated[str, Form(max_length=10)] = "undo",
    face: Ref = "",
) -> Response:
    """Undo the latest decision about people (or redo the one undone) → the review, on ``face``
    (the face answered last) while it waits for an answer."""
    try:
        project = projects.get_project(studio, name)
        if what not in ("undo", "redo"):
            raise InvalidInput("what is undo or redo")
        face_id = row_id(face.strip(), "the face") if face.strip() else None
        if what == "undo":
            change, text, can = people.undo(studio, project=project["id"])["undone"], "Undone", "redo"
        else:
            change, text, can = people.redo(studio, project=project["id"])["redone"], "Redone", "undo"
        message = {"text": f"{text}: {change['summary']}.", "can": can, "face": face_id}
        ctx = _context(studio, project, face=face_id if what == "undo" else None, message=message)
    except VistudioError as exc:
        return _failed(request, exc)
    return _answered(request, ctx)
