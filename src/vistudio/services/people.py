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
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from vistudio.db import Sample
from vistudio.db.faces import Face, FaceRejection, FaceScan, PeopleChange, Person
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
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
        rows = s.execute(
            select(Face.id, Face.sample_id, Face.person_id, Face.assigned, Face.w, Face.h, Face.score)
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
    if not free:
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
        for (old, new), ids in moves.items():
            for lo in range(0, len(ids), 10_000):
                done = s.execute(
                    update(Face)
                    .where(
                        Face.id.in_(ids[lo : lo + 10_000]),
                        Face.person_id.is_(None) if old is None else Face.person_id == old,
                        Face.assigned.is_distinct_from("manual"),
                    )
                    .values(person_id=new, assigned=None if new is None else "auto")
                    # no face is loaded in this session: nothing to keep in step (and checking
                    # the session for each of a first grouping's thousands of statements costs)
                    .execution_options(synchronize_session=False)
                )
                report["assigned"] += done.rowcount or 0  # type: ignore[attr-defined]
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
    less sure than the grouping), leaving out people the face was said not to be. Surest first:
    ``{"items": [{"face", "person", "distance"}], "total"}`` — answer each with :func:`answer`."""
    import faiss

    from vistudio.services.faces import face_dict

    if not 0 <= offset <= 2**62 or not 1 <= limit <= 1000:
        raise InvalidInput("offset must be >= 0 and limit between 1 and 1000")
    reach = face_max_distance(studio.settings.faces) + 0.1 if max_distance is None else max_distance
    model = model_name(studio)
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = s.execute(
            select(Face.id, Face.embedding, Face.person_id)
            .join(Person, Person.id == Face.person_id, isouter=True)
            .where(
                Face.project_id == p.id,
                Face.model == model,
                or_(Person.hidden.is_(False), Face.person_id.is_(None)),
            )
        ).all()
        placed = [r for r in rows if r.person_id is not None]
        open_faces = [r for r in rows if r.person_id is None]
        if not placed or not open_faces:
            return {"items": [], "total": 0}
        rejected = set(
            s.execute(
                select(FaceRejection.face_id, FaceRejection.person_id).where(
                    FaceRejection.face_id.in_([r.id for r in open_faces])
                )
            ).all()
        )
        base = np.frombuffer(b"".join(r.embedding for r in placed), dtype="<f4").reshape(len(placed), -1)
        query = np.frombuffer(b"".join(r.embedding for r in open_faces), dtype="<f4").reshape(
            len(open_faces), -1
        )
        index = faiss.IndexFlatL2(base.shape[1])
        index.add(np.ascontiguousarray(base))
        squared, nearest = index.search(np.ascontiguousarray(query), min(20, len(placed)))
        found = []
        for r, dists, idx in zip(open_faces, squared, nearest, strict=True):
            for d2, j in zip(dists, idx, strict=True):
                if j < 0:
                    break
                pid = placed[j].person_id
                if (r.id, pid) in rejected:
                    continue
                if float(np.sqrt(max(d2, 0))) < reach:
                    found.append((float(np.sqrt(max(d2, 0))), r.id, pid))
                break
        found.sort()
        page = found[offset : offset + limit]
        faces = {f.id: f for f in s.scalars(select(Face).where(Face.id.in_([fid for _, fid, _ in page])))}
        persons = {
            x.id: x for x in s.scalars(select(Person).where(Person.id.in_([pid for _, _, pid in page])))
        }
        return {
            "items": [
                {
                    "face": face_dict(faces[fid]),
                    "person": {"id": pid, "name": persons[pid].name},
                    "distance": round(d, 4),
                }
                for d, fid, pid in page
            ],
            "total": len(found),
        }


REVIEW_EXACT_PAIRS = 1_000_000  # unplaced × placed faces the People page's count may compare
REVIEW_EXACT_PLACED = 10_000  # placed faces it may read
REVIEW_COUNT_CAP = 1000  # unplaced faces it counts at most ("1,000+")


def review_count(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """What the People page says of the review, cheaply: ``{"count", "exact", "more"}``.

    :func:`review_queue` compares every unplaced face with every placed one. While that is at
    most ``REVIEW_EXACT_PAIRS`` pairs (and ``REVIEW_EXACT_PLACED`` placed faces), ``count`` is
    its ``total`` (``exact``). In a bigger library it is the number of unplaced faces — read from
    an index, an upper bound of the review's — up to ``REVIEW_COUNT_CAP`` (``more``: there are
    more); the review page counts its own."""
    model = model_name(studio)
    with studio.sessions() as s:
        p = find_project(s, project)
        mine = [Face.project_id == p.id, Face.model == model]

        def upto(n: int, *where: Any) -> int:
            """How many faces, counting no further than ``n`` (on the (project, model, person) index)."""
            found = select(Face.id).where(*mine, *where).limit(n).subquery()
            return s.scalar(select(func.count()).select_from(found)) or 0

        unplaced = upto(REVIEW_COUNT_CAP + 1, Face.person_id.is_(None))
        if not unplaced:
            return {"count": 0, "exact": True, "more": False}
        most = min(REVIEW_EXACT_PAIRS // unplaced, REVIEW_EXACT_PLACED)
        placed = upto(most + 1, Face.person_id.is_not(None))
        project_id = p.id
    if not placed:
        return {"count": 0, "exact": True, "more": False}
    if unplaced <= REVIEW_COUNT_CAP and placed <= most:
        return {
            "count": review_queue(studio, project=project_id, limit=1)["total"],
            "exact": True,
            "more": False,
        }
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


def _restore(s: Session, project_id: int, state: dict[str, Any]) -> None:
    """Put back a ``_state``. Faces purged since stay purged."""
    faces = {int(k): v for k, v in state["faces"].items()}
    people = {int(k): v for k, v in state["people"].items()}
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
    for pid, row in people.items():
        if row is None:
            s.execute(update(Face).where(Face.person_id == pid).values(person_id=None, assigned=None))
            s.execute(delete(Person).where(Person.id == pid))
    s.flush()


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
        _restore(s, p.id, change.before if undo else change.after)
        change.undone = undo
        _fix_covers(s, p.id)
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
        s.execute(update(Face).where(Face.person_id.in_(ids)).values(person_id=target.id))
        for f, _ in s.execute(
            select(FaceRejection.face_id, FaceRejection.person_id).where(FaceRejection.person_id.in_(ids))
        ).all():
            if s.get(FaceRejection, (f, target.id)) is None:
                s.add(FaceRejection(face_id=f, person_id=target.id))
        s.execute(delete(Person).where(Person.id.in_(ids)))
        s.flush()
        target.name = name
        pid = target.id
        _fix_covers(s, p.id)
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
        s.flush()
        _drop_empty_people(s, p.id)
        _fix_covers(s, p.id)
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
        s.flush()
        _fix_covers(s, p.id)
        rec.save("not", f"{plural(len(chosen), 'face')}: not {_label(x)}")
        pid = x.id
        gone = s.get(Person, pid) is None
    return {"person": None} if gone else get_person(studio, project=project, person=pid)


def set_hidden(studio: Studio, *, project: str | int, person: str | int, hidden: bool) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        x = find_person(s, p.id, person)
        rec = _Record(s, p.id, faces=set(), people={x.id})
        x.hidden = hidden
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
        s.execute(delete(FaceRejection).where(FaceRejection.face_id.in_(face_ids)))
        s.execute(delete(Face).where(Face.id.in_(face_ids)))
        s.delete(x)
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
        s.execute(delete(PeopleChange).where(PeopleChange.project_id == p.id))
        s.execute(
            delete(FaceScan).where(FaceScan.sample_id.in_(select(Sample.id).where(Sample.project_id == p.id)))
        )
        return {"faces": faces, "people": people}
