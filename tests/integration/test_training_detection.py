"""Detection and instance segmentation training end to end (job, child process, checkpoints) on
generated shapes: the target contract of ``split_items``, small catalog detectors that learn (box
mAP50 ≥ 0.8, mask mAP50 ≥ 0.75 on the test images, measured with the evaluation's function on the
reloaded best checkpoint), the curves and checkpoint meta of box tasks, and what is refused before a
job is queued."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select

from detection_factories import CLASSES, shapes_project, write_coco
from factories import run_import
from training_helpers import run_job
from vistudio.api.app import create_app
from vistudio.db import Sample, Split
from vistudio.errors import BadRequest
from vistudio.ml.checkpoint import load_checkpoint
from vistudio.ml.inference.detection_metrics import (
    PredictedBox,
    PredictedMask,
    TruthBox,
    TruthImage,
    TruthMask,
    coco_box_metrics,
    coco_mask_metrics,
)
from vistudio.ml.inference.detections import from_torchvision
from vistudio.ml.preprocess import open_rgb
from vistudio.ml.tasks.detection import truth_rle
from vistudio.services import experiments, projects, splits
from vistudio.services.experiments import split_items
from vistudio.studio import Studio

SORTED = sorted(CLASSES)
# small catalog configurations at 96 px: what the suite can train on two CPU cores (the
# two-stage R-CNNs learn these shapes in a few epochs; the small FCOS needs several times more)
DET = {
    "model": "fasterrcnn_resnet18_fpn64",
    "image_size": 96,
    "epochs": 6,
    "batch_size": 4,
    "lr": 0.002,
    "early_stopping": False,
    "num_workers": 0,
}
MASK = {**DET, "model": "maskrcnn_resnet18_fpn64"}


def _split_id(studio: Studio, project: str) -> int:
    with studio.sessions() as s:
        p = projects.find_project(s, project)
        split = s.scalar(select(Split).where(Split.project_id == p.id, Split.name == "s1"))
        assert split is not None
        return split.id


def _items(studio: Studio, project: str, subsets: list[str], task: str) -> list[Any]:
    with studio.sessions() as s:
        return split_items(studio, s, _split_id(studio, project), subsets, SORTED, task=task)


# --- the target contract -----------------------------------------------------------------------------


def test_split_items_of_box_tasks_follow_the_target_contract(studio: Studio, tmp_path: Path) -> None:
    for task in ("detection", "instance_segmentation"):
        name = f"c-{task[:3]}"
        projects.create_project(studio, name=name, task=task)
        src = write_coco(tmp_path / name, 12, masks=True, crowd=True)
        # one image without any object: a negative
        doc = json.loads((src / "annotations.json").read_text())
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != 12]
        (src / "annotations.json").write_text(json.dumps(doc))
        assert run_import(studio, name, src, fmt="coco")["status"] == "succeeded"
        splits.create_split(studio, project=name, name="s1", ratios=(0.5, 0.25, 0.25), seed=1)
        items = _items(studio, name, ["train", "val", "test"], task)
        assert len(items) == 12 and [it.sample_id for it in items] == sorted(it.sample_id for it in items)
        json.dumps([it.target for it in items])  # JSON-able
        with studio.sessions() as s:
            names = dict(s.execute(select(Sample.id, Sample.name)).all())
        by_name = {Path(names[it.sample_id]).name: it for it in items}
        assert all(it.target["width"] == it.target["height"] == 96 for it in items)
        assert by_name["img00012.png"].target["objects"] == []
        # the objects of image 1 against the COCO file
        truth = [a for a in doc["annotations"] if a["image_id"] == 1 and not a["iscrowd"]]
        objects = by_name["img00001.png"].target["objects"]
        plain = [o for o in objects if not o["iscrowd"]]
        assert len(plain) == len(truth)
        for o, a in zip(plain, truth, strict=True):
            assert SORTED[o["class"]] == CLASSES[a["category_id"] - 1]
            assert o["box"] == pytest.approx([v / 96 for v in a["bbox"]], abs=2e-3)
            if task == "detection":
                assert o["mask"] is None
            else:  # polygons normalised, the box computed from them
                assert len(o["mask"]["polygons"][0]) == len(a["segmentation"][0]) // 2
        crowd = [o for o in objects if o["iscrowd"]]
        # the crowd region of write_coco is a box without segmentation: an ignored box for
        # detection, nothing for instance segmentation (its objects are masks)
        assert len(crowd) == (1 if task == "detection" else 0)
        if crowd:
            assert crowd[0]["box"] == pytest.approx([0, 0, 0.5, 0.5])
    # classification is unchanged: box projects have no single-label images
    with studio.sessions() as s:
        assert split_items(studio, s, _split_id(studio, "c-det"), ["train"], SORTED) == []


def test_a_voc_difficult_object_is_a_crowd_region(studio: Studio, tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i in range(4):
        Image.new("RGB", (100, 50), (i * 40, 90, 90)).save(root / "JPEGImages" / f"v{i}.jpg")
        (root / "Annotations" / f"v{i}.xml").write_text(
            f"<annotation><filename>v{i}.jpg</filename><size><width>100</width><height>50</height>"
            "<depth>3</depth></size><object><name>car</name><difficult>1</difficult><bndbox><xmin>11</xmin>"
            "<ymin>6</ymin><xmax>60</xmax><ymax>30</ymax></bndbox></object><object><name>bus</name>"
            "<bndbox><xmin>61</xmin><ymin>11</ymin><xmax>100</xmax><ymax>50</ymax></bndbox></object></annotation>"
        )
    projects.create_project(studio, name="voc", task="detection")
    assert run_import(studio, "voc", root, fmt="voc")["status"] == "succeeded"
    splits.create_split(studio, project="voc", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with studio.sessions() as s:
        items = split_items(
            studio, s, _split_id(studio, "voc"), ["train", "val"], ["bus", "car"], task="detection"
        )
    for it in items:
        car, bus = sorted(it.target["objects"], key=lambda o: -o["class"])
        assert car["class"] == 1 and car["iscrowd"] and bus["class"] == 0 and not bus["iscrowd"]
        assert car["box"] == pytest.approx([0.1, 0.1, 0.5, 0.5], abs=1e-9)


# --- training that learns -------------------------------------------------------------------------


def _test_predictions(studio: Studio, project: str, task: str, checkpoint: str) -> tuple[Any, Any]:
    """Box (and mask) metrics of ``checkpoint`` on the split's test images, the way the evaluation
    measures them: the sample's pixels, the evaluation's COCO function."""
    model, meta = load_checkpoint(checkpoint)
    assert meta["preprocess"]["kind"] == "detection" and meta["preprocess"]["input_size"] == [96, 96]
    model.eval()
    size = meta["preprocess"]["input_size"][0]
    truths, masks_truth, boxes, masks = [], [], {}, {}
    for image_id, it in enumerate(_items(studio, project, ["test"], task), start=1):
        t = it.target
        w, h = t["width"], t["height"]
        img = open_rgb(it.path, draft_size=size)
        x = torch.from_numpy(__import__("numpy").asarray(img, dtype="float32") / 255).permute(2, 0, 1)
        with torch.no_grad():
            out = model([x])[0]
        d = from_torchvision(out, input_size=img.size, original_size=(w, h))
        objs = t["objects"]
        truths.append(
            TruthImage(
                image_id,
                w,
                h,
                [
                    TruthBox(
                        o["class"],
                        tuple(v * s for v, s in zip(o["box"], (w, h, w, h), strict=True)),
                        o["iscrowd"],
                    )
                    for o in objs
                ],  # type: ignore[misc]
            )
        )
        boxes[image_id] = [
            PredictedBox(int(k), (b[0], b[1], b[2] - b[0], b[3] - b[1]), float(s))
            for k, b, s in zip(d.labels, d.boxes.tolist(), d.scores, strict=True)
        ]
        if task == "instance_segmentation":
            masks_truth.append(
                TruthImage(
                    image_id, w, h, [TruthMask(o["class"], truth_rle(o, w, h), o["iscrowd"]) for o in objs]
                )
            )
            masks[image_id] = [
                PredictedMask(int(k), r, float(s))
                for k, r, s in zip(d.labels, d.masks or [], d.scores, strict=True)
            ]
    box_m = coco_box_metrics(truths=truths, predictions=boxes, class_ids=range(len(SORTED)))
    mask_m = (
        coco_mask_metrics(truths=masks_truth, predictions=masks, class_ids=range(len(SORTED)))
        if masks_truth
        else None
    )
    return box_m, mask_m


def _train(studio: Studio, project: str, config: dict[str, Any], name: str) -> tuple[dict[str, Any], float]:
    started = experiments.start_experiment(studio, project=project, config=config, name=name)
    t0 = time.perf_counter()
    job = run_job(studio, started["job"]["id"])
    seconds = time.perf_counter() - t0
    assert job["status"] == "succeeded", job
    exp = experiments.get_experiment(studio, project=project, experiment=name)
    assert exp["status"] == "succeeded" and exp["error"] is None and exp["epochs_done"] == config["epochs"]
    return exp, seconds


def test_a_small_faster_rcnn_learns_the_shapes(studio: Studio, tmp_path: Path) -> None:
    shapes_project(studio, tmp_path, "det", task="detection", n=100)
    exp, seconds = _train(studio, "det", DET, "frcnn")
    best = next(c for c in exp["checkpoints"] if c["kind"] == "best")
    assert exp["config"]["monitor"] == "val_map" and exp["config"]["pretrained"] == "none"
    # the curves: the loss and its components every epoch, the val mAP; no val loss for a detector
    series = experiments.experiment_metrics(studio, project="det", experiment="frcnn")["series"]
    for key in (
        "train_loss",
        "train_loss_classifier",
        "train_loss_box_reg",
        "train_loss_objectness",
        "train_loss_rpn_box_reg",
        "val_map",
        "val_map50",
    ):
        assert len(series[key]["value"]) == DET["epochs"], key
    assert "val_loss" not in series and "train_loss_step" in series and "train_loss_box_reg_step" in series
    assert series["train_loss"]["value"][-1] < series["train_loss"]["value"][0]
    # the best checkpoint is the epoch of the best val_map (the monitored metric)
    assert best["metrics"]["val_map"] == pytest.approx(max(series["val_map"]["value"]))
    box, _ = _test_predictions(studio, "det", "detection", best["path"])
    print(
        f"\nfasterrcnn_resnet18_fpn64 96 px {DET['epochs']} epochs: {seconds:.0f} s, best val mAP50 "
        f"{best['metrics']['val_map50']:.3f}, test mAP {box.ap:.3f} mAP50 {box.ap50:.3f}"
    )
    assert best["metrics"]["val_map50"] >= 0.8 and box.ap50 >= 0.8
    _, meta = load_checkpoint(best["path"])
    assert meta["task"] == "detection" and meta["classes"] == SORTED
    assert {
        k: meta["config"][k] for k in ("image_size", "score_threshold", "nms_iou", "detections_per_image")
    } == {
        "image_size": 96,
        "score_threshold": 0.05,
        "nms_iou": 0.5,
        "detections_per_image": 100,
    }
    assert set(meta["details"]["per_class"]) == set(SORTED)


def test_a_small_mask_rcnn_learns_the_shapes_masks(studio: Studio, tmp_path: Path) -> None:
    shapes_project(studio, tmp_path, "seg", task="instance_segmentation", n=100)
    exp, seconds = _train(studio, "seg", MASK, "mask")
    assert exp["config"]["monitor"] == "val_mask_map"
    best = next(c for c in exp["checkpoints"] if c["kind"] == "best")
    series = experiments.experiment_metrics(studio, project="seg", experiment="mask")["series"]
    assert {"train_loss_mask", "train_loss_objectness", "val_mask_map", "val_mask_map50"} <= set(series)
    box, mask = _test_predictions(studio, "seg", "instance_segmentation", best["path"])
    print(
        f"\nmaskrcnn_resnet18_fpn64 96 px {MASK['epochs']} epochs: {seconds:.0f} s, best val mask mAP50 "
        f"{best['metrics']['val_mask_map50']:.3f}, test box mAP50 {box.ap50:.3f}, mask mAP50 {mask.ap50:.3f}"
    )
    assert best["metrics"]["val_mask_map50"] >= 0.75 and mask.ap50 >= 0.75


# --- refused before a job is queued ---------------------------------------------------------------


def test_box_projects_that_cannot_train_are_refused(studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="empty", task="detection")
    with pytest.raises(BadRequest, match="has no split yet"):
        experiments.start_experiment(studio, project="empty", config={"model": "fcos_resnet18_fpn64"})
    # only crowd regions: nothing to learn from
    src = write_coco(tmp_path / "crowd", 6, masks=False, crowd=True)
    doc = json.loads((src / "annotations.json").read_text())
    doc["annotations"] = [a for a in doc["annotations"] if a["iscrowd"]]
    (src / "annotations.json").write_text(json.dumps(doc))
    assert run_import(studio, "empty", src, fmt="coco")["status"] == "succeeded"
    splits.create_split(studio, project="empty", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match="no boxes of the project's classes"):
        experiments.start_experiment(studio, project="empty", config={"model": "fcos_resnet18_fpn64"})
    # instance segmentation: boxes alone are not masks
    projects.create_project(studio, name="boxes", task="instance_segmentation")
    assert (
        run_import(studio, "boxes", write_coco(tmp_path / "b", 6, masks=False), fmt="coco")["status"]
        == "succeeded"
    )
    splits.create_split(studio, project="boxes", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match="no polygons or masks"):
        experiments.start_experiment(studio, project="boxes", config={"model": "maskrcnn_resnet18_fpn64"})
    # a project without classes (images without annotations)
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 50, 0, 0)).save(folder / f"{i}.png")
    projects.create_project(studio, name="bare", task="detection")
    assert run_import(studio, "bare", folder)["status"] == "succeeded"
    splits.create_split(studio, project="bare", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match="at least one class to train a detector"):
        experiments.start_experiment(studio, project="bare", config={"model": "fcos_resnet18_fpn64"})
    # a classifier's settings on a detector
    with pytest.raises(BadRequest, match="label_smoothing: unknown key"):
        experiments.start_experiment(studio, project="empty", config={"label_smoothing": 0.1})


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def test_models_of_a_task_over_the_api(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    r = client.get("/api/v1/experiments/models", params={"task": "instance_segmentation"})
    assert r.status_code == 200
    assert [m["name"] for m in r.json()["items"]] == [
        "maskrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn_v2",
        "maskrcnn_resnet18_fpn64",
    ]
    det = client.get("/api/v1/experiments/models", params={"task": "detection"}).json()["items"]
    assert "fasterrcnn_mobilenet_v3_large_320_fpn" in [m["name"] for m in det]
    assert "resnet18" in [m["name"] for m in client.get("/api/v1/experiments/models").json()["items"]]
    assert client.get("/api/v1/experiments/models", params={"task": "nope"}).status_code == 400
    # pretrained words are not weights files; a file is refused for detectors
    shapes_project(studio, tmp_path, "api", task="detection", n=10)
    r = client.post(
        "/api/v1/experiments",
        json={"project": "api", "config": {"model": "fcos_resnet50_fpn", "pretrained": "coco"}},
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
    r = client.post(
        "/api/v1/experiments",
        json={
            "project": "api",
            "config": {"model": "fcos_resnet18_fpn64", "pretrained": str(tmp_path / "w.pt")},
        },
    )
    assert r.status_code in (400, 404, 422) and r.status_code != 500


def test_the_train_form_of_a_detection_project(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    shapes_project(studio, tmp_path, "form", task="detection", n=10)
    html = client.get("/projects/form/train").text
    models = html.split('id="tf-model"', 1)[1].split("</select>", 1)[0]
    assert 'value="fcos_resnet18_fpn64"' in models and 'value="resnet18"' not in models
    assert 'value="maskrcnn_resnet50_fpn"' not in models
    for field in ("tf-score-threshold", "tf-nms-iou", "tf-detections", "tf-trainable-layers"):
        assert f'id="{field}"' in html
    for field in ("tf-label-smoothing", "tf-class-weights", "tf-freeze"):  # classifier settings
        assert f'id="{field}"' not in html
    assert 'name="image_size" type="number" min="16" max="1024" step="1" value="320"' in html
    form = {
        "model": "fcos_resnet18_fpn64",
        "image_size": "96",
        "epochs": "1",
        "pretrained": "none",
        "score_threshold": "0.1",
        "nms_iou": "0.6",
        "detections_per_image": "50",
        "trainable_backbone_layers": "",
        "augment_flip": "on",
    }
    r = client.post("/projects/form/train/start", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text[:500]
    [exp] = experiments.list_experiments(studio, project="form")["items"]
    assert {
        k: exp["config"][k] for k in ("pretrained", "score_threshold", "nms_iou", "detections_per_image")
    } == {
        "pretrained": "none",
        "score_threshold": 0.1,
        "nms_iou": 0.6,
        "detections_per_image": 50,
    }
    assert exp["config"]["trainable_backbone_layers"] is None and exp["config"]["freeze_backbone"] is False
    bad = client.post(
        "/projects/form/train/start", data={**form, "nms_iou": "lots"}, headers={"HX-Request": "true"}
    )
    assert bad.status_code == 400 and 'data-key="nms_iou"' in bad.text
    warn = client.get("/projects/form/train/warnings", params={"model": "ssd300_vgg16", "image_size": "128"})
    assert 'data-key="image_size"' in warn.text and "always sees 300×300" in warn.text


def test_the_training_benchmark_has_a_detection_case(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    args = ["--task", "detection", "--images", "16", "--image-size", "64", "--source-size", "64"]
    args += ["--batch-size", "2", "--warmup", "1", "--cache", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "benchmarks/train.py", *args], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["task"] == "detection" and result["model"] == "fcos_resnet18_fpn64"
    assert result["baseline_ips"] > 0 and result["vistudio_ips"] > 0 and result["loader_only_ips"] > 0
    assert result["ratio"] == pytest.approx(result["vistudio_ips"] / result["baseline_ips"], rel=1e-2)
    assert result["loader_only"]["images"] == 16 and len(list(tmp_path.rglob("*.jpg"))) == 16
