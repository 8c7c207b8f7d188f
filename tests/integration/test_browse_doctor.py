from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from factories import draw_image, make_class_folders, run_import
from vistudio.errors import InvalidInput, NotFound
from vistudio.services import projects, samples
from vistudio.services.doctor import run_doctor
from vistudio.studio import Studio


def _photo(path: Path, seed: int, taken: str | None, *, make: str = "Canon", orientation: int | None = None) -> None:
    draw_image(path, seed=seed, size=(120, 80), fmt="JPEG")
    exif = Image.Exif()
    if taken:
        exif[0x0132] = taken  # DateTime in IFD0; DateTimeOriginal lives in the Exif IFD
        exif.get_ifd(0x8769)[0x9003] = taken
    exif[0x010F] = make
    exif[0x0110] = "EOS R5"
    if orientation:
        exif[0x0112] = orientation
    with Image.open(path) as im:
        im.load()
        im.save(path, "JPEG", exif=exif.tobytes())


@pytest.fixture
def photos(studio: Studio, tmp_path: Path) -> Path:
    src = tmp_path / "photos"
    _photo(src / "b-summer.jpg", 1, "2023:07:14 18:30:00")
    _photo(src / "a-winter.jpg", 2, "2021:01:02 09:00:00", orientation=6)
    _photo(src / "c-spring.jpg", 3, "2022:04:01 12:00:00")
    _photo(src / "d-undated.jpg", 4, None)
    projects.create_project(studio, name="photos", task="library")
    run_import(studio, "photos", src)
    return src


def test_sort_filter_and_detail(studio: Studio, photos: Path) -> None:
    by_name = [s["name"] for s in samples.list_samples(studio, project="photos")["items"]]
    assert by_name == ["a-winter.jpg", "b-summer.jpg", "c-spring.jpg", "d-undated.jpg"]
    by_date = [s["name"] for s in samples.list_samples(studio, project="photos", sort="taken_at")["items"]]
    assert by_date == ["a-winter.jpg", "c-spring.jpg", "b-summer.jpg", "d-undated.jpg"]
    newest = [s["name"] for s in samples.list_samples(studio, project="photos", sort="taken_at", order="desc")["items"]]
    assert newest == ["b-summer.jpg", "c-spring.jpg", "a-winter.jpg", "d-undated.jpg"]
    ranged = samples.list_samples(
        studio, project="photos", taken_from=datetime(2022, 1, 1), taken_to=datetime(2023, 12, 31)
    )
    assert {s["name"] for s in ranged["items"]} == {"b-summer.jpg", "c-spring.jpg"}
    assert samples.list_samples(studio, project="photos", q="spr")["total"] == 1
    assert samples.list_samples(studio, project="photos", q="%")["total"] == 0  # LIKE wildcards are escaped
    assert samples.list_samples(studio, project="photos", has_annotations=True)["total"] == 0
    winter = samples.list_samples(studio, project="photos", q="winter")["items"][0]
    assert (winter["width"], winter["height"]) == (80, 120)  # EXIF orientation 6 swaps the sides
    detail = samples.get_sample(studio, winter["id"])
    assert detail["camera_make"] == "Canon" and detail["orientation"] == 6
    assert detail["taken_at"].startswith("2021-01-02T09:00")
    assert detail["exif"] and detail["splits"] == {} and detail["tags"] == []


def test_browse_rejects_bad_parameters(studio: Studio, photos: Path) -> None:
    with pytest.raises(InvalidInput):
        samples.list_samples(studio, project="photos", sort="name; drop table samples")
    with pytest.raises(InvalidInput):
        samples.list_samples(studio, project="photos", limit=0)
    with pytest.raises(NotFound):
        samples.list_samples(studio, project="photos", split="nope")
    with pytest.raises(NotFound):
        samples.list_samples(studio, project="photos", subset="train")  # no split yet
    with pytest.raises(NotFound):
        samples.get_sample(studio, 10**9)


def test_doctor_finds_and_fixes_problems(studio: Studio, tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "d", {"a": 3, "b": 3})
    projects.create_project(studio, name="doc", task="classification")
    run_import(studio, "doc", src)
    assert run_doctor(studio) == {"ok": True, "problems": [], "fixed": []}

    media = sorted((studio.home / "media").rglob("*.png"))
    media[0].write_bytes(b"bit rot")  # a corrupted original
    orphan = studio.home / "artifacts" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")
    (studio.home / "thumbs" / ".tmp-x").write_bytes(b"half written")
    # older than the stale age (6 h): younger ones may be writes in flight, left alone
    for left in (orphan, studio.home / "thumbs" / ".tmp-x"):
        os.utime(left, (time.time() - 7 * 3600,) * 2)
    con = sqlite3.connect(studio.home / "vistudio.db")
    con.execute("UPDATE artifacts SET ref_count = 7 WHERE kind = 'thumbnail' AND id = (SELECT min(id) FROM artifacts)")
    con.commit()
    con.close()

    report = run_doctor(studio)
    kinds = sorted(p["kind"] for p in report["problems"])
    assert not report["ok"]
    assert "blob_corrupt" in kinds and "blob_orphan" in kinds and "blob_temp" in kinds and "ref_count" in kinds

    fixed = run_doctor(studio, fix=True)
    assert fixed["fixed"]
    assert not orphan.exists() and not (studio.home / "thumbs" / ".tmp-x").exists()
    after = run_doctor(studio)
    # the corrupted original is reported as missing until it is imported again; nothing else is left
    assert {p["kind"] for p in after["problems"]} == {"blob_missing"}
    again = run_import(studio, "doc", src)["result"]["report"]
    assert again["restored"] == 1 and again["imported"] == 0
    assert run_doctor(studio)["ok"]


def test_doctor_removes_temporary_folders_of_jobs_that_no_longer_run(studio: Studio) -> None:
    live = studio.queue.enqueue("train", {"experiment_id": 1})
    names = ["import-999999", "train-3-job999999-a1", f"train-3-job{live.id}-a2", "other"]
    for name in names:
        (studio.tmp / name).mkdir(parents=True)
    report = run_doctor(studio)
    stale = sorted(Path(p["path"]).name for p in report["problems"] if p["kind"] == "stale_temp")
    assert stale == ["import-999999", "train-3-job999999-a1"]
    run_doctor(studio, fix=True)
    assert sorted(p.name for p in studio.tmp.iterdir() if p.name in names) == sorted(names[2:])
    studio.queue.cancel(live.id)


def test_integrity_check_runs_on_sqlite(studio: Studio) -> None:
    con = sqlite3.connect(studio.home / "vistudio.db")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()
    assert run_doctor(studio)["ok"]
