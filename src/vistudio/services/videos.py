"""Videos in photo libraries: their keyframes become samples, so embedding, faces, captions and
search treat them as photos with no change.

The library scan (services/library.py) calls :func:`scan_videos` once, after its images. For each
library root it lists the video files (by name: .mp4 .mov .m4v .webm .mkv; the bytes then decide:
an MP4/QuickTime or Matroska/WebM container with a video stream, else a per-file error) and
stats them. A video whose size and mtime are unchanged is not read. A new or changed one is hashed;
unchanged bytes (a touched file) only update its row; new bytes are decoded once
(``ingest.video.iter_keyframes``) and its keyframes replace the old ones in one transaction:

- each keyframe is a JPEG stored in the workspace like an imported copy (``media/``, with its
  thumbnail), a sample named ``clip.mp4 @ 00:12.4`` with ``video_id`` and ``video_time``; the
  JPEG carries a comment naming the video's hash and time, so two different videos that share a
  frame (black, say) still make two samples, while two copies of one video share theirs;
- the poster (the grid's tile of the video) is the first keyframe that is not almost black;
- old keyframes leave the project as removed library photos do: their blob references are
  released (the scan collects the blobs) and their samples deleted, with their embeddings and faces.

A video gone from its folder goes the same way — unless its folder looks unmounted (missing, or
empty while videos were indexed there): then nothing is removed. Counts go into the scan's report
per root (added, updated, unchanged, removed, failed) as for images.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vistudio.db import Sample, utcnow
from vistudio.db.library import LibraryRoot
from vistudio.db.videos import Video
from vistudio.errors import InvalidInput, NotFound
from vistudio.ingest.pool import EXTENSIONS
from vistudio.ingest.probe import probe_bytes
from vistudio.ingest.safepath import resolve_inside
from vistudio.ingest.types import IngestError
from vistudio.ingest.video import (
    Keyframe,
    KeyframeScan,
    Limits,
    VideoError,
    VideoProbe,
    format_time,
    is_video_name,
    iter_keyframes,
    probe,
)
from vistudio.services import text_index
from vistudio.services.places import local_time
from vistudio.services.projects import find_project
from vistudio.studio import Studio

if TYPE_CHECKING:
    from vistudio.jobs.worker import JobContext

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
}
DARK = 24.0  # mean luma under which a keyframe is not chosen as the poster while another is
IN_CHUNK = 500
MAX_LIMIT = 500


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value else None


def _chunks(seq: list[Any], n: int = IN_CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def limits_from(studio: Studio) -> Limits:
    v = studio.settings.videos
    return Limits(
        max_duration=v.max_duration,
        max_pixels=v.max_pixels,
        max_decode_seconds=v.max_decode_seconds,
        max_frames=v.max_frames,
    )


# --- listing the files ---------------------------------------------------------------------------


def walk_videos(
    root: Path, *, skip: Path | None = None
) -> tuple[dict[str, tuple[int, float]], list[tuple[str, str]]]:
    """Video files under ``root`` (by name), as ``{relative posix path: (size, mtime)}``, and the
    entries that could not be read ``[(relative path, reason)]``. Hidden entries are skipped;
    symlinked folders are not followed and a symlinked file counts only when its target is inside
    the root; ``skip`` (the workspace) is left out."""
    real_root = root.resolve()
    found: dict[str, tuple[int, float]] = {}
    errors: list[tuple[str, str]] = []
    stack = [real_root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            rel = folder.relative_to(real_root).as_posix()
            errors.append((rel, f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if skip is not None and path == skip:
                continue
            rel = path.relative_to(real_root).as_posix()
            try:
                if entry.is_symlink():
                    if not is_video_name(entry.name):
                        continue
                    target = path.resolve()
                    if not target.is_relative_to(real_root) or not target.is_file():
                        errors.append((rel, "symlink points outside the library folder or nowhere"))
                        continue
                    st = target.stat()
                else:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(path)
                        continue
                    if not stat.S_ISREG(st.st_mode) or not is_video_name(entry.name):
                        continue
                rel.encode("utf-8")
            except UnicodeEncodeError:
                errors.append((rel, "file name is not valid UTF-8"))
                continue
            except (OSError, RuntimeError) as exc:
                errors.append((rel, f"cannot read: {exc}"))
                continue
            found[rel] = (st.st_size, st.st_mtime)
    return found, errors


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the scan ------------------------------------------------------------------------------------


def _insert(s: Session) -> Any:
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


def _luma(image: Any) -> float:
    return float(np.asarray(image.convert("L").resize((32, 18))).mean())


def _encode(kf: Keyframe, video_sha: str) -> bytes:
    buf = io.BytesIO()
    comment = f"vistudio keyframe of {video_sha} at {kf.time:.4f}s".encode()
    kf.image.save(buf, format="JPEG", quality=90, comment=comment)
    return buf.getvalue()


class _VideoScan:
    """One scan's videos: the rows it knows, the counts it reports through the library scan."""

    def __init__(self, ctx: JobContext, scan: Any, project_id: int, roots: list[LibraryRoot]) -> None:
        self.ctx = ctx
        self.studio = ctx.studio
        self.scan = scan
        self.project_id = project_id
        self.roots = roots
        cfg = self.studio.settings.videos
        self.options: dict[str, Any] = {
            "threshold": cfg.threshold,
            "min_scene_seconds": cfg.min_scene_seconds,
            "min_gap_seconds": cfg.min_gap_seconds,
            "max_keyframes": cfg.max_keyframes,
            "max_side": cfg.max_side,
            "limits": limits_from(self.studio),
        }

    def run(self) -> None:
        studio, ctx = self.studio, self.ctx
        with studio.sessions() as s:
            rows = {
                (v.root_id, v.path): v
                for v in s.scalars(select(Video).where(Video.project_id == self.project_id))
            }
            for v in rows.values():
                s.expunge(v)
        from vistudio.services.library import root_problem  # library imports this module

        todo: list[tuple[LibraryRoot, str, int, float, Video | None]] = []
        gone: list[tuple[int | None, Video]] = [(None, v) for (rid, _), v in rows.items() if rid is None]
        for r in self.roots:
            ctx.check_cancelled()
            mine = {path: v for (rid, path), v in rows.items() if rid == r.id}
            problem = root_problem(r.path, indexed=len(mine))
            if problem is not None:
                if mine:
                    self.scan.fail(r.id, r.path, f"videos: library folder is {problem}; none removed")
                continue
            found, errors = walk_videos(Path(r.path), skip=studio.home.resolve())
            for rel, reason in errors:
                self.scan.fail(r.id, os.path.join(r.path, rel), reason)
            unsure = {rel for rel, _ in errors}
            if mine and not found and not unsure:
                with contextlib.suppress(OSError):
                    if not any(os.scandir(r.path)):
                        self.scan.fail(
                            r.id, r.path, "videos: library folder is empty (unmounted?); none removed"
                        )
                        continue
            for rel, (size, mtime) in found.items():
                row = mine.get(rel)
                if row is not None and row.size == size and row.mtime == mtime:
                    if row.error is not None:
                        self.scan.fail(r.id, os.path.join(r.path, rel), row.error)
                    else:
                        self.scan.count(r.id, "unchanged")
                    continue
                todo.append((r, rel, size, mtime, row))
            gone += [
                (r.id, v)
                for rel, v in mine.items()
                if rel not in found
                and not any(rel == u or rel.startswith(u.rstrip("/") + "/") for u in unsure)
            ]

        # progress only when there are videos to read: the scan's own progress says "nothing read"
        total = len(todo)
        for i, (r, rel, size, mtime, row) in enumerate(todo):
            ctx.check_cancelled()
            ctx.progress(i, total, f"video {rel}", force=True)
            self._one(r, rel, size, mtime, row, position=(i, total))
        if total:
            ctx.progress(total, total, "videos read", force=True)
        for rid, v in gone:
            ctx.check_cancelled()
            with studio.sessions.begin() as s:
                self.scan.totals["samples_removed"] += release_video(studio, s, v.id)
                s.execute(delete(Video).where(Video.id == v.id))
            if rid is not None:
                self.scan.count(rid, "removed")

    def _one(
        self,
        r: LibraryRoot,
        rel: str,
        size: int,
        mtime: float,
        row: Video | None,
        *,
        position: tuple[int, int],
    ) -> None:
        full = Path(r.path) / rel
        studio = self.studio
        values: dict[str, Any] = {"size": size, "mtime": mtime, "scanned_at": utcnow()}
        try:
            sha = _sha256_file(full)
        except OSError as exc:
            # transient (a drive going away): the row stays as it was, the next scan reads it again
            self.scan.fail(r.id, str(full), f"cannot read file: {exc.strerror or exc}")
            return
        if row is not None and row.sha256 == sha and row.error is None:
            with studio.sessions.begin() as s:
                s.execute(update(Video).where(Video.id == row.id).values(**values))
            self.scan.count(r.id, "unchanged")
            self.scan.totals["touched"] += 1
            return
        probed: VideoProbe | None = None
        kept: list[tuple[Keyframe, bytes, dict[str, Any]]] = []
        info = KeyframeScan()
        error: str | None = None
        try:
            probed = probe(full)
            for kf in iter_keyframes(full, probed=probed, scan=info, **self.options):
                self.ctx.check_cancelled()
                data = _encode(kf, sha)
                p = probe_bytes(data, thumb_size=studio.store.thumb_size)
                fields = asdict(p)
                thumb = fields.pop("thumbnail")
                studio.store.write_bytes("original", data, ext="jpg", key=p.sha256)
                studio.store.write_bytes("thumbnail", thumb, key=p.sha256)
                fields["thumb_size"] = len(thumb)
                fields["dark"] = _luma(kf.image) < DARK
                kept.append((kf, data, fields))
                self.ctx.progress(
                    position[0], position[1], f"video {rel}: {len(kept)} keyframes, {format_time(kf.time)}"
                )
        except VideoError as exc:
            error = exc.reason
        except (IngestError, OSError) as exc:
            error = f"cannot read video: {getattr(exc, 'reason', None) or exc}"
        except MemoryError:
            error = "not enough memory to decode this video"
        if error is not None:
            self.scan.fail(r.id, str(full), error)
            kept = []
        meta: dict[str, Any] = {
            "sha256": sha,
            "error": error[:2000] if error else None,
            "keyframes": len(kept),
        }
        meta["cuts"] = len(info.cuts)
        if probed is not None:
            meta.update(
                container=probed.container,
                codec=probed.codec[:40],
                duration=probed.duration,
                fps=probed.fps,
                frames=info.frames or probed.frames,
                width=probed.width,
                height=probed.height,
                created_at=probed.created_at,
                created_source=probed.created_source,
            )
        with studio.sessions.begin() as s:
            if row is not None:
                self.scan.totals["samples_removed"] += release_video(studio, s, row.id)
                s.execute(update(Video).where(Video.id == row.id).values(**values, **meta))
                vid = row.id
            else:
                v = Video(project_id=self.project_id, root_id=r.id, path=rel, **values, **meta)
                s.add(v)
                s.flush()
                vid = v.id
            if kept:
                ids = self._insert_keyframes(s, vid, rel, mtime, probed, kept)
                text_index.sync(s, ids)
            elif error is None:
                self._share(s, vid, sha)
        self.scan.count(r.id, "added" if row is None else "updated")

    def _insert_keyframes(
        self,
        s: Session,
        video_id: int,
        rel: str,
        mtime: float,
        probed: VideoProbe | None,
        kept: list[tuple[Keyframe, bytes, dict[str, Any]]],
    ) -> list[int]:
        created = probed.created_at if probed is not None and probed.created_source == "container" else None
        # the recording's wall-clock time at each keyframe (created_at is naive UTC), like an EXIF date
        start = created.replace(tzinfo=UTC).timestamp() if created is not None else None
        rows = []
        for kf, _, f in kept:
            taken = local_time(start + kf.time) if start is not None else None
            rows.append(
                {
                    "project_id": self.project_id,
                    "sha256": f["sha256"],
                    "name": f"{rel} @ {format_time(kf.time)}",
                    "storage": "copy",
                    "path": self.studio.store.path("original", f["sha256"], "jpg")
                    .relative_to(self.studio.store.root)
                    .as_posix(),
                    "width": f["width"],
                    "height": f["height"],
                    "format": f["format"],
                    "bytes": f["bytes"],
                    "taken_at": taken,
                    "phash": f["phash"],
                    "exif": {},
                    "imported_at": utcnow(),
                    "file_time": local_time(mtime),
                    "video_id": video_id,
                    "video_time": kf.time,
                }
            )
        from vistudio.services import places

        places.fill_new_samples(self.studio, rows)  # the timeline's date (sort_time), as imports do
        ins = _insert(s)(Sample).on_conflict_do_nothing(index_elements=[Sample.project_id, Sample.sha256])
        inserted = {sha: sid for sid, sha in s.execute(ins.returning(Sample.id, Sample.sha256), rows)}
        refs: list[tuple[str, str, int, str]] = []
        for _, data, f in kept:
            if f["sha256"] in inserted:
                refs.append(("original", f["sha256"], len(data), EXTENSIONS["JPEG"]))
                refs.append(("thumbnail", f["sha256"], f["thumb_size"], ""))
        self.studio.store.acquire_many(s, refs)
        self.scan.totals["samples_added"] += len(inserted)
        # the keyframes an identical copy of this video already made (same bytes, same JPEGs)
        # stay that copy's; this row shares them (see release_video)
        poster = next(
            (inserted[f["sha256"]] for _, _, f in kept if not f["dark"] and f["sha256"] in inserted), None
        )
        if poster is None:
            poster = next((inserted[f["sha256"]] for _, _, f in kept if f["sha256"] in inserted), None)
        if poster is None:
            self._share(s, video_id, None)
        else:
            s.execute(
                update(Video)
                .where(Video.id == video_id)
                .values(poster_sample_id=poster, keyframes=len(inserted))
            )
        return list(inserted.values())

    def _share(self, s: Session, video_id: int, sha: str | None) -> None:
        """A copy of a video the project has: show the original's keyframes."""
        other = s.scalar(
            select(Video).where(
                Video.project_id == self.project_id,
                Video.id != video_id,
                Video.sha256 == (sha or s.scalar(select(Video.sha256).where(Video.id == video_id))),
                Video.poster_sample_id.is_not(None),
            )
        )
        if other is not None:
            s.execute(
                update(Video)
                .where(Video.id == video_id)
                .values(poster_sample_id=other.poster_sample_id, keyframes=other.keyframes)
            )


