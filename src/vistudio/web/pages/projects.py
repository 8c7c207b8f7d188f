"""Projects page: list, create (modal, then the new project opens), rename (inline) and delete
(typed confirmation)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.access import principal_of
from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import access, projects
from vistudio.studio import Studio
from vistudio.web.pages._common import error_fragment, render

router = APIRouter(tags=["web"], include_in_schema=False)
MAX_LISTED = 500


def _context(studio: Studio, request: Request) -> dict[str, object]:
    visible = access.visible_project_ids(studio, principal_of(request))
    listing = projects.list_projects(studio, limit=MAX_LISTED, visible=visible)
    return {"projects": listing["items"], "total": listing["total"], "tasks": projects.task_catalog()}


def _list(request: Request, studio: Studio) -> Response:
    headers = {"HX-Retarget": "#project-list", "HX-Reswap": "outerHTML"}
    return render(request, "fragments/project_list.html", _context(studio, request), headers=headers)


@router.get("/", response_class=HTMLResponse)
@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request, studio: StudioDep) -> Response:
    return render(request, "projects.html", {**_context(studio, request), "nav": "projects"})


@router.post("/projects", response_class=HTMLResponse)
def create(
    request: Request,
    studio: StudioDep,
    name: Annotated[str, Form(max_length=300)] = "",
    task: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    try:
        if not name.strip():
            raise InvalidInput("give the project a name")
        created = projects.create_project(
            studio, name=name, task=task, owner=principal_of(request).user_id
        )
    except VistudioError as exc:
        return error_fragment(request, exc)
    # a new project is empty: open it, where its first import starts
    return Response(status_code=204, headers={"HX-Redirect": f"/projects/{quote(created['name'], safe='')}"})


@router.post("/projects/{name}/rename", response_class=HTMLResponse)
def rename(
    request: Request, studio: StudioDep, name: str, new_name: Annotated[str, Form(max_length=300)] = ""
) -> Response:
    try:
        projects.rename_project(studio, name, new_name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return _list(request, studio)


@router.post("/projects/{name}/delete", response_class=HTMLResponse)
def delete(
    request: Request, studio: StudioDep, name: str, confirm: Annotated[str, Form(max_length=300)] = ""
) -> Response:
    try:
        project = projects.get_project(studio, name)
        if confirm != project["name"]:
            raise InvalidInput(f"type the project name ({project['name']}) to confirm")
        projects.delete_project(studio, project["id"])
    except VistudioError as exc:
        return error_fragment(request, exc)
    return _list(request, studio)
