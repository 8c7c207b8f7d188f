"""Kill a library scan mid-way (SIGKILL, like a power cut), then scan again: it finishes without
reading again what was committed, and leaves the workspace consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from factories import draw_image
from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.db import Job, Sample
from vistudio.db.library import LibraryFile
from vistudio.services import library, projects
from vistudio.services.doctor import run_doctor
from vistudio.studio import open_studio

N = 300


@pytest.mark.slow
def test_kill_and_resume_scan(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(N):
        draw_image(photos / f"{i // 100}" / f"img_{i:03d}.png", seed=i)
    ws = tmp_path / "ws"
    env = {
        **os.environ,
        "VISTUDIO_IMPORTS__WORKERS": "1",
        "VISTUDIO_IMPORTS__BATCH_SIZE": "10",
        "VISTUDIO_JOBS__LEASE_SECONDS": "2",
        "VISTUDIO_JOBS__HEARTBEAT_SECONDS": "0.5",
    }
    studio = open_studio(
        Settings(home=ws, imports=ImportSettings(workers=1), jobs=JobSettings(lease_seconds=2))
    )
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(photos)])
    cli = [sys.executable, "-m", "vistudio.cli.main", "--workspace", str(ws), "--json"]
    proc = subprocess.Popen(
        [*cli, "library", "scan", "lib"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 40:
        with studio.sessions() as s:
            done = s.scalar(select(func.count()).select_from(LibraryFile)) or 0
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with studio.sessions() as s:
        committed = s.scalar(select(func.count()).select_from(LibraryFile)) or 0
        samples_then = s.scalar(select(func.count()).select_from(Sample)) or 0
        job = s.scalars(select(Job)).one()
    assert 0 < committed < N, "the kill must land mid-scan"
    assert samples_then == committed  # every committed file has its sample, and only those
    assert job.status == "running"

    time.sleep(2.5)  # the lease runs out: the job belongs to nobody now
    out = subprocess.run(
        [*cli, "library", "scan", "lib"], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["job"]["id"] == job.id and result["job"]["attempts"] == 2  # the same scan, resumed
    report = result["report"]
    assert report["attempt"] == 2
    assert report["added"] + report["unchanged"] == N and report["unchanged"] == committed
    assert result["job"]["progress"]["total"] == N - committed  # committed files were not read again
    with studio.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LibraryFile)) == N
        assert s.scalar(select(func.count()).select_from(Sample)) == N
        assert s.scalar(select(func.count(func.distinct(Sample.sha256)))) == N
        assert (
            s.scalar(select(func.count()).select_from(LibraryFile).where(LibraryFile.sample_id.is_(None)))
            == 0
        )
    # no orphan, missing or corrupt blob; the write the kill interrupted left at most a temp file
    health = run_doctor(studio)
    assert {p["kind"] for p in health["problems"]} <= {"blob_temp"}, health["problems"]
    fixed = subprocess.run([*cli, "doctor", "--fix"], env=env, capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stdout
    assert run_doctor(studio)["ok"]
    # and the next scan finds nothing to do
    again = subprocess.run(
        [*cli, "library", "scan", "lib"], env=env, capture_output=True, text=True, timeout=120
    )
    assert json.loads(again.stdout)["report"]["unchanged"] == N
    studio.close()
