"""The FastAPI application: API routes, web pages, static files, auth and embedded workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from vistudio import __version__
from vistudio.api import access, errors
from vistudio.api.body_limit import BodyLimit
from vistudio.api.errors import error_body
from vistudio.api.instrument import Instrument
from vistudio.api.routes import (
    albums,
    audit,
    captions,
    datasets,
    duplicates,
    edits,
    evaluation,
    events,
    experiments,
    faces,
    geo,
    health,
    imports,
    jobs,
    library,
    maps,
    people,
    projects,
    runs,
    samples,
    search,
    splits,
    timeline,
    tokens,
    users,
    videos,
)
from vistudio.api.routes import settings as settings_routes  # "settings" names the Settings below
from vistudio.api.security import host_allowed, is_cross_site, token_matches
from vistudio.jobs.worker import EmbeddedWorkers
from vistudio.services.users import LOCAL
from vistudio.studio import Studio
from vistudio.telemetry.metrics import clean_dead_files

OPEN_PATHS = ("/health", "/static/", "/login", "/favicon.ico")
MAX_BODY_BYTES = 16 * 2**20  # any request other than an upload (JSON bodies, forms)
# Swagger UI has no way back to the app on its own: a bar like the app's header, above it.
DOCS_HEADER = """<body style="margin:0">
<style>.vs-docs-bar a { color: #4f46e5; text-decoration: none } .vs-docs-bar a:hover { text-decoration: underline }</style>
<header class="vs-docs-bar" style="display:flex;align-items:center;gap:1.25rem;padding:.7rem 1.25rem;
 background:#fff;border-bottom:1px solid #e3e6ee;font:15px/1.4 system-ui,sans-serif">
 <a href="/" style="font-weight:700;color:#1f2430">◈ vistudio</a>
 <a href="/projects">Projects</a><a href="/jobs">Jobs</a><a href="/runs">Runs</a>
 <span style="margin-left:auto;color:#6b7280">API docs</span>
</header>"""


def create_app(studio: Studio, *, workers: int = 0) -> FastAPI:
    """Build the app around an open Studio. ``workers`` > 0 starts embedded job workers."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # metric files of worker processes that are gone (docs/operations.md): not summed for ever
        clean_dead_files(studio.home)
        pool = EmbeddedWorkers(studio, workers) if workers > 0 else None
        if pool:
            pool.start()
        try:
            yield
        finally:
            if pool:
                pool.shutdown()

    app = FastAPI(
        title="vistudio",
        # authorization: one rule per route, checked here for every route (api/access.py)
        dependencies=[Depends(access.authorize)],
        version=__version__,
        # shown under the title in the API explorer: its way back to the app
        description="The REST API of vistudio. [← Back to the vistudio app](/)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        # the vendored Swagger UI: the API explorer works offline too
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="vistudio API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
        html = bytes(page.body).decode().replace("<body>", DOCS_HEADER, 1)
        return HTMLResponse(html)

    app.state.studio = studio
    errors.install(app)
    access.install(app)
    for module in (
        projects,
        imports,
        samples,
        edits,
        splits,
        jobs,
        runs,
        experiments,
        evaluation,
        library,
        search,
        duplicates,
        maps,
        datasets,
        faces,
        people,
        timeline,
        videos,
        events,
        albums,
        geo,
        captions,
        settings_routes,
        users,
        tokens,
        audit,
    ):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(health.router)

    from vistudio.web import mount

    mount(app)

    settings = studio.settings

    def body_limit(path: str) -> tuple[int, str]:
        if path.endswith("/search/image"):
            return settings.embed.max_upload_bytes, "VISTUDIO_EMBED__MAX_UPLOAD_BYTES"
        if path.endswith("/imports/upload"):
            return settings.imports.max_upload_bytes, "VISTUDIO_IMPORTS__MAX_UPLOAD_BYTES"
        return MAX_BODY_BYTES, "none: requests other than uploads are small"

    app.add_middleware(BodyLimit, limit_for=body_limit)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        # once users exist every request is a user's (or nobody's): api/access.py decides
        principal = await access.authenticate(studio, request)
        if principal is not None:
            request.state.principal = principal
            return access.refuse(request, principal) or await call_next(request)
        request.state.principal = LOCAL
        if not settings.api_token and not host_allowed(request, settings.allowed_hosts):
            return JSONResponse(error_body("forbidden", "unknown Host header"), status_code=403)
        if is_cross_site(request):
            return JSONResponse(error_body("forbidden", "cross-site request refused"), status_code=403)
        if (
            settings.api_token
            and not path.startswith(OPEN_PATHS)
            and not token_matches(request, settings.api_token)
        ):
            if path.startswith("/api/") or path in ("/metrics", "/docs", "/openapi.json"):
                return JSONResponse(
                    error_body("unauthorized", "missing or wrong API token (Authorization: Bearer …)"),
                    status_code=401,
                )
            return RedirectResponse(f"/login?next={path}", status_code=303)
        return await call_next(request)

    # outermost: every request is counted and gets its id, the ones refused above included
    studio.start_logging()
    app.add_middleware(Instrument, metrics=studio.metrics, home=studio.home)
    return app
