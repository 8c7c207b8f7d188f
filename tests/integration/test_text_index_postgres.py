"""The text index on PostgreSQL gives the same answers as on SQLite: the same documents, the same
matches for words, phrases, prefixes, diacritics and hostile text, and it follows the same edits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import POSTGRES_MARKS, make_class_folders, postgres_studio, run_import
from vistudio.services import edits, people, projects, samples, search
from vistudio.studio import Studio

pytestmark = POSTGRES_MARKS

QUERIES = [
    "cat",
    "CAT",
    "ca*",
    "c*",
    '"cat 001"',
    "cat/cat-001.png",
    "dog 000",
    "zoe",
    "ZOË ålander",
    "alander*",
    "keep",
    "NEAR(cat",
    "cat OR dog",
    "^cat : *",
    '\'; select 1; "--x"',
    "label:cat tag:keep",
    "cat -tag:keep",
]


def _fill(studio: Studio, tmp_path: Path) -> None:
    from vistudio.db.faces import Face

    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 3, "dog": 2}))
    ids = sorted(x["id"] for x in samples.list_samples(studio, project="pets")["items"])
    project_id = projects.get_project(studio, "pets")["id"]
    edits.edit_sample(studio, ids[0], add_tags=["keep"])  # the edit keeps the index in step
    with studio.sessions.begin() as s:
        s.add(
            Face(
                project_id=project_id,
                sample_id=ids[1],
                model="test",
                x=0.1,
                y=0.1,
                w=0.3,
                h=0.3,
                score=0.9,
                embedding=bytes(512),
                crop=b"",
            )
        )
        s.flush()
        face = s.query(Face.id).scalar()
    person = people.move_faces(studio, project="pets", faces=[face], to=None)["person"]["id"]
    people.rename(studio, project="pets", person=person, name="Zoë Ålander")


def _answers(studio: Studio) -> dict[str, list[str]]:
    out = {}
    for q in QUERIES:
        got = search.search(studio, project="pets", query=q, k=50)
        out[q] = (
            [i["name"] for i in got["items"]]
            if got["mode"] != "filters"
            else sorted(i["name"] for i in got["items"])
        )
    return out


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Studio]:
    with postgres_studio(tmp_path / "pg", batch_size=8) as s:
        yield s


def test_postgres_answers_like_sqlite(pg: Studio, studio: Studio, tmp_path: Path) -> None:
    _fill(pg, tmp_path / "a")
    _fill(studio, tmp_path / "b")
    on_pg, on_sqlite = _answers(pg), _answers(studio)
    for q in QUERIES:  # the same photos; bm25 and ts_rank_cd may order ties differently
        assert sorted(on_pg[q]) == sorted(on_sqlite[q]), q
    assert on_pg["zoe"] == ["cat/cat-001.png"] and len(on_pg["ca*"]) == 3
    assert on_pg["label:cat tag:keep"] == ["cat/cat-000.png"]
