"""Evaluate and Export pages.

Evaluate: finished experiments on the left; for the chosen one, the evaluation form (checkpoint,
subsets, batch size, device; started and reset through the API with live progress over SSE), the
metrics, the confusion matrix (a shaded table), per-class bars, and the per-image grid with
filters, sorting, pages and a detail dialog. Export: the form, live progress, the validation
result with a download link, and the list of previous exports.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.ml.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from vistudio.services import evaluation, exports, projects
from vistudio.studio import Studio
from vistudio.web.pages._common import RowId, error_fragment, error_page, hidden_section, is_htmx, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE_SIZE = 60
Text = Annotated[str, Query(max_length=200)]
GRID_KEYS = ("subset", "correct", "true", "pred", "sort")


def _base(project: dict[str, Any]) -> str:
    return "/projects/" + quote(project["name"], safe="")


def _grid_params(subset: str, correct: str, true: str, pred: str, sort: str) -> dict[str, str]:
    return {"subset": subset, "correct": correct, "true": true, "pred": pred, "sort": sort}


def _grid_context(
    studio: Studio, project: dict[str, Any], experiment: str, params: dict[str, str], page: int
) -> dict[str, Any]:
    """The per-image grid for the filters in ``params`` (raises InvalidInput for bad ones)."""
    if params["correct"] not in ("", "yes", "no"):
        raise InvalidInput("the correctness filter is 'yes', 'no' or empty")
    total_pages = 1
    page = max(1, page)
    result = evaluation.list_results(
        studio,
        project=project["id"],
        experiment=experiment,
        subset=params["subset"] or None,
        correct=None if not params["correct"] else params["correct"] == "yes",
        true=params["true"] or None,
        pred=params["pred"] or None,
        sort=params["sort"] or None,
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    total_pages = max(1, -(-result["total"] // PAGE_SIZE))
    kept = {k: v for k, v in params.items() if v}
    grid_url = f"{_base(project)}/evaluate/{quote(experiment, safe='')}/grid"

    def page_url(n: int) -> str:
        return grid_url + "?" + urlencode({**kept, "page": n})

    return {
        "items": result["items"],
        "total": result["total"],
        "page": page,
        "pages": total_pages,
        "first": (page - 1) * PAGE_SIZE + 1 if result["items"] else 0,
        "last": (page - 1) * PAGE_SIZE + len(result["items"]),
        "prev_url": page_url(page - 1) if page > 1 else None,
        "next_url": page_url(page + 1) if page < total_pages else None,
        "params": params,
        "filtered": any(params[k] for k in GRID_KEYS if k != "sort"),
        "grid_url": grid_url,
    }


def _heat(cm: list[list[int]]) -> list[list[dict[str, Any]]]:
    """Cells of the confusion table: count, share of its row, and an rgba shade (blue diagonal,
    red mistakes, any non-zero cell tinted so that a few mistakes still stand out)."""
    rows = []
    for i, row in enumerate(cm):
        total = sum(row) or 1
        cells = []
        for j, v in enumerate(row):
            frac = v / total
            alpha = 0.0 if not v else 0.1 + 0.85 * frac**0.5
            colour = "37, 99, 235" if i == j else "220, 38, 38"
            cells.append(
                {"count": v, "share": frac, "bg": f"rgba({colour}, {alpha:.3f})", "dark": alpha > 0.55}
            )
        rows.append(cells)
    return rows


def _chart(ev: dict[str, Any]) -> dict[str, Any]:
    per = ev["metrics"].get("per_class", [])
    return {
        "labels": [c["class"] for c in per],
        "datasets": [
            {"label": "precision", "data": [round(c["precision"], 4) for c in per]},
            {"label": "recall", "data": [round(c["recall"], 4) for c in per]},
            {"label": "F1", "data": [round(c["f1"], 4) for c in per]},
        ],
    }


def _panel_context(
    studio: Studio, project: dict[str, Any], experiment: dict[str, Any], params: dict[str, str], page: int
) -> dict[str, Any]:
    ev = evaluation.find_evaluation(studio, project=project["id"], experiment=experiment["id"])
    ctx: dict[str, Any] = {"project": project, "exp": experiment, "ev": ev, "base": _base(project)}
    if ev and ev["status"] == "succeeded":
        ctx["heat"] = _heat(ev["confusion_matrix"])
        ctx["chart"] = _chart(ev)
        try:
            ctx["grid"] = _grid_context(studio, project, experiment["name"], params, page)
        except VistudioError as exc:
            ctx["grid_error"] = exc.message
            ctx["grid"] = _grid_context(
                studio, project, experiment["name"], _grid_params("", "", "", "", ""), 1
            )
    return ctx


def _pick(items: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    if not items:
        return None
    if not wanted:
        return items[0]
    return next((e for e in items if e["name"] == wanted or str(e["id"]) == wanted), None)


@router.get("/projects/{name}/evaluate", response_class=HTMLResponse)
def evaluate_page(
    request: Request,
    studio: StudioDep,
    name: str,
    experiment: Text = "",
    subset: Text = "",
    correct: Text = "",
    true: Text = "",
    pred: Text = "",
    sort: Text = "",
    page: Annotated[int, Query(ge=1, le=10**9)] = 1,
) -> Response:
    try:
        project = projects.get_project(studio, name)
        finished = exports.finished_experiments(studio, project["id"])
    except VistudioError as exc:
        return error_page(request, exc)
    if (missing := hidden_section(request, project, "evaluate")) is not None:
        return missing
    chosen = _pick(finished, experiment)
    ctx: dict[str, Any] = {
        "project": project,
        "tab": "evaluate",
        "nav": "projects",
        "experiments": finished,
        "chosen": chosen,
        "wanted": experiment,
        "summaries": evaluation.evaluation_summaries(studio, [e["id"] for e in finished]),
        "base": _base(project),
    }
    if chosen is None and experiment:
        ctx["not_ready"] = _not_ready(studio, project, experiment)
    if chosen is not None:
        ctx["checkpoints"] = exports.checkpoints_of(studio, chosen["id"])
        ctx.update(
            _panel_context(studio, project, chosen, _grid_params(subset, correct, true, pred, sort), page)
        )
    return render(request, "evaluate.html", ctx)


def _not_ready(studio: Studio, project: dict[str, Any], experiment: str) -> str:
    """Why an experiment named in the URL is not in the list of finished ones."""
    try:
        with studio.sessions() as s:
            _, exp = exports.resolve(s, project["id"], experiment)
            status = exp.status
    except VistudioError as exc:
        return exc.message
    if status in exports.ACTIVE_EXPERIMENT:
        return f"Experiment {experiment} is {status}: it can be evaluated once its training has finished."
    return f"Experiment {experiment} has no checkpoint to evaluate."


@router.get("/projects/{name}/evaluate/{experiment}/panel", response_class=HTMLResponse)
def evaluate_panel(request: Request, studio: StudioDep, name: str, experiment: str) -> Response:
    """The results area (after an evaluation finished or was reset)."""
    try:
        project = projects.get_project(studio, name)
        chosen = _pick(exports.finished_experiments(studio, project["id"]), experiment)
        if chosen is None:
            raise InvalidInput(_not_ready(studio, project, experiment))
        ctx = _panel_context(studio, project, chosen, _grid_params("", "", "", "", ""), 1)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "evaluate_panel.html", ctx)


@router.get("/projects/{name}/evaluate/{experiment}/grid", response_class=HTMLResponse)
def evaluate_grid(
    request: Request,
    studio: StudioDep,
    name: str,
    experiment: str,
    subset: Text = "",
    correct: Text = "",
    true: Text = "",
    pred: Text = "",
    sort: Text = "",
    page: Annotated[int, Query(ge=1, le=10**9)] = 1,
) -> Response:
    params = _grid_params(subset, correct, true, pred, sort)
    try:
        project = projects.get_project(studio, name)
        ev = evaluation.get_evaluation(studio, project=project["id"], experiment=experiment)
        grid = _grid_context(studio, project, experiment, params, page)
    except VistudioError as exc:
        return error_fragment(request, exc)
    kept = {k: v for k, v in params.items() if v}
    page_url = f"{_base(project)}/evaluate?" + urlencode({"experiment": experiment, **kept, "page": page})
    headers = {"HX-Push-Url": page_url} if is_htmx(request) else None
    return render(
        request,
        "evaluate_grid.html",
        {"project": project, "ev": ev, "grid": grid, "base": _base(project)},
        headers=headers,
    )


@router.get("/projects/{name}/evaluate/{experiment}/results/{sample_id}", response_class=HTMLResponse)
def evaluate_detail(
    request: Request, studio: StudioDep, name: str, experiment: str, sample_id: RowId
) -> Response:
    try:
        project = projects.get_project(studio, name)
        result = evaluation.get_result(
            studio, project=project["id"], experiment=experiment, sample_id=sample_id
        )
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "evaluate_detail.html", {"project": project, "r": result, "base": _base(project)})


# --- export -----------------------------------------------------------------------------------------------


@router.get("/projects/{name}/export", response_class=HTMLResponse)
def export_page(request: Request, studio: StudioDep, name: str, experiment: Text = "") -> Response:
    try:
        project = projects.get_project(studio, name)
        finished = exports.finished_experiments(studio, project["id"])
        listed = exports.list_exports(studio, project=project["id"], limit=100)
    except VistudioError as exc:
        return error_page(request, exc)
    if (missing := hidden_section(request, project, "export")) is not None:
        return missing
    chosen = _pick(finished, experiment) or (finished[0] if finished else None)
    return render(
        request,
        "export.html",
        {
            "project": project,
            "tab": "export",
            "nav": "projects",
            "experiments": finished,
            "chosen": chosen,
            "checkpoints": exports.checkpoints_of(studio, chosen["id"]) if chosen else [],
            "exports": listed,
            "opset": {"default": DEFAULT_OPSET, "min": MIN_OPSET, "max": MAX_OPSET},
            "base": _base(project),
        },
    )


@router.get("/projects/{name}/export/checkpoints", response_class=HTMLResponse)
def export_checkpoints(request: Request, studio: StudioDep, name: str, experiment: Text = "") -> Response:
    """The checkpoint options of an experiment (the form swaps them in when the experiment changes)."""
    try:
        project = projects.get_project(studio, name)
        chosen = _pick(exports.finished_experiments(studio, project["id"]), experiment)
        ckpts = exports.checkpoints_of(studio, chosen["id"]) if chosen else []
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "export_checkpoints.html", {"checkpoints": ckpts})


@router.get("/projects/{name}/export/list", response_class=HTMLResponse)
def export_list(request: Request, studio: StudioDep, name: str) -> Response:
    try:
        project = projects.get_project(studio, name)
        listed = exports.list_exports(studio, project=project["id"], limit=100)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request, "export_list.html", {"project": project, "exports": listed, "base": _base(project)}
    )


@router.get("/projects/{name}/export/{export_id}", response_class=HTMLResponse)
def export_result(request: Request, studio: StudioDep, name: str, export_id: RowId) -> Response:
    try:
        e = exports.get_export(studio, export_id, project=name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "export_result.html", {"e": e})


@router.post("/projects/{name}/export/{export_id}/delete", response_class=HTMLResponse)
def export_delete(request: Request, studio: StudioDep, name: str, export_id: RowId) -> Response:
    try:
        project = projects.get_project(studio, name)
        exports.delete_export(studio, export_id, project=project["id"])
        listed = exports.list_exports(studio, project=project["id"], limit=100)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request, "export_list.html", {"project": project, "exports": listed, "base": _base(project)}
    )
