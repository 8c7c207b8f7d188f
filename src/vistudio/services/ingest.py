"""Import: read a source (folder, COCO, YOLO, VOC, CSV, or a zip of one), probe every image in parallel,
store originals and thumbnails, record samples and annotations, and report what happened.

Counting rules of the report: ``imported`` new samples; ``skipped`` images already in the project
(so a re-import adds only what is new, and a resumed import skips what it had done); ``duplicates``
images whose content equals another image of the same source (one sample is kept; what the copy's
annotations add is settled by ``_reconcile``, never dropped);
``failed`` items with their reason; ``unlabelled`` the new samples that came without any
annotation (an image without a mask, a YOLO image without a label file). The same image never
becomes two samples: ``(project, sha256)`` is unique.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from vistudio.db import Annotation, LabelClass, Sample, SampleTag, utcnow
from vistudio.errors import InvalidInput, NotFound
from vistudio.ingest.pool import HashPrefixes, init_worker, probe_and_store, probe_task
from vistudio.ingest.readers import detect_format, known_formats, read_source
from vistudio.ingest.types import Annotation as SourceAnnotation
from vistudio.ingest.types import ParsedSource, SourceError, SourceItem
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.services import text_index
from vistudio.services.places import file_time, fill_new_samples
from vistudio.services.projects import find_project
from vistudio.studio import Studio

MODES = ("copy", "reference")
MAX_REPORTED = 1000  # failed/duplicate rows kept in a report; the counts stay exact


def start_import(
    studio: Studio,
    *,
    project: str | int,
    source: Path,
    fmt: str | None = None,
    mode: str = "copy",
    uploaded: bool = False,
) -> dict[str, Any]:
    """Validate the request and queue an import job. Returns the job as a dict."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    source = Path(source).expanduser()
    if not source.exists():
        raise NotFound(f"source not found: {source}")
    source = source.resolve()
    fmt = fmt or detect_format(source)
    if fmt not in known_formats():
        raise InvalidInput(f"unknown format {fmt!r}; use one of {', '.join(known_formats())}")
    if source.suffix.lower() == ".zip" and mode == "reference":
        raise InvalidInput(
            "a zip is unpacked into the workspace, so it can only be imported with --mode copy"
        )
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id = p.id
    from vistudio.jobs.queue import job_dict

    job = studio.queue.enqueue(
        "import",
        {"source": str(source), "format": fmt, "mode": mode, "uploaded": uploaded},
        project_id=project_id,
    )
    return job_dict(job)


# --- probing, in pool processes ----------------------------------------------------------------

# Below this many images an import probes in-process: starting pool processes costs about a
# second, more than probing a few dozen images.
POOL_MIN_ITEMS = 32
# Tasks in flight at once per worker process: enough to keep the pool busy, few enough that a
# million-image import does not queue a million tasks up front.
WINDOW_PER_WORKER = 64
CRASHED = "reading this file crashed its worker process (a decoder fault, or not enough memory)"


