"""A request body limit enforced while the body streams in.

FastAPI parses a multipart form (spooling its files to disk) before a route's code runs, so a
limit checked in the route comes too late: a chunked upload without ``Content-Length`` could fill
the disk first. This ASGI middleware refuses a declared ``Content-Length`` above the path's limit
at once, and stops reading a body that grows past it (413, the API's error envelope).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistudio.api.errors import error_body

SLACK = 64 * 1024  # multipart boundaries and the form's other fields


class BodyLimit:
    """``limit_for(path) -> (bytes, setting name)``: the largest body a request to ``path`` may send."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, str]]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope["path"])
        limit += SLACK
        message = f"request body larger than {limit - SLACK} bytes (setting {setting})"
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse(error_body("too_large", message), status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg: dict[str, Any] = dict(await receive())
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, detail=message)
            return msg

        await self.app(scope, limited, send)
