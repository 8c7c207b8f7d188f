"""Runs page: the pipeline runs with filters and a duration chart, a run's detail and report, and
the side-by-side comparison of two runs (metric and timing deltas, regressions, changed items)."""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from vistudio.api.access import principal_of
from vistudio.api.deps import StudioDep
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.pipelines.audit import outcome
from vistudio.services import access, run_results, runs
from vistudio.services.views import parse_day as form_date
from vistudio.studio import Studio
from vistudio.web.pages._common import error_fragment, error_page, is_htmx, render, templates

router = APIRouter(tags=["web"], include_in_schema=False)
PAGE = 100  # runs listed at once
CHART_RUNS = 50  # newest runs in the duration chart
MAX_ITEMS = 100  # changed items shown by the comparison
DETAIL_IMAGES = 24  # saved images shown on a run's page (the report and the folder hold the rest)
STATUSES = ("running", "succeeded", "partial", "failed", "cancelled")
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
# The report holds file names from user input: no scripts, no fetches, only inline styles and data: images.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
FILE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
}
FILTER_KEYS = ("pipeline", "status", "tag", "since", "until", "slower")
Text = Annotated[str, Query(max_length=200)]
RunId = Annotated[str, PathParam(min_length=1, max_length=100)]


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    return f"{int(value // 60_000)} min {value % 60_000 / 1000:.0f} s"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


templates.env.filters["run_ms"] = _ms
templates.env.filters["run_pct"] = _pct
templates.env.filters["run_num"] = _num


def filter_params(
    pipeline: Text = "",
    status: Text = "",
    tag: Text = "",
    since: Text = "",
    until: Text = "",
    slower: Text = "",
) -> dict[str, str]:
    """The list's query string, as the filter form sends it (validated by ``_filters``)."""
    return {
        "pipeline": pipeline,
        "status": status,
        "tag": tag,
        "since": since,
        "until": until,
        "slower": slower,
    }


FilterParams = Annotated[dict[str, str], Depends(filter_params)]


def _filters(params: dict[str, str]) -> dict[str, Any]:
    """The query string as list_runs keyword arguments (raising InvalidInput)."""
    out: dict[str, Any] = {}
    for key in ("pipeline", "tag"):
        if params.get(key):
            out[key] = params[key]
    if params.get("status"):
        if params["status"] not in STATUSES:
            raise InvalidInput(f"status is one of {', '.join(STATUSES)}")
        out["status"] = params["status"]
    out["since"] = form_date(params.get("since", ""), "'since' date", end=False)
    out["until"] = form_date(params.get("until", ""), "'until' date", end=True)
    if out["since"] and out["until"] and out["since"] > out["until"]:
        raise InvalidInput("the 'since' date is after the 'until' date")
    if params.get("slower"):
        try:
            slower = float(params["slower"])
        except ValueError:
            raise InvalidInput("'slower than' is a number of milliseconds") from None
        if not 0 <= slower < 1e12:
            raise InvalidInput("'slower than' is a number of milliseconds, 0 or more")
        out["slower_than_ms"] = slower
    return out