def _results(
    items: list[SourceItem], *, mode: str, studio: Studio, known: frozenset[str]
) -> Iterator[tuple[SourceItem, dict[str, Any]]]:
    """Probe every item (in order), yielding it with its result."""
    cfg = studio.settings.imports
    home = str(studio.home)
    if cfg.workers <= 1 or len(items) < POOL_MIN_ITEMS:
        files = studio.store
        for it in items:
            yield it, probe_and_store(it.path, mode=mode, store=files, known=known)
        return
    # spawn: the parent may be a threaded server; forking it could copy held locks
    ctx = multiprocessing.get_context("spawn")
    window = cfg.workers * WINDOW_PER_WORKER

    prefixes = HashPrefixes(known)

    def new_pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=init_worker, initargs=(prefixes,)
        )

    def checked(
        pairs: Iterator[tuple[SourceItem, dict[str, Any]]],
    ) -> Iterator[tuple[SourceItem, dict[str, Any]]]:
        """Workers answer "known" from hash prefixes: a false match is probed again here."""
        files = studio.store
        for it, res in pairs:
            if res["status"] == "known" and res["sha256"] not in known:
                res = probe_and_store(it.path, mode=mode, store=files, known=frozenset())
            yield it, res

    # a remote store travels as its spec (a local one needs only the workspace folder)
    spec = studio.store.spec() if studio.store.remote else None

    def task(it: SourceItem) -> tuple[str, str, str, int, dict[str, Any] | None]:
        return (str(it.path), mode, home, cfg.thumb_size, spec)

    pool = new_pool(cfg.workers)
    try:
        for lo in range(0, len(items), window):
            chunk = items[lo : lo + window]
            done = 0
            try:
                for pair in checked(
                    zip(chunk, pool.map(probe_task, [task(it) for it in chunk], chunksize=4), strict=True)
                ):
                    done += 1
                    yield pair
            except BrokenProcessPool:
                # a file killed its worker (a decoder fault, the out-of-memory killer): go through
                # the rest of this window one file at a time to find it, then in parallel again
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool(1)
                for it in chunk[done:]:
                    try:
                        result = pool.submit(probe_task, task(it)).result()
                    except BrokenProcessPool:
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = new_pool(1)
                        # transient: out of memory is as likely as a bad file; a library
                        # scan keeps the photo it had and reads the file again next time
                        result = {"status": "error", "reason": CRASHED, "transient": True}
                    yield from checked(iter([(it, result)]))
                pool.shutdown(wait=True)
                pool = new_pool(cfg.workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def probe_items(
    items: list[SourceItem], *, mode: str, studio: Studio, known: frozenset[str]
) -> Iterator[tuple[SourceItem, dict[str, Any]]]:
    """Probe and store every item, in order, with the import's pool (public entry for other jobs:
    the library scan). Each result is ``probe_and_store``'s: ok, known or error."""
    return _results(items, mode=mode, studio=studio, known=known)


# --- the job -----------------------------------------------------------------------------------


class _Writer:
    """Accumulates new samples and writes them in batches, one transaction each."""

    def __init__(
        self, studio: Studio, project_id: int, mode: str, class_ids: dict[str, int], *, labels_as_tags: bool
    ) -> None:
        self.studio = studio
        self.labels_as_tags = labels_as_tags
        self.project_id = project_id
        self.mode = mode
        self.class_ids = class_ids
        self.pending: list[tuple[SourceItem, dict[str, Any]]] = []
        self.imported = 0
        self.annotations = 0
        self.unlabelled = 0  # new samples that came without any annotation

    def add(self, item: SourceItem, probe: dict[str, Any]) -> None:
        self.pending.append((item, probe))
        if len(self.pending) >= self.studio.settings.imports.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write the pending samples, their annotations or tags, and their blob references."""
        if not self.pending:
            return
        store = self.studio.store
        with self.studio.sessions.begin() as s:
            rows = [self._sample_row(item, pr) for item, pr in self.pending]
            fill_new_samples(self.studio, rows)
            ids = s.scalars(insert(Sample).returning(Sample.id, sort_by_parameter_order=True), rows).all()
            annotations: list[dict[str, Any]] = []
            tags: list[dict[str, Any]] = []
            refs: list[tuple[str, str, int, str]] = []
            for sample_id, (item, pr) in zip(ids, self.pending, strict=True):
                for a in item.annotations:
                    if self.labels_as_tags and a.kind == "label" and a.class_name:
                        tags.append({"sample_id": sample_id, "tag": a.class_name[:100]})
                annotations.extend(self.annotation_rows(s, sample_id, item))
                refs.append(("thumbnail", pr["sha256"], pr["thumb_size"], ""))
                if self.mode == "copy":
                    refs.append(("original", pr["sha256"], pr["bytes"], pr["ext"]))
            if annotations:
                s.execute(insert(Annotation), annotations)
            if tags:
                s.execute(
                    insert(SampleTag).prefix_with("OR IGNORE") if _is_sqlite(s) else insert(SampleTag), tags
                )
            store.acquire_many(s, refs)
            text_index.sync(s, ids)
            self.annotations += len(annotations)
        self.imported += len(self.pending)
        self.unlabelled += sum(not item.annotations for item, _ in self.pending)
        self.pending = []

    def annotation_rows(self, s: Any, sample_id: int, item: SourceItem) -> list[dict[str, Any]]:
        """The annotation rows of ``item`` for sample ``sample_id`` (a library's labels are tags)."""
        rows = []
        for a in item.annotations:
            if self.labels_as_tags and a.kind == "label" and a.class_name:
                continue
            if a.class_name and a.class_name not in self.class_ids:
                self.class_ids[a.class_name] = _ensure_class(s, self.project_id, a.class_name)
            class_id = self.class_ids.get(a.class_name) if a.class_name else None
            rows.append(
                {"sample_id": sample_id, "kind": a.kind, "class_id": class_id, "geometry": a.geometry}
            )
        return rows

    def _sample_row(self, item: SourceItem, pr: dict[str, Any]) -> dict[str, Any]:
        path = (
            self.studio.store.key("original", pr["sha256"], pr["ext"])
            if self.mode == "copy"
            else str(item.path)
        )
        return {
            "project_id": self.project_id,
            "sha256": pr["sha256"],
            "name": item.name,
            "storage": self.mode,
            "path": path,
            "imported_at": utcnow(),
            "dup_group": None,
            "file_time": file_time(item.path, scratch=self.studio.tmp),
            **{k: pr[k] for k in SAMPLE_FIELDS},
        }


SAMPLE_FIELDS = (
    "width",
    "height",
    "format",
    "bytes",
    "taken_at",
    "camera_make",
    "camera_model",
    "lens",
    "gps_lat",
    "gps_lon",
    "orientation",
    "phash",
    "exif",
)


def _is_sqlite(s: Any) -> bool:
    return bool(s.get_bind().dialect.name == "sqlite")


def _ensure_class(s: Any, project_id: int, name: str) -> int:
    existing = s.scalar(
        select(LabelClass.id).where(LabelClass.project_id == project_id, LabelClass.name == name)
    )
    if existing is not None:
        return int(existing)
    ordinal = s.scalar(
        select(LabelClass.ordinal)
        .where(LabelClass.project_id == project_id)
        .order_by(LabelClass.ordinal.desc())
        .limit(1)
    )
    row = LabelClass(project_id=project_id, name=name, ordinal=0 if ordinal is None else ordinal + 1)
    s.add(row)
    s.flush()
    return row.id


CONFLICT_TAG = "label-conflict"


def _annotation_set(annotations: list[SourceAnnotation]) -> set[str]:
    return {json.dumps([a.kind, a.class_name, a.geometry], sort_keys=True) for a in annotations}


def _reconcile(writer: _Writer, differing: list[tuple[dict[str, str], SourceItem]]) -> int:
    """Settle the duplicates of a source whose annotations the kept copy lacks, so that none is
    silently dropped: a photo library takes the copy's folder tags too (``merged``); a kept copy
    without annotations takes the copy's (``adopted``); otherwise the two copies disagree: the
    sample is tagged ``label-conflict`` for the user to decide, and the report names both files
    (``conflict``). The number of conflicts."""
    if not differing:
        return 0
    conflicts = 0
    with writer.studio.sessions.begin() as s:
        ids = dict(
            s.execute(
                select(Sample.sha256, Sample.id).where(
                    Sample.project_id == writer.project_id,
                    Sample.sha256.in_({entry["sha256"] for entry, _ in differing}),
                )
            ).all()
        )
        adopted: dict[int, set[str]] = {}  # sample → the annotations it took from a copy
        for entry, item in differing:
            sample_id = ids.get(entry["sha256"])
            if sample_id is None:  # the kept copy was not written (a cancel before its batch)
                continue
            if writer.labels_as_tags:
                entry["labels"] = "merged"
                tags = {a.class_name[:100] for a in item.annotations if a.kind == "label" and a.class_name}
                _add_tags(s, sample_id, tags)
                continue
            if (
                sample_id not in adopted
                and s.scalar(select(Annotation.id).where(Annotation.sample_id == sample_id).limit(1)) is None
            ):
                entry["labels"] = "adopted"
                adopted[sample_id] = _annotation_set(item.annotations)
                rows = writer.annotation_rows(s, sample_id, item)
                s.execute(insert(Annotation), rows)
                writer.annotations += len(rows)
                writer.unlabelled -= 1
            elif sample_id not in adopted or _annotation_set(item.annotations) - adopted[sample_id]:
                entry["labels"] = "conflict"
                conflicts += 1
                _add_tags(s, sample_id, {CONFLICT_TAG})
        text_index.sync(s, ids.values())
    return conflicts


def _add_tags(s: Any, sample_id: int, tags: set[str]) -> None:
    have = set(s.scalars(select(SampleTag.tag).where(SampleTag.sample_id == sample_id)))
    rows = [{"sample_id": sample_id, "tag": t} for t in sorted(tags - have)]
    if rows:
        s.execute(insert(SampleTag), rows)


def _read(studio: Studio, ctx: JobContext, source: Path, fmt: str) -> tuple[ParsedSource, Path]:
    work = studio.tmp / f"import-{ctx.job_id}"
    if work.exists():  # a previous attempt's half-extracted zip
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        return read_source(source, fmt, work_dir=work), work
    except SourceError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise PermanentJobError(str(exc)) from exc


@job_handler("import")
def run_import(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    params = ctx.params
    source, fmt, mode = Path(params["source"]), params["format"], params["mode"]
    if ctx.project_id is None:
        raise PermanentJobError("the project of this import was deleted")
    if not source.exists():
        raise PermanentJobError(f"source not found: {source}")
    ctx.progress(0, None, "reading source", force=True)
    parsed, work = _read(studio, ctx, source, fmt)
    project_id = ctx.project_id
    with studio.sessions.begin() as s:
        # A photo library has no classes: folder names become tags to filter by.
        labels_as_tags = find_project(s, project_id).task == "library"
        class_ids = (
            {} if labels_as_tags else {name: _ensure_class(s, project_id, name) for name in parsed.classes}
        )
        known = frozenset(s.scalars(select(Sample.sha256).where(Sample.project_id == project_id)))
    failed = [{"path": e.path, "reason": e.reason} for e in parsed.errors]
    duplicates: list[dict[str, str]] = []
    skipped = restored = 0
    seen: dict[str, SourceItem] = {}
    differing: list[tuple[dict[str, str], SourceItem]] = []  # duplicates labelled otherwise
    writer = _Writer(studio, project_id, mode, class_ids, labels_as_tags=labels_as_tags)
    total = len(parsed.items)
    done = 0
    try:
        for item, res in _results(parsed.items, mode=mode, studio=studio, known=known):
            done += 1
            ctx.check_cancelled()
            ctx.progress(done, total, item.name)
            if res["status"] == "error":
                failed.append({"path": item.name, "reason": res["reason"]})
            elif res["status"] == "known":
                skipped += 1
                restored += bool(res.get("restored"))
            else:
                sha = res["probe"]["sha256"]
                if sha in seen:
                    entry = {"path": item.name, "same_as": seen[sha].name, "sha256": sha, "labels": "same"}
                    duplicates.append(entry)
                    if _annotation_set(item.annotations) - _annotation_set(seen[sha].annotations):
                        differing.append((entry, item))
                else:
                    seen[sha] = item
                    writer.add(item, res["probe"])
    except JobCancelled:
        writer.flush()  # keep what is done: running the import again finishes it
        _reconcile(writer, differing)  # a resumed import skips both copies: settle them now
        raise
    writer.flush()
    conflicts = _reconcile(writer, differing)
    ctx.progress(total, total, "grouping near-duplicates", force=True)
    groups = update_near_duplicates(studio, project_id=project_id, ctx=ctx)
    from vistudio.services.embeddings import embed_new_samples
    from vistudio.services.faces import faces_for_new_samples

    embedding = embed_new_samples(studio, project_id) if writer.imported else None
    faces = faces_for_new_samples(studio, project_id) if writer.imported else None
    # originals are in media/ now (a zip is always imported in copy mode): the scratch goes
    shutil.rmtree(work, ignore_errors=True)
    if params.get("uploaded"):
        source.unlink(missing_ok=True)
    return {
        "report": {
            "source": str(source) if not params.get("uploaded") else source.name,
            "format": fmt,
            "mode": mode,
            "total": total + len(parsed.errors),
            "imported": writer.imported,
            "annotations": writer.annotations,
            "unlabelled": writer.unlabelled,
            "duplicates": len(duplicates),
            "label_conflicts": conflicts,
            "skipped": skipped,
            "restored": restored,
            "failed": failed[:MAX_REPORTED],
            "failed_count": len(failed),
            "duplicate_items": duplicates[:MAX_REPORTED],
            "classes": [] if labels_as_tags else parsed.classes,
            "near_duplicate_groups": groups,
            "embedding": embedding,
            "faces": faces,
            "attempt": ctx.attempt,
        }
    }


def update_near_duplicates(studio: Studio, *, project_id: int, ctx: JobContext | None = None) -> int:
    """Recompute the project's near-duplicate groups and mark their members (``dup_group``: the
    group's keeper); returns the number of groups.

    They are the duplicates page's perceptual groups at the default threshold, so a report and
    the page count the same groups.
    """
    from vistudio.services import duplicates  # numpy/scipy grouping: only when an import runs

    groups = duplicates.near_duplicate_groups(studio, project_id=project_id, ctx=ctx)
    with studio.sessions.begin() as s:
        s.execute(
            update(Sample)
            .where(Sample.project_id == project_id, Sample.dup_group.is_not(None))
            .values(dup_group=None)
        )
        alive = set(s.scalars(select(Sample.id).where(Sample.project_id == project_id)))
        rows = [
            {"id": sid, "dup_group": keeper} for keeper, members in groups for sid in members if sid in alive
        ]
        if rows:
            s.execute(update(Sample), rows)
    return len(groups)


def import_report(studio: Studio, job_id: int) -> dict[str, Any]:
    from vistudio.jobs.queue import job_dict

    job = studio.queue.get(job_id)
    if job.kind != "import":
        raise NotFound(f"job {job_id} is not an import")
    d = job_dict(job)
    return {"job": d, "report": (job.result or {}).get("report")}
