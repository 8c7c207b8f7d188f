"""Photo library: folders indexed in place (reference mode) and scanned incrementally.

A library project registers *roots* (folders on this machine). ``library_scan`` jobs walk them and
keep one ``library_files`` row per image file, pointing at the project's sample with that content.
Originals are only ever read: never written, moved or deleted.

A scan:

1. checks every root it scans (missing, not a folder, unreadable, or empty while files were
   indexed there: an unmounted drive) and stops before changing anything if one is unusable;
2. lists the roots and stats every image file (no reads): a file whose size and mtime equal its
   row's is unchanged;
3. reads new and changed files once, in the import's probe pool (``services.ingest.probe_items``):
   the same bytes give the hash, EXIF, perceptual hash and thumbnail. A changed file whose hash
   is the one it had is only "touched". Results are committed in small batches (by count and by
   time), so samples appear while the scan runs, and a killed scan resumes where it stopped:
   committed files are unchanged for the rerun;
4. checks the roots again and drops the rows of files that are gone (never under a folder the
   walk could not list); a sample whose last file went away leaves the project, its thumbnail
   reference is released and unreferenced blobs are collected.

A sample belongs to the library when it is stored by reference and its path lies under one of the
project's roots; samples imported otherwise (copy mode, or by reference from elsewhere) are
linked to identical library files but never removed by a scan.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vistudio.db import Annotation, Job, Project, Sample, SampleTag, utcnow
from vistudio.db.library import LibraryFile, LibraryRoot
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.ingest.pool import probe_and_store
from vistudio.ingest.safepath import walk_images
from vistudio.ingest.types import SourceError, SourceItem
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.services import text_index
from vistudio.services.ingest import SAMPLE_FIELDS, probe_items, update_near_duplicates
from vistudio.services.places import fill_new_samples, local_time
from vistudio.services.projects import find_project
from vistudio.studio import WORKSPACE_DIRS, Studio

JOB_KIND = "library_scan"
LIBRARY_TASK = "library"
MAX_REPORTED = 1000  # failed rows kept in a report; failed_count stays exact
MAX_ROOTS_PER_CALL = 100
FLUSH_SECONDS = 1.0  # a batch is committed at least this often, so new photos show up quickly
IN_CHUNK = 500  # ids per IN (...) list
REMOVE_CHUNK = 500


# --- roots ----------------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def root_problem(path: str | Path, *, indexed: int) -> str | None:
    """Why a root cannot be scanned now, or None.

    Missing, not a folder and unreadable roots are always refused. An *empty* root is refused when
    files were indexed there (an unmounted drive leaves its empty mount point behind): scanning it
    would remove every one of its photos from the library.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    try:
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if empty and indexed:
        return "empty (an unmounted drive?)"
    return None


def root_dict(r: LibraryRoot, *, files: int = 0, failed: int = 0, check: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": r.id,
        "project_id": r.project_id,
        "path": r.path,
        "files": files,
        "failed": failed,
        "added_at": _iso(r.added_at),
        "last_scan_at": _iso(r.last_scan_at),
        "last_report": r.last_report,
    }
    if check:
        d["problem"] = root_problem(r.path, indexed=files)
    return d


def _library_project(s: Session, ref: str | int) -> Project:
    p = find_project(s, ref)
    if p.task != LIBRARY_TASK:
        raise Conflict(
            f"library folders belong to projects of task {LIBRARY_TASK!r}; "
            f"project {p.name!r} is a {p.task} project",
            details={"task": p.task},
        )
    return p


def _file_counts(s: Session, root_ids: list[int]) -> dict[int, tuple[int, int]]:
    """``{root_id: (files, failed files)}``."""
    if not root_ids:
        return {}
    rows = s.execute(
        select(
            LibraryFile.root_id,
            func.count(),
            func.count(LibraryFile.error),
        )
        .where(LibraryFile.root_id.in_(root_ids))
        .group_by(LibraryFile.root_id)
    )
    return {rid: (int(n), int(bad)) for rid, n, bad in rows}


def _roots(s: Session, project_id: int) -> list[LibraryRoot]:
    return list(
        s.scalars(select(LibraryRoot).where(LibraryRoot.project_id == project_id).order_by(LibraryRoot.path))
    )


def _root_dicts(s: Session, roots: list[LibraryRoot], *, check: bool = False) -> list[dict[str, Any]]:
    counts = _file_counts(s, [r.id for r in roots])
    return [
        root_dict(r, files=counts.get(r.id, (0, 0))[0], failed=counts.get(r.id, (0, 0))[1], check=check)
        for r in roots
    ]


