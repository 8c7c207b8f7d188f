"""Split page: ratio sliders, a previewed per-class table and chart, saving (locked) and past splits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.services import projects, splits
from vistudio.web.pages._common import error_fragment, error_page, hidden_section, render

router = APIRouter(tags=["web"], include_in_schema=False)


def _seed(value: str) -> int:
    try:
        seed = int(value.strip() or "42")
    except ValueError:
        raise InvalidInput(f"the seed must be a whole number (got {value[:20]!r})") from None
    if not 0 <= seed < 2**31:
        raise InvalidInput("the seed must be between 0 and 2147483647")
    return seed


def table(summary: dict[str, Any]) -> dict[str, Any]:
    """Rows of per-class counts per subset, totals, and the chart's datasets (one per subset)."""
    subsets = list(summary)
    classes = sorted({c for entry in summary.values() for c in entry["per_class"]})
    rows = [{"class": c, "counts": [summary[s]["per_class"].get(c, 0) for s in subsets]} for c in classes]
    for row in rows:
        row["total"] = sum(row["counts"])
    totals = [summary[s]["total"] for s in subsets]
    chart = {
        "labels": classes,
        "datasets": [{"label": s, "data": [r["counts"][i] for r in rows]} for i, s in enumerate(subsets)],
    }
    return {"subsets": subsets, "rows": rows, "totals": totals, "grand": sum(totals), "chart": chart}


@router.get("/projects/{name}/split", response_class=HTMLResponse)
def split_page(request: Request, studio: StudioDep, name: str) -> Response:
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_page(request, exc)
    if (missing := hidden_section(request, project, "split")) is not None:
        return missing
    existing = splits.list_splits(studio, project=project["id"])["items"]
    return render(
        request,
        "split.html",
        {
            "project": project,
            "splits": existing,
            "suggested": _free_name([s["name"] for s in existing]),
            "tab": "split",
            "nav": "projects",
        },
    )


def _free_name(taken: list[str]) -> str:
    if "default" not in taken:
        return "default"
    n = 2
    while f"split-{n}" in taken:
        n += 1
    return f"split-{n}"


@router.post("/projects/{name}/split/preview", response_class=HTMLResponse)
def preview(
    request: Request,
    studio: StudioDep,
    name: str,
    ratios: Annotated[str, Form(max_length=100)] = "",
    seed: Annotated[str, Form(max_length=20)] = "42",
    split_name: Annotated[str, Form(max_length=100)] = "default",
) -> Response:
    try:
        result = splits.preview_split(
            studio, project=name, ratios=ratios, seed=_seed(seed), name=split_name.strip()
        )
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request,
        "fragments/split_table.html",
        {"split": result, "t": table(result["subsets"]), "preview": True},
    )


@router.post("/projects/{name}/split/save", response_class=HTMLResponse)
def save(
    request: Request,
    studio: StudioDep,
    name: str,
    ratios: Annotated[str, Form(max_length=100)] = "",
    seed: Annotated[str, Form(max_length=20)] = "42",
    split_name: Annotated[str, Form(max_length=100)] = "default",
) -> Response:
    try:
        result = splits.create_split(
            studio, project=name, ratios=ratios, seed=_seed(seed), name=split_name.strip()
        )
        project = projects.get_project(studio, name)
        existing = splits.list_splits(studio, project=project["id"])["items"]
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request,
        "fragments/split_saved.html",
        {"split": result, "t": table(result["subsets"]), "project": project, "splits": existing},
    )


@router.get("/projects/{name}/split/{split_name}", response_class=HTMLResponse)
def split_detail(request: Request, studio: StudioDep, name: str, split_name: str) -> Response:
    try:
        result = splits.get_split(studio, project=name, name=split_name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request,
        "fragments/split_table.html",
        {"split": result, "t": table(result["subsets"]), "preview": False},
    )
