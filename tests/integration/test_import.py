from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from factories import draw_image, make_class_folders, run_import, tree
from vistudio.db import Annotation, Artifact, Sample
from vistudio.errors import InvalidInput, NotFound
from vistudio.services import projects, samples
from vistudio.services.doctor import run_doctor
from vistudio.services.ingest import start_import
from vistudio.studio import Studio


def _count(studio: Studio, model: type) -> int:
    with studio.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_folder_import_copy_mode_and_incremental_reimport(studio: Studio, class_folders: Path) -> None:
    projects.create_project(studio, name="pets", task="classification")
    job = run_import(studio, "pets", class_folders)
    assert job["status"] == "succeeded", job["error"]
    report = job["result"]["report"]
    assert (report["imported"], report["skipped"], report["duplicates"], report["failed"]) == (15, 0, 0, [])
    assert report["classes"] == ["cat", "dog", "fox"]
    assert samples.class_counts(studio, project="pets") == {"cat": 6, "dog": 5, "fox": 4}
    # originals and thumbnails are content-addressed in the workspace
    media = tree(studio.home / "media")
    assert len(media) == 15 and all(p.endswith(".png") for p in media)
    assert len(tree(studio.home / "thumbs")) == 15
    thumb = next((studio.home / "thumbs").rglob("*.webp"))
    with Image.open(thumb) as im:
        assert im.format == "WEBP" and max(im.size) <= 256

    again = run_import(studio, "pets", class_folders)["result"]["report"]
    assert (again["imported"], again["skipped"]) == (0, 15)
    draw_image(class_folders / "cat" / "new-cat.png", seed=999)
    third = run_import(studio, "pets", class_folders)["result"]["report"]
    assert (third["imported"], third["skipped"]) == (1, 15)
    assert _count(studio, Sample) == 16
    assert run_doctor(studio)["ok"]


def test_reference_mode_never_touches_originals(studio: Studio, class_folders: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in class_folders.rglob("*.png")}
    projects.create_project(studio, name="ref", task="classification")
    report = run_import(studio, "ref", class_folders, mode="reference")["result"]["report"]
    assert report["imported"] == 15
    assert tree(studio.home / "media") == set()
    assert list((studio.home / "tmp").iterdir()) == []
    listed = samples.list_samples(studio, project="ref", limit=100)["items"]
    detail = samples.get_sample(studio, listed[0]["id"])
    assert detail["storage"] == "reference" and Path(detail["path"]).is_absolute()
    projects.delete_project(studio, "ref")
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in class_folders.rglob("*.png")}
    assert after == before
    assert tree(studio.home / "thumbs") == set()  # thumbnails released and collected
    assert _count(studio, Artifact) == 0


def test_delete_project_releases_only_its_references(studio: Studio, class_folders: Path) -> None:
    for name in ("a", "b"):
        projects.create_project(studio, name=name, task="classification")
        run_import(studio, name, class_folders)
    with studio.sessions() as s:
        assert set(s.scalars(select(Artifact.ref_count))) == {2}
    out = projects.delete_project(studio, "a")
    assert out["samples"] == 15 and out["blobs_removed"] == 0
    with studio.sessions() as s:
        assert set(s.scalars(select(Artifact.ref_count))) == {1}
    assert len(tree(studio.home / "media")) == 15
    projects.delete_project(studio, "b")
    assert tree(studio.home / "media") == set()
    assert run_doctor(studio)["ok"]


