"""Embedding map page: every image of a project as a point in 2-D (CLIP embeddings or an
experiment's features, projected by UMAP or PCA), drawn on a canvas by ``static/scatter.js`` (the
page's component: ``static/map.js``), coloured by class, tag or evaluation outcome, with lasso and
box selection that tags the selected images.

The page renders the controls and what is known of each map; the points themselves come from the
API (``GET /api/v1/projects/{p}/map``), and computing a map is the API's job too (``POST``, followed
over SSE).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from vistudio.api.deps import StudioDep
from vistudio.errors import VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.ml.inference.overlays import class_colour
from vistudio.ml.tasks import get_task
from vistudio.services import embedding_map, embeddings, evaluation, exports, projects, samples
from vistudio.studio import Studio
from vistudio.web.pages._common import ACTIVE_STATUSES, error_page, render

router = APIRouter(tags=["web"], include_in_schema=False)
Short = Annotated[str, Query(max_length=200)]
METHODS = {"auto": "Auto", "umap": "UMAP", "pca": "PCA"}


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def maps_features(task: str) -> bool:
    """Whether the experiments of this task have features to map: one label per image and a trained
    classifier (what ``embedding_map`` takes the features of; it refuses other experiments)."""
    try:
        spec = get_task(task)
    except (KeyError, VistudioError):
        return False
    return spec.annotation_kinds == ("label",) and spec.can_train


def _sources(
    studio: Studio, project: dict[str, Any], finished: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """The maps the project can have: its CLIP embeddings (``ready``: a complete set of them), and
    the features of each ``finished`` experiment (classification-like tasks); each with
    ``computed`` (its description) or None. Also whether the project has embeddings to search (all
    or some)."""
    # not embedding_status(): it describes the configured CLIP model, which imports open_clip (seconds)
    with studio.sessions() as s:
        searching = embeddings.search_model(s, project["id"])
    complete = bool(searching and searching[1])
    out: list[dict[str, Any]] = [
        {
            "value": "embeddings",
            "source": "embeddings",
            "experiment": "",
            "title": "CLIP embeddings",
            "computed": embedding_map.map_info(studio, project["id"], "embeddings"),
            "ready": complete,
        }
    ]
    if maps_features(project["task"]):
        for e in finished:
            out.append(
                {
                    "value": f"experiment:{e['name']}",
                    "source": "experiment",
                    "experiment": e["name"],
                    "title": f"Features of {e['name']}",
                    "computed": embedding_map.map_info(studio, project["id"], "experiment", e["id"]),
                    "ready": True,
                    "id": e["id"],
                }
            )
    return out, searching is not None


def _chosen(sources: list[dict[str, Any]], source: str, experiment: str) -> dict[str, Any]:
    """The map named in the URL, else the first one computed, else one that can be computed."""
    wanted = "embeddings" if source == "embeddings" else f"experiment:{experiment}" if experiment else ""
    for s in sources:
        if s["value"] == wanted:
            return s
    return next(
        (s for s in sources if s["computed"]),
        next((s for s in sources if s["ready"]), sources[0]),
    )


def _active_job(studio: Studio, project_id: int, chosen: dict[str, Any]) -> dict[str, Any] | None:
    """The map computation under way for the chosen map, if any (the page follows it)."""
    jobs, _ = studio.queue.list(
        kind=embedding_map.KIND, project_id=project_id, status=",".join(ACTIVE_STATUSES), limit=20
    )
    for j in jobs:
        params = j.params or {}
        if params.get("source", "embeddings") != chosen["source"]:
            continue
        if chosen["source"] == "experiment" and params.get("experiment_id") != chosen.get("id"):
            continue
        return job_dict(j)
    return None


@router.get("/projects/{name}/map", response_class=HTMLResponse)
def map_page(
    request: Request, studio: StudioDep, name: str, source: Short = "", experiment: Short = ""
) -> Response:
    try:
        project = projects.get_project(studio, name)
    except VistudioError as exc:
        return error_page(request, exc)
    finished = exports.finished_experiments(studio, project["id"])
    sources, searchable = _sources(studio, project, finished)
    chosen = _chosen(sources, source, experiment)
    # any task's evaluation colours the map (right / wrong per image), features or not
    summaries = evaluation.evaluation_summaries(studio, [e["id"] for e in finished])
    evaluated = [e["name"] for e in finished if summaries.get(e["id"], {}).get("status") == "succeeded"]
    tags = samples.tag_counts(studio, project=project["id"])
    job = _active_job(studio, project["id"], chosen)
    base = "/projects/" + quote(project["name"], safe="")
    config = {
        "project": project["name"],
        "base": base,
        "source": chosen["source"],
        "experiment": chosen["experiment"],
        "computed": bool(chosen["computed"]),
        "meta": chosen["computed"],
        "ready": bool(chosen["ready"]),
        "tags": list(tags),
        "evaluated": evaluated,
        "job": job["id"] if job else None,
        "searchable": searchable,
    }
    return render(
        request,
        "map.html",
        {
            "project": project,
            "base": base,
            "sources": sources,
            "chosen": chosen,
            "evaluated": evaluated,
            "tags": tags,
            "features": maps_features(project["task"]),
            "class_colours": [_hex(class_colour(i)) for i in range(len(project["classes"]))],
            "methods": METHODS,
            "job": job,
            "config": config,
            "tab": "map",
            "nav": "projects",
        },
    )
