"""Settings page: every setting with its value and source; run-time ones editable, one form each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.services import settings as service
from vistudio.studio import Studio
from vistudio.web.pages._common import render

router = APIRouter(tags=["web"], include_in_schema=False)
Key = Annotated[str, PathParam(max_length=100)]
Value = Annotated[str, Form(max_length=20_000)]


def _groups(data: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in data["items"]:
        groups.setdefault(item["group"], []).append(item)
    return list(groups.items())


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, studio: StudioDep) -> Response:
    data = service.list_settings(studio)
    return render(
        request, "settings.html", {"groups": _groups(data), "weights": data["weights"], "nav": "settings"}
    )


def _row(
    request: Request, studio: Studio, key: str, *, saved: str = "", error: VistudioError | None = None
) -> Response:
    data = service.list_settings(studio)
    item = next((i for i in data["items"] if i["key"] == key), None)
    if item is None:  # an unknown key: the error says which keys exist
        assert error is not None
        return render(
            request,
            "fragments/error.html",
            {"message": error.message, "code": error.code, "details": {}},
            status_code=error.status,
        )
    return render(
        request,
        "fragments/setting_row.html",
        {"s": item, "saved": saved, "error": error},
        status_code=error.status if error else 200,
    )


@router.post("/settings/{key}", response_class=HTMLResponse)
def save_setting(request: Request, studio: StudioDep, key: Key, value: Value = "") -> Response:
    """One setting saved from its form; the row comes back with the new value, or the error next
    to the control that caused it."""
    try:
        service.update_settings(studio, values={key: value})
    except VistudioError as exc:
        return _row(request, studio, key, error=exc)
    return _row(request, studio, key, saved="Saved: applies now.")


@router.post("/settings/{key}/reset", response_class=HTMLResponse)
def reset_setting(request: Request, studio: StudioDep, key: Key) -> Response:
    try:
        service.unset_setting(studio, key=key)
    except VistudioError as exc:
        return _row(request, studio, key, error=exc)
    return _row(request, studio, key, saved="Back to the default.")