def release_video(studio: Studio, s: Session, video_id: int) -> int:
    """Take a video's keyframes out of the project (before its row goes or is read anew): handed
    to an identical copy of it when the project has one, else removed as a removed library photo
    is (blob references released, sample deleted with its embeddings and faces; the caller
    collects the blobs). Returns the number of samples removed."""
    v = s.get(Video, video_id)
    if v is None:
        return 0
    ids = list(s.scalars(select(Sample.id).where(Sample.video_id == video_id)))
    heir = None
    if v.sha256 is not None:
        heir = s.scalar(
            select(Video).where(
                Video.project_id == v.project_id,
                Video.id != v.id,
                Video.sha256 == v.sha256,
                Video.error.is_(None),
            )
        )
    if heir is not None and ids:
        s.execute(update(Sample).where(Sample.video_id == video_id).values(video_id=heir.id))
        s.execute(
            update(Video)
            .where(Video.project_id == v.project_id, Video.sha256 == v.sha256, Video.id != v.id)
            .values(poster_sample_id=v.poster_sample_id, keyframes=len(ids))
        )
        s.execute(update(Video).where(Video.id == v.id).values(poster_sample_id=None, keyframes=0))
        return 0
    # copies that showed these keyframes show nothing now (they would make their own on a rescan)
    s.execute(update(Video).where(Video.poster_sample_id.in_(ids or [-1])).values(poster_sample_id=None))
    for chunk in _chunks(ids):
        for sha, storage in s.execute(select(Sample.sha256, Sample.storage).where(Sample.id.in_(chunk))):
            studio.store.release(s, "thumbnail", sha)
            if storage == "copy":
                studio.store.release(s, "original", sha)
        s.execute(delete(Sample).where(Sample.id.in_(chunk)))
    text_index.sync(s, ids)
    return len(ids)


