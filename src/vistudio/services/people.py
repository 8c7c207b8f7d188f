"""People: faces grouped into people, and everything a user decides about them.

Grouping (``ml.face_clusters``) runs in two ways:

- **incremental**, at the end of every face job: new faces join the people they are closest to
  (with a margin over the second best), and groups of at least ``faces.min_faces`` new faces become
  new, unnamed people; nobody already grouped moves.
- **re-cluster** (``vistudio people recluster``, a job): the faces of people nobody touched (unnamed,
  not hidden, no face placed by hand) are grouped afresh. People a user named, hid or placed a face
  in keep every face they have, and are never renamed, merged or deleted by it; a new group takes
  the id of the old unnamed person most of its faces came from, so a re-cluster of unchanged faces
  changes nothing.

Every rule of the grouping holds for both: faces placed by hand stay (must-link), "not this person"
is remembered (cannot-link), two faces of one photo are never one person. Faces below
``faces.min_size`` pixels or ``faces.min_score`` are kept and listed but not grouped.

User decisions — rename, merge, move faces (split), "not this person", hide, delete, cover — are
one transaction each, recorded with the state of what they touched before and after, so that
``undo`` and ``redo`` walk back and forth through them (a new decision ends what could be redone);
a face placed by a user is ``manual``. Purging cannot be undone, and clears the history.

The review ("is this Alice?") reads suggestions kept on the unplaced faces, worked out by the
grouping and kept right by every decision (see "the review's suggestions" below): a page of it is
an indexed query at any size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Double, Integer, Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from vistudio.db import Job, JobEvent, Project, Sample, utcnow
from vistudio.db.faces import Face, FaceRejection, FaceScan, PeopleChange, Person
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services import text_index
from vistudio.services.faces import max_distance as face_max_distance
from vistudio.services.faces import model_name
from vistudio.services.projects import find_project
from vistudio.studio import Studio
from vistudio.text import plural

KIND = "people"
MAX_NAME = 200


# --- grouping -----------------------------------------------------------------------------------


def cluster_project(studio: Studio, project_id: int, *, full: bool) -> dict[str, int]:
    """Group the project's faces (see the module docstring); a report of what changed."""
    from vistudio.ml.face_clusters import cluster_faces

    cfg = studio.settings.faces
    model = model_name(studio)
    with studio.sessions() as s:
        # (the suggestion columns lie beside person_id in the row: reading them costs nothing more)
        rows = s.execute(
            select(Face.id, Face.sample_id, Face.person_id, Face.assigned, Face.w, Face.h, Face.score)
            .add_columns(Face.suggested_person_id, Face.suggested_distance)
            .add_columns(Sample.width, Sample.height)
            .join(Sample, Sample.id == Face.sample_id)
            .where(Face.project_id == project_id, Face.model == model)
            .order_by(Face.id)
        ).all()
        people = {p.id: p for p in s.scalars(select(Person).where(Person.project_id == project_id))}
        anchored = {p.id for p in people.values() if p.name is not None or p.hidden}
        anchored |= {r.person_id for r in rows if r.assigned == "manual" and r.person_id is not None}
    seeds: dict[int, list[int]] = {}
    free: list[int] = []
    for n, r in enumerate(rows):
        if r.person_id is not None and (not full or r.person_id in anchored):
            seeds.setdefault(r.person_id, []).append(n)
        elif (
            r.assigned != "manual"
            and min(r.w * r.width, r.h * r.height) >= cfg.min_size
            and r.score >= cfg.min_score
        ):
            free.append(n)
    report = {"faces": len(rows), "grouped": len(free), "assigned": 0, "new_people": 0, "removed_people": 0}
    # The review's suggestions of the faces that may end without a person come from the same search:
    # every one of them when there is grouping to do, else those not worked out yet (if any)
    if free:
        near = sorted({n for n, r in enumerate(rows) if r.person_id is None} | set(free))
    else:
        near = [n for n, r in enumerate(rows) if r.person_id is None and r.suggested_distance is None]
    if not free and not near:
        return {**report, "ambiguous": 0}  # nothing to place: the descriptors are not even read
    index = {r.id: n for n, r in enumerate(rows)}
    with studio.sessions() as s:
        stored = dict(
            s.execute(
                select(Face.id, Face.embedding).where(Face.project_id == project_id, Face.model == model)
            ).all()
        )
        # a face deleted since the first read (its photo removed) keeps a zero row and stays free
        dim = len(next(iter(stored.values()))) // 4 if stored else 128
        blank = bytes(4 * dim)
        vectors = np.frombuffer(b"".join(stored.get(r.id, blank) for r in rows), dtype="<f4").reshape(
            len(rows), -1
        )
        free = [n for n in free if rows[n].id in stored]
        near = [n for n in near if rows[n].id in stored]
        rejected_rows = s.execute(
            select(FaceRejection.face_id, FaceRejection.person_id)
            .join(Face, Face.id == FaceRejection.face_id)
            .where(Face.project_id == project_id)
        ).all()
    result = cluster_faces(
        vectors,
        np.array([r.sample_id for r in rows], dtype=np.int64),
        seeds=seeds,
        free=free,
        rejected=[(index[f], p) for f, p in rejected_rows if f in index],
        threshold=face_max_distance(cfg),
        min_faces=cfg.min_faces,
        near=near,
        reach=_reach(studio),
    )
    # a new group takes the id of the untouched person most of its faces came from
    reusable = {pid for pid in people if pid not in anchored}
    target: dict[int, int | None] = dict.fromkeys(free)
    target.update(result.assigned)
    with studio.sessions.begin() as s:
        fresh: list[list[int]] = []  # the groups that become new people
        for group in result.new_groups:
            votes = Counter(rows[n].person_id for n in group if rows[n].person_id in reusable)
            pid = next((p for p, _ in votes.most_common() if p in reusable), None)
            if pid is None:
                fresh.append(group)
                continue
            reusable.discard(pid)
            target.update(dict.fromkeys(group, pid))
        # The new people (a first grouping makes thousands) in multi-row INSERT … RETURNING
        # statements, each made with the cover _fix_covers would give them — their largest, surest
        # face — which also tells which returned id is which group's (SQLite returns rows in no
        # promised order, and asked for one it inserts them one at a time).
        covers: dict[int, list[int]] = {}
        for group in fresh:
            best = min(group, key=lambda n: (-(rows[n].w * rows[n].h), -rows[n].score, rows[n].id))
            covers[rows[best].id] = group
        if covers:
            made = s.execute(
                insert(Person).returning(Person.id, Person.cover_face_id),
                [{"project_id": project_id, "cover_face_id": face} for face in covers],
            ).all()
            for pid, face in made:
                assert face is not None  # every one was made with its cover
                target.update(dict.fromkeys(covers[face], pid))
        report["new_people"] = len(fresh)
        # one UPDATE per (old person, new person): a user's decision made while this ran wins,
        # since only faces still as they were read are written
        moves: dict[tuple[int | None, int | None], list[int]] = {}
        for n, pid in target.items():
            r = rows[n]
            if r.person_id != pid or (pid is not None and r.assigned != "auto"):
                moves.setdefault((r.person_id, pid), []).append(r.id)
        # a face placed has no suggestion: cleared where there is one (setting the others' NULLs
        # again would rewrite their index entries for nothing); one left unplaced gets one below
        stale = {r.id for r in rows if r.suggested_person_id is not None or r.suggested_distance is not None}
        for (old, new), ids in moves.items():
            clear = [i for i in ids if i in stale] if new is not None else []
            for part, values in (
                (clear, _NO_SUGGESTION),
                ([i for i in ids if i not in stale] if clear else ids, {}),
            ):
                for lo in range(0, len(part), 10_000):
                    done = s.execute(
                        update(Face)
                        .where(
                            Face.id.in_(part[lo : lo + 10_000]),
                            Face.person_id.is_(None) if old is None else Face.person_id == old,
                            Face.assigned.is_distinct_from("manual"),
                        )
                        .values(person_id=new, assigned=None if new is None else "auto", **values)
                        # no face is loaded in this session: nothing to keep in step (and checking
                        # the session for each of a first grouping's thousands of statements costs)
                        .execution_options(synchronize_session=False)
                    )
                    report["assigned"] += done.rowcount or 0  # type: ignore[attr-defined]
        # the suggestions of the faces left without a person: the person of their nearest placed
        # face (of a visible person they were not said not to be), from the grouping's search
        hidden = {pid for pid, x in people.items() if x.hidden}
        ruled_out = set(rejected_rows)

        def now(n: int) -> int | None:
            return target[n] if n in target else rows[n].person_id

        found: list[_Suggestion] = []
        for n in near:
            if now(n) is not None:
                continue
            r = rows[n]
            choice = next(
                (
                    (who, d, rows[m].id)
                    for m, d in result.near_of(n)
                    if (who := now(m)) is not None and who not in hidden and (r.id, who) not in ruled_out
                ),
                None,
            )
            pid, d, via = choice or (None, NOBODY, None)
            found.append(_Suggestion(r.id, pid, d, via, r.suggested_person_id, r.suggested_distance))
        _write_suggestions(s, found)
        text_index.sync_faces(s, [i for ids in moves.values() for i in ids])  # named people's photos
        report["removed_people"] = _drop_empty_people(s, project_id)
        _fix_covers(s, project_id, {p for pair in moves for p in pair if p is not None})
    return {**report, "ambiguous": len(result.ambiguous)}


