"""Request-scoped dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from vistudio.services.users import Principal
from vistudio.studio import Studio


def get_studio(request: Request) -> Studio:
    studio: Studio = request.app.state.studio
    return studio


StudioDep = Annotated[Studio, Depends(get_studio)]


def get_principal(request: Request) -> Principal:
    from vistudio.api.access import principal_of

    return principal_of(request)


# who makes the request (services.users.Principal); routes only need it to filter lists
PrincipalDep = Annotated[Principal, Depends(get_principal)]
Offset = Annotated[int, Query(ge=0, le=2**62, description="rows to skip")]
Limit = Annotated[int, Query(ge=1, le=500, description="rows to return")]
MAX_ID = 2**63 - 1  # database integers are 64-bit
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def client_actor(request: Request) -> str:
    """Who made an edit, for the history: the web pages say so in a header; anything else is the
    API. Once users exist the user's name follows (``web:alice``, ``api:bob``)."""
    interface = "web" if request.headers.get("x-vistudio-client") == "web" else "api"
    principal = get_principal(request)
    return f"{interface}:{principal.name}" if principal.user_id else interface
