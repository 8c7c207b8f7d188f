"""People from real portraits: grouping, its rules, and user decisions surviving re-clusters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance, ImageOps
from sqlalchemy import func, select

from face_photos import face_photos
from factories import run_import
from vistudio.api.app import create_app
from vistudio.config import FaceSettings, Settings
from vistudio.db import Sample
from vistudio.db.faces import Face, FaceRejection, Person
from vistudio.errors import Conflict
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.services import faces, people, projects
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow


def _portrait(path: Path) -> Image.Image:
    with Image.open(path) as im:
        out = ImageOps.exif_transpose(im).convert("RGB")
    out.thumbnail((700, 700))
    return out


def _side_by_side(a: Image.Image, b: Image.Image) -> Image.Image:
    h = max(a.height, b.height)
    out = Image.new("RGB", (a.width + b.width, h), (255, 255, 255))
    out.paste(a, (0, 0))
    out.paste(b, (a.width, 0))
    return out


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two folders of photos: ``first`` (Obama ×3 and edited copies, Biden and edited copies) and
    ``later`` (one more of each, a photo of both, and "twins": one face twice in one photo)."""
    src = face_photos()
    root = tmp_path_factory.mktemp("people")
    first, later = root / "first", root / "later"
    first.mkdir()
    later.mkdir()
    obama, biden = _portrait(src / "obama.jpg"), _portrait(src / "biden.jpg")
    photos = {
        first / "obama.jpg": obama,
        first / "obama2.jpg": _portrait(src / "obama2.jpg"),
        first / "obama-grey.jpg": ImageOps.grayscale(obama).convert("RGB"),
        first / "biden.jpg": biden,
        first / "biden-flipped.jpg": ImageOps.mirror(biden),
        first / "biden-dark.jpg": ImageEnhance.Brightness(biden).enhance(0.6),
        later / "obama3.jpg": _portrait(src / "obama3.jpg"),
        later / "biden-half.jpg": biden.resize((biden.width // 2, biden.height // 2)),
        later / "together.jpg": _side_by_side(biden, obama),
        later / "twins.jpg": _side_by_side(obama, ImageOps.mirror(obama)),
    }
    for path, image in photos.items():
        image.save(path, quality=92)
    return {"first": first, "later": later, "root": root}


def _settings(home: Path, root: Path) -> Settings:
    return Settings(home=home, offline=True, import_roots=[root], faces=FaceSettings(workers=1, max_side=800))


@pytest.fixture
def studio(album: dict[str, Path], tmp_path: Path) -> Iterator[Studio]:
    s = open_studio(_settings(tmp_path / "ws", album["root"]))
    projects.create_project(s, name="family", task="library")
    yield s
    s.close()


def _faces_job(studio: Studio) -> dict[str, Any]:
    job = faces.start_faces(studio, project="family")
    final = job_dict(Worker(studio).run_to_end(job["id"]))
    assert final["status"] == "succeeded", final["error"]
    return dict(final["result"]["report"])


def _add(studio: Studio, folder: Path) -> dict[str, Any]:
    """Import a folder and read its faces (the first time explicitly, then the queued job)."""
    report = run_import(studio, "family", folder)["result"]["report"]
    if report["faces"] is None:
        return _faces_job(studio)
    return dict(job_dict(Worker(studio).run_to_end(report["faces"]["job"]))["result"]["report"])


def _groups(studio: Studio) -> dict[int | None, set[tuple[str, float]]]:
    """person id → {(photo name, face x)}: who is where."""
    with studio.sessions() as s:
        rows = s.execute(
            select(Face.person_id, Sample.name, Face.x).join(Sample, Sample.id == Face.sample_id)
        ).all()
    out: dict[int | None, set[tuple[str, float]]] = {}
    for pid, name, x in rows:
        out.setdefault(pid, set()).add((name.split("/")[-1], round(x, 3)))
    return out


def _photos_of(studio: Studio, person: int) -> set[str]:
    return {
        p["name"].split("/")[-1]
        for p in people.get_person(studio, project="family", person=person)["person"]["photos"]
    }


def _who(studio: Studio, photo: str) -> dict[str, int]:
    """The one person each name's photos belong to (a name → id map from a known photo)."""
    owners = {pid for pid, members in _groups(studio).items() if any(n == photo for n, _ in members)}
    (pid,) = owners - {None}
    return {photo: pid}


def test_two_people_form_and_stay_apart(studio: Studio, album: dict[str, Path]) -> None:
    report = _add(studio, album["first"])
    assert (report["photos"], report["faces"]) == (6, 6)
    listed = people.list_people(studio, project="family")
    assert listed["total"] == 2 and sorted(p["faces"] for p in listed["items"]) == [3, 3]
    groups = {frozenset(n for n, _ in members) for pid, members in _groups(studio).items() if pid}
    assert groups == {
        frozenset({"obama.jpg", "obama2.jpg", "obama-grey.jpg"}),
        frozenset({"biden.jpg", "biden-flipped.jpg", "biden-dark.jpg"}),
    }

    # later photos join the people they show; never two faces of one photo in one person
    later = _add(studio, album["later"])
    assert later["faces"] == 6 and later["people"]["new_people"] == 0
    obama = _who(studio, "obama.jpg")["obama.jpg"]
    biden = _who(studio, "biden.jpg")["biden.jpg"]
    assert {"obama3.jpg", "together.jpg", "twins.jpg"} <= _photos_of(studio, obama)
    assert {"biden-half.jpg", "together.jpg"} <= _photos_of(studio, biden)
    twins = [pid for pid, members in _groups(studio).items() for n, _ in members if n == "twins.jpg"]
    assert sorted(twins, key=str) == sorted([obama, None], key=str)  # one of the two stays unplaced


def test_incremental_grouping_equals_a_full_recluster(
    studio: Studio, album: dict[str, Path], tmp_path: Path
) -> None:
    _add(studio, album["first"])
    _add(studio, album["later"])
    incremental = {frozenset(m) for m in _groups(studio).values()}
    job = people.start_recluster(studio, project="family")
    assert (
        job_dict(Worker(studio).run_to_end(job["id"]))["result"]["report"]["assigned"] == 0
    )  # nothing moves
    assert {frozenset(m) for m in _groups(studio).values()} == incremental

    # a fresh workspace reading everything at once, then re-clustering, finds the same people
    other = open_studio(_settings(tmp_path / "ws2", album["root"]))
    try:
        projects.create_project(other, name="family", task="library")
        run_import(other, "family", album["first"])
        run_import(other, "family", album["later"])
        _faces_job(other)
        people.cluster_project(other, 1, full=True)
        assert {frozenset(m) for m in _groups(other).values()} == incremental
    finally:
        other.close()


def test_decisions_survive_a_recluster(studio: Studio, album: dict[str, Path]) -> None:
    _add(studio, album["first"])
    _add(studio, album["later"])
    obama = _who(studio, "obama.jpg")["obama.jpg"]
    biden = _who(studio, "biden.jpg")["biden.jpg"]
    people.rename(studio, project="family", person=obama, name="Barack")
    # a wrong merge, then split back by hand
    people.merge(studio, project="family", into=obama, others=[biden])
    assert people.list_people(studio, project="family")["total"] == 1
    biden_faces = [
        f["id"]
        for f in people.get_person(studio, project="family", person="Barack")["person"]["faces"]
        if "biden" in _name_of(studio, f["sample_id"]) or _is_left_of_together(studio, f)
    ]
    split = people.move_faces(studio, project="family", faces=biden_faces, to=None)["person"]
    people.rename(studio, project="family", person=split["id"], name="Joe")
    # "not this person" on Barack's grey copy
    grey = [
        f["id"]
        for f in people.get_person(studio, project="family", person="Barack")["person"]["faces"]
        if _name_of(studio, f["sample_id"]).endswith("obama-grey.jpg")
    ]
    people.not_this_person(studio, project="family", person="Barack", faces=grey)
    before = _groups(studio)

    for _ in range(2):
        people.cluster_project(studio, 1, full=True)
        assert _groups(studio) == before
    names = {p["name"] for p in people.list_people(studio, project="family")["items"]}
    assert names == {"Barack", "Joe"}
    with studio.sessions() as s:
        (grey_face,) = s.scalars(select(Face).where(Face.id == grey[0])).all()
        assert grey_face.person_id is None
        assert s.scalar(select(func.count()).select_from(FaceRejection)) >= 1
    joe = people.get_person(studio, project="family", person="Joe")["person"]
    assert all(f["assigned"] == "manual" for f in joe["faces"])


def _snapshot(studio: Studio) -> tuple[Any, ...]:
    with studio.sessions() as s:
        return (
            tuple(sorted(tuple(r) for r in s.execute(select(Face.id, Face.person_id, Face.assigned)))),
            tuple(
                sorted(
                    tuple(r)
                    for r in s.execute(select(Person.id, Person.name, Person.hidden, Person.cover_face_id))
                )
            ),
            tuple(
                sorted(tuple(r) for r in s.execute(select(FaceRejection.face_id, FaceRejection.person_id)))
            ),
        )


def test_every_decision_undoes_and_redoes(studio: Studio, album: dict[str, Path]) -> None:
    _add(studio, album["first"])
    a, b = (p["id"] for p in people.list_people(studio, project="family")["items"])
    face_of_a = people.get_person(studio, project="family", person=a)["person"]["faces"]
    steps = [
        lambda: people.rename(studio, project="family", person=a, name="Alpha"),
        lambda: people.set_hidden(studio, project="family", person=b, hidden=True),
        lambda: people.set_cover(studio, project="family", person=a, face=face_of_a[-1]["id"]),
        lambda: people.not_this_person(studio, project="family", person=a, faces=[face_of_a[0]["id"]]),
        lambda: people.move_faces(studio, project="family", faces=[face_of_a[1]["id"]], to=None),
        lambda: people.merge(studio, project="family", into="Alpha", others=[b]),
        lambda: people.rename(studio, project="family", person="Alpha", name="Beta"),
        lambda: people.delete_person(studio, project="family", person="Beta"),
    ]
    states = [_snapshot(studio)]
    for step in steps:
        step()
        states.append(_snapshot(studio))
    assert len(set(states)) == len(states)  # every step changed something
    for state in reversed(states[:-1]):
        people.undo(studio, project="family")
        assert _snapshot(studio) == state
    with pytest.raises(Conflict, match="nothing to undo"):
        people.undo(studio, project="family")
    for state in states[1:4]:
        people.redo(studio, project="family")
        assert _snapshot(studio) == state
    # a new decision ends the redo chain
    people.rename(studio, project="family", person=b, name="Gamma")
    with pytest.raises(Conflict, match="nothing to redo"):
        people.redo(studio, project="family")
    history = people.list_changes(studio, project="family")
    assert history["items"][0]["summary"].endswith("→ Gamma") and history["total"] == 4


def test_photos_of_a_person_in_browse_and_search(album: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from embed_factories import run_embedding, with_embed
    from vistudio.cli.main import app
    from vistudio.errors import NotFound
    from vistudio.services import samples, search

    studio = open_studio(with_embed(_settings(tmp_path / "ws", album["root"])))
    try:
        projects.create_project(studio, name="family", task="library")
        _add(studio, album["first"])
        _add(studio, album["later"])
        obama = _who(studio, "obama.jpg")["obama.jpg"]
        biden = _who(studio, "biden.jpg")["biden.jpg"]
        people.rename(studio, project="family", person=obama, name="Barack")
        names = {x["name"] for x in samples.list_samples(studio, project="family", person="Barack")["items"]}
        assert names == {
            "obama.jpg",
            "obama2.jpg",
            "obama-grey.jpg",
            "obama3.jpg",
            "together.jpg",
            "twins.jpg",
        }
        both = samples.list_samples(studio, project="family", person=["Barack", str(biden)])["items"]
        assert [x["name"] for x in both] == ["together.jpg"]
        with pytest.raises(NotFound):
            samples.list_samples(studio, project="family", person="Nobody")

        # semantic search among a person's photos (an untrained tiny CLIP: the filter is the point)
        assert (
            run_embedding(studio, "family", model="vistudio-test-tiny", pretrained="none")["status"]
            == "succeeded"
        )
        found = search.search(
            studio, project="family", text="a man smiling", k=50, filters={"person": ["Barack"]}
        )
        assert {x["name"] for x in found["items"]} == names
        found = search.search(
            studio, project="family", text="two men", k=50, filters={"person": ["Barack", biden]}
        )
        assert [x["name"] for x in found["items"]] == ["together.jpg"]
        # the explanation names the people (an unnamed one by their id), not the references given
        assert found["items"][0]["why"].endswith(f"filters: showing Barack and unnamed person #{biden}")
        client = TestClient(create_app(studio, workers=0), base_url="http://localhost")
        r = client.post(
            "/api/v1/search", json={"project": "family", "text": "x", "filters": {"person": ["Barack"]}}
        )
        assert r.status_code == 200 and len(r.json()["items"]) == len(names)
        r = client.get("/api/v1/samples", params={"project": "family", "person": ["Barack", str(biden)]})
        assert [x["name"] for x in r.json()["items"]] == ["together.jpg"]
    finally:
        studio.close()
    out = CliRunner().invoke(
        app, ["--workspace", str(tmp_path / "ws"), "--json", "search", "family", "--person", "Barack"]
    )
    assert out.exit_code == 0, out.output
    assert {x["name"] for x in json.loads(out.stdout)["items"]} == names


def test_the_review_queue_suggests_and_remembers_answers(studio: Studio, album: dict[str, Path]) -> None:
    _add(studio, album["first"])
    _add(studio, album["later"])
    obama = _who(studio, "obama.jpg")["obama.jpg"]
    queue = people.review_queue(studio, project="family")
    # the twin left out (one person per photo) is the one unplaced face, and it looks like Obama
    (item,) = queue["items"]
    assert item["person"]["id"] == obama and item["distance"] < 0.3
    assert _name_of(studio, item["face"]["sample_id"]).endswith("twins.jpg")
    people.answer(studio, project="family", face=item["face"]["id"], person=obama, yes=False)
    assert people.review_queue(studio, project="family")["total"] == 0  # never asked again
    people.cluster_project(studio, 1, full=True)
    assert people.review_queue(studio, project="family")["total"] == 0
    people.undo(studio, project="family")  # the "no" is a decision like the others
    assert people.review_queue(studio, project="family")["total"] == 1
    people.answer(studio, project="family", face=item["face"]["id"], person=obama, yes=True)
    placed = people.get_person(studio, project="family", person=obama)["person"]["faces"]
    assert {f["id"]: f["assigned"] for f in placed}[item["face"]["id"]] == "manual"  # a user may overrule


def _name_of(studio: Studio, sample_id: int) -> str:
    with studio.sessions() as s:
        return str(s.scalar(select(Sample.name).where(Sample.id == sample_id)))


def _is_left_of_together(studio: Studio, face: dict[str, Any]) -> bool:
    return _name_of(studio, face["sample_id"]).endswith("together.jpg") and face["box"]["x"] < 0.5


def test_purge_leaves_nothing_behind(studio: Studio, album: dict[str, Path]) -> None:
    _add(studio, album["first"])
    biden = _who(studio, "biden.jpg")["biden.jpg"]
    face_ids = [f["id"] for f in people.get_person(studio, project="family", person=biden)["person"]["faces"]]
    people.not_this_person(studio, project="family", person=biden, faces=face_ids[:1])
    people.move_faces(studio, project="family", faces=face_ids[:1], to=biden)
    out = people.purge_person(studio, project="family", person=biden)
    assert out["faces"] == 3
    with studio.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Face).where(Face.id.in_(face_ids))) == 0
        assert (
            s.scalar(
                select(func.count()).select_from(FaceRejection).where(FaceRejection.face_id.in_(face_ids))
            )
            == 0
        )
        assert s.get(Person, biden) is None
    # the photos are not read again: the purged faces do not come back
    assert _faces_job(studio)["photos"] == 0
    assert not any(b"biden" in p.read_bytes() for p in studio.home.rglob("*.webp") if "face" in p.name)

    everything = people.purge_project_faces(studio, project="family")
    assert everything["faces"] == 3 and everything["people"] == 1
    with studio.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Face)) == 0
        assert s.scalar(select(func.count()).select_from(Person)) == 0


