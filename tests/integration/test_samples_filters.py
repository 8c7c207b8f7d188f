"""Object filters of the sample listing (service, API, Dataset page): number of objects, class and
COCO object size, checked against the generated COCO files read independently (boxes from the JSON,
polygon areas by the shoelace formula in numpy, RLE areas by pycocotools)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pycocotools import mask as mask_utils

from detection_factories import write_coco
from factories import cli, make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.errors import InvalidInput, NotFound
from vistudio.services import projects, samples
from vistudio.services.samples import object_area, rle_counts
from vistudio.studio import Studio

SIZES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, float("inf"))}


def _size_word(area: float) -> str:
    return next(w for w, (lo, hi) in SIZES.items() if lo <= area < hi)


def _import(studio: Studio, project: str, root: Path) -> list[dict[str, Any]]:
    """Import a COCO folder; return its images, each with its objects ``(class, area)``."""
    job = run_import(studio, project, root, fmt="coco")
    assert job["status"] == "succeeded", job
    data = json.loads((root / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    images = {im["id"]: {**im, "objects": []} for im in data["images"]}
    for a in data["annotations"]:
        im = images[a["image_id"]]
        seg = a.get("segmentation")
        if isinstance(seg, dict):  # RLE: pycocotools is the reference
            rle = seg if isinstance(seg["counts"], str) else mask_utils.frPyObjects(seg, *seg["size"])
            area = float(mask_utils.area(rle))
        elif seg:  # polygon: shoelace in numpy
            ring = np.asarray(seg[0], dtype=np.float64).reshape(-1, 2)
            x, y = ring[:, 0], ring[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
        else:  # box
            area = a["bbox"][2] * a["bbox"][3]
        im["objects"].append((names[a["category_id"]], area))
    return list(images.values())


def _expected(images: list[dict[str, Any]], keep: Any) -> set[tuple[int, str]]:
    return {(im["width"], im["file_name"]) for im in images if keep(im["objects"])}


def _listed(studio: Studio, project: str, **filters: Any) -> set[tuple[int, str]]:
    page = samples.list_samples(studio, project=project, limit=500, **filters)
    assert page["total"] == len(page["items"])
    return {(it["width"], it["name"].rsplit("/", 1)[-1]) for it in page["items"]}


@pytest.fixture
def boxes(studio: Studio, tmp_path: Path) -> list[dict[str, Any]]:
    """A detection project of small (64 px) and big (256 px) images: small, medium and large boxes."""
    projects.create_project(studio, name="det", task="detection")
    small = _import(studio, "det", write_coco(tmp_path / "a", 14, size=64, seed=1, masks=False))
    big = _import(studio, "det", write_coco(tmp_path / "b", 14, size=256, seed=2, masks=False, crowd=True))
    return small + big


def test_counts_classes_and_sizes_of_boxes(studio: Studio, boxes: list[dict[str, Any]]) -> None:
    words = {_size_word(a) for im in boxes for _, a in im["objects"]}
    assert words == {"small", "medium", "large"}  # the data covers every size
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"min_objects": 2}, lambda o: len(o) >= 2),
        ({"max_objects": 1}, lambda o: len(o) <= 1),
        ({"min_objects": 2, "max_objects": 2}, lambda o: len(o) == 2),
        ({"max_objects": 0}, lambda o: not o),
        ({"min_objects": 0}, lambda o: True),
        ({"label": "ellipse"}, lambda o: any(c == "ellipse" for c, _ in o)),
        ({"label": "ellipse", "max_objects": 0}, lambda o: all(c != "ellipse" for c, _ in o)),
        ({"label": "triangle", "min_objects": 2}, lambda o: sum(c == "triangle" for c, _ in o) >= 2),
    ]
    for word in SIZES:
        cases.append(({"object_size": word}, lambda o, w=word: any(_size_word(a) == w for _, a in o)))
        cases.append(
            (
                {"object_size": word, "min_objects": 2},
                lambda o, w=word: sum(_size_word(a) == w for _, a in o) >= 2,
            )
        )
        cases.append(
            (
                {"object_size": word, "max_objects": 1},
                lambda o, w=word: sum(_size_word(a) == w for _, a in o) <= 1,
            )
        )
    cases.append(
        (
            {"object_size": "medium", "label": "rectangle"},
            lambda o: any(c == "rectangle" and _size_word(a) == "medium" for c, a in o),
        )
    )
    for filters, keep in cases:
        want = _expected(boxes, keep)
        assert _listed(studio, "det", **filters) == want, filters
    # the crowd region (a 128 × 128 box) is an object too: the only large rectangle of the first image
    assert 0 < len(_expected(boxes, lambda o: len(o) >= 2)) < len(boxes)


def test_mask_objects_polygons_and_rle(studio: Studio, tmp_path: Path) -> None:
    """Instance segmentation: the objects are the masks (their boxes do not count twice); polygon
    areas and RLE areas (compressed strings and count lists) decide the size."""
    root = write_coco(tmp_path / "m", 16, size=120, seed=3, masks=True)
    data = json.loads((root / "annotations.json").read_text())
    for i, a in enumerate(data["annotations"]):
        if i % 3 == 0:  # some masks as RLE, alternately compressed and as counts
            h = w = 120
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))
            if i % 2:
                a["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
            else:
                binary = mask_utils.decode(rle).flatten(order="F")
                changes = np.flatnonzero(np.diff(np.concatenate([[0], binary, [2]])))
                a["segmentation"] = {
                    "size": [h, w],
                    "counts": np.diff(np.concatenate([[0], changes])).tolist(),
                }
    (root / "annotations.json").write_text(json.dumps(data))
    projects.create_project(studio, name="seg", task="instance_segmentation")
    images = _import(studio, "seg", root)
    kinds = {
        a["kind"]
        for it in samples.list_samples(studio, project="seg", with_annotations=True, limit=500)["items"]
        for a in it["annotations"]
    }
    assert kinds == {"box", "polygon", "mask_rle"}
    words = {_size_word(a) for im in images for _, a in im["objects"]}
    assert len(words) >= 2
    for filters, keep in [
        ({"min_objects": 3}, lambda o: len(o) >= 3),
        ({"max_objects": 1}, lambda o: len(o) <= 1),
        ({"object_size": "small"}, lambda o: any(_size_word(a) == "small" for _, a in o)),
        (
            {"object_size": "medium", "min_objects": 2},
            lambda o: sum(_size_word(a) == "medium" for _, a in o) >= 2,
        ),
        ({"object_size": "medium", "max_objects": 0}, lambda o: all(_size_word(a) != "medium" for _, a in o)),
        (
            {"label": "ellipse", "object_size": "medium"},
            lambda o: any(c == "ellipse" and _size_word(a) == "medium" for c, a in o),
        ),
    ]:
        assert _listed(studio, "seg", **filters) == _expected(images, keep), filters


def test_areas_equal_the_references() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        binary = np.asfortranarray((rng.random((37, 53)) > 0.6).astype(np.uint8))
        rle = mask_utils.encode(binary)
        assert rle_counts(rle["counts"].decode()) == _plain_counts(binary)
        assert object_area("mask_rle", {"size": [37, 53], "counts": rle["counts"].decode()}, 53, 37) == float(
            binary.sum()
        )
    assert object_area("box", {"x": 0.1, "y": 0.2, "w": 0.5, "h": 0.25}, 200, 100) == pytest.approx(
        0.5 * 200 * 0.25 * 100
    )
    square = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]
    assert object_area("polygon", {"polygons": [square]}, 100, 100) == pytest.approx(2500.0)
    assert object_area("rotated_box", {"points": square}, 10, 10) == pytest.approx(25.0)
    # what cannot be measured is None, never an error
    for kind, geometry in [
        ("box", {"x": 0}),
        ("polygon", {"polygons": "x"}),
        ("mask_rle", {"size": [2, 2], "counts": "\x7f"}),
        ("mask_rle", {"size": [2, 2], "counts": "1"}),
        ("label", None),
    ]:
        assert object_area(kind, geometry, 10, 10) is None, (kind, geometry)


def _plain_counts(binary: np.ndarray) -> list[int]:
    flat = binary.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


def test_bad_object_filters(studio: Studio, boxes: list[dict[str, Any]], tmp_path: Path) -> None:
    for filters, word in [
        ({"min_objects": -1}, "min_objects"),
        ({"max_objects": -3}, "max_objects"),
        ({"min_objects": 3, "max_objects": 2}, "more than"),
        ({"object_size": "huge"}, "unknown object size"),
        ({"object_size": ""}, "unknown object size"),
        ({"min_objects": 10**30}, "min_objects"),
        ({"min_objects": True}, "min_objects"),
    ]:
        with pytest.raises(InvalidInput, match=word):
            samples.list_samples(studio, project="det", **filters)
    with pytest.raises(NotFound, match="class 'unicorn' not found"):
        samples.list_samples(studio, project="det", label="unicorn", min_objects=1)
    with pytest.raises(NotFound, match="class 'unicorn' not found"):
        samples.list_samples(studio, project="det", label="unicorn")
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 2, "dog": 1}))
    with pytest.raises(InvalidInput, match="object filters apply to"):
        samples.list_samples(studio, project="pets", min_objects=1)
    assert samples.list_samples(studio, project="pets", label="cat")["total"] == 2  # unchanged


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def test_api_and_page(client: TestClient, studio: Studio, boxes: list[dict[str, Any]]) -> None:
    two = _expected(boxes, lambda o: len(o) >= 2)
    body = client.get("/api/v1/samples", params={"project": "det", "min_objects": 2, "limit": 500}).json()
    assert body["total"] == len(two) and "annotations" not in body["items"][0]
    body = client.get(
        "/api/v1/samples", params={"project": "det", "object_size": "large", "annotations": "true"}
    ).json()
    assert body["total"] == len(_expected(boxes, lambda o: any(_size_word(a) == "large" for _, a in o)))
    first = body["items"][0]
    assert first["annotations"] and {a["kind"] for a in first["annotations"]} == {"box"}
    assert all(set(a) >= {"id", "kind", "class", "geometry"} for a in first["annotations"])
    for params, status, word in [
        ({"min_objects": -1}, 422, "min_objects"),
        ({"min_objects": "two"}, 422, None),
        ({"object_size": "tiny"}, 422, "unknown object size"),
        ({"object_size": "x" * 40}, 422, None),
        ({"min_objects": 5, "max_objects": 1}, 422, "more than"),
        ({"label": "unicorn"}, 404, "unicorn"),
    ]:
        r = client.get("/api/v1/samples", params={"project": "det", **params})
        assert r.status_code == status, (params, r.text)
        if word:
            assert word in r.json()["error"]["message"]
    # the Dataset page: the filter form has the object fields and the grid applies them
    page = client.get("/projects/det").text
    for name in ('name="min_objects"', 'name="max_objects"', 'name="object_size"'):
        assert name in page
    grid = client.get("/projects/det", params={"min_objects": "2"}, headers={"HX-Request": "true"})
    assert grid.status_code == 200
    assert f'data-testid="grid-total">{len(two)}<' in grid.text and "match the filters" in grid.text
    assert grid.text.count('data-testid="tile"') == min(len(two), 60)
    for params, word in [
        ({"min_objects": "-1"}, "number of objects"),
        ({"max_objects": "1.5"}, "number of objects"),
        ({"object_size": "huge"}, "unknown object size"),
        ({"label": "unicorn"}, "unicorn"),
    ]:
        r = client.get("/projects/det", params=params, headers={"HX-Request": "true"})
        assert r.status_code in (404, 422) and word in r.text and 'id="grid"' in r.text, params
    # a classification project's page has no object fields
    projects.create_project(studio, name="pets", task="classification")
    assert 'name="min_objects"' not in client.get("/projects/pets").text


def test_predictions_are_not_objects(client: TestClient, studio: Studio, boxes: list[dict[str, Any]]) -> None:
    """A predicted box (an annotation with a score) is neither counted by the object filters nor
    drawn or counted on the Dataset grid: only ground truth is an object of the image."""
    import re

    from sqlalchemy import select

    from vistudio.db import Annotation, LabelClass, Sample
    from vistudio.web.pages.dataset import overlay_data

    with studio.sessions() as s:
        ellipse = s.scalar(select(LabelClass.id).where(LabelClass.name == "ellipse"))
        ids = list(s.scalars(select(Sample.id)))
        for sid in ids:  # two large predicted ellipses over every image
            for score in (0.9, 0.4):
                s.add(
                    Annotation(
                        sample_id=sid,
                        kind="box",
                        class_id=ellipse,
                        geometry={"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0},
                        score=score,
                    )
                )
        s.commit()
    for filters, keep in [
        ({"min_objects": 2}, lambda o: len(o) >= 2),
        ({"max_objects": 1}, lambda o: len(o) <= 1),
        ({"label": "ellipse", "min_objects": 1}, lambda o: any(c == "ellipse" for c, _ in o)),
        ({"object_size": "large"}, lambda o: any(_size_word(a) == "large" for _, a in o)),
        ({"object_size": "medium", "max_objects": 0}, lambda o: all(_size_word(a) != "medium" for _, a in o)),
    ]:
        assert _listed(studio, "det", **filters) == _expected(boxes, keep), filters
    # the listing still gives the predictions to whoever asks for annotations (with their score)...
    page = samples.list_samples(studio, project="det", with_annotations=True, limit=500)
    assert sum(a["score"] is not None for it in page["items"] for a in it["annotations"]) == 2 * len(ids)
    # ...but the overlay draws and counts ground truth only
    truth = {it["id"]: [a for a in it["annotations"] if a["score"] is None] for it in page["items"]}
    for it in page["items"]:
        overlay = overlay_data("detection", it, it["annotations"])
        assert overlay["n"] == len(truth[it["id"]]) and len(overlay["a"]) == len(truth[it["id"]])
    grid = client.get("/projects/det", headers={"HX-Request": "true"}).text
    counts = [int(n) for n in re.findall(r'class="tile-count" title="(\d+) object', grid)]
    assert sum(counts) == sum(len(im["objects"]) for im in boxes) > 0
    detail = client.get(f"/projects/det/samples/{ids[0]}").text
    assert f'aria-label="{len(truth[ids[0]])} annotation' in detail


def test_cli_object_filters(
    studio: Studio, boxes: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _expected(boxes, lambda o: sum(_size_word(a) == "medium" for _, a in o) >= 2)
    code, out = cli(
        capsys,
        studio.home,
        "samples",
        "det",
        "--object-size",
        "medium",
        "--min-objects",
        "2",
        "--limit",
        "500",
    )
    assert code == 0 and out["total"] == len(expected)
    assert {(it["width"], it["name"].rsplit("/", 1)[-1]) for it in out["items"]} == expected
    code, out = cli(capsys, studio.home, "samples", "det", "--object-size", "huge")
    assert code != 0 and "unknown object size" in out["error"]["message"]
