"""Edit a project's tags and ground-truth labels — one sample, a selection, or every sample matching
a filter — as one transaction and one change in an append-only history that can be undone and redone.

A change stores, per sample it changed, the touched part of the sample before and after (see
``vistudio.db.changes``). Every edit, undo and redo goes through :func:`_apply`, which turns the
wanted per-sample states into set-wise inserts and deletes. An undo restores ``before`` only where
the sample still is as the change left it; otherwise it is refused (409) and names the later change
to undo first, so nothing edited since is silently lost.
"""

from __future__ import annotations

import getpass
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import JSON, Table, Text, bindparam, delete, func, insert, select
from sqlalchemy import cast as sa_cast

from vistudio.db import Annotation, LabelClass, Sample, SampleTag
from vistudio.db.changes import Change, ChangeEntry
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.ml.tasks import get_task
from vistudio.services import text_index
from vistudio.services.projects import find_project
from vistudio.services.samples import matching_query
from vistudio.studio import Studio

KINDS = ("tags", "labels", "annotations")
MAX_SAMPLE_IDS = 100_000  # per request by id (a lasso on the map); larger selections are a filter or all
MAX_NAMES = 100  # tags or classes named in one edit
CHUNK = 5_000  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (a container without passwd entry)
        return "cli"


# ---------------------------------------------------------------------------------------- selection


def _selected(s: Any, p: Any, selection: dict[str, Any]) -> list[int]:
    """The ids of the samples a selection names: exactly one of ``sample_ids`` (ids of this
    project's samples), ``filter`` (the grid's filters, see ``samples.matching_query``) or
    ``all``."""
    given = [k for k in ("sample_ids", "filter", "all") if selection.get(k) not in (None, False)]
    if len(given) != 1:
        raise InvalidInput("choose the samples with exactly one of: sample_ids, filter, all")
    if given[0] == "sample_ids":
        ids = selection["sample_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidInput("sample_ids must be a list of integers")
        if not 1 <= len(ids) <= MAX_SAMPLE_IDS:
            raise InvalidInput(f"give 1 to {MAX_SAMPLE_IDS:,} sample ids (select more with a filter or all)")
        wanted = sorted(set(ids))
        found: dict[int, int] = {}
        for part in _chunks(wanted):
            found.update(
                {
                    sid: pid
                    for sid, pid in s.execute(select(Sample.id, Sample.project_id).where(Sample.id.in_(part)))
                }
            )
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"samples not found: {_few(missing)}", details={"sample_ids": missing[:100]})
        foreign = [i for i in wanted if found[i] != p.id]
        if foreign:
            raise InvalidInput(
                f"samples {_few(foreign)} belong to another project, not {p.name!r}",
                details={"sample_ids": foreign[:100]},
            )
        return wanted
    if given[0] == "filter":
        filters = selection["filter"]
        if not isinstance(filters, dict):
            raise InvalidInput("filter must be an object of the grid's filters")
        try:
            stmt = matching_query(s, p, **filters)
        except TypeError as exc:  # an unknown filter name
            raise InvalidInput(f"unknown filter: {exc}") from None
        return list(s.scalars(stmt.with_only_columns(Sample.id).order_by(Sample.id)))
    return list(s.scalars(select(Sample.id).where(Sample.project_id == p.id).order_by(Sample.id)))


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _few(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:5])
    return shown + (f" and {len(ids) - 5:,} more" if len(ids) > 5 else "")


def _names(values: Iterable[Any], what: str, *, max_length: int) -> list[str]:
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"a {what} must be a non-empty text")
        name = value.strip()
        if len(name) > max_length or _CONTROL.search(name):
            raise InvalidInput(
                f"{what} {name[:40]!r}… is longer than {max_length} characters or has control characters"
            )
        if name not in out:
            out.append(name)
    if len(out) > MAX_NAMES:
        raise InvalidInput(f"at most {MAX_NAMES} {what}s in one edit")
    return out


# ------------------------------------------------------------------------------------- state access


def _table(model: Any) -> Table:
    """A model's table, for core inserts: the ORM's per-row bookkeeping costs seconds at 100,000."""
    return cast(Table, model.__table__)


def _tag_state(s: Any, ids: Sequence[int], touched: Sequence[str]) -> dict[int, list[str]]:
    """Each sample's tags among ``touched``, sorted."""
    state: dict[int, list[str]] = {i: [] for i in ids}
    for part in _chunks(ids):
        rows = s.execute(
            select(SampleTag.sample_id, SampleTag.tag).where(
                SampleTag.sample_id.in_(part), SampleTag.tag.in_(touched)
            )
        )
        for sid, tag in rows:
            state[sid].append(tag)
    return {i: sorted(v) for i, v in state.items()}


