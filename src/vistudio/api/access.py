"""Authorization: one rule per route, derived from the route table, checked in one dependency.

Every route gets a :class:`Requirement` from :func:`requirement_for` (method + full path):

* an entry of ``EXPLICIT`` when there is one (routes that name no project in their path: lists,
  creations with the project in the body, admin routes, public pages);
* else a ``{project}`` path parameter (``{name}`` under ``/projects/``) names the project;
* else a resource id (``{sample_id}``, ``{job_id}``, …) whose row names the project;
* else nothing: the route is refused (deny by default) and the authorization matrix test fails.

The action is read for GET/HEAD/OPTIONS and write for everything else unless the entry says
otherwise. :func:`authorize` runs for every API route and page (an app-level dependency); the
``guard`` middleware has already put the request's :class:`Principal` on ``request.state``.
See docs/security.md.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.concurrency import run_in_threadpool

from vistudio.api.errors import error_body
from vistudio.api.security import SAFE_METHODS, is_cross_site
from vistudio.errors import NotFound, Unauthorized, VistudioError
from vistudio.services import access, users
from vistudio.services.users import ANONYMOUS, Principal
from vistudio.studio import Studio

SESSION_COOKIE = "vistudio_session"
# open without signing in once users exist (the app's other open paths: /health, /static/, /login)
OPEN_PATHS = ("/health", "/static/", "/login", "/logout", "/favicon.ico")

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# a resource id in a path, and the kind of row it names (services.access.resource_project)
RESOURCES = {
    "sample_id": "sample",
    "job_id": "job",
    "video_id": "video",
    "face_id": "face",
    "export_id": "export",
    "run_id": "run",  # a pipeline run's string id: its input's project, or none (a folder)
}


@dataclass(frozen=True)
class Requirement:
    """What a route needs. ``action``: public (anyone, signed in or not) | read | write (global
    editors and admins, or a project's owner and editors) | manage (a project's owner, admins) |
    admin. ``project``: where the project is named — ``(source, field)`` with source path, query,
    body (JSON) or form; ``resource``: ``(path parameter, kind)``. ``optional``: the field may be
    absent (a list across projects, which the route filters to the visible ones)."""

    action: str
    project: tuple[str, str] | None = None
    resource: tuple[str, str] | None = None
    optional: bool = False


PUBLIC = Requirement("public")
USER_READ = Requirement("read")
USER_WRITE = Requirement("write")
ADMIN = Requirement("admin")


def _q(action: str = "read", field: str = "project") -> Requirement:
    return Requirement(action, project=("query", field))


def _body(action: str = "write", field: str = "project") -> Requirement:
    return Requirement(action, project=("body", field))


def _form(action: str = "write", field: str = "project") -> Requirement:
    return Requirement(action, project=("form", field))


def _path(action: str, field: str = "project") -> Requirement:
    return Requirement(action, project=("path", field))


EXPLICIT: dict[tuple[str, str], Requirement] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/metrics"): USER_READ,
    ("GET", "/docs"): USER_READ,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    # API: lists filtered by the route, creations, project named in the query or body
    ("GET", "/api/v1/projects"): USER_READ,
    ("POST", "/api/v1/projects"): USER_WRITE,
    ("POST", "/api/v1/imports"): _body(),
    ("POST", "/api/v1/imports/upload"): _form(),
    ("GET", "/api/v1/samples"): _q(),
    ("GET", "/api/v1/splits"): _q(),
    ("POST", "/api/v1/splits/preview"): _body("read"),
    ("POST", "/api/v1/splits"): _body(),
    ("GET", "/api/v1/jobs"): Requirement("read", project=("query", "project"), optional=True),
    # a pipeline run may read a project (optional): checked when it names one. A run's own routes
    # ({run_id}) follow its project (RESOURCES); the lists below leave out runs of hidden projects,
    # and a comparison checks both of its runs (services.access.check_runs)
    ("POST", "/api/v1/runs"): Requirement("write", project=("body", "project"), optional=True),
    ("GET", "/api/v1/runs"): USER_READ,
    ("GET", "/api/v1/runs/usage"): USER_READ,
    ("GET", "/api/v1/runs/compare"): USER_READ,
    ("POST", "/api/v1/runs/clean"): ADMIN,
    ("GET", "/api/v1/experiments/models"): USER_READ,
    ("POST", "/api/v1/experiments"): _body(),
    ("GET", "/api/v1/experiments"): _q(),
    ("GET", "/api/v1/experiments/compare"): _q(),
    ("POST", "/api/v1/evaluations"): _body(),
    ("POST", "/api/v1/exports"): _body(),
    ("GET", "/api/v1/exports"): _q(),
    ("POST", "/api/v1/search/embeddings"): _body(),
    ("GET", "/api/v1/search/embeddings"): _q(),
    ("POST", "/api/v1/search"): _body("read"),
    ("POST", "/api/v1/search/image"): _form("read"),
    ("GET", "/api/v1/settings"): USER_READ,
    ("PATCH", "/api/v1/settings"): ADMIN,
    ("DELETE", "/api/v1/settings/{key}"): ADMIN,
    # users, tokens, sharing, audit (api/routes/users.py)
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("PATCH", "/api/v1/users/{name}"): ADMIN,
    ("GET", "/api/v1/users/me"): Requirement("read"),
    ("GET", "/api/v1/tokens"): USER_READ,
    ("POST", "/api/v1/tokens"): USER_READ,  # a viewer may make a token for itself
    ("DELETE", "/api/v1/tokens/{token_id}"): USER_READ,  # its own; admins any
    ("GET", "/api/v1/audit"): ADMIN,
    ("GET", "/api/v1/projects/{project}/members"): _path("read"),
    ("PUT", "/api/v1/projects/{project}/members/{user}"): _path("manage"),
    # renaming, deleting and sharing a project: its owner or an admin
    ("PATCH", "/api/v1/projects/{project}"): _path("manage"),
    ("DELETE", "/api/v1/projects/{project}"): _path("manage"),
    ("POST", "/projects/{name}/rename"): _path("manage", "name"),
    ("POST", "/projects/{name}/delete"): _path("manage", "name"),
    # searches sent as POST change nothing
    ("POST", "/projects/{name}/search/image"): _path("read", "name"),
    ("POST", "/projects/{name}/split/preview"): _path("read", "name"),
    # pages that are not about one project
    ("GET", "/"): USER_READ,
    ("GET", "/projects"): USER_READ,
    ("POST", "/projects"): USER_WRITE,
    ("GET", "/jobs"): Requirement("read", resource=("query:job", "job"), optional=True),
    ("GET", "/jobs/table"): USER_READ,
    ("GET", "/runs"): USER_READ,
    ("GET", "/runs/compare"): USER_READ,
    ("GET", "/settings"): USER_READ,
    # the Access page (web/pages/access.py): one's own tokens; users (first admin in local mode)
    ("GET", "/access"): USER_READ,
    ("POST", "/access/tokens"): USER_READ,  # for oneself; another user's: admins (the route checks)
    ("POST", "/access/tokens/{token_id}/revoke"): USER_READ,  # its own; admins any
    ("POST", "/access/users"): ADMIN,
    ("POST", "/access/users/{name}/remove"): ADMIN,
    ("POST", "/access/users/{name}/role"): ADMIN,
    ("POST", "/settings/{key}"): ADMIN,
    ("POST", "/settings/{key}/reset"): ADMIN,
}

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def requirement_for(method: str, path: str) -> Requirement | None:
    """The rule of a route (see the module docstring); None: no rule (refused)."""
    method = "GET" if method == "HEAD" else method
    explicit = EXPLICIT.get((method, path))
    if explicit is not None:
        return explicit
    action = "read" if method in SAFE_METHODS else "write"
    params = _PARAM.findall(path)
    if "project" in params:
        return _path(action)
    if "name" in params and path.startswith("/projects/{name}"):
        return _path(action, "name")
    for param in params:
        if param in RESOURCES:
            return Requirement(action, resource=(param, RESOURCES[param]))
    return None


def route_paths(app: Any) -> dict[int, str]:
    """The full path (prefixes included) of every route object of ``app``."""
    return {
        id(ctx.original_route): ctx.path for ctx in iter_route_contexts(app.routes) if ctx.path is not None
    }


def principal_of(request: Request) -> Principal:
    """The request's principal (``guard`` sets it; a request that skipped it is nobody)."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else ANONYMOUS


