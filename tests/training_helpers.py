"""Helpers of the TRAIN tests (test_training*): small projects with a split, running a training
job in a background thread, waiting, reading a job's events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factories import make_class_folders, run_import
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.services import projects, splits
from vistudio.studio import Studio

# resnet18 on 16-px inputs: a training job of a few seconds (most of it the child's start-up)
TINY: dict[str, Any] = {
    "model": "resnet18",
    "image_size": 16,
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.01,
    "augment": {"crop": False, "flip": False},
    "log_every_n_steps": 1,
    "seed": 1,
}
# the done-when configuration on digits: resnet18 from scratch, 32 px, batch 64
DIGITS: dict[str, Any] = {
    "model": "resnet18",
    "image_size": 32,
    "epochs": 4,
    "batch_size": 64,
    "lr": 0.002,
    "augment": {"crop": False, "flip": False},
    "seed": 0,
}


def imported(studio: Studio, project: str, source: Path) -> dict[str, Any]:
    """Import ``source`` into ``project`` and wait for the job, whoever runs it (a live server's
    embedded worker may claim it before this thread does)."""
    from vistudio.jobs.queue import FINISHED

    job = run_import(studio, project, source, fmt="folder")
    deadline = time.monotonic() + 120
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
        job = job_dict(studio.queue.get(job["id"]))
    return job


def tiny_project(
    studio: Studio, root: Path, name: str = "shapes", *, per_class: int = 10, split: bool = True
) -> str:
    """A classification project of three classes of generated pictures, with a seeded split ``s1``."""
    projects.create_project(studio, name=name, task="classification")
    src = make_class_folders(
        root / f"{name}-src", {"circle": per_class, "square": per_class, "stripes": per_class}
    )
    job = imported(studio, name, src)
    assert job["status"] == "succeeded", job
    if split:
        splits.create_split(studio, project=name, name="s1", ratios=(0.6, 0.2, 0.2), seed=7)
    return name


def full_digits_project(studio: Studio, root: Path, name: str = "digits") -> str:
    """All 1,797 scikit-learn digits as class-folder PNGs (32×32), imported, split 80/10/10, seed 42."""
    from vistudio.services.demo import _write_digits

    _write_digits(root / "digits-src")
    projects.create_project(studio, name=name, task="classification")
    job = imported(studio, name, root / "digits-src")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="default", ratios=(0.8, 0.1, 0.1), seed=42)
    return name


def run_job(studio: Studio, job_id: int) -> dict[str, Any]:
    worker = Worker(studio)
    if worker.run_one(job_id=job_id) is None:  # a live server's embedded worker claimed it first
        worker.run_to_end(job_id)
    return job_dict(studio.queue.get(job_id))


def start_job_thread(studio: Studio, job_id: int) -> threading.Thread:
    t = threading.Thread(target=Worker(studio).run_one, kwargs={"job_id": job_id}, daemon=True)
    t.start()
    return t


def wait_until(condition: Callable[[], Any], *, timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def job_events(studio: Studio, job_id: int, kind: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in studio.queue.events_after(job_id, 0, limit=100_000) if e.kind == kind]
