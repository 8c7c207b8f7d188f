"""Evaluate and Export pages.

Evaluate: finished experiments on the left; for the chosen one, the evaluation form (checkpoint,
subsets, batch size, device; started and reset through the API with live progress over SSE), the
metrics, the confusion matrix (a shaded table), per-class bars, and the per-image grid with
filters, sorting, pages and a detail dialog. What the results look like depends on the task
(:func:`view_for`): classification shows accuracy and top-k; tasks whose targets are objects show
the COCO statistics, per-class AP, PR and F1 curves, the confusion matrix with its background row
and column, and each image's predictions and ground truth drawn TP / FP / FN, refiltered in the
browser by a confidence slider. Export: the form (for a detector, the score threshold the file
records, by default the evaluation's best-F1 confidence), live progress, the validation result
with a download link, and the list of previous exports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, VistudioError
from vistudio.ml.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from vistudio.ml.inference.onnx_anomaly import is_anomaly_task
from vistudio.ml.inference.regression import is_regression_task
from vistudio.ml.tasks import get_task
from vistudio.services import evaluation, exports, projects
from vistudio.studio import Studio
from vistudio.web.pages import _evaluation_anomaly as anom
from vistudio.web.pages import _evaluation_regression as reg
from vistudio.web.pages import _evaluation_segmentation as seg
from vistudio.web.pages._common import RowId, error_fragment, error_page, hidden_section, is_htmx, render

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE_SIZE = 60
Text = Annotated[str, Query(max_length=200)]

ORIENTED = "oriented_detection"  # rotated boxes: DOTA metrics, corners drawn


def _base(project: dict[str, Any]) -> str:
    return "/projects/" + quote(project["name"], safe="")


def _grid_params(
    subset: str, correct: str, true: str, pred: str, sort: str, outcome: str = "", present: str = ""
) -> dict[str, str]:
    return {
        "subset": subset,
        "correct": correct,
        "true": true,
        "pred": pred,
        "sort": sort,
        "outcome": outcome,
        "present": present,
    }


def _only(params: dict[str, str], keys: tuple[str, ...], what: str) -> None:
    """Refuse the grid filters of another task's results."""
    other = [k for k, v in params.items() if v and k not in keys]
    if other:
        raise InvalidInput(f"the {', '.join(other)} filters do not apply to {what} results")


def _classification_filters(params: dict[str, str]) -> dict[str, Any]:
    _only(params, CLASSIFICATION_VIEW.keys, "classification")
    if params["correct"] not in ("", "yes", "no"):
        raise InvalidInput("the correctness filter is 'yes', 'no' or empty")
    return {
        "correct": None if not params["correct"] else params["correct"] == "yes",
        "true": params["true"] or None,
        "pred": params["pred"] or None,
    }


def _box_filters(params: dict[str, str]) -> dict[str, Any]:
    _only(params, BOX_VIEW.keys, "detection")
    if params["outcome"] not in ("", *BOX_OUTCOMES):
        raise InvalidInput(f"the outcome filter is one of {', '.join(BOX_OUTCOMES)} or empty")
    if params["sort"] not in ("", *BOX_SORTS):
        raise InvalidInput(f"sort by one of {', '.join(BOX_SORTS)} or by image")
    return {"outcome": params["outcome"] or None}


BOX_OUTCOMES = {"tp": "with a true positive", "fp": "with a false positive", "fn": "with a missed object"}
BOX_SORTS = {"fn": "most missed first", "fp": "most false positives first", "ap": "lowest AP first"}


def _same(sort: str) -> str:
    return sort


def _plain_sort(sort: str) -> str | None:
    return sort or None


@dataclass(frozen=True)
class View:
    """The templates and grid filters of a task's results."""

    panel: str
    grid: str
    detail: str
    keys: tuple[str, ...]  # the grid's query keys (sort included)
    filters: Callable[[dict[str, str]], dict[str, Any]]
    batch_size: int  # the form's default
    boxes: bool = False
    # the task's own script and style sheet (static/), beside the page's
    assets: tuple[str, ...] = ()
    noun: str = "class"  # what the model's outputs are, in the experiment list ("3 classes")
    # the form offers the decision threshold's criterion or a fixed one (anomaly detection)
    decision_threshold: bool = False
    # the grid's sort choices (value → words) when its template takes them from the context
    sorts: Mapping[str, str] | None = None
    # the grid's own value of the query's ``sort`` (aliases made one), and the results API's sort
    # for it (a task may sort by default: the empty value need not mean "by image")
    sort_choice: Callable[[str], str] = _same
    service_sort: Callable[[str], str | None] = _plain_sort


