"""Faces: run the face job on a project's photos, list the faces found, read a face's crop."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from vistudio.api.deps import Id, StudioDep
from vistudio.services import faces

router = APIRouter(tags=["faces"])


@router.post("/projects/{project}/faces", status_code=202)
def start_faces(studio: StudioDep, project: str) -> dict[str, Any]:
    """Queue a face job for the photos not yet read with the current face model → 202 ``{"job"}``
    (the job already queued or running, if any); 409 when face recognition is turned off."""
    return {"job": faces.start_faces(studio, project=project)}


@router.get("/projects/{project}/faces")
def list_faces(
    studio: StudioDep,
    project: str,
    sample_id: Annotated[int | None, Query(ge=1, le=2**62, description="the faces of one photo")] = None,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The project's faces (``box`` and ``landmarks`` normalised to the photo as displayed, the
    detector's ``score``, ``crop_url``) → ``{"items", "total", "photos_with_faces", "photos_scanned",
    "model"}``."""
    return faces.list_faces(studio, project=project, sample_id=sample_id, offset=offset, limit=limit)


@router.get("/faces/{face_id}/crop", response_class=Response)
def face_crop(studio: StudioDep, face_id: Id) -> Response:
    """The face's crop (WebP, at most 160 px)."""
    return Response(
        faces.face_crop(studio, face_id),
        media_type="image/webp",
        headers={"Cache-Control": "private, max-age=3600"},
    )
