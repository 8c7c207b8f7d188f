"""Curation pages: likely label errors and dataset versions.

Likely label errors (``/projects/{name}/label-errors?experiment=E``): the search with an
experiment's model (a job, started and followed through the API by curation.js), then the images
whose given label is most likely wrong first; each suggestion is accepted (the image relabelled,
one undoable change) or rejected through the API, with buttons or the keyboard. Versions
(``/projects/{name}/versions``): the project's dataset versions newest first, making one, and
comparing two (samples added, removed and relabelled, per class, thumbnails of the changed ones).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import NotFound, VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.ml.tasks import get_task
from vistudio.services import experiments, exports, label_errors, projects, samples, versions
from vistudio.studio import Studio
from vistudio.web.pages._common import (
    ACTIVE_STATUSES,
    error_fragment,
    error_page,
    hidden_section,
    is_htmx,
    render,
    templates,
)

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE = 30  # rows of the label-error list per page (and per "Load more")
DIFF_THUMBS = 24  # changed samples a version comparison shows
SEARCHES_LOOKED_AT = 100  # the project's newest label-error jobs searched for this experiment's
Text = Annotated[str, Query(max_length=200)]


def finds_label_errors(task: str) -> bool:
    """Whether images of this task carry one label each that a trained model can second-guess —
    what the label-error search needs (today: classification)."""
    try:
        spec = get_task(task)
    except (KeyError, VistudioError):
        return False
    return spec.annotation_kinds == ("label",) and spec.can_train


templates.env.globals["finds_label_errors"] = finds_label_errors


def _base(project: dict[str, Any]) -> str:
    return "/projects/" + quote(project["name"], safe="")


# --- likely label errors ----------------------------------------------------------------------------


def _searches(studio: Studio, project_id: int, exp_id: int) -> dict[str, Any]:
    """The experiment's label-error jobs: the one queued or running, the last that succeeded, and
    the newest when it failed (its error is shown until a search succeeds again)."""
    jobs, _ = studio.queue.list(kind=label_errors.KIND, project_id=project_id, limit=SEARCHES_LOOKED_AT)
    mine = [job_dict(j) for j in jobs if (j.params or {}).get("experiment_id") == exp_id]
    return {
        "active": next((j for j in mine if j["status"] in ACTIVE_STATUSES), None),
        "last": next((j for j in mine if j["status"] == "succeeded"), None),
        "failed": mine[0] if mine and mine[0]["status"] in ("failed", "dead") else None,
    }


def _error_text(job: dict[str, Any] | None) -> str:
    error = (job or {}).get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "the search failed")
    return str(error or "the search failed")


def _list_urls(project: dict[str, Any], exp: dict[str, Any], decided: bool) -> dict[str, str]:
    query = {"experiment": exp["name"], **({"decided": "1"} if decided else {})}
    toggled = {"experiment": exp["name"], **({} if decided else {"decided": "1"})}
    base = _base(project) + "/label-errors"
    return {
        "rows_url": base + "/rows?" + urlencode(query),
        "body_url": base + "/body?" + urlencode(query),
        "page_url": base + "?" + urlencode(query),
        "toggle_url": base + "/body?" + urlencode(toggled),
        "toggle_page_url": base + "?" + urlencode(toggled),
    }


def _body_context(
    studio: Studio, project: dict[str, Any], exp: dict[str, Any], *, decided: bool
) -> dict[str, Any]:
    """The search's summary and the first page of its list: the flagged images nobody decided on
    yet, or with ``decided`` every flagged image (decisions shown)."""
    pid, eid = project["id"], exp["id"]
    listed = label_errors.list_label_errors(
        studio, project=pid, experiment=eid, flagged_only=True, undecided_only=not decided, limit=PAGE
    )
    other = label_errors.list_label_errors(
        studio, project=pid, experiment=eid, flagged_only=True, undecided_only=decided, limit=1
    )
    flagged, todo = (listed["total"], other["total"]) if decided else (other["total"], listed["total"])
    searches = _searches(studio, pid, eid)
    result = (searches["last"] or {}).get("result") or {}
    return {
        "items": listed["items"],
        "total": listed["total"],
        "scored": listed["scored"],
        "flagged": flagged,
        "todo": todo,
        "decided_count": flagged - todo,
        "show_decided": decided,
        "search": searches["last"],
        "result": result,
        "active": searches["active"],
        "failed": searches["failed"],
        "failed_text": _error_text(searches["failed"]),
        **_list_urls(project, exp, decided),
    }


def _experiment(studio: Studio, project: dict[str, Any], wanted: str, finished: list[dict[str, Any]]) -> Any:
    """The experiment the page is about: the one named (NotFound when there is none), else the
    newest finished one; None when the project has none yet."""
    if wanted:
        return experiments.get_experiment(studio, project=project["id"], experiment=wanted)
    if finished:
        return experiments.get_experiment(studio, project=project["id"], experiment=finished[0]["id"])
    return None


@router.get("/projects/{name}/label-errors", response_class=HTMLResponse)
def label_errors_page(
    request: Request, studio: StudioDep, name: str, experiment: Text = "", decided: Text = ""
) -> Response:
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_page(request, exc)
    if (missing := hidden_section(request, project, "evaluate")) is not None:
        return missing
    ctx: dict[str, Any] = {"project": project, "tab": "evaluate", "nav": "projects", "base": _base(project)}
    if not finds_label_errors(project["task"]):
        return render(request, "label_errors.html", {**ctx, "unsupported": get_task(project["task"]).title})
    try:
        finished = exports.finished_experiments(studio, project["id"])
        exp = _experiment(studio, project, experiment, finished)
    except VistudioError as exc:
        return error_page(request, exc)
    ctx.update({"experiments": finished, "exp": exp})
    if exp is None:
        return render(request, "label_errors.html", ctx)
    if not any(e["id"] == exp["id"] for e in finished):
        ctx["not_ready"] = (
            f"Experiment {exp['name']} is {exp['status']}: its model can look for label errors once its "
            "training has finished."
            if exp["status"] in exports.ACTIVE_EXPERIMENT
            else f"Experiment {exp['name']} has no checkpoint to look for label errors with."
        )
        return render(request, "label_errors.html", ctx)
    ctx["checkpoints"] = exports.checkpoints_of(studio, exp["id"])
    ctx.update(_body_context(studio, project, exp, decided=decided == "1"))
    return render(request, "label_errors.html", ctx)


@router.get("/projects/{name}/label-errors/body", response_class=HTMLResponse)
def label_errors_body(
    request: Request, studio: StudioDep, name: str, experiment: Text = "", decided: Text = ""
) -> Response:
    """The summary and the list again (after a search, or to show or hide the decided images)."""
    try:
        project = projects.get_project(studio, name)
        exp = experiments.get_experiment(studio, project=project["id"], experiment=experiment)
        ctx = _body_context(studio, project, exp, decided=decided == "1")
    except VistudioError as exc:
        return error_fragment(request, exc)
    headers = {"HX-Push-Url": ctx["page_url"]} if is_htmx(request) else None
    return render(
        request,
        "fragments/label_errors_body.html",
        {**ctx, "project": project, "exp": exp, "base": _base(project)},
        headers=headers,
    )


@router.get("/projects/{name}/label-errors/rows", response_class=HTMLResponse)
def label_errors_rows(
    request: Request,
    studio: StudioDep,
    name: str,
    experiment: Text = "",
    decided: Text = "",
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    """More rows of the list (``offset``: the rows the page shows already)."""
    try:
        project = projects.get_project(studio, name)
        listed = label_errors.list_label_errors(
            studio,
            project=project["id"],
            experiment=experiment,
            flagged_only=True,
            undecided_only=decided != "1",
            offset=offset,
            limit=PAGE,
        )
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request,
        "fragments/label_error_rows.html",
        {"items": listed["items"], "project": project, "base": _base(project)},
        headers={"X-Total": str(listed["total"])},
    )


# --- dataset versions -------------------------------------------------------------------------------


def _version_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Versions with their three biggest classes (name, count) and how many more there are."""
    rows = []
    for v in items:
        ranked = sorted((v.get("classes") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append({**v, "top": ranked[:3], "more_classes": max(0, len(ranked) - 3)})
    return rows


def _versions_context(studio: Studio, project: dict[str, Any]) -> dict[str, Any]:
    listed = versions.list_versions(studio, project=project["id"], limit=100)
    return {"versions": _version_rows(listed["items"]), "versions_total": listed["total"]}


def _diff_context(studio: Studio, project: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """A comparison of two versions, with the samples to show: relabelled first, then added (those
    deleted since are left out: nothing to show)."""
    diff = versions.diff_versions(studio, project=project["id"], a=a, b=b)
    shown: list[dict[str, Any]] = []
    relabels = {c["sample_id"]: c for c in diff.get("changed_labels", [])}
    for kind, ids in (("relabelled", diff["changed_ids"]), ("added", diff["added_ids"])):
        for sid in ids:
            if len(shown) >= DIFF_THUMBS:
                break
            try:
                sample = samples.get_sample(studio, sid)
            except NotFound:
                continue
            shown.append(
                {
                    "id": sid,
                    "name": sample["name"],
                    "labels": sample["labels"],
                    "was": relabels[sid]["a"] if sid in relabels else None,
                    "became": relabels[sid]["b"] if sid in relabels else None,
                    "kind": kind,
                    "thumbnail_url": sample["thumbnail_url"],
                }
            )
    return {"diff": diff, "shown": shown, "same": diff["a"]["id"] == diff["b"]["id"]}


@router.get("/projects/{name}/versions", response_class=HTMLResponse)
def versions_page(request: Request, studio: StudioDep, name: str, a: Text = "", b: Text = "") -> Response:
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_page(request, exc)
    if (missing := hidden_section(request, project, "split")) is not None:
        return missing
    ctx: dict[str, Any] = {
        "project": project,
        "tab": "split",
        "nav": "projects",
        "base": _base(project),
        **_versions_context(studio, project),
    }
    listed = ctx["versions"]
    ctx["pick_a"] = a or (listed[1]["name"] if len(listed) > 1 else "")
    ctx["pick_b"] = b or (listed[0]["name"] if listed else "")
    if a and b:
        try:
            ctx.update(_diff_context(studio, project, a, b))
        except VistudioError as exc:
            ctx["diff_error"] = exc
    return render(request, "versions.html", ctx)


@router.post("/projects/{name}/versions", response_class=HTMLResponse)
def versions_create(
    request: Request,
    studio: StudioDep,
    name: str,
    version_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Make a version; the list again, with what happened (a name taken: 409 and the message)."""
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_fragment(request, exc)
    made: dict[str, Any] | None = None
    failed: VistudioError | None = None
    try:
        made = versions.create_version(studio, project=project["id"], name=version_name or None, actor="web")
    except VistudioError as exc:
        failed = exc
    ctx = {"project": project, "base": _base(project), **_versions_context(studio, project)}
    listed = ctx["versions"]
    ctx.update(
        made=made,
        create_error=failed,
        typed=version_name if failed else "",
        pick_a=listed[1]["name"] if len(listed) > 1 else "",
        pick_b=listed[0]["name"] if listed else "",
    )
    return render(request, "fragments/versions_body.html", ctx, status_code=failed.status if failed else 200)


@router.get("/projects/{name}/versions/diff", response_class=HTMLResponse)
def versions_diff(request: Request, studio: StudioDep, name: str, a: Text = "", b: Text = "") -> Response:
    try:
        project = projects.get_project(studio, name)
        ctx = _diff_context(studio, project, a, b)
    except VistudioError as exc:
        return error_fragment(request, exc)
    page_url = _base(project) + "/versions?" + urlencode({"a": a, "b": b})
    headers = {"HX-Push-Url": page_url} if is_htmx(request) else None
    return render(
        request,
        "fragments/version_diff.html",
        {**ctx, "project": project, "base": _base(project)},
        headers=headers,
    )