CLASSIFICATION_VIEW = View(
    "evaluate_panel.html",
    "evaluate_grid.html",
    "evaluate_detail.html",
    ("subset", "correct", "true", "pred", "sort"),
    _classification_filters,
    64,
)
BOX_VIEW = View(
    "evaluate_boxes_panel.html",
    "evaluate_boxes_grid.html",
    "evaluate_boxes_detail.html",
    ("subset", "outcome", "sort"),
    _box_filters,
    8,
    boxes=True,
)


SEGMENTATION_VIEW = View(
    "evaluate_seg_panel.html",
    "evaluate_seg_grid.html",
    "evaluate_seg_detail.html",
    seg.KEYS,
    seg.filters,
    8,
    assets=("evaluation_seg.js", "evaluation_seg.css"),
)


REGRESSION_VIEW = View(
    "evaluate_reg_panel.html",
    "evaluate_reg_grid.html",
    "evaluate_reg_detail.html",
    reg.KEYS,
    reg.filters,
    64,
    assets=("regression.js", "regression.css"),
    noun="target",
)


ANOMALY_VIEW = View(
    "evaluate_anom_panel.html",
    "evaluate_anom_grid.html",
    "evaluate_anom_detail.html",
    anom.KEYS,
    anom.filters,
    64,
    decision_threshold=True,
    sorts=anom.SORTS,
    sort_choice=anom.sort_choice,
    service_sort=anom.service_sort,
)


def task_masks(task: str) -> bool:
    """Whether the task's objects are masks (instance segmentation)."""
    try:
        return get_task(task).masks
    except (KeyError, TypeError):
        return False


def drawing(result: dict[str, Any]) -> dict[str, Any]:
    """What the page draws of one image's detection result, in short keys: its size; each
    prediction's box (pixels), score, class index, outcome, mask and rotated box corners (``r``,
    pixels); each object's box, class, outcome, the score of the prediction that found it, mask
    and corners."""

    def box(b: list[float]) -> list[float]:
        return [round(float(v), 2) for v in b]

    def shape(d: dict[str, Any], x: dict[str, Any]) -> dict[str, Any]:
        if x.get("mask") is not None:
            d["m"] = x["mask"]
        if x.get("points") is not None:  # a rotated box's corners
            d["r"] = [box(p) for p in x["points"]]
        return d

    preds = []
    for p in result["predictions"]:
        # the score exactly as stored: the page counts it against the same threshold as the server
        # (a rounded score equal to the threshold fell below it)
        d: dict[str, Any] = {"b": box(p["box"]), "s": float(p["score"]), "c": p["class_index"]}
        d["o"] = p.get("outcome", "fp")
        preds.append(shape(d, p))
    truths = []
    for o in result["truths"]:
        d = {"b": box(o["box"]), "c": o["class_index"], "o": o.get("outcome", "fn")}
        d["ms"] = o.get("matched_score")
        truths.append(shape(d, o))
    return {"w": result["width"], "h": result["height"], "p": preds, "t": truths}


def view_for(task: str) -> View:
    """The box view for tasks whose targets are objects, the segmentation view for tasks that
    label pixels (``dense``), the regression view for tasks that predict values, classification's
    for the others."""
    if is_regression_task(task):
        return REGRESSION_VIEW
    if is_anomaly_task(task):
        return ANOMALY_VIEW
    try:
        if get_task(task).dense:
            return SEGMENTATION_VIEW
    except (KeyError, TypeError):
        pass
    return BOX_VIEW if exports.is_detector(task) else CLASSIFICATION_VIEW


