"""API: semantic search and the embedding jobs behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vistudio.api.deps import MAX_ID, StudioDep
from vistudio.errors import InvalidInput, TooLarge
from vistudio.query_syntax import EXAMPLE, MAX_QUERY
from vistudio.services import embeddings, search
from vistudio.studio import Studio

router = APIRouter(prefix="/search", tags=["search"])
Text200 = Annotated[str | None, Form(max_length=200)]


class EmbedRequest(BaseModel):
    project: str = Field(max_length=200)
    model: str | None = Field(default=None, max_length=200, description="open_clip architecture")
    pretrained: str | None = Field(
        default=None, max_length=200, description="open_clip pretrained tag; 'none' = untrained weights"
    )
    checkpoint: str | None = Field(
        default=None,
        max_length=4096,
        description="a weights file on the server, inside VISTUDIO_IMPORT_ROOTS",
    )


class SearchFilters(BaseModel):
    label: str | None = Field(default=None, max_length=200)
    tag: str | None = Field(default=None, max_length=100)
    taken_from: str | None = Field(default=None, max_length=40, description="2024, 2024-05 or 2024-05-31")
    taken_to: str | None = Field(default=None, max_length=40)
    year: str | None = Field(default=None, max_length=4)
    name: str | None = Field(default=None, max_length=200, description="file name contains")
    person: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=20, description="photos of all these people (ids or names)"
    )


class SearchRequest(BaseModel):
    project: str = Field(max_length=200)
    text: str | None = Field(default=None, max_length=search.MAX_TEXT)
    # longer than the syntax allows, so that the parser says what is wrong (and where)
    query: str | None = Field(
        default=None,
        max_length=16 * MAX_QUERY,
        description='the search box syntax: words, "phrases", key:value filters '
        "(person, tag, label, camera, lens, place, name, after, before, on; -key:value excludes), e.g. "
        + EXAMPLE,
    )
    sample_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    k: int = Field(default=20, ge=1, le=search.MAX_K)
    offset: int = Field(default=0, ge=0, le=search.MAX_OFFSET)
    filters: SearchFilters = Field(default_factory=SearchFilters)


def _inside_roots(path: str, studio: Studio) -> Path:
    p = Path(path)
    if "\x00" in path or not p.is_absolute():
        raise InvalidInput("checkpoint must be an absolute path on the server")
    resolved = p.resolve()
    roots = studio.settings.import_roots
    if any(resolved.is_relative_to(r.expanduser().resolve()) for r in roots):
        return resolved
    raise InvalidInput(
        "checkpoint is outside the folders this server may read from (setting VISTUDIO_IMPORT_ROOTS)",
        details={"setting": "import_roots", "import_roots": [str(r) for r in roots]},
    )


@router.post("/embeddings", status_code=202)
def start_embedding(studio: StudioDep, body: EmbedRequest) -> dict[str, Any]:
    """Embed a project's images (a job). 503 ``model_unavailable`` when the weights cannot be had."""
    checkpoint = _inside_roots(body.checkpoint, studio) if body.checkpoint else None
    job = embeddings.start_embedding(
        studio, project=body.project, model=body.model, pretrained=body.pretrained, checkpoint=checkpoint
    )
    return {"job": job}


@router.get("/embeddings")
def embedding_status(studio: StudioDep, project: Annotated[str, Query(max_length=200)]) -> dict[str, Any]:
    """The project's embedding sets, the model searches use, open jobs, the configured model."""
    return embeddings.embedding_status(studio, project=project)


@router.post("")
def search_json(studio: StudioDep, body: SearchRequest) -> dict[str, Any]:
    """Search by ``text`` or by ``sample_id`` (exactly one), with optional filters; or by ``query``
    (the search box syntax: full text and CLIP fused, with its filters; with ``sample_id``, CLIP
    searches by that sample). 422 with the column of a syntax error."""
    return search.search(
        studio,
        project=body.project,
        query=body.query,
        text=body.text,
        sample_id=body.sample_id,
        k=body.k,
        offset=body.offset,
        filters=body.filters.model_dump(exclude_none=True),
    )


@router.post("/image")
def search_image(
    studio: StudioDep,
    request: Request,
    file: Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, …)")],
    project: Annotated[str, Form(max_length=200)],
    k: Annotated[int, Form(ge=1, le=search.MAX_K)] = 20,
    offset: Annotated[int, Form(ge=0, le=search.MAX_OFFSET)] = 0,
    label: Text200 = None,
    tag: Annotated[str | None, Form(max_length=100)] = None,
    taken_from: Annotated[str | None, Form(max_length=40)] = None,
    taken_to: Annotated[str | None, Form(max_length=40)] = None,
    year: Annotated[str | None, Form(max_length=4)] = None,
    name: Text200 = None,
    query: Annotated[str | None, Form(max_length=16 * MAX_QUERY)] = None,
) -> JSONResponse:
    """Search by an uploaded image (multipart ``file``); 413 above the size limit, 422 if unreadable."""
    data = read_upload(studio, request, file)
    out = search.search(
        studio,
        project=project,
        image=data,
        image_name=(file.filename or "upload")[:200],
        query=query,
        k=k,
        offset=offset,
        filters={"label": label, "tag": tag, "from": taken_from, "to": taken_to, "year": year, "name": name},
    )
    return JSONResponse(out)


def read_upload(studio: Studio, request: Request, file: UploadFile) -> bytes:
    """The upload's bytes, refusing more than ``embed.max_upload_bytes`` (413) before reading it all."""
    limit = studio.settings.embed.max_upload_bytes
    message = f"image larger than {limit} bytes (setting VISTUDIO_EMBED__MAX_UPLOAD_BYTES)"
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise TooLarge(message)
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(message)
    return data