def scan_videos(ctx: JobContext, scan: Any, roots: list[LibraryRoot]) -> None:
    """The library scan's video step (one call from ``services.library.run_scan``): read the
    videos of ``roots`` that are new or changed, drop those that are gone. ``scan`` is the image
    scan's state: counts and failures go to its report, keyframe samples added and removed to its
    totals (which then queue embedding and faces, and collect blobs, as for photos)."""
    if not ctx.studio.settings.videos.enabled or ctx.project_id is None:
        return
    _VideoScan(ctx, scan, ctx.project_id, roots).run()


def drop_root_videos(studio: Studio, s: Session, root_id: int) -> int:
    """A root leaves the library (``services.library.remove_root``): its videos and keyframes too."""
    n = 0
    for vid in list(s.scalars(select(Video.id).where(Video.root_id == root_id))):
        n += release_video(studio, s, vid)
        s.execute(delete(Video).where(Video.id == vid))
    return n


# --- reading -------------------------------------------------------------------------------------


def video_dict(v: Video, root: str | None) -> dict[str, Any]:
    return {
        "id": v.id,
        "project_id": v.project_id,
        "root_id": v.root_id,
        "root": root,
        "path": v.path,
        "name": v.path.rsplit("/", 1)[-1],
        "size": v.size,
        "sha256": v.sha256,
        "container": v.container,
        "codec": v.codec,
        "duration": v.duration,
        "fps": v.fps,
        "frames": v.frames,
        "width": v.width,
        "height": v.height,
        "created_at": _iso(v.created_at),
        "created_source": v.created_source,
        "poster_sample_id": v.poster_sample_id,
        "poster_url": f"/api/v1/samples/{v.poster_sample_id}/thumbnail" if v.poster_sample_id else None,
        "keyframes": v.keyframes,
        "cuts": v.cuts,
        "error": v.error,
        "scanned_at": _iso(v.scanned_at),
        "file_url": f"/api/v1/videos/{v.id}/file",
    }