def _grid_context(
    studio: Studio, project: dict[str, Any], experiment: str, params: dict[str, str], page: int
) -> dict[str, Any]:
    """The per-image grid for the filters in ``params`` (raises InvalidInput for bad ones)."""
    view = view_for(project["task"])
    filters = view.filters(params)
    params = {**params, "sort": view.sort_choice(params["sort"])}
    total_pages = 1
    page = max(1, page)
    result = evaluation.list_results(
        studio,
        project=project["id"],
        experiment=experiment,
        subset=params["subset"] or None,
        sort=view.service_sort(params["sort"]),
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        **filters,
    )
    total_pages = max(1, -(-result["total"] // PAGE_SIZE))
    kept = {k: v for k, v in params.items() if v and k in view.keys}
    grid_url = f"{_base(project)}/evaluate/{quote(experiment, safe='')}/grid"

    def page_url(n: int) -> str:
        return grid_url + "?" + urlencode({**kept, "page": n})

    drawings = {str(item["sample_id"]): drawing(item) for item in result["items"]} if view.boxes else {}
    return {
        "drawings": drawings,
        "items": result["items"],
        "total": result["total"],
        "page": page,
        "pages": total_pages,
        "first": (page - 1) * PAGE_SIZE + 1 if result["items"] else 0,
        "last": (page - 1) * PAGE_SIZE + len(result["items"]),
        "prev_url": page_url(page - 1) if page > 1 else None,
        "next_url": page_url(page + 1) if page < total_pages else None,
        "params": params,
        "filtered": any(params[k] for k in view.keys if k != "sort"),
        "grid_url": grid_url,
        "outcomes": BOX_OUTCOMES,
        "sorts": view.sorts or (seg.SORTS if view is SEGMENTATION_VIEW else BOX_SORTS),
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


def _box_charts(ev: dict[str, Any]) -> dict[str, Any]:
    """What the box-task panel draws: per-class AP bars, PR curves, the F1-vs-confidence curve."""
    m = ev["metrics"] or {}
    per = m.get("per_class") or {}
    classes = list(ev["classes"])
    first = ("AP50 (area)", "ap50_area") if ev["task"] == ORIENTED else ("AP@[.5:.95]", "ap")
    bars = [
        {"label": first[0], "data": [per.get(c, {}).get(first[1]) for c in classes]},
        {"label": "AP50", "data": [per.get(c, {}).get("ap50") for c in classes]},
    ]
    if task_masks(ev["task"]):
        bars += [
            {"label": "mask AP", "data": [per.get(c, {}).get("mask_ap") for c in classes]},
            {"label": "mask AP50", "data": [per.get(c, {}).get("mask_ap50") for c in classes]},
        ]
    return {
        "ap": {"labels": classes, "datasets": bars},
        "pr": ev.get("pr_curves") or [],
        "f1": ev.get("f1_curve") or {},
        "threshold": ev.get("score_threshold"),
        "best": ev.get("best_f1_threshold"),
    }


def _panel_context(
    studio: Studio, project: dict[str, Any], experiment: dict[str, Any], params: dict[str, str], page: int
) -> dict[str, Any]:
    view = view_for(project["task"])
    ev = evaluation.find_evaluation(studio, project=project["id"], experiment=experiment["id"])
    ctx: dict[str, Any] = {
        "project": project,
        "exp": experiment,
        "ev": ev,
        "masks": task_masks(project["task"]),
        "oriented": project["task"] == ORIENTED,
        "base": _base(project),
        "view": view,
    }
    if ev and ev["status"] == "succeeded":
        ctx["heat"] = _heat(ev["confusion_matrix"])
        if view is SEGMENTATION_VIEW:
            ctx["seg"] = seg.panel(ev)
        elif view is REGRESSION_VIEW:
            ctx["reg"] = reg.panel(studio, project, experiment, ev)
        elif view is ANOMALY_VIEW:
            ctx["anom"] = anom.panel(ev)
        else:
            ctx["chart"] = _box_charts(ev) if view.boxes else _chart(ev)
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
    outcome: Text = "",
    present: Text = "",
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
        "view": view_for(project["task"]),
    }
    if chosen is None and experiment:
        ctx["not_ready"] = _not_ready(studio, project, experiment)
    if chosen is not None:
        ctx["checkpoints"] = exports.checkpoints_of(studio, chosen["id"])
        ctx.update(
            _panel_context(
                studio,
                project,
                chosen,
                _grid_params(subset, correct, true, pred, sort, outcome, present),
                page,
            )
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
    return render(request, ctx["view"].panel, ctx)


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
    outcome: Text = "",
    present: Text = "",
    page: Annotated[int, Query(ge=1, le=10**9)] = 1,
) -> Response:
    params = _grid_params(subset, correct, true, pred, sort, outcome, present)
    try:
        project = projects.get_project(studio, name)
        ev = evaluation.get_evaluation(studio, project=project["id"], experiment=experiment)
        grid = _grid_context(studio, project, experiment, params, page)
    except VistudioError as exc:
        return error_fragment(request, exc)
    view = view_for(project["task"])
    kept = {k: v for k, v in grid["params"].items() if v and k in view.keys}
    page_url = f"{_base(project)}/evaluate?" + urlencode({"experiment": experiment, **kept, "page": page})
    headers = {"HX-Push-Url": page_url} if is_htmx(request) else None
    return render(
        request,
        view.grid,
        {"project": project, "ev": ev, "grid": grid, "base": _base(project), "view": view},
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
    view = view_for(project["task"])
    ctx = {"project": project, "r": result, "base": _base(project)}
    if view.boxes:
        result["drawing"] = drawing(result)
        ctx["ev"] = evaluation.get_evaluation(studio, project=project["id"], experiment=experiment)
    elif view is SEGMENTATION_VIEW or view.decision_threshold:  # the masks' colours, the threshold
        ctx["ev"] = evaluation.get_evaluation(studio, project=project["id"], experiment=experiment)
    return render(request, view.detail, ctx)


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
    try:
        threshold = (
            exports.default_score_threshold(studio, project=project["id"], experiment=chosen["id"])
            if chosen
            else None
        )
    except VistudioError:  # deleted meanwhile: the form says nothing about a threshold
        threshold = None
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
            "formats": exports.formats_for(project["task"]),
            "threshold": threshold,
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