def _authenticate(studio: Studio, bearer: str, cookie: str) -> Principal | None:
    if not users.users_exist(studio):
        return None
    if bearer:
        return users.principal_for_token(studio, bearer) or ANONYMOUS
    if cookie:
        return users.principal_for_session(studio, cookie) or ANONYMOUS
    return ANONYMOUS


async def authenticate(studio: Studio, request: Request) -> Principal | None:
    """The request's user once users exist (ANONYMOUS without a valid token or session); None in
    local mode (no user in the database: the shared ``api_token`` rules, as before users)."""
    header = request.headers.get("authorization", "")
    bearer = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return await run_in_threadpool(_authenticate, studio, bearer, cookie)


def refuse(request: Request, principal: Principal) -> Response | None:
    """The answer to a request that may not go on once users exist (the ``guard`` middleware):
    a cross-site write, or no valid token or session outside the open paths."""
    path = request.url.path
    if is_cross_site(request):
        return JSONResponse(error_body("forbidden", "cross-site request refused"), status_code=403)
    if principal.user_id != ANONYMOUS.user_id or path.startswith(OPEN_PATHS):
        return None
    if path.startswith("/api/") or path in ("/metrics", "/docs", "/openapi.json"):
        return JSONResponse(
            error_body("unauthorized", "sign in: send a user's API token (Authorization: Bearer …)"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = f"/login?next={quote(path)}"
    if request.headers.get("hx-request"):
        # an htmx request (a session that expired under an open page): the whole page goes to
        # the sign-in form, not a fragment of it
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _field(request: Request, source: str, field: str) -> Any:
    if source == "path":
        return request.path_params.get(field)
    if source == "query":
        return request.query_params.get(field)
    if source.startswith("query:"):
        return request.query_params.get(source.removeprefix("query:"))
    if source == "body":
        try:
            body = await request.json()
        except ValueError:
            return None  # the route answers 422 for a body that is not JSON
        return body.get(field) if isinstance(body, dict) else None
    if source == "form":
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            return None
        value = (await request.form()).get(field)
        return value if isinstance(value, str) else None
    return None


async def _check_csrf(request: Request, principal: Principal) -> None:
    """A state-changing request authenticated by the session cookie must carry the session's CSRF
    token (header ``X-CSRF-Token``, or a ``csrf_token`` form field). Bearer tokens are exempt:
    a browser never adds them on its own."""
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER) or await _field(request, "form", CSRF_FIELD) or ""
    if not hmac.compare_digest(str(given).encode(), principal.csrf_token().encode()):
        raise access.Forbidden("missing or wrong CSRF token: reload the page and try again")


def _rid(value: Any, kind: str = "") -> int | str | None:
    text = str(value) if value is not None else ""
    if kind == "run":  # readable string ids (``20261123-181502-a1b2c3``)
        return text if 0 < len(text) <= 100 else None
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) <= 18 else None