def _label_state(s: Any, ids: Sequence[int]) -> dict[int, list[str]]:
    """Each sample's ground-truth labels (class names), sorted."""
    state: dict[int, list[str]] = {i: [] for i in ids}
    for part in _chunks(ids):
        rows = s.execute(
            select(Annotation.sample_id, LabelClass.name)
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .where(Annotation.sample_id.in_(part), Annotation.kind == "label", Annotation.score.is_(None))
        )
        for sid, name in rows:
            state[sid].append(name)
    return {i: sorted(set(v)) for i, v in state.items()}


def _apply(s: Any, p: Any, kind: str, wanted: dict[int, tuple[list[Any], list[Any]]]) -> None:
    """Move each sample from its ``before`` to its ``after`` (lists of names), set-wise: one insert
    per name for the samples gaining it, chunked deletes for those losing it. Objects
    (``annotations``) are replaced per sample."""
    if kind == "annotations":
        from vistudio.services.annotations import apply_objects

        apply_objects(s, p, wanted)
        return
    gain: dict[str, list[int]] = defaultdict(list)
    lose: dict[str, list[int]] = defaultdict(list)
    for sid, (before, after) in wanted.items():
        for name in set(after) - set(before):
            gain[name].append(sid)
        for name in set(before) - set(after):
            lose[name].append(sid)
    if kind == "tags":
        for tag, ids in lose.items():
            for part in _chunks(ids):
                s.execute(delete(SampleTag).where(SampleTag.tag == tag, SampleTag.sample_id.in_(part)))
        for tag, ids in gain.items():
            s.execute(insert(_table(SampleTag)), [{"sample_id": i, "tag": tag} for i in ids])
        return
    class_ids = {
        name: cid
        for name, cid in s.execute(
            select(LabelClass.name, LabelClass.id).where(LabelClass.project_id == p.id)
        )
    }
    for name, ids in lose.items():
        for part in _chunks(ids):
            s.execute(
                delete(Annotation).where(
                    Annotation.sample_id.in_(part),
                    Annotation.kind == "label",
                    Annotation.score.is_(None),
                    Annotation.class_id == class_ids[name],
                )
            )
    for name, ids in gain.items():
        s.execute(
            insert(_table(Annotation)),
            [{"sample_id": i, "kind": "label", "class_id": class_ids[name]} for i in ids],
        )


def _record(
    s: Any,
    p: Any,
    kind: str,
    request: dict[str, Any],
    wanted: dict[int, tuple[list[Any], list[Any]]],
    *,
    actor: str,
    reverts: int | None = None,
) -> dict[str, Any]:
    """Apply the wanted states and write the change with its entries; the change as a dict."""
    changed = {sid: ba for sid, ba in wanted.items() if ba[0] != ba[1]}
    _apply(s, p, kind, changed)
    text_index.sync(s, changed)  # tags and labels are indexed words
    change = Change(
        project_id=p.id, kind=kind, request=request, samples=len(changed), actor=actor[:200], reverts=reverts
    )
    s.add(change)
    s.flush()
    if changed:
        # core insert, states serialised once per distinct value: a bulk edit has few of them
        dumped: dict[tuple[str, ...], str] = {}

        def text(state: list[Any]) -> str:
            if not all(isinstance(v, str) for v in state):  # objects: one sample at a time
                return json.dumps(state)
            key = tuple(state)
            if key not in dumped:
                dumped[key] = json.dumps(state)
            return dumped[key]

        def json_text(name: str) -> Any:
            # the JSON already written: SQLite stores it as is, PostgreSQL casts the text to json
            # (a plain text parameter into a json column is refused; SQLite's CAST AS JSON would
            # make a number of it)
            value = bindparam(name, type_=Text)
            return sa_cast(value, JSON) if s.get_bind().dialect.name == "postgresql" else value

        s.execute(
            insert(_table(ChangeEntry)).values(
                change_id=change.id,
                sample_id=bindparam("sid"),
                before=json_text("b"),
                after=json_text("a"),
            ),
            [{"sid": sid, "b": text(before), "a": text(after)} for sid, (before, after) in changed.items()],
        )
    return _change_dict(change)


def _change_dict(c: Change) -> dict[str, Any]:
    return {
        "change_id": c.id,
        "kind": c.kind,
        "request": c.request,
        "changed": c.samples,
        "actor": c.actor,
        "reverts": c.reverts,
        "created_at": c.created_at.isoformat(),
    }


# ------------------------------------------------------------------------------------------- edits