def list_videos(
    studio: Studio, *, project: str | int, offset: int = 0, limit: int = 100, failed: bool | None = None
) -> dict[str, Any]:
    """A project's videos, by path (``failed``: only those that could not be read, or only not)."""
    if not 0 <= offset <= 2**62 or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
    with studio.sessions() as s:
        p = find_project(s, project)
        stmt = (
            select(Video, LibraryRoot.path)
            .outerjoin(LibraryRoot, LibraryRoot.id == Video.root_id)
            .where(Video.project_id == p.id)
        )
        if failed is not None:
            stmt = stmt.where(Video.error.is_not(None) if failed else Video.error.is_(None))
        total = s.scalar(select(func.count()).select_from(stmt.with_only_columns(Video.id).subquery())) or 0
        rows = s.execute(stmt.order_by(Video.path, Video.id).offset(offset).limit(limit)).all()
        items = [video_dict(v, root) for v, root in rows]
    return {"items": items, "total": total, "offset": offset, "limit": limit}


def get_video(studio: Studio, video_id: int) -> dict[str, Any]:
    """A video with its keyframes in time order (``[{sample_id, time, label, thumbnail_url}]``)."""
    with studio.sessions() as s:
        row = s.execute(
            select(Video, LibraryRoot.path)
            .outerjoin(LibraryRoot, LibraryRoot.id == Video.root_id)
            .where(Video.id == video_id)
        ).first()
        if row is None:
            raise NotFound(f"video {video_id} not found")
        v, root = row
        d = video_dict(v, root)
        owner = v.id
        if v.poster_sample_id is not None:  # a copy shows its original's keyframes
            owner = s.scalar(select(Sample.video_id).where(Sample.id == v.poster_sample_id)) or v.id
        frames = s.execute(
            select(Sample.id, Sample.video_time)
            .where(Sample.video_id == owner)
            .order_by(Sample.video_time, Sample.id)
        ).all()
    d["keyframe_items"] = [
        {
            "sample_id": sid,
            "time": t,
            "label": format_time(t or 0.0),
            "poster": sid == d["poster_sample_id"],
            "thumbnail_url": f"/api/v1/samples/{sid}/thumbnail",
        }
        for sid, t in frames
    ]
    return d