def _chart(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Durations of the newest runs, oldest on the left; runs with failed items in a second colour."""
    newest = list(reversed(items[:CHART_RUNS]))
    return {
        "labels": [r["id"] for r in newest],
        "datasets": [
            {
                "label": "duration (ms)",
                "data": [round(r["duration_ms"] or 0, 1) if not r["failed"] else 0 for r in newest],
            },
            {
                "label": "with failed items",
                "data": [round(r["duration_ms"] or 0, 1) if r["failed"] else 0 for r in newest],
            },
        ],
    }


def _visible_runs(studio: Studio, visible: set[str] | None, *, limit: int, **filters: Any) -> dict[str, Any]:
    """``runs.list_runs`` less the runs of projects the caller may not see (``visible``: the run
    ids it may see, None: all)."""
    if visible is None:
        return runs.list_runs(studio, limit=limit, **filters)
    found = runs.list_runs(studio, limit=2**62, **filters)
    kept = [r for r in found["items"] if r["id"] in visible]
    return {"items": kept[:limit], "total": len(kept)}


def _table(studio: Studio, params: dict[str, str], visible: set[str] | None) -> dict[str, Any]:
    kept = {k: v for k, v in params.items() if v}
    page = _visible_runs(studio, visible, limit=PAGE, **_filters(params))
    return {
        "runs": page["items"],
        "total": page["total"],
        "chart": _chart(page["items"]),
        "filtered": any(kept.get(k) for k in FILTER_KEYS),
    }


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, studio: StudioDep, params: FilterParams) -> Response:
    table_error: VistudioError | None = None
    visible = access.visible_run_ids(studio, principal_of(request))
    try:
        table = _table(studio, params, visible)
    except VistudioError as exc:
        table_error = exc
        table = {"runs": [], "total": 0, "chart": _chart([]), "filtered": True}
    if is_htmx(request):
        # the filter form asks for this page's URL (so it lands in the history) and gets the table
        ctx = {**table, "table_error": table_error.message if table_error else None}
        return render(
            request, "fragments/runs_table.html", ctx, status_code=table_error.status if table_error else 200
        )
    every = _visible_runs(studio, visible, limit=10_000)["items"]
    disk = runs.disk_usage(studio)
    if visible is not None:
        disk["largest_runs"] = [r for r in disk["largest_runs"] if r["id"] in visible]
    return render(
        request,
        "runs.html",
        {
            **table,
            "table_error": table_error.message if table_error else None,
            "params": params,
            "pipelines": sorted({r["pipeline"] for r in every}),
            "tags": sorted({r["tag"] for r in every if r["tag"]}),
            "statuses": STATUSES,
            "any_runs": bool(every),
            "disk": disk,
            "nav": "runs",
        },
    )


def _compare_ids(studio: Studio, a: str, b: str, run: list[str]) -> tuple[str, str]:
    """Two run ids from ``a``/``b`` or from the list page's two checkboxes (older one first)."""
    if not (a and b):
        picked = [r for r in run if r]
        if len(picked) != 2:
            raise InvalidInput("pick two runs to compare")
        if picked[0] != picked[1]:  # the older run is the baseline
            found = sorted(
                (runs.get_run(studio, r) for r in picked), key=lambda r: (r["started_at"], r["id"])
            )
            picked = [r["id"] for r in found]
        a, b = picked
    if a == b:
        raise InvalidInput("pick two different runs to compare")
    return a, b


def _file_url(run: dict[str, Any], path: str) -> str | None:
    """The /runs/{id}/files URL of a saved output (workspace-relative path), for images only."""
    base = PurePosixPath(run["outputs_dir"] or "")
    p = PurePosixPath(path)
    if p.suffix.lower() not in IMAGE_TYPES or not p.is_relative_to(base) or p == base:
        return None
    return f"/runs/{run['id']}/files/{p.relative_to(base).as_posix()}"


def _outputs(run: dict[str, Any], side: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": PurePosixPath(o).name, "url": _file_url(run, o)} for o in (side.get("outputs") or [])[:6]
    ]


@router.get("/runs/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    studio: StudioDep,
    a: Text = "",
    b: Text = "",
    run: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006 - FastAPI copies defaults
) -> Response:
    try:
        # a run of a hidden project answers as a missing one, before anything reads it
        access.check_runs(studio, principal_of(request), [r for r in (a, b, *run) if r])
        ida, idb = _compare_ids(studio, a, b, run)
        cmp = runs.compare_runs(studio, ida, idb)
    except VistudioError as exc:
        return error_page(request, exc)
    items = [
        {
            **it,
            "a_outputs": _outputs(cmp["a"], it["a"]),
            "b_outputs": _outputs(cmp["b"], it["b"]),
        }
        for it in cmp["items"][:MAX_ITEMS]
    ]
    return render(
        request,
        "runs_compare.html",
        {
            "cmp": cmp,
            "items": items,
            "more_items": len(cmp["items"]) - len(items),
            "min_slowdown_ms": runs.MIN_SLOWDOWN_MS,
            "nav": "runs",
        },
    )


def _get(studio: Studio, run_id: str) -> dict[str, Any]:
    return runs.get_run(studio, run_id)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_detail(request: Request, studio: StudioDep, run_id: RunId) -> Response:
    try:
        run = _get(studio, run_id)
    except VistudioError as exc:
        return error_page(request, exc)
    stages = run.get("stages") or []
    max_total = max([s["total_ms"] or 0 for s in stages] + [1e-9])
    for s in stages:
        s["pct"] = round(100 * (s["total_ms"] or 0) / max_total, 1)
    outputs = str(studio.home / run["outputs_dir"]) if run["outputs_dir"] else None
    images = run_results.run_images(studio, run["id"], limit=DETAIL_IMAGES)
    for im in images["items"]:
        im["url"] = _file_url(run, im["path"])
    return render(
        request,
        "runs_detail.html",
        {
            "run": run,
            "outcome": outcome(run),
            "errors": run_results.run_errors(studio, run),
            "images": images,
            "outputs_path": outputs,
            "nav": "runs",
        },
    )


def _inside(root: Path, relative: str) -> Path:
    """``root / relative`` resolved (symlinks followed), refused (NotFound) unless a file inside ``root``."""
    rel = PurePosixPath(relative)
    if not relative or rel.is_absolute() or "\\" in relative or ".." in rel.parts or "\x00" in relative:
        raise NotFound("file not found")
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound("file not found")
    return target


@router.get("/runs/{run_id}/report")
def run_report(request: Request, studio: StudioDep, run_id: RunId) -> Response:
    """The run's self-contained report.html, under a CSP that allows no scripts or fetches."""
    try:
        run = _get(studio, run_id)
        if not run["report_path"]:
            raise NotFound(f"run {run_id!r} has no report")
        path = _inside(studio.home, run["report_path"])
    except VistudioError as exc:
        return error_page(request, exc)
    return FileResponse(
        path,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/runs/{run_id}/files/{path:path}")
def run_file(request: Request, studio: StudioDep, run_id: RunId, path: str) -> Response:
    """A file the run saved, only from inside its outputs folder (no ``..``, absolute or symlink escapes)."""
    try:
        run = _get(studio, run_id)
        if not run["outputs_dir"]:
            raise NotFound("file not found")
        root = _inside_dir(studio.home, run["outputs_dir"])
        target = _inside(root, path)
    except VistudioError as exc:
        return error_fragment(request, exc) if is_htmx(request) else error_page(request, exc)
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media, headers=FILE_HEADERS)


def _inside_dir(home: Path, relative: str) -> Path:
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise NotFound("file not found")
    base = home.resolve()
    folder = (base / rel).resolve()
    if not folder.is_relative_to(base) or not folder.is_dir():
        raise NotFound("file not found")
    return folder


@router.post("/runs/{run_id}/delete")
def delete_run(request: Request, studio: StudioDep, run_id: RunId) -> Response:
    try:
        _get(studio, run_id)
        # the user asked for this one run: a tag does not protect it here
        done = runs.clean_runs(studio, run_ids=[run_id])
        if run_id not in done["runs"]:
            raise NotFound(f"run {run_id!r} could not be deleted")
    except VistudioError as exc:
        return error_fragment(request, exc) if is_htmx(request) else error_page(request, exc)
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": "/runs"})
    return RedirectResponse("/runs", status_code=303)
