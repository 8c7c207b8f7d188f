"""Pipeline runs: start (a job), record (audit, report, metrics, outputs), query, compare, clean."""

from __future__ import annotations

import json
import resource
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from vistudio.db import Run, RunOutput, RunStage, Sample, utcnow
from vistudio.errors import InvalidInput, NotFound
from vistudio.ingest.safepath import walk_images
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.pipelines.audit import (
    build_audit,
    error_table_csv,
    metrics_table,
    stage_summary,
)
from vistudio.pipelines.report import render_report
from vistudio.pipelines.runner import ItemReport, Runner, resolve_stage
from vistudio.pipelines.saver import MODE_ROOTS, OutputSaver, safe_name
from vistudio.pipelines.spec import MODES, PipelineSpec, check_chain, load_spec
from vistudio.pipelines.stage import Item, StageError
from vistudio.services.projects import find_project
from vistudio.services.samples import labels_for
from vistudio.studio import Studio

ARTIFACT_KIND = "pipeline_artifact"
# A stage is flagged slower only past the relative threshold AND this many ms per item: timings
# of sub-millisecond stages jitter by more than any sensible threshold.
MIN_SLOWDOWN_MS = 0.5


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def start_run(
    studio: Studio,
    *,
    pipeline: Path | str | dict[str, Any],
    input_dir: Path | None = None,
    files: list[Path] | None = None,
    project: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    mode: str | None = None,
    tag: str | None = None,
    ground_truth: Path | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Validate a run request and queue it. Exactly one input: a folder, files, or a project."""
    spec = load_spec(pipeline)
    if mode is not None:
        if mode not in MODES:
            raise InvalidInput(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        spec = spec.model_copy(update={"output_mode": mode})
    if sum(x is not None and x != [] for x in (input_dir, files, project)) != 1:
        raise InvalidInput("give exactly one input: a folder, a list of files, or a project")
    source: dict[str, Any]
    if input_dir is not None:
        if not Path(input_dir).is_dir():
            raise NotFound(f"input folder not found: {input_dir}")
        source = {"kind": "folder", "path": str(Path(input_dir).resolve())}
    elif files:
        missing = [str(f) for f in files if not Path(f).is_file()]
        if missing:
            raise NotFound(f"input files not found: {', '.join(missing[:5])}")
        source = {"kind": "files", "paths": [str(Path(f).resolve()) for f in files]}
    else:
        with studio.sessions() as s:
            p = find_project(s, project or "")
        source = {"kind": "project", "project": p.name, "project_id": p.id, "split": split, "subset": subset}
    if ground_truth is not None:
        if not Path(ground_truth).is_file():
            raise NotFound(f"ground-truth file not found: {ground_truth}")
        source["ground_truth"] = str(Path(ground_truth).resolve())
    if spec.output_mode == "validation" and "ground_truth" not in source and source["kind"] != "project":
        raise InvalidInput("validation mode needs ground truth: a project's labels or --ground-truth CSV")
    functions = {}
    for st in spec.stages:  # unknown stages fail now, not after the job starts
        try:
            functions[st.name] = resolve_stage(st)
        except StageError as exc:
            raise InvalidInput(f"stage {st.name!r}: {exc}") from None
    check_chain(spec, functions)  # again, now with what custom stages declare
    job = studio.queue.enqueue(
        "pipeline_run",
        {"spec": spec.model_dump(), "source": source, "tag": tag, "dry_run": dry_run},
        project_id=source.get("project_id"),
        max_attempts=1,  # a run is not retried behind the user's back: its outputs are its record
    )
    return job_dict(job)


def _ground_truth_csv(path: Path) -> dict[str, str]:
    """``path,label`` rows → {resolved path: label}, paths relative to the CSV's folder. A label
    that names an image inside that folder (``path,expected``) becomes ``image:<resolved path>``:
    the run's final image is compared with it."""
    from vistudio.ingest.readers.csv import parse_csv_text
    from vistudio.ingest.safepath import is_image_name, resolve_inside
    from vistudio.ingest.types import IngestError

    parsed = parse_csv_text(path.read_text(encoding="utf-8-sig", errors="replace"), root=path.parent)
    truth: dict[str, str] = {}
    for it in parsed.items:
        label = next((a.class_name for a in it.annotations if a.kind == "label" and a.class_name), None)
        if label is None:
            continue
        if is_image_name(label):
            try:
                expected: Path | None = resolve_inside(path.parent, label)
            except IngestError:
                expected = None
            if expected is not None and expected.is_file():
                label = f"image:{expected}"
        truth[str(it.path.resolve())] = label
    return truth


def _item(key: str, path: Path, truth: str | None, **extra: Any) -> Item:
    if truth is not None and truth.startswith("image:"):
        return Item(key=key, path=path, meta={"expected_image": truth.removeprefix("image:")}, **extra)
    return Item(key=key, path=path, ground_truth=truth, **extra)


def _items(studio: Studio, source: dict[str, Any]) -> tuple[list[Item], list[dict[str, str]]]:
    truth = _ground_truth_csv(Path(source["ground_truth"])) if source.get("ground_truth") else {}
    errors: list[dict[str, str]] = []
    if source["kind"] == "folder":
        root = Path(source["path"])
        paths, errs = walk_images(root)
        errors = [{"path": e.path, "reason": e.reason} for e in errs]
        named = [(p.relative_to(root).as_posix(), p) for p in paths]
    elif source["kind"] == "files":
        named = [(Path(p).name, Path(p)) for p in source["paths"]]
    else:
        return _project_items(studio, source), []
    items = []
    seen: set[str] = set()
    for name, path in named:
        key = _unique(safe_name(Path(name).with_suffix("").as_posix(), 80), seen)
        items.append(_item(key, path, truth.get(str(path.resolve()))))
    return items, errors


def _project_items(studio: Studio, source: dict[str, Any]) -> list[Item]:
    from vistudio.services.samples import filtered_query, resolve_split

    with studio.sessions() as s:
        pid = source["project_id"]
        split_id = resolve_split(s, pid, source.get("split"), source.get("subset"))
        stmt = filtered_query(
            pid,
            label=None,
            tag=None,
            split=split_id,
            subset=source.get("subset"),
            has_annotations=None,
            taken_from=None,
            taken_to=None,
            dup_group=None,
            duplicates_only=False,
            q=None,
        )
        rows = list(s.scalars(stmt.order_by(Sample.name, Sample.id)))
        labels = labels_for(s, [r.id for r in rows])
        objects = _box_objects(s, pid, rows)
    seen: set[str] = set()
    items = []
    for r in rows:
        path = studio.photo_file(r.storage, r.path)
        key = _unique(safe_name(Path(r.name).with_suffix("").as_posix(), 80), seen)
        gt = labels[r.id][0] if len(labels[r.id]) == 1 else None
        meta: dict[str, Any] = {"name": r.name}
        if objects is not None:  # a box task: the objects are the truth, for detection stages
            meta |= {"objects": objects.get(r.id, []), "width": r.width, "height": r.height}
            gt = None
        items.append(Item(key=key, path=path, sample_id=r.id, ground_truth=gt, meta=meta))
    return items


def _box_objects(s: Any, project_id: int, rows: list[Sample]) -> dict[int, list[dict[str, Any]]] | None:
    """For detection, instance segmentation and oriented detection projects, each sample's
    objects ``{"class", "box" [x1, y1, x2, y2] in the sample's pixels, "iscrowd"}`` (as training
    and evaluation read them; ``iscrowd`` a COCO crowd region or a difficult object); None for
    other tasks.

    A rotated box (``rotated_box`` annotation) also gives ``"points"``, its four corners
    ``[[x, y] × 4]`` in the sample's pixels (DOTA order), ``box`` being their bounds clipped to
    the image; one without a width or a height is left out, as the oriented evaluation leaves it
    out of the ground truth (``ml.inference.rotated.rotated_object``)."""
    from vistudio.db import Annotation, LabelClass, Project
    from vistudio.ml.tasks import get_task
    from vistudio.services.experiments.lookup import object_target

    project = s.get(Project, project_id)
    if project is None or not rows:
        return None
    kinds = get_task(project.task).object_kinds
    if not kinds:
        return None
    sizes = {r.id: (r.width or 0, r.height or 0) for r in rows}
    out: dict[int, list[dict[str, Any]]] = {}
    ids = list(sizes)
    for lo in range(0, len(ids), 500):
        found = s.execute(
            select(Annotation.sample_id, Annotation.kind, Annotation.geometry, LabelClass.name)
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .where(
                Annotation.sample_id.in_(ids[lo : lo + 500]),
                Annotation.kind.in_(kinds),
                Annotation.score.is_(None),
            )
            .order_by(Annotation.sample_id, Annotation.id)
        )
        for sid, kind, geometry, name in found:
            obj = object_target(kind, geometry) if isinstance(geometry, dict) else None
            if obj is None:
                continue
            (x, y, w, h), (width, height) = obj["box"], sizes[sid]
            box = [x * width, y * height, (x + w) * width, (y + h) * height]
            entry = {"class": name, "box": box, "iscrowd": obj["iscrowd"]}
            if "points" in obj:  # a rotated box: its corners as the oriented evaluation reads them
                from vistudio.ml.inference.rotated import rotated_object

                found = rotated_object(obj, width, height)
                if found is None:
                    continue
                entry["points"] = found[0].tolist()
            out.setdefault(sid, []).append(entry)
    return out


def _unique(key: str, seen: set[str]) -> str:
    base, n = key, 1
    while key in seen:
        n += 1
        key = f"{base}-{n}"
    seen.add(key)
    return key


@job_handler("pipeline_run")
def run_pipeline(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    spec = PipelineSpec.model_validate(ctx.params["spec"])
    source = ctx.params["source"]
    dry_run = bool(ctx.params.get("dry_run"))
    tag = ctx.params.get("tag")
    items, input_errors = _items(studio, source)
    run_id = new_run_id()
    started = utcnow()
    saver = OutputSaver(spec=spec, home=studio.home, run_id=run_id, blobs=studio.store, dry_run=dry_run)
    try:
        runner = Runner(spec, saver)
    except StageError as exc:
        raise PermanentJobError(str(exc)) from exc
    if not dry_run:
        with studio.sessions.begin() as s:
            s.add(
                Run(
                    id=run_id,
                    pipeline=spec.name,
                    version=spec.version,
                    version_hash=spec.version_hash(),
                    tag=tag,
                    mode=spec.output_mode,
                    status="running",
                    input=source,
                    spec=spec.model_dump(),
                    outputs_dir=saver.run_dir.relative_to(studio.home).as_posix(),
                    job_id=ctx.job_id,
                    started_at=started,
                )
            )
    t0 = time.perf_counter()
    reports: list[ItemReport] = []
    status = "succeeded"
    try:
        for rep in runner.run(items):
            reports.append(rep)
            ctx.progress(len(reports), len(items), rep.key)
            ctx.check_cancelled()
    except JobCancelled:
        status = "cancelled"
    duration_ms = (time.perf_counter() - t0) * 1000
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    audit = build_audit(
        run_id=run_id,
        spec=spec,
        reports=reports,
        started_at=started,
        duration_ms=duration_ms,
        peak_memory_mb=peak_mb,
        tag=tag,
        source=source,
        dry_run=dry_run,
    )
    if status != "cancelled":
        # a file the input reader refused (unreadable, a link leaving the folder) failed too
        bad = len(input_errors)
        status = run_status(items=len(reports) + bad, failed=audit["failed"] + bad)
    audit["input_errors"] = input_errors
    audit["status"] = status
    summary = {
        "id": run_id,
        "status": status,
        "items": len(reports),
        "failed": audit["failed"],
        "mistakes": audit["mistakes"],
        "dry_run": dry_run,
        "duration_ms": round(duration_ms, 1),
    }
    if dry_run:  # the job's result is all a dry run leaves: its summary, not every item's record
        return {"run": {**summary, "stages": audit["stages"], "errors": audit["errors"]}}
    _record(studio, run_id=run_id, spec=spec, saver=saver, reports=reports, audit=audit, status=status)
    if status == "cancelled":
        raise JobCancelled()
    return {"run": get_run(studio, run_id)}


def run_status(*, items: int, failed: int) -> str:
    """``failed`` when every item failed, ``partial`` when some did, ``succeeded`` when none did
    (a run with no items included: nothing failed)."""
    if failed and failed >= items:
        return "failed"
    return "partial" if failed else "succeeded"


def _record(
    studio: Studio,
    *,
    run_id: str,
    spec: PipelineSpec,
    saver: OutputSaver,
    reports: list[ItemReport],
    audit: dict[str, Any],
    status: str,
) -> None:
    audit_path = saver.write_run_files("audit.json", json.dumps(audit, indent=2, default=str).encode())
    saver.write_run_files("metrics.parquet", metrics_table(run_id, reports))
    if spec.output_mode == "validation":
        saver.write_run_files("error_table.csv", error_table_csv(reports))
        saver.write_run_files("confusion.json", json.dumps(audit["errors"], indent=2).encode())
    report_path = saver.write_run_files("report.html", render_report(audit, home=studio.home))
    saved = [s for rep in reports for s in rep.saved]
    with studio.sessions.begin() as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.status = status
        run.items = audit["items"]
        run.failed = audit["failed"]
        run.mistakes = audit["mistakes"]
        run.duration_ms = audit["duration_ms"]
        run.peak_memory_mb = audit["peak_memory_mb"]
        run.metrics = _mean_metrics(reports)
        run.audit_path, run.report_path = audit_path, report_path
        run.bytes_saved = sum(x.bytes for x in saved)
        run.finished_at = utcnow()
        for st in stage_summary(spec, reports):
            s.add(
                RunStage(
                    run_id=run_id,
                    stage=st["stage"],
                    position=st["position"],
                    ok=st["ok"],
                    failed=st["failed"],
                    total_ms=st["duration_ms"],
                    outputs_saved=st["outputs_saved"],
                )
            )
        for x in saved:
            s.add(
                RunOutput(
                    run_id=run_id,
                    item=x.item,
                    stage=x.stage,
                    name=x.name,
                    kind=x.kind,
                    path=x.path,
                    sha256=x.sha256,
                    bytes=x.bytes,
                )
            )
        studio.store.acquire_many(
            s, [(ARTIFACT_KIND, x.sha256, x.bytes, "") for x in saved if x.kind == "artifact" and x.sha256]
        )


def _mean_metrics(reports: list[ItemReport]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for rep in reports:
        for st in rep.stages:
            for k, v in st.metrics.items():
                sums.setdefault(f"{st.name}.{k}", []).append(v)
    return {k: round(sum(v) / len(v), 6) for k, v in sorted(sums.items())}


# --- queries ------------------------------------------------------------------------------------


def run_dict(run: Run, stages: list[RunStage] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": run.id,
        "pipeline": run.pipeline,
        "version": run.version,
        "version_hash": run.version_hash,
        "tag": run.tag,
        "mode": run.mode,
        "status": run.status,
        "items": run.items,
        "failed": run.failed,
        "mistakes": run.mistakes,
        "duration_ms": run.duration_ms,
        "peak_memory_mb": run.peak_memory_mb,
        "metrics": run.metrics,
        "input": run.input,
        "outputs_dir": run.outputs_dir,
        "audit_path": run.audit_path,
        "report_path": run.report_path,
        "bytes_saved": run.bytes_saved,
        "job_id": run.job_id,
        "started_at": run.started_at.isoformat() + "Z",
        "finished_at": run.finished_at.isoformat() + "Z" if run.finished_at else None,
    }
    if stages is not None:
        d["stages"] = [
            {
                "stage": st.stage,
                "ok": st.ok,
                "failed": st.failed,
                "total_ms": st.total_ms,
                "mean_ms": round(st.total_ms / max(1, st.ok + st.failed), 3),
                "outputs_saved": st.outputs_saved,
            }
            for st in sorted(stages, key=lambda x: x.position)
        ]
    return d


def get_run(studio: Studio, run_id: str) -> dict[str, Any]:
    with studio.sessions() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        stages = list(s.scalars(select(RunStage).where(RunStage.run_id == run_id)))
        return run_dict(run, stages)


def list_runs(
    studio: Studio,
    *,
    pipeline: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    tag: str | None = None,
    slower_than_ms: float | None = None,
    metric: str | None = None,
    metric_above: float | None = None,
    metric_below: float | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    q = select(Run)
    if pipeline:
        q = q.where(Run.pipeline == pipeline)
    if since:
        q = q.where(Run.started_at >= since)
    if until:
        q = q.where(Run.started_at <= until)
    if status:
        q = q.where(Run.status.in_(status.split(",")))
    if tag:
        q = q.where(Run.tag == tag)
    if slower_than_ms is not None:
        q = q.where(Run.duration_ms > slower_than_ms)
    q = q.order_by(Run.started_at.desc(), Run.id.desc())
    with studio.sessions() as s:
        if not metric:  # a page of rows and a count, in the database
            total = s.scalar(select(func.count()).select_from(q.order_by(None).subquery())) or 0
            page = list(s.scalars(q.offset(offset).limit(limit)))
            return {"items": [run_dict(r) for r in page], "total": total}
        rows = list(s.scalars(q))
    # metrics are a small JSON per run: filtered here, portable across databases
    rows = [
        r
        for r in rows
        if metric in r.metrics
        and (metric_above is None or r.metrics[metric] > metric_above)
        and (metric_below is None or r.metrics[metric] < metric_below)
    ]
    return {"items": [run_dict(r) for r in rows[offset : offset + limit]], "total": len(rows)}


def compare_runs(studio: Studio, a: str, b: str, *, threshold: float = 0.05) -> dict[str, Any]:
    """Metric deltas, per-stage timing deltas and per-item differences of two runs.

    A stage time or metric that changed by more than ``threshold`` (a fraction: 0.05 is 5 %) is
    ``changed``. A regression is a stage's mean time that got worse by more than ``threshold`` and
    ``MIN_SLOWDOWN_MS``, more failed items or mistakes, or an item that succeeded in ``a`` and
    failed (or became a mistake) in ``b``. Metric deltas are marked, not judged: whether higher
    is better depends on the metric.
    """
    ra, rb = get_run(studio, a), get_run(studio, b)
    audits = [_audit(studio, r) for r in (ra, rb)]
    metrics = {}
    for k in sorted(set(ra["metrics"]) | set(rb["metrics"])):
        va, vb = ra["metrics"].get(k), rb["metrics"].get(k)
        delta = None if va is None or vb is None else vb - va
        rel = None if delta is None or not va else delta / abs(va)
        # from zero any change is infinitely relative: marked whenever there is one
        changed = bool(delta) and (rel is None or abs(rel) > threshold)
        metrics[k] = {"a": va, "b": vb, "delta": delta, "relative": rel, "changed": changed}
    stages = {}
    sa = {x["stage"]: x for x in ra["stages"]}
    for x in rb["stages"]:
        y = sa.get(x["stage"])
        if y:
            rel = (x["mean_ms"] - y["mean_ms"]) / y["mean_ms"] if y["mean_ms"] else None
            changed = rel is not None and abs(rel) > threshold
            # a change past the threshold is always marked; only one past the timer's noise too
            # (MIN_SLOWDOWN_MS per item) counts as a regression
            within_noise = abs(x["mean_ms"] - y["mean_ms"]) <= MIN_SLOWDOWN_MS
            stages[x["stage"]] = {
                "a_ms": y["mean_ms"],
                "b_ms": x["mean_ms"],
                "relative": rel,
                "changed": changed,
                "slower": changed and rel is not None and rel > 0,
                "within_noise": changed and within_noise,
                "regression": changed and rel is not None and rel > 0 and not within_noise,
            }
    items_a = {i["item"]: i for i in audits[0].get("per_item", [])}
    items = []
    for i in audits[1].get("per_item", []):
        j = items_a.get(i["item"])
        if j is None:
            continue
        bad_b = i["status"] == "failed" or (
            i["ground_truth"] is not None and i["prediction"] != i["ground_truth"]
        )
        bad_a = j["status"] == "failed" or (
            j["ground_truth"] is not None and j["prediction"] != j["ground_truth"]
        )
        if (i["status"], i["prediction"]) != (j["status"], j["prediction"]):
            items.append(
                {
                    "item": i["item"],
                    "a": {"status": j["status"], "prediction": j["prediction"], "outputs": j["outputs"]},
                    "b": {"status": i["status"], "prediction": i["prediction"], "outputs": i["outputs"]},
                    "regression": bad_b and not bad_a,
                }
            )
    regressions = [f"stage {k} {v['relative']:+.0%} slower" for k, v in stages.items() if v["regression"]]
    regressions += [f"item {x['item']} got worse" for x in items if x["regression"]]
    if ra["failed"] < rb["failed"]:
        regressions.append(f"failed items {ra['failed']} → {rb['failed']}")
    if ra["mistakes"] < rb["mistakes"]:
        regressions.append(f"mistakes {ra['mistakes']} → {rb['mistakes']}")
    return {
        "a": ra,
        "b": rb,
        "same_pipeline": ra["pipeline"] == rb["pipeline"],
        "metrics": metrics,
        "stages": stages,
        "items": items,
        "regressions": regressions,
        "threshold": threshold,
    }


def _audit(studio: Studio, run: dict[str, Any]) -> dict[str, Any]:
    if not run.get("audit_path"):
        return {}
    p = studio.home / run["audit_path"]
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return {}


def disk_usage(studio: Studio) -> dict[str, Any]:
    with studio.sessions() as s:
        per_mode = dict(s.execute(select(Run.mode, func.sum(Run.bytes_saved)).group_by(Run.mode)).all())
        biggest = s.execute(select(Run.id, Run.bytes_saved).order_by(Run.bytes_saved.desc()).limit(20)).all()
    return {
        "per_mode": {m: int(per_mode.get(m) or 0) for m in MODES},
        "largest_runs": [{"id": i, "bytes": int(b)} for i, b in biggest],
    }


def clean_runs(
    studio: Studio,
    *,
    older_than_days: float | None = None,
    run_ids: list[str] | None = None,
    keep_errors: bool = False,
    keep_tagged: bool = True,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Delete runs (their folders, rows, and references to artifacts); shared blobs stay."""
    if older_than_days is None and not run_ids:
        raise InvalidInput("say which runs to clean: --older-than DAYS or run ids")
    q = select(Run).where(Run.status != "running")
    if older_than_days is not None:
        q = q.where(Run.started_at < utcnow() - timedelta(days=older_than_days))
    if run_ids:
        q = q.where(Run.id.in_(run_ids))
    with studio.sessions() as s:
        runs = list(s.scalars(q))
        if run_ids and len(runs) < len(set(run_ids)):
            found = {r.id for r in runs}
            missing = [r for r in run_ids if r not in found]
            raise NotFound(f"runs not found or still running: {', '.join(missing)}")
    named = set(run_ids or ())
    # tags and errors protect runs from age-based cleaning; a run named explicitly is deleted
    chosen = [
        r
        for r in runs
        if r.id in named or not ((keep_tagged and r.tag) or (keep_errors and (r.failed or r.mistakes)))
    ]
    freed = sum(r.bytes_saved for r in chosen)
    if dry_run:
        return {"dry_run": True, "runs": [r.id for r in chosen], "bytes": freed}
    blobs = 0
    for r in chosen:
        with studio.sessions.begin() as s:
            shas = list(
                s.scalars(
                    select(RunOutput.sha256).where(RunOutput.run_id == r.id, RunOutput.kind == "artifact")
                )
            )
            for sha in shas:
                if sha:
                    studio.store.release(s, ARTIFACT_KIND, sha)
            s.execute(delete(Run).where(Run.id == r.id))
        folder = studio.home / MODE_ROOTS.get(r.mode, "runs") / r.id
        if folder.is_dir():
            studio.store.remove_file(folder)
    with studio.sessions.begin() as s:
        blobs = studio.store.gc(s)
    return {"dry_run": False, "runs": [r.id for r in chosen], "bytes": freed, "blobs_removed": blobs}
