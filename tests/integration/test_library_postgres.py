"""Library scans against PostgreSQL (runs when VISTUDIO_TEST_POSTGRES_URL names a server the tests
may create databases on; skipped otherwise)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import POSTGRES_MARKS, draw_image, postgres_studio
from vistudio.jobs.worker import Worker
from vistudio.services import library, projects, samples
from vistudio.services.doctor import run_doctor
from vistudio.studio import Studio

pytestmark = POSTGRES_MARKS


@pytest.fixture
def pg_studio(tmp_path: Path) -> Iterator[Studio]:
    with postgres_studio(tmp_path / "ws", batch_size=2) as studio:
        yield studio


def _scan(studio: Studio) -> dict:  # type: ignore[type-arg]
    job = library.start_scan(studio, project="lib")
    Worker(studio).run_one(job_id=job["id"])
    done = library.scan_report(studio, job["id"])
    assert done["job"]["status"] == "succeeded", done["job"]["error"]
    return done["report"]  # type: ignore[no-any-return]


def test_scan_rescan_and_remove_on_postgres(pg_studio: Studio, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(5):
        draw_image(root / f"img_{i}.png", seed=i)
    (root / "copy.png").write_bytes((root / "img_0.png").read_bytes())
    (root / "bad.jpg").write_text("no")
    projects.create_project(pg_studio, name="lib", task="library")
    library.add_roots(pg_studio, project="lib", paths=[str(root)])
    first = _scan(pg_studio)
    assert (first["added"], first["samples_added"], first["failed_count"]) == (6, 5, 1)
    draw_image(root / "img_1.png", seed=40)
    os.utime(root / "img_1.png", (1, 1))
    (root / "img_2.png").rename(root / "moved.png")
    again = _scan(pg_studio)
    assert (again["added"], again["updated"], again["removed"], again["unchanged"]) == (1, 1, 1, 4)
    assert again["samples_removed"] == 1
    assert samples.list_samples(pg_studio, project="lib")["total"] == 5
    assert run_doctor(pg_studio)["ok"]
    out = library.remove_root(pg_studio, project="lib", root=str(root))
    assert out["samples_removed"] == 5
    assert run_doctor(pg_studio)["ok"]
