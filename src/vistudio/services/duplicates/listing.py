"""Listing groups for review: one page of a level's groups with their counts, one group by id,
and the dicts a reviewer sees (members, distances, decisions, whether a removal can work)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import Sample
from vistudio.db.duplicates import DuplicateDecision, HiddenSample
from vistudio.errors import InvalidInput
from vistudio.services.duplicates.grouping import _compute, _find_group, _Group
from vistudio.services.duplicates.hashes import compute_hashes, count_unhashed, start_hashing
from vistudio.services.duplicates.params import (
    STATUSES,
    _chunks,
    _iso,
    _paging,
    check_level,
    check_threshold,
)
from vistudio.services.duplicates.removal import _removal_blocked, _split_holds
from vistudio.services.projects import find_project
from vistudio.studio import Studio


def _inline_hashes() -> int:
    """``INLINE_HASHES`` as the package holds it now: callers and tests tune it there."""
    from vistudio.services import duplicates

    return duplicates.INLINE_HASHES


def _sample_entry(row: Sample) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "path": row.path,
        "storage": row.storage,
        "width": row.width,
        "height": row.height,
        "format": row.format,
        "bytes": row.bytes,
        "taken_at": _iso(row.taken_at),
        "imported_at": _iso(row.imported_at),
        "thumbnail_url": f"/api/v1/samples/{row.id}/thumbnail",
    }


def decision_dict(d: DuplicateDecision) -> dict[str, Any]:
    return {
        "id": d.id,
        "group": d.group_key,
        "level": d.level,
        "action": d.action,
        "keeper": d.keeper_id,
        "members": list(d.members or []),
        "affected": list(d.affected or []),
        "undoable": d.action != "remove" or bool(d.snapshot),
        "decided_at": _iso(d.decided_at),
        # what a removal took away, by name (the samples are gone: their rows are in the snapshot)
        "removed": [
            {"id": x["sample"]["id"], "name": x["sample"]["name"]}
            for x in ((d.snapshot or {}).get("samples") or [])[:20]
        ],
    }


def _present(
    s: Session,
    groups: list[_Group],
    decisions: dict[str, DuplicateDecision],
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Full dicts of ``groups``: their members with what a reviewer compares (the keeper first,
    then by distance; ``offset``/``limit`` pick a window of them, ``size`` counts them all), and
    for a group still to decide whether "remove others" can work (``remove_blocked``)."""
    end = None if limit is None else offset + limit
    ordered = {
        g.key: sorted(g.members, key=lambda m: (m != g.keeper, g.distances.get(m, 0), m))[offset:end]
        for g in groups
        if g.level != "exact"
    }
    sample_ids = sorted({g.keeper for g in groups} | {m for ms in ordered.values() for m in ms})
    rows: dict[int, Sample] = {}
    hidden: set[int] = set()
    for chunk in _chunks(sample_ids):
        rows.update({r.id: r for r in s.scalars(select(Sample).where(Sample.id.in_(chunk)))})
        hidden.update(s.scalars(select(HiddenSample.sample_id).where(HiddenSample.sample_id.in_(chunk))))
    open_groups = [g for g in groups if g.level != "exact" and g.key not in decisions]
    held = _split_holds(s, sorted({m for g in open_groups for m in g.members}))
    out = []
    for g in groups:
        entries: list[dict[str, Any]] = []
        if g.level == "exact":
            base = _sample_entry(rows[g.keeper]) if g.keeper in rows else {"id": g.keeper}
            for f in g.files[offset:end]:
                entries.append(
                    {
                        **base,
                        "file_id": f["file_id"],
                        "path": f["path"],
                        "name": Path(f["path"]).name,
                        "bytes": f["size"],
                        "mtime": _mtime_iso(f["mtime"]),
                        "distance": 0,
                        "keeper": f["file_id"] == g.keeper_file,
                        "hidden": g.keeper in hidden,
                    }
                )
        else:
            for m in ordered[g.key]:
                if m not in rows:
                    continue
                entries.append(
                    {
                        **_sample_entry(rows[m]),
                        "distance": g.distances.get(m, 0),
                        "keeper": m == g.keeper,
                        "hidden": m in hidden,
                    }
                )
        decision = decisions.get(g.key)
        d: dict[str, Any] = {
            "id": g.key,
            "level": g.level,
            "size": len(g.members),
            "keeper": g.keeper,
            "distance": max(g.distances.values(), default=0),
            "samples": entries,
            "samples_offset": offset,
            "decision": decision_dict(decision) if decision else None,
            "remove_blocked": None,
        }
        if g.level == "exact":
            d["keeper_file"] = g.keeper_file
        elif decision is None:
            d["remove_blocked"] = _removal_blocked(held, [m for m in g.members if m != g.keeper])
        out.append(d)
    return out


