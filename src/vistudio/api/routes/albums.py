"""A project's albums (manual and smart) and "On this day"."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, model_validator

from vistudio.api.deps import StudioDep
from vistudio.services import albums

router = APIRouter(tags=["albums"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]
AlbumId = Annotated[int, Path(ge=1, le=2**63 - 1, description="album id")]
PhotoIds = list[Annotated[int, Field(ge=1, le=2**63 - 1)]]


class CreateRequest(BaseModel):
    name: str = Field(max_length=albums.MAX_NAME * 2, description="unique among the project's albums")
    kind: Literal["manual", "smart"] = "manual"
    query: str | None = Field(
        default=None, max_length=2000, description="a smart album's query, in the search box's syntax"
    )


class UpdateRequest(BaseModel):
    name: str | None = Field(default=None, max_length=albums.MAX_NAME * 2)
    query: str | None = Field(default=None, max_length=2000, description="smart albums only")
    cover_sample_id: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="one of its photos; null: the first photo"
    )


class PhotosRequest(BaseModel):
    add: PhotoIds = Field(default=[], max_length=albums.MAX_BATCH)
    remove: PhotoIds = Field(default=[], max_length=albums.MAX_BATCH)

    @model_validator(mode="after")
    def one_of(self) -> PhotosRequest:
        if bool(self.add) == bool(self.remove):
            raise ValueError("give add or remove (a list of photo ids), not both")
        return self


class OrderRequest(BaseModel):
    sample_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="the photo to move")
    before: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="the photo it goes before; null: the end"
    )
    order: PhotoIds | None = Field(
        default=None, max_length=albums.MAX_BATCH * 10, description="every photo of the album once"
    )

    @model_validator(mode="after")
    def one_of(self) -> OrderRequest:
        if (self.sample_id is None) == (self.order is None):
            raise ValueError("give sample_id (and before) to move one photo, or order for the full order")
        return self


class RestoreRequest(BaseModel):
    id: int = Field(ge=1, le=2**63 - 1, description="the deleted album's id (DELETE's undo.restore)")


@router.get("/projects/{project}/albums")
def list_albums(
    studio: StudioDep,
    project: ProjectRef,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=albums.MAX_LIMIT)] = albums.DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The albums by name, each with its number of photos and its cover."""
    return albums.list_albums(studio, project=project, offset=offset, limit=limit)


@router.post("/projects/{project}/albums", status_code=201)
def create_album(studio: StudioDep, project: ProjectRef, body: CreateRequest) -> dict[str, Any]:
    """A new album: manual, or smart (a ``query``: a syntax error is a 422 naming the column). A
    name in use is a 409."""
    return albums.create_album(studio, project=project, name=body.name, kind=body.kind, query=body.query)


@router.post("/projects/{project}/albums/restore")
def restore_album(studio: StudioDep, project: ProjectRef, body: RestoreRequest) -> dict[str, Any]:
    """Undo a delete (``renamed``: its name was taken meanwhile, so it has a new one)."""
    return albums.restore_album(studio, project=project, album=body.id)


@router.get("/projects/{project}/albums/{album}")
def get_album(
    studio: StudioDep,
    project: ProjectRef,
    album: AlbumId,
    cursor: Annotated[str | None, Query(max_length=80, description="an earlier page's next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=albums.MAX_LIMIT)] = albums.DEFAULT_LIMIT,
) -> dict[str, Any]:
    """An album and a page of its photos: a manual album's in its order, a smart album's newest
    first (worked out from its query now)."""
    return albums.get_album(studio, project=project, album=album, cursor=cursor, limit=limit)


@router.patch("/projects/{project}/albums/{album}")
def update_album(
    studio: StudioDep, project: ProjectRef, album: AlbumId, body: UpdateRequest
) -> dict[str, Any]:
    """Rename, change a smart album's query, or choose the cover (``cover_sample_id``: one of its
    photos; null: back to the first photo)."""
    return albums.update_album(
        studio,
        project=project,
        album=album,
        name=body.name,
        query=body.query,
        cover_sample_id=body.cover_sample_id,
        reset_cover="cover_sample_id" in body.model_fields_set and body.cover_sample_id is None,
    )


@router.delete("/projects/{project}/albums/{album}")
def delete_album(studio: StudioDep, project: ProjectRef, album: AlbumId) -> dict[str, Any]:
    """Delete an album; ``undo.restore`` is the id to POST to ``albums/restore``."""
    return albums.delete_album(studio, project=project, album=album)


@router.post("/projects/{project}/albums/{album}/photos")
def album_photos(
    studio: StudioDep, project: ProjectRef, album: AlbumId, body: PhotosRequest
) -> dict[str, Any]:
    """Add (``add``) or take out (``remove``) photos of a manual album; both are idempotent."""
    if body.add:
        return albums.add_photos(studio, project=project, album=album, sample_ids=body.add)
    return albums.remove_photos(studio, project=project, album=album, sample_ids=body.remove)


@router.post("/projects/{project}/albums/{album}/order")
def album_order(studio: StudioDep, project: ProjectRef, album: AlbumId, body: OrderRequest) -> dict[str, Any]:
    """Move one photo before another (``sample_id``, ``before``; null: to the end), or give the
    full order (``order``: every photo once)."""
    if body.order is not None:
        return albums.set_order(studio, project=project, album=album, order=body.order)
    assert body.sample_id is not None
    return albums.move_photo(
        studio, project=project, album=album, sample_id=body.sample_id, before=body.before
    )


@router.get("/projects/{project}/on-this-day")
def on_this_day(
    studio: StudioDep,
    project: ProjectRef,
    date: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD; default: today")] = None,
    per_year: Annotated[int, Query(ge=1, le=albums.MAX_PER_YEAR)] = 24,
) -> dict[str, Any]:
    """The photos taken on this month and day in earlier years, newest year first (29 February's
    photos show on 28 February in years without one)."""
    return albums.on_this_day(studio, project=project, day=date, per_year=per_year)
