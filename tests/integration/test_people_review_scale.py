"""The review's suggestions kept on the faces: after every kind of decision, a re-cluster, undo and
redo, the review is what working it out afresh gives (the exact search every request used to make),
at once in a small library and through the ``people-suggestions`` job in a big one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, or_, select

from vistudio.config import FaceSettings, Settings
from vistudio.db import Job, Sample
from vistudio.db.faces import Face, FaceRejection, Person
from vistudio.jobs.worker import Worker
from vistudio.services import faces, people, projects
from vistudio.studio import Studio, open_studio

DIM = 128


def _exact_review(studio: Studio, project_id: int) -> dict[int, tuple[int, float]]:
    """face → (person, distance): the review as it was worked out on every request before the
    suggestions were kept — every unplaced face against every placed face of a visible person
    (an exact FAISS search, the 20 nearest), the first whose person it was not said not to be,
    when closer than ``faces.max_distance`` + 0.1."""
    import faiss

    reach = faces.max_distance(studio.settings.faces) + 0.1
    model = faces.model_name(studio)
    with studio.sessions() as s:
        rows = s.execute(
            select(Face.id, Face.embedding, Face.person_id)
            .join(Person, Person.id == Face.person_id, isouter=True)
            .where(
                Face.project_id == project_id,
                Face.model == model,
                or_(Person.hidden.is_(False), Face.person_id.is_(None)),
            )
        ).all()
        rejected = set(s.execute(select(FaceRejection.face_id, FaceRejection.person_id)).all())
    placed = [r for r in rows if r.person_id is not None]
    open_faces = [r for r in rows if r.person_id is None]
    if not placed or not open_faces:
        return {}
    base = np.frombuffer(b"".join(r.embedding for r in placed), dtype="<f4").reshape(len(placed), -1)
    query = np.frombuffer(b"".join(r.embedding for r in open_faces), dtype="<f4").reshape(len(open_faces), -1)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(np.ascontiguousarray(base))
    squared, nearest = index.search(np.ascontiguousarray(query), min(20, len(placed)))
    found = {}
    for r, dists, idx in zip(open_faces, squared, nearest, strict=True):
        for d2, j in zip(dists, idx, strict=True):
            if j < 0:
                break
            pid = placed[j].person_id
            if (r.id, pid) in rejected:
                continue
            d = float(np.sqrt(max(d2, 0)))
            if d < reach:
                found[r.id] = (pid, d)
            break
    return found


def _kept_review(studio: Studio) -> dict[int, tuple[int, float]]:
    """face → (person, distance) from the review's pages (2 at a time), checked surest first."""
    items: list[dict[str, Any]] = []
    total = None
    while total is None or len(items) < total:
        page = people.review_queue(studio, project="big", offset=len(items), limit=2)
        total = page["total"]
        if not page["items"]:
            break
        items += page["items"]
    assert len(items) == total
    distances = [x["distance"] for x in items]
    assert distances == sorted(distances)
    return {x["face"]["id"]: (x["person"]["id"], x["distance"]) for x in items}


def _same(studio: Studio, project_id: int, step: str) -> dict[int, tuple[int, float]]:
    want = _exact_review(studio, project_id)
    got = _kept_review(studio)
    assert {f: p for f, (p, _) in got.items()} == {f: p for f, (p, _) in want.items()}, step
    for f, (_, d) in got.items():
        assert abs(d - want[f][1]) < 2e-4, (step, f)
    count = people.review_count(studio, project="big")
    assert count == {"count": len(want), "exact": True, "more": False}, step
    return got