def _mtime_iso(mtime: float | None) -> str | None:
    """A file's modification time for display; one no calendar can show (year 10000…) is None."""
    if not mtime:
        return None
    try:
        return _iso(datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None))
    except (ValueError, OverflowError, OSError):
        return None


def _decisions(s: Session, project_id: int) -> dict[str, DuplicateDecision]:
    return {
        d.group_key: d
        for d in s.scalars(select(DuplicateDecision).where(DuplicateDecision.project_id == project_id))
    }


def list_groups(
    studio: Studio,
    *,
    project: str | int,
    level: str = "perceptual",
    threshold: float | None = None,
    status: str = "all",
    offset: int = 0,
    limit: int | None = 50,
    hash_inline: int | None = None,
) -> dict[str, Any]:
    """One page of a level's duplicate groups, largest first, with counts and level notes.

    At the perceptual level, samples not hashed yet are hashed here when they are few
    (``hash_inline``, default ``INLINE_HASHES``); otherwise a ``duplicate_hashes`` job is queued
    (``hashing.job``) and their variants are predicted from their stored hash meanwhile.
    """
    check_level(level)
    value = check_threshold(studio, level, threshold)
    if status not in STATUSES:
        raise InvalidInput(f"unknown status {str(status)[:40]!r}; use one of {', '.join(STATUSES)}")
    _paging(offset, limit)
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    job = None
    pending = 0
    if level == "perceptual":
        pending = count_unhashed(studio, project_id=project_id)
        if 0 < pending <= (_inline_hashes() if hash_inline is None else hash_inline):
            compute_hashes(studio, project_id=project_id)
            pending = 0
        elif pending:
            job = start_hashing(studio, project=project_id)
    computed = _compute(studio, project_id, name, level, value)
    with studio.sessions() as s:
        decisions = _decisions(s, project_id)
        groups = computed.groups
        reviewed = sum(g.key in decisions for g in groups)
        if status == "open":
            groups = [g for g in groups if g.key not in decisions]
        elif status == "reviewed":
            groups = [g for g in groups if g.key in decisions]
        items = _present(s, groups[offset : None if limit is None else offset + limit], decisions)
    extra = computed.extra
    if level == "perceptual":
        extra["hashing"] = {"pending": pending, "job": job}
    return {
        "project": name,
        "level": level,
        "threshold": value,
        "status": status,
        "items": items,
        "total": len(groups),
        "offset": offset,
        "limit": limit,
        "counts": {
            "groups": len(computed.groups),
            "open": len(computed.groups) - reviewed,
            "reviewed": reviewed,
            "duplicates": sum(len(g.members) - 1 for g in computed.groups),
        },
        **extra,
    }


def get_group(
    studio: Studio,
    *,
    project: str | int,
    group: str,
    threshold: float | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """One group by id (found again at its level and ``threshold``), with its decision;
    ``offset``/``limit`` page through its members (``size`` counts them all)."""
    _paging(offset, limit)
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    g, _, _ = _find_group(studio, project_id, name, group, None, threshold)
    with studio.sessions() as s:
        return _present(s, [g], _decisions(s, project_id), offset=offset, limit=limit)[0]
