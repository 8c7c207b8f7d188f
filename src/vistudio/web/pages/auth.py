"""Sign-in for the web UI when the server has an API token: a form that sets the token cookie."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.web.pages._common import render

router = APIRouter(tags=["web"], include_in_schema=False)
COOKIE = "vistudio_token"


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``/``: never an off-site redirect."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(c in value for c in ("\\", "\r", "\n", "\t", "\x00")):
        return "/"
    return value


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "title": "Sign in"})


@router.post("/login")
def login(
    request: Request,
    studio: StudioDep,
    token: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    expected = studio.settings.api_token
    if expected and not hmac.compare_digest(token.encode(), expected.encode()):
        return render(
            request, "login.html", {"next": target, "error": "That token is not right."}, status_code=401
        )
    response = RedirectResponse(target, status_code=303)
    if expected:
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response
