"""The people list narrowed by a name (``q``): the service and ``GET /projects/P/people?q=``, which the
People filter of the Dataset and Search pages types into."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from factories import make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.db.faces import Face, Person
from vistudio.errors import NotFound
from vistudio.services import people, projects, samples
from vistudio.studio import Studio

NAMES = ["Alice Martin", "ALINA Ström", "Bob Chen", "Dr. 100% Real", "snake_case", "Zoë Ålander"]


@pytest.fixture
def lib(studio: Studio, tmp_path: Path) -> dict[str, int]:
    """A library with four photos, the named people above (none in a photo, but one), an unnamed
    person in two photos and a hidden "Alice Hidden"; their ids by name ("" for the unnamed)."""
    projects.create_project(studio, name="lib", task="library")
    assert run_import(studio, "lib", make_class_folders(tmp_path / "src", {"a": 4}))["status"] == "succeeded"
    ids = [s["id"] for s in samples.list_samples(studio, project="lib")["items"]]
    project_id = projects.get_project(studio, "lib")["id"]
    out: dict[str, int] = {}
    with studio.sessions.begin() as s:
        for name in [*NAMES, None, "Alice Hidden"]:
            p = Person(project_id=project_id, name=name, hidden=name == "Alice Hidden")
            s.add(p)
            s.flush()
            out[name or ""] = p.id
        for sid in ids[:2]:
            s.add(
                Face(
                    project_id=project_id,
                    sample_id=sid,
                    model="test",
                    x=0.1,
                    y=0.1,
                    w=0.3,
                    h=0.3,
                    score=0.9,
                    embedding=bytes(512),
                    crop=b"",
                    person_id=out[""],
                    assigned="manual",
                )
            )
    return out


def _names(studio: Studio, q: str | None, **kw: object) -> list[str | None]:
    return [p["name"] for p in people.list_people(studio, project="lib", q=q, **kw)["items"]]  # type: ignore[arg-type]


def test_name_query_ignores_case_and_means_contains(studio: Studio, lib: dict[str, int]) -> None:
    assert _names(studio, None) == [*sorted(NAMES), None]  # named first by name, then the unnamed
    assert _names(studio, "") == _names(studio, "   ") == [*sorted(NAMES), None]
    assert _names(studio, "ali") == ["ALINA Ström", "Alice Martin"]
    assert _names(studio, "  MARTIN ") == ["Alice Martin"]
    assert _names(studio, "chen") == ["Bob Chen"]
    # LIKE's wildcards are plain characters here
    assert _names(studio, "%") == ["Dr. 100% Real"]
    assert _names(studio, "_") == ["snake_case"]
    assert _names(studio, "ström") == ["ALINA Ström"]  # non-ASCII letters match as typed
    assert _names(studio, "nobody") == []
    # the unnamed person has no name to match; hidden people only when asked for
    assert _names(studio, "person") == []
    assert _names(studio, "alice", hidden=True) == ["Alice Hidden", "Alice Martin"]
    got = people.list_people(studio, project="lib", q="a", limit=2)
    assert got["total"] == 5 and len(got["items"]) == 2  # the total counts the matches, not the page
    last = people.list_people(studio, project="lib", q="a", offset=4, limit=2)["items"]
    assert [p["name"] for p in last] == ["snake_case"]
    with pytest.raises(NotFound):
        people.list_people(studio, project="nope", q="a")


def test_people_api_takes_q(studio: Studio, lib: dict[str, int]) -> None:
    client = TestClient(create_app(studio))
    r = client.get("/api/v1/projects/lib/people", params={"q": "ALI", "limit": 20})
    assert r.status_code == 200
    assert [p["name"] for p in r.json()["items"]] == ["ALINA Ström", "Alice Martin"] and r.json()[
        "total"
    ] == 2
    r = client.get("/api/v1/projects/lib/people", params={"q": "alice", "hidden": "true"})
    assert [p["id"] for p in r.json()["items"]] == [lib["Alice Hidden"], lib["Alice Martin"]]
    everyone = client.get("/api/v1/projects/lib/people").json()
    assert everyone["total"] == len(NAMES) + 1 and everyone["items"][-1]["photos"] == 2
    assert client.get("/api/v1/projects/lib/people", params={"q": "x" * 201}).status_code == 422
    assert client.get("/api/v1/projects/lib/people", params={"q": "x" * 200}).json()["total"] == 0


def test_select_all_matching_a_person_filter_tags_only_their_photos(
    studio: Studio, lib: dict[str, int]
) -> None:
    """The Dataset page's "select all N matching" sends the grid's filter, people included."""
    client = TestClient(create_app(studio))
    r = client.post("/api/v1/projects/lib/tags", json={"filter": {"person": [str(lib[""])]}, "add": ["them"]})
    assert r.status_code == 200, r.text
    theirs = {s["id"] for s in samples.list_samples(studio, project="lib", person=[str(lib[""])])["items"]}
    tagged = {s["id"] for s in samples.list_samples(studio, project="lib", tag="them")["items"]}
    assert tagged == theirs and len(theirs) == 2
    r = client.post("/api/v1/projects/lib/tags", json={"filter": {"person": ["nobody"]}, "add": ["x"]})
    assert r.status_code == 404 and "nobody" in r.text
    r = client.post("/api/v1/projects/lib/tags", json={"filter": {"person": [""]}, "add": ["x"]})
    assert r.status_code == 422


def test_each_photo_says_its_faces_and_people(studio: Studio, lib: dict[str, int]) -> None:
    """Browse and the photo detail count each photo's faces and the people the People pages
    show (a hidden person's face is a face, not a person shown)."""
    items = samples.list_samples(studio, project="lib")["items"]
    ids = [s["id"] for s in items]
    with studio.sessions.begin() as s:
        for person in (lib["Alice Hidden"], None):
            s.add(
                Face(
                    project_id=1,
                    sample_id=ids[2],
                    model="test",
                    x=0.5,
                    y=0.5,
                    w=0.2,
                    h=0.2,
                    score=0.9,
                    embedding=bytes(512),
                    crop=b"",
                    person_id=person,
                )
            )
    items = samples.list_samples(studio, project="lib")["items"]
    assert [(s["faces"], s["people"]) for s in items] == [(1, 1), (1, 1), (2, 0), (0, 0)]
    assert (
        samples.get_sample(studio, ids[0])["people"] == 1 and samples.get_sample(studio, ids[3])["faces"] == 0
    )
    client = TestClient(create_app(studio))
    r = client.get("/api/v1/samples", params={"project": "lib"})
    assert [(s["faces"], s["people"]) for s in r.json()["items"]] == [(1, 1), (1, 1), (2, 0), (0, 0)]
