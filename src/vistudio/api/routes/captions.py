"""Captions: the captions job of a project, a photo's captions, and the user's own caption."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from vistudio.api.deps import StudioDep
from vistudio.services import captions

router = APIRouter(tags=["captions"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]
SampleId = Annotated[int, Path(ge=0, le=2**63 - 1)]


class CaptionBody(BaseModel):
    text: str | None = Field(default=None, max_length=captions.MAX_CAPTION, description="empty: remove yours")


@router.post("/projects/{project}/captions", status_code=202)
def start_captions(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """Caption the project's photos without a caption of the configured model (``202 {"job"}``, or
    the one queued or running); 503 ``model_unavailable`` offline without the model."""
    return {"job": captions.start_captions(studio, project=project)}


@router.get("/projects/{project}/captions")
def caption_status(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """How many photos have a caption of the configured model or one written by the user."""
    return captions.caption_status(studio, project=project)


@router.get("/samples/{sample_id}/captions")
def sample_captions(studio: StudioDep, sample_id: SampleId) -> dict[str, Any]:
    """The caption a photo shows (``caption``, ``source``: "user" or the model) and all of them."""
    return captions.captions_of(studio, sample_id)


@router.put("/samples/{sample_id}/caption")
def set_caption(studio: StudioDep, sample_id: SampleId, body: CaptionBody) -> dict[str, Any]:
    """Write your caption of a photo (kept over every model's); an empty one removes it."""
    return captions.set_caption(studio, sample_id, body.text)
