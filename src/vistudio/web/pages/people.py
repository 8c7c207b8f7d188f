"""People pages of a photo library: the grid of people (find faces, re-group, name, merge) and one
person's page (rename, hide, delete, cover; their faces to split off, move or reject; their
photos). Actions answer htmx with the part of the page they change, and a plain form post with a
redirect, so that every action also works as an ordinary form."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, or_, select

from vistudio.api.deps import StudioDep
from vistudio.db.faces import Face, Person
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.ml.tasks import get_task
from vistudio.services import faces, people, projects
from vistudio.studio import Studio
from vistudio.web.pages._common import (
    RowId,
    error_fragment,
    error_page,
    hidden_section,
    is_htmx,
    render,
    row_id,
)

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE_SIZE = 60
NAMES_LISTED = 1000  # people offered by the "Move to…" type-ahead
JOB_KINDS = (faces.KIND, people.KIND)
ACTIVE = "queued,running"
Name = Annotated[str, Form(max_length=400)]
Ref = Annotated[str, Form(max_length=20)]


def _base(project: dict[str, Any]) -> str:
    return f"/projects/{quote(project['name'], safe='')}/people"


def _ids(values: list[str], what: str) -> list[int]:
    return [row_id(v.strip(), what) for v in values if v.strip()]


def _done(request: Request, url: str, fragment: Response | None = None) -> Response:
    """The answer to an action: the fragment for htmx (or a client-side redirect to ``url`` when
    there is none), a redirect for a plain form post."""
    if is_htmx(request):
        return fragment if fragment is not None else Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _retarget(target: str) -> dict[str, str]:
    return {"HX-Retarget": target, "HX-Reswap": "innerHTML"}


# --- the face and grouping jobs -----------------------------------------------------------------


def _jobs(studio: Studio, project_id: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The face or grouping job running (or queued) for the project, and the latest one."""
    active, latest = [], []
    for kind in JOB_KINDS:
        running, _ = studio.queue.list(kind=kind, project_id=project_id, status=ACTIVE, limit=1)
        active += running
        last, _ = studio.queue.list(kind=kind, project_id=project_id, limit=1)
        latest += last
    pick = min(active, key=lambda j: j.id) if active else None
    newest = max(latest, key=lambda j: j.id) if latest else None
    return (job_dict(pick) if pick else None), (job_dict(newest) if newest else None)


def _status_context(studio: Studio, project: dict[str, Any]) -> dict[str, Any]:
    """What the status area shows: the running job with its progress, or what to do next. The
    face counts only when no job runs: a running job's area (polled every second) shows its
    progress instead, and so does the rest of the page."""
    active, last = _jobs(studio, project["id"])
    counts = (
        {"faces": None, "photos_with_faces": None, "photos_scanned": None}
        if active
        else faces.face_counts(studio, project=project["id"])
    )
    settings = studio.settings.faces
    photos = project.get("samples", 0)
    return {
        "project": project,
        "base": _base(project),
        "enabled": settings.enabled,
        "min_faces": settings.min_faces,
        "faces_total": counts["faces"],
        "scanned": counts["photos_scanned"],
        "with_faces": counts["photos_with_faces"],
        "photos": photos,
        "pending": None if active else max(0, photos - counts["photos_scanned"]),
        "active": active,
        "last": last,
    }


def _status_response(request: Request, studio: Studio, project: dict[str, Any], *, was: str = "") -> Response:
    ctx = _status_context(studio, project)
    if was and not ctx["active"]:
        # the job the page was following has finished: reload the page with its people
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return render(request, "fragments/people_status.html", ctx)


# --- the grid of people -------------------------------------------------------------------------


def _hidden_people(studio: Studio, project_id: int) -> int:
    """How many more people ``people.list_people`` lists with ``hidden=True`` than without (the
    "Show hidden people (N)" toggle): the hidden people it lists — named, or unnamed with a face.
    Counted from the people alone, where the other list's ``total`` counted every person and
    could order every unnamed one by their photos (no one named yet)."""
    has_faces = select(Face.id).where(Face.person_id == Person.id).exists()
    with studio.sessions() as s:
        n = s.scalar(
            select(func.count())
            .select_from(Person)
            .where(
                Person.project_id == project_id,
                Person.hidden.is_(True),
                or_(Person.name.is_not(None), has_faces),
            )
        )
    return int(n or 0)


