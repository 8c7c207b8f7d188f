"""API: the workspace's settings, where each value comes from, and run-time edits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from vistudio.api.deps import StudioDep
from vistudio.services import settings as settings_service

router = APIRouter(prefix="/settings", tags=["settings"])
Key = Annotated[str, PathParam(max_length=100, description="a dotted setting key, e.g. embed.model")]


class SettingsPatch(BaseModel):
    values: dict[str, Any] = Field(
        description='key → new value, e.g. {"offline": true, "import_roots": ["/data"]}',
        max_length=50,
    )


@router.get("")
def get_settings(studio: StudioDep) -> dict[str, Any]:
    """Every setting: effective value, default, source (env | workspace | default), whether editable."""
    return settings_service.list_settings(studio)


@router.patch("")
def patch_settings(studio: StudioDep, body: SettingsPatch) -> dict[str, Any]:
    """Save run-time settings in the workspace and apply them at once. 409 when the environment
    sets a key (the environment wins) or the key is read at start only; 422 for a bad value."""
    return settings_service.update_settings(studio, values=body.values)


@router.delete("/{key}")
def unset_setting(studio: StudioDep, key: Key) -> dict[str, Any]:
    """Remove the workspace's value: the environment or the default applies again."""
    return settings_service.unset_setting(studio, key=key)
