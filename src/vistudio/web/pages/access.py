"""The Access page: users, API tokens and the audit log (docs/security.md).

Everyone signed in sees their own tokens, makes one (its secret shown on this answer only) and
revokes one. Admins also see every user and every token, add and remove users, and read the most
recent admin actions. With no users yet (local mode) the page offers to create the first admin.
Plain HTML forms (each carries the session's CSRF token); a form that fails comes back with the
error next to it and what was typed kept, never the password."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vistudio.api.deps import PrincipalDep, StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import users
from vistudio.studio import Studio
from vistudio.web.pages._common import render

router = APIRouter(tags=["web"], include_in_schema=False)
AUDIT_SHOWN = 50
Name = Annotated[str, Form(max_length=100)]


def _page(
    request: Request,
    studio: Studio,
    principal: users.Principal,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    local = principal.user_id is None
    admin = principal.is_admin and not local
    context: dict[str, Any] = {
        "nav": "access",
        "title": "Access",
        "local": local,
        "shared_token": bool(studio.settings.api_token),
        "admin": admin,
        "me": principal,
        "roles": users.ROLES,
        "users": users.list_users(studio)["items"] if admin else [],
        "tokens": [] if local else users.list_tokens(studio, user=None if admin else principal.name)["items"],
        "audit": users.list_audit(studio, limit=AUDIT_SHOWN) if admin else {"items": [], "total": 0},
        "done": _done_text(request),
        "errors": {},
        "form": {},
        "new_token": None,
    }
    context.update(extra)
    return render(request, "access.html", context, status_code=status_code)


# what the page says after a change (Post/Redirect/Get): a fixed sentence per action, filled with
# a value checked here, so a crafted link cannot make the page say something else
DONE = {
    "revoked": "Token {} revoked.",
    "added": "User {} added.",
    "removed": "User {} removed.",
    "role": "User {}'s role changed.",
}


def _done(action: str, what: str | int) -> Response:
    return RedirectResponse(f"/access?done={action}&what={quote(str(what))}", status_code=303)


def _done_text(request: Request) -> str:
    template = DONE.get(request.query_params.get("done") or "")
    what = request.query_params.get("what") or ""
    if template is None or not users.USER_RE.match(what):  # token ids match it too
        return ""
    return template.format(what)


@router.get("/access", response_class=HTMLResponse)
def access_page(request: Request, studio: StudioDep, principal: PrincipalDep) -> Response:
    return _page(request, studio, principal)


@router.post("/access/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    studio: StudioDep,
    principal: PrincipalDep,
    expires_days: Annotated[str, Form(max_length=20)] = "",
    user: Name = "",
) -> Response:
    """A token for the caller (an admin: for any user). The answer is the page itself with the
    secret in it: shown once, never stored."""
    form = {"expires_days": expires_days, "user": user}
    try:
        if principal.user_id is None:
            raise InvalidInput("no users exist yet: create the first admin below, then sign in")
        days = None
        if expires_days.strip():
            try:
                days = float(expires_days)
            except ValueError:
                raise InvalidInput("expiry: a number of days, 1 to 3650, or empty for never") from None
        owner = principal.name
        if user.strip() and user.strip() != principal.name:
            if not principal.is_admin:
                raise InvalidInput("only an admin can make a token for another user")
            owner = user.strip()
        not_after = principal.token_expires_at if principal.via == "token" else None
        made = users.create_token(
            studio, user=owner, expires_days=days, actor=principal.name, not_after=not_after
        )
    except VistudioError as exc:
        return _page(
            request, studio, principal, status_code=exc.status, errors={"token": exc.message}, form=form
        )
    return _page(request, studio, principal, status_code=201, new_token=made)


@router.post("/access/tokens/{token_id}/revoke")
def revoke_token(
    request: Request,
    studio: StudioDep,
    principal: PrincipalDep,
    token_id: Annotated[int, PathParam(ge=1, le=2**62)],
) -> Response:
    """Revoke one of the caller's tokens (an admin: anyone's); refused from the next request on."""
    owner = None if principal.is_admin else principal.user_id
    try:
        users.revoke_token(studio, token_id=token_id, actor=principal.name, owner=owner)
    except VistudioError as exc:
        return _page(request, studio, principal, status_code=exc.status, errors={"tokens": exc.message})
    return _done("revoked", token_id)


@router.post("/access/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    studio: StudioDep,
    principal: PrincipalDep,
    name: Name = "",
    role: Annotated[str, Form(max_length=16)] = "viewer",
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Add a user (admins; in local mode the first admin, after which everyone signs in)."""
    first = principal.user_id is None
    try:
        if first and not password:
            raise InvalidInput("the first admin needs a password: it signs in on the next page")
        users.add_user(
            studio,
            name=name,
            role="admin" if first else role,
            password=password or None,
            actor=principal.name,
        )
    except VistudioError as exc:
        form = {"name": name, "role": role}
        return _page(
            request, studio, principal, status_code=exc.status, errors={"user": exc.message}, form=form
        )
    if first:  # from now on this server asks who is there
        return RedirectResponse("/login?next=/access", status_code=303)
    return _done("added", name.strip())


@router.post("/access/users/{name}/remove")
def remove_user(
    request: Request,
    studio: StudioDep,
    principal: PrincipalDep,
    name: Annotated[str, PathParam(max_length=100)],
) -> Response:
    """Remove a user: its tokens and sessions go with it; the last admin stays."""
    if name == principal.name:
        exc: VistudioError = InvalidInput("you cannot remove yourself: another admin can")
        return _page(request, studio, principal, status_code=exc.status, errors={"users": exc.message})
    try:
        users.remove_user(studio, name=name, actor=principal.name)
    except VistudioError as exc:
        return _page(request, studio, principal, status_code=exc.status, errors={"users": exc.message})
    return _done("removed", name)


@router.post("/access/users/{name}/role")
def change_role(
    request: Request,
    studio: StudioDep,
    principal: PrincipalDep,
    name: Annotated[str, PathParam(max_length=100)],
    role: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Change a user's role, from their next request on (the last admin stays one)."""
    try:
        users.set_role(studio, name=name, role=role, actor=principal.name)
    except VistudioError as exc:
        return _page(request, studio, principal, status_code=exc.status, errors={"users": exc.message})
    return _done("role", name)