def enforce(studio: Studio, principal: Principal, req: Requirement, values: dict[str, Any]) -> None:
    """Raise when ``principal`` may not do what ``req`` describes (``values``: the named fields)."""
    if req.action == "public" or principal.user_id is None:
        return
    if principal.user_id == ANONYMOUS.user_id:
        raise Unauthorized("sign in first")
    if req.action == "admin":
        if not principal.is_admin:
            raise access.Forbidden("only an admin can do this")
        return
    # the global role first: a viewer's write is a 403 whatever it names — a project or resource
    # that exists, is hidden or is missing alike (no answer tells these apart)
    if req.action != "read" and principal.role == "viewer":
        raise access.Forbidden("viewers cannot change anything")
    ref = values.get("project")
    # a named project that does not exist is left to the route (404)
    if (
        req.project is not None
        and ref not in (None, "")
        and access.check_project(studio, principal, ref, action=req.action)
    ):
        return
    kind = req.resource[1] if req.resource is not None else ""
    rid = _rid(values.get("resource"), kind) if req.resource is not None else None
    if rid is not None:
        exists, project_id = access.resource_project(studio, kind, rid)
        if exists:
            # a hidden one answers as a missing one does: ``run 'ID' not found``, ``sample 7 not found``
            what = f"{kind} {rid!r}" if isinstance(rid, str) else f"{kind} {rid}"
            access.check_project_id(studio, principal, project_id, what, action=req.action)
            return
    # no project named (an optional one left out, or a missing one the route refuses itself), or
    # a rule about no project at all: the global role (above) decided