def check_root_path(
    raw: str | Path, *, home: Path, allowed: list[Path] | None = None, base: Path | None = None
) -> Path:
    """Validate a folder named by a user and return it resolved.

    ``allowed``: the folders the caller may name (the API passes ``settings.import_roots``; the
    CLI, run by the machine's own user, passes None). ``base``: what a relative path is relative
    to (the CLI's working folder); without it a relative path is refused.
    """
    text = str(raw)
    if "\x00" in text or not text.strip():
        raise InvalidInput("a library folder must be a non-empty path")
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~nosuchuser/…"
        raise InvalidInput(f"cannot expand the home folder in {text[:300]!r}") from None
    if not path.is_absolute():
        if base is None:
            raise InvalidInput(f"a library folder must be an absolute path (got {text[:300]!r})")
        path = base / path
    try:
        resolved = path.resolve()
        if allowed is not None and not any(
            resolved.is_relative_to(a.expanduser().resolve()) for a in allowed
        ):
            raise InvalidInput(
                f"{text[:300]} is outside the folders this server may read (setting VISTUDIO_IMPORT_ROOTS)",
                details={"setting": "import_roots", "import_roots": [str(a) for a in allowed]},
            )
        exists, is_dir = resolved.exists(), resolved.is_dir()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop (Python 3.11)
        raise InvalidInput(f"cannot use {text[:300]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not exists:
        raise NotFound(f"folder not found: {text[:300]}")
    if not is_dir:
        raise InvalidInput(f"not a folder: {text[:300]}")
    workspace = home.resolve()
    # A folder of photos inside the workspace (the demo's) is fine; the workspace itself and
    # vistudio's own folders (thumbnails, copies, exports…) are not photos to index.
    if resolved == workspace or (
        resolved.is_relative_to(workspace) and resolved.relative_to(workspace).parts[0] in WORKSPACE_DIRS
    ):
        raise InvalidInput(f"{text[:300]} is inside the vistudio workspace; choose a folder of your photos")
    return resolved


def add_roots(
    studio: Studio,
    *,
    project: str | int,
    paths: list[str] | list[Path],
    allowed: list[Path] | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Register folders with a library project (all or none). A folder already registered is kept
    as it is; one inside or around another root of the project is refused (its files would be
    indexed twice). Returns ``{"roots": [every root of the project], "added": [the new ones]}``."""
    if not paths:
        raise InvalidInput("name at least one folder")
    if len(paths) > MAX_ROOTS_PER_CALL:
        raise InvalidInput(f"at most {MAX_ROOTS_PER_CALL} folders at once")
    resolved = [check_root_path(p, home=studio.home, allowed=allowed, base=base) for p in paths]
    with studio.sessions.begin() as s:
        p = _library_project(s, project)
        existing = {Path(r.path) for r in _roots(s, p.id)}
        new: list[Path] = []
        for path in resolved:
            if path in existing or path in new:
                continue
            for other in [*existing, *new]:
                if path.is_relative_to(other) or other.is_relative_to(path):
                    raise Conflict(
                        f"{path} overlaps the library folder {other}: its files would be indexed twice",
                        details={"path": str(path), "root": str(other)},
                    )
            new.append(path)
        rows = [LibraryRoot(project_id=p.id, path=str(path), added_at=utcnow()) for path in new]
        s.add_all(rows)
        s.flush()
        added_ids = {r.id for r in rows}
        roots = _root_dicts(s, _roots(s, p.id))
    return {"roots": roots, "added": [r for r in roots if r["id"] in added_ids]}


def list_roots(studio: Studio, *, project: str | int, check: bool = True) -> dict[str, Any]:
    """The project's roots with their file counts (``check``: also whether each is usable now)."""
    with studio.sessions() as s:
        p = _library_project(s, project)
        items = _root_dicts(s, _roots(s, p.id), check=check)
    return {"items": items, "total": len(items)}


def _find_root(s: Session, project_id: int, ref: str | int) -> LibraryRoot:
    """A root by id or by path (as given, or resolved)."""
    text = str(ref)
    row: LibraryRoot | None = None
    if text.isascii() and text.isdigit() and len(text) <= 18:
        row = s.scalar(
            select(LibraryRoot).where(LibraryRoot.project_id == project_id, LibraryRoot.id == int(text))
        )
    if row is None and "\x00" not in text:
        candidates = {text}
        with contextlib.suppress(OSError, RuntimeError):
            candidates.add(str(Path(text).expanduser().resolve()))
        row = s.scalar(
            select(LibraryRoot).where(LibraryRoot.project_id == project_id, LibraryRoot.path.in_(candidates))
        )
    if row is None:
        raise NotFound(f"no library folder {text[:300]!r} in this project")
    return row


def _active_scan(s: Session, project_id: int) -> Job | None:
    return s.scalar(
        select(Job)
        .where(Job.kind == JOB_KIND, Job.project_id == project_id, Job.status.in_(("queued", "running")))
        .order_by(Job.id)
        .limit(1)
    )


def remove_root(studio: Studio, *, project: str | int, root: str | int) -> dict[str, Any]:
    """Unregister a root: its files leave the index and samples no other file holds leave the
    project (their blobs are released). The folder itself is not touched."""
    with studio.sessions.begin() as s:
        p = _library_project(s, project)
        active = _active_scan(s, p.id)
        if active is not None:
            raise Conflict(
                f"a scan of project {p.name!r} is {active.status} (job {active.id}); wait for it or cancel it",
                details={"job": active.id},
            )
        r = _find_root(s, p.id, root)
        root_paths = [x.path for x in _roots(s, p.id)]
        files, failed = _file_counts(s, [r.id]).get(r.id, (0, 0))
        info = root_dict(r, files=files, failed=failed)
        sample_ids = {
            sid
            for sid in s.scalars(select(LibraryFile.sample_id).where(LibraryFile.root_id == r.id))
            if sid is not None
        }
        s.execute(delete(LibraryFile).where(LibraryFile.root_id == r.id))
        from vistudio.services.videos import drop_root_videos

        videos_dropped = drop_root_videos(studio, s, r.id)  # its videos' keyframes
        s.execute(delete(LibraryRoot).where(LibraryRoot.id == r.id))
        dropped = _drop_orphans(studio, s, project_id=p.id, candidates=sample_ids, root_paths=root_paths)
    # blobs in a second transaction, as when a project is deleted: a crash in between leaves
    # zero-reference rows that the next gc collects
    with studio.sessions.begin() as s:
        blobs = studio.store.gc(s)
    if dropped:
        update_near_duplicates(studio, project_id=p.id)
    return {"removed": info, "samples_removed": dropped + videos_dropped, "blobs_removed": blobs}


def list_files(
    studio: Studio,
    *,
    project: str | int,
    root: str | int | None = None,
    failed: bool | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """Indexed files of a library project (``failed``: only those that are not usable images)."""
    with studio.sessions() as s:
        p = _library_project(s, project)
        stmt = (
            select(LibraryFile, LibraryRoot.path)
            .join(LibraryRoot, LibraryRoot.id == LibraryFile.root_id)
            .where(LibraryRoot.project_id == p.id)
        )
        if root is not None:
            stmt = stmt.where(LibraryFile.root_id == _find_root(s, p.id, root).id)
        if failed is not None:
            stmt = stmt.where(LibraryFile.error.is_not(None) if failed else LibraryFile.error.is_(None))
        total = (
            s.scalar(select(func.count()).select_from(stmt.with_only_columns(LibraryFile.id).subquery())) or 0
        )
        rows = s.execute(
            stmt.order_by(LibraryFile.root_id, LibraryFile.path).offset(offset).limit(limit)
        ).all()
        items = [
            {
                "id": f.id,
                "root_id": f.root_id,
                "root": root_path,
                "path": f.path,
                "size": f.size,
                "mtime": f.mtime,
                "sha256": f.sha256,
                "sample_id": f.sample_id,
                "error": f.error,
                "seen_at": _iso(f.seen_at),
            }
            for f, root_path in rows
        ]
    return {"items": items, "total": total, "offset": offset, "limit": limit}


# --- starting and reading scans -----------------------------------------------------------------


def start_scan(studio: Studio, *, project: str | int, roots: list[str | int] | None = None) -> dict[str, Any]:
    """Queue a scan of the project's roots (all, or those named). A scan already queued for the
    project (say, one whose process died and that was requeued) is returned instead of a new one;
    a running one is a conflict."""
    studio.queue.reap_expired()  # a scan whose worker died goes back to the queue, to be resumed
    with studio.sessions() as s:
        p = _library_project(s, project)
        all_roots = _roots(s, p.id)
        if not all_roots:
            raise InvalidInput(
                f"project {p.name!r} has no library folders; add one first (vistudio library add)"
            )
        selected = sorted({_find_root(s, p.id, r).id for r in roots}) if roots else None
        active = _active_scan(s, p.id)
        project_id, name = p.id, p.name
    if active is not None:
        if active.status == "queued":
            return job_dict(active)
        raise Conflict(
            f"a scan of project {name!r} is already running (job {active.id}); if its process died, "
            f"it is resumed once its lease expires (VISTUDIO_JOBS__LEASE_SECONDS)",
            details={"job": active.id},
        )
    job = studio.queue.enqueue(JOB_KIND, {"roots": selected}, project_id=project_id)
    return job_dict(job)


def scan_report(studio: Studio, job_id: int) -> dict[str, Any]:
    job = studio.queue.get(job_id)
    if job.kind != JOB_KIND:
        raise NotFound(f"job {job_id} is not a library scan")
    return {"job": job_dict(job), "report": (job.result or {}).get("report")}


def latest_scan(studio: Studio, *, project: str | int) -> dict[str, Any] | None:
    """The project's most recent scan job with its report, or None."""
    with studio.sessions() as s:
        p = _library_project(s, project)
    items, _ = studio.queue.list(kind=JOB_KIND, project_id=p.id, limit=1)
    if not items:
        return None
    return {"job": job_dict(items[0]), "report": (items[0].result or {}).get("report")}


# --- sample bookkeeping shared by the scan and root removal ------------------------------------


def _chunks(seq: Iterable[Any], n: int = IN_CHUNK) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for x in seq:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _owned(path: str, root_paths: list[str]) -> bool:
    """A sample the library created: stored by reference under one of the project's roots."""
    return any(path.startswith(rp.rstrip(os.sep) + os.sep) for rp in root_paths)


def _drop_orphans(
    studio: Studio,
    s: Session,
    *,
    project_id: int,
    candidates: set[int],
    root_paths: list[str],
    successors: dict[int, int] | None = None,
) -> int:
    """Remove library samples among ``candidates`` that no library file holds any more (releasing
    their thumbnails); point the others at a file they still have. Returns the number removed.

    ``successors``: old sample → the sample its file's new content made (a photo edited in place);
    a dropped sample's tags and labels move to its successor rather than being lost."""
    if not candidates:
        return 0
    linked: set[int] = set()
    for chunk in _chunks(candidates):
        linked.update(
            s.scalars(select(LibraryFile.sample_id).where(LibraryFile.sample_id.in_(chunk)).distinct())
        )
    dropped: list[int] = []
    for chunk in _chunks(candidates - linked):
        for sid, sha, storage, path in s.execute(
            select(Sample.id, Sample.sha256, Sample.storage, Sample.path).where(
                Sample.id.in_(chunk), Sample.project_id == project_id
            )
        ):
            if storage == "reference" and _owned(path, root_paths):
                studio.store.release(s, "thumbnail", sha)
                dropped.append(sid)
    _carry_over(s, {old: new for old, new in (successors or {}).items() if old in set(dropped)})
    for chunk in _chunks(dropped):
        s.execute(delete(Sample).where(Sample.id.in_(chunk)))
    _repoint(s, linked, root_paths)
    return len(dropped)


def _carry_over(s: Session, moves: dict[int, int]) -> None:
    """Give each new sample the tags and labels of the old one it replaces (tags are merged;
    labels only when the new sample has none of its own)."""
    for chunk in _chunks(set(moves)):
        targets = list({moves[x] for x in chunk})
        have = set(
            s.execute(
                select(SampleTag.sample_id, SampleTag.tag).where(SampleTag.sample_id.in_(targets))
            ).all()
        )
        old_tags = s.execute(select(SampleTag.sample_id, SampleTag.tag).where(SampleTag.sample_id.in_(chunk)))
        wanted = {(moves[sid], tag) for sid, tag in old_tags} - have
        s.add_all(SampleTag(sample_id=sid, tag=tag) for sid, tag in sorted(wanted))
        labelled = set(s.scalars(select(Annotation.sample_id).where(Annotation.sample_id.in_(targets))))
        old_labels = list(
            s.scalars(select(Annotation).where(Annotation.sample_id.in_(chunk)).order_by(Annotation.id))
        )
        s.add_all(
            Annotation(
                sample_id=moves[a.sample_id],
                kind=a.kind,
                class_id=a.class_id,
                geometry=a.geometry,
                score=a.score,
            )
            for a in old_labels
            if moves[a.sample_id] not in labelled
        )
    s.flush()


def _repoint(s: Session, sample_ids: set[int], root_paths: list[str]) -> None:
    """Library samples whose path is no longer one of their files take the first one they have
    (a renamed or moved photo keeps its sample, and its original stays reachable)."""
    for chunk in _chunks(sample_ids):
        samples = s.execute(
            select(Sample.id, Sample.path).where(Sample.id.in_(chunk), Sample.storage == "reference")
        ).all()
        owned = {sid: path for sid, path in samples if _owned(path, root_paths)}
        if not owned:
            continue
        files: dict[int, list[tuple[str, str]]] = {}
        for sid, root_path, rel in s.execute(
            select(LibraryFile.sample_id, LibraryRoot.path, LibraryFile.path)
            .join(LibraryRoot, LibraryRoot.id == LibraryFile.root_id)
            .where(LibraryFile.sample_id.in_(list(owned)))
            .order_by(LibraryFile.id)
        ):
            if sid is not None:
                files.setdefault(sid, []).append((os.path.join(root_path, rel), rel))
        changes = [
            {"id": sid, "path": files[sid][0][0], "name": files[sid][0][1]}
            for sid, path in owned.items()
            if files.get(sid) and path not in {full for full, _ in files[sid]}
        ]
        if changes:
            s.execute(update(Sample), changes)


# --- the scan job --------------------------------------------------------------------------------


class _Row(NamedTuple):
    id: int
    size: int
    mtime: float
    sha256: str | None
    sample_id: int | None
    error: str | None
    excluded: bool


@dataclass
class _Walked:
    """One root listed and stat'ed: what is there now, and what must not be taken as gone."""

    files: dict[str, tuple[int, float]] = field(default_factory=dict)  # rel -> (size, mtime)
    failed: list[dict[str, str]] = field(default_factory=list)
    unsure: set[str] = field(default_factory=set)  # entries the walk could not read
    unlisted: list[str] = field(default_factory=list)  # folders the walk could not list


@dataclass
class _Todo:
    root_id: int
    rel: str
    size: int
    mtime: float
    row: _Row | None


def _printable(text: str) -> str:
    """``text`` with the undecodable bytes of file names (surrogate escapes) spelled ``\\xff``:
    reports are JSON, which cannot hold them."""
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _walk(root_path: str, *, workspace: Path) -> _Walked:
    """List a root's image files (``safepath.walk_images``: hidden entries skipped, symlinks never
    leave the root) and stat each one. The workspace, when it lies inside the root, is skipped."""
    real = Path(root_path).resolve()
    paths, errors = walk_images(real)
    out = _Walked()
    for e in errors:
        if e.reason.startswith("cannot list folder"):
            if e.path in ("", "."):
                raise PermanentJobError(f"library folder {root_path} cannot be listed: {e.reason}")
            out.unlisted.append(e.path.rstrip("/") + "/")
        else:
            out.unsure.add(e.path)
        out.failed.append({"path": os.path.join(root_path, e.path), "error": e.reason})
    skip = workspace.resolve()
    # a root inside the workspace holds no vistudio folder (check_root_path): nothing to skip
    inside = real.is_relative_to(skip)
    for p in paths:
        if not inside and p.is_relative_to(skip):
            continue
        rel = p.relative_to(real).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in a name: the database cannot hold it
            out.unsure.add(rel)
            out.failed.append({"path": os.path.join(root_path, rel), "error": "file name is not valid UTF-8"})
            continue
        try:
            st = p.stat()
        except OSError as exc:
            out.unsure.add(rel)
            out.failed.append(
                {"path": os.path.join(root_path, rel), "error": f"cannot read: {exc.strerror or exc}"}
            )
            continue
        out.files[rel] = (st.st_size, st.st_mtime)
    return out


def _insert(s: Session) -> Any:
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


class _Scan:
    """State of one scan attempt: counters, the report, and the batch writer."""

    def __init__(
        self, ctx: JobContext, project_id: int, roots: list[LibraryRoot], all_paths: list[str]
    ) -> None:
        self.ctx = ctx
        self.studio = ctx.studio
        self.project_id = project_id
        self.roots = {r.id: r.path for r in roots}
        self.root_paths = all_paths
        self.per_root: dict[int, Counter[str]] = {r.id: Counter() for r in roots}
        self.totals: Counter[str] = Counter()
        self.failed: list[dict[str, str]] = []
        self.pending: list[tuple[_Todo, dict[str, Any]]] = []
        self.last_flush = time.monotonic()

    def count(self, root_id: int, key: str, n: int = 1) -> None:
        self.per_root[root_id][key] += n
        self.totals[key] += n

    def fail(self, root_id: int, path: str, error: str) -> None:
        self.count(root_id, "failed")
        self.failed.append({"path": _printable(path), "error": _printable(error)})

    # -- batches --------------------------------------------------------------------------------

    def add(self, todo: _Todo, result: dict[str, Any]) -> None:
        self.pending.append((todo, result))
        if (
            len(self.pending) >= self.studio.settings.imports.batch_size
            or time.monotonic() - self.last_flush >= FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Commit the pending files (and the samples they need) in one transaction."""
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        with self.studio.sessions.begin() as s:
            self._write(s, self.pending)
        self.pending = []

    def _write(self, s: Session, batch: list[tuple[_Todo, dict[str, Any]]]) -> None:
        probes: dict[str, tuple[_Todo, dict[str, Any]]] = {}
        wanted: set[str] = set()
        for todo, res in batch:
            if res["status"] == "ok":
                probes.setdefault(res["probe"]["sha256"], (todo, res["probe"]))
                wanted.add(res["probe"]["sha256"])
            elif res["status"] == "known":
                wanted.add(res["sha256"])
        ids = self._sample_ids(s, wanted)
        # A file whose content the project had when the scan started, but whose sample this scan
        # removed since (its old file changed): probe it again here to make the sample anew.
        for i, (todo, res) in enumerate(batch):
            if res["status"] == "known" and res["sha256"] not in ids and res["sha256"] not in probes:
                again = probe_and_store(
                    Path(self.roots[todo.root_id]) / todo.rel,
                    mode="reference",
                    store=self.studio.store,
                    known=frozenset(),
                )
                batch[i] = (todo, again)
                if again["status"] == "ok":
                    probes.setdefault(again["probe"]["sha256"], (todo, again["probe"]))
        inserted = self._insert_samples(s, {sha: p for sha, p in probes.items() if sha not in ids})
        ids.update(inserted)
        # an import into the project made some of them meanwhile: use its samples
        ids.update(self._sample_ids(s, set(probes) - set(ids)))

        now = utcnow()
        new_rows: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        orphans: set[int] = set()
        successors: dict[int, int] = {}
        for todo, res in batch:
            full = os.path.join(self.roots[todo.root_id], todo.rel)
            values: dict[str, Any] = {"size": todo.size, "mtime": todo.mtime, "seen_at": now}
            if res["status"] == "error":
                self.fail(todo.root_id, full, res["reason"])
                if res.get("transient"):
                    continue  # the row stays as it was (its sample too): the next scan reads it again
                values.update(sha256=None, sample_id=None, error=res["reason"][:2000])
            else:
                sha = res["probe"]["sha256"] if res["status"] == "ok" else res["sha256"]
                values.update(sha256=sha, sample_id=ids[sha], error=None)
                self.totals["restored"] += bool(res.get("restored"))
                old = todo.row
                if old is not None and old.sha256 == sha and old.sample_id == ids[sha] and old.error is None:
                    self.count(todo.root_id, "unchanged")
                    self.totals["touched"] += 1
                else:
                    self.count(todo.root_id, "added" if old is None else "updated")
            if todo.row is None:
                new_rows.append({"root_id": todo.root_id, "path": todo.rel, **values})
            else:
                changes.append({"id": todo.row.id, **values})
                if todo.row.sample_id is not None and todo.row.sample_id != values["sample_id"]:
                    orphans.add(todo.row.sample_id)
                    if values["sample_id"] is not None:
                        successors[todo.row.sample_id] = values["sample_id"]
        if new_rows:
            ins = _insert(s)(LibraryFile)
            # an upsert: a second scan racing this one (or a rerun) must not fail on (root, path)
            s.execute(
                ins.on_conflict_do_update(
                    index_elements=[LibraryFile.root_id, LibraryFile.path],
                    set_={
                        k: ins.excluded[k]
                        for k in ("size", "mtime", "sha256", "sample_id", "error", "seen_at")
                    },
                ),
                new_rows,
            )
        if changes:
            s.execute(update(LibraryFile), changes)
        self.totals["samples_removed"] += _drop_orphans(
            self.studio,
            s,
            project_id=self.project_id,
            candidates=orphans,
            root_paths=self.root_paths,
            successors=successors,
        )
        text_index.sync(s, set(ids.values()) | orphans)  # new, renamed, moved-to and dropped samples

    def _sample_ids(self, s: Session, shas: set[str]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for chunk in _chunks(shas):
            rows = s.execute(
                select(Sample.sha256, Sample.id).where(
                    Sample.project_id == self.project_id, Sample.sha256.in_(chunk)
                )
            )
            ids.update({sha: sid for sha, sid in rows})
        return ids

    def _insert_samples(self, s: Session, probes: dict[str, tuple[_Todo, dict[str, Any]]]) -> dict[str, int]:
        """Insert one sample per new content; returns ``{sha256: id}`` of those inserted here."""
        if not probes:
            return {}
        rows = [
            {
                "project_id": self.project_id,
                "sha256": sha,
                "name": todo.rel,
                "storage": "reference",
                "path": os.path.join(self.roots[todo.root_id], todo.rel),
                "imported_at": utcnow(),
                "dup_group": None,
                "file_time": local_time(todo.mtime),
                **{k: probe[k] for k in SAMPLE_FIELDS},
            }
            for sha, (todo, probe) in probes.items()
        ]
        fill_new_samples(self.studio, rows)
        ins = _insert(s)(Sample).on_conflict_do_nothing(index_elements=[Sample.project_id, Sample.sha256])
        inserted = {sha: sid for sid, sha in s.execute(ins.returning(Sample.id, Sample.sha256), rows)}
        self.studio.store.acquire_many(
            s, [("thumbnail", sha, probes[sha][1]["thumb_size"], "") for sha in inserted]
        )
        self.totals["samples_added"] += len(inserted)
        return inserted


def _check_roots(
    roots: list[LibraryRoot], indexed: dict[int, int], *, walked: dict[int, _Walked] | None = None
) -> None:
    """Stop the scan, before anything is changed, when a root is missing, unreadable or empty."""
    problems: list[tuple[str, str]] = []
    for r in roots:
        problem = root_problem(r.path, indexed=indexed[r.id])
        w = (walked or {}).get(r.id)
        if problem is None and w is not None and indexed[r.id] and not (w.files or w.unsure or w.unlisted):
            problem = "without images now (an unmounted drive?)"
        if problem is not None:
            problems.append((r.path, problem))
    if problems:
        text = "; ".join(f"library folder {path} is {problem}" for path, problem in problems)
        n = sum(indexed[r.id] for r in roots if r.path in {p for p, _ in problems})
        raise PermanentJobError(
            f"{text}{f' ({n} files were indexed there)' if n else ''}: the scan stopped and nothing "
            "was removed. Reconnect or mount it and scan again, or unregister it (vistudio library remove)."
        )


def _duplicate_files(s: Session, project_id: int) -> int:
    """Files whose bytes another file of the library also has (each content counted once)."""
    files, contents = s.execute(
        select(func.count(LibraryFile.sample_id), func.count(func.distinct(LibraryFile.sample_id)))
        .join(LibraryRoot, LibraryRoot.id == LibraryFile.root_id)
        .where(LibraryRoot.project_id == project_id)
    ).one()
    return int(files or 0) - int(contents or 0)


def _load_rows(studio: Studio, root_id: int) -> dict[str, _Row]:
    with studio.sessions() as s:
        return {
            rel: _Row(fid, size, mtime, sha, sid, err, bool(excl))
            for fid, rel, size, mtime, sha, sid, err, excl in s.execute(
                select(
                    LibraryFile.id,
                    LibraryFile.path,
                    LibraryFile.size,
                    LibraryFile.mtime,
                    LibraryFile.sha256,
                    LibraryFile.sample_id,
                    LibraryFile.error,
                    LibraryFile.excluded,
                ).where(LibraryFile.root_id == root_id)
            )
        }


@job_handler(JOB_KIND)
def run_scan(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    if ctx.project_id is None:
        raise PermanentJobError("the project of this scan was deleted")
    project_id = ctx.project_id
    started = time.monotonic()
    ctx.progress(0, None, "checking folders", force=True)
    with studio.sessions() as s:
        all_roots = _roots(s, project_id)
        wanted = set(ctx.params.get("roots") or [])
        roots = [r for r in all_roots if not wanted or r.id in wanted]
        counts = _file_counts(s, [r.id for r in roots])
        known = frozenset(s.scalars(select(Sample.sha256).where(Sample.project_id == project_id)))
    if not roots:
        raise PermanentJobError("this project has no library folders to scan")
    indexed = {r.id: counts.get(r.id, (0, 0))[0] for r in roots}
    _check_roots(roots, indexed)
    scan = _Scan(ctx, project_id, roots, [r.path for r in all_roots])

    # 1. list and stat every root (no file is read) before anything is written
    walked: dict[int, _Walked] = {}
    for r in roots:
        ctx.check_cancelled()
        ctx.progress(0, None, f"listing {r.path}", force=True)
        try:
            walked[r.id] = _walk(r.path, workspace=studio.home)
        except SourceError as exc:
            raise PermanentJobError(f"library folder {r.path}: {exc}") from exc
    _check_roots(roots, indexed, walked=walked)

    todo: list[_Todo] = []
    gone: dict[int, list[_Row]] = {}
    for r in roots:
        w = walked[r.id]
        rows = _load_rows(studio, r.id)
        for f in w.failed:
            scan.fail(r.id, f["path"], f["error"])
        for rel, (size, mtime) in w.files.items():
            row = rows.get(rel)
            if row is not None and row.excluded:  # removed from the project by the user
                scan.count(r.id, "excluded")
                continue
            # a row that lost its sample (deleted by other means) is read again: the file is back
            lost = row is not None and row.error is None and row.sample_id is None
            if row is not None and row.size == size and row.mtime == mtime and not lost:
                if row.error is not None:
                    scan.fail(r.id, os.path.join(r.path, rel), row.error)
                else:
                    scan.count(r.id, "unchanged")
            else:
                todo.append(_Todo(r.id, rel, size, mtime, row))
        unlisted = tuple(w.unlisted)
        gone[r.id] = [
            row
            for rel, row in rows.items()
            if rel not in w.files and rel not in w.unsure and not (unlisted and rel.startswith(unlisted))
        ]

    # 2. read new and changed files once each, in the import's pool; commit in small batches
    total = len(todo)
    ctx.progress(0, total, f"reading {total} new or changed files", force=True)
    items = [SourceItem(path=Path(scan.roots[t.root_id]) / t.rel, name=t.rel) for t in todo]
    try:
        for i, (_, res) in enumerate(probe_items(items, mode="reference", studio=studio, known=known)):
            ctx.check_cancelled()
            scan.add(todo[i], res)
            ctx.progress(i + 1, total, todo[i].rel)
    except JobCancelled:
        scan.flush()  # keep what is done: the next scan does not read it again
        raise
    scan.flush()

    # 3. files that are gone, once the roots are proven still there
    n_gone = sum(len(v) for v in gone.values())
    if n_gone:
        _check_roots(roots, indexed)
        ctx.progress(0, n_gone, f"removing {n_gone} files that are gone", force=True)
        done = 0
        for rid, gone_rows in gone.items():
            for chunk in _chunks(gone_rows, REMOVE_CHUNK):
                ctx.check_cancelled()
                with studio.sessions.begin() as s:
                    s.execute(delete(LibraryFile).where(LibraryFile.id.in_([x.id for x in chunk])))
                    scan.totals["samples_removed"] += _drop_orphans(
                        studio,
                        s,
                        project_id=project_id,
                        candidates={x.sample_id for x in chunk if x.sample_id is not None},
                        root_paths=scan.root_paths,
                    )
                scan.count(rid, "removed", len(chunk))
                done += len(chunk)
                ctx.progress(done, n_gone, "removing files that are gone")

    from vistudio.services.videos import scan_videos

    scan_videos(ctx, scan, roots)  # videos: their keyframes become samples (services/videos.py)

    # 4. the record of this scan, blobs nobody holds, near-duplicate groups
    now = utcnow()
    per_root: list[dict[str, Any]] = []
    with studio.sessions.begin() as s:
        files = _file_counts(s, [r.id for r in roots])
        for r in roots:
            c = scan.per_root[r.id]
            part = {
                "id": r.id,
                "path": r.path,
                "files": files.get(r.id, (0, 0))[0],
                **{k: c[k] for k in ("added", "updated", "removed", "unchanged", "excluded", "failed")},
            }
            per_root.append(part)
            s.execute(
                update(LibraryRoot).where(LibraryRoot.id == r.id).values(last_scan_at=now, last_report=part)
            )
    blobs = 0
    if scan.totals["samples_removed"]:
        with studio.sessions.begin() as s:
            blobs = studio.store.gc(s)
    with studio.sessions() as s:
        duplicates = _duplicate_files(s, project_id)
    # a retry may follow an attempt that added samples and died before this step: redo it
    resumed = ctx.attempt > 1
    changed = scan.totals["samples_added"] or scan.totals["samples_removed"] or resumed
    groups = update_near_duplicates(studio, project_id=project_id) if changed else None
    t = scan.totals
    from vistudio.services.embeddings import embed_new_samples
    from vistudio.services.faces import faces_for_new_samples

    embedding = embed_new_samples(studio, project_id) if t["samples_added"] or resumed else None
    faces = faces_for_new_samples(studio, project_id) if t["samples_added"] or resumed else None
    return {
        "report": {
            **{
                k: t[k]
                for k in (
                    "added",
                    "updated",
                    "removed",
                    "unchanged",
                    "excluded",
                    "touched",
                    "restored",
                    "samples_added",
                    "samples_removed",
                )
            },
            "failed": scan.failed[:MAX_REPORTED],
            "failed_count": len(scan.failed),
            "roots": per_root,
            "duplicate_files": duplicates,
            "blobs_removed": blobs,
            "near_duplicate_groups": groups,
            "embedding": embedding,
            "faces": faces,
            "attempt": ctx.attempt,
            "seconds": round(time.monotonic() - started, 3),
        }
    }
