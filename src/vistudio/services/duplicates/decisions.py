"""Decisions on groups: ``keep``, ``hide`` and ``remove``, their undo, and the list of them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vistudio.db import Sample, utcnow
from vistudio.db.duplicates import DuplicateDecision, HiddenSample
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services.duplicates.grouping import _find_group
from vistudio.services.duplicates.listing import _present, decision_dict
from vistudio.services.duplicates.params import ACTIONS, _chunks, _paging
from vistudio.services.duplicates.removal import _remove, _restore
from vistudio.services.projects import find_project
from vistudio.studio import Studio


def decide(
    studio: Studio,
    *,
    project: str | int,
    group: str,
    action: str,
    level: str | None = None,
    threshold: float | None = None,
    keeper: int | None = None,
) -> dict[str, Any]:
    """Apply ``keep``, ``hide`` or ``remove`` to a group (found again by its id at its level and
    ``threshold``). ``keeper`` overrides the suggested keeper. Returns the decision and the group.
    """
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {str(action)[:40]!r}; use one of {', '.join(ACTIONS)}")
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    g, level, _ = _find_group(studio, project_id, name, group, level, threshold)
    if level == "exact":
        if action != "keep":
            raise InvalidInput(
                "exact duplicates are files with identical bytes behind one sample: there is nothing "
                "to hide or remove in the project, and vistudio never deletes your files. Mark the "
                "group reviewed with 'keep', and delete the extra copies yourself if you want."
            )
        if keeper not in (None, g.keeper):
            raise InvalidInput(f"the keeper of an exact group is its sample, {g.keeper}")
    elif keeper is not None:
        if keeper not in g.members:
            raise InvalidInput(f"sample {keeper} is not in group {g.key}", details={"members": g.members})
        g.keeper = keeper
    others = [] if level == "exact" else [m for m in g.members if m != g.keeper]
    with studio.sessions.begin() as s:
        existing = s.scalar(
            select(DuplicateDecision).where(
                DuplicateDecision.project_id == project_id, DuplicateDecision.group_key == g.key
            )
        )
        if existing is not None:
            raise Conflict(
                f"group {g.key} was already reviewed ({existing.action}); undo that decision first",
                details={"decision": decision_dict(existing)},
            )
        wanted = [g.keeper, *others]
        present = {
            sid
            for chunk in _chunks(wanted)
            for sid in s.scalars(
                select(Sample.id).where(Sample.id.in_(chunk), Sample.project_id == project_id)
            )
        }
        if len(present) != len(set(wanted)):
            raise Conflict(f"group {g.key} changed while it was reviewed; list the groups again")
        decision = DuplicateDecision(
            project_id=project_id,
            group_key=g.key,
            level=level,
            action=action,
            keeper_id=g.keeper,
            members=list(g.members),
            affected=[],
            decided_at=utcnow(),
        )
        s.add(decision)
        s.flush()
        before = _present(s, [g], {})[0] if action == "remove" else None
        if action == "hide":
            decision.affected = _hide(s, project_id, decision.id, others)
        elif action == "remove":
            decision.snapshot = _remove(studio, s, project_id, others)
            decision.affected = others
        s.flush()
        out = decision_dict(decision)
        # a removed group is shown as it was (its samples are gone now)
        shown = {**before, "decision": out} if before else _present(s, [g], {g.key: decision})[0]
    return {"decision": out, "group": shown, "project": name}


def _hide(s: Session, project_id: int, decision_id: int, sample_ids: list[int]) -> list[int]:
    already = {
        sid
        for chunk in _chunks(sample_ids)
        for sid in s.scalars(select(HiddenSample.sample_id).where(HiddenSample.sample_id.in_(chunk)))
    }
    new = [sid for sid in sample_ids if sid not in already]
    for sid in new:
        s.add(HiddenSample(sample_id=sid, project_id=project_id, decision_id=decision_id, hidden_at=utcnow()))
    return new


def undo(studio: Studio, *, project: str | int, decision: int) -> dict[str, Any]:
    """Take a decision back: unhide what it hid, restore what it removed (while the removed
    samples' blobs are still in the workspace)."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        d = s.get(DuplicateDecision, decision) if 0 < decision < 2**63 else None
        if d is None or d.project_id != p.id:
            raise NotFound(f"no duplicate decision {decision} in project {p.name!r}")
        restored: list[int] = []
        lost: list[dict[str, Any]] = []
        if d.action == "hide":
            s.execute(delete(HiddenSample).where(HiddenSample.decision_id == d.id))
        elif d.action == "remove":
            snapshot = (d.snapshot or {}).get("samples", [])
            restored, lost = _restore(studio, s, p.id, snapshot)
            # library photos go back to the library even when their samples cannot be restored:
            # the next scan reads their files afresh
            if lost and not restored and not any(item.get("library_files") for item in snapshot):
                raise Conflict(
                    "this removal cannot be undone any more: "
                    + "; ".join(f"sample {x['id']}: {x['reason']}" for x in lost[:5]),
                    details={"not_restored": lost},
                )
        out = decision_dict(d)
        s.delete(d)
        project_id = p.id
    embedding = None
    if restored:  # their vectors went with them: search finds them again once re-embedded
        from vistudio.services.embeddings import embed_new_samples

        embedding = embed_new_samples(studio, project_id)
    return {
        "undone": out,
        "restored": restored,
        "not_restored": lost,
        "project": p.name,
        "embedding": embedding,
    }


def list_decisions(
    studio: Studio, *, project: str | int, action: str | None = None, offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    """The project's decisions, newest first (``action``: only those)."""
    _paging(offset, limit)
    if action is not None and action not in ACTIONS:
        raise InvalidInput(f"unknown action {str(action)[:40]!r}; use one of {', '.join(ACTIONS)}")
    with studio.sessions() as s:
        p = find_project(s, project)
        stmt = select(DuplicateDecision).where(DuplicateDecision.project_id == p.id)
        if action is not None:
            stmt = stmt.where(DuplicateDecision.action == action)
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(DuplicateDecision.id.desc()).offset(offset).limit(limit))
        return {"items": [decision_dict(d) for d in rows], "total": total, "offset": offset, "limit": limit}


def hidden_ids(project_id: int) -> Any:
    """A SELECT of the project's hidden sample ids, for browsing and search to leave out."""
    return select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