def edit_tags(
    studio: Studio,
    *,
    project: str | int,
    selection: dict[str, Any],
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    actor: str = "api",
) -> dict[str, Any]:
    """Add and remove tags on the selected samples: ``{"changed": N, "change_id", "selected", …}``.
    Samples already as asked are not counted; when none changes, no change is recorded
    (``change_id`` null)."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        return _edit_tags(s, p, _selected(s, p, selection), add, remove, actor)


def edit_labels(
    studio: Studio,
    *,
    project: str | int,
    selection: dict[str, Any],
    set_to: Sequence[str] | None = None,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    expected: Sequence[str] | None = None,
    create_classes: bool = False,
    actor: str = "api",
) -> dict[str, Any]:
    """Change the ground-truth labels of the selected samples: ``set_to`` replaces them (an empty
    list clears them), or ``add`` / ``remove`` change some. A class the project does not have is
    refused unless ``create_classes`` (then it is created, and said so in ``created_classes``).
    ``expected``: the labels the client saw; a selected sample labelled otherwise now refuses the
    whole edit (409, with its current labels)."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        return _edit_labels(
            s, p, lambda: _selected(s, p, selection), set_to, add, remove, expected, create_classes, actor
        )


def edit_sample(
    studio: Studio,
    sample_id: int,
    *,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    expected_labels: Sequence[str] | None = None,
    create_classes: bool = False,
    actor: str = "api",
) -> list[dict[str, Any]]:
    """Edit one sample's labels and tags in one transaction: the changes made (one per kind)."""
    with studio.sessions.begin() as s:
        sample = s.get(Sample, sample_id)
        if sample is None:
            raise NotFound(f"sample {sample_id} not found")
        p = find_project(s, sample.project_id)
        made = []
        if labels is not None:
            made.append(
                _edit_labels(
                    s, p, lambda: [sample_id], labels, (), (), expected_labels, create_classes, actor
                )
            )
        if add_tags or remove_tags:
            made.append(_edit_tags(s, p, [sample_id], add_tags, remove_tags, actor))
        if not made:
            raise InvalidInput("nothing to change: give tags to add or remove, or the labels")
        return made


