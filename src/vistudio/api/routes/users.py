"""Users (admins only) and the caller itself (``/users/me``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from vistudio.api.deps import PrincipalDep, StudioDep
from vistudio.services import users

router = APIRouter(prefix="/users", tags=["users"])


class UserCreate(BaseModel):
    name: str = Field(max_length=100)
    role: str = Field(max_length=16, description="admin | editor | viewer")
    password: str | None = Field(default=None, min_length=8, max_length=1000)


@router.get("")
def list_users(studio: StudioDep) -> dict[str, Any]:
    return users.list_users(studio)


@router.post("", status_code=201)
def add_user(studio: StudioDep, principal: PrincipalDep, body: UserCreate) -> dict[str, Any]:
    """Create a user (recorded in the audit log)."""
    return {
        "user": users.add_user(
            studio, name=body.name, role=body.role, password=body.password, actor=principal.name
        )
    }


class UserChange(BaseModel):
    role: str = Field(max_length=16, description="admin | editor | viewer")


@router.patch("/{name}")
def change_user(
    studio: StudioDep,
    principal: PrincipalDep,
    name: Annotated[str, PathParam(max_length=100)],
    body: UserChange,
) -> dict[str, Any]:
    """Change a user's role, effective from their next request (recorded in the audit log)."""
    return {"user": users.set_role(studio, name=name, role=body.role, actor=principal.name)}


@router.get("/me")
def me(principal: PrincipalDep) -> dict[str, Any]:
    """Who the caller is: ``local`` (no users exist) or a user's name, role and how it signed in."""
    return {"user": {"name": principal.name, "role": principal.role, "via": principal.via}}
