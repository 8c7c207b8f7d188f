from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from vistudio.api.deps import Id, Limit, Offset, StudioDep
from vistudio.services import samples

router = APIRouter(prefix="/samples", tags=["samples"])


@router.get("")
def list_samples(
    studio: StudioDep,
    project: Annotated[str, Query(max_length=200)],
    label: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    split: Annotated[str | None, Query(max_length=64)] = None,
    subset: Annotated[str | None, Query(max_length=16)] = None,
    has_annotations: bool | None = None,
    taken_from: datetime | None = None,
    taken_to: datetime | None = None,
    dup_group: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    duplicates: bool = False,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: str = "name",
    order: str = "asc",
    offset: Offset = 0,
    limit: Limit = 60,
    min_objects: Annotated[
        int | None, Query(description="at least this many objects (of class `label`, of `object_size`)")
    ] = None,
    max_objects: Annotated[
        int | None, Query(description="at most this many objects (of class `label`, of `object_size`)")
    ] = None,
    object_size: Annotated[
        str | None,
        Query(max_length=16, description="small (< 32² px), medium (< 96² px) or large, as COCO"),
    ] = None,
    annotations: Annotated[bool, Query(description="include each sample's annotations")] = False,
    person: Annotated[
        list[str] | None,
        Query(max_length=200, description="photos of this person (id or name); repeat for people together"),
    ] = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=200,
            description="photos with a GPS position in west,south,east,north (degrees; west > east: "
            "across the antimeridian)",
        ),
    ] = None,
) -> dict[str, Any]:
    """Samples of a project, filtered, sorted and paged. In detection-like projects the object
    filters count the objects of each image: ``min_objects``/``max_objects`` bound their number,
    ``label`` and ``object_size`` restrict which objects count."""
    return samples.list_samples(
        studio,
        project=project,
        label=label,
        tag=tag,
        split=split,
        subset=subset,
        has_annotations=has_annotations,
        taken_from=taken_from,
        taken_to=taken_to,
        dup_group=dup_group,
        duplicates_only=duplicates,
        q=q,
        sort=sort,
        order=order,
        offset=offset,
        limit=limit,
        min_objects=min_objects,
        max_objects=max_objects,
        object_size=object_size,
        with_annotations=annotations,
        person=person,
        bbox=bbox,
    )


@router.get("/{sample_id}")
def get_sample(studio: StudioDep, sample_id: Id) -> dict[str, Any]:
    return {"sample": samples.get_sample(studio, sample_id)}


@router.get("/{sample_id}/thumbnail", response_class=FileResponse)
def thumbnail(studio: StudioDep, sample_id: Id) -> Response:
    """The thumbnail file, or a redirect to a short-lived URL when blobs live in S3."""
    url = samples.sample_download_url(studio, sample_id, thumbnail=True)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    path, media = samples.sample_file(studio, sample_id, thumbnail=True)
    return FileResponse(
        path, media_type=media, headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


@router.get("/{sample_id}/original", response_class=FileResponse)
def original(studio: StudioDep, sample_id: Id) -> Response:
    """The original file, or a redirect to a short-lived URL when blobs live in S3."""
    url = samples.sample_download_url(studio, sample_id, thumbnail=False)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    path, media = samples.sample_file(studio, sample_id, thumbnail=False)
    return FileResponse(path, media_type=media)