async def _authorize(request: Request, principal: Principal) -> None:
    """Raise (a VistudioError) unless ``principal`` may make ``request`` (its route's rule)."""
    route = request.scope.get("route")
    paths: dict[int, str] | None = getattr(request.app.state, "route_paths", None)
    if paths is None:
        paths = request.app.state.route_paths = route_paths(request.app)
    path = paths.get(id(route)) if route is not None else None
    req = requirement_for(request.method, path) if path else None
    if req is None:
        raise access.Forbidden(f"no access rule for {request.method} {path or request.url.path}")
    await _check_csrf(request, principal)
    values: dict[str, Any] = {}
    if req.project is not None:
        values["project"] = await _field(request, *req.project)
    if req.resource is not None:
        source = req.resource[0] if req.resource[0].startswith("query:") else "path"
        values["resource"] = await _field(request, source, req.resource[0])
    studio: Studio = request.app.state.studio
    await run_in_threadpool(enforce, studio, principal, req, values)


async def authorize(request: Request) -> None:
    """The one authorization check of every API route and page (an app-level dependency)."""
    principal = principal_of(request)
    if principal.user_id is None:
        return  # local mode (no users): everything is the machine's user's, as before users
    try:
        await _authorize(request, principal)
    except VistudioError as exc:
        if not request.url.path.startswith("/api/") and request.url.path not in ("/metrics", "/docs"):
            raise PageError(exc) from None
        raise


async def still_allowed(request: Request) -> bool:
    """Whether a long answer (an SSE stream) may go on: the request authenticated and authorized
    again, as if it came now — False once its token is revoked or expired, its session ended, its
    user removed or its access to the project withdrawn. Always True in local mode."""
    if principal_of(request).user_id is None:
        return True
    studio: Studio = request.app.state.studio
    principal = await authenticate(studio, request)
    if principal is None or principal.user_id == ANONYMOUS.user_id:
        return False  # no valid token or session any more (or no user at all)
    try:
        await _authorize(request, principal)
    except VistudioError:
        return False
    return True


def install(app: FastAPI) -> None:
    """Render authorization errors of pages as the pages render their own errors."""

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        from vistudio.web.pages._common import error_fragment, error_page

        if request.headers.get("hx-request"):
            return error_fragment(request, exc.exc)
        return error_page(request, exc.exc)


class PageError(Exception):
    """An authorization error on a page: rendered as the page's own error (HTML), not JSON."""

    def __init__(self, exc: VistudioError) -> None:
        super().__init__(exc.message)
        self.exc = exc


__all__ = [
    "NotFound",
    "PageError",
    "Requirement",
    "authorize",
    "enforce",
    "requirement_for",
    "still_allowed",
]
