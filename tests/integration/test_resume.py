"""Kill an import mid-way (SIGKILL, like a power cut) and check that running it again finishes
it with no duplicate samples and no orphan blobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from factories import make_class_folders
from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.db import Job, Sample
from vistudio.services import projects
from vistudio.services.doctor import run_doctor
from vistudio.studio import open_studio


@pytest.mark.slow
def test_kill_and_resume_import(tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "big", {"a": 150, "b": 150})
    ws = tmp_path / "ws"
    env = {
        **os.environ,
        "VISTUDIO_IMPORTS__WORKERS": "1",
        "VISTUDIO_IMPORTS__BATCH_SIZE": "10",
        "VISTUDIO_JOBS__LEASE_SECONDS": "2",
        "VISTUDIO_JOBS__HEARTBEAT_SECONDS": "0.5",
    }
    settings = Settings(home=ws, imports=ImportSettings(workers=1), jobs=JobSettings(lease_seconds=2))
    studio = open_studio(settings)
    projects.create_project(studio, name="big", task="classification")
    cli = [sys.executable, "-m", "vistudio.cli.main", "--workspace", str(ws), "--json"]
    proc = subprocess.Popen([*cli, "import", "big", str(src)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 40:
        with studio.sessions() as s:
            done = s.scalar(select(func.count()).select_from(Sample)) or 0
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with studio.sessions() as s:
        partial = s.scalar(select(func.count()).select_from(Sample)) or 0
        job = s.scalars(select(Job)).one()
    assert 0 < partial < 300, "the kill must land mid-import"
    assert job.status == "running"

    time.sleep(2.5)  # the lease runs out: the job belongs to nobody now
    out = subprocess.run([*cli, "worker", "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    studio.queue.get(job.id)
    final = studio.queue.get(job.id)
    assert final.status == "succeeded" and final.attempts == 2
    report = (final.result or {})["report"]
    assert report["imported"] + report["skipped"] == 300
    with studio.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Sample)) == 300
        assert s.scalar(select(func.count(func.distinct(Sample.sha256)))) == 300
    # no orphan, missing or corrupt blob; the write the kill interrupted left at most a temp
    # file (never a blob under its final name), which doctor --fix removes
    health = run_doctor(studio)
    assert {p["kind"] for p in health["problems"]} <= {"blob_temp"}, health["problems"]
    run_doctor(studio, fix=True)
    assert run_doctor(studio)["ok"]
    studio.close()
