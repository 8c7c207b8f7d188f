"""The audit log of admin actions (users, tokens, shares): admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from vistudio.api.deps import Limit, Offset, StudioDep
from vistudio.services import users

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def list_audit(studio: StudioDep, offset: Offset = 0, limit: Limit = 100) -> dict[str, Any]:
    """Newest first."""
    return users.list_audit(studio, offset=offset, limit=limit)
