"""Photo library: a library project's folders (indexed in place) and their scans."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from vistudio.api.deps import Id, Limit, Offset, StudioDep
from vistudio.errors import NotFound
from vistudio.services import library

router = APIRouter(prefix="/library", tags=["library"])
ProjectRef = Annotated[str, Path(max_length=200, description="project name or id")]


class AddRootsRequest(BaseModel):
    paths: list[Annotated[str, Field(max_length=4096)]] = Field(
        min_length=1,
        max_length=library.MAX_ROOTS_PER_CALL,
        description="absolute folder paths on the server, inside VISTUDIO_IMPORT_ROOTS",
    )


class ScanRequest(BaseModel):
    roots: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, max_length=library.MAX_ROOTS_PER_CALL, description="root ids (default: all)"
    )


@router.get("/{project}/roots")
def list_roots(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """The project's folders with file counts and whether each is usable now (``problem``)."""
    return library.list_roots(studio, project=project)


@router.post("/{project}/roots", status_code=201)
def add_roots(studio: StudioDep, project: ProjectRef, body: AddRootsRequest) -> dict[str, Any]:
    """Register folders (all or none); a folder already registered is kept as it is."""
    return library.add_roots(studio, project=project, paths=body.paths, allowed=studio.settings.import_roots)


@router.delete("/{project}/roots/{root_id}")
def remove_root(studio: StudioDep, project: ProjectRef, root_id: Id) -> dict[str, Any]:
    """Unregister a folder; samples no other folder holds leave the project. Files are untouched."""
    return library.remove_root(studio, project=project, root=root_id)


@router.post("/{project}/scan", status_code=202)
def start_scan(studio: StudioDep, project: ProjectRef, body: ScanRequest | None = None) -> dict[str, Any]:
    """Queue a scan (``202 {"job"}``); follow it at ``/jobs/{id}/events``."""
    roots: list[str | int] | None = list(body.roots) if body and body.roots else None
    return {"job": library.start_scan(studio, project=project, roots=roots)}


@router.get("/{project}/scan")
def latest_scan(studio: StudioDep, project: ProjectRef) -> dict[str, Any]:
    """The most recent scan: its job and report (``report`` is null until it succeeds)."""
    found = library.latest_scan(studio, project=project)
    if found is None:
        raise NotFound(f"project {project!r} was never scanned")
    return found


@router.get("/{project}/files")
def list_files(
    studio: StudioDep,
    project: ProjectRef,
    root: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="one root's files")] = None,
    failed: Annotated[bool | None, Query(description="only files that are (not) usable images")] = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Indexed files, by root and path; several files may share a sample (identical bytes)."""
    return library.list_files(studio, project=project, root=root, failed=failed, offset=offset, limit=limit)
