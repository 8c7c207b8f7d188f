"""The caller's API tokens: create (the secret is shown once), list, revoke.

A token made by a request signed with a token (``Authorization: Bearer``) expires no later than
that token; a web session and the CLI make tokens with any expiry (docs/security.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vistudio.api.deps import Id, PrincipalDep, StudioDep
from vistudio.errors import InvalidInput
from vistudio.services import users

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    user: str | None = Field(default=None, max_length=100, description="admins only: another user's")
    expires_days: float | None = Field(default=None, gt=0, le=3650)


def _user(principal: users.Principal, wanted: str | None) -> str:
    if principal.user_id is None:
        raise InvalidInput("no users exist: create one with `vistudio users add NAME --role admin`")
    if wanted and wanted != principal.name:
        if not principal.is_admin:
            raise InvalidInput("only an admin can manage another user's tokens")
        return wanted
    return principal.name


@router.get("")
def list_tokens(studio: StudioDep, principal: PrincipalDep) -> dict[str, Any]:
    """The caller's tokens (an admin's: everyone's), never their secrets."""
    return users.list_tokens(studio, user=None if principal.is_admin else principal.name)


@router.post("", status_code=201)
def create_token(studio: StudioDep, principal: PrincipalDep, body: TokenCreate) -> dict[str, Any]:
    """A new token; its secret is in this answer only. Asked for with a token, it expires no later
    than that token (``expiry_capped``: true when the expiry asked for was brought down to it)."""
    name = _user(principal, body.user)
    not_after = principal.token_expires_at if principal.via == "token" else None
    return users.create_token(
        studio, user=name, expires_days=body.expires_days, actor=principal.name, not_after=not_after
    )


@router.delete("/{token_id}")
def revoke_token(studio: StudioDep, principal: PrincipalDep, token_id: Id) -> dict[str, Any]:
    """Revoke a token: refused from the very next request on."""
    owner = None if principal.is_admin else principal.user_id
    return {"token": users.revoke_token(studio, token_id=token_id, actor=principal.name, owner=owner)}