def test_exact_and_near_duplicates(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    base = draw_image(src / "a.png", seed=1, size=(320, 240))
    (src / "a-copy.png").write_bytes(base.read_bytes())
    with Image.open(base) as im:
        im.resize((160, 120)).save(src / "a-small.jpg", quality=85)
        im.transpose(Image.Transpose.ROTATE_90).save(src / "a-rotated.png")
    for i in range(5):
        draw_image(src / f"other-{i}.png", seed=100 + i, size=(320, 240))
    projects.create_project(studio, name="lib", task="library")
    report = run_import(studio, "lib", src)["result"]["report"]
    assert report["imported"] == 8 and report["duplicates"] == 1
    assert report["duplicate_items"][0]["path"] in ("a.png", "a-copy.png")
    assert report["near_duplicate_groups"] >= 1
    dups = samples.list_samples(studio, project="lib", duplicates_only=True)
    names = {s["name"] for s in dups["items"]}
    assert {"a-small.jpg"} <= names and names & {"a.png", "a-copy.png"}
    assert not any(n.startswith("other") for n in names)
    grouped = samples.list_samples(studio, project="lib", duplicates_only=True, sort="dup_group")["items"]
    groups = [s["dup_group"] for s in grouped]
    assert groups == sorted(groups)  # members of a group are listed together


def test_copies_within_a_source_lose_no_labels(studio: Studio, tmp_path: Path) -> None:
    """Byte-identical files in one source become one sample; what the dropped copy said is kept:
    the same label or none → nothing to do (``same``); another label → the sample is tagged ``label-conflict`` and
    the report names both files; a kept copy without annotations takes the copy's; a library
    takes both folders' tags."""
    src = tmp_path / "pets"
    a = draw_image(src / "cat" / "a.png", seed=1).read_bytes()
    (src / "dog").mkdir()
    (src / "dog" / "a-again.png").write_bytes(a)  # labelled otherwise
    b = draw_image(src / "cat" / "b.png", seed=2).read_bytes()
    (src / "cat" / "b-again.png").write_bytes(b)  # the same label twice
    draw_image(src / "dog" / "c.png", seed=3)
    projects.create_project(studio, name="pets", task="classification")
    report = run_import(studio, "pets", src)["result"]["report"]
    assert (report["imported"], report["duplicates"], report["label_conflicts"]) == (3, 2, 1)
    labels = {frozenset((d["path"], d["same_as"])): d["labels"] for d in report["duplicate_items"]}
    assert labels == {
        frozenset(("cat/a.png", "dog/a-again.png")): "conflict",
        frozenset(("cat/b.png", "cat/b-again.png")): "same",
    }
    tagged = samples.list_samples(studio, project="pets", tag="label-conflict")["items"]
    assert [t["name"] for t in tagged] in (["cat/a.png"], ["dog/a-again.png"])
    assert sum(samples.class_counts(studio, project="pets").values()) == 3  # one label per sample

    # YOLO: the first copy has no label file, the second has one → the sample takes its boxes
    yolo = tmp_path / "yolo"
    draw_image(yolo / "images" / "plain.png", seed=4)
    (yolo / "images" / "boxed.png").write_bytes((yolo / "images" / "plain.png").read_bytes())
    (yolo / "labels").mkdir()
    (yolo / "labels" / "boxed.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n")
    (yolo / "classes.txt").write_text("boat\ncar\n")
    projects.create_project(studio, name="boats", task="detection")
    report = run_import(studio, "boats", yolo, fmt="yolo")["result"]["report"]
    assert (report["imported"], report["duplicates"], report["label_conflicts"]) == (1, 1, 0)
    (dup,) = report["duplicate_items"]  # the copy kept is the one probed first
    assert dup["labels"] == ("adopted" if dup["path"] == "images/boxed.png" else "same")
    assert (report["annotations"], report["unlabelled"]) == (2, 0)
    with studio.sessions() as s:
        kinds = s.scalars(select(Annotation.kind).where(Annotation.kind != "label")).all()
    assert sorted(kinds) == ["box", "box"]

    # a library keeps both folders' names as tags
    projects.create_project(studio, name="album", task="library")
    report = run_import(studio, "album", src)["result"]["report"]
    assert report["label_conflicts"] == 0
    both = samples.list_samples(studio, project="album", tag="dog")["items"]
    tags = [samples.get_sample(studio, item["id"])["tags"] for item in both]
    assert sorted(tags) == [["cat", "dog"], ["dog"]]


def test_bad_images_are_reported_and_the_rest_proceeds(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    draw_image(src / "good-1.png", seed=1)
    draw_image(src / "good-2.jpg", seed=2, fmt="JPEG")
    (src / "notes.jpg").write_text("this is not an image")
    full = draw_image(tmp_path / "full.jpg", seed=3, size=(200, 200), fmt="JPEG").read_bytes()
    (src / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (src / "empty.png").write_bytes(b"")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    projects.create_project(studio, name="mixed", task="library")
    job = run_import(studio, "mixed", src)
    report = job["result"]["report"]
    assert job["status"] == "succeeded"
    assert report["imported"] == 2
    failed = {f["path"]: f["reason"] for f in report["failed"]}
    assert set(failed) == {"notes.jpg", "truncated.jpg", "empty.png", "corrupt.png"}
    assert all(reason for reason in failed.values())
    assert run_doctor(studio)["ok"]


def test_hostile_zip_writes_nothing_outside_the_workspace(studio: Studio, tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "set", {"a": 2, "b": 2})
    z = tmp_path / "hostile.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
        zf.writestr("../escape.png", b"x")
        zf.writestr("/abs/escape.png", b"x")
        link = zipfile.ZipInfo("set/a/link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    outside_before = {p for p in tree(tmp_path) if not p.startswith("ws/")}
    projects.create_project(studio, name="z", task="classification")
    report = run_import(studio, "z", z)["result"]["report"]
    assert report["imported"] == 4
    reasons = " ".join(f["reason"] for f in report["failed"])
    assert report["failed_count"] == 3 and "symlink" in reasons
    assert {p for p in tree(tmp_path) if not p.startswith("ws/")} == outside_before
    assert not Path("/abs/escape.png").exists()
    assert list((studio.home / "tmp").iterdir()) == []  # extraction folder cleaned up


def test_coco_yolo_csv_end_to_end(studio: Studio, tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    for i in range(3):
        draw_image(coco / "images" / f"im{i}.png", seed=i, size=(100, 50))
    (coco / "ann.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"im{i}.png", "width": 100, "height": 50} for i in range(3)]
        + [{"id": 9, "file_name": "../../etc/passwd", "width": 1, "height": 1}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 5, 50, 20]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 50], "segmentation": [[0, 0, 100, 0, 100, 50]]},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 1, 1]},
            {"id": 4, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1]},
        ],
    }))
    projects.create_project(studio, name="det", task="detection")
    report = run_import(studio, "det", coco / "ann.json", fmt="coco")["result"]["report"]
    assert report["imported"] == 3 and report["failed_count"] == 3
    first = samples.list_samples(studio, project="det", label="car")["items"]
    assert [s["name"] for s in first] == ["images/im0.png"]
    box = next(a for a in samples.get_sample(studio, first[0]["id"])["annotations"] if a["kind"] == "box")
    assert box["geometry"] == pytest.approx({"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.4})

    yolo = tmp_path / "yolo"
    draw_image(yolo / "images" / "a.png", seed=5)
    (yolo / "labels").mkdir(parents=True)
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.9 0.1 0.5 0.9\n7 0.5 0.5 0.1 0.1\n")
    (yolo / "data.yaml").write_text("names: [boat, buoy]\n")
    projects.create_project(studio, name="y", task="detection")
    yrep = run_import(studio, "y", yolo, fmt="yolo")["result"]["report"]
    assert yrep["imported"] == 1 and yrep["failed_count"] == 1 and yrep["classes"] == ["boat", "buoy"]
    kinds = sorted(a["kind"] for a in samples.get_sample(studio, samples.list_samples(studio, project="y")["items"][0]["id"])["annotations"])
    assert kinds == ["box", "polygon"]

    csvdir = tmp_path / "csvset"
    for i in range(3):
        draw_image(csvdir / f"r{i}.png", seed=20 + i)
    (csvdir / "targets.csv").write_text("path,age,weight\nr0.png,1.5,3\nr1.png,2,4\nr2.png,3,5\n/etc/passwd,1,1\n")
    projects.create_project(studio, name="reg", task="regression")
    crep = run_import(studio, "reg", csvdir / "targets.csv", fmt="csv")["result"]["report"]
    assert crep["imported"] == 3 and crep["failed_count"] == 1
    with studio.sessions() as s:
        values = sorted(g["values"] for g in s.scalars(select(Annotation.geometry).where(Annotation.kind == "value")))
    assert values == [[1.5, 3.0], [2.0, 4.0], [3.0, 5.0]]


def test_start_import_validates_its_input(studio: Studio, tmp_path: Path, class_folders: Path) -> None:
    projects.create_project(studio, name="p", task="classification")
    with pytest.raises(NotFound):
        start_import(studio, project="p", source=tmp_path / "missing")
    with pytest.raises(NotFound):
        start_import(studio, project="nope", source=class_folders)
    with pytest.raises(InvalidInput, match="format"):
        start_import(studio, project="p", source=class_folders, fmt="parquet")
    with pytest.raises(InvalidInput, match="mode"):
        start_import(studio, project="p", source=class_folders, mode="move")
    z = tmp_path / "x.zip"
    zipfile.ZipFile(z, "w").close()
    with pytest.raises(InvalidInput, match="copy"):
        start_import(studio, project="p", source=z, mode="reference")


def test_import_of_a_missing_zip_source_fails_permanently(studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="p", task="classification")
    bad = tmp_path / "fake.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    job = run_import(studio, "p", bad, fmt="folder")
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "zip" in job["error"]["message"].lower()


def test_parallel_import_matches_serial(studio: Studio, tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "many", {"x": 20, "y": 20})
    (src / "x" / "broken.png").write_bytes(b"not a png")
    studio.settings.imports.workers = 2
    projects.create_project(studio, name="par", task="classification")
    report = run_import(studio, "par", src)["result"]["report"]
    assert report["imported"] == 40 and [f["path"] for f in report["failed"]] == ["x/broken.png"]
    assert samples.class_counts(studio, project="par") == {"x": 20, "y": 20}
    # the pool gets the known hashes once: a re-import skips everything
    again = run_import(studio, "par", src)["result"]["report"]
    assert (again["imported"], again["skipped"]) == (0, 40)
    assert run_doctor(studio)["ok"]


def test_library_projects_turn_folder_names_into_tags(studio: Studio, class_folders: Path) -> None:
    projects.create_project(studio, name="album", task="library")
    report = run_import(studio, "album", class_folders)["result"]["report"]
    assert report["imported"] == 15 and report["classes"] == []
    assert samples.class_counts(studio, project="album") == {}
    cats = samples.list_samples(studio, project="album", tag="cat")
    assert cats["total"] == 6 and cats["items"][0]["labels"] == []
    assert samples.get_sample(studio, cats["items"][0]["id"])["tags"] == ["cat"]


def test_voc_import_into_a_detection_project(studio: Studio, tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    draw_image(voc / "JPEGImages" / "a.png", seed=31, size=(100, 50))
    draw_image(voc / "JPEGImages" / "b.png", seed=32, size=(40, 40))
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>100</width><height>50</height></size>"
        "<object><name>car</name><difficult>1</difficult>"
        "<bndbox><xmin>11</xmin><ymin>6</ymin><xmax>60</xmax><ymax>25</ymax></bndbox></object>"
        "<object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>100</xmax><ymax>50</ymax>"
        "</bndbox></object>"
        "<object><name>car</name><bndbox><xmin>50</xmin><ymin>1</ymin><xmax>40</xmax><ymax>5</ymax>"
        "</bndbox></object></annotation>"
    )
    (voc / "Annotations" / "b.xml").write_text("<annotation><filename>../../etc/passwd</filename></annotation>")
    projects.create_project(studio, name="vocdet", task="detection")
    report = run_import(studio, "vocdet", voc)["result"]["report"]  # format guessed: voc
    assert report["format"] == "voc"
    assert report["imported"] == 1 and report["failed_count"] == 2
    assert report["classes"] == ["car", "person"]
    (sample,) = samples.list_samples(studio, project="vocdet")["items"]
    assert sample["name"] == "JPEGImages/a.png"
    stored = sorted(
        (a["class"], a["geometry"])
        for a in samples.get_sample(studio, sample["id"])["annotations"]
        if a["kind"] == "box"
    )
    assert [name for name, _ in stored] == ["car", "person"]
    assert stored[0][1] == pytest.approx({"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.4, "difficult": True})
    assert stored[1][1] == pytest.approx({"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0})
