"""Dataset page: the filtered thumbnail grid, the sample detail, and the import panel's report."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.ingest.readers import known_formats
from vistudio.ml.inference.regression import is_regression_task
from vistudio.ml.tasks import get_task
from vistudio.services import annotations as object_edits
from vistudio.services import edits, ingest, library, people, projects, samples, splits, targets, views
from vistudio.services import videos as video_library
from vistudio.services.views import GRID_KEYS, grid_filters
from vistudio.studio import Studio
from vistudio.web.pages._common import RowId, error_fragment, error_page, is_htmx, render, row_id
from vistudio.web.pages.people import photo_faces

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE_SIZE = 60
HISTORY_SIZE = 20  # the newest changes of a sample listed in its detail
SORTS = {
    "name": "Name",
    "taken_at": "Date taken",
    "imported_at": "Date imported",
    "bytes": "File size",
    "dup_group": "Duplicate group",
}
Text = Annotated[str, Query(max_length=200)]
FILTER_KEYS = GRID_KEYS
# annotation kinds drawn over the images (the rest are listed in the detail only)
DRAWN_KINDS = frozenset({"box", "polygon", "mask_rle", "rotated_box"})
OBJECT_SIZES = {"small": "Small (< 32² px)", "medium": "Medium (< 96² px)", "large": "Large (≥ 96² px)"}
MAX_PEOPLE = 20  # people one filter may name (as the search API takes them)
# ?person=ID, repeated: photos showing all of these people (ids, or names as the API takes them)
PersonParams = Annotated[list[Annotated[str, Field(max_length=200)]], Query(alias="person")]


def person_label(p: dict[str, Any]) -> str:
    """A person as the People pages call them: their name, or "Unnamed person #ID"."""
    return p["name"] or f"Unnamed person #{p['id']}"


def person_refs(values: list[str]) -> list[str]:
    """The people of a ``?person=`` filter: stripped, without blanks or repeats, at most 20."""
    refs = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(refs) > MAX_PEOPLE:
        raise InvalidInput(f"filter by at most {MAX_PEOPLE} people at once")
    return refs


def person_filter(studio: Studio, project: dict[str, Any], values: list[str]) -> dict[str, Any] | None:
    """What the People filter control (person-filter.js) starts from: the people chosen (``id``,
    ``label``; one the project lacks keeps its reference, labelled as unknown), how many people
    the project lists (hidden ones are not offered), where to find them. None for a project that
    has no people and cannot have any (a project whose task offers no People section)."""
    refs = list(dict.fromkeys(v.strip() for v in values if v.strip()))[:MAX_PEOPLE]
    total = people.list_people(studio, project=project["id"], limit=1)["total"]
    offered = "people" in get_task(project["task"]).sections
    if not (total or refs or offered):
        return None
    chosen = []
    for ref in refs:
        try:
            p = people.get_person(studio, project=project["id"], person=ref, limit=1)["person"]
            chosen.append({"id": str(p["id"]), "label": person_label(p)})
        except NotFound:
            chosen.append({"id": ref, "label": f"Unknown person {ref}"})
    name = quote(project["name"], safe="")
    return {
        "chosen": chosen,
        "total": total,
        "api": f"/api/v1/projects/{name}/people",
        "people_url": f"/projects/{name}/people" if offered else None,
    }


def draws_overlay(task: str) -> bool:
    """Whether a project's images get their annotations drawn over them (tasks with geometry)."""
    return bool(DRAWN_KINDS & set(get_task(task).annotation_kinds))


def draws_regions(task: str) -> bool:
    """Whether a project's drawn annotations are class regions rather than instances (a ``dense``
    task, semantic segmentation: its objects are painted into one label map): one colour per
    class, the ignored region apart, and a legend of each class's share of the image."""
    return draws_overlay(task) and get_task(task).dense


