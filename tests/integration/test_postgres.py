"""The same core against PostgreSQL. Runs when VISTUDIO_TEST_POSTGRES_URL names a server the
tests may create databases on (e.g. postgresql+psycopg://postgres@/postgres?host=/tmp&port=5433);
skipped otherwise."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from factories import claim_all_concurrently, draw_image, make_class_folders, run_import
from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.services import projects, samples, splits
from vistudio.services.doctor import run_doctor
from vistudio.studio import Studio, open_studio

URL = os.environ.get("VISTUDIO_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not URL, reason="set VISTUDIO_TEST_POSTGRES_URL to run against PostgreSQL"),
]


@pytest.fixture
def pg_studio(tmp_path: Path) -> Iterator[Studio]:
    assert URL
    admin = create_engine(URL, isolation_level="AUTOCOMMIT")
    name = f"vistudio_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(URL).set(database=name).render_as_string(hide_password=False)
    studio = open_studio(
        Settings(
            home=tmp_path / "ws",
            database_url=url,
            imports=ImportSettings(workers=1, batch_size=8),
            jobs=JobSettings(heartbeat_seconds=0.2, backoff_base_seconds=0.01),
        )
    )
    yield studio
    studio.close()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


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
