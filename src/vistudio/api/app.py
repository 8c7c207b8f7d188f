"""The FastAPI application: API routes, web pages, static files, auth and embedded workers."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from vistudio import __version__
from vistudio.api import errors
from vistudio.api.errors import error_body
from vistudio.api.routes import health, imports, jobs, projects, samples, splits
from vistudio.jobs.worker import EmbeddedWorkers
from vistudio.studio import Studio

OPEN_PATHS = ("/health", "/static/", "/login", "/favicon.ico")


def create_app(studio: Studio, *, workers: int = 0) -> FastAPI:
    """Build the app around an open Studio. ``workers`` > 0 starts embedded job workers."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = EmbeddedWorkers(studio, workers) if workers > 0 else None
        if pool:
            pool.start()
        try:
            yield
        finally:
            if pool:
                pool.shutdown()

    app = FastAPI(title="vistudio", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        # the vendored Swagger UI: the API explorer works offline too
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="vistudio API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.state.studio = studio
    errors.install(app)
    for module in (projects, imports, samples, splits, jobs):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(health.router)

    from vistudio.web import mount

    mount(app)

    token = studio.settings.api_token

    @app.middleware("http")
    async def auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if token and not request.url.path.startswith(OPEN_PATHS):
            header = request.headers.get("authorization", "")
            given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            given = given or request.cookies.get("vistudio_token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                if request.url.path.startswith("/api/") or request.url.path in (
                    "/metrics",
                    "/docs",
                    "/openapi.json",
                ):
                    return JSONResponse(
                        error_body("unauthorized", "missing or wrong API token (Authorization: Bearer …)"),
                        status_code=401,
                    )
                from fastapi.responses import RedirectResponse

                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return await call_next(request)

    return app
