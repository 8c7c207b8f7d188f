"""Train page: the experiment form, the live experiment (curves over SSE), the experiment list,
stop/delete, and the comparison of several experiments (overlaid curves, table of best metrics)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from vistudio.api.deps import StudioDep
from vistudio.errors import BadRequest, InvalidInput, VistudioError
from vistudio.ml.tasks import TaskDisplay, format_metric, get_task, lower_is_better
from vistudio.services import experiments, projects, splits
from vistudio.studio import Studio
from vistudio.web.pages._common import error_fragment, error_page, hidden_section, is_htmx, render, templates

router = APIRouter(tags=["web"], include_in_schema=False)
LISTED = 100  # experiments in the list
ExpName = Annotated[str, PathParam(min_length=1, max_length=200)]
# The form's fields: (form name, config key, kind). Checkboxes send "on" only when ticked.
NUMBERS = (
    ("epochs", "epochs", int),
    ("batch_size", "batch_size", int),
    ("lr", "lr", float),
    ("image_size", "image_size", int),
    ("weight_decay", "weight_decay", float),
    ("seed", "seed", int),
    ("patience", "patience", int),
    ("label_smoothing", "label_smoothing", float),
    ("gradient_clip", "gradient_clip", float),
    ("num_workers", "num_workers", int),
    ("devices", "devices", int),
    ("log_every_n_steps", "log_every_n_steps", int),
    # detectors (detection, instance segmentation) only: the form shows them for those tasks
    ("score_threshold", "score_threshold", float),
    ("nms_iou", "nms_iou", float),
    ("detections_per_image", "detections_per_image", int),
    ("trainable_backbone_layers", "trainable_backbone_layers", int),
)
CHOICES = ("model", "split", "optimizer", "scheduler", "precision", "device", "class_weights", "loss")
AUGMENT = ("crop", "flip", "rotate", "color")
LABELS = {
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "lr": "Learning rate",
    "image_size": "Image size",
    "weight_decay": "Weight decay",
    "seed": "Seed",
    "patience": "Patience",
    "label_smoothing": "Label smoothing",
    "gradient_clip": "Gradient clipping",
    "num_workers": "Loader workers",
    "devices": "Devices",
    "log_every_n_steps": "Log every N steps",
    "score_threshold": "Score threshold",
    "nms_iou": "NMS IoU",
    "detections_per_image": "Detections per image",
    "trainable_backbone_layers": "Trainable backbone layers",
    "pretrained": "Pretrained weights",
    "name": "Name",
}
DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "lr": 0.001,
    "image_size": 224,
    "weight_decay": 0.0001,
    "seed": 42,
    "patience": 5,
    "label_smoothing": 0.0,
    "gradient_clip": 0.0,
    "num_workers": -1,
    "devices": 1,
    "log_every_n_steps": 10,
}


def task_display(task: str) -> TaskDisplay:
    """What the train pages show of ``task``'s metrics (headline, list columns, chart series); torch-free."""
    return get_task(task).display


# the experiment list, detail and comparison read the metrics to show from the project's task
templates.env.globals["task_display"] = task_display
templates.env.filters["metric_text"] = format_metric  # {{ value | metric_text("percent") }}


def form_config(form: FormData) -> tuple[dict[str, Any], str | None]:
    """The form's fields → (training config, experiment name); bad numbers are one 400 listing each."""
    config: dict[str, Any] = {}
    errors = []
    for field, key, kind in NUMBERS:
        raw = str(form.get(field) or "").strip()
        if not raw:
            continue
        try:
            config[key] = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            errors.append({"key": key, "message": f"must be {what} (got {raw[:20]!r})"})
    if errors:
        first = errors[0]
        raise BadRequest(
            f"invalid training config: {first['key']}: {first['message']}", details={"errors": errors}
        )
    for key in CHOICES:
        raw = str(form.get(key) or "").strip()
        if raw:
            config[key] = raw
    # a checkbox ("on": ImageNet weights) for classifiers; a choice of weights for detectors
    pretrained = str(form.get("pretrained") or "").strip()
    config["pretrained"] = pretrained if pretrained in ("none", "backbone", "coco") else pretrained == "on"
    if isinstance(config["pretrained"], bool):  # a classifier's form (detectors choose layers instead)
        config["freeze_backbone"] = form.get("freeze_backbone") == "on"
    config["early_stopping"] = form.get("early_stopping") == "on"
    config["augment"] = {k: form.get(f"augment_{k}") == "on" for k in AUGMENT}
    name = str(form.get("name") or "").strip() or None
    return config, name


