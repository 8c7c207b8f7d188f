"""The demo workspace: scikit-learn's bundled digits as a classification project, and
scikit-image's bundled sample photos as a library project. Nothing is downloaded."""

from __future__ import annotations

import shutil
from typing import Any

from vistudio.errors import VistudioError
from vistudio.jobs.worker import Worker
from vistudio.services import ingest, projects, splits
from vistudio.studio import Studio

DIGITS = "digits"
PHOTOS = "sample-photos"
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "brick",
    "grass",
    "gravel",
    "text",
    "page",
    "clock",
    "horse",
    "logo",
    "motorcycle_left",
    "retina",
    "cell",
    "checkerboard",
)


def _write_digits(dest: Any) -> int:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    for i, (img, target) in enumerate(zip(data.images, data.target, strict=True)):
        folder = dest / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        # 8×8 values 0..16 → 32×32 grey, dark ink on white like a scanned digit
        arr = (255 - img * (255 / 16)).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr, "L").resize((32, 32), Image.Resampling.NEAREST).save(
            folder / f"digit-{i:04d}.png"
        )
    return len(data.images)


def _write_photos(dest: Any) -> int:
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for name in SKIMAGE_PHOTOS:
        fn = getattr(skdata, name, None)
        if fn is None:
            continue
        try:
            arr = np.asarray(fn())
        except Exception:  # some samples need a download: skip them, the demo must stay offline
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(1e-9, float(arr.max() - arr.min()))).astype(np.uint8)
        im = Image.fromarray(arr)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        im.save(dest / f"{name}.jpg", quality=92)
        n += 1
    return n


def _import(studio: Studio, project: str, source: Any, fmt: str) -> dict[str, Any]:
    job = ingest.start_import(studio, project=project, source=source, fmt=fmt, mode="copy")
    Worker(studio).run_one(job_id=job["id"])
    final = studio.queue.get(job["id"])
    if final.status != "succeeded":
        raise VistudioError(f"demo import into {project} failed: {(final.error or {}).get('message')}")
    return (final.result or {}).get("report", {})


def create_demo(studio: Studio, *, force: bool = False) -> dict[str, Any]:
    existing = {p["name"] for p in projects.list_projects(studio, limit=500)["items"]}
    if not force and {DIGITS, PHOTOS} <= existing:
        return {"created": False, "projects": [DIGITS, PHOTOS]}
    for name in (DIGITS, PHOTOS):
        if name in existing:
            projects.delete_project(studio, name)
    src = studio.tmp / "demo-sources"
    shutil.rmtree(src, ignore_errors=True)
    try:
        _write_digits(src / DIGITS)
        _write_photos(src / PHOTOS)
        projects.create_project(studio, name=DIGITS, task="classification")
        projects.create_project(studio, name=PHOTOS, task="library")
        reports = {
            DIGITS: _import(studio, DIGITS, src / DIGITS, "folder"),
            PHOTOS: _import(studio, PHOTOS, src / PHOTOS, "folder"),
        }
        splits.create_split(studio, project=DIGITS, name="default", ratios=(0.8, 0.1, 0.1), seed=42)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return {"created": True, "projects": [DIGITS, PHOTOS], "reports": reports}
