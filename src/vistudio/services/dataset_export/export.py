"""Dataset export: a project's selected samples and ground truth written as COCO, YOLO, VOC, DOTA,
CSV or class folders (``vistudio.ingest.writers``), as a job with progress.

- What the format cannot express is counted before anything is written (``preview_export``, the
  dry run: the writers' own accounting, so it matches the real export) and reported again by the
  export: ``dropped`` ``{kind or reason: count}``, ``converted`` (kept in another form).
- A format that cannot hold any of the annotation kinds of the project's task (class folders for
  detection, DOTA for classification) is refused up front (422) naming the formats that can.
- Files go into a hidden partial folder (or zip) beside the destination — ``.<name>.partial-<job
  id>-<attempt>`` — published by one rename at the end: a crash leaves no half-written export
  under the real name, a retry starts again from nothing. The export carries a hidden
  ``.vistudio-export.json`` (what was exported, dropped, converted and failed), which also lets
  a retry after a crash between the rename and the job's completion find its own result.
- Images are copied with their sha256 checked (or hard-linked with ``link``); a sample whose
  file is missing or changed since its import is reported in ``failed`` and left out of the
  label files — the rest is exported.
- From the CLI the destination is the user's ``--out`` (a folder that does not exist or is
  empty, or a ``.zip`` that does not exist; never inside the workspace but under its
  ``exports/``). Through the API it is always a zip in the workspace:
  ``exports/datasets/<project>/<format>-<job id>.zip``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from vistudio.db import Project, utcnow
from vistudio.db.versions import DatasetVersion
from vistudio.errors import BadRequest, Conflict, InvalidInput
from vistudio.ingest.writers import Writer, counts, get_writer, summarise, writer_formats
from vistudio.ingest.writers._names import safe_component
from vistudio.jobs.queue import LeaseLost, job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.ml.tasks import get_task
from vistudio.pipelines.saver import safe_name
from vistudio.services.dataset_export.selection import (
    Source,
    check_filters,
    filters_json,
    load_selection,
)
from vistudio.services.dataset_export.sinks import (
    FolderSink,
    ItemFailed,
    Sink,
    ZipSink,
    discard,
    partial_path,
)
from vistudio.services.projects import find_project
from vistudio.services.samples import matching_query, resolve_split
from vistudio.services.versions import find_version
from vistudio.studio import Studio

JOB_KIND = "dataset_export"
MANIFEST = ".vistudio-export.json"
MAX_REPORTED = 1000  # failed samples listed in a result; the count stays exact


def formats() -> list[str]:
    return writer_formats()


def check_format(fmt: str, task: str) -> type[Writer]:
    """The writer of ``fmt``, if it can hold at least one annotation kind of ``task``; else a 422
    naming the formats that can."""
    if fmt not in writer_formats():
        raise InvalidInput(
            f"unknown format {fmt[:40]!r}; use one of {', '.join(writer_formats())}",
            details={"formats": writer_formats()},
        )
    writer = get_writer(fmt)
    spec = get_task(task)
    kinds = set(spec.annotation_kinds)
    if kinds and not kinds & writer.kinds:
        able = [f for f in writer_formats() if kinds & get_writer(f).kinds]
        raise InvalidInput(
            f"{fmt} cannot express {spec.title.lower()} annotations ({', '.join(sorted(kinds))}): "
            f"it holds {', '.join(sorted(writer.kinds))}. Export this project as {' or '.join(able)}",
            details={"format": fmt, "task": task, "formats": able},
        )
    return writer


def check_out(studio: Studio, out: Path, *, zip: bool) -> Path:
    """The destination as an absolute path, if an export may be written there: a ``.zip`` that does
    not exist (``zip``), else a folder that does not exist or is empty; never inside the workspace
    but under its ``exports/`` folder. Nothing is created or touched."""
    if "\x00" in str(out):
        raise InvalidInput("the output path contains a NUL byte")
    dest = Path(out).expanduser().absolute()
    if dest.suffix.lower() == ".zip" and not zip:
        raise InvalidInput(f"{dest.name} ends in .zip: add --zip to write a zip, or name a folder")
    if zip and dest.suffix.lower() != ".zip":
        raise InvalidInput(f"with --zip the output is a .zip file, not {dest.name!r}")
    home = studio.home.resolve()
    real = dest.resolve()
    if (real == home or real.is_relative_to(home)) and not real.is_relative_to(home / "exports"):
        raise InvalidInput(
            f"{dest} is inside the workspace; write exports elsewhere or under {home / 'exports'}"
        )
    if dest.is_symlink() or (dest.exists() and (zip or not dest.is_dir())):
        raise Conflict(f"{dest} already exists; choose another output", details={"path": str(dest)})
    if dest.is_dir() and any(dest.iterdir()):
        raise Conflict(
            f"the folder {dest} exists and is not empty; choose another output or empty it",
            details={"path": str(dest)},
        )
    if dest.parent.exists() and not dest.parent.is_dir():
        raise InvalidInput(f"{dest.parent} is not a folder")
    return dest


def api_destination(studio: Studio, *, project_name: str, fmt: str, job_id: int) -> Path:
    """Where an API export goes: ``<workspace>/exports/datasets/<project>/<format>-<job id>.zip``."""
    return studio.home / "exports" / "datasets" / safe_name(project_name, 100) / f"{fmt}-{job_id}.zip"


def _resolve(
    s: Session,
    *,
    project: str | int,
    fmt: str,
    filters: dict[str, Any] | None,
    by_split: str | None,
    version: str | int | None = None,
) -> tuple[Project, dict[str, Any], DatasetVersion | None]:
    """The project, the checked filters (unknown class or split: 404, as the grid) and the
    version (unknown: 404; a version and filters together: 400)."""
    p = find_project(s, project)
    check_format(fmt, p.task)
    checked = check_filters(filters)
    if by_split is not None:
        resolve_split(s, p.id, by_split, None)
    matching_query(s, p, **checked)  # raises for a bad filter now, not in the job
    v = None
    if version is not None:
        if checked:
            raise BadRequest("give either a version or filters: a version is exported whole")
        v = find_version(s, p, version)
    return p, checked, v


def preview_export(
    studio: Studio,
    *,
    project: str | int,
    format: str,
    filters: dict[str, Any] | None = None,
    by_split: str | None = None,
    out: Path | None = None,
    zip: bool = False,
    version: str | int | None = None,
) -> dict[str, Any]:
    """The dry run: what an export would write and drop, without writing anything →
    ``{"dry_run": true, "format", "path", "samples", "annotations", "dropped", "converted"}``."""
    dest = check_out(studio, out, zip=zip) if out is not None else None
    with studio.sessions() as s:
        p, checked, v = _resolve(
            s, project=project, fmt=format, filters=filters, by_split=by_split, version=version
        )
        sel = load_selection(s, project=p, filters=checked, by_split=by_split, version=v)
        version_name = v.name if v is not None else None
    summary = summarise(
        format,
        sel.samples,
        classes=sel.classes,
        by_split=by_split is not None,
        task_kinds=get_task(p.task).annotation_kinds,
    )
    return {
        "dry_run": True,
        "project": p.name,
        "format": format,
        "path": str(dest) if dest else None,
        "zip": zip,
        "by_split": by_split,
        "version": version_name,
        "missing": sel.missing,
        "samples": summary.samples,
        "annotations": summary.annotations,
        "dropped": summary.dropped,
        "converted": summary.converted,
    }


def start_dataset_export(
    studio: Studio,
    *,
    project: str | int,
    format: str,
    out: Path | None,
    zip: bool = False,
    link: bool = False,
    filters: dict[str, Any] | None = None,
    by_split: str | None = None,
    version: str | int | None = None,
) -> dict[str, Any]:
    """Check the request and queue the export job; returns the job. ``out`` None: an API export
    (a zip under the workspace's ``exports/datasets/``)."""
    if out is None and not zip:
        raise InvalidInput("exports made through the API are always zipped")
    dest = check_out(studio, out, zip=zip) if out is not None else None
    with studio.sessions() as s:
        p, checked, v = _resolve(
            s, project=project, fmt=format, filters=filters, by_split=by_split, version=version
        )
        project_id = p.id
        version_id = v.id if v is not None else None
    params = {
        "format": format,
        "out": str(dest) if dest else None,
        "zip": zip,
        "link": link and not zip,
        "filters": filters_json(checked),
        "by_split": by_split,
        "version_id": version_id,
    }
    return job_dict(studio.queue.enqueue(JOB_KIND, params, project_id=project_id, max_attempts=2))


@job_handler(JOB_KIND)
def run_dataset_export(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    params = ctx.params
    fmt, zip_, by_split = params["format"], bool(params.get("zip")), params.get("by_split")
    if ctx.project_id is None:
        raise PermanentJobError("the project of this export was deleted")
    ctx.progress(0, None, "reading the selection", force=True)
    with studio.sessions() as s:
        p = find_project(s, ctx.project_id)
        writer_cls = check_format(fmt, p.task)
        filters = check_filters(params.get("filters"))
        v = None
        if params.get("version_id") is not None:
            v = s.get(DatasetVersion, params["version_id"])
            if v is None:
                raise PermanentJobError("the version of this export was deleted")
        sel = load_selection(s, project=p, filters=filters, by_split=by_split, version=v)
        samples, sources, classes = sel.samples, sel.sources, sel.classes
        extra = {"version": v.name if v is not None else None, "missing": sel.missing}
        project_name = p.name
        task_kinds = get_task(p.task).annotation_kinds
    dest = (
        Path(params["out"])
        if params.get("out")
        else api_destination(studio, project_name=project_name, fmt=fmt, job_id=ctx.job_id)
    )
    done = _finished_before(dest, ctx.job_id)
    if done is not None:
        return {"export": done}
    dest.parent.mkdir(parents=True, exist_ok=True)
    if params.get("out"):
        check_out(studio, dest, zip=zip_)  # still free? (it was when the job was queued)
    for stale in dest.parent.glob(f".{dest.name}.partial-{ctx.job_id}-*"):
        discard(stale)  # an earlier attempt of this job
    partial = partial_path(dest, f"{ctx.job_id}-{ctx.attempt}")
    writer = writer_cls(
        samples, classes=classes, by_split=by_split is not None, title=project_name, task_kinds=task_kinds
    )
    sink: Sink = (
        ZipSink(partial, top=safe_component(dest.stem) or "dataset")
        if zip_
        else FolderSink(partial, link=bool(params.get("link")))
    )
    try:
        result = _write(ctx, writer, sources, sink, dest=dest, project=project_name, extra=extra)
        ctx.check_cancelled()
        sink.publish(dest)
    except LeaseLost:  # another worker runs the job now; it clears this attempt's partial
        raise
    except BaseException:
        sink.abandon()
        raise
    ctx.progress(result["samples"], result["samples"], "done", force=True)
    return {"export": result}


def _write(
    ctx: JobContext,
    writer: Writer,
    sources: dict[int, Source],
    sink: Sink,
    *,
    dest: Path,
    project: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    params = ctx.params
    plan = writer.plan()
    total = len(plan.entries)
    exported = []
    failed: list[dict[str, Any]] = []
    for done, (sample, rel) in enumerate(plan.entries, start=1):
        ctx.check_cancelled()
        source = sources[sample.key]
        try:
            path = ctx.studio.photo_file(source.storage, source.path)
            sink.add_image(rel, path, sha256=source.sha256, trusted=source.trusted)
        except ItemFailed as exc:
            failed.append({"sample_id": sample.key, "name": sample.name, "reason": exc.reason})
        else:
            exported.append((sample, rel))
        ctx.progress(done, total + 1, rel)
    ctx.progress(total, total + 1, "writing the labels", force=True)
    rendered = writer.render(exported)
    for rel, data in rendered.files:
        sink.add_bytes(rel, data)
    result = {
        "path": str(dest),
        "project": project,
        "format": writer.name,
        "zip": bool(params.get("zip")),
        "by_split": params.get("by_split"),
        "filters": params.get("filters") or {},
        **extra,
        "samples": len(exported),
        "annotations": rendered.annotations,
        "dropped": counts(plan.excluded + rendered.dropped),
        "converted": counts(rendered.converted),
        "failed": failed[:MAX_REPORTED],
        "failed_count": len(failed),
        "copied": sink.copied,
        "linked": sink.linked,
        "job_id": ctx.job_id,
        "finished_at": utcnow().isoformat() + "Z",
    }
    sink.add_bytes(MANIFEST, json.dumps(result, indent=2, ensure_ascii=False).encode())
    return result


def _finished_before(dest: Path, job_id: int) -> dict[str, Any] | None:
    """The result an earlier attempt of this job published at ``dest`` (its process died between
    the rename and recording the job's success), or None."""
    try:
        if dest.is_dir():
            doc = json.loads((dest / MANIFEST).read_text())
        elif dest.is_file():
            with zipfile.ZipFile(dest) as z:
                name = next((n for n in z.namelist() if n.endswith("/" + MANIFEST)), None)
                doc = json.loads(z.read(name)) if name else None
        else:
            return None
    except Exception:  # unreadable, not ours, a broken zip: not a result of this job
        return None
    if isinstance(doc, dict) and doc.get("job_id") == job_id:
        return doc
    return None
