"""People: list, read, name, merge, split, "not this person", hide, delete, purge, re-cluster."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput
from vistudio.services import people

router = APIRouter(tags=["people"])

FaceIds = Annotated[list[Annotated[int, Field(ge=1, le=2**62)]], Field(min_length=1, max_length=100_000)]
PersonRef = Annotated[str, Field(min_length=1, max_length=200)]


class PersonPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=400)
    hidden: bool | None = None
    cover_face_id: int | None = Field(None, ge=1, le=2**62)


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    others: Annotated[list[PersonRef], Field(min_length=1, max_length=1000)]


class FacesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    faces: FaceIds


class MoveRequest(FacesRequest):
    to: PersonRef | None = None  # None: a new person


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: bool = False


@router.get("/projects/{project}/people")
def list_people(
    studio: StudioDep,
    project: str,
    hidden: bool = False,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    q: Annotated[str, Query(max_length=200, description="name contains (ignoring case)")] = "",
) -> dict[str, Any]:
    """``{"items": [{"id", "name", "hidden", "faces", "photos", "cover_url"}], "total"}``: named
    people first, then unnamed ones with the most photos; ``q``: the people whose name contains it."""
    return people.list_people(studio, project=project, hidden=hidden, offset=offset, limit=limit, q=q)


@router.post("/projects/{project}/people/recluster", status_code=202)
def recluster(studio: StudioDep, project: str) -> dict[str, Any]:
    """Queue a re-cluster → 202 ``{"job"}``: names and decisions stay."""
    return {"job": people.start_recluster(studio, project=project)}


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    face: int = Field(ge=1, le=2**62)
    person: PersonRef
    yes: bool


@router.get("/projects/{project}/people/review")
def review(
    studio: StudioDep,
    project: str,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Unplaced faces with the person each most likely is, surest first: ``{"items": [{"face",
    "person", "distance"}], "total"}``."""
    return people.review_queue(studio, project=project, offset=offset, limit=limit)


@router.post("/projects/{project}/people/review")
def answer(studio: StudioDep, project: str, body: Answer) -> dict[str, Any]:
    """Answer "is this face that person?": yes places it there; no is remembered."""
    return people.answer(studio, project=project, face=body.face, person=body.person, yes=body.yes)


@router.post("/projects/{project}/people/undo")
def undo(studio: StudioDep, project: str) -> dict[str, Any]:
    """Undo the latest decision about people → ``{"undone": change}``; 409 when there is none."""
    return people.undo(studio, project=project)


@router.post("/projects/{project}/people/redo")
def redo(studio: StudioDep, project: str) -> dict[str, Any]:
    """Redo the decision undone last → ``{"redone": change}``; 409 when there is none."""
    return people.redo(studio, project=project)


@router.get("/projects/{project}/people/changes")
def changes(
    studio: StudioDep,
    project: str,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The decisions about people, newest first: ``{"items": [{"id", "action", "summary",
    "undone", "created_at"}], "total"}``."""
    return people.list_changes(studio, project=project, offset=offset, limit=limit)


@router.post("/projects/{project}/faces/move")
def move_faces(studio: StudioDep, project: str, body: MoveRequest) -> dict[str, Any]:
    """Place faces in person ``to`` (a new person without it) by hand: a split, or a move."""
    return people.move_faces(studio, project=project, faces=body.faces, to=body.to)


@router.post("/projects/{project}/faces/purge")
def purge_faces(studio: StudioDep, project: str, body: Confirm) -> dict[str, Any]:
    """Remove every face, person and decision of the project (``{"confirm": true}``)."""
    if not body.confirm:
        raise InvalidInput('purging cannot be undone: send {"confirm": true}')
    return people.purge_project_faces(studio, project=project)


@router.get("/projects/{project}/people/{person}")
def get_person(studio: StudioDep, project: str, person: str) -> dict[str, Any]:
    """``{"person": {..., "photos": [{"sample_id", "name", "path"}], "faces": [...]}}``; PERSON is an
    id or a name."""
    return people.get_person(studio, project=project, person=person)


@router.patch("/projects/{project}/people/{person}")
def patch_person(studio: StudioDep, project: str, person: str, body: PersonPatch) -> dict[str, Any]:
    """Rename (``name``: ``""`` or null unnames; a taken name → 409 naming its person), hide or show,
    choose the cover face."""
    fields = body.model_fields_set
    out: dict[str, Any] = {}
    if "name" in fields:
        out = people.rename(studio, project=project, person=person, name=body.name)
        person = str(out["person"]["id"])
    if body.hidden is not None:
        out = people.set_hidden(studio, project=project, person=person, hidden=body.hidden)
    if body.cover_face_id is not None:
        out = people.set_cover(studio, project=project, person=person, face=body.cover_face_id)
    return out or people.get_person(studio, project=project, person=person)


@router.delete("/projects/{project}/people/{person}")
def delete_person(studio: StudioDep, project: str, person: str) -> dict[str, Any]:
    """Delete a person: their faces stay, unassigned."""
    return people.delete_person(studio, project=project, person=person)


@router.post("/projects/{project}/people/{person}/merge")
def merge(studio: StudioDep, project: str, person: str, body: MergeRequest) -> dict[str, Any]:
    """Merge ``others`` into this person."""
    return people.merge(studio, project=project, into=person, others=list(body.others))


@router.post("/projects/{project}/people/{person}/not")
def not_this_person(studio: StudioDep, project: str, person: str, body: FacesRequest) -> dict[str, Any]:
    """ "Not this person": the faces leave the person for good."""
    return people.not_this_person(studio, project=project, person=person, faces=body.faces)


@router.post("/projects/{project}/people/{person}/purge")
def purge_person(studio: StudioDep, project: str, person: str, body: Confirm) -> dict[str, Any]:
    """Remove the person with their faces, descriptors and crops (``{"confirm": true}``)."""
    if not body.confirm:
        raise InvalidInput('purging cannot be undone: send {"confirm": true}')
    return people.purge_person(studio, project=project, person=person)
