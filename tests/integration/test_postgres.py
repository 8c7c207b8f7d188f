"""The same core against PostgreSQL. Runs when VISTUDIO_TEST_POSTGRES_URL names a server the
tests may create databases on (e.g. postgresql+psycopg://postgres@/postgres?host=/tmp&port=5433);
skipped otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import (
    POSTGRES_MARKS,
    claim_all_concurrently,
    draw_image,
    make_class_folders,
    postgres_studio,
    run_import,
)
from vistudio.services import projects, samples, splits
from vistudio.services.doctor import run_doctor
from vistudio.studio import Studio

pytestmark = POSTGRES_MARKS


@pytest.fixture
def pg_studio(tmp_path: Path) -> Iterator[Studio]:
    with postgres_studio(tmp_path / "ws", batch_size=8) as studio:
        yield studio


def test_import_browse_split_and_doctor(pg_studio: Studio, tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 5})
    projects.create_project(pg_studio, name="pets", task="classification")
    report = run_import(pg_studio, "pets", src)["result"]["report"]
    assert report["imported"] == 11 and report["failed"] == []
    again = run_import(pg_studio, "pets", src)["result"]["report"]
    assert (again["imported"], again["skipped"]) == (0, 11)
    assert samples.class_counts(pg_studio, project="pets") == {"cat": 6, "dog": 5}
    page = samples.list_samples(
        pg_studio, project="pets", label="dog", sort="taken_at", order="desc", limit=3
    )
    assert page["total"] == 5 and len(page["items"]) == 3
    split = splits.create_split(pg_studio, project="pets", name="s", ratios="0.6,0.2,0.2", seed=3)
    assert split["locked"] and split["total"] == 11
    assert (
        samples.list_samples(pg_studio, project="pets", split="s", subset="train")["total"]
        == split["subsets"]["train"]["total"]
    )
    assert run_doctor(pg_studio)["ok"]
    assert projects.delete_project(pg_studio, "pets")["blobs_removed"] == 22


def test_claim_skips_locked_rows(pg_studio: Studio) -> None:
    ids, claimed = claim_all_concurrently(pg_studio, 30)
    assert sorted(claimed) == sorted(ids)


def test_long_names_and_tags(pg_studio: Studio, tmp_path: Path) -> None:
    deep = tmp_path / "album"
    for i in range(6):  # a 1,200-character relative name: longer than any VARCHAR we could pick
        deep = deep / (f"{i}" * 200)
    draw_image(deep / "photo.png", seed=99)
    make_class_folders(tmp_path / "album", {"beach": 2})
    projects.create_project(pg_studio, name="album", task="library")
    report = run_import(pg_studio, "album", tmp_path / "album")["result"]["report"]
    assert report["imported"] == 3 and report["failed"] == []
    names = [s["name"] for s in samples.list_samples(pg_studio, project="album", sort="name")["items"]]
    assert max(len(n) for n in names) > 1200


def test_edits_and_their_undo(pg_studio: Studio, tmp_path: Path) -> None:
    """Tag and label edits record their before/after states (JSON columns) and undo them."""
    from vistudio.services import edits

    make_class_folders(tmp_path / "pets", {"cat": 2, "dog": 1})
    projects.create_project(pg_studio, name="pets", task="classification")
    run_import(pg_studio, "pets", tmp_path / "pets")
    first = samples.list_samples(pg_studio, project="pets", sort="name")["items"][0]
    edits.edit_sample(pg_studio, first["id"], add_tags=["keep", "zoë"])
    assert set(samples.get_sample(pg_studio, first["id"])["tags"]) == {"keep", "zoë"}
    edits.undo(pg_studio, project="pets")
    assert samples.get_sample(pg_studio, first["id"])["tags"] == []