def video_file(studio: Studio, video_id: int) -> tuple[Path, str]:
    """The video's file (inside its library root, symlinks followed only within it) and its media
    type; ``NotFound`` when the video, its root or the file is gone."""
    with studio.sessions() as s:
        row = s.execute(
            select(Video.path, LibraryRoot.path)
            .join(LibraryRoot, LibraryRoot.id == Video.root_id)
            .where(Video.id == video_id)
        ).first()
    if row is None:
        raise NotFound(f"video {video_id} not found")
    rel, root = row
    try:
        path = resolve_inside(Path(root), rel)
    except IngestError as exc:
        raise NotFound(
            f"the file of video {video_id} is not inside its library folder: {exc.reason}"
        ) from None
    if not path.is_file():
        raise NotFound(f"the file of video {video_id} is missing: {path}")
    return path, MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")


def keyframe_info(studio: Studio, sample_ids: list[int]) -> dict[int, dict[str, Any]]:
    """For the samples among ``sample_ids`` that are video keyframes: ``{sample_id: {video_id,
    time, label, name, duration, poster}}`` (grid tiles, the sample detail, search results)."""
    out: dict[int, dict[str, Any]] = {}
    if not sample_ids:
        return out
    with studio.sessions() as s:
        for chunk in _chunks(sorted(set(sample_ids))):
            rows = s.execute(
                select(
                    Sample.id, Sample.video_time, Video.id, Video.path, Video.duration, Video.poster_sample_id
                )
                .join(Video, Video.id == Sample.video_id)
                .where(Sample.id.in_(chunk))
            )
            for sid, t, vid, path, duration, poster in rows:
                out[sid] = {
                    "video_id": vid,
                    "time": t or 0.0,
                    "label": format_time(t or 0.0),
                    "name": path.rsplit("/", 1)[-1],
                    "duration": duration,
                    "duration_label": format_time(duration or 0.0).rsplit(".", 1)[0],
                    "poster": poster == sid,
                }
    return out


def grid_condition(project_id: int) -> Any:
    """The samples a library grid shows: every photo, and of each video only its poster (its other
    keyframes are in the video's filmstrip, and found by search)."""
    posters = select(Video.poster_sample_id).where(
        Video.project_id == project_id, Video.poster_sample_id.is_not(None)
    )
    return Sample.video_id.is_(None) | Sample.id.in_(posters)