def _library(home: Path, *, seed: int) -> tuple[Studio, dict[str, Any]]:
    """8 people of 6 faces (one a photo), and faces without a person that stay so through a
    grouping: two faces like each person's in one photo with one of theirs (one person per photo),
    small faces like a person (too small to group), faces halfway between two people (close to
    both: ambiguous), and faces of nobody."""
    studio = open_studio(
        # three faces make a new person: a twin face and a face halfway to another person, close to
        # each other, are not one
        Settings(home=home, offline=True, faces=FaceSettings(min_faces=3, max_distance=0.5, min_size=40))
    )
    projects.create_project(studio, name="big", task="library")
    rng = np.random.default_rng(seed)
    n_people = 8
    centres = rng.standard_normal((n_people + 4, DIM)).astype(np.float32)
    centres *= 0.6 / np.linalg.norm(centres, axis=1, keepdims=True)

    def like(c: np.ndarray, noise: float = 0.02) -> bytes:
        return (c + noise * rng.standard_normal(DIM)).astype("<f4").tobytes()

    faces_rows: list[dict[str, Any]] = []  # photo number, vector, owner (person index or None), size
    for i in range(n_people):
        for _ in range(6):
            faces_rows.append({"photo": len(faces_rows), "v": like(centres[i]), "owner": i, "w": 0.2})
    photo_of_first = {i: 6 * i for i in range(n_people)}
    for i in range(n_people):  # twins: in the photo of the person's first face
        for _ in range(2):
            faces_rows.append({"photo": photo_of_first[i], "v": like(centres[i]), "owner": None, "w": 0.2})
    photos = 6 * n_people
    for i in range(n_people):  # small
        faces_rows.append({"photo": photos, "v": like(centres[i], 0.025), "owner": None, "w": 0.02})
        photos += 1
    for i in range(0, n_people, 2):  # halfway between two people
        half = (centres[i] + centres[i + 1]) / 2
        faces_rows.append({"photo": photos, "v": like(half, 0.01), "owner": None, "w": 0.2})
        photos += 1
    for c in centres[n_people:]:  # nobody
        faces_rows.append({"photo": photos, "v": like(c), "owner": None, "w": 0.2})
        photos += 1
    model = faces.model_name(studio)
    with studio.sessions.begin() as s:
        sample_ids = s.scalars(
            insert(Sample).returning(Sample.id, sort_by_parameter_order=True),
            [
                {
                    "project_id": 1,
                    "sha256": f"{k:064x}",
                    "name": f"photos/{k:05d}.jpg",
                    "storage": "reference",
                    "path": f"/photos/{k}.jpg",
                    "width": 1000,
                    "height": 1000,
                    "format": "JPEG",
                    "bytes": 1000,
                    "phash": f"{k:016x}",
                    "exif": {},
                }
                for k in range(photos)
            ],
        ).all()
        person_ids = s.scalars(
            insert(Person).returning(Person.id, sort_by_parameter_order=True),
            [{"project_id": 1} for _ in range(n_people)],
        ).all()
        face_ids = s.scalars(
            insert(Face).returning(Face.id, sort_by_parameter_order=True),
            [
                {
                    "project_id": 1,
                    "sample_id": sample_ids[f["photo"]],
                    "model": model,
                    "x": 0.1 + 0.3 * (k % 3),
                    "y": 0.3,
                    "w": f["w"],
                    "h": f["w"],
                    "landmarks": [],
                    "score": 1.0,
                    "embedding": f["v"],
                    "crop": b"",
                    "person_id": None if f["owner"] is None else person_ids[f["owner"]],
                    "assigned": None if f["owner"] is None else "auto",
                }
                for k, f in enumerate(faces_rows)
            ],
        ).all()
    faces_of = {person_ids[i]: [face_ids[6 * i + k] for k in range(6)] for i in range(n_people)}
    return studio, {"people": list(person_ids), "faces_of": faces_of}


