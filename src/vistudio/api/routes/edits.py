"""Editing tags and labels, one sample or in bulk, and the undoable history of those edits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from vistudio.api.deps import Id, Limit, Offset, StudioDep
from vistudio.api.deps import client_actor as actor
from vistudio.services import annotations as object_edits
from vistudio.services import edits, label_errors, samples, versions, views

router = APIRouter(tags=["edits"])

Names = Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=edits.MAX_NAMES)]


class SampleFilter(BaseModel):
    """The grid's filters (as ``GET /samples`` takes them): the samples they match are selected."""

    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(None, max_length=200)
    tag: str | None = Field(None, max_length=100)
    split: str | None = Field(None, max_length=64)
    subset: str | None = Field(None, max_length=16)
    has_annotations: bool | None = None
    taken_from: datetime | None = None
    taken_to: datetime | None = None
    dup_group: int | None = Field(None, ge=0, le=2**63 - 1)
    duplicates_only: bool = False
    q: str | None = Field(None, max_length=200)
    min_objects: int | None = Field(None, ge=0, le=1_000_000)
    max_objects: int | None = Field(None, ge=0, le=1_000_000)
    object_size: str | None = Field(None, max_length=16)
    # photos of this person (an id or a name), or of all these people together
    person: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=20)


class Selection(BaseModel):
    """Exactly one of: ``sample_ids``, ``filter`` (every sample matching it), ``all``."""

    model_config = ConfigDict(extra="forbid")
    sample_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        None, max_length=edits.MAX_SAMPLE_IDS
    )
    filter: SampleFilter | None = None
    all: bool = False

    def spec(self) -> dict[str, Any]:
        return {
            "sample_ids": self.sample_ids,
            "filter": self.filter.model_dump(exclude_defaults=True) if self.filter else None,
            "all": self.all,
        }


class TagEdit(Selection):
    add: Names = []
    remove: Names = []


class LabelEdit(Selection):
    set: Names | None = Field(None, description="the labels each sample gets ([] clears them)")
    add: Names = []
    remove: Names = []
    expected: Names | None = Field(
        None, description="the labels the client saw; a sample with other labels now answers 409"
    )
    create_classes: bool = Field(False, description="create classes the project does not have")


class SampleEdit(BaseModel):
    """One sample: tags to add and remove, and/or its labels (``expected``: the labels the client
    loaded, so that an edit made meanwhile is not overwritten: 409 with the current labels)."""

    model_config = ConfigDict(extra="forbid")
    add_tags: Names = []
    remove_tags: Names = []
    labels: Names | None = None
    expected_labels: Names | None = None
    create_classes: bool = False


class ObjectsSave(BaseModel):
    """The editor's save: every ground-truth object of the image, and the revision it loaded."""

    model_config = ConfigDict(extra="forbid")
    objects: list[dict[str, Any]] = Field(max_length=object_edits.MAX_OBJECTS)
    revision: str | None = Field(None, max_length=64, description="objects_revision of the loaded sample")
    create_classes: bool = False


class Revert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    change_id: int | None = Field(None, ge=1, le=2**63 - 1)


@router.post("/projects/{project}/tags")
def edit_tags(studio: StudioDep, project: str, body: TagEdit, request: Request) -> dict[str, Any]:
    """Add and remove tags on the selected samples, as one change: ``{"changed", "change_id"}``."""
    return edits.edit_tags(
        studio, project=project, selection=body.spec(), add=body.add, remove=body.remove, actor=actor(request)
    )


@router.post("/projects/{project}/labels")
def edit_labels(studio: StudioDep, project: str, body: LabelEdit, request: Request) -> dict[str, Any]:
    """Set, add or remove the ground-truth labels of the selected samples, as one change."""
    return edits.edit_labels(
        studio,
        project=project,
        selection=body.spec(),
        set_to=body.set,
        add=body.add,
        remove=body.remove,
        expected=body.expected,
        create_classes=body.create_classes,
        actor=actor(request),
    )


@router.patch("/samples/{sample_id}")
def edit_sample(studio: StudioDep, sample_id: Id, body: SampleEdit, request: Request) -> dict[str, Any]:
    """Edit one sample's tags and labels in one transaction: the sample as it is now and the
    changes made."""
    made = edits.edit_sample(
        studio,
        sample_id,
        add_tags=body.add_tags,
        remove_tags=body.remove_tags,
        labels=body.labels,
        expected_labels=body.expected_labels,
        create_classes=body.create_classes,
        actor=actor(request),
    )
    return {"sample": samples.get_sample(studio, sample_id), "changes": made}


@router.put("/samples/{sample_id}/annotations")
def save_objects(studio: StudioDep, sample_id: Id, body: ObjectsSave, request: Request) -> dict[str, Any]:
    """Replace the image's boxes, polygons, rotated boxes and masks (its ground truth) as one
    undoable change; 409 with the current objects when they changed since ``revision``."""
    return object_edits.set_objects(
        studio,
        sample_id,
        body.objects,
        expected_revision=body.revision,
        create_classes=body.create_classes,
        actor=actor(request),
    )


@router.post("/projects/{project}/undo")
def undo(studio: StudioDep, project: str, body: Revert, request: Request) -> dict[str, Any]:
    """Take back a change (the newest one in effect without ``change_id``); 409 when its samples
    were changed since."""
    return edits.undo(studio, project=project, change_id=body.change_id, actor=actor(request))


