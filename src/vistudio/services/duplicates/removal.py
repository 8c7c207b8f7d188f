"""Removing the others of a group: what blocks a removal (saved splits), the snapshot it takes of
the samples it deletes, and restoring them from that snapshot on undo."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, delete, select, update
from sqlalchemy.orm import Session

from vistudio.db import Annotation, LabelClass, Sample, SampleTag, Split, SplitMember, utcnow
from vistudio.db.duplicates import DuplicateDecision, HiddenSample
from vistudio.db.library import LibraryFile
from vistudio.errors import Conflict
from vistudio.ingest.pool import EXTENSIONS
from vistudio.services.duplicates.params import _chunks
from vistudio.studio import Studio


def _split_holds(s: Session, sample_ids: list[int]) -> dict[int, list[str]]:
    """The saved splits that hold each of these samples (splits never change, so a removal of
    one of them cannot happen)."""
    held: dict[int, list[str]] = {}
    for chunk in _chunks(sample_ids):  # a large group must not pass the database's parameter limit
        for sid, name in s.execute(
            select(SplitMember.sample_id, Split.name)
            .join(Split, Split.id == SplitMember.split_id)
            .where(SplitMember.sample_id.in_(chunk))
            .order_by(Split.name)
        ):
            held.setdefault(sid, []).append(name)
    return held


def _removal_blocked(held: dict[int, list[str]], others: list[int]) -> str | None:
    """Why removing ``others`` cannot work, in the reviewer's words; None when it can."""
    inside = [m for m in others if m in held]
    if not inside:
        return None
    names = sorted({n for m in inside for n in held[m]})
    where = ("the saved split " if len(names) == 1 else "the saved splits ") + ", ".join(
        repr(n) for n in names[:5]
    )
    if len(names) > 5:
        where += f" and {len(names) - 5} more"
    if len(others) == 1:
        who = "The other photo is"
    elif len(inside) == len(others):
        who = f"All {len(others)} other photos are"
    else:
        who = f"{len(inside)} of the {len(others)} other photos are"
    never = "never changes" if len(names) == 1 else "never change"
    return f"{who} in {where}, which {never}: hide the others instead."