def _drop_empty_people(s: Session, project_id: int) -> int:
    """Delete the unnamed, visible people left without faces (a named or hidden one is the user's)."""
    has_faces = select(Face.id).where(Face.person_id == Person.id).exists()
    doomed = s.scalars(
        select(Person.id).where(
            Person.project_id == project_id, Person.name.is_(None), Person.hidden.is_(False), ~has_faces
        )
    ).all()
    if doomed:
        _forget(s, doomed)  # (none should name them: they have no face to be nearest)
        s.execute(delete(Person).where(Person.id.in_(doomed)))
    return len(doomed)


def _fix_covers(s: Session, project_id: int, person_ids: set[int] | None = None) -> None:
    """Give every person (of ``person_ids``, when given) whose cover is not one of their faces
    their largest, surest face."""
    where = [Person.project_id == project_id]
    if person_ids is not None:
        if not person_ids:
            return
        where.append(Person.id.in_(person_ids))
    chosen = list(s.scalars(select(Person).where(*where)))
    covers = [p.cover_face_id for p in chosen if p.cover_face_id is not None]
    owner: dict[int, int | None] = {}  # the person each cover face is in, 10,000 faces a query
    for lo in range(0, len(covers), 10_000):
        owner.update(
            s.execute(select(Face.id, Face.person_id).where(Face.id.in_(covers[lo : lo + 10_000]))).all()
        )
    for person in chosen:
        if person.cover_face_id is not None and owner.get(person.cover_face_id) == person.id:
            continue
        person.cover_face_id = s.scalar(
            select(Face.id)
            .where(Face.person_id == person.id)
            .order_by((Face.w * Face.h).desc(), Face.score.desc(), Face.id)
            .limit(1)
        )