def tag_results(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    filters: dict[str, Any],
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    actor: str = "api",
) -> dict[str, Any]:
    """Tag the images of an evaluation's results that pass ``filters`` (those of
    ``evaluation.list_results``: ``subset``, and ``correct``/``true``/``pred`` or ``outcome``), all
    of them, as one change — e.g. every mistake, to fix them or to train on them."""
    from vistudio.services import evaluation

    ids: list[int] = []
    offset = 0
    while True:
        page = evaluation.list_results(
            studio, project=project, experiment=experiment, offset=offset, limit=500, **filters
        )
        ids.extend(item["sample_id"] for item in page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        present: set[int] = set()
        for part in _chunks(sorted(set(ids))):
            present.update(s.scalars(select(Sample.id).where(Sample.id.in_(part), Sample.project_id == p.id)))
        results = {"experiment": str(experiment), **{k: v for k, v in filters.items() if v is not None}}
        return _edit_tags(s, p, sorted(present), add, remove, actor, results=results)


def _edit_tags(
    s: Any,
    p: Any,
    ids: list[int],
    add: Sequence[str],
    remove: Sequence[str],
    actor: str,
    *,
    results: dict[str, Any] | None = None,
) -> dict[str, Any]:
    added = _names(add, "tag", max_length=100)
    removed = _names(remove, "tag", max_length=100)
    if not added and not removed:
        raise InvalidInput("give a tag to add or to remove")
    if set(added) & set(removed):
        raise InvalidInput(f"tag {sorted(set(added) & set(removed))[0]!r} is both added and removed")
    state = _tag_state(s, ids, sorted({*added, *removed}))
    wanted = {sid: (cur, sorted((set(cur) | set(added)) - set(removed))) for sid, cur in state.items()}
    request: dict[str, Any] = {"add": added, "remove": removed}
    if results is not None:  # the evaluation results it was made from
        request["results"] = results
    return _edit(s, p, "tags", request, wanted, actor=actor)


def _edit_labels(
    s: Any,
    p: Any,
    select_ids: Callable[[], list[int]],
    set_to: Sequence[str] | None,
    add: Sequence[str],
    remove: Sequence[str],
    expected: Sequence[str] | None,
    create_classes: bool,
    actor: str,
) -> dict[str, Any]:
    if set_to is not None and (add or remove):
        raise InvalidInput("either set the labels or add/remove some, not both")
    target = _names(set_to, "class", max_length=200) if set_to is not None else None
    added = _names(add, "class", max_length=200)
    removed = _names(remove, "class", max_length=200)
    if target is None and not added and not removed:
        raise InvalidInput("give the labels to set, add or remove")
    spec = get_task(p.task)
    if "label" not in spec.annotation_kinds or spec.has_objects:
        raise InvalidInput(f"{spec.title} projects have no image labels to edit")
    known = set(s.scalars(select(LabelClass.name).where(LabelClass.project_id == p.id)))
    unknown = [n for n in (*(target or ()), *added) if n not in known]
    if unknown and not create_classes:
        raise InvalidInput(
            f"project {p.name!r} has no class {unknown[0]!r}"
            + (f" (nor {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + "; to create it on purpose, ask for it (create_classes in the API, --create-class in the CLI)",
            details={"unknown_classes": unknown},
        )
    ids = select_ids()  # after the class check: a refused edit reads no selection
    state = _label_state(s, ids)
    if expected is not None:
        seen = sorted(_names(expected, "class", max_length=200))
        stale = [sid for sid, cur in state.items() if cur != seen]
        if stale:
            raise Conflict(
                f"the labels of sample{'s' if len(stale) > 1 else ''} {_few(stale)} changed since they were "
                "loaded; see details.current",
                details={"current": {str(sid): state[sid] for sid in stale[:100]}},
            )
    if unknown:
        top = s.scalar(select(func.max(LabelClass.ordinal)).where(LabelClass.project_id == p.id))
        for offset, name in enumerate(unknown, start=1):
            s.add(LabelClass(project_id=p.id, name=name, ordinal=(top if top is not None else -1) + offset))
        s.flush()
    if target is not None:
        wanted = {sid: (cur, sorted(target)) for sid, cur in state.items()}
        request: dict[str, Any] = {"set": target}
    else:
        wanted = {sid: (cur, sorted((set(cur) | set(added)) - set(removed))) for sid, cur in state.items()}
        request = {"add": added, "remove": removed}
    if unknown:
        request["created_classes"] = unknown
    out = _edit(s, p, "labels", request, wanted, actor=actor)
    out["created_classes"] = unknown
    return out


def _edit(
    s: Any,
    p: Any,
    kind: str,
    request: dict[str, Any],
    wanted: dict[int, tuple[list[Any], list[Any]]],
    *,
    actor: str,
) -> dict[str, Any]:
    if all(before == after for before, after in wanted.values()) and not request.get("created_classes"):
        return {"change_id": None, "kind": kind, "request": request, "changed": 0, "selected": len(wanted)}
    out = _record(s, p, kind, request, wanted, actor=actor)
    out["selected"] = len(wanted)
    return out


# -------------------------------------------------------------------------------------- undo / redo


class _Entry(NamedTuple):
    sample_id: int
    before: list[Any]
    after: list[Any]


def _entries(s: Any, change_id: int) -> list[_Entry]:
    """A change's entries, each distinct state parsed once (a bulk edit has few)."""
    parsed: dict[str, list[Any]] = {}

    def names(text: str) -> list[Any]:
        if text not in parsed:
            parsed[text] = json.loads(text)
        return parsed[text]

    rows = s.execute(
        select(
            # the stored text itself (PostgreSQL's driver would parse a json column): parsed once
            # per distinct state above
            ChangeEntry.sample_id,
            sa_cast(ChangeEntry.before, Text),
            sa_cast(ChangeEntry.after, Text),
        ).where(ChangeEntry.change_id == change_id)
    )
    return [_Entry(sid, names(b), names(a)) for sid, b, a in rows]


def _project_changes(s: Any, p: Any) -> list[Change]:
    return list(s.scalars(select(Change).where(Change.project_id == p.id).order_by(Change.id)))


def _undone(changes: list[Change]) -> set[int]:
    """Ids of the changes whose effect is taken back: reverted by a change that is not itself
    undone (an undo of an undo is a redo). Walked newest first, so a revert is settled first."""
    undone: set[int] = set()
    for c in reversed(changes):
        if c.reverts is not None and c.id not in undone:
            undone.add(c.reverts)
    return undone


def undo(
    studio: Studio, *, project: str | int, change_id: int | None = None, actor: str = "api"
) -> dict[str, Any]:
    """Take back a change (the project's newest edit still in effect when no id is given)."""
    return _revert(studio, project=project, change_id=change_id, actor=actor, redo=False)


def redo(
    studio: Studio, *, project: str | int, change_id: int | None = None, actor: str = "api"
) -> dict[str, Any]:
    """Take back an undo (the project's newest undo still in effect when no id is given); with an
    id, the id of the change that was undone."""
    return _revert(studio, project=project, change_id=change_id, actor=actor, redo=True)


def _revert(
    studio: Studio, *, project: str | int, change_id: int | None, actor: str, redo: bool
) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        changes = _project_changes(s, p)
        by_id = {c.id: c for c in changes}
        undone = _undone(changes)
        originals = [c for c in changes if c.reverts is None]
        if redo:
            # the undos in effect: a redo reverts the newest undo of the change
            undos = {c.reverts: c for c in changes if c.reverts in by_id and by_id[c.reverts].reverts is None}
            live = {orig: u for orig, u in undos.items() if u.id not in undone and orig in undone}
            if change_id is None:
                if not live:
                    raise Conflict("nothing to redo")
                target = max(live.values(), key=lambda c: c.id)
            elif change_id not in by_id:
                raise NotFound(f"change {change_id} not found in project {p.name!r}")
            elif change_id not in live:
                raise Conflict(f"change {change_id} is not undone; nothing to redo")
            else:
                target = live[change_id]
        else:
            if change_id is None:
                live_edits = [c for c in originals if c.id not in undone and c.samples]
                if not live_edits:
                    raise Conflict("nothing to undo")
                target = live_edits[-1]
            elif change_id not in by_id:
                raise NotFound(f"change {change_id} not found in project {p.name!r}")
            else:
                target = by_id[change_id]
                if target.reverts is not None:
                    raise InvalidInput(
                        f"change {change_id} is an undo or a redo: redo or undo the original change"
                    )
                if target.id in undone:
                    raise Conflict(f"change {change_id} is already undone")
        entries = _entries(s, target.id)
        ids = sorted(e.sample_id for e in entries)
        state: dict[int, list[Any]]
        if target.kind == "tags":
            touched = sorted({t for e in entries for t in (*e.before, *e.after)})
            state = dict(_tag_state(s, ids, touched))
        elif target.kind == "annotations":
            from vistudio.services.annotations import editable_kinds, object_state

            state = dict(object_state(s, ids, editable_kinds(p.task)))
        else:
            state = dict(_label_state(s, ids))
        stale = sorted(e.sample_id for e in entries if state[e.sample_id] != e.after)
        if stale:
            later = s.scalar(
                select(func.max(ChangeEntry.change_id)).where(
                    ChangeEntry.sample_id.in_(stale[:CHUNK]), ChangeEntry.change_id > target.id
                )
            )
            word = "redo" if redo else "undo"
            raise Conflict(
                f"cannot {word} change {target.reverts if redo else target.id}: {len(stale):,} of its samples "
                f"changed since" + (f" (last by change {later}; undo that first)" if later else ""),
                details={"sample_ids": stale[:100], "later_change": later},
            )
        wanted = {e.sample_id: (list(e.after), list(e.before)) for e in entries}
        request = {"redo" if redo else "undo": target.reverts if redo else target.id}
        return _record(s, p, target.kind, request, wanted, actor=actor, reverts=target.id)


# ----------------------------------------------------------------------------------------- history


def history(
    studio: Studio,
    *,
    project: str | int,
    sample_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """The project's changes, newest first (only those touching ``sample_id`` when given, each
    with that sample's before and after); each says whether it is ``undone``."""
    if not 0 <= offset <= 2**62 or not 1 <= limit <= 500:
        raise InvalidInput("offset must be >= 0 and limit between 1 and 500")
    with studio.sessions() as s:
        p = find_project(s, project)
        undone = _undone(_project_changes(s, p))
        stmt = select(Change).where(Change.project_id == p.id)
        if sample_id is not None:
            sample = s.get(Sample, sample_id)
            if sample is None or sample.project_id != p.id:
                raise NotFound(f"sample {sample_id} not found in project {p.name!r}")
            stmt = stmt.where(
                Change.id.in_(select(ChangeEntry.change_id).where(ChangeEntry.sample_id == sample_id))
            )
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = list(s.scalars(stmt.order_by(Change.id.desc()).offset(offset).limit(limit)))
        entries: dict[int, ChangeEntry] = {}
        if sample_id is not None and rows:
            entries = {
                e.change_id: e
                for e in s.scalars(
                    select(ChangeEntry).where(
                        ChangeEntry.sample_id == sample_id, ChangeEntry.change_id.in_([c.id for c in rows])
                    )
                )
            }
        items = []
        for c in rows:
            item = _change_dict(c) | {"undone": c.id in undone}
            if c.id in entries:
                item["before"], item["after"] = entries[c.id].before, entries[c.id].after
            items.append(item)
        return {"items": items, "total": total, "offset": offset, "limit": limit}