def _json_value(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _remove(studio: Studio, s: Session, project_id: int, sample_ids: list[int]) -> dict[str, Any]:
    """Delete samples from the project, releasing their blobs; returns what an undo needs."""
    if not sample_ids:
        return {"samples": []}
    chunks = _chunks(sample_ids)  # a large group must not go past the database's parameter limit
    held = _split_holds(s, sample_ids)
    blocked = _removal_blocked(held, sample_ids)
    if blocked:
        names = sorted({n for sid in held for n in held[sid]})
        raise Conflict(blocked, details={"splits": names, "samples": sorted(held)})
    columns = [c.key for c in Sample.__table__.columns]
    rows = [r for chunk in chunks for r in s.scalars(select(Sample).where(Sample.id.in_(chunk)))]
    anns: dict[int, list[dict[str, Any]]] = {}
    tags: dict[int, list[str]] = {}
    files: dict[int | None, list[int]] = {}
    hidden: dict[int, int | None] = {}
    for chunk in chunks:
        for a in s.scalars(select(Annotation).where(Annotation.sample_id.in_(chunk)).order_by(Annotation.id)):
            anns.setdefault(a.sample_id, []).append(
                {"kind": a.kind, "class_id": a.class_id, "geometry": a.geometry, "score": a.score}
            )
        for sid, tag in s.execute(
            select(SampleTag.sample_id, SampleTag.tag).where(SampleTag.sample_id.in_(chunk))
        ):
            tags.setdefault(sid, []).append(tag)
        for fid, linked in s.execute(
            select(LibraryFile.id, LibraryFile.sample_id).where(LibraryFile.sample_id.in_(chunk))
        ):
            files.setdefault(linked, []).append(fid)
        hidden.update(
            s.execute(
                select(HiddenSample.sample_id, HiddenSample.decision_id).where(
                    HiddenSample.sample_id.in_(chunk)
                )
            ).all()
        )
    snapshot = []
    for r in rows:
        snapshot.append(
            {
                "sample": {c: _json_value(getattr(r, c)) for c in columns},
                "annotations": anns.get(r.id, []),
                "tags": tags.get(r.id, []),
                "library_files": files.get(r.id, []),
                "hidden": r.id in hidden,
                "hidden_by": hidden.get(r.id),
            }
        )
        studio.store.release(s, "thumbnail", r.sha256)
        if r.storage == "copy":
            studio.store.release(s, "original", r.sha256)
    for chunk in _chunks(sample_ids):
        # a library scan must not bring a removed file back: it is the user's decision
        s.execute(update(LibraryFile).where(LibraryFile.sample_id.in_(chunk)).values(excluded=True))
        s.execute(delete(Sample).where(Sample.id.in_(chunk)))
    return {"samples": snapshot}


def _restore(
    studio: Studio, s: Session, project_id: int, snapshot: list[dict[str, Any]]
) -> tuple[list[int], list[dict[str, Any]]]:
    restored: list[int] = []
    lost: list[dict[str, Any]] = []
    datetimes = {c.key for c in Sample.__table__.columns if isinstance(c.type, DateTime)}
    classes = set(s.scalars(select(LabelClass.id).where(LabelClass.project_id == project_id)))
    for item in snapshot:
        if item.get("library_files"):
            # whatever becomes of the sample, its files are the library's again: a file that
            # cannot be linked back here is read afresh by the next scan
            s.execute(
                update(LibraryFile).where(LibraryFile.id.in_(item["library_files"])).values(excluded=False)
            )
        row = dict(item["sample"])
        old_id, sha = int(row["id"]), str(row["sha256"])
        thumb = studio.store.path("thumbnail", sha)
        ext = EXTENSIONS.get(row.get("format") or "", "bin")
        original = studio.store.path("original", sha, ext) if row.get("storage") == "copy" else None
        if s.scalar(select(Sample.id).where(Sample.project_id == project_id, Sample.sha256 == sha)):
            lost.append({"id": old_id, "reason": "the same image is in the project again"})
            continue
        if not thumb.is_file() and original is None:
            _redraw_thumbnail(studio, Path(str(row.get("path"))), sha)
        if not thumb.is_file() or (original is not None and not original.is_file()):
            lost.append({"id": old_id, "reason": "its copy in the workspace was collected since"})
            continue
        for c in datetimes:
            if row.get(c):
                row[c] = datetime.fromisoformat(row[c])
        if s.get(Sample, old_id) is not None:
            row.pop("id")
        sample = Sample(**row)
        s.add(sample)
        s.flush()
        studio.store.acquire(s, "thumbnail", sha, size=thumb.stat().st_size)
        if original is not None:
            studio.store.acquire(s, "original", sha, size=original.stat().st_size, ext=ext)
        for a in item.get("annotations", []):
            class_id = a.get("class_id") if a.get("class_id") in classes else None
            s.add(
                Annotation(
                    sample_id=sample.id,
                    kind=a["kind"],
                    class_id=class_id,
                    geometry=a.get("geometry"),
                    score=a.get("score"),
                )
            )
        for tag in item.get("tags", []):
            s.add(SampleTag(sample_id=sample.id, tag=tag))
        if item.get("library_files"):
            s.execute(
                update(LibraryFile)
                .where(
                    LibraryFile.id.in_(item["library_files"]),
                    LibraryFile.sample_id.is_(None),
                    LibraryFile.sha256 == sha,
                )
                .values(sample_id=sample.id)
            )
        if item.get("hidden"):
            by = item.get("hidden_by")
            by = by if by is not None and s.get(DuplicateDecision, by) is not None else None
            s.add(
                HiddenSample(sample_id=sample.id, project_id=project_id, decision_id=by, hidden_at=utcnow())
            )
        restored.append(sample.id)
    from vistudio.services import text_index

    text_index.sync(s, restored)  # back in the full-text index with its tags and labels
    return restored, lost


def _redraw_thumbnail(studio: Studio, original: Path, sha: str) -> None:
    """A photo stored by reference whose thumbnail was collected since its removal: draw the
    thumbnail again from the user's file, if that file still holds the same image."""
    from vistudio.ingest.pool import probe_and_store
    from vistudio.storage.blobs import sha256_file

    try:
        if original.is_file() and sha256_file(original) == sha:
            probe_and_store(original, mode="reference", store=studio.store, known=frozenset({sha}))
    except OSError:
        pass  # not readable: the undo reports this sample as not restored