def test_people_api_and_cli(studio: Studio, album: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vistudio.cli.main import app

    _add(studio, album["first"])
    client = TestClient(create_app(studio, workers=0), base_url="http://localhost")
    listed = client.get("/api/v1/projects/family/people").json()
    assert listed["total"] == 2 and all(p["cover_url"] for p in listed["items"])
    a, b = (p["id"] for p in listed["items"])
    r = client.patch(f"/api/v1/projects/family/people/{a}", json={"name": "Alpha"})
    assert r.status_code == 200 and r.json()["person"]["name"] == "Alpha"
    r = client.patch(f"/api/v1/projects/family/people/{b}", json={"name": "Alpha"})
    assert r.status_code == 409 and r.json()["error"]["details"]["person"] == a
    assert client.get("/api/v1/projects/family/people/Alpha").json()["person"]["id"] == a
    assert client.get("/api/v1/projects/family/people/nobody").status_code == 404
    assert client.patch(f"/api/v1/projects/family/people/{a}", json={"name": "x\u0001y"}).status_code == 422
    assert client.patch(f"/api/v1/projects/family/people/{a}", json={"bogus": 1}).status_code == 422
    assert client.post(f"/api/v1/projects/family/people/{a}/not", json={"faces": []}).status_code == 422
    assert client.post(f"/api/v1/projects/family/people/{a}/not", json={"faces": [987654]}).status_code == 404
    assert (
        client.post(f"/api/v1/projects/family/people/{a}/merge", json={"others": [str(a)]}).status_code == 422
    )
    assert client.post("/api/v1/projects/family/faces/purge", json={}).status_code == 422
    r = client.post(f"/api/v1/projects/family/people/{a}/merge", json={"others": [str(b)]})
    assert r.status_code == 200 and r.json()["person"]["faces"] and len(r.json()["person"]["faces"]) == 6
    assert client.post("/api/v1/projects/family/people/undo").json()["undone"]["action"] == "merge"
    assert client.get("/api/v1/projects/family/people").json()["total"] == 2
    assert client.post("/api/v1/projects/family/people/redo").json()["redone"]["action"] == "merge"
    assert client.post("/api/v1/projects/family/people/redo").status_code == 409
    assert client.get("/api/v1/projects/family/people/changes").json()["total"] == 2
    assert client.post("/api/v1/projects/family/people/recluster").status_code == 202

    runner = CliRunner()
    ws = ["--workspace", str(studio.home), "--json"]
    out = runner.invoke(app, [*ws, "people", "family"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["items"][0]["name"] == "Alpha"
    shown = json.loads(runner.invoke(app, [*ws, "people", "show", "family", "Alpha"]).stdout)["person"]
    assert {"id", "name", "photos", "faces"} <= set(shown) and shown["photos"][0].keys() >= {
        "sample_id",
        "name",
        "path",
    }
    refused = runner.invoke(app, [*ws, "people", "purge", "family", "Alpha"])
    assert refused.exit_code != 0 and "--yes" in str(refused.exception)


# --- at scale: synthetic descriptors written straight into the tables -------------------------


def _synthetic_studio(home: Path) -> Studio:
    # the threshold given: these tests do not depend on the embedder's default
    s = open_studio(Settings(home=home, offline=True, faces=FaceSettings(min_faces=2, max_distance=0.5)))
    projects.create_project(s, name="big", task="library")
    return s


def _write_faces(
    studio: Studio, sizes: list[int], *, unplaced: int = 0, people_ids: list[int] | None = None
) -> None:
    """One face per photo: ``sizes[i]`` faces of person ``i`` (a random centre at radius 0.6,
    a little noise), then ``unplaced`` faces of nobody like. ``people_ids`` places them already
    (else every face is free)."""
    import numpy as np
    from sqlalchemy import insert

    rng = np.random.default_rng(5)
    centres = rng.standard_normal((len(sizes) + unplaced, 128)).astype(np.float32)
    centres *= 0.6 / np.linalg.norm(centres, axis=1, keepdims=True)
    owners = [i for i, n in enumerate(sizes) for _ in range(n)] + list(
        range(len(sizes), len(sizes) + unplaced)
    )
    model = faces.model_name(studio)
    with studio.sessions.begin() as s:
        first = (s.scalar(select(func.max(Sample.id))) or 0) + 1
        s.execute(
            insert(Sample),
            [
                {
                    "project_id": 1,
                    "sha256": f"{first + k:064x}",
                    "name": f"photos/{first + k:05d}.jpg",
                    "storage": "reference",
                    "path": f"/photos/{first + k}.jpg",
                    "width": 1000,
                    "height": 1000,
                    "format": "JPEG",
                    "bytes": 1000,
                    "phash": f"{first + k:016x}",
                    "exif": {},
                }
                for k in range(len(owners))
            ],
        )
        sample_ids = s.scalars(select(Sample.id).where(Sample.id >= first).order_by(Sample.id)).all()
        s.execute(
            insert(Face),
            [
                {
                    "project_id": 1,
                    "sample_id": sid,
                    "model": model,
                    "x": 0.4,
                    "y": 0.3,
                    "w": 0.2,
                    "h": 0.2,
                    "landmarks": [],
                    "score": 1.0,
                    "embedding": (centres[o] + 0.02 * rng.standard_normal(128)).astype("<f4").tobytes(),
                    "crop": b"",
                    "person_id": people_ids[o] if people_ids is not None and o < len(sizes) else None,
                    "assigned": "auto" if people_ids is not None and o < len(sizes) else None,
                }
                for sid, o in zip(sample_ids, owners, strict=True)
            ],
        )


def test_a_first_grouping_writes_its_new_people_in_one_statement(tmp_path: Path) -> None:
    from sqlalchemy import event

    studio = _synthetic_studio(tmp_path / "ws")
    try:
        _write_faces(studio, [5, 4, 3, 2], unplaced=2)
        inserts: list[str] = []
        event.listen(
            studio.engine,
            "before_cursor_execute",
            lambda _c, _cur, sql, *_: inserts.append(sql) if sql.startswith("INSERT INTO people") else None,
        )
        report = people.cluster_project(studio, 1, full=False)
        assert report["new_people"] == 4 and report["assigned"] == 14 and report["faces"] == 16
        assert len(inserts) == 1  # one multi-row INSERT … RETURNING, not an INSERT and a flush each
        groups = {pid: len(members) for pid, members in _groups(studio).items()}
        assert groups.pop(None) == 2  # the two strangers stay unplaced
        assert sorted(groups.values()) == [2, 3, 4, 5]
        with studio.sessions() as s:
            rows = s.scalars(select(Person).order_by(Person.id)).all()
            assert [p.name for p in rows] == [None] * 4 and not any(p.hidden for p in rows)
            assert all(p.created_at is not None for p in rows)
            # every cover is one of the person's own faces
            assert all(
                s.scalar(select(Face.person_id).where(Face.id == p.cover_face_id)) == p.id for p in rows
            )
        # nothing new, then a re-cluster of unchanged faces: nobody moves, nobody is made
        assert people.cluster_project(studio, 1, full=False)["new_people"] == 0
        full = people.cluster_project(studio, 1, full=True)
        assert full["new_people"] == 0 and full["removed_people"] == 0
        assert {pid: len(m) for pid, m in _groups(studio).items() if pid is not None} == groups
    finally:
        studio.close()


def test_people_pages_named_then_unnamed_and_the_review_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import insert

    studio = _synthetic_studio(tmp_path / "ws")
    try:
        names = ["Zoe", None, "Adam", None, None, "Bea", None, "Carl", None, None]
        hidden = {3, 7}  # an unnamed and a named person hidden
        sizes = [2, 6, 3, 5, 4, 1, 6, 2, 3, 0]  # the last one has no face left
        with studio.sessions.begin() as s:
            ids = s.scalars(
                insert(Person).returning(Person.id, sort_by_parameter_order=True),
                [{"project_id": 1, "name": n, "hidden": i in hidden} for i, n in enumerate(names)],
            ).all()
        _write_faces(studio, sizes, unplaced=3, people_ids=list(ids))
        # one person has two faces in one photo (placed by hand): photos count them once
        with studio.sessions.begin() as s:
            twin = s.scalars(select(Face).where(Face.person_id == ids[4]).order_by(Face.id)).all()
            twin[1].sample_id = twin[0].sample_id

        def expected(with_hidden: bool) -> list[int]:
            photos = [n - 1 if i == 4 else n for i, n in enumerate(sizes)]
            keep = [
                i for i in range(len(names)) if (names[i] or sizes[i]) and (with_hidden or i not in hidden)
            ]
            named = sorted((i for i in keep if names[i]), key=lambda i: names[i])  # type: ignore[arg-type, return-value]
            unnamed = sorted((i for i in keep if not names[i]), key=lambda i: (-photos[i], ids[i]))
            return [ids[i] for i in named + unnamed]

        for with_hidden in (False, True):
            want = expected(with_hidden)
            for limit in (1, 2, 3, 100):
                got, total = [], None
                for offset in range(0, len(want) + 2, limit):
                    page = people.list_people(
                        studio, project="big", hidden=with_hidden, offset=offset, limit=limit
                    )
                    got += [p["id"] for p in page["items"]]
                    total = page["total"]
                assert got == want and total == len(want), (with_hidden, limit)
        listed = {p["id"]: p for p in people.list_people(studio, project="big", hidden=True)["items"]}
        assert (listed[ids[4]]["faces"], listed[ids[4]]["photos"]) == (4, 3)
        assert listed[ids[0]]["faces"] == 2 and ids[9] not in listed
        # a name search (ignoring case) lists named people only, in the same order
        assert [p["name"] for p in people.list_people(studio, project="big", q="a")["items"]] == [
            "Adam",
            "Bea",
        ]
        found = people.list_people(studio, project="big", q="A", hidden=True, offset=2, limit=1)
        assert [p["name"] for p in found["items"]] == ["Carl"] and found["total"] == 3

        # the People page's count: the review's own total while the review is small...
        queue = people.review_queue(studio, project="big")["total"]
        assert people.review_count(studio, project="big") == {"count": queue, "exact": True, "more": False}
        # ...the unplaced faces beyond (cheap, from the index), "more" past the cap
        monkeypatch.setattr(people, "REVIEW_EXACT_PAIRS", 10)
        assert people.review_count(studio, project="big") == {"count": 3, "exact": False, "more": False}
        monkeypatch.setattr(people, "REVIEW_COUNT_CAP", 2)
        assert people.review_count(studio, project="big") == {"count": 2, "exact": False, "more": True}
        client = TestClient(create_app(studio, workers=0), base_url="http://localhost")
        page = client.get("/projects/big/people").text
        assert "Review 2 unplaced faces+</a>" in page
    finally:
        studio.close()
