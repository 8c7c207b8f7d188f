"""Importing semantic segmentation masks end to end: the job guesses the format, stores one RLE per
class present and the ignored region without a class, counts unlabelled images and reports each
bad item; the CLI and the API take ``masks``; the object editor leaves the ignored region alone;
the sample detail's legend gives each class's share of the image as NumPy counts it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from factories import cli, run_import
from mask_factories import IGNORE, decode_labels, write_masks_dataset
from vistudio.api.app import create_app
from vistudio.services import annotations as object_edits
from vistudio.services import projects, samples
from vistudio.studio import Studio

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

CLASSES = ["background", "road", "car", "person", "a-very-long-class-name-for-a-traffic-sign"]


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def _by_name(studio: Studio, project: str) -> dict[str, dict]:
    items = samples.list_samples(studio, project=project, limit=500)["items"]
    return {s["name"]: samples.get_sample(studio, s["id"]) for s in items}


def test_import_round_trip_classes_unlabelled_and_bad_items(studio: Studio, tmp_path: Path) -> None:
    root, labels = write_masks_dataset(tmp_path / "streets", count=6, classes=CLASSES, unlabelled=2)
    # two bad items: a mask of the wrong size, a mask with a value the map does not know
    Image.new("RGB", (160, 120), (1, 2, 3)).save(root / "images" / "wrong.jpg")
    Image.fromarray(np.zeros((100, 160), np.uint8), "L").save(root / "masks" / "wrong.png")
    odd = labels["images/scene_000.jpg"].copy()
    odd[:2, :2] = 42
    Image.new("RGB", (160, 120), (3, 2, 1)).save(root / "images" / "odd.jpg")
    Image.fromarray(odd, "L").save(root / "masks" / "odd.png")

    projects.create_project(studio, name="streets", task="semantic_segmentation")
    job = run_import(studio, "streets", root)  # format guessed
    assert job["status"] == "succeeded", job["error"]
    report = job["result"]["report"]
    assert report["format"] == "masks"
    assert (report["imported"], report["unlabelled"], report["failed_count"]) == (8, 2, 2)
    assert report["classes"] == CLASSES
    reasons = {f["path"]: f["reason"] for f in report["failed"]}
    assert "mask is 160×100 px but its image is 160×120" in reasons["images/wrong.jpg"]
    assert "pixel values not in classes.json: 42 (4 px)" in reasons["images/odd.jpg"]
    # the project's classes in value order (the training's class indices follow the ordinals)
    assert list(samples.class_counts(studio, project="streets")) == CLASSES

    stored = _by_name(studio, "streets")
    for name, lab in labels.items():
        s = stored[name]
        assert (s["width"], s["height"]) == (160, 120)
        assert np.array_equal(decode_labels(s["annotations"], CLASSES, lab.shape), lab), name
        ignored = [a for a in s["annotations"] if a["class"] is None]
        assert len(ignored) == 1 and ignored[0]["geometry"]["iscrowd"] is True
        assert sorted(s["labels"]) == sorted({CLASSES[v] for v in np.unique(lab) if v != IGNORE})
    for j in range(2):
        assert stored[f"images/unlabelled_{j:03d}.jpg"]["annotations"] == []

    again = run_import(studio, "streets", root)["result"]["report"]
    assert (again["imported"], again["skipped"], again["unlabelled"]) == (0, 8, 0)


def test_cli_and_api_take_the_masks_format(
    studio: Studio, client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, labels = write_masks_dataset(tmp_path / "lm", count=3, classes=CLASSES[:3], labelmap=True, seed=5)
    ws = tmp_path / "cli-ws"
    code, out = cli(capsys, ws, "project", "create", "lm", "--task", "semantic_segmentation")
    assert code == 0, out
    code, out = cli(capsys, ws, "import", "lm", str(root), "--format", "masks")
    assert code == 0, out
    assert out["report"]["format"] == "masks" and out["report"]["imported"] == 3
    assert out["report"]["classes"] == CLASSES[:3]

    client.post("/api/v1/projects", json={"name": "api", "task": "semantic_segmentation"})
    r = client.post("/api/v1/imports", json={"project": "api", "source": str(root), "format": "masks"})
    assert r.status_code == 202, r.text
    from vistudio.jobs.worker import Worker

    Worker(studio).run_one(job_id=r.json()["job"]["id"])
    report = client.get(f"/api/v1/imports/{r.json()['job']['id']}").json()["report"]
    assert (report["format"], report["imported"], report["failed_count"]) == ("masks", 3, 0)
    listed = client.get("/api/v1/samples", params={"project": "api", "annotations": "true"}).json()
    assert listed["total"] == 3
    for s in listed["items"]:
        assert np.array_equal(decode_labels(s["annotations"], CLASSES[:3], (120, 160)), labels[s["name"]])


def test_the_object_editor_keeps_the_ignored_region(studio: Studio, tmp_path: Path) -> None:
    root, labels = write_masks_dataset(tmp_path / "ed", count=1, classes=CLASSES[:4], seed=3)
    projects.create_project(studio, name="ed", task="semantic_segmentation")
    assert run_import(studio, "ed", root)["status"] == "succeeded"
    sample = next(iter(_by_name(studio, "ed").values()))
    objects = [
        {"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]}
        for a in sample["annotations"]
        if a["class"] is not None
    ]
    # the editor sends every object it has (not the class-less ignored region) and the revision
    # the detail gave it: a polygon drawn, the masks unchanged
    square = {"polygons": [[[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.1, 0.3]]]}
    saved = object_edits.set_objects(
        studio,
        sample["id"],
        [*objects, {"kind": "polygon", "class": "car", "geometry": square}],
        expected_revision=sample["objects_revision"],
    )
    assert saved["change_id"] is not None
    after = samples.get_sample(studio, sample["id"])
    kept = [a for a in after["annotations"] if a["class"] is None]
    assert len(kept) == 1 and kept[0]["geometry"]["iscrowd"] is True
    masks_only = [a for a in after["annotations"] if a["kind"] == "mask_rle"]
    lab = labels["images/scene_000.jpg"]
    assert np.array_equal(decode_labels(masks_only, CLASSES[:4], lab.shape), lab)


def test_the_detail_legend_gives_each_class_share_of_the_pixels(
    studio: Studio, client: TestClient, tmp_path: Path
) -> None:
    root, labels = write_masks_dataset(tmp_path / "lg", count=2, classes=CLASSES, seed=11)
    projects.create_project(studio, name="lg", task="semantic_segmentation")
    assert run_import(studio, "lg", root)["status"] == "succeeded"
    for name, s in _by_name(studio, "lg").items():
        lab = labels[name]
        html = client.get(f"/projects/lg/samples/{s['id']}").text
        rows = re.findall(r'data-testid="legend-row" data-class="([^"]+)" data-share="([^"]+)"', html)
        want = {CLASSES[v]: float(np.mean(lab == v)) for v in np.unique(lab) if v != IGNORE}
        assert {n: pytest.approx(float(x), abs=1e-12) for n, x in rows} == want
        assert [float(x) for _, x in rows] == sorted((float(x) for _, x in rows), reverse=True)
        ignored = re.search(r'data-testid="legend-ignored" data-share="([^"]+)"', html)
        assert ignored and float(ignored.group(1)) == pytest.approx(float(np.mean(lab == IGNORE)), abs=1e-12)
        assert 'data-testid="legend-uncovered"' not in html  # a label image covers every pixel
        texts = re.findall(r'data-testid="legend-share">([^<]+)<', html)
        assert texts[0] == f"{max(want.values()) * 100:.1f}%"
        # the canvas data: regions, no object count, the ignored region with its class left out
        data = json.loads(
            re.search(r'data-overlay="([^"]+)"', html).group(1).replace("&#34;", '"').replace("&quot;", '"')  # type: ignore[union-attr]
        )
        assert data["regions"] is True and data["n"] == 0
        assert sum(a["class"] is None for a in data["a"]) == 1
        # regions have no names on the image: no Names toggle, an Ignored toggle in the legend
        assert 'data-testid="ov-labels"' not in html and 'data-testid="ov-ignored"' in html
    page = client.get("/projects/lg").text
    assert 'data-testid="ov-ignored"' in page and 'data-testid="ov-labels"' not in page
    assert 'class="tile-count"' not in page  # regions are not objects: no count badge


def test_legend_of_polygons_counts_what_no_region_covers() -> None:
    from vistudio.web.pages.dataset import region_legend

    square = {"polygons": [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]]}
    strip = {"polygons": [[[0.0, 0.9], [1.0, 0.9], [1.0, 1.0], [0.0, 1.0]]]}
    legend = region_legend(
        {"width": 200, "height": 100},
        [
            {"kind": "polygon", "class": "car", "geometry": square, "score": None},
            {"kind": "polygon", "class": "road", "geometry": strip, "score": None},
            {"kind": "polygon", "class": "car", "geometry": strip, "score": 0.9},  # a prediction
        ],
    )
    assert legend is not None
    assert [(r["name"], r["share"], r["text"]) for r in legend["classes"]] == [
        ("car", pytest.approx(0.25), "25.0%"),
        ("road", pytest.approx(0.1), "10.0%"),
    ]
    assert legend["ignored"] is None
    assert legend["uncovered"]["share"] == pytest.approx(0.65)
    empty = region_legend({"width": 10, "height": 10}, [])
    assert empty == {"classes": [], "ignored": None, "uncovered": None}
    assert region_legend({"width": 0, "height": 0}, []) is None
    tiny = {"size": [100, 200], "counts": [0, 1, 19999]}  # one pixel of 20,000
    one = region_legend({"width": 200, "height": 100}, [{"kind": "mask_rle", "class": "x", "geometry": tiny}])
    assert one is not None and one["classes"][0]["text"] == "<0.1%"
