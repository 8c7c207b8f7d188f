"""What every page module shares: the template environment, error rendering and small parsers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from vistudio import __version__
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.ml.tasks import SECTIONS, get_task
from vistudio.services import projects
from vistudio.text import plural

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# One colour per task; unknown tasks fall back to grey in the template.
TASK_COLOURS = {
    "classification": "blue",
    "detection": "orange",
    "semantic_segmentation": "green",
    "instance_segmentation": "teal",
    "anomaly_detection": "red",
    "regression": "purple",
    "oriented_detection": "amber",
    "library": "grey",
}
ACTIVE_STATUSES = ("queued", "running")

# A database row id in a URL: bounded so that a 30-digit id is a 422, not an OverflowError (500)
# from the SQLite driver.
RowId = Annotated[int, PathParam(ge=0, le=2**63 - 1)]


def _task_sections(task: str) -> list[tuple[str, str]]:
    """The tabs of a project page: ``(section, title)`` for each section its task offers."""
    return [(slug, SECTIONS[slug]) for slug in get_task(task).sections]


def row_id(text: str, what: str) -> int:
    """A row id given as query text (``?job=12``): digits only and within SQLite's 64-bit range,
    else InvalidInput — never an OverflowError from the driver."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > 2**63 - 1:
        raise InvalidInput(f"{what} must be a number up to {2**63 - 1}")
    return int(text)


def _urlpart(value: Any) -> str:
    return quote(str(value), safe="")


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _short_time(value: str | None) -> str:
    if not value:
        return "—"
    return value.replace("T", " ").removesuffix("Z")[:19]


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters["urlpart"] = _urlpart
templates.env.filters["human_bytes"] = _human_bytes
templates.env.filters["short_time"] = _short_time
templates.env.filters["plural"] = plural  # {{ n | plural("mistake") }}
templates.env.filters["tojson_attr"] = lambda v: json.dumps(v, sort_keys=True)
templates.env.globals["task_colours"] = TASK_COLOURS
templates.env.globals["task_sections"] = _task_sections
templates.env.globals["version"] = __version__


def is_htmx(request: Request) -> bool:
    """A fragment request from htmx (history restores want the whole page)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code, headers=headers)


def error_fragment(
    request: Request, exc: VistudioError, *, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """An inline error message for htmx to swap in, with the error's own status."""
    return render(
        request,
        "fragments/error.html",
        {"message": exc.message, "code": exc.code, "details": exc.details},
        status_code=exc.status,
        headers=headers,
    )


def hidden_section(request: Request, project: dict[str, Any], section: str) -> HTMLResponse | None:
    """The page (404) for a section that the project's task does not offer, say the Train page of a
    photo library reached by an old link; None when the task offers it."""
    try:
        projects.check_section(project, section)
    except NotFound as exc:
        return render(
            request,
            "section_missing.html",
            {"project": project, "tab": None, "nav": "projects", "message": exc.message},
            status_code=exc.status,
        )
    return None


def error_page(request: Request, exc: VistudioError) -> HTMLResponse:
    """A whole page for an error met while loading a page (an unknown project, say)."""
    return render(
        request,
        "error.html",
        {"message": exc.message, "code": exc.code, "status": exc.status, "details": exc.details},
        status_code=exc.status,
    )
