"""The People pages' cheaper queries give what the slower ones gave: the browse filter by people
(started from their faces, or walking the photos in order; the total counted from the faces),
the status line's face counts (one project in the workspace, or several), and the person page's
names and the "Show hidden people" count — each checked against the old definition on a small
synthetic library (several people together, hidden samples, other filters with them)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, insert, select, update

from factories import POSTGRES_URL, postgres_studio
from vistudio.api.app import create_app
from vistudio.db import Sample, SampleTag
from vistudio.db.duplicates import HiddenSample
from vistudio.db.faces import Face, FaceScan, Person
from vistudio.services import faces, people, projects, samples
from vistudio.services.samples import filtered_query
from vistudio.studio import Studio
from vistudio.web.pages import people as people_page

PHOTOS = 90


def _samples(studio: Studio, project_id: int, n: int, *, seed: int) -> list[int]:
    rng = random.Random(seed)
    start = datetime(2020, 1, 1)
    with studio.sessions.begin() as s:
        s.execute(
            insert(Sample),
            [
                {
                    "project_id": project_id,
                    "sha256": f"{seed:08x}{k:056x}",
                    # names and dates out of id order, some equal (the id breaks ties)
                    "name": f"photos/{rng.randrange(30):02d}.jpg",
                    "storage": "reference",
                    "path": f"/photos/{seed}/{k}.jpg",
                    "width": 400,
                    "height": 300,
                    "format": "JPEG",
                    "bytes": 1000 + k,
                    "taken_at": None if k % 7 == 3 else start + timedelta(days=rng.randrange(40)),
                    "phash": f"{k:016x}",
                    "exif": {},
                }
                for k in range(n)
            ],
        )
        return list(s.scalars(select(Sample.id).where(Sample.project_id == project_id).order_by(Sample.id)))


def _face(project_id: int, sample_id: int, model: str, person_id: int | None) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "sample_id": sample_id,
        "model": model,
        "x": 0.1,
        "y": 0.1,
        "w": 0.2,
        "h": 0.2,
        "landmarks": [],
        "score": 0.9,
        "embedding": bytes(512),
        "crop": b"",
        "person_id": person_id,
        "assigned": None if person_id is None else "auto",
    }


@pytest.fixture
def lib(studio: Studio) -> dict[str, Any]:
    return _library(studio)


def _library(studio: Studio) -> dict[str, Any]:
    """A library of 90 photos: people of every size (one in most photos, one in a single photo,
    one with two faces in a photo, a hidden one, a named one without faces, an unnamed one
    without faces), faces of nobody, photos hidden by a duplicate review, a tag on some photos,
    photos read with the current face model (some without a face) and one with another model."""
    model = faces.model_name(studio)
    pid = projects.create_project(studio, name="album", task="library")["id"]
    ids = _samples(studio, pid, PHOTOS, seed=1)
    rng = random.Random(7)
    # name → photos (by index): sizes from most photos to one
    shows = {
        "Ann": set(rng.sample(range(PHOTOS), 60)),
        "Bob": set(rng.sample(range(PHOTOS), 35)),
        "": set(rng.sample(range(PHOTOS), 20)),  # unnamed
        "Cy": set(rng.sample(range(PHOTOS), 6)),
        "Di": {5},
        "Hidden Hal": set(rng.sample(range(PHOTOS), 12)),
    }
    out: dict[str, Any] = {"project": pid, "model": model, "ids": ids}
    with studio.sessions.begin() as s:
        for name in [*shows, "Named Nobody", None]:
            key = name if name is not None else "-"
            x = Person(project_id=pid, name=name or None, hidden=name == "Hidden Hal")
            s.add(x)
            s.flush()
            out[key] = x.id
        rows = [_face(pid, ids[k], model, out[name]) for name, ks in shows.items() for k in sorted(ks)]
        rows += [_face(pid, ids[k], model, out["Ann"]) for k in sorted(shows["Ann"])[:4]]  # two faces
        rows += [_face(pid, ids[k], model, None) for k in range(0, PHOTOS, 9)]  # nobody's
        s.execute(insert(Face), rows)
        hidden = [ids[k] for k in range(2, PHOTOS, 5)]
        s.execute(insert(HiddenSample), [{"sample_id": i, "project_id": pid} for i in hidden])
        s.execute(insert(SampleTag), [{"sample_id": ids[k], "tag": "beach"} for k in range(0, PHOTOS, 3)])
        read = [k for k in range(PHOTOS) if k % 11 != 4]
        s.execute(insert(FaceScan), [{"sample_id": ids[k], "model": model, "faces": 1} for k in read])
        s.execute(insert(FaceScan), [{"sample_id": ids[4], "model": "an-older-model", "faces": 0}])
    return out


def _old_ids(studio: Studio, lib: dict[str, Any], who: list[int], **filters: Any) -> set[int]:
    with studio.sessions() as s:
        return _old_ids_in(s, who, **filters)


def _old_ids_in(s: Any, who: list[int], **filters: Any) -> set[int]:
    """The photos of the filter as the browse defined them before: one ``IN`` per person."""
    p = projects.find_project(s, "album")
    stmt = samples.matching_query(s, p, **filters)  # no person: the other filters
    for person in who:
        stmt = stmt.where(Sample.id.in_(select(Face.sample_id).where(Face.person_id == person)))
    return set(s.scalars(stmt.with_only_columns(Sample.id)))


def _ordered(studio: Studio, ids: set[int], sort: str, order: str) -> list[int]:
    """``ids`` in the grid's order: by the column then the id; by date, undated ones last."""
    with studio.sessions() as s:
        rows = s.execute(select(Sample.id, getattr(Sample, sort)).where(Sample.id.in_(ids))).all()
    if sort == "taken_at":
        dated = sorted(
            (r for r in rows if r[1] is not None), key=lambda r: (r[1], r[0]), reverse=order == "desc"
        )
        return [r[0] for r in dated] + sorted(r[0] for r in rows if r[1] is None)
    return [r[0] for r in sorted(rows, key=lambda r: (r[1], r[0]), reverse=order == "desc")]


