"""Data factories shared by the tests: generated images, class folders, zips, imports."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vistudio.studio import Studio


def draw_image(path: Path, *, seed: int, size: tuple[int, int] = (64, 48), fmt: str | None = None) -> Path:
    """A distinct small picture: background colour and shapes vary with ``seed``."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0] // 2), rng.randrange(size[1] // 2)
        x1, y1 = x0 + rng.randrange(4, size[0] // 2), y0 + rng.randrange(4, size[1] // 2)
        shape = d.ellipse if rng.random() < 0.5 else d.rectangle
        shape((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def make_class_folders(root: Path, classes: dict[str, int], *, start_seed: int = 0) -> Path:
    """``root/<class>/<class>-<i>.png`` with distinct images."""
    seed = start_seed
    for name, n in classes.items():
        for i in range(n):
            draw_image(root / name / f"{name}-{i:03d}.png", seed=seed)
            seed += 1
    return root


def zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return dest


def run_import(
    studio: Studio, project: str, source: Path, *, fmt: str | None = None, mode: str = "copy"
) -> dict[str, Any]:
    """Queue an import and run it in this process; returns the finished job as a dict."""
    from vistudio.jobs.queue import job_dict
    from vistudio.jobs.worker import Worker
    from vistudio.services.ingest import start_import

    job = start_import(studio, project=project, source=source, fmt=fmt, mode=mode)
    Worker(studio).run_one(job_id=job["id"])
    return job_dict(studio.queue.get(job["id"]))


def tree(root: Path) -> set[str]:
    """Every file under root, as relative posix paths."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def claim_all_concurrently(studio: Studio, jobs: int, *, threads: int = 4) -> tuple[list[int], list[int]]:
    """Queue ``jobs`` jobs and let ``threads`` workers claim until none is left.
    Returns (queued ids, claimed ids) so a test can check every job was claimed exactly once."""
    import threading

    queue = studio.queue
    ids = [queue.enqueue("noop", {}).id for _ in range(jobs)]
    claimed: list[int] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        while (job := queue.claim(name)) is not None:
            with lock:
                claimed.append(job.id)

    workers = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return ids, claimed