@router.get("/projects/{name}/people", response_class=HTMLResponse)
def people_page(
    request: Request,
    studio: StudioDep,
    name: str,
    hidden: Annotated[str, Query(max_length=5)] = "",
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_page(request, exc)
    missing = hidden_section(request, project, "people")
    if missing is not None:
        return missing
    show_hidden = hidden in ("1", "on", "true", "yes")
    listed = people.list_people(
        studio, project=project["id"], hidden=show_hidden, offset=offset, limit=PAGE_SIZE
    )
    base = _base(project)

    def link(**changes: Any) -> str:
        params = {"hidden": "1" if show_hidden else "", "offset": offset, **changes}
        query = urlencode({k: v for k, v in params.items() if v not in ("", None, 0)})
        return base + ("?" + query if query else "")

    pages = {
        "prev": link(offset=max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        "next": link(offset=offset + PAGE_SIZE) if offset + PAGE_SIZE < listed["total"] else None,
    }
    latest = people.list_changes(studio, project=project["id"], limit=1)["items"]
    # cheap: exact in a small library, the unplaced faces (up to 1,000) in a big one
    review = people.review_count(studio, project=project["id"])
    return render(
        request,
        "people.html",
        {
            **_status_context(studio, project),
            "tab": "people",
            "nav": "projects",
            "people": listed["items"],
            "total": listed["total"],
            "hidden_count": _hidden_people(studio, project["id"]),
            "show_hidden": show_hidden,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "pages": pages,
            "toggle_hidden": link(hidden="" if show_hidden else "1", offset=0),
            "names": {p["id"]: p["name"] or f"Unnamed person #{p['id']}" for p in listed["items"]},
            "latest": latest[0] if latest else None,
            "review_total": review["count"],
            "review_more": review["more"],
        },
    )


@router.get("/projects/{name}/people/status", response_class=HTMLResponse)
def status(
    request: Request, studio: StudioDep, name: str, was: Annotated[str, Query(max_length=20)] = ""
) -> Response:
    """The status area; polled while a job runs (``was`` = that job: reload when it ends)."""
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return _status_response(request, studio, project, was=was)


@router.post("/projects/{name}/people/find", response_class=HTMLResponse)
def find_faces(request: Request, studio: StudioDep, name: str) -> Response:
    """Start the face job (photos not read yet); answers the status area."""
    try:
        project = projects.get_project(studio, name)
        faces.start_faces(studio, project=project["id"])
    except VistudioError as exc:
        return error_fragment(request, exc, headers=_retarget("#people-error"))
    if not is_htmx(request):
        return RedirectResponse(_base(project), status_code=303)
    return _status_response(request, studio, project)


@router.post("/projects/{name}/people/regroup", response_class=HTMLResponse)
def regroup(request: Request, studio: StudioDep, name: str) -> Response:
    """Group the faces again (names, hidden people and faces placed by hand stay)."""
    try:
        project = projects.get_project(studio, name)
        people.start_recluster(studio, project=project["id"])
    except VistudioError as exc:
        return error_fragment(request, exc, headers=_retarget("#people-error"))
    if not is_htmx(request):
        return RedirectResponse(_base(project), status_code=303)
    return _status_response(request, studio, project)


@router.post("/projects/{name}/people/merge", response_class=HTMLResponse)
def merge(
    request: Request,
    studio: StudioDep,
    name: str,
    into: Ref,
    people_ids: Annotated[list[str], Form(alias="people", max_length=1000)],
) -> Response:
    """Merge the chosen people into ``into`` (it keeps its name, or takes the first of theirs) →
    that person's page."""
    try:
        project = projects.get_project(studio, name)
        target = row_id(into.strip(), "the person to merge into")
        others: list[str | int] = [i for i in dict.fromkeys(_ids(people_ids, "a person")) if i != target]
        if not others:
            raise InvalidInput("choose at least two people to merge")
        out = people.merge(studio, project=project["id"], into=target, others=others)
    except VistudioError as exc:
        if is_htmx(request):
            return error_fragment(request, exc, headers=_retarget("#people-error"))
        return error_page(request, exc)
    return _done(request, f"{_base(project)}/{out['person']['id']}?merged={len(others)}")


@router.post("/projects/{name}/people/undo", response_class=HTMLResponse)
def undo_redo(
    request: Request,
    studio: StudioDep,
    name: str,
    what: Annotated[str, Form(max_length=10)] = "undo",
    person: Ref = "",
) -> Response:
    """Undo the project's latest decision about people (or redo the one undone); from a person's
    page (``person``) answers with that page, else with the grid."""
    target = "#person-error" if person.strip() else "#people-error"
    try:
        project = projects.get_project(studio, name)
        if what not in ("undo", "redo"):
            raise InvalidInput("what is undo or redo")
        pid = row_id(person.strip(), "the person") if person.strip() else None
        if what == "undo":
            change, text, can = people.undo(studio, project=project["id"])["undone"], "Undone", "redo"
        else:
            change, text, can = people.redo(studio, project=project["id"])["redone"], "Redone", "undo"
    except VistudioError as exc:
        if is_htmx(request):
            return error_fragment(request, exc, headers=_retarget(target))
        return error_page(request, exc)
    if pid is None:
        return _done(request, _base(project))
    said = {"text": f"{text}: {change['summary']}.", "can": can}
    try:
        ctx = _person_context(studio, project, pid, message=said)
    except NotFound:
        return _done(request, _base(project))  # the person exists no more (their creation undone)
    return _done(request, f"{_base(project)}/{pid}", _body(request, ctx))


# --- one person ---------------------------------------------------------------------------------


def _names(studio: Studio, project_id: int) -> list[tuple[int, str]]:
    """``(id, name)`` of the first ``NAMES_LISTED`` named people by name, hidden ones included —
    the named part of ``people.list_people(hidden=True, limit=NAMES_LISTED)``, which lists them
    first — from the (project, name) index, without ordering the unnamed people by their photos
    when fewer are named."""
    with studio.sessions() as s:
        rows = s.execute(
            select(Person.id, Person.name)
            .where(Person.project_id == project_id, Person.name.is_not(None))
            .order_by(Person.name, Person.id)
            .limit(NAMES_LISTED)
        ).all()
    return [(pid, name) for pid, name in rows if name]


def _person_context(
    studio: Studio, project: dict[str, Any], person: int, *, message: dict[str, Any] | None = None
) -> dict[str, Any]:
    p = people.get_person(studio, project=project["id"], person=person)["person"]
    return {
        "project": project,
        "base": _base(project),
        "p": p,
        "message": message,
        "others": [name for pid, name in _names(studio, project["id"]) if pid != p["id"]],
        "photo_base": f"/projects/{quote(project['name'], safe='')}?sample=",
    }


def _body(request: Request, ctx: dict[str, Any]) -> Response:
    return render(request, "fragments/person_body.html", ctx)


@router.get("/projects/{name}/people/{person}", response_class=HTMLResponse)
def person_page(
    request: Request,
    studio: StudioDep,
    name: str,
    person: RowId,
    merged: Annotated[int, Query(ge=0, le=1000)] = 0,
) -> Response:
    try:
        project = projects.get_project(studio, name)
        missing = hidden_section(request, project, "people")
        if missing is not None:
            return missing
        message = {
            "text": f"Merged {merged} {'person' if merged == 1 else 'people'} into this one.",
            "can": "undo",
            "once": "merged",  # said once: the page drops ?merged= from its address (people.js)
        }
        ctx = _person_context(studio, project, person, message=message if merged else None)
    except VistudioError as exc:
        return error_page(request, exc)
    return render(request, "person.html", {**ctx, "tab": "people", "nav": "projects"})


@router.post("/projects/{name}/people/{person}/rename", response_class=HTMLResponse)
def rename(
    request: Request,
    studio: StudioDep,
    name: str,
    person: RowId,
    new_name: Annotated[str, Form(alias="name", max_length=400)] = "",
    where: Annotated[str, Form(max_length=10)] = "page",
) -> Response:
    """Name a person (blank: unnamed again). A name someone else has answers with their id and a
    "Merge into them" action."""
    target = f"#person-err-{person}" if where == "card" else "#rename-error"
    try:
        project = projects.get_project(studio, name)
        out = people.rename(studio, project=project["id"], person=person, name=new_name)["person"]
    except VistudioError as exc:
        if not is_htmx(request):
            return error_page(request, exc)
        return render(
            request,
            "fragments/person_rename_error.html",
            {
                "message": exc.message,
                "other": exc.details.get("person"),
                "me": person,
                "base": _base_of(name),
            },
            status_code=exc.status,
            headers=_retarget(target),
        )
    if where == "card":
        card = render(request, "fragments/person_card.html", {"p": _card(out), "base": _base(project)})
        return _done(request, _base(project), card)
    said = {"text": "Name saved." if out["name"] else "The name was removed.", "can": "undo"}
    body = _body(request, _person_context(studio, project, person, message=said))
    return _done(request, f"{_base(project)}/{person}", body)


def _base_of(project_name: str) -> str:
    return f"/projects/{quote(project_name, safe='')}/people"


def _card(p: dict[str, Any]) -> dict[str, Any]:
    """A person of ``get_person`` as the grid lists them (counts, not lists)."""
    return {**p, "faces": len(p["faces"]), "photos": len(p["photos"])}


@router.post("/projects/{name}/people/{person}/hide", response_class=HTMLResponse)
def hide(
    request: Request,
    studio: StudioDep,
    name: str,
    person: RowId,
    hidden: Annotated[str, Form(max_length=5)] = "1",
) -> Response:
    try:
        project = projects.get_project(studio, name)
        if hidden not in ("0", "1"):
            raise InvalidInput("hidden is 1 (hide) or 0 (show)")
        people.set_hidden(studio, project=project["id"], person=person, hidden=hidden == "1")
        text = (
            "Hidden: this person no longer appears among your people (“Show hidden people” lists them)."
            if hidden == "1"
            else "Shown again among your people."
        )
        ctx = _person_context(studio, project, person, message={"text": text, "can": "undo"})
    except VistudioError as exc:
        return error_fragment(request, exc, headers=_retarget("#person-error"))
    return _done(request, f"{_base(project)}/{person}", _body(request, ctx))


@router.post("/projects/{name}/people/{person}/delete", response_class=HTMLResponse)
def delete(request: Request, studio: StudioDep, name: str, person: RowId) -> Response:
    """Delete the person: their faces stay in the photos, unassigned (and may be grouped again)."""
    try:
        project = projects.get_project(studio, name)
        people.delete_person(studio, project=project["id"], person=person)
    except VistudioError as exc:
        if is_htmx(request):
            return error_fragment(request, exc, headers=_retarget("#person-error"))
        return error_page(request, exc)
    return _done(request, _base(project))


@router.post("/projects/{name}/people/{person}/faces", response_class=HTMLResponse)
def face_action(
    request: Request,
    studio: StudioDep,
    name: str,
    person: RowId,
    action: Annotated[str, Form(max_length=10)],
    face_ids: Annotated[list[str], Form(alias="faces", max_length=100_000)] = [],  # noqa: B006
    to: Name = "",
) -> Response:
    """What to do with the selected faces: ``split`` (a new person), ``move`` (to person ``to``,
    a name or an id), ``not`` ("not this person") or ``cover``."""
    try:
        project = projects.get_project(studio, name)
        chosen = _ids(face_ids, "a face")
        if not chosen:
            raise InvalidInput("select at least one face first")
        message = {**_apply(studio, project, person, action, chosen, to), "can": "undo"}
        try:
            ctx = _person_context(studio, project, person, message=message)
        except NotFound:
            # the person has no face left and is gone: go where the faces went, or to the grid
            return _done(request, message.get("link") or _base(project))
    except VistudioError as exc:
        if not is_htmx(request):
            return error_page(request, exc)
        return error_fragment(request, exc, headers=_retarget("#faces-error"))
    return _done(request, f"{_base(project)}/{person}", _body(request, ctx))


def _apply(
    studio: Studio, project: dict[str, Any], person: int, action: str, chosen: list[int], to: str
) -> dict[str, Any]:
    """Do one face action; the message that says what happened (with a link to where faces went)."""
    n = len(chosen)
    faces_text = "1 face" if n == 1 else f"{n:,} faces"
    base = _base(project)
    if action == "split":
        out = people.move_faces(studio, project=project["id"], faces=chosen, to=None)["person"]
        return {
            "text": f"Moved {faces_text} to a new person.",
            "link": f"{base}/{out['id']}",
            "link_text": "Open them",
        }
    if action == "move":
        to = to.strip()
        if not to:
            raise InvalidInput("type the name of the person to move the faces to")
        ref: str | int = to.removeprefix("#") if to.startswith("#") else to
        out = people.move_faces(studio, project=project["id"], faces=chosen, to=ref)["person"]
        if out["id"] == person:
            return {"text": f"{faces_text.capitalize()} placed in this person for good."}
        who = out["name"] or f"person #{out['id']}"
        return {
            "text": f"Moved {faces_text} to {who}.",
            "link": f"{base}/{out['id']}",
            "link_text": "Open them",
        }
    if action == "not":
        people.not_this_person(studio, project=project["id"], person=person, faces=chosen)
        return {"text": f"Took {faces_text} out of this person; they will not be put back here."}
    if action == "cover":
        if n != 1:
            raise InvalidInput("select one face to use as the cover")
        people.set_cover(studio, project=project["id"], person=person, face=chosen[0])
        return {"text": "Cover face changed."}
    raise InvalidInput("action is one of split, move, not, cover")


def photo_faces(studio: Studio, project: dict[str, Any], sample_id: int) -> list[dict[str, Any]]:
    """The faces the sample detail draws over a photo of a project with people: each with its box
    in percent of the photo, who it is (``label``) and the person page it links to (``url``,
    ``None`` for a face of nobody known)."""
    if "people" not in get_task(project["task"]).sections:
        return []
    try:
        found = faces.photo_faces(studio, project=project["id"], sample_id=sample_id)
    except VistudioError:
        return []  # faces are extra: the detail shows the photo without them
    out = []
    for f in found:
        who = f["person"]
        b = f["box"]
        out.append(
            {
                "id": f["id"],
                "left": 100 * b["x"],
                "top": 100 * b["y"],
                "width": 100 * b["w"],
                "height": 100 * b["h"],
                "label": (who["name"] or f"Unnamed person #{who['id']}") if who else "unknown",
                "named": bool(who and who["name"]),
                "url": f"{_base(project)}/{who['id']}" if who else None,
            }
        )
    return out