COMBOS = [
    ["Ann"],
    ["Di"],
    ["Cy"],
    ["Hidden Hal"],
    ["Ann", "Bob"],
    ["Bob", "Ann"],
    ["Ann", "Bob", ""],
    ["Ann", "Cy"],
    ["Ann", "Ann"],
    ["Di", "Cy"],  # nobody together
]
OTHER_FILTERS: list[dict[str, Any]] = [
    {},
    {"include_hidden": True},
    {"tag": "beach"},
    {"taken_from": datetime(2020, 1, 10), "taken_to": datetime(2020, 1, 30)},
    {"q": "1", "include_hidden": True},
    {"has_annotations": False},
]


@pytest.mark.parametrize("walk_min", [0, 10**9], ids=["walking the photos", "from their photos"])
def test_the_person_filter_lists_and_counts_what_it_did(
    studio: Studio, lib: dict[str, Any], walk_min: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both ways of finding the photos: walking every photo in order (people in "many" photos)
    # and starting from the people's photos (few)
    monkeypatch.setattr(samples, "PEOPLE_WALK_MIN", walk_min)
    _check_person_filter(studio, lib)


def _check_person_filter(studio: Studio, lib: dict[str, Any]) -> None:
    for combo, other in itertools.product(COMBOS, OTHER_FILTERS):
        who = [lib[n] for n in combo]
        want = _old_ids(studio, lib, who, **other)
        refs = [str(i) for i in who]
        for sort, order in [("name", "asc"), ("taken_at", "desc"), ("taken_at", "asc"), ("id", "desc")]:
            expected = _ordered(studio, want, sort, order)
            got: list[int] = []
            for offset in range(0, max(1, len(expected)) + 7, 7):  # pages across the dated/undated edge
                page = samples.list_samples(
                    studio,
                    project="album",
                    sort=sort,
                    order=order,
                    offset=offset,
                    limit=7,
                    person=refs,
                    **other,
                )
                assert page["total"] == len(want), (combo, other)
                got += [item["id"] for item in page["items"]]
            assert got == expected, (combo, other, sort, order)
    # by name too, as the filter is typed
    by_name = samples.list_samples(studio, project="album", person=["Ann", "Bob"], limit=500)
    assert {i["id"] for i in by_name["items"]} == _old_ids(studio, lib, [lib["Ann"], lib["Bob"]])


def test_the_query_behind_bulk_edits_and_search_selects_the_same_photos(
    studio: Studio, lib: dict[str, Any]
) -> None:
    _check_matching_query(studio, lib)


def _check_matching_query(studio: Studio, lib: dict[str, Any]) -> None:
    with studio.sessions() as s:
        p = projects.find_project(s, "album")
        for combo, other in itertools.product(COMBOS, OTHER_FILTERS):
            who = [lib[n] for n in combo]
            want = _old_ids_in(s, who, **other)
            for first in (True, False):
                stmt = samples.matching_query(s, p, person=[str(i) for i in who], people_first=first, **other)
                assert set(s.scalars(stmt.with_only_columns(Sample.id))) == want, (combo, other, first)
            # as the search service calls it (ids in the order given)
            plain = filtered_query(
                p.id,
                label=None,
                tag=other.get("tag"),
                split=None,
                subset=None,
                has_annotations=other.get("has_annotations"),
                taken_from=other.get("taken_from"),
                taken_to=other.get("taken_to"),
                dup_group=None,
                duplicates_only=False,
                q=other.get("q"),
                include_hidden=other.get("include_hidden", False),
                people=who,
            )
            assert set(s.scalars(plain.with_only_columns(Sample.id))) == want, (combo, other)


def _old_status(studio: Studio, project_id: int, model: str) -> tuple[int, int, int]:
    with studio.sessions() as s:
        where = (Face.project_id == project_id, Face.model == model)
        return (
            s.scalar(select(func.count()).select_from(Face).where(*where)) or 0,
            s.scalar(select(func.count(func.distinct(Face.sample_id))).where(*where)) or 0,
            s.scalar(
                select(func.count())
                .select_from(FaceScan)
                .join(Sample)
                .where(Sample.project_id == project_id, FaceScan.model == model)
            )
            or 0,
        )


def _status(studio: Studio, project: int) -> tuple[int, int, int]:
    c = faces.face_counts(studio, project=project)
    listed = faces.list_faces(studio, project=project, limit=1)
    assert (listed["total"], listed["photos_with_faces"], listed["photos_scanned"]) == (
        c["faces"],
        c["photos_with_faces"],
        c["photos_scanned"],
    )
    return c["faces"], c["photos_with_faces"], c["photos_scanned"]


def test_the_status_counts_with_one_project_and_with_several(studio: Studio, lib: dict[str, Any]) -> None:
    _check_status_counts(studio, lib)


def _check_status_counts(studio: Studio, lib: dict[str, Any]) -> None:
    pid, model = lib["project"], lib["model"]
    mine = _old_status(studio, pid, model)
    assert _status(studio, pid) == mine and mine[0] == 148 and mine[2] == PHOTOS - 8
    # projects made before and after it, with photos read by the same model (and faces)
    for name, seed in (("before", 2), ("after", 3)):
        other = projects.create_project(studio, name=name, task="library")["id"]
        theirs = _samples(studio, other, 12, seed=seed)
        with studio.sessions.begin() as s:
            s.execute(insert(FaceScan), [{"sample_id": i, "model": model, "faces": 1} for i in theirs[:9]])
            s.execute(insert(Face), [_face(other, i, model, None) for i in theirs[:5]])
        assert _status(studio, other) == _old_status(studio, other, model) == (5, 5, 9)
        assert _status(studio, pid) == _old_status(studio, pid, model) == mine
    with studio.sessions.begin() as s:  # the first project's photos only again
        others = select(Sample.id).where(Sample.project_id != pid)
        s.execute(delete(FaceScan).where(FaceScan.sample_id.in_(others)))
        s.execute(delete(Sample).where(Sample.project_id != pid))
    assert _status(studio, pid) == _old_status(studio, pid, model) == mine


def test_the_status_line_and_the_page_counts(studio: Studio, lib: dict[str, Any]) -> None:
    n_faces, with_faces, read = _old_status(studio, lib["project"], lib["model"])
    with TestClient(create_app(studio)) as client:
        r = client.get("/projects/album/people")
        assert r.status_code == 200
        assert f"{n_faces} faces in {with_faces} photos · {read} photos read" in r.text
        assert f"{PHOTOS - read} photos not read yet" in r.text
        # the hidden toggle: everyone minus the visible (named, or unnamed with a face)
        assert "Show hidden people (1)" in r.text
        r = client.get("/projects/album/people?hidden=1")
        assert r.status_code == 200 and "Hide hidden people" in r.text


def _old_hidden_count(studio: Studio, project_id: int) -> int:
    everyone = people.list_people(studio, project=project_id, hidden=True, limit=1)["total"]
    visible = people.list_people(studio, project=project_id, hidden=False, limit=1)["total"]
    return int(everyone - visible)


def _old_names(studio: Studio, project_id: int, me: int) -> list[str]:
    named = people.list_people(studio, project=project_id, hidden=True, limit=people_page.NAMES_LISTED)[
        "items"
    ]
    return [x["name"] for x in named if x["name"] and x["id"] != me]


def _new_names(studio: Studio, project_id: int, me: int) -> list[str]:
    return [name for pid, name in people_page._names(studio, project_id) if pid != me]


def _check_names_and_hidden(studio: Studio, lib: dict[str, Any]) -> None:
    pid = lib["project"]
    for me in (lib["Ann"], lib["-"], lib["Hidden Hal"]):
        assert _new_names(studio, pid, me) == _old_names(studio, pid, me)
    assert people_page._hidden_people(studio, pid) == _old_hidden_count(studio, pid) == 1


def test_the_names_and_the_hidden_count_are_what_list_people_gave(
    studio: Studio, lib: dict[str, Any]
) -> None:
    _check_names_and_hidden(studio, lib)
    pid = lib["project"]
    with studio.sessions.begin() as s:
        # hidden: an unnamed person with faces (counted), one without (not listed, not counted),
        # a named one without faces (listed, counted); more named people than the names list holds
        ghost = Person(project_id=pid, name=None, hidden=True)
        seen = Person(project_id=pid, name=None, hidden=True)
        s.add_all([ghost, seen, Person(project_id=pid, name="Zed", hidden=True)])
        s.flush()
        s.execute(insert(Face), [_face(pid, lib["ids"][0], lib["model"], seen.id)])
        s.execute(
            insert(Person),
            [{"project_id": pid, "name": f"Person {k:04d}", "hidden": k % 3 == 0} for k in range(1005)],
        )
    assert people_page._hidden_people(studio, pid) == _old_hidden_count(studio, pid) == 3 + 335
    for me in (lib["Ann"], lib["-"]):
        names = _new_names(studio, pid, me)
        # the first 1,000 names, less the person's own
        assert names == _old_names(studio, pid, me)
        assert len(names) == people_page.NAMES_LISTED - (me == lib["Ann"])
    # nobody named: both are empty
    with studio.sessions.begin() as s:
        s.execute(update(Person).where(Person.project_id == pid).values(name=None))
    assert _new_names(studio, pid, lib["Ann"]) == _old_names(studio, pid, lib["Ann"]) == []
    assert people_page._hidden_people(studio, pid) == _old_hidden_count(studio, pid)


@pytest.mark.parametrize("walk_min", [0, 10**9], ids=["walking the photos", "from their photos"])
@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="set VISTUDIO_TEST_POSTGRES_URL to run against PostgreSQL")
def test_the_same_on_postgresql(tmp_path: Path, walk_min: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "PEOPLE_WALK_MIN", walk_min)
    with postgres_studio(tmp_path / "ws", batch_size=8) as studio:
        lib = _library(studio)
        _check_person_filter(studio, lib)
        _check_matching_query(studio, lib)
        _check_status_counts(studio, lib)
        _check_names_and_hidden(studio, lib)
