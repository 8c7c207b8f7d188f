"""Sign-in for the web UI: a user name and password once users exist (a server-side session in
an HttpOnly cookie), else the shared API token when the server has one (a cookie with the token)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vistudio.api.access import SESSION_COOKIE
from vistudio.api.deps import StudioDep
from vistudio.services import users
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
def login_form(
    request: Request, studio: StudioDep, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    context = {"next": safe_next(next), "title": "Sign in", "users": users.users_exist(studio)}
    return render(request, "login.html", context)


@router.post("/login")
def login(
    request: Request,
    studio: StudioDep,
    token: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
    username: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    target = safe_next(next)
    if users.users_exist(studio):
        secret = users.sign_in(studio, name=username, password=password)
        if secret is None:
            context = {"next": target, "users": True, "username": username}
            context["error"] = "That user name or password is not right."
            return render(request, "login.html", context, status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            secret,
            max_age=users.SESSION_DAYS * 86400,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response
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


@router.post("/logout")
def logout(request: Request, studio: StudioDep) -> Response:
    """End the web session (its row is deleted: the cookie is worthless even if kept)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        users.sign_out(studio, secret)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(COOKIE, path="/")
    return response