def form_fields(task: str) -> dict[str, Any]:
    """What the form of ``task`` shows: its models, its defaults, whether it trains a detector
    (score threshold, NMS IoU, detections per image, trainable backbone layers, a choice of
    pretrained weights), the task's own keys (``config_keys``: label smoothing and class weights
    for classifiers, the loss for regression), the default augmentation and the metric early
    stopping watches."""
    from typing import get_args

    from vistudio.ml.tasks import get_training

    task_cls = get_training(task)
    fields = task_cls.config_model.model_fields
    defaults = {**DEFAULTS, **{key: fields[key].default for _, key, _ in NUMBERS if key in fields}}
    models = experiments.model_catalog(task)["items"]
    return {
        "models": models,
        "frozen": [m["name"] for m in models if _frozen_default(task_cls.config_model, m["name"])],
        "defaults": defaults,
        "config_keys": sorted(fields),
        "augment": task_cls.config_model().augment.model_dump(),
        "losses": list(get_args(fields["loss"].annotation)) if "loss" in fields else [],
        "detector": "score_threshold" in fields,
        "monitor": task_cls.default_monitor,
        "monitor_title": task_display(task).title(task_cls.default_monitor),
    }


def _frozen_default(config_model: type[Any], model: str) -> bool:
    """Whether the config trains ``model``'s new head only unless told otherwise (DINOv3: yes), so
    that the form's box starts as the CLI and the API would."""
    try:
        return bool(config_model.model_validate({"model": model}).freeze_backbone)
    except ValueError:  # a model this config refuses: the form's own check says why
        return False


def _context(studio: Studio, name: str) -> dict[str, Any]:
    project = projects.get_project(studio, name)
    return {
        "project": project,
        "splits": splits.list_splits(studio, project=project["id"])["items"],
        "tab": "train",
        "nav": "projects",
    }


def _detail(studio: Studio, project: str, experiment: str | int) -> dict[str, Any]:
    exp = experiments.get_experiment(studio, project=project, experiment=experiment)
    series = experiments.experiment_metrics(studio, project=project, experiment=exp["id"])["series"]
    return {"exp": exp, "series": series, "clock": experiments.clock_text, "speed": experiments.speed_text}


def _listing(studio: Studio, project: str) -> dict[str, Any]:
    out = experiments.list_experiments(studio, project=project, limit=LISTED)
    return {"experiments": out["items"], "total": out["total"]}