def start_recluster(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue a re-cluster of the project's faces (see the module docstring)."""
    from vistudio.jobs.queue import job_dict

    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    for status in ("queued", "running"):
        open_jobs, _ = studio.queue.list(kind=KIND, project_id=project_id, status=status)
        if open_jobs:
            return job_dict(open_jobs[0])
    return job_dict(studio.queue.enqueue(KIND, {"project": name}, project_id=project_id))


@job_handler(KIND)
def run_recluster(ctx: JobContext) -> dict[str, Any]:
    if ctx.project_id is None:
        raise PermanentJobError("the project of this job was deleted")
    ctx.progress(0, None, "grouping faces into people", force=True)
    report = cluster_project(ctx.studio, ctx.project_id, full=True)
    ctx.progress(1, 1, f"{report['new_people']} new people", force=True)
    return {"report": report}


# --- the review's suggestions --------------------------------------------------------------------
#
# Each face without a person keeps the review's suggestion for it (``faces.suggested_*``): the
# person of its nearest placed face — of a visible person it was not said not to be — closer than
# ``faces.max_distance`` + ``REVIEW_MARGIN``, the face it came from, and the distance. The review is
# then one indexed query. They are worked out where the neighbours are known already — at the end
# of every grouping, for every face left without a person, from the grouping's own search — and
# kept right by every decision for what it touches (``_after``): a face placed has none; a face
# taken out of a person, or said not to be one, gets its own (against every placed face); the
# faces whose suggestion came from a face that moved follow it to its new person (or get their
# own); the unplaced faces are compared with faces newly placed (a few thousand at most); hiding or
# deleting a person takes their suggestions away. What needs every placed face read (a million
# faces: seconds) is done at once in a library of up to ``SUGGEST_INLINE_PLACED`` placed faces,
# else by a ``people-suggestions`` job, the faces waiting meanwhile without a suggestion (not
# worked out: ``suggested_distance`` NULL); a review that finds faces waiting with no job to work
# them out (a workspace from before migration 0018) works them out or queues the job likewise.

SUGGEST_KIND = "people-suggestions"
REVIEW_MARGIN = 0.1  # a suggestion may be less sure than the grouping (faces.max_distance + this)
NOBODY = -1.0  # suggested_distance of an unplaced face with nobody within reach
SUGGEST_INLINE_PLACED = 50_000  # placed faces a decision reads to work out suggestions (else a job)
SUGGEST_INLINE_PAIRS = 500_000_000  # faces worked out × placed faces compared in a decision
REFRESH_NEW_MAX = 5_000  # faces newly placed compared with every unplaced face (else a job: all)
REFRESH_UNPLACED_MAX = 200_000  # unplaced faces read for that
_CHUNK = 10_000
_NO_SUGGESTION: dict[str, Any] = {
    "suggested_person_id": None,
    "suggested_distance": None,
    "suggested_face_id": None,
}


class _Suggestion(NamedTuple):
    """A face's suggestion worked out, and the one stored as it was read (written only if unchanged)."""

    face: int
    person: int | None
    distance: float
    via: int | None
    old_person: int | None
    old_distance: float | None


def _reach(studio: Studio) -> float:
    return face_max_distance(studio.settings.faces) + REVIEW_MARGIN


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    items = sorted(ids)
    for lo in range(0, len(items), _CHUNK):
        yield items[lo : lo + _CHUNK]


def _vectors(rows: Sequence[Any]) -> np.ndarray:
    return np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4").reshape(len(rows), -1)


def _write_suggestions(s: Session, found: Iterable[_Suggestion]) -> int:
    """Store these suggestions, each only while the face is unplaced and its stored suggestion is
    the one read (a decision made meanwhile wins); the unchanged ones are not written."""
    table: Table = Face.__table__  # type: ignore[assignment]
    c = table.c
    stmt = (
        update(table)
        .where(
            c.id == bindparam("f", type_=Integer),
            c.person_id.is_(None),
            c.suggested_person_id.is_not_distinct_from(bindparam("op", type_=Integer)),
            c.suggested_distance.is_not_distinct_from(bindparam("od", type_=Double)),
        )
        .values(
            suggested_person_id=bindparam("p", type_=Integer),
            suggested_distance=bindparam("d", type_=Double),
            suggested_face_id=bindparam("v", type_=Integer),
        )
    )
    params = [
        {"f": x.face, "p": x.person, "d": x.distance, "v": x.via, "op": x.old_person, "od": x.old_distance}
        for x in found
        if x.person != x.old_person or x.old_distance is None or abs(x.distance - x.old_distance) > 1e-7
    ]
    for lo in range(0, len(params), _CHUNK):
        s.execute(stmt, params[lo : lo + _CHUNK])
    return len(params)


def _unplaced(s: Session, project_id: int, model: str, faces: Collection[int] | None) -> list[Any]:
    """(id, embedding, suggested_person_id, suggested_distance) of these faces (None: all) that
    have no person."""
    q = select(Face.id, Face.embedding, Face.suggested_person_id, Face.suggested_distance).where(
        Face.project_id == project_id, Face.model == model, Face.person_id.is_(None)
    )
    if faces is None:
        return list(s.execute(q.order_by(Face.id)).all())
    return [r for chunk in _chunks(faces) for r in s.execute(q.where(Face.id.in_(chunk))).all()]


def _suggest(
    s: Session, project_id: int, model: str, reach: float, faces: Collection[int] | None
) -> list[_Suggestion]:
    """The suggestions of these unplaced faces (None: of all) against every placed face of a
    visible person: the first of its ``NEAR_K`` nearest whose person it was not said not to be,
    when closer than ``reach`` (an exact search, HNSW when it is very big)."""
    from vistudio.ml.face_clusters import NEAR_K, nearest_faces

    open_rows = _unplaced(s, project_id, model, faces)
    if not open_rows:
        return []
    placed = s.execute(
        select(Face.id, Face.person_id, Face.embedding)
        .join(Person, Person.id == Face.person_id)
        .where(Face.project_id == project_id, Face.model == model, Person.hidden.is_(False))
        .order_by(Face.id)
    ).all()
    ruled_out: set[tuple[int, int]] = set()
    for chunk in _chunks(r.id for r in open_rows):
        ruled_out.update(
            s.execute(
                select(FaceRejection.face_id, FaceRejection.person_id).where(FaceRejection.face_id.in_(chunk))
            ).all()
        )
    if placed:
        squared, nearest = nearest_faces(_vectors(placed), _vectors(open_rows), k=min(NEAR_K, len(placed)))
    out = []
    for i, r in enumerate(open_rows):
        best: tuple[int | None, float, int | None] = (None, NOBODY, None)
        for d2, j in zip(squared[i].tolist(), nearest[i].tolist(), strict=True) if placed else ():
            if j < 0:
                break
            g = placed[j]
            if (r.id, g.person_id) in ruled_out:
                continue
            d = float(np.sqrt(max(d2, 0.0)))
            if d < reach:
                best = (g.person_id, d, g.id)
            break
        out.append(_Suggestion(r.id, *best, r.suggested_person_id, r.suggested_distance))
    return out


def _refresh_against(
    s: Session, project_id: int, model: str, reach: float, new: Collection[int], skip: Collection[int]
) -> bool:
    """Faces newly placed (``new``) may be the nearest of some unplaced faces: compare every
    unplaced face (but ``skip``) with them — an exact search, cheap while they are few. False
    (nothing done) when they, or the unplaced faces, are too many."""
    if len(new) > REFRESH_NEW_MAX:
        return False
    if (
        _upto(
            s,
            REFRESH_UNPLACED_MAX + 1,
            Face.project_id == project_id,
            Face.model == model,
            Face.person_id.is_(None),
        )
        > REFRESH_UNPLACED_MAX
    ):
        return False
    base = [
        r
        for chunk in _chunks(new)
        for r in s.execute(
            select(Face.id, Face.person_id, Face.embedding)
            .join(Person, Person.id == Face.person_id)
            .where(Face.id.in_(chunk), Face.model == model, Person.hidden.is_(False))
        ).all()
    ]
    if not base:
        return True
    open_rows = [
        r
        for r in _unplaced(s, project_id, model, None)
        if r.suggested_distance is not None and r.id not in skip
    ]
    if not open_rows:
        return True
    # the nearest new face of each unplaced one, but those of people it was said not to be:
    # ||q - b||² in blocks of queries (NumPy: a FAISS search of a few base vectors costs more)
    ruled_out = s.execute(
        select(FaceRejection.face_id, FaceRejection.person_id).where(
            FaceRejection.person_id.in_({r.person_id for r in base})
        )
    ).all()
    row_of = {r.id: i for i, r in enumerate(open_rows)}
    base_person = np.array([r.person_id for r in base])
    bases, queries = _vectors(base), _vectors(open_rows)
    current = np.array([r.suggested_distance for r in open_rows], dtype=np.float64)
    current[current < 0] = np.inf  # nobody yet: any within reach is better
    block = max(1, 2**22 // len(base))
    found = []
    for lo in range(0, len(open_rows), block):
        q = queries[lo : lo + block]
        squared = ((q * q).sum(1)[:, None] + (bases * bases).sum(1)[None, :] - 2 * (q @ bases.T)).astype(
            np.float64
        )
        for f, pid in ruled_out:
            i = row_of.get(f, -1) - lo
            if 0 <= i < len(q):
                squared[i, base_person == pid] = np.inf
        best = squared.argmin(1)
        dist = np.sqrt(np.maximum(squared[np.arange(len(q)), best], 0))
        for i in np.flatnonzero((dist < reach) & (dist < current[lo : lo + block])).tolist():
            r, g = open_rows[lo + i], base[int(best[i])]
            found.append(
                _Suggestion(
                    r.id, g.person_id, float(dist[i]), g.id, r.suggested_person_id, r.suggested_distance
                )
            )
    _write_suggestions(s, found)
    return True


def _upto(s: Session, n: int, *where: Any) -> int:
    """How many faces match, counting no further than ``n`` (on an index)."""
    found = select(Face.id).where(*where).limit(n).subquery()
    return s.scalar(select(func.count()).select_from(found)) or 0


def _inline(s: Session, project_id: int, model: str, faces: int) -> bool:
    """Whether ``faces`` suggestions (-1: every unplaced face's) are worked out at once here (a
    small library) rather than by a job."""
    mine = [Face.project_id == project_id, Face.model == model]
    placed = _upto(s, SUGGEST_INLINE_PLACED + 1, *mine, Face.person_id.is_not(None))
    if placed > SUGGEST_INLINE_PLACED:
        return False
    if faces < 0:
        faces = _upto(s, SUGGEST_INLINE_PAIRS // max(placed, 1) + 1, *mine, Face.person_id.is_(None))
    return faces * placed <= SUGGEST_INLINE_PAIRS


def _queue_suggestions(s: Session, studio: Studio, project_id: int, *, everything: bool) -> None:
    """Queue a ``people-suggestions`` job in this transaction, unless one queued does the same."""
    waiting = s.scalars(
        select(Job).where(Job.kind == SUGGEST_KIND, Job.project_id == project_id, Job.status == "queued")
    ).all()
    if any(j.params.get("all") or not everything for j in waiting):
        return
    name = s.scalar(select(Project.name).where(Project.id == project_id))
    job = Job(
        kind=SUGGEST_KIND,
        params={"project": name, "all": everything},
        project_id=project_id,
        max_attempts=studio.queue.settings.max_attempts,
        run_after=utcnow(),
        created_at=utcnow(),
    )
    s.add(job)
    s.flush()
    s.add(JobEvent(job_id=job.id, kind="status", data={"status": "queued"}, at=utcnow()))


def _work_out(s: Session, studio: Studio, project_id: int, model: str, faces: Collection[int] | None) -> None:
    """Work out the suggestions of these unplaced faces (None: of every one) now, or queue the job
    that does (they wait without one)."""
    if faces is not None and not faces:
        return
    if _inline(s, project_id, model, -1 if faces is None else len(faces)):
        _write_suggestions(s, _suggest(s, project_id, model, _reach(studio), faces))
    else:
        _queue_suggestions(s, studio, project_id, everything=faces is None)


def _forget(s: Session, people: Collection[int]) -> set[int]:
    """Take away the suggestions naming these people (to be worked out again); the faces."""
    faces = {
        f
        for chunk in _chunks(people)
        for f in s.scalars(
            select(Face.id).where(Face.suggested_person_id.in_(chunk), Face.person_id.is_(None))
        )
    }
    for chunk in _chunks(faces):
        s.execute(
            update(Face)
            .where(Face.id.in_(chunk))
            .values(**_NO_SUGGESTION)
            .execution_options(synchronize_session=False)
        )
    return faces


def _after(
    s: Session,
    studio: Studio,
    project_id: int,
    *,
    moved: Iterable[int] = (),
    judged: Iterable[int] = (),
    hidden: Iterable[int] = (),
    shown: Iterable[int] = (),
    gone: Iterable[int] = (),
    new: Iterable[int] | None = None,
) -> None:
    """Keep the suggestions right after a decision: ``moved`` faces changed person (or were
    deleted), ``judged`` ones were said (or no longer said) not to be someone, people were
    ``hidden``, ``shown`` or ``gone`` (deleted); ``new``: the placed faces that may now be some
    unplaced face's nearest (default: the moved faces now placed)."""
    s.flush()
    model = model_name(studio)
    moved, judged = set(moved), set(judged)
    now: dict[int, int | None] = {}  # touched faces of this model that still exist → their person
    for chunk in _chunks(moved | judged):
        now.update(
            s.execute(select(Face.id, Face.person_id).where(Face.id.in_(chunk), Face.model == model)).all()
        )
    placed = {f for f in moved if now.get(f) is not None}
    for chunk in _chunks(placed):  # a placed face has no suggestion
        s.execute(
            update(Face)
            .where(Face.id.in_(chunk))
            .values(**_NO_SUGGESTION)
            .execution_options(synchronize_session=False)
        )
    dirty = {f for f in moved | judged if f in now and now[f] is None}
    # the suggestions that came from a moved face follow it to its new person, if they may
    via = [
        r
        for chunk in _chunks(moved)
        for r in s.execute(
            select(Face.id, Face.suggested_face_id, Face.suggested_person_id).where(
                Face.suggested_face_id.in_(chunk), Face.person_id.is_(None)
            )
        ).all()
    ]
    if via:
        targets = {now[r.suggested_face_id] for r in via if now.get(r.suggested_face_id) is not None}
        hidden_now = set(s.scalars(select(Person.id).where(Person.id.in_(targets), Person.hidden.is_(True))))
        ruled_out = {
            pair
            for chunk in _chunks(r.id for r in via)
            for pair in s.execute(
                select(FaceRejection.face_id, FaceRejection.person_id).where(FaceRejection.face_id.in_(chunk))
            ).all()
        }
        follow: dict[int, list[int]] = {}
        for r in via:
            q = now.get(r.suggested_face_id)
            if q is None or q in hidden_now or (r.id, q) in ruled_out:
                dirty.add(r.id)
            elif q != r.suggested_person_id:
                follow.setdefault(q, []).append(r.id)
        for q, faces in follow.items():
            for chunk in _chunks(faces):
                s.execute(
                    update(Face)
                    .where(Face.id.in_(chunk))
                    .values(suggested_person_id=q)
                    .execution_options(synchronize_session=False)
                )
    dirty |= _forget(s, set(hidden) | set(gone))  # nobody hidden or deleted is suggested
    for chunk in _chunks(dirty):
        s.execute(
            update(Face)
            .where(Face.id.in_(chunk))
            .values(**_NO_SUGGESTION)
            .execution_options(synchronize_session=False)
        )
    fresh = set(placed if new is None else new)
    for chunk in _chunks(set(shown)):
        fresh.update(s.scalars(select(Face.id).where(Face.person_id.in_(chunk))))
    if fresh and not _refresh_against(s, project_id, model, _reach(studio), fresh, dirty):
        _work_out(s, studio, project_id, model, None)  # too many: every suggestion again
    else:
        _work_out(s, studio, project_id, model, dirty)


def suggest_project(studio: Studio, project_id: int, *, everything: bool = False) -> dict[str, int]:
    """Work out the suggestions of the project's unplaced faces waiting for one (``everything``:
    of every unplaced face) — what the ``people-suggestions`` job does."""
    model = model_name(studio)
    with studio.sessions() as s:
        faces = None
        if not everything:
            faces = set(
                s.scalars(
                    select(Face.id).where(
                        Face.project_id == project_id,
                        Face.model == model,
                        Face.person_id.is_(None),
                        Face.suggested_distance.is_(None),
                    )
                )
            )
        found = _suggest(s, project_id, model, _reach(studio), faces) if faces is None or faces else []
    with studio.sessions.begin() as s:
        written = _write_suggestions(s, found)
    return {"faces": len(found), "written": written}


@job_handler(SUGGEST_KIND)
def run_suggestions(ctx: JobContext) -> dict[str, Any]:
    if ctx.project_id is None:
        raise PermanentJobError("the project of this job was deleted")
    ctx.progress(0, None, "suggesting people for unplaced faces", force=True)
    report = suggest_project(ctx.studio, ctx.project_id, everything=bool(ctx.params.get("all")))
    ctx.progress(1, 1, f"{report['faces']} faces", force=True)
    return {"report": report}


def _settle(studio: Studio, project_id: int) -> None:
    """Faces waiting for a suggestion with nothing at work on them (a workspace from before the
    suggestions were kept, faces written by hand): worked out now, or a job queued."""
    model = model_name(studio)
    with studio.sessions() as s:
        waiting = s.scalar(
            select(Face.id)
            .where(
                Face.project_id == project_id,
                Face.model == model,
                Face.person_id.is_(None),
                Face.suggested_distance.is_(None),
            )
            .limit(1)
        )
        if waiting is None:
            return
        busy = s.scalar(
            select(Job.id)
            .where(
                Job.project_id == project_id,
                Job.kind.in_(["faces", KIND, SUGGEST_KIND]),
                Job.status.in_(["queued", "running"]),
            )
            .limit(1)
        )
        if busy is not None:
            return
    with studio.sessions.begin() as s:
        faces = set(
            s.scalars(
                select(Face.id).where(
                    Face.project_id == project_id,
                    Face.model == model,
                    Face.person_id.is_(None),
                    Face.suggested_distance.is_(None),
                )
            )
        )
        _work_out(s, studio, project_id, model, faces)


# --- reading ------------------------------------------------------------------------------------


def find_person(s: Session, project_id: int, ref: str | int) -> Person:
    """A person by id or by name (an all-digit reference is an id)."""
    person = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) <= 18):
        person = s.get(Person, int(ref))
        if person is not None and person.project_id != project_id:
            person = None
    elif isinstance(ref, str):
        person = s.scalar(select(Person).where(Person.project_id == project_id, Person.name == ref))
    if person is None:
        raise NotFound(f"person {ref!r} not found")
    return person


def _photo_count() -> Any:
    """A person's photos, correlated to ``Person``: counted on the (person, photo) index in its
    order, without reading a face or sorting."""
    return (
        select(func.count(func.distinct(Face.sample_id)))
        .where(Face.person_id == Person.id)
        .correlate(Person)
        .scalar_subquery()
    )


def _counts(s: Session, person_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(faces, photos) of each of these people (one grouped count(DISTINCT) would sort them all)."""
    faces = select(func.count()).select_from(Face).where(Face.person_id == Person.id).correlate(Person)
    rows = s.execute(
        select(Person.id, faces.scalar_subquery(), _photo_count()).where(Person.id.in_(person_ids))
    ).all()
    return {pid: (n, photos) for pid, n, photos in rows if n}


def _person_dict(p: Person, counts: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "hidden": p.hidden,
        "faces": counts[0],
        "photos": counts[1],
        "cover_face_id": p.cover_face_id,
        "cover_url": f"/api/v1/faces/{p.cover_face_id}/crop" if p.cover_face_id else None,
    }


def list_people(
    studio: Studio,
    *,
    project: str | int,
    hidden: bool = False,
    offset: int = 0,
    limit: int = 100,
    q: str | None = None,
) -> dict[str, Any]:
    """The project's people: named first (by name), then unnamed (most photos first); hidden
    people only with ``hidden``; with ``q``, only the named people whose name contains it
    (ignoring case)."""
    if not 0 <= offset <= 2**62 or not 1 <= limit <= 1000:
        raise InvalidInput("offset must be >= 0 and limit between 1 and 1000")
    q = (q or "").strip()
    with studio.sessions() as s:
        p = find_project(s, project)
        # The named and the unnamed are paged separately: a page of named people comes from the
        # (project, name) index without counting anybody's photos; only a page that reaches the
        # unnamed ones counts theirs (every unnamed person's, from the (person, photo) index).
        named = [Person.project_id == p.id, Person.name.is_not(None)]
        # an unnamed person whose photos were all deleted is gone (the next grouping removes them)
        has_faces = select(Face.id).where(Face.person_id == Person.id).exists()
        unnamed = [Person.project_id == p.id, Person.name.is_(None), has_faces]
        if not hidden:
            named.append(Person.hidden.is_(False))
            unnamed.append(Person.hidden.is_(False))
        if q:
            named.append(Person.name.icontains(q, autoescape=True))
        n_named = s.scalar(select(func.count()).select_from(Person).where(*named)) or 0
        n_unnamed = 0 if q else s.scalar(select(func.count()).select_from(Person).where(*unnamed)) or 0
        items: list[Person] = []
        if offset < n_named:
            items += s.scalars(
                select(Person).where(*named).order_by(Person.name, Person.id).offset(offset).limit(limit)
            )
        if len(items) < limit and offset + len(items) < n_named + n_unnamed:
            items += s.scalars(
                select(Person)
                .where(*unnamed)
                .order_by(_photo_count().desc(), Person.id)
                .offset(max(0, offset - n_named))
                .limit(limit - len(items))
            )
        total = n_named + n_unnamed
        counts = _counts(s, [x.id for x in items])
        return {"items": [_person_dict(x, counts.get(x.id, (0, 0))) for x in items], "total": total}


def get_person(studio: Studio, *, project: str | int, person: str | int, limit: int = 1000) -> dict[str, Any]:
    """One person with their photos (``sample_id``, ``name``, ``path``; oldest first) and faces
    (``assigned``: ``manual`` or ``auto``), ``limit`` of each; ``photo_count`` and ``face_count``
    count them all."""
    from vistudio.services.faces import face_dict

    with studio.sessions() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        out = _person_dict(x, _counts(s, [x.id]).get(x.id, (0, 0)))
        faces = s.scalars(select(Face).where(Face.person_id == x.id).order_by(Face.id).limit(limit)).all()
        photos = s.execute(
            select(Sample.id, Sample.name, Sample.path)
            .where(Sample.id.in_(select(Face.sample_id).where(Face.person_id == x.id)))
            .order_by(Sample.taken_at.is_(None), Sample.taken_at, Sample.id)
            .limit(limit)
        ).all()
        out["photo_count"], out["face_count"] = out["photos"], out["faces"]  # all of them
        out["photos"] = [{"sample_id": i, "name": n, "path": path} for i, n, path in photos]
        out["faces"] = [{**face_dict(f), "assigned": f.assigned} for f in faces]
        return {"person": out}


def review_queue(
    studio: Studio, *, project: str | int, offset: int = 0, limit: int = 50, max_distance: float | None = None
) -> dict[str, Any]:
    """Faces without a person, each with the person it most likely is: the person of its nearest
    placed face within ``max_distance`` (default ``faces.max_distance`` + 0.1: a suggestion may be
    less sure than the grouping), leaving out people the face was said not to be, and hidden
    people. Surest first: ``{"items": [{"face", "person", "distance"}], "total"}`` — answer each
    with :func:`answer`.

    The suggestions are kept on the faces (see "the review's suggestions" above): a page is an
    indexed query (a ``max_distance`` beyond the default finds no more than the default). Faces
    whose suggestion is being worked out (by a job, in a big library) are not in it yet."""
    from vistudio.services.faces import face_dict

    if not 0 <= offset <= 2**62 or not 1 <= limit <= 1000:
        raise InvalidInput("offset must be >= 0 and limit between 1 and 1000")
    reach = _reach(studio) if max_distance is None else max_distance
    model = model_name(studio)
    with studio.sessions() as s:
        project_id = find_project(s, project).id
    _settle(studio, project_id)
    with studio.sessions() as s:
        # on ix_faces_review alone: (project, model, person NULL, distance, id, suggested person)
        where = _review_where(project_id, model, reach)
        total = s.scalar(select(func.count()).select_from(Face).where(*where)) or 0
        page = s.execute(
            select(Face.id, Face.suggested_person_id, Face.suggested_distance)
            .where(*where)
            .order_by(Face.suggested_distance, Face.id)
            .offset(offset)
            .limit(limit)
        ).all()
        faces = {f.id: f for f in s.scalars(select(Face).where(Face.id.in_([r.id for r in page])))}
        persons = dict(
            s.execute(
                select(Person.id, Person.name).where(Person.id.in_({r.suggested_person_id for r in page}))
            ).all()
        )
        return {
            "items": [
                {
                    "face": face_dict(faces[r.id]),
                    "person": {"id": r.suggested_person_id, "name": persons.get(r.suggested_person_id)},
                    "distance": round(r.suggested_distance, 4),
                }
                for r in page
            ],
            "total": total,
        }


def _review_where(project_id: int, model: str, reach: float) -> list[Any]:
    return [
        Face.project_id == project_id,
        Face.model == model,
        Face.person_id.is_(None),
        Face.suggested_distance >= 0,
        Face.suggested_distance < reach,
        Face.suggested_person_id.is_not(None),
    ]


REVIEW_EXACT_PAIRS = 1_000_000  # unplaced × placed faces below which the count is the review's
REVIEW_EXACT_PLACED = 10_000  # placed faces below which it is
REVIEW_COUNT_CAP = 1000  # unplaced faces it counts at most ("1,000+")


def review_count(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """What the People page says of the review, cheaply: ``{"count", "exact", "more"}``.

    In a small library (at most ``REVIEW_EXACT_PAIRS`` unplaced × placed faces, and
    ``REVIEW_EXACT_PLACED`` placed faces) ``count`` is :func:`review_queue`'s ``total``
    (``exact``). In a bigger one it is the number of unplaced faces up to ``REVIEW_COUNT_CAP``
    (``more``: there are more), an upper bound of the review's; the review page counts its own.
    Both are read from indexes."""
    model = model_name(studio)
    with studio.sessions() as s:
        project_id = find_project(s, project).id
    _settle(studio, project_id)
    with studio.sessions() as s:
        mine = [Face.project_id == project_id, Face.model == model]
        unplaced = _upto(s, REVIEW_COUNT_CAP + 1, *mine, Face.person_id.is_(None))
        if not unplaced:
            return {"count": 0, "exact": True, "more": False}
        most = min(REVIEW_EXACT_PAIRS // unplaced, REVIEW_EXACT_PLACED)
        placed = _upto(s, most + 1, *mine, Face.person_id.is_not(None))
        if not placed:
            return {"count": 0, "exact": True, "more": False}
        if unplaced <= REVIEW_COUNT_CAP and placed <= most:
            queue = _review_where(project_id, model, _reach(studio))
            count = s.scalar(select(func.count()).select_from(Face).where(*queue)) or 0
            return {"count": count, "exact": True, "more": False}
    return {"count": min(unplaced, REVIEW_COUNT_CAP), "exact": False, "more": unplaced > REVIEW_COUNT_CAP}


def answer(studio: Studio, *, project: str | int, face: int, person: str | int, yes: bool) -> dict[str, Any]:
    """Answer "is this face PERSON?": yes places it there by hand; no remembers that it is not,
    so it is never suggested or grouped there again. Both are decisions (undoable)."""
    if yes:
        return move_faces(studio, project=project, faces=[face], to=person)
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        (f,) = _faces_of_project(s, p.id, [face])
        if f.person_id == x.id:
            raise InvalidInput(f"face {face} is {_label(x)}'s: use not_this_person to take it out")
        rec = _Record(s, p.id, faces={f.id}, people={x.id})
        if s.get(FaceRejection, (f.id, x.id)) is None:
            s.add(FaceRejection(face_id=f.id, person_id=x.id))
        _after(s, studio, p.id, judged={f.id})
        rec.save("not", f"face {f.id} is not {_label(x)}")
    return {"face": face, "person": None}


# --- decisions and their history -----------------------------------------------------------------


def _state(s: Session, faces: set[int], people: set[int]) -> dict[str, Any]:
    """What a decision touches: the faces' person and ``assigned``, the people's rows (``None``:
    absent), the "not this person" pairs of those faces or people."""
    f_rows = s.execute(select(Face.id, Face.person_id, Face.assigned).where(Face.id.in_(faces))).all()
    p_rows = {x.id: x for x in s.scalars(select(Person).where(Person.id.in_(people)))}
    rejections = s.execute(
        select(FaceRejection.face_id, FaceRejection.person_id).where(
            or_(FaceRejection.face_id.in_(faces), FaceRejection.person_id.in_(people))
        )
    ).all()
    return {
        "faces": {str(i): [pid, a] for i, pid, a in f_rows},
        "people": {
            str(i): (
                {"name": p_rows[i].name, "hidden": p_rows[i].hidden, "cover_face_id": p_rows[i].cover_face_id}
                if i in p_rows
                else None
            )
            for i in sorted(people)
        },
        "rejections": sorted([f, pid] for f, pid in rejections),
    }


def _restore(s: Session, studio: Studio, project_id: int, state: dict[str, Any]) -> set[int]:
    """Put back a ``_state`` (and the review's suggestions of what it changes); the people whose
    faces or row it changed. Faces purged since stay purged."""
    faces = {int(k): v for k, v in state["faces"].items()}
    people = {int(k): v for k, v in state["people"].items()}
    touching = or_(FaceRejection.face_id.in_(faces), FaceRejection.person_id.in_(people))

    def now() -> tuple[dict[int, int | None], dict[int, bool], set[tuple[int, int]]]:
        return (
            dict(s.execute(select(Face.id, Face.person_id).where(Face.id.in_(faces))).all()),
            dict(s.execute(select(Person.id, Person.hidden).where(Person.id.in_(people))).all()),
            set(s.execute(select(FaceRejection.face_id, FaceRejection.person_id).where(touching)).all()),
        )

    s.flush()
    faces_before, hidden_before, rejections_before = now()
    for pid, row in people.items():
        if row is None or row["name"] is None:
            continue
        holder = s.scalar(
            select(Person.id).where(
                Person.project_id == project_id, Person.name == row["name"], Person.id != pid
            )
        )
        if holder is not None and holder not in people:
            raise Conflict(
                f"{row['name']!r} is person {holder}'s name now: rename them first",
                details={"person": holder},
            )
    for pid, row in people.items():  # unnamed first: a name moves between two people safely
        if row is not None and s.get(Person, pid) is not None:
            s.get(Person, pid).name = None  # type: ignore[union-attr]
    s.flush()
    for pid, row in people.items():
        if row is None:
            continue
        x = s.get(Person, pid)
        if x is None:
            s.add(Person(id=pid, project_id=project_id, **row))
        else:
            x.name, x.hidden, x.cover_face_id = row["name"], row["hidden"], row["cover_face_id"]
    s.flush()
    existing = set(s.scalars(select(Face.id).where(Face.id.in_(faces))))
    for fid, (pid, assigned) in faces.items():
        if fid in existing:
            s.execute(update(Face).where(Face.id == fid).values(person_id=pid, assigned=assigned))
    s.execute(
        delete(FaceRejection).where(
            or_(FaceRejection.face_id.in_(faces), FaceRejection.person_id.in_(people))
        )
    )
    pairs = [(f, pid) for f, pid in state["rejections"]]
    faces_alive = set(s.scalars(select(Face.id).where(Face.id.in_({f for f, _ in pairs}))))
    people_alive = set(s.scalars(select(Person.id).where(Person.id.in_({pid for _, pid in pairs}))))
    for f, pid in pairs:
        if f in faces_alive and pid in people_alive:  # purged since: stays purged
            s.add(FaceRejection(face_id=f, person_id=pid))
    orphans: set[int] = set()
    for pid, row in people.items():
        if row is None:
            orphans.update(s.scalars(select(Face.id).where(Face.person_id == pid)))
            s.execute(update(Face).where(Face.person_id == pid).values(person_id=None, assigned=None))
            s.execute(delete(Person).where(Person.id == pid))
    s.flush()
    faces_after, hidden_after, rejections_after = now()
    _after(
        s,
        studio,
        project_id,
        moved=orphans | {f for f in faces_before if faces_before[f] != faces_after.get(f)},
        judged={f for f, _ in rejections_before ^ rejections_after},
        hidden={pid for pid, h in hidden_after.items() if h and hidden_before.get(pid) is False},
        shown={pid for pid, h in hidden_after.items() if not h and hidden_before.get(pid) is True},
        gone=set(hidden_before) - set(hidden_after),
    )
    return {pid for pid in (*people, *faces_before.values(), *faces_after.values()) if pid is not None}


class _Record:
    """One decision's history entry: the state of what it touches before, then after it."""

    def __init__(self, s: Session, project_id: int, *, faces: set[int], people: set[int]) -> None:
        self.s, self.project_id = s, project_id
        self.faces, self.people = set(faces), set(people)
        s.flush()
        self.before = _state(s, self.faces, self.people)

    def created(self, person_id: int) -> None:
        self.people.add(person_id)
        self.before["people"][str(person_id)] = None

    def save(self, action: str, summary: str) -> None:
        self.s.flush()
        text_index.sync_people(self.s, people=self.people, faces=self.faces)  # names found in photos
        after = _state(self.s, self.faces, self.people)
        # a new decision ends what could be redone
        self.s.execute(
            delete(PeopleChange).where(
                PeopleChange.project_id == self.project_id, PeopleChange.undone.is_(True)
            )
        )
        self.s.add(
            PeopleChange(
                project_id=self.project_id,
                action=action,
                summary=summary[:400],
                before=self.before,
                after=after,
            )
        )


def _label(x: Person) -> str:
    return x.name or f"person {x.id}"


def undo(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Undo the project's latest decision about people (409 when there is none)."""
    return _step(studio, project, undo=True)


def redo(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Redo the decision undone last (409 when there is none, or a decision was made since)."""
    return _step(studio, project, undo=False)


def _step(studio: Studio, project: str | int, *, undo: bool) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        where = [PeopleChange.project_id == p.id, PeopleChange.undone.is_(not undo)]
        order = PeopleChange.id.desc() if undo else PeopleChange.id.asc()
        change = s.scalar(select(PeopleChange).where(*where).order_by(order).limit(1))
        if change is None:
            raise Conflict(f"nothing to {'undo' if undo else 'redo'}")
        touched = _restore(s, studio, p.id, change.before if undo else change.after)
        text_index.sync_people(s, people=touched, faces=map(int, change.before["faces"]))
        change.undone = undo
        _fix_covers(s, p.id, touched)
        return {"undone" if undo else "redone": _change_dict(change)}


def _change_dict(c: PeopleChange) -> dict[str, Any]:
    return {
        "id": c.id,
        "action": c.action,
        "summary": c.summary,
        "undone": c.undone,
        "created_at": c.created_at,
    }


def list_changes(studio: Studio, *, project: str | int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """The project's decisions about people, newest first."""
    with studio.sessions() as s:
        p = find_project(s, project)
        total = (
            s.scalar(select(func.count()).select_from(PeopleChange).where(PeopleChange.project_id == p.id))
            or 0
        )
        rows = s.scalars(
            select(PeopleChange)
            .where(PeopleChange.project_id == p.id)
            .order_by(PeopleChange.id.desc())
            .offset(offset)
            .limit(min(max(limit, 1), 1000))
        ).all()
        return {"items": [_change_dict(c) for c in rows], "total": total}


def _check_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = " ".join(name.split())
    if not name:
        return None
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise InvalidInput(f"a person's name is 1 to {MAX_NAME} printable characters")
    return name


def rename(studio: Studio, *, project: str | int, person: str | int, name: str | None) -> dict[str, Any]:
    """Name a person (``None`` or blank: unnamed again). A name another person has is a 409 that
    names them: merge the two instead."""
    name = _check_name(name)
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        if name is not None:
            other = s.scalar(
                select(Person).where(Person.project_id == p.id, Person.name == name, Person.id != x.id)
            )
            if other is not None:
                raise Conflict(
                    f"{name!r} is already person {other.id}: merge the two people instead",
                    details={"person": other.id},
                )
        rec = _Record(s, p.id, faces=set(), people={x.id})
        before = _label(x)
        x.name = name
        rec.save("rename", f"{before} → {name or 'unnamed'}")
        pid = x.id
    return get_person(studio, project=project, person=pid)


def merge(studio: Studio, *, project: str | int, into: str | int, others: list[str | int]) -> dict[str, Any]:
    """Move every face of ``others`` to ``into`` and delete them; ``into`` takes the first name
    among them when it has none. "Not this person" said of one of them now holds for ``into``."""
    if not others:
        raise InvalidInput("name at least one person to merge")
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        target = find_person(s, p.id, into)
        sources = [find_person(s, p.id, o) for o in others]
        if any(o.id == target.id for o in sources):
            raise InvalidInput("a person cannot be merged into themselves")
        ids = [o.id for o in sources]
        moved = set(s.scalars(select(Face.id).where(Face.person_id.in_(ids))))
        rec = _Record(s, p.id, faces=moved, people={target.id, *ids})
        summary = f"merged {', '.join(_label(o) for o in sources)} into {_label(target)}"
        name = target.name or next((o.name for o in sources if o.name), None)
        # faces of a hidden person merged into a visible one may now be an unplaced face's nearest
        shown = [] if target.hidden else [o.id for o in sources if o.hidden]
        newly = set(s.scalars(select(Face.id).where(Face.person_id.in_(shown)))) if shown else set()
        s.execute(update(Face).where(Face.person_id.in_(ids)).values(person_id=target.id))
        judged = set()
        for f, _ in s.execute(
            select(FaceRejection.face_id, FaceRejection.person_id).where(FaceRejection.person_id.in_(ids))
        ).all():
            if s.get(FaceRejection, (f, target.id)) is None:
                s.add(FaceRejection(face_id=f, person_id=target.id))
                judged.add(f)
        s.execute(delete(Person).where(Person.id.in_(ids)))
        s.flush()
        _after(s, studio, p.id, moved=moved, judged=judged, gone=ids, new=newly)
        target.name = name
        pid = target.id
        _fix_covers(s, p.id, {target.id})
        rec.save("merge", summary)
    return get_person(studio, project=project, person=pid)


def _faces_of_project(s: Session, project_id: int, face_ids: list[int]) -> list[Face]:
    if not face_ids:
        raise InvalidInput("name at least one face")
    if len(face_ids) > 100_000:
        raise InvalidInput("at most 100,000 faces at a time")
    faces = s.scalars(select(Face).where(Face.id.in_(face_ids), Face.project_id == project_id)).all()
    missing = sorted(set(face_ids) - {f.id for f in faces})
    if missing:
        raise NotFound(f"faces not in this project: {missing[:20]}", details={"faces": missing[:100]})
    return list(faces)


def move_faces(
    studio: Studio, *, project: str | int, faces: list[int], to: str | int | None = None
) -> dict[str, Any]:
    """Place faces in person ``to`` (``None``: a new person) by hand — a split when the faces came
    from one person. They stay there through every re-cluster; their old person is remembered as
    "not this person"."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        chosen = _faces_of_project(s, p.id, faces)
        olds = {f.person_id for f in chosen if f.person_id is not None}
        existing = None if to is None else find_person(s, p.id, to)
        rec = _Record(
            s, p.id, faces={f.id for f in chosen}, people=olds | ({existing.id} if existing else set())
        )
        if existing is None:
            target = Person(project_id=p.id)
            s.add(target)
            s.flush()
            rec.created(target.id)
        else:
            target = existing
        for f in chosen:
            if (
                f.person_id is not None
                and f.person_id != target.id
                and s.get(FaceRejection, (f.id, f.person_id)) is None
            ):
                s.add(FaceRejection(face_id=f.id, person_id=f.person_id))
            f.person_id, f.assigned = target.id, "manual"
        s.execute(
            delete(FaceRejection).where(
                FaceRejection.person_id == target.id, FaceRejection.face_id.in_([f.id for f in chosen])
            )
        )
        _after(s, studio, p.id, moved={f.id for f in chosen})
        _drop_empty_people(s, p.id)
        _fix_covers(s, p.id, olds | {target.id})
        what = "split" if existing is None else "move"
        rec.save(
            what, f"{plural(len(chosen), 'face')} → {'a new person' if existing is None else _label(target)}"
        )
        pid = target.id
    return get_person(studio, project=project, person=pid)


def not_this_person(
    studio: Studio, *, project: str | int, person: str | int, faces: list[int]
) -> dict[str, Any]:
    """Take faces out of a person for good: they are unassigned, and no grouping puts them back."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        chosen = _faces_of_project(s, p.id, faces)
        strangers = [f.id for f in chosen if f.person_id != x.id]
        if strangers:
            raise InvalidInput(f"faces {strangers[:20]} are not {x.name or f'person {x.id}'}'s")
        rec = _Record(s, p.id, faces={f.id for f in chosen}, people={x.id})
        for f in chosen:
            f.person_id, f.assigned = None, None
            if s.get(FaceRejection, (f.id, x.id)) is None:
                s.add(FaceRejection(face_id=f.id, person_id=x.id))
        _after(s, studio, p.id, moved={f.id for f in chosen})
        _fix_covers(s, p.id, {x.id})
        rec.save("not", f"{plural(len(chosen), 'face')}: not {_label(x)}")
        pid = x.id
        gone = s.get(Person, pid) is None
    return {"person": None} if gone else get_person(studio, project=project, person=pid)


def set_hidden(studio: Studio, *, project: str | int, person: str | int, hidden: bool) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        rec = _Record(s, p.id, faces=set(), people={x.id})
        was, x.hidden = x.hidden, hidden
        if was != hidden:
            _after(s, studio, p.id, hidden=[x.id] if hidden else [], shown=[] if hidden else [x.id])
        rec.save("hide" if hidden else "unhide", f"{'hid' if hidden else 'showed'} {_label(x)}")
        pid = x.id
    return get_person(studio, project=project, person=pid)


def set_cover(studio: Studio, *, project: str | int, person: str | int, face: int) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        (f,) = _faces_of_project(s, p.id, [face])
        if f.person_id != x.id:
            raise InvalidInput(f"face {face} is not {x.name or f'person {x.id}'}'s")
        rec = _Record(s, p.id, faces=set(), people={x.id})
        x.cover_face_id = f.id
        rec.save("cover", f"new cover face for {_label(x)}")
        pid = x.id
    return get_person(studio, project=project, person=pid)


def delete_person(studio: Studio, *, project: str | int, person: str | int) -> dict[str, Any]:
    """Delete a person: their faces stay, unassigned (and may be grouped again)."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        theirs = set(s.scalars(select(Face.id).where(Face.person_id == x.id)))
        rec = _Record(s, p.id, faces=theirs, people={x.id})
        s.execute(update(Face).where(Face.person_id == x.id).values(person_id=None, assigned=None))
        s.delete(x)
        _after(s, studio, p.id, moved=theirs, gone=[x.id])
        rec.save("delete", f"deleted {_label(x)}")
        return {"deleted": x.id, "faces_unassigned": len(theirs)}


def purge_person(studio: Studio, *, project: str | int, person: str | int) -> dict[str, Any]:
    """Remove a person and everything about them: their faces (boxes, descriptors, crops), "not
    this person" decisions, the person, and the project's history of decisions about people
    (it names them). Their photos are not read again for faces (the face
    job remembers it read them), so nothing comes back."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        face_ids = list(s.scalars(select(Face.id).where(Face.person_id == x.id)))
        photos = text_index.photos_of_faces(s, face_ids)
        s.execute(delete(FaceRejection).where(FaceRejection.face_id.in_(face_ids)))
        s.execute(delete(Face).where(Face.id.in_(face_ids)))
        s.delete(x)
        text_index.sync(s, photos)
        _after(s, studio, p.id, moved=face_ids, gone=[x.id])
        # the history holds their name and faces: it goes too (so nothing can bring them back)
        s.execute(delete(PeopleChange).where(PeopleChange.project_id == p.id))
        return {"purged": x.id, "faces": len(face_ids)}


def purge_project_faces(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Remove every face, person and face decision of a project, and which photos were read, so
    that nothing face recognition made remains."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        faces = s.scalar(select(func.count()).select_from(Face).where(Face.project_id == p.id)) or 0
        people = s.scalar(select(func.count()).select_from(Person).where(Person.project_id == p.id)) or 0
        s.execute(
            delete(FaceRejection).where(
                FaceRejection.face_id.in_(select(Face.id).where(Face.project_id == p.id))
            )
        )
        s.execute(delete(Face).where(Face.project_id == p.id))
        s.execute(delete(Person).where(Person.project_id == p.id))
        text_index.sync_named_photos(s, p.id)
        s.execute(delete(PeopleChange).where(PeopleChange.project_id == p.id))
        s.execute(
            delete(FaceScan).where(FaceScan.sample_id.in_(select(Sample.id).where(Sample.project_id == p.id)))
        )
        return {"faces": faces, "people": people}
