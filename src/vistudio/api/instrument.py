"""Request metrics and request ids: a pure ASGI middleware (no per-request Request object).

Each request gets an id (the client's ``X-Request-ID`` when plain, else a fresh one), returned in
the ``X-Request-ID`` response header and carried by every log line written while it runs. When the
response is done, ``vistudio_http_requests_total`` and ``vistudio_http_request_duration_seconds``
are counted under the *route template* the router matched (``/api/v1/jobs/{job_id}``), never the
raw path: an id or a hostile path cannot create a new series. Requests no route matched are
``<unmatched>``, those refused before routing (token, host, body limit) ``<unrouted>``; a client
that left before the answer is counted with status 499.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistudio.api.errors import error_body
from vistudio.telemetry import context

if TYPE_CHECKING:
    from vistudio.telemetry.metrics import Metrics

log = logging.getLogger(__name__)
HEADER = b"x-request-id"
# a method outside these is counted as OTHER: a client cannot invent label values
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Instrument:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, home: Path) -> None:
        self.app = app
        self.metrics = metrics
        self.home = home

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for k, v in scope.get("headers") or ():
            if k == HEADER:
                incoming = v.decode("latin-1")
                break
        rid = context.new_request_id(incoming)
        tokens = (
            context.request_id.set(rid),
            context.scope.set(scope),
            context.workspace.set(self.home),
        )
        status = 500
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if not response_started:
                status = 499  # the client went away before an answer (nginx's code for it)
            raise
        except Exception as exc:
            # an unhandled error: logged here, where the request's id is still known, and answered
            # with the API's envelope and the id (Starlette's own handler sits outside this
            # middleware); re-raised so the server still sees it
            log.exception("unhandled error")
            if not response_started:
                body = JSONResponse(error_body("internal", f"internal error: {type(exc).__name__}"), 500)
                await body(scope, receive, send_with_id)
            raise
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            code = str(status)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.metrics.requests.labels(method, route, code).inc()
            self.metrics.request_seconds.labels(method, route, code).observe(seconds)
            if status >= 500:
                log.error("%s %s → %d in %.3f s", method, route, status, seconds)
            context.workspace.reset(tokens[2])
            context.scope.reset(tokens[1])
            context.request_id.reset(tokens[0])


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded: one value per route), never the raw path."""
    # FastAPI ≥ 0.120 keeps included routers nested: the route in the scope has the router's own
    # path, the full template (with the include prefix, /api/v1) is the effective route's
    fastapi_scope = scope.get("fastapi")
    effective = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    path = getattr(effective, "path_format", None)
    if isinstance(path, str):
        return path
    path = getattr(scope.get("route"), "path", None)  # earlier FastAPI: routes copied with the prefix
    if isinstance(path, str):
        return path
    if "app_root_path" in scope and scope.get("endpoint") is not None:
        # a mounted app (the static files): its mount point, not the file asked for
        return str(scope.get("root_path") or "") + "/{path}"
    return "<unmatched>" if "router" in scope else "<unrouted>"