@router.get("/projects/{name}/train", response_class=HTMLResponse)
def train_page(
    request: Request, studio: StudioDep, name: str, experiment: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    try:
        ctx = _context(studio, name)
        if (missing := hidden_section(request, ctx["project"], "train")) is not None:
            return missing
        listing = _listing(studio, name)
        chosen: str | int | None = experiment or None
        if chosen is None and listing["experiments"]:
            active = [e for e in listing["experiments"] if e["status"] in experiments.ACTIVE]
            chosen = (active or listing["experiments"])[0]["id"]
        detail = _detail(studio, name, chosen) if chosen is not None else None
    except VistudioError as exc:
        return error_page(request, exc)
    return render(
        request,
        "train.html",
        {
            **ctx,
            **listing,
            "detail": detail,
            **form_fields(ctx["project"]["task"]),
        },
    )


@router.post("/projects/{name}/train/start", response_class=HTMLResponse)
async def start(request: Request, studio: StudioDep, name: str) -> Response:
    form = await request.form()
    try:
        config, exp_name = form_config(form)
        started = await run_in_threadpool(
            experiments.start_experiment, studio, project=name, config=config, name=exp_name
        )
        detail = await run_in_threadpool(_detail, studio, name, started["experiment"]["id"])
        listing = await run_in_threadpool(_listing, studio, name)
        project = await run_in_threadpool(projects.get_project, studio, name)
    except VistudioError as exc:
        errors = (exc.details or {}).get("errors") or []
        return render(
            request,
            "fragments/train_errors.html",
            {"message": exc.message, "code": exc.code, "errors": errors, "labels": LABELS},
            status_code=exc.status,
            headers={"HX-Retarget": "#train-errors", "HX-Reswap": "innerHTML"},
        )
    return render(
        request,
        "fragments/train_detail.html",
        {**detail, **listing, "project": project, "oob_list": True},
        headers={"HX-Trigger": "training-started"},
    )


@router.get("/projects/{name}/train/warnings", response_class=HTMLResponse)
def config_warnings(
    request: Request,
    studio: StudioDep,
    name: str,
    model: Annotated[str, Query(max_length=64)] = "",
    image_size: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The form's live warnings (an image size too small for the model) before anything starts."""
    try:
        task = projects.get_project(studio, name)["task"]
    except VistudioError as exc:
        return error_fragment(request, exc)
    raw: dict[str, Any] = {"model": model} if model else {}
    if image_size.strip().isdigit():
        raw["image_size"] = int(image_size.strip())
    # a value the form cannot submit is the start button's error to report, not a warning
    warnings = experiments.experiment_warnings(task, raw)
    return render(request, "fragments/train_warnings.html", {"warnings": warnings})


@router.get("/projects/{name}/train/list", response_class=HTMLResponse)
def experiment_list(request: Request, studio: StudioDep, name: str) -> Response:
    try:
        listing = _listing(studio, name)
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/train_list.html", {**listing, "project": project})


@router.get("/projects/{name}/train/experiments/{exp}", response_class=HTMLResponse)
def experiment_detail(request: Request, studio: StudioDep, name: str, exp: ExpName) -> Response:
    try:
        detail = _detail(studio, name, exp)
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    if not is_htmx(request):
        return RedirectResponse(f"/projects/{name}/train?experiment={exp}", status_code=303)
    return render(request, "fragments/train_detail.html", {**detail, "project": project})


@router.post("/projects/{name}/train/experiments/{exp}/stop", response_class=HTMLResponse)
def stop(request: Request, studio: StudioDep, name: str, exp: ExpName) -> Response:
    try:
        experiments.stop_experiment(studio, project=name, experiment=exp)
        detail = _detail(studio, name, exp)
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/train_detail.html", {**detail, "project": project})


@router.post("/projects/{name}/train/experiments/{exp}/resume", response_class=HTMLResponse)
async def resume(request: Request, studio: StudioDep, name: str, exp: ExpName) -> Response:
    """Continue from the last checkpoint; the form's ``epochs`` (the new total) is optional."""
    form = await request.form()
    errors = {"HX-Retarget": "#resume-errors", "HX-Reswap": "innerHTML"}
    raw = str(form.get("epochs") or "").strip()
    try:
        if raw and not raw.isdigit():
            raise BadRequest(f"epochs must be a whole number (got {raw[:20]!r})")
        epochs = int(raw) if raw else None
        await run_in_threadpool(
            experiments.resume_experiment, studio, project=name, experiment=exp, epochs=epochs
        )
        detail = await run_in_threadpool(_detail, studio, name, exp)
        listing = await run_in_threadpool(_listing, studio, name)
        project = await run_in_threadpool(projects.get_project, studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc, headers=errors)
    return render(
        request,
        "fragments/train_detail.html",
        {**detail, **listing, "project": project, "oob_list": True},
        headers={"HX-Trigger": "training-started"},
    )


@router.post("/projects/{name}/train/experiments/{exp}/delete")
def delete(request: Request, studio: StudioDep, name: str, exp: ExpName) -> Response:
    try:
        experiments.delete_experiment(studio, project=name, experiment=exp)
    except VistudioError as exc:
        return error_fragment(request, exc)
    target = f"/projects/{name}/train"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/projects/{name}/train/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    studio: StudioDep,
    name: str,
    exp: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006 - FastAPI copies defaults
) -> Response:
    try:
        ctx = _context(studio, name)
        picked = [e for e in exp if e]
        if len(picked) < 2:
            raise InvalidInput("tick two or more experiments to compare")
        cmp = experiments.compare_experiments(studio, project=name, experiments=picked)
    except VistudioError as exc:
        return error_page(request, exc)
    display = task_display(ctx["project"]["task"])
    # the task's summary metrics first (the first four charted), then the others it titles (the
    # rest of its headline, its loss components) in its order, then any other one recorded
    known = [*display.summary, *(m.key for m in display.headline), *dict(display.titles)]
    shown = list(dict.fromkeys(m for m in known if m in cmp["series"]))
    shown += [m for m in cmp["metrics"] if m not in shown]
    best: dict[str, float] = {}
    for m in shown:
        values = [row["best"][m] for row in cmp["table"] if m in row["best"]]
        if values:
            best[m] = min(values) if lower_is_better(m) else max(values)
    return render(
        request,
        "train_compare.html",
        {
            **ctx,
            "cmp": cmp,
            "shown": shown,
            "charted": shown[:4],
            "best": best,
            "titles": {m: display.title(m) for m in shown},
            # losses on a log scale, scores (accuracy, mAP) on a 0-100 % one
            "unit": {m: not lower_is_better(m) for m in shown},
        },
    )
