"""Dataset export end to end: a project built by importing generated data, exported to each format,
the export imported into a new project — the same images (sha256) and the same annotations come
back, within the format's precision, except what the export said it dropped. Hostile names, empty
projects, occupied destinations, vanished originals, crashes, zips, links, splits, the CLI's JSON
contract and the API."""

from __future__ import annotations

import itertools
import json
import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, update

from export_factories import (
    CLASSES,
    Ann,
    ann,
    assert_same,
    boxes,
    lone_outlines,
    masks,
    outline_bounds,
    rings,
    rotated,
    to_pixels,
    with_flags,
    write_coco_source,
)
from factories import cli, draw_image, make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.db import Annotation, LabelClass, Sample
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.jobs.worker import Worker
from vistudio.services import dataset_export, projects, splits
from vistudio.services.dataset_export import MANIFEST, sinks
from vistudio.studio import Studio

# no shrinking: each example imports and exports several times, and a failure is readable as drawn
PROPERTY = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
_names = itertools.count()


def fresh(studio: Studio, task: str) -> str:
    name = f"p{next(_names)}"
    projects.create_project(studio, name=name, task=task)
    return name


def imported(studio: Studio, source: Path, fmt: str, task: str, *, mode: str = "copy") -> str:
    name = fresh(studio, task)
    job = run_import(studio, name, source, fmt=fmt, mode=mode)
    assert job["status"] == "succeeded", job
    report = job["result"]["report"]
    assert report["failed_count"] == 0, report["failed"]
    return name


def run_export(studio: Studio, project: str, fmt: str, out: Path | None, **kw: Any) -> dict[str, Any]:
    job = dataset_export.start_dataset_export(studio, project=project, format=fmt, out=out, **kw)
    Worker(studio).run_one(job_id=job["id"])
    final = studio.queue.get(job["id"])
    assert final.status == "succeeded", final.error
    assert final.result is not None
    return dict(final.result["export"])


def ground_truth(studio: Studio, project: str) -> dict[str, tuple[str, tuple[int, int], list[Ann]]]:
    """sha256 → (name, (width, height), ground-truth annotations)."""
    out: dict[str, tuple[str, tuple[int, int], list[Ann]]] = {}
    with studio.sessions() as s:
        p = projects.find_project(s, project)
        for sid, sha, name, w, h in s.execute(
            select(Sample.id, Sample.sha256, Sample.name, Sample.width, Sample.height).where(
                Sample.project_id == p.id
            )
        ):
            out[sha] = (name, (w, h), [])
            rows = s.execute(
                select(Annotation.kind, LabelClass.name, Annotation.geometry)
                .outerjoin(LabelClass, LabelClass.id == Annotation.class_id)
                .where(Annotation.sample_id == sid, Annotation.score.is_(None))
                .order_by(Annotation.id)
            )
            out[sha][2].extend(ann(k, c, g) for k, c, g in rows)
    return out


def strip_layout(name: str) -> str:
    first, _, rest = name.partition("/")
    return rest if rest and first in ("images", "JPEGImages") else name


def assert_round_trip(
    studio: Studio, original: str, back: str, keep: Any = None, *, same_names: bool = True
) -> int:
    """``back`` holds ``original``'s images and, per image, ``keep(annotations, size)`` of its
    annotations (all of them by default). Returns the number of annotations compared."""
    a, b = ground_truth(studio, original), ground_truth(studio, back)
    assert set(b) == set(a)
    compared = 0
    for sha, (name, size, anns) in a.items():
        expected = keep(anns, size) if keep else anns
        assert_same(expected, b[sha][2], size, name)
        if same_names:
            assert strip_layout(b[sha][0]) == strip_layout(name)
        compared += len(expected)
    return compared


# --- round trips of generated projects -----------------------------------------------------------