@router.post("/projects/{project}/redo")
def redo(studio: StudioDep, project: str, body: Revert, request: Request) -> dict[str, Any]:
    """Take back an undo (the newest one without ``change_id``, else the undone change's id)."""
    return edits.redo(studio, project=project, change_id=body.change_id, actor=actor(request))


@router.get("/projects/{project}/changes")
def history(
    studio: StudioDep,
    project: str,
    sample_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The edit history, newest first; with ``sample_id``, the changes of that sample with its
    before and after."""
    return edits.history(studio, project=project, sample_id=sample_id, offset=offset, limit=limit)


class VersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)


@router.post("/projects/{project}/versions", status_code=201)
def create_version(studio: StudioDep, project: str, body: VersionCreate, request: Request) -> dict[str, Any]:
    """Snapshot the project's samples and labels as they are now."""
    return {"version": versions.create_version(studio, project=project, name=body.name, actor=actor(request))}


@router.get("/projects/{project}/versions")
def list_versions(studio: StudioDep, project: str, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
    """The project's versions, newest first; ``edited_since`` when labels were edited after one."""
    return versions.list_versions(studio, project=project, offset=offset, limit=limit)


@router.get("/projects/{project}/versions/diff")
def diff_versions(
    studio: StudioDep,
    project: str,
    a: Annotated[str, Query(max_length=100)],
    b: Annotated[str, Query(max_length=100)],
) -> dict[str, Any]:
    """From version ``a`` to ``b`` (names or numbers): samples added, removed, relabelled, and per
    class how many samples gained or lost it."""
    return versions.diff_versions(studio, project=project, a=a, b=b)


@router.get("/projects/{project}/versions/{version}")
def get_version(
    studio: StudioDep, project: str, version: Annotated[str, Path(max_length=100)]
) -> dict[str, Any]:
    return {"version": versions.get_version(studio, project=project, version=version)}


class LabelErrorsRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: Literal["best", "last"] = "best"
    folds: int = Field(5, ge=2, le=20)
    batch_size: int = Field(64, ge=1, le=1024)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accept: bool | None = Field(
        description="true: relabel to the suggestion; false: keep the label; null: take a rejection back"
    )


@router.post("/projects/{project}/experiments/{experiment}/label-errors", status_code=202)
def find_label_errors(
    studio: StudioDep, project: str, experiment: str, body: LabelErrorsRun
) -> dict[str, Any]:
    """Queue the search for likely label errors with the experiment's model → 202 ``{"job"}``."""
    return label_errors.start_label_errors(
        studio,
        project=project,
        experiment=experiment,
        checkpoint=body.checkpoint,
        folds=body.folds,
        batch_size=body.batch_size,
    )


@router.get("/projects/{project}/experiments/{experiment}/label-errors")
def list_label_errors(
    studio: StudioDep,
    project: str,
    experiment: str,
    all: Annotated[bool, Query(description="every scored image, decided ones included")] = False,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """The images most likely mislabelled first: ``{"items": [{"sample_id", "name", "given",
    "suggested", "score", "flagged", "decision"}], "total", "scored"}``."""
    return label_errors.list_label_errors(
        studio,
        project=project,
        experiment=experiment,
        flagged_only=not all,
        undecided_only=not all,
        offset=offset,
        limit=limit,
    )


@router.post("/projects/{project}/experiments/{experiment}/label-errors/{sample_id}")
def decide_label_error(
    studio: StudioDep, project: str, experiment: str, sample_id: Id, body: Decision, request: Request
) -> dict[str, Any]:
    """Accept (relabel the image to the suggestion, one undoable change) or reject a suggestion;
    ``accept: null`` takes a rejection back. An accept whose relabel was undone is open again."""
    return label_errors.decide(
        studio,
        project=project,
        experiment=experiment,
        sample_id=sample_id,
        accept=body.accept,
        actor=actor(request),
    )


class ViewSave(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=100)
    query: dict[str, str | int | bool | None] = Field(
        description="the Dataset grid's query parameters: label, tag, subset (split:subset), annotated "
        "(yes|no), taken_from, taken_to (YYYY-MM-DD), duplicates, q, min_objects, max_objects, "
        "object_size, sort, order"
    )
    replace: bool = False


@router.get("/projects/{project}/views")
def list_views(studio: StudioDep, project: str) -> dict[str, Any]:
    """The project's saved views, each with its query and its page address."""
    return views.list_views(studio, project=project)


@router.post("/projects/{project}/views", status_code=201)
def save_view(studio: StudioDep, project: str, body: ViewSave) -> dict[str, Any]:
    """Save a filter and sort as a named view (409 when the name is taken, unless ``replace``)."""
    return {
        "view": views.save_view(
            studio, project=project, name=body.name, query=body.query, replace=body.replace
        )
    }


@router.get("/projects/{project}/views/{name}")
def get_view(studio: StudioDep, project: str, name: Annotated[str, Path(max_length=100)]) -> dict[str, Any]:
    return {"view": views.get_view(studio, project=project, name=name)}


@router.delete("/projects/{project}/views/{name}")
def delete_view(
    studio: StudioDep, project: str, name: Annotated[str, Path(max_length=100)]
) -> dict[str, Any]:
    return views.delete_view(studio, project=project, name=name)
