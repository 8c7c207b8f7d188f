"""The demo workspace: scikit-learn's bundled digits as a classification project, and
scikit-image's bundled sample photos as a photo library. Nothing is downloaded.

The photo library is what a user's own would be: a folder of JPEGs (``<workspace>/demo-photos``)
registered with the project and scanned in place. The photos sit in albums with EXIF dates (and
GPS positions for two trips), a folder of scans has no EXIF, and an ``Edited`` folder holds true
duplicates of four photos (smaller, rotated, re-encoded, mirrored) plus a byte-identical backup
copy, so the Duplicates page has something real to show.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vistudio.errors import VistudioError
from vistudio.jobs.worker import Worker
from vistudio.services import ingest, library, projects, splits
from vistudio.studio import Studio

DIGITS = "digits"
PHOTOS = "sample-photos"
PHOTO_FOLDER = "demo-photos"  # inside the workspace, outside vistudio's own folders

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_TIME_ORIGINAL = 0x9003


@dataclass(frozen=True)
class Album:
    folder: str
    photos: tuple[str, ...]  # scikit-image sample names
    start: datetime | None = None  # the first photo's EXIF date; the others follow; None: no EXIF
    place: tuple[float, float] | None = None  # where the trip was (latitude, longitude)
    located: int = 0  # how many of the photos carry a GPS position (a phone loses its fix)


ALBUMS = (
    Album(
        "2019-08 Lisbon",
        ("astronaut", "coffee", "chelsea", "rocket", "horse", "clock"),
        start=datetime(2019, 8, 14, 10, 32, 5),
        place=(38.7139, -9.1394),
        located=5,
    ),
    Album(
        "2021-05 Kyoto",
        ("camera", "coins", "moon", "colorwheel", "logo", "motorcycle_left"),
        start=datetime(2021, 5, 3, 9, 5, 40),
        place=(35.0116, 135.7681),
        located=4,
    ),
    Album(
        "2023-01 Lab",
        ("immunohistochemistry", "cell", "retina", "hubble_deep_field"),
        start=datetime(2023, 1, 19, 14, 12, 0),
    ),
    Album("Scans", ("text", "page", "brick", "grass", "gravel", "checkerboard")),
)
SKIMAGE_PHOTOS = tuple(name for album in ALBUMS for name in album.photos)


@dataclass(frozen=True)
class Copy:
    """A true duplicate of one demo photo, written to the ``Edited`` folder."""

    source: str
    file: str
    edit: str  # "resize" | "rotate" | "reencode" | "mirror"


EDITED = "Edited"
COPIES = (
    Copy("coffee", "coffee-small.jpg", "resize"),
    Copy("chelsea", "chelsea-rotated.jpg", "rotate"),
    Copy("astronaut", "astronaut-web.jpg", "reencode"),
    Copy("rocket", "rocket-mirrored.jpg", "mirror"),
)
# the same bytes as a photo, under another name: one sample with two files (the exact level)
BACKUP = ("Phone backup", "IMG_0412.jpg", "2021-05 Kyoto", "camera.jpg")


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


def _sample_image(name: str) -> Any:
    """A scikit-image sample as an RGB or grey PIL image, or None when it is not bundled."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    fn = getattr(skdata, name, None)
    if fn is None:
        return None
    try:
        arr = np.asarray(fn())
    except Exception:  # some samples need a download: skip them, the demo must stay offline
        return None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        arr = (255 * (arr - arr.min()) / max(1e-9, float(arr.max() - arr.min()))).astype(np.uint8)
    im = Image.fromarray(arr)
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def _dms(value: float) -> tuple[float, float, float]:
    """Degrees as EXIF writes them: whole degrees, whole minutes, seconds to 1/100."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 2)
    return (float(degrees), float(minutes), seconds)


def _exif(when: datetime | None, where: tuple[float, float] | None) -> Any:
    from PIL import Image

    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(_EXIF_IFD)[_DATE_TIME_ORIGINAL] = when.strftime("%Y:%m:%d %H:%M:%S")
    if where is not None:
        lat, lon = where
        gps = exif.get_ifd(_GPS_IFD)
        gps[1], gps[2] = ("N" if lat >= 0 else "S"), _dms(lat)
        gps[3], gps[4] = ("E" if lon >= 0 else "W"), _dms(lon)
    return exif


def _save(im: Any, path: Path, exif: Any, *, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=quality, exif=exif)


def _edited(im: Any, edit: str) -> tuple[Any, int]:
    """A copy of ``im`` as an editor would make it, with the JPEG quality to save it at."""
    from PIL import Image

    if edit == "resize":
        return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), 92
    if edit == "rotate":
        return im.transpose(Image.Transpose.ROTATE_90), 92
    if edit == "mirror":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 92
    if edit == "reencode":
        return im, 30
    raise ValueError(f"unknown edit {edit!r}")


def write_photos(dest: Path) -> dict[str, Any]:
    """Write the demo photo folder (same bytes every time) and say what it holds: ``photos``
    (relative path → EXIF date and position written, ``None`` for none), ``duplicates`` (the
    true-duplicate groups as sets of relative paths) and ``backup`` (the two byte-identical files)."""
    written: dict[str, dict[str, Any]] = {}
    images: dict[str, tuple[Any, str]] = {}
    for album in ALBUMS:
        for i, name in enumerate(album.photos):
            im = _sample_image(name)
            if im is None:
                continue
            when = album.start + timedelta(hours=3 * i, minutes=17 * i) if album.start else None
            where = None
            if album.place is not None and i < album.located:
                # a few hundred metres apart, as one walks through a town
                where = (round(album.place[0] + 0.0021 * i, 4), round(album.place[1] - 0.0017 * i, 4))
            rel = f"{album.folder}/{name}.jpg"
            _save(im, dest / rel, _exif(when, where))
            written[rel] = {"taken_at": when, "gps": where}
            images[name] = (im, rel)
    duplicates: list[set[str]] = []
    for c in COPIES:
        if c.source not in images:
            continue
        im, rel = images[c.source]
        copy, quality = _edited(im, c.edit)
        meta = written[rel]
        copy_rel = f"{EDITED}/{c.file}"
        _save(copy, dest / copy_rel, _exif(meta["taken_at"], meta["gps"]), quality=quality)
        written[copy_rel] = dict(meta)
        duplicates.append({rel, copy_rel})
    backup: tuple[str, str] | None = None
    folder, file, src_folder, src_file = BACKUP
    if (dest / src_folder / src_file).exists():
        (dest / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dest / src_folder / src_file, dest / folder / file)
        backup = (f"{src_folder}/{src_file}", f"{folder}/{file}")
        written[backup[1]] = dict(written[backup[0]])
    return {"photos": written, "duplicates": duplicates, "backup": backup}


def _run(studio: Studio, job_id: int, what: str) -> dict[str, Any]:
    final = Worker(studio).run_to_end(job_id)
    if final.status != "succeeded":
        raise VistudioError(f"{what} {final.status}: {(final.error or {}).get('message')}")
    return (final.result or {}).get("report", {})


def _import(studio: Studio, project: str, source: Any, fmt: str) -> dict[str, Any]:
    job = ingest.start_import(studio, project=project, source=source, fmt=fmt, mode="copy")
    return _run(studio, job["id"], f"demo import into {project}")


def _scan(studio: Studio, project: str, folder: Path) -> dict[str, Any]:
    library.add_roots(studio, project=project, paths=[folder])
    job = library.start_scan(studio, project=project)
    return _run(studio, job["id"], f"demo scan of {folder}")


def _photos_ready(studio: Studio, existing: dict[str, dict[str, Any]]) -> bool:
    """The photo project is there as a library with a folder (an older demo imported copies of the
    photos into a library without one). Folders the user added or removed since are the user's
    business: such a project is left alone."""
    project = existing.get(PHOTOS)
    if project is None or project["task"] != library.LIBRARY_TASK:
        return False
    return library.list_roots(studio, project=project["id"], check=False)["total"] > 0


def _folder_users(studio: Studio, folder: Path) -> list[str]:
    """The projects that list ``folder`` as one of their library folders."""
    return [
        p["name"]
        for p in projects.list_projects(studio, limit=500)["items"]
        if p["task"] == library.LIBRARY_TASK
        and any(
            r["path"] == str(folder)
            for r in library.list_roots(studio, project=p["id"], check=False)["items"]
        )
    ]


def create_demo(studio: Studio, *, force: bool = False) -> dict[str, Any]:
    """Build the demo projects that are missing (``force``: rebuild both). Idempotent: a second
    run finds them and changes nothing."""
    existing = {p["name"]: p for p in projects.list_projects(studio, limit=500)["items"]}
    folder = studio.home / PHOTO_FOLDER
    build_digits = force or DIGITS not in existing
    build_photos = force or not _photos_ready(studio, existing)
    out: dict[str, Any] = {"created": build_digits or build_photos, "projects": [DIGITS, PHOTOS]}
    out["folder"] = str(folder)
    if not out["created"]:
        return out
    # a rebuild starts the demo folder afresh: never while another project scans it (its photos
    # must never be deleted)
    users = [u for u in _folder_users(studio, folder) if u != PHOTOS] if build_photos else []
    if users:
        raise VistudioError(
            f"the demo folder {folder} is a library folder of {', '.join(users)}: remove it from "
            "that project before rebuilding the demo"
        )
    for name, rebuild in ((DIGITS, build_digits), (PHOTOS, build_photos)):
        if rebuild and name in existing:
            projects.delete_project(studio, existing[name]["id"])
    reports: dict[str, Any] = {}
    if build_digits:
        src = studio.tmp / "demo-sources"
        shutil.rmtree(src, ignore_errors=True)
        try:
            _write_digits(src / DIGITS)
            projects.create_project(studio, name=DIGITS, task="classification")
            reports[DIGITS] = _import(studio, DIGITS, src / DIGITS, "folder")
            splits.create_split(studio, project=DIGITS, name="default", ratios=(0.8, 0.1, 0.1), seed=42)
        finally:
            shutil.rmtree(src, ignore_errors=True)
    if build_photos:
        # the folder is the demo's own: start it afresh so it holds exactly the demo
        shutil.rmtree(folder, ignore_errors=True)
        write_photos(folder)
        projects.create_project(studio, name=PHOTOS, task=library.LIBRARY_TASK)
        reports[PHOTOS] = _scan(studio, PHOTOS, folder)
    out["reports"] = reports
    return out