@st.composite
def coco_images(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Images with COCO objects: a box, a box with its polygon or RLE mask, a polygon alone, an
    image-level label (an annotation without geometry); some crowds."""
    out = []
    for i in range(draw(st.integers(1, 3))):
        w, h = draw(st.integers(16, 48)), draw(st.integers(16, 48))
        objects = []
        for _ in range(draw(st.integers(0, 4))):
            obj: dict[str, Any] = {"class": draw(st.sampled_from(CLASSES))}
            shape = draw(st.sampled_from(["box", "box+polygon", "box+mask", "polygon", "label"]))
            if shape.endswith("polygon"):
                obj["polygon"] = [draw(rings())]
            if shape.endswith("mask"):
                obj["mask"] = draw(masks(h, w))
            if shape == "box":
                obj["box"] = draw(boxes())
            elif shape.startswith("box"):  # the outline's own box, as COCO files have it
                x0, y0, x1, y1 = outline_bounds(
                    ann("polygon", None, {"polygons": obj["polygon"]})
                    if "polygon" in obj
                    else ann("mask_rle", None, obj["mask"])
                )
                obj["box"] = {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}
            if shape != "label" and draw(st.integers(0, 4)) == 0:
                obj["iscrowd"] = True
            objects.append(obj)
        out.append(
            {
                "name": f"d{i % 2}/img{i}.png",
                "size": (w, h),
                # distinct seeds: two identical files in one source are one image (the import
                # keeps the first and counts the other as a duplicate, with its annotations)
                "seed": draw(st.integers(0, 10**6)) * 64 + i,
                "objects": objects,
            }
        )
    return out


def no_ignored(a: Ann) -> bool:
    return not any((a["geometry"] or {}).get(f) for f in ("iscrowd", "difficult"))


@PROPERTY
@given(images=coco_images())
def test_a_coco_project_comes_back_from_coco_voc_and_yolo(
    studio: Studio, tmp_path: Path, images: list[dict[str, Any]]
) -> None:
    root = tmp_path / f"case{next(_names)}"
    original = imported(studio, write_coco_source(root / "src", images), "coco", "instance_segmentation")
    total = sum(len(anns) for _, _, anns in ground_truth(studio, original).values())

    result = run_export(studio, original, "coco", root / "coco")
    back = imported(studio, root / "coco", "coco", "instance_segmentation")
    lone = sum(len(lone_outlines(anns)) for _, _, anns in ground_truth(studio, original).values())

    def with_boxes_of_lone_polygons(anns: list[Ann], size: tuple[int, int]) -> list[Ann]:
        out = list(anns)
        for a in lone_outlines(anns):  # COCO needs a bbox: the one around the outline is added
            x0, y0, x1, y1 = outline_bounds(a)
            crowd = {"iscrowd": True} if a["geometry"].get("iscrowd") else {}
            out.append(ann("box", a["class"], {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, **crowd}))
        return out

    assert assert_round_trip(studio, original, back, with_boxes_of_lone_polygons) == total + lone
    assert result["dropped"] == {} and result["annotations"] == total
    assert result["converted"] == (
        {"box added around a polygon or mask (COCO needs a bbox)": lone} if lone else {}
    )

    result = run_export(studio, original, "voc", root / "voc")
    back = imported(studio, root / "voc", "voc", "detection")
    compared = assert_round_trip(
        studio,
        original,
        back,
        # VOC's inclusive pixels hold boxes more than one pixel wide and high
        lambda anns, size: [
            with_flags(a, keep=(), ignore_as="difficult")
            for a in anns
            if a["kind"] == "box"
            and a["geometry"]["w"] * size[0] > 1.001
            and a["geometry"]["h"] * size[1] > 1.001
        ],
    )
    assert result["annotations"] == compared
    assert sum(result["dropped"].values()) == total - compared

    result = run_export(studio, original, "yolo", root / "yolo")
    back = imported(studio, root / "yolo", "yolo", "instance_segmentation")
    compared = assert_round_trip(
        studio, original, back, lambda anns, _: [a for a in anns if a["kind"] == "polygon" and no_ignored(a)]
    )
    assert result["annotations"] == compared
    assert sum(result["dropped"].values()) == total - compared


@st.composite
def dota_images(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        w, h = draw(st.integers(16, 64)), draw(st.integers(16, 64))
        objects = [
            (draw(st.sampled_from(["plane", "ship", "small-vehicle"])), draw(rotated()), draw(st.booleans()))
            for _ in range(draw(st.integers(0, 4)))
        ]
        out.append(
            {
                "name": f"P{i:04d}.png",
                "size": (w, h),
                "seed": draw(st.integers(0, 10**6)) * 64 + i,
                "objects": objects,
            }
        )
    return out


@PROPERTY
@given(images=dota_images())
def test_a_dota_project_comes_back_from_dota_and_yolo_obb(
    studio: Studio, tmp_path: Path, images: list[dict[str, Any]]
) -> None:
    root = tmp_path / f"case{next(_names)}"
    for im in images:
        w, h = im["size"]
        draw_image(root / "src" / "images" / im["name"], seed=im["seed"], size=(w, h))
        lines = [
            " ".join(repr(v) for v in to_pixels(points, w, h)) + f" {cls} {int(difficult)}"
            for cls, points, difficult in im["objects"]
        ]
        label = root / "src" / "labelTxt" / Path(im["name"]).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("imagesource:GoogleEarth\ngsd:0.5\n" + "".join(line + "\n" for line in lines))
    original = imported(studio, root / "src", "dota", "oriented_detection")
    total = sum(len(im["objects"]) for im in images)

    result = run_export(studio, original, "dota", root / "dota")
    assert (result["annotations"], result["dropped"]) == (total, {})
    back = imported(studio, root / "dota", "dota", "oriented_detection")
    assert assert_round_trip(studio, original, back) == total

    result = run_export(studio, original, "yolo", root / "yolo")
    if not total:  # no object, no class: a data.yaml without names, which YOLO readers refuse
        assert "names: {}" in (root / "yolo" / "data.yaml").read_text()
        return
    back = imported(studio, root / "yolo", "yolo", "oriented_detection")
    compared = assert_round_trip(studio, original, back, lambda anns, _: [a for a in anns if no_ignored(a)])
    assert result["annotations"] == compared
    assert result["dropped"] == ({"crowd or difficult objects": total - compared} if total > compared else {})


@PROPERTY
@given(
    rows=st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=2, max_size=2),
        min_size=1,
        max_size=4,
    )
)
def test_a_regression_project_comes_back_from_csv(
    studio: Studio, tmp_path: Path, rows: list[list[float]]
) -> None:
    root = tmp_path / f"case{next(_names)}" / "src"
    lines = ["image,width_cm,mass"]
    for i, values in enumerate(rows):
        draw_image(root / f"{i}.png", seed=1000 + i)
        lines.append(f"{i}.png," + ",".join(repr(v) for v in values))
    (root / "values.csv").write_text("\n".join(lines) + "\n")
    original = imported(studio, root, "csv", "regression")
    result = run_export(studio, original, "csv", root.parent / "csv")
    assert (result["samples"], result["annotations"], result["dropped"]) == (len(rows), len(rows), {})
    back = imported(studio, root.parent / "csv", "csv", "regression")
    assert assert_round_trip(studio, original, back, same_names=False) == len(rows)
    header = (root.parent / "csv" / "labels.csv").read_text().splitlines()[0]
    assert header == "file,target_1,target_2"  # vistudio does not keep the targets' names


def test_a_classification_project_comes_back_from_class_folders_and_csv(
    studio: Studio, tmp_path: Path
) -> None:
    src = make_class_folders(tmp_path / "pets", {"cat": 3, "dog": 2, "big fox": 2})
    original = imported(studio, src, "folder", "classification")
    for fmt, reader in (("folders", "folder"), ("csv", "csv"), ("coco", "coco")):
        result = run_export(studio, original, fmt, tmp_path / fmt)
        assert (result["samples"], result["annotations"], result["dropped"]) == (7, 7, {})
        back = imported(studio, tmp_path / fmt, reader, "classification")
        assert_round_trip(studio, original, back, same_names=fmt == "folders")
    assert sorted(p.name for p in (tmp_path / "folders").iterdir()) == [
        ".vistudio-export.json",
        "big fox",
        "cat",
        "dog",
    ]


def test_voc_flags_survive_voc_and_become_iscrowd_in_coco(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "voc"
    draw_image(src / "JPEGImages" / "a.jpg", seed=1, size=(60, 40))
    objects = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><truncated>{t}</truncated>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, d, t, b in (("car", 1, 0, (1, 1, 30, 20)), ("person", 0, 1, (10, 5, 60, 40)))
    )
    (src / "Annotations").mkdir()
    (src / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.jpg</filename><size><width>60</width><height>40</height></size>{objects}</annotation>"
    )
    original = imported(studio, src, "voc", "detection")
    run_export(studio, original, "voc", tmp_path / "again")
    assert_round_trip(studio, original, imported(studio, tmp_path / "again", "voc", "detection"))
    result = run_export(studio, original, "coco", tmp_path / "coco")
    assert result["converted"] == {"difficult written as iscrowd": 1}
    assert result["dropped"] == {"truncated flag": 1}
    back = imported(studio, tmp_path / "coco", "coco", "detection")
    assert_round_trip(
        studio,
        original,
        back,
        lambda anns, _: [with_flags(a, keep=("iscrowd",), ignore_as="iscrowd") for a in anns],
    )


# --- names, empty projects, destinations ---------------------------------------------------------

HOSTILE = [
    "../../../escape.png",
    "/etc/absolute.png",
    "C:\\Windows\\drive.png",
    "ünïcödé/ファイル.png",
    "x" * 240 + ".png",
    "ctrl\x01\x1b[31m\u202eevil.png",
    "a:b.png",
    "a_b.png",
    "A_B.PNG",
    ".hidden.png",
    "no-extension",
]


@pytest.fixture
def hostile(studio: Studio, tmp_path: Path) -> str:
    images = [
        {
            "name": f"i{i}.png",
            "size": (32, 24),
            "seed": i,
            "objects": [{"class": "cat", "box": {"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5}}],
        }
        for i in range(len(HOSTILE))
    ]
    project = imported(studio, write_coco_source(tmp_path / "src", images), "coco", "detection")
    with studio.sessions.begin() as s:
        ids = s.scalars(select(Sample.id).order_by(Sample.name)).all()
        for sid, name in zip(ids, HOSTILE, strict=True):
            s.execute(update(Sample).where(Sample.id == sid).values(name=name))
    return project


@pytest.mark.parametrize(("fmt", "reader"), [("coco", "coco"), ("yolo", "yolo"), ("voc", "voc")])
def test_hostile_names_stay_inside_the_export_readable_and_distinct(
    studio: Studio, tmp_path: Path, hostile: str, fmt: str, reader: str
) -> None:
    out = tmp_path / f"out-{fmt}"
    result = run_export(studio, hostile, fmt, out)
    assert result["samples"] == len(HOSTILE) and result["failed_count"] == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(out.resolve()) and not p.is_symlink() for p in files)
    images = sorted(p.relative_to(out).as_posix() for p in files if p.suffix.lower() in (".png", ".jpg"))
    assert len(images) == len(HOSTILE) and len({i.casefold() for i in images}) == len(HOSTILE)
    assert not any(part.startswith(".") for i in images for part in i.split("/"))
    assert not any(ord(c) < 32 or c == "\u202e" for i in images for c in i)
    folder = "JPEGImages" if fmt == "voc" else "images"
    assert {
        f"{folder}/escape.png",
        f"{folder}/etc/absolute.png",
        f"{folder}/C_/Windows/drive.png",
        f"{folder}/ünïcödé/ファイル.png",
        f"{folder}/A_B.PNG",  # the samples claim their names in name order: A_B.PNG, a:b.png, a_b.png
        f"{folder}/a_b-2.png",
        f"{folder}/a_b-3.png",
        f"{folder}/_hidden.png",
        f"{folder}/no-extension.png",
    } <= set(images)
    back = imported(studio, out, reader, "detection")
    assert_round_trip(studio, hostile, back, same_names=False)


def test_an_empty_project_exports_a_valid_empty_dataset(studio: Studio, tmp_path: Path) -> None:
    project = fresh(studio, "detection")
    for fmt in ("coco", "yolo", "voc"):
        result = run_export(studio, project, fmt, tmp_path / fmt)
        assert (result["samples"], result["annotations"], result["dropped"]) == (0, 0, {})
    assert json.loads((tmp_path / "coco" / "annotations.json").read_text())["images"] == []
    assert "train: images" in (tmp_path / "yolo" / "data.yaml").read_text()
    back = fresh(studio, "detection")
    assert run_import(studio, back, tmp_path / "coco", fmt="coco")["status"] == "succeeded"
    assert ground_truth(studio, back) == {}
    assert run_export(studio, project, "coco", tmp_path / "empty.zip", zip=True)["samples"] == 0


@pytest.fixture
def shapes(studio: Studio, tmp_path: Path) -> str:
    images = [
        {
            "name": f"img{i}.png",
            "size": (40, 30),
            "seed": 50 + i,
            "objects": [
                {
                    "class": CLASSES[i % 2],
                    "box": {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4},
                    "polygon": [[[0.1, 0.2], [0.4, 0.2], [0.25, 0.6]]],
                }
            ],
        }
        for i in range(6)
    ]
    return imported(
        studio, write_coco_source(tmp_path / "shapes-src", images), "coco", "instance_segmentation"
    )


def test_an_occupied_destination_is_refused_and_left_untouched(
    studio: Studio, tmp_path: Path, shapes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("my file")
    before = (out / "keep.txt").stat().st_mtime_ns
    with pytest.raises(Conflict, match="not empty"):
        dataset_export.start_dataset_export(studio, project=shapes, format="coco", out=out)
    code, body = cli(capsys, studio.home, "dataset", "export", shapes, "--format", "coco", "--out", str(out))
    assert code == 1 and body["error"]["code"] == "conflict"
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (tmp_path / "taken.zip").write_bytes(b"not mine")
    with pytest.raises(Conflict, match="already exists"):
        dataset_export.start_dataset_export(
            studio, project=shapes, format="coco", out=tmp_path / "taken.zip", zip=True
        )
    with pytest.raises(InvalidInput, match="inside the workspace"):
        dataset_export.start_dataset_export(
            studio, project=shapes, format="coco", out=studio.home / "media" / "x"
        )
    with pytest.raises(InvalidInput, match="add --zip"):
        dataset_export.start_dataset_export(studio, project=shapes, format="coco", out=tmp_path / "x.zip")
    # an empty folder is fine: the export takes its place
    (tmp_path / "empty").mkdir()
    assert run_export(studio, shapes, "coco", tmp_path / "empty")["samples"] == 6


def test_a_vanished_or_changed_original_is_reported_and_the_rest_exported(
    studio: Studio, tmp_path: Path
) -> None:
    src = make_class_folders(tmp_path / "refs", {"cat": 3, "dog": 3})
    project = imported(studio, src, "folder", "classification", mode="reference")
    (src / "cat" / "cat-001.png").unlink()
    draw_image(src / "dog" / "dog-000.png", seed=999)  # edited since its import
    result = run_export(studio, project, "csv", tmp_path / "out")
    assert result["samples"] == 4 and result["failed_count"] == 2
    reasons = {f["name"]: f["reason"] for f in result["failed"]}
    assert reasons["cat/cat-001.png"].startswith("file not found")
    assert "changed since it was imported" in reasons["dog/dog-000.png"]
    rows = (tmp_path / "out" / "labels.csv").read_text().splitlines()
    assert len(rows) == 5 and not any("cat-001" in r or "dog-000" in r for r in rows)
    assert not (tmp_path / "out" / "images" / "cat" / "cat-001.png").exists()
    back = imported(studio, tmp_path / "out", "csv", "classification")
    assert len(ground_truth(studio, back)) == 4


class Boom(Exception):
    pass


def test_an_export_that_dies_midway_leaves_nothing_that_looks_complete(
    studio: Studio, tmp_path: Path, shapes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_add = sinks.FolderSink.add_image
    calls = {"n": 0}

    def failing(self: sinks.FolderSink, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom("disk on fire")
        real_add(self, *args, **kwargs)

    monkeypatch.setattr(sinks.FolderSink, "add_image", failing)
    out = tmp_path / "out"
    job = dataset_export.start_dataset_export(studio, project=shapes, format="coco", out=out)
    Worker(studio).run_one(job_id=job["id"])
    assert studio.queue.get(job["id"]).status in ("queued", "failed")  # retried later, or not
    assert not out.exists() and list(tmp_path.glob(".out*")) == []  # the partial folder was removed

    # a process killed outright never cleans up: its partial stays hidden, never under the real name
    calls["n"] = 0
    monkeypatch.setattr(sinks.FolderSink, "abandon", lambda self: None)
    out2 = tmp_path / "out2"
    job2 = dataset_export.start_dataset_export(studio, project=shapes, format="yolo", out=out2)
    Worker(studio).run_one(job_id=job2["id"])
    assert not out2.exists()
    (left,) = tmp_path.glob(".out2*")
    assert left.name == f".out2.partial-{job2['id']}-1"
    assert not (left / "data.yaml").exists()  # labels are written after every image

    # the retry starts from nothing, removes the dead attempt's partial and publishes
    monkeypatch.setattr(sinks.FolderSink, "add_image", real_add)
    with studio.sessions.begin() as s:
        from vistudio.db import Job

        s.execute(update(Job).where(Job.id == job2["id"]).values(run_after=Job.created_at))
    Worker(studio).run_one(job_id=job2["id"])
    final = studio.queue.get(job2["id"])
    assert final.status == "succeeded", final.error
    assert list(tmp_path.glob(".out2*")) == [] and (out2 / "data.yaml").is_file()
    assert json.loads((out2 / MANIFEST).read_text())["job_id"] == job2["id"]


def test_a_zip_export_imports_back_and_a_link_export_shares_the_stored_files(
    studio: Studio, tmp_path: Path, shapes: str
) -> None:
    result = run_export(studio, shapes, "coco", tmp_path / "shapes.zip", zip=True)
    assert result["zip"] and result["samples"] == 6
    with zipfile.ZipFile(tmp_path / "shapes.zip") as z:
        names = z.namelist()
        assert z.testzip() is None
    assert all(n.startswith("shapes/") for n in names) and "shapes/annotations.json" in names
    assert list(tmp_path.glob(".shapes.zip*")) == []
    assert_round_trip(
        studio, shapes, imported(studio, tmp_path / "shapes.zip", "coco", "instance_segmentation")
    )

    result = run_export(studio, shapes, "yolo", tmp_path / "linked", link=True)
    assert (result["linked"], result["copied"]) == (6, 0)
    with studio.sessions() as s:
        stored = {
            studio.home / p
            for p in s.scalars(
                select(Sample.path).where(Sample.project_id == projects.find_project(s, shapes).id)
            )
        }
    inodes = {p.stat().st_ino for p in stored}
    exported = {p.stat().st_ino for p in (tmp_path / "linked" / "images").iterdir()}
    assert exported == inodes


def test_exports_by_split_and_filtered_selections(studio: Studio, tmp_path: Path, shapes: str) -> None:
    splits.create_split(studio, project=shapes, name="s1", ratios=(0.5, 0.25, 0.25), seed=3)
    late = write_coco_source(
        tmp_path / "late", [{"name": "late.png", "size": (40, 30), "seed": 77, "objects": []}]
    )
    assert run_import(studio, shapes, late, fmt="coco")["status"] == "succeeded"  # not in s1

    result = run_export(studio, shapes, "yolo", tmp_path / "yolo", by_split="s1")
    assert result["samples"] == 6 and result["dropped"]["samples outside the split"] == 1
    config = (tmp_path / "yolo" / "data.yaml").read_text()
    subsets = {p.name for p in (tmp_path / "yolo" / "images").iterdir()}
    assert subsets <= {"train", "val", "test"} and "train" in subsets
    for subset in subsets:
        assert f"{subset}: images/{subset}" in config
        assert (tmp_path / "yolo" / "labels" / subset).is_dir()
    back = imported(studio, tmp_path / "yolo", "yolo", "instance_segmentation")
    assert len(ground_truth(studio, back)) == 6

    result = run_export(studio, shapes, "coco", tmp_path / "coco", by_split="s1")
    counts = {}
    for subset in subsets:
        counts[subset] = len(
            json.loads((tmp_path / "coco" / subset / "annotations.json").read_text())["images"]
        )
        imported(studio, tmp_path / "coco" / subset, "coco", "instance_segmentation")
    assert sum(counts.values()) == 6

    result = run_export(studio, shapes, "coco", tmp_path / "cats", filters={"label": CLASSES[0]})
    assert result["samples"] == 3
    result = run_export(
        studio, shapes, "coco", tmp_path / "train", filters={"split": "s1", "subset": "train"}
    )
    assert result["samples"] == counts["train"]
    with pytest.raises(NotFound, match="class"):
        dataset_export.start_dataset_export(
            studio, project=shapes, format="coco", out=tmp_path / "x", filters={"label": "nope"}
        )
    with pytest.raises(InvalidInput, match="unknown filter"):
        dataset_export.start_dataset_export(
            studio, project=shapes, format="coco", out=tmp_path / "x", filters={"bogus": 1}
        )
    with pytest.raises(NotFound, match="split"):
        dataset_export.start_dataset_export(
            studio, project=shapes, format="coco", out=tmp_path / "x", by_split="nope"
        )


def test_predictions_are_never_exported(studio: Studio, tmp_path: Path, shapes: str) -> None:
    with studio.sessions.begin() as s:
        sid = s.scalar(select(Sample.id).order_by(Sample.id))
        cid = s.scalar(select(LabelClass.id).where(LabelClass.name == CLASSES[0]))
        s.execute(
            insert(Annotation).values(
                sample_id=sid,
                kind="box",
                class_id=cid,
                geometry={"x": 0, "y": 0, "w": 0.5, "h": 0.5},
                score=0.9,
            )
        )
    preview = dataset_export.preview_export(studio, project=shapes, format="coco")
    result = run_export(studio, shapes, "coco", tmp_path / "out")
    assert preview["annotations"] == result["annotations"] == 12
    doc = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert len(doc["annotations"]) == 6  # one box with its polygon per image


def test_a_format_that_cannot_express_the_task_is_refused(
    studio: Studio, tmp_path: Path, shapes: str
) -> None:
    with pytest.raises(InvalidInput, match="folders cannot express instance segmentation") as exc:
        dataset_export.preview_export(studio, project=shapes, format="folders")
    assert exc.value.details["formats"] == ["coco", "voc", "yolo"]
    classes = fresh(studio, "classification")
    with pytest.raises(InvalidInput, match="dota cannot express classification"):
        dataset_export.start_dataset_export(studio, project=classes, format="dota", out=tmp_path / "x")
    with pytest.raises(InvalidInput, match="unknown format"):
        dataset_export.preview_export(studio, project=shapes, format="tfrecord")


# --- the CLI and the API -----------------------------------------------------------------------------


def test_cli_prints_one_json_document(
    studio: Studio, tmp_path: Path, shapes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = studio.home
    code, body = cli(capsys, ws, "dataset", "export", shapes, "--format", "voc", "--dry-run")
    assert code == 0 and body["export"]["dry_run"] is True
    assert body["export"]["dropped"] == {"polygon": 6} and body["export"]["annotations"] == 6
    assert not (tmp_path / "voc").exists()
    code, body = cli(
        capsys, ws, "dataset", "export", shapes, "--format", "voc", "--out", str(tmp_path / "voc")
    )
    assert code == 0, body
    export = body["export"]
    assert {"path", "format", "samples", "annotations", "dropped"} <= set(export)
    assert (export["path"], export["format"], export["samples"], export["dropped"]) == (
        str(tmp_path / "voc"),
        "voc",
        6,
        {"polygon": 6},
    )
    code, body = cli(
        capsys,
        ws,
        "dataset",
        "export",
        shapes,
        "-f",
        "coco",
        "-o",
        str(tmp_path / "q.zip"),
        "--zip",
        "--no-wait",
    )
    assert code == 0 and body["job"]["status"] == "queued"
    code, body = cli(capsys, ws, "dataset", "exports", shapes)
    assert code == 0 and body["total"] == 2 and body["items"][0]["status"] == "queued"
    code, body = cli(
        capsys, ws, "dataset", "export", shapes, "--format", "folders", "--out", str(tmp_path / "f")
    )
    assert (
        code == 1
        and body["error"]["code"] == "invalid_input"
        and "cannot express" in body["error"]["message"]
    )
    code, body = cli(capsys, ws, "dataset", "export", shapes, "--out", str(tmp_path / "f"))
    assert code == 2 and body["error"]["code"] == "usage"
    code, body = cli(
        capsys, ws, "dataset", "export", "nope", "--format", "coco", "--out", str(tmp_path / "f")
    )
    assert code == 1 and body["error"]["code"] == "not_found"


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def test_api_exports_zip_under_the_workspace_and_serves_them(
    studio: Studio, tmp_path: Path, shapes: str, client: TestClient
) -> None:
    r = client.post(f"/api/v1/datasets/{shapes}/export", json={"format": "yolo", "dry_run": True})
    assert r.status_code == 200 and r.json()["dropped"] == {
        "boxes of polygon objects (a segment dataset derives them)": 6
    }
    r = client.post(
        f"/api/v1/datasets/{shapes}/export", json={"format": "coco", "filters": {"label": CLASSES[1]}}
    )
    assert r.status_code == 202
    job_id = r.json()["job"]["id"]
    assert client.get(f"/api/v1/datasets/{shapes}/exports/{job_id}/download").status_code == 409
    Worker(studio).run_one(job_id=job_id)
    listing = client.get(f"/api/v1/datasets/{shapes}/exports").json()
    (item,) = listing["items"]
    assert item["path"] == f"exports/datasets/{shapes}/coco-{job_id}.zip" and item["samples"] == 3
    r = client.get(item["download_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f"{shapes}-coco-{job_id}.zip" in r.headers["content-disposition"]
    (tmp_path / "dl.zip").write_bytes(r.content)
    back = imported(studio, tmp_path / "dl.zip", "coco", "instance_segmentation")
    assert len(ground_truth(studio, back)) == 3

    cli_export = run_export(studio, shapes, "coco", tmp_path / "cli")
    assert client.get(f"/api/v1/datasets/{shapes}/exports/{cli_export['job_id']}/download").status_code == 404
    other = fresh(studio, "detection")
    assert client.get(f"/api/v1/datasets/{other}/exports/{job_id}/download").status_code == 404
    for body, status in (
        ({"format": "tfrecord"}, 422),
        ({"format": "folders"}, 422),
        ({"format": "coco", "zip": False}, 422),
        ({"format": "coco", "filters": {"bogus": 1}}, 422),
        ({"format": "coco", "filters": {"label": "nope"}}, 404),
        ({"format": "coco", "out": "/tmp/anywhere"}, 422),  # never a client-given server path
    ):
        r = client.post(f"/api/v1/datasets/{shapes}/export", json=body)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()["error"]) == {"code", "message", "details"}
    assert client.post("/api/v1/datasets/nope/export", json={"format": "coco"}).status_code == 404


def test_dry_run_counts_match_the_real_export(studio: Studio, tmp_path: Path, shapes: str) -> None:
    for fmt in ("coco", "yolo", "voc"):
        preview = dataset_export.preview_export(studio, project=shapes, format=fmt)
        result = run_export(studio, shapes, fmt, tmp_path / fmt)
        assert {k: preview[k] for k in ("samples", "annotations", "dropped", "converted")} == {
            k: result[k] for k in ("samples", "annotations", "dropped", "converted")
        }
    assert math.isfinite(os.path.getsize(tmp_path / "coco" / "annotations.json"))


@pytest.mark.slow
def test_the_benchmark_runs_at_a_toy_size() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "benchmarks/dataset_export.py", "--images", "12", "--boxes", "3", "--rounds", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    for fmt in ("coco", "yolo"):
        assert report["formats"][fmt]["annotations"] == 36 and report["formats"][fmt]["ratio"] > 0


def test_a_version_exports_its_members_with_the_labels_and_objects_it_had(
    studio: Studio, tmp_path: Path, shapes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Edits after a version (objects replaced, labels changed) do not reach the version's export;
    the current export has them. Filters and a version together are refused."""
    from vistudio.services import annotations, edits, samples, versions

    before = ground_truth(studio, shapes)
    versions.create_version(studio, project=shapes, name="v-shapes")
    first = samples.list_samples(studio, project=shapes, limit=1)["items"][0]["id"]
    annotations.set_objects(
        studio,
        first,
        [{"kind": "box", "class": CLASSES[1], "geometry": {"x": 0.5, "y": 0.5, "w": 0.2, "h": 0.2}}],
        expected_revision=None,
    )
    old = run_export(studio, shapes, "coco", tmp_path / "old", version="v-shapes")
    assert old["version"] == "v-shapes" and old["missing"] == 0 and old["samples"] == 6
    now = run_export(studio, shapes, "coco", tmp_path / "now")
    assert now["version"] is None and now["annotations"] != old["annotations"]
    back = ground_truth(studio, imported(studio, tmp_path / "old", "coco", "instance_segmentation"))
    for sha, (name, size, anns) in before.items():  # the version's objects, not the edit
        assert_same(anns, back[sha][2], size, name)

    projects.create_project(studio, name="pets", task="classification")
    assert (
        run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 3, "dog": 3}))["status"]
        == "succeeded"
    )
    versions.create_version(studio, project="pets", name="start")
    edits.edit_labels(studio, project="pets", selection={"all": True}, set_to=["dog"])
    code, body = cli(
        capsys,
        studio.home,
        "dataset",
        "export",
        "pets",
        "-f",
        "folders",
        "-o",
        str(tmp_path / "f"),
        "--version",
        "start",
    )
    assert code == 0 and body["export"]["samples"] == 6, body
    assert sorted(p.parent.name for p in (tmp_path / "f").rglob("*.png")) == ["cat"] * 3 + ["dog"] * 3
    run_export(studio, "pets", "folders", tmp_path / "g")
    assert sorted(p.parent.name for p in (tmp_path / "g").rglob("*.png")) == ["dog"] * 6
    code, body = cli(
        capsys,
        studio.home,
        "dataset",
        "export",
        "pets",
        "-f",
        "folders",
        "--dry-run",
        "--version",
        "start",
        "--label",
        "cat",
    )
    assert code != 0 and "either --version" in body["error"]["message"]
    code, body = cli(
        capsys, studio.home, "dataset", "export", "pets", "-f", "folders", "--dry-run", "--version", "v9"
    )
    assert code != 0 and "not found" in body["error"]["message"]
    with TestClient(create_app(studio)) as client:
        r = client.post(
            "/api/v1/datasets/pets/export", json={"format": "csv", "version": "1", "dry_run": True}
        )
        assert r.status_code == 200 and r.json()["version"] == "start", r.text
