"""The text index follows the services that change what it holds: people (rename, move, merge,
undo, purge), tags and labels (edits, undo), imports, sample deletion — and a project from before
the index is rebuilt (at once when small, else by a job while the search says how far it got)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text

from factories import make_class_folders, run_import
from vistudio.db import Sample
from vistudio.db.faces import Face, Person
from vistudio.db.text_index import TextDocument, TextIndexPending
from vistudio.jobs.worker import Worker
from vistudio.services import edits, people, projects, samples, search, text_index
from vistudio.studio import Studio


def _ids(studio: Studio, query: str, project: str = "lib") -> list[int]:
    out = search.search(studio, project=project, query=query, k=100)
    return sorted(i["sample_id"] for i in out["items"])


@pytest.fixture
def lib(studio: Studio, tmp_path: Path) -> dict[str, int]:
    """Four photos (a/a-000 … a-003), one unnamed face in each of the first two."""
    projects.create_project(studio, name="lib", task="library")
    assert run_import(studio, "lib", make_class_folders(tmp_path / "src", {"a": 4}))["status"] == "succeeded"
    ids = [s["id"] for s in samples.list_samples(studio, project="lib")["items"]]
    project_id = projects.get_project(studio, "lib")["id"]
    with studio.sessions.begin() as s:
        for n, sid in enumerate(ids[:2]):
            s.add(
                Face(
                    id=100 + n,
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
                )
            )
    return {"project": project_id, **{f"s{i}": sid for i, sid in enumerate(ids)}}


def test_imported_samples_are_indexed_at_once(studio: Studio, lib: dict[str, int]) -> None:
    with studio.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TextDocument)) == 4
        assert s.get(TextIndexPending, lib["project"]) is None
    assert _ids(studio, "a") == sorted(lib[f"s{i}"] for i in range(4))
    assert _ids(studio, "002") == [lib["s2"]]
    assert _ids(studio, "a-00*") == sorted(lib[f"s{i}"] for i in range(4))


def test_people_decisions_keep_the_names_in_step(studio: Studio, lib: dict[str, int]) -> None:
    moved = people.move_faces(studio, project="lib", faces=[100], to=None)  # a new person
    pid = moved["person"]["id"]
    assert _ids(studio, "alice") == []
    people.rename(studio, project="lib", person=pid, name="Alice Martin")
    assert _ids(studio, "alice") == [lib["s0"]]
    assert _ids(studio, '"alice martin"') == [lib["s0"]]
    people.rename(studio, project="lib", person=pid, name="Zoë Ålander")
    assert _ids(studio, "alice") == []  # the old name is gone
    assert _ids(studio, "zoe") == _ids(studio, "ZOË") == [lib["s0"]]  # diacritics and case fold
    # the other face placed in Zoë by hand: its photo is found by her name too
    people.move_faces(studio, project="lib", faces=[101], to=pid)
    assert _ids(studio, "zoe") == [lib["s0"], lib["s1"]]
    people.not_this_person(studio, project="lib", person=pid, faces=[101])
    assert _ids(studio, "zoe") == [lib["s0"]]
    people.undo(studio, project="lib")  # back in Zoë
    assert _ids(studio, "zoe") == [lib["s0"], lib["s1"]]
    # merged into a person without a name: the merged one's name carries over
    other = people.move_faces(studio, project="lib", faces=[101], to=None)["person"]["id"]
    assert _ids(studio, "zoe") == [lib["s0"]]
    people.merge(studio, project="lib", into=other, others=[pid])
    assert _ids(studio, "zoe") == [lib["s0"], lib["s1"]]
    people.delete_person(studio, project="lib", person=other)
    assert _ids(studio, "zoe") == []
    people.undo(studio, project="lib")
    assert _ids(studio, "zoe") == [lib["s0"], lib["s1"]]
    people.purge_person(studio, project="lib", person=other)
    assert _ids(studio, "zoe") == []


def test_tags_and_labels_follow_edits_and_undo(studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 1, "dog": 1}))
    s0, s1 = sorted(x["id"] for x in samples.list_samples(studio, project="pets")["items"])

    def ids(query: str) -> list[int]:
        return _ids(studio, query, project="pets")

    edits.edit_sample(studio, s0, add_tags=["Sunset"])
    assert ids("sunset") == [s0]
    assert ids("tag:Sunset") == [s0]
    edits.edit_sample(studio, s0, remove_tags=["Sunset"], add_tags=["beach"])
    assert ids("sunset") == [] and ids("beach") == [s0]
    assert ids("dog") == [s1]  # the imported label
    edits.edit_sample(studio, s1, labels=["zebra"], create_classes=True)
    assert ids("zebra") == [s1] and ids("label:zebra") == [s1]
    edits.edit_sample(studio, s1, labels=["okapi"], create_classes=True)
    assert ids("zebra") == [] and ids("okapi") == [s1] and ids("label:okapi") == [s1]
    edits.undo(studio, project="pets")
    assert ids("zebra") == [s1] and ids("okapi") == []
    # "dog" stays a word of its file name (dog/dog-000.png) but is no longer its label
    assert ids("dog") == [s1] and ids("label:dog") == []


def test_a_deleted_sample_leaves_the_index(studio: Studio, lib: dict[str, int]) -> None:
    with studio.sessions.begin() as s:
        s.execute(delete(Sample).where(Sample.id == lib["s3"]))
    assert _ids(studio, "003") == []
    with studio.sessions() as s:
        assert s.get(TextDocument, lib["s3"]) is None
        if s.get_bind().dialect.name == "sqlite":  # the FTS5 table agrees with its content table
            s.execute(text("INSERT INTO text_fts(text_fts, rank) VALUES ('integrity-check', 1)"))


def test_a_project_from_before_the_index_is_rebuilt(studio: Studio, lib: dict[str, int]) -> None:
    with studio.sessions.begin() as s:  # as migration 0019 leaves an old workspace
        s.execute(delete(TextDocument))
        s.add(TextIndexPending(project_id=lib["project"]))
    assert _ids(studio, "002") == [lib["s2"]]  # small: rebuilt by the search itself
    with studio.sessions() as s:
        assert s.get(TextIndexPending, lib["project"]) is None
        assert s.scalar(select(func.count()).select_from(TextDocument)) == 4


def test_a_large_pending_project_is_rebuilt_by_a_job(
    studio: Studio, lib: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(text_index, "INLINE_REBUILD", 2)
    monkeypatch.setattr(text_index, "REBUILD_BATCH", 3)
    with studio.sessions.begin() as s:
        s.execute(delete(TextDocument))
        s.add(TextIndexPending(project_id=lib["project"]))
    out = search.search(studio, project="lib", query="002")
    assert out["items"] == [] and out["text_index"]["state"] == "building"
    assert out["text_index"]["indexed"] == 0 and out["text_index"]["samples"] == 4
    (notice,) = [n for n in out["notices"] if n["code"] == "text_index_building"]
    assert notice["message"].startswith("text index building: 0 of 4")
    again = search.search(studio, project="lib", query="002")  # one job, not one per search
    assert again["text_index"]["job_id"] == out["text_index"]["job_id"]
    done = Worker(studio).run_one(out["text_index"]["job_id"])
    assert done is not None and done.status == "succeeded", done and done.error
    assert _ids(studio, "002") == [lib["s2"]]
    with studio.sessions() as s:
        assert s.get(TextIndexPending, lib["project"]) is None


def test_unchanged_documents_are_not_rewritten(studio: Studio, lib: dict[str, int]) -> None:
    with studio.sessions.begin() as s:
        assert text_index.sync(s, [lib["s0"], lib["s1"]]) == 0
        s.execute(delete(Person))  # nothing to say about people: still nothing to write
        assert text_index.sync(s, [lib["s0"], 10**9]) == 0


def test_the_migration_leaves_old_projects_pending(tmp_path: Path) -> None:
    from alembic import command

    from vistudio.db.session import alembic_config, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0018")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO projects (id, name, task, created_at, updated_at) VALUES "
                "(1, 'old', 'library', '2026-01-01', '2026-01-01'), (2, 'empty', 'library', '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO samples (id, project_id, sha256, name, storage, path, width, height, format, bytes, "
                "phash, exif, imported_at) VALUES (7, 1, :sha, 'Lisbon/IMG_1.JPG', 'copy', 'm/1', 1, 1, 'jpeg', 1, "
                "'0000000000000000', '{}', '2026-01-01')"
            ),
            {"sha": "a" * 64},
        )
    command.upgrade(alembic_config(engine), "0019")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT project_id FROM text_index_pending")).scalars().all() == [1]
        assert conn.execute(text("SELECT count(*) FROM text_documents")).scalar() == 0  # filled later
        assert conn.execute(text("SELECT count(*) FROM text_fts WHERE text_fts MATCH 'lisbon'")).scalar() == 0
    command.downgrade(alembic_config(engine), "0018")
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM sqlite_master")).scalars())
        assert not any(n.startswith("text_") for n in names)
    engine.dispose()


def test_places_filled_later_are_found_by_their_names(studio: Studio, lib: dict[str, int]) -> None:
    """A photo whose place was not looked up at import (an older workspace): the places job names
    it and the full-text index finds it by the name."""
    from vistudio.services import places

    with studio.sessions.begin() as s:
        s.execute(
            Sample.__table__.update()
            .where(Sample.id == lib["s3"])
            .values(gps_lat=38.7223, gps_lon=-9.1393, place_city=None, place_country=None, place_lookup=None)
        )
        text_index.sync(s, [lib["s3"]])
    assert _ids(studio, "lisbon") == []
    job = places.start_places(studio, project="lib")
    Worker(studio).run_to_end(job["id"])
    assert _ids(studio, "lisbon") == [lib["s3"]]
    assert _ids(studio, "portugal") == [lib["s3"]]