def overlay_data(task: str, sample: dict[str, Any], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """What overlay.js draws over a sample: its size, its drawable ground-truth annotations (a
    prediction, one with a score, is neither drawn nor counted), its number of objects (an
    instance segmentation object imported with its box and its mask counts once; regions are not
    objects: 0) and, for region tasks, ``"regions": True``."""
    drawn = [a for a in annotations if a["kind"] in DRAWN_KINDS and a.get("score") is None]
    regions = draws_regions(task)
    objects = get_task(task).object_kinds or tuple(DRAWN_KINDS)
    data: dict[str, Any] = {
        "w": sample["width"],
        "h": sample["height"],
        "n": 0 if regions else sum(a["kind"] in objects for a in drawn),
        "a": [{"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]} for a in drawn],
    }
    if regions:
        data["regions"] = True
    return data


REGION_KINDS = ("mask_rle", "polygon")


def _share_text(share: float) -> str:
    return "<0.1%" if 0 < share < 0.0005 else f"{share * 100:.1f}%"


def region_legend(sample: dict[str, Any], annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The detail's legend of a region task: each class's share of the image's pixels, largest
    first (``{"name", "pixels", "share", "text"}``), the ignored region's (a mask with no class)
    and the share no region covers (polygons may leave some); None without a size.

    Computed here from the stored geometry (an RLE's runs are counted, never decoded to pixels;
    ``samples.object_area`` is the object filters' area) so the legend is in the page as text,
    exact, without waiting for the browser to decode masks."""
    width, height = sample.get("width") or 0, sample.get("height") or 0
    total = float(width * height)
    if total <= 0:
        return None
    areas: dict[str, float] = {}
    ignored = 0.0
    for a in annotations:
        if a["kind"] not in REGION_KINDS or a.get("score") is not None:
            continue
        area = samples.object_area(a["kind"], a["geometry"], width, height)
        if area is None:
            continue
        if a["class"] is None:
            ignored += area
        else:
            areas[a["class"]] = areas.get(a["class"], 0.0) + area

    def row(name: str, pixels: float) -> dict[str, Any]:
        share = min(1.0, pixels / total)
        return {"name": name, "pixels": round(pixels), "share": share, "text": _share_text(share)}

    covered = sum(areas.values()) + ignored
    rest = total - covered
    return {
        "classes": [row(n, px) for n, px in sorted(areas.items(), key=lambda kv: (-kv[1], kv[0]))],
        "ignored": row("ignored", ignored) if ignored > 0 else None,
        "uncovered": row("not labelled", rest) if rest >= 0.5 and covered > 0 else None,
    }


def target_histograms(stats: dict[str, Any]) -> dict[str, Any]:
    """What the Dataset page draws of a regression project's targets (``services.targets``): each
    histogram's bars as heights in 0..100 of its tallest, and the reasons images were left out."""
    for t in stats["targets"]:
        counts = t["histogram"]["counts"]
        top = max(counts, default=0) or 1
        t["bars"] = [
            {"count": c, "height": round(100 * c / top, 2), "lo": lo, "hi": hi}
            for c, lo, hi in zip(counts, t["histogram"]["edges"], t["histogram"]["edges"][1:], strict=False)
        ]
    stats["left"] = [(stats["reasons"][k], n) for k, n in stats["left_out"].items() if n]
    return stats


def labels_editable(task: str) -> bool:
    """Whether the pages offer to edit a project's image labels: tasks whose ground truth is one
    label per image (classification, anomaly detection), not objects. Tags are for every task."""
    spec = get_task(task)
    return "label" in spec.annotation_kinds and not spec.has_objects


def selection_filter(filters: dict[str, Any]) -> dict[str, Any]:
    """The grid's filters (``grid_filters``' output) as the edit API's ``filter`` selection takes them:
    no sort or order, no empty values, dates as ISO text. The page renders it into ``#grid`` so that
    "select all matching" sends exactly what the grid shows, without parsing its query string again."""
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if key in ("sort", "order") or value is None or (key == "duplicates_only" and not value):
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _grid_context(
    studio: Studio, project: dict[str, Any], params: dict[str, str], offset: int, person: list[str]
) -> dict[str, Any]:
    overlay = draws_overlay(project["task"])
    filters = grid_filters(params)
    refs = person_refs(person)
    if refs:
        filters["person"] = refs
    page = samples.list_samples(
        studio,
        project=project["id"],
        offset=offset,
        limit=PAGE_SIZE,
        with_annotations=overlay,
        **filters,
    )
    if overlay:
        for item in page["items"]:
            item["overlay"] = overlay_data(project["task"], item, item.pop("annotations"))
    clips = video_library.keyframe_info(studio, [it["id"] for it in page["items"] if it.get("video_id")])
    for item in page["items"]:
        item["video"] = clips.get(item["id"])  # a video's tile: its poster, with a play badge
    shown = offset + len(page["items"])
    kept = {k: v for k, v in params.items() if v}
    next_url = None
    if shown < page["total"]:
        next_url = f"/projects/{quote(project['name'], safe='')}/samples?" + urlencode(
            [*kept.items(), *(("person", r) for r in refs), ("offset", shown)]
        )
    return {
        "project": project,
        "items": page["items"],
        "total": page["total"],
        "offset": offset,
        "shown": shown,
        "next_url": next_url,
        "filtered": bool(refs) or any(kept.get(k) for k in FILTER_KEYS if k not in ("sort", "order")),
        "overlay": overlay,
        "selection_filter": selection_filter(filters),
    }


def grid_params(
    label: Text = "",
    tag: Text = "",
    subset: Text = "",
    annotated: Text = "",
    taken_from: Text = "",
    taken_to: Text = "",
    duplicates: Text = "",
    q: Text = "",
    min_objects: Text = "",
    max_objects: Text = "",
    object_size: Text = "",
    sort: Text = "",
    order: Text = "",
    bbox: Text = "",
) -> dict[str, str]:
    """The grid's query string, as the filter form sends it (validated by ``views.grid_filters``)."""
    return {
        "label": label,
        "tag": tag,
        "subset": subset,
        "annotated": annotated,
        "taken_from": taken_from,
        "taken_to": taken_to,
        "duplicates": duplicates,
        "q": q,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "object_size": object_size,
        "sort": sort,
        "order": order,
        "bbox": bbox,
    }


GridParams = Annotated[dict[str, str], Depends(grid_params)]


SampleParam = Annotated[str, Query(max_length=19)]


@router.get("/projects/{name}", response_class=HTMLResponse)
def dataset_page(
    request: Request,
    studio: StudioDep,
    name: str,
    params: GridParams,
    sample: SampleParam = "",
    view: Text = "",
    person: PersonParams = [],  # noqa: B006
) -> Response:
    """The grid; ``?sample=ID`` (the detail's own address, pushed when one opens) shows that sample;
    ``?view=NAME`` a saved view's filter and sort; ``?person=ID`` (repeated) the photos showing all
    of these people."""
    try:
        project = projects.get_project(studio, name)
        if view:
            params = {
                **dict.fromkeys(params, ""),
                **views.get_view(studio, project=project["id"], name=view)["query"],
            }
    except VistudioError as exc:
        return error_fragment(request, exc) if is_htmx(request) else error_page(request, exc)
    grid_error: VistudioError | None = None
    try:
        grid = _grid_context(studio, project, params, 0, person)
    except VistudioError as exc:
        grid, grid_error = {"items": [], "total": 0, "shown": 0, "next_url": None, "filtered": True}, exc
    if is_htmx(request):
        # the filter form asks for this page's URL (so it lands in the history) and gets the grid
        if grid_error:
            # still a #grid element, so that the next filter change has something to replace
            return render(
                request,
                "fragments/grid.html",
                {**grid, "grid_error": grid_error.message},
                status_code=grid_error.status,
            )
        return render(request, "fragments/grid.html", grid)
    extra = {"library": _library_context(studio, project)} if project["task"] == library.LIBRARY_TASK else {}
    if project["task"] == library.LIBRARY_TASK:  # "On this day" and "Add to album" (web/pages/albums.py)
        from vistudio.web.pages.albums import dataset_extras

        extra.update(dataset_extras(studio, project))
    if is_regression_task(project["task"]):  # the values' statistics and histograms
        extra["targets"] = target_histograms(targets.target_statistics(studio, project=project["id"]))
    detail: dict[str, Any] = {}
    if sample:
        try:
            detail = {"detail": _sample_context(studio, project, row_id(sample, "sample"))}
        except VistudioError as exc:
            detail = {"detail_error": {"message": exc.message, "code": exc.code}}
    classes = samples.class_counts(studio, project=project["id"])
    subsets = [
        (f"{s['name']}:{sub}", f"{s['name']} · {sub}", n["total"])
        for s in splits.list_splits(studio, project=project["id"])["items"]
        for sub, n in s["subsets"].items()
    ]
    return render(
        request,
        "dataset.html",
        {
            **grid,
            "grid_error": grid_error.message if grid_error else None,
            "project": project,
            "classes": classes,
            "overlay": draws_overlay(project["task"]),
            "regions": draws_regions(project["task"]),
            "object_filters": get_task(project["task"]).has_objects,
            "object_sizes": OBJECT_SIZES,
            "tags": samples.tag_counts(studio, project=project["id"]),
            "labels_editable": labels_editable(project["task"]),
            "views": views.list_views(studio, project=project["id"])["items"],
            "view": view,
            "subsets": subsets,
            "params": params,
            "person_filter": person_filter(studio, project, person),
            "sorts": SORTS,
            "formats": known_formats(),
            "import_roots": [str(r) for r in studio.settings.import_roots],
            "tab": "dataset",
            "nav": "projects",
            **extra,
            **detail,
        },
    )


def _library_context(studio: Studio, project: dict[str, Any]) -> dict[str, Any]:
    """The library panel: the folders, the last scan, and the scan to follow if one is running."""
    scan = library.latest_scan(studio, project=project["id"])
    active = scan["job"] if scan and scan["job"]["status"] in ("queued", "running") else None
    return {
        "import_roots": [str(r) for r in studio.settings.import_roots],
        "roots": library.list_roots(studio, project=project["id"])["items"],
        "scan": scan,
        "active": {"id": active["id"], "status": active["status"]} if active else None,
    }


@router.get("/projects/{name}/library", response_class=HTMLResponse)
def library_panel(request: Request, studio: StudioDep, name: str) -> Response:
    """The library panel's body (folders and last scan), swapped in after each action."""
    try:
        project = projects.get_project(studio, name)
        ctx = _library_context(studio, project)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/library_panel.html", {"project": project, **ctx})


@router.get("/projects/{name}/samples", response_class=HTMLResponse)
def grid_page(
    request: Request,
    studio: StudioDep,
    name: str,
    params: GridParams,
    offset: Annotated[str, Query(max_length=12)] = "0",
    person: PersonParams = [],  # noqa: B006
) -> Response:
    """One page of tiles (the next 60), for the grid's infinite scroll."""
    try:
        if not (offset.isascii() and offset.isdigit() and len(offset) < 19):
            raise InvalidInput("offset must be a whole number")
        project = projects.get_project(studio, name)
        ctx = _grid_context(studio, project, params, int(offset), person)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/tiles.html", ctx)


def _sample_context(studio: Studio, project: dict[str, Any], sample_id: int) -> dict[str, Any]:
    sample = samples.get_sample(studio, sample_id)
    if sample["project_id"] != project["id"]:
        raise NotFound(f"sample {sample_id} is not in project {project['name']!r}")
    overlay = draws_overlay(project["task"])
    if overlay:
        sample["overlay"] = overlay_data(project["task"], sample, sample["annotations"])
    if draws_regions(project["task"]):
        sample["legend"] = region_legend(sample, sample["annotations"])
    editable = labels_editable(project["task"])
    changes = edits.history(studio, project=project["id"], sample_id=sample_id, limit=HISTORY_SIZE)
    kinds = object_edits.editable_kinds(project["task"])
    names = list(samples.class_counts(studio, project=project["id"])) if editable or kinds else []
    return {
        "project": project,
        "s": sample,
        "overlay": overlay,
        "labels_editable": editable,
        "class_names": names if editable else [],
        "editor": object_editor(project, sample, kinds, names) if kinds else None,
        "history": [history_row(c) for c in changes["items"]],
        "history_total": changes["total"],
        "faces": photo_faces(studio, project, sample_id),
        # a video's keyframe: the player from its time and the video's filmstrip
        "video": video_library.get_video(studio, sample["video_id"]) if sample.get("video_id") else None,
    }


def object_editor(
    project: dict[str, Any], sample: dict[str, Any], kinds: tuple[str, ...], classes: list[str]
) -> dict[str, Any]:
    """What the detail's annotation editor (editor.js) starts from: the image's ground-truth
    objects of the kinds it may save (all of them go back with a save, masks unchanged), their
    ``revision``, the kinds it draws (the task's object kinds it can shape: a box of an instance
    segmentation project is its polygon's companion, not an object) and the project's classes.
    A region with no class (a label image's ignored pixels) is not the editor's: saves leave it."""
    objects = get_task(project["task"]).object_kinds or kinds
    return {
        "id": sample["id"],
        "project": project["name"],
        "w": sample["width"],
        "h": sample["height"],
        "kinds": list(kinds),
        "draw": [k for k in ("box", "polygon", "rotated_box") if k in kinds and k in objects],
        "classes": classes,
        "revision": sample["objects_revision"],
        "objects": [
            {"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]}
            for a in sample["annotations"]
            if a["kind"] in kinds and a.get("score") is None and a["class"] is not None
        ],
    }


def _names_text(names: list[str] | None) -> str:
    return ", ".join(names) if names else "—"


def history_row(change: dict[str, Any]) -> dict[str, Any]:
    """One change of a sample's history (``edits.history`` with ``sample_id``) in words: ``what``
    ("tags: +blurry −review", "label: cat → dog", "undo of change 3") and, for an undo or a redo,
    its ``effect`` on the sample ("tags: review → —"). Tags are told from the sample's own before
    and after (what the edit did to it), not from the request, which may have asked for more."""
    request = change["request"]
    before, after = change.get("before"), change.get("after")
    if change["kind"] == "annotations":
        return _objects_row(change, before, after)
    noun = "tags" if change["kind"] == "tags" else "label"
    effect = None
    revert = next((word for word in ("undo", "redo") if word in request), None)
    if revert:
        what = f"{revert} of change {request[revert]}"
        if before is not None and after is not None:
            effect = f"{noun}: {_names_text(before)} → {_names_text(after)}"
    elif change["kind"] == "tags":
        if before is not None and after is not None:
            added = [t for t in after if t not in before]
            removed = [t for t in before if t not in after]
        else:
            added, removed = list(request.get("add", [])), list(request.get("remove", []))
        what = "tags: " + " ".join([f"+{t}" for t in added] + [f"−{t}" for t in removed])
    elif before is not None and after is not None:
        what = f"label: {_names_text(before)} → {_names_text(after)}"
    else:
        what = "label: set to " + _names_text(request.get("set"))
    return {
        "id": change["change_id"],
        "what": what,
        "effect": effect,
        "actor": change["actor"],
        "when": change["created_at"],
        "undone": change["undone"],
    }


OBJECT_NOUNS = {
    "box": ("box", "boxes"),
    "polygon": ("polygon", "polygons"),
    "rotated_box": ("rotated box", "rotated boxes"),
    "mask_rle": ("mask", "masks"),
}


def _objects_text(n: int, kind: str) -> str:
    one, many = OBJECT_NOUNS.get(kind, (kind, kind))
    return f"{n} {one if n == 1 else many}"


def _objects_diff(before: list[Any], after: list[Any]) -> str:
    """What an object save did, per kind: "+1 box, 2 polygons changed, −1 mask" (an object moved
    or given another class is one removed and one added: counted as changed)."""
    key = object_edits.canonical
    old = [json.dumps(o, sort_keys=True) for o in key(before)]
    new = [json.dumps(o, sort_keys=True) for o in key(after)]
    added, removed = Counter(new) - Counter(old), Counter(old) - Counter(new)
    parts = []
    for kind in dict.fromkeys(o["kind"] for o in [*after, *before]):
        a = sum(n for k, n in added.items() if json.loads(k)["kind"] == kind)
        r = sum(n for k, n in removed.items() if json.loads(k)["kind"] == kind)
        changed = min(a, r)
        if a - changed:
            parts.append("+" + _objects_text(a - changed, kind))
        if changed:
            parts.append(_objects_text(changed, kind) + " changed")
        if r - changed:
            parts.append("−" + _objects_text(r - changed, kind))
    return ", ".join(parts) or "no change"


def _objects_row(change: dict[str, Any], before: Any, after: Any) -> dict[str, Any]:
    """One annotation save (or its undo or redo) of a sample's history, in words."""
    request = change["request"]
    revert = next((word for word in ("undo", "redo") if word in request), None)
    both = isinstance(before, list) and isinstance(after, list)
    diff = _objects_diff(before, after) if both else None
    if revert:
        what = f"{revert} of change {request[revert]}"
        effect = f"objects: {diff}" if diff else None
    else:
        what = f"objects: {diff}" if diff else f"objects saved ({request.get('objects', '?')})"
        created = request.get("created_classes") or []
        effect = ("new class: " if len(created) == 1 else "new classes: ") + ", ".join(created)
        effect = effect if created else None
    return {
        "id": change["change_id"],
        "what": what,
        "effect": effect,
        "actor": change["actor"],
        "when": change["created_at"],
        "undone": change["undone"],
    }


@router.get("/projects/{name}/samples/{sample_id}", response_class=HTMLResponse)
def sample_detail(request: Request, studio: StudioDep, name: str, sample_id: RowId) -> Response:
    try:
        project = projects.get_project(studio, name)
        ctx = _sample_context(studio, project, sample_id)
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(request, "fragments/sample_detail.html", ctx)


@router.get("/projects/{name}/imports/{job_id}", response_class=HTMLResponse)
def import_report(request: Request, studio: StudioDep, name: str, job_id: RowId) -> Response:
    try:
        project = projects.get_project(studio, name)
        data = ingest.import_report(studio, job_id)
        if data["job"]["project_id"] not in (project["id"], None):
            raise NotFound(f"import {job_id} does not belong to project {project['name']!r}")
    except VistudioError as exc:
        return error_fragment(request, exc)
    return render(
        request,
        "fragments/import_report.html",
        {"project": project, "job": data["job"], "report": data["report"]},
    )