def _decisions(
    studio: Studio, lib: dict[str, Any], check: Callable[[str], dict[int, tuple[int, float]]]
) -> None:
    """Every kind of decision, a re-cluster, undo and redo, the review checked after each."""
    ids, faces_of = lib["people"], lib["faces_of"]
    review = check("written by hand (nothing worked out yet)")
    assert review, "the library has suggestions"
    assert people.cluster_project(studio, 1, full=False)["new_people"] == 0
    review = check("grouping")
    # yes to the surest suggestion, no to the next
    (first, _), (second, (who, _)) = sorted(review.items(), key=lambda kv: kv[1][1])[:2]
    people.answer(studio, project="big", face=first, person=review[first][0], yes=True)
    check("yes")
    people.answer(studio, project="big", face=second, person=who, yes=False)
    after_no = check("no")
    assert after_no.get(second, (None,))[0] != who
    # a face moved from one person to another, and a new person of two faces (a split)
    people.move_faces(studio, project="big", faces=[faces_of[ids[1]][0]], to=ids[2])
    check("move")
    people.move_faces(studio, project="big", faces=faces_of[ids[3]][:2])
    check("split")
    people.not_this_person(studio, project="big", person=ids[0], faces=faces_of[ids[0]][:2])
    check("not this person")
    people.merge(studio, project="big", into=ids[4], others=[ids[5]])
    check("merge")
    people.set_hidden(studio, project="big", person=ids[6], hidden=True)
    check("hide")
    people.delete_person(studio, project="big", person=ids[7])
    check("delete")
    for n in range(4):
        people.undo(studio, project="big")
        check(f"undo {n + 1}")
    people.redo(studio, project="big")
    check("redo")
    people.set_hidden(studio, project="big", person=ids[1], hidden=True)
    check("hide another")
    people.set_hidden(studio, project="big", person=ids[1], hidden=False)
    check("show")
    people.set_hidden(studio, project="big", person=ids[6], hidden=True)
    check("hide again")
    people.merge(studio, project="big", into=ids[2], others=[ids[6]])
    check("merge a hidden person")
    people.undo(studio, project="big")
    check("undo the merge")
    people.redo(studio, project="big")
    check("redo the merge")
    people.cluster_project(studio, 1, full=True)
    check("re-cluster")
    people.purge_person(studio, project="big", person=ids[2])
    check("purge")


def test_the_kept_review_is_the_exact_one_after_every_decision(tmp_path: Path) -> None:
    studio, lib = _library(tmp_path / "ws", seed=3)
    try:
        _decisions(studio, lib, lambda step: _same(studio, 1, step))
        with studio.sessions() as s:  # everything was worked out at once: no job
            assert s.scalar(select(Job.id).where(Job.kind == people.SUGGEST_KIND)) is None
    finally:
        studio.close()


@pytest.fixture
def big_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Studio, dict[str, Any]]]:
    """The same library as if it were big: what needs every placed face read is left to the job,
    and faces newly placed are too many to compare with every unplaced one."""
    monkeypatch.setattr(people, "SUGGEST_INLINE_PLACED", 0)
    monkeypatch.setattr(people, "REFRESH_NEW_MAX", 1)
    studio, lib = _library(tmp_path / "ws", seed=4)
    yield studio, lib
    studio.close()


def test_a_big_library_leaves_the_work_to_a_job(big_library: tuple[Studio, dict[str, Any]]) -> None:
    studio, lib = big_library
    jobs: list[int] = []

    def check(step: str) -> dict[int, tuple[int, float]]:
        with studio.sessions() as s:
            queued = s.scalars(
                select(Job.id).where(Job.kind == people.SUGGEST_KIND, Job.status == "queued").order_by(Job.id)
            ).all()
        for job_id in queued:
            done = Worker(studio).run_to_end(job_id)
            assert done is not None and done.status == "succeeded", done and done.error
        jobs.extend(queued)
        return _same(studio, 1, step)

    with studio.sessions() as s:  # written by hand: the review's first visit queues the work
        assert s.scalar(select(Job.id).where(Job.kind == people.SUGGEST_KIND)) is None
    assert people.review_queue(studio, project="big")["total"] == 0
    with studio.sessions() as s:
        assert s.scalar(select(Job.id).where(Job.kind == people.SUGGEST_KIND)) is not None
    _decisions(studio, lib, check)
    assert len(jobs) >= 5
