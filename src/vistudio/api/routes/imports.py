from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vistudio.api.deps import Id, StudioDep
from vistudio.errors import InvalidInput, TooLarge
from vistudio.services import ingest
from vistudio.storage.atomic import atomic_writer

router = APIRouter(prefix="/imports", tags=["imports"])
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class ImportRequest(BaseModel):
    project: str = Field(max_length=200)
    source: str = Field(max_length=4096, description="a folder, manifest or zip on the server")
    format: str | None = Field(default=None, max_length=16)
    mode: str = Field(default="copy", max_length=16)


def _inside_roots(path: Path, roots: list[Path]) -> Path:
    if "\x00" in str(path) or not path.is_absolute():
        raise InvalidInput("source must be an absolute path on the server")
    resolved = path.resolve()
    for root in roots:
        if resolved.is_relative_to(root.expanduser().resolve()):
            return resolved
    raise InvalidInput(
        "source is outside the folders this server may import from (setting VISTUDIO_IMPORT_ROOTS)",
        details={"setting": "import_roots", "import_roots": [str(r) for r in roots]},
    )


@router.post("", status_code=202)
def start_import(studio: StudioDep, body: ImportRequest) -> dict[str, Any]:
    source = _inside_roots(Path(body.source), studio.settings.import_roots)
    return {
        "job": ingest.start_import(
            studio, project=body.project, source=source, fmt=body.format, mode=body.mode
        )
    }


@router.post("/upload", status_code=202)
def upload_import(
    studio: StudioDep,
    request: Request,
    file: Annotated[UploadFile, File(description="a .zip of a folder, COCO, YOLO, VOC or CSV dataset")],
    project: Annotated[str, Form(max_length=200)],
    format: Annotated[str | None, Form(max_length=16)] = None,
) -> JSONResponse:
    limit = studio.settings.imports.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"upload larger than {limit} bytes (setting VISTUDIO_IMPORTS__MAX_UPLOAD_BYTES)")
    head = file.file.read(4)
    if head not in ZIP_MAGIC:
        raise InvalidInput("the upload is not a zip file")
    dest = studio.tmp / f"upload-{uuid.uuid4().hex}.zip"
    size = len(head)
    try:
        with atomic_writer(dest) as out:
            out.write(head)
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(
                        f"upload larger than {limit} bytes (setting VISTUDIO_IMPORTS__MAX_UPLOAD_BYTES)"
                    )
                out.write(chunk)
        job = ingest.start_import(
            studio, project=project, source=dest, fmt=format, mode="copy", uploaded=True
        )
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return JSONResponse({"job": job}, status_code=202)


@router.get("/{job_id}")
def import_report(studio: StudioDep, job_id: Id) -> dict[str, Any]:
    return ingest.import_report(studio, job_id)
