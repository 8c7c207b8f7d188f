"""Semantic segmentation training end to end (service, job, child process, checkpoints) on
generated shapes: the targets ``split_items`` gives (background first, polygons and RLE masks,
class-less ignored regions kept as class -1, at a dataset version too), the product's default
LR-ASPP learning from scratch (mIoU ≥ 0.70 on the test images, measured the way an evaluation
measures it on the reloaded best checkpoint, and equal to training's own val_miou on the val
images), a stopped run resuming to the same weights, and what is refused before a job is queued."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from detection_factories import CLASSES, write_coco
from factories import run_import
from training_helpers import run_job
from vistudio.api.app import create_app
from vistudio.db import Annotation, Sample, Split
from vistudio.errors import BadRequest, InvalidInput
from vistudio.ml.checkpoint import load_checkpoint, read_checkpoint
from vistudio.ml.inference.detections import encode_masks
from vistudio.ml.inference.segmentation_metrics import confusion_histogram, segmentation_scores
from vistudio.ml.preprocess import eval_array, open_rgb
from vistudio.ml.tasks.semantic_segmentation import label_map, predict_label_map
from vistudio.ml.training.callbacks import TrainingCallbacks
from vistudio.ml.training.trainer import TrainResult, TrainSpec, train
from vistudio.services import annotations, experiments, projects, splits
from vistudio.services.experiments import split_items
from vistudio.studio import Studio

TASK = "semantic_segmentation"
MODEL_CLASSES = ["background", *sorted(CLASSES)]
# the product's defaults (LR-ASPP MobileNetV3-Large from scratch, lr 0.01, batch 8, cross-entropy,
# crop and flip) at the generated images' own size, for a few epochs: about 15 s of training on
# two idle CPU cores
LEARN: dict[str, Any] = {"image_size": 96, "epochs": 8}


def _coco(root: Path, n: int, *, seed: int = 0, rle_every: int = 3) -> Path:
    """Generated shapes as COCO: polygons, and every ``rle_every``-th object as an RLE mask."""
    from faster_coco_eval.core import mask as mask_utils

    src = write_coco(root, n, seed=seed, masks=True)
    doc = json.loads((src / "annotations.json").read_text())
    for i, ann in enumerate(doc["annotations"]):
        if rle_every and i % rle_every == 0:
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 96, 96))
            ann["segmentation"] = {"size": [96, 96], "counts": rle["counts"].decode("ascii")}
    (src / "annotations.json").write_text(json.dumps(doc))
    return src


def _ignore_region(studio: Studio, sample_id: int, rows: slice, *, crowd: bool = True) -> None:
    """A class-less ``mask_rle`` over ``rows`` of a 96×96 sample: what an importer stores for the
    255 pixels of a PNG mask (without ``iscrowd``: a class-less object that is not ignored)."""
    pixels = np.zeros((96, 96), bool)
    pixels[rows] = True
    geometry = {**encode_masks(pixels[None])[0], **({"iscrowd": True} if crowd else {})}
    with studio.sessions.begin() as s:
        s.execute(
            insert(Annotation),
            [{"sample_id": sample_id, "kind": "mask_rle", "class_id": None, "geometry": geometry}],
        )


def _project(studio: Studio, root: Path, name: str, n: int, *, ignored: int = 0) -> str:
    """A semantic segmentation project of ``n`` generated images, split 60/20/20 (``s1``); the
    first ``ignored`` images get an ignored band over their top 8 rows."""
    projects.create_project(studio, name=name, task=TASK)
    assert run_import(studio, name, _coco(root / name, n), fmt="coco")["status"] == "succeeded"
    with studio.sessions() as s:
        p = projects.find_project(s, name)
        ids = sorted(s.scalars(select(Sample.id).where(Sample.project_id == p.id)))
    for sid in ids[:ignored]:
        _ignore_region(studio, sid, slice(0, 8))
    splits.create_split(studio, project=name, name="s1", ratios=(0.6, 0.2, 0.2), seed=7)
    return name


def _items(studio: Studio, project: str, subsets: list[str], task: str = TASK, **kw: Any) -> list[Any]:
    classes = MODEL_CLASSES if task == TASK else sorted(CLASSES)
    with studio.sessions() as s:
        p = projects.find_project(s, project)
        split = s.scalar(select(Split).where(Split.project_id == p.id, Split.name == "s1"))
        assert split is not None
        return split_items(studio, s, split.id, subsets, classes, task=task, **kw)


def _names(studio: Studio) -> dict[int, str]:
    with studio.sessions() as s:
        return {sid: Path(name).name for sid, name in s.execute(select(Sample.id, Sample.name)).all()}


# --- the targets ---------------------------------------------------------------------------------------


def test_split_items_keep_class_less_ignored_regions_for_segmentation_only(
    studio: Studio, tmp_path: Path
) -> None:
    _project(studio, tmp_path, "seg", 8)
    with studio.sessions() as s:
        first, second, third = sorted(s.scalars(select(Sample.id)))[:3]
    _ignore_region(studio, first, slice(0, 10))
    _ignore_region(studio, first, slice(90, 96), crowd=False)  # class-less but not ignored: left out
    items = {it.sample_id: it for it in _items(studio, "seg", ["train", "val", "test"])}
    assert len(items) == 8
    json.dumps([it.target for it in items.values()])  # JSON-able, as a training job sends it
    objects = items[first].target["objects"]
    ignored = [o for o in objects if o["class"] == -1]
    assert (
        len(ignored) == 1 and ignored[0]["iscrowd"] and ignored[0]["box"] == pytest.approx([0, 0, 1, 10 / 96])
    )
    # the others: classes index the model's classes (background first), polygons and RLE masks
    plain = [o for o in objects if o["class"] != -1]
    assert plain and all(1 <= o["class"] <= 3 and not o["iscrowd"] for o in plain)
    kinds = {
        ("polygons" in o["mask"]) for it in items.values() for o in it.target["objects"] if o["class"] > 0
    }
    assert kinds == {True, False}  # both polygons and RLE masks
    m = label_map(items[first].target, 96, 96)
    assert (m[:10] == 255).all() and (m[90:] != 255).all()
    # the painted classes are the COCO file's
    doc = json.loads((tmp_path / "seg" / "annotations.json").read_text())
    names = _names(studio)
    image_id = next(i["id"] for i in doc["images"] if i["file_name"] == names[second])
    truth = sorted(CLASSES[a["category_id"] - 1] for a in doc["annotations"] if a["image_id"] == image_id)
    assert sorted(MODEL_CLASSES[o["class"]] for o in items[second].target["objects"]) == truth

    # at a dataset version (as_of): another sample edited since gets its objects of then back, and
    # the class-less region (no part of the edit history) stays
    from vistudio.services.versions import watermark

    with studio.sessions() as s:
        mark = watermark(s, projects.find_project(s, "seg").id)
    before = items[third].target["objects"]
    annotations.set_objects(
        studio,
        third,
        [
            {
                "kind": "polygon",
                "class": "ellipse",
                "geometry": {"polygons": [[[0.1, 0.1], [0.5, 0.1], [0.3, 0.5]]]},
            }
        ],
        expected_revision=None,
    )
    now = {it.sample_id: it for it in _items(studio, "seg", ["train", "val", "test"])}
    then = {it.sample_id: it for it in _items(studio, "seg", ["train", "val", "test"], as_of=mark)}
    assert len(now[third].target["objects"]) == 1 and now[third].target["objects"] != before

    def key(o: dict[str, Any]) -> str:
        return json.dumps(o, sort_keys=True)

    # the edit history keeps objects in its own order
    assert sorted(then[third].target["objects"], key=key) == sorted(before, key=key)
    assert [o["class"] for o in then[first].target["objects"]].count(-1) == 1

    # the other object tasks leave class-less annotations out, as before
    projects.create_project(studio, name="inst", task="instance_segmentation")
    assert run_import(studio, "inst", _coco(tmp_path / "inst", 4), fmt="coco")["status"] == "succeeded"
    splits.create_split(studio, project="inst", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with studio.sessions() as s:
        p = projects.find_project(s, "inst")
        sid = s.scalar(select(Sample.id).where(Sample.project_id == p.id).order_by(Sample.id))
    assert sid is not None
    _ignore_region(studio, sid, slice(0, 10))
    inst = _items(studio, "inst", ["train", "val"], task="instance_segmentation")
    assert all(0 <= o["class"] < 3 for it in inst for o in it.target["objects"])


# --- training that learns --------------------------------------------------------------------------


def _miou_of(checkpoint: str, items: list[Any]) -> float:
    """The mIoU of ``checkpoint`` on ``items`` the way an evaluation measures it: the shared
    preprocessing, the prediction contract, the label maps at each sample's size, one histogram."""
    model, meta = load_checkpoint(checkpoint)
    preprocess = meta["preprocess"]
    k = len(meta["classes"])
    hist = np.zeros((k, k), np.int64)
    for it in items:
        t = it.target
        x = torch.from_numpy(
            eval_array(open_rgb(it.path, draft_size=max(preprocess["input_size"])), preprocess)
        )
        with torch.no_grad():
            logits = model(x[None])[0]
        pred = predict_label_map(logits, t["width"], t["height"])
        confusion_histogram(label_map(t, t["width"], t["height"]), pred, k, out=hist)
    miou = segmentation_scores(hist).miou
    assert miou is not None
    return miou


def test_the_default_lraspp_learns_the_shapes_from_scratch(studio: Studio, tmp_path: Path) -> None:
    _project(studio, tmp_path, "shapes", 100, ignored=10)
    started = experiments.start_experiment(studio, project="shapes", config=LEARN, name="lraspp")
    cfg = started["experiment"]["config"]
    # what a user gets by default, but for the epochs and the image size
    assert (cfg["model"], cfg["pretrained"], cfg["lr"], cfg["loss"], cfg["batch_size"]) == (
        "lraspp_mobilenet_v3_large",
        "none",
        0.01,
        "ce",
        8,
    )
    assert cfg["monitor"] == "val_miou" and started["experiment"]["classes"] == MODEL_CLASSES
    t0 = time.perf_counter()
    job = run_job(studio, started["job"]["id"])
    seconds = time.perf_counter() - t0
    assert job["status"] == "succeeded", job
    exp = experiments.get_experiment(studio, project="shapes", experiment="lraspp")
    assert exp["status"] == "succeeded" and exp["error"] is None
    series = experiments.experiment_metrics(studio, project="shapes", experiment="lraspp")["series"]
    for key in (
        "train_loss",
        "val_loss",
        "val_miou",
        "val_pixel_accuracy",
        "val_mean_class_accuracy",
        "val_dice",
    ):
        assert len(series[key]["value"]) == exp["epochs_done"], key
    assert "train_miou_step" in series and "train_loss_step" in series
    assert series["train_loss"]["value"][-1] < series["train_loss"]["value"][0]
    best = next(c for c in exp["checkpoints"] if c["kind"] == "best")
    assert best["metrics"]["val_miou"] == pytest.approx(max(series["val_miou"]["value"]))

    test_items = _items(studio, "shapes", ["test"])
    val_items = _items(studio, "shapes", ["val"])
    test_miou = _miou_of(best["path"], test_items)
    val_miou = _miou_of(best["path"], val_items)
    print(
        f"\nlraspp_mobilenet_v3_large from scratch, 96 px, {exp['epochs_done']} epochs, lr 0.01: job "
        f"{seconds:.0f} s, best val mIoU {best['metrics']['val_miou']:.3f} (recomputed {val_miou:.3f}), "
        f"test mIoU {test_miou:.3f}, pixel accuracy {best['metrics']['val_pixel_accuracy']:.3f}"
    )
    # a model that predicts the background everywhere scores about 0.22 here
    assert best["metrics"]["val_miou"] >= 0.70 and test_miou >= 0.70
    # training's val_miou is what an evaluation of the same images reports (the same contract; two
    # processes may differ in a float rounding at a near-tie pixel, no more)
    assert val_miou == pytest.approx(best["metrics"]["val_miou"], abs=2e-3)
    _, meta = load_checkpoint(best["path"])
    assert meta["task"] == TASK and meta["classes"] == MODEL_CLASSES and meta["family"] == "lraspp"
    assert meta["preprocess"]["kind"] == "segmentation" and meta["preprocess"]["input_size"] == [96, 96]
    assert set(meta["details"]["per_class_iou"]) == set(MODEL_CLASSES)
    assert all(v is not None and v > 0.3 for v in meta["details"]["per_class_iou"].values())


# --- resume ------------------------------------------------------------------------------------------------


class _Steps(TrainingCallbacks):
    """Records each step's loss; asks to stop after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.losses: list[tuple[int, float]] = []
        self.stop_after = stop_after

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.losses.append((step, metrics["train_loss_step"]))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.losses) >= self.stop_after


def test_a_segmenter_stopped_part_way_resumes_to_the_same_weights(studio: Studio, tmp_path: Path) -> None:
    """The small LR-ASPP with the default augmentation (random crops and flips of image and map):
    6 steps stopped after 4, part-way through epoch 2, and resumed, equal 6 uninterrupted steps."""
    _project(studio, tmp_path, "resume", 20, ignored=4)  # 12 training images: 3 steps of 4
    items = _items(studio, "resume", ["train", "val"])
    config = {
        "model": "lraspp_mobilenet_v3_small",
        "image_size": 64,
        "epochs": 2,
        "batch_size": 4,
        "loss": "ce+dice",
        "class_weights": "balanced",
        "log_every_n_steps": 1,
        "seed": 1,
        "early_stopping": False,
    }

    def spec(folder: str, resume_from: str | None = None) -> TrainSpec:
        return TrainSpec(
            task=TASK,
            config=config,
            classes=MODEL_CLASSES,
            train=[(it.path, it.target) for it in items if it.subset == "train"],
            val=[(it.path, it.target) for it in items if it.subset == "val"],
            workdir=str(tmp_path / folder),
            resume_from=resume_from,
        )

    straight_steps, first, second = _Steps(), _Steps(stop_after=4), _Steps()
    straight = train(spec("straight"), straight_steps)
    stopped = train(spec("stopped"), first)
    assert stopped.status == "stopped" and stopped.step == 4 and stopped.last is not None
    resumed: TrainResult = train(spec("resumed", stopped.last["path"]), second)
    assert resumed.status == "completed" and resumed.step == straight.step == 6
    assert first.losses + second.losses == straight_steps.losses
    a = read_checkpoint(str((straight.last or {})["path"]))["state_dict"]
    b = read_checkpoint(str((resumed.last or {})["path"]))["state_dict"]
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert resumed.final_metrics == straight.final_metrics and "val_miou" in resumed.final_metrics


# --- refused before a job is queued ------------------------------------------------------------------------


def test_segmentation_projects_that_cannot_train_are_refused(studio: Studio, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 50, 0, 0)).save(folder / f"{i}.png")
    projects.create_project(studio, name="bare", task=TASK)
    with pytest.raises(BadRequest, match="has no split yet"):
        experiments.start_experiment(studio, project="bare")
    assert run_import(studio, "bare", folder)["status"] == "succeeded"
    splits.create_split(studio, project="bare", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match="at least one class to train a segmentation model"):
        experiments.start_experiment(studio, project="bare")

    # classes, but nothing but ignored regions in the training images
    _project(studio, tmp_path, "crowd", 6)
    with studio.sessions.begin() as s:
        p = projects.find_project(s, "crowd")
        rows = s.scalars(
            select(Annotation)
            .join(Sample, Sample.id == Annotation.sample_id)
            .where(Sample.project_id == p.id)
        ).all()
        for a in rows:
            a.geometry = {**(a.geometry or {}), "iscrowd": True}
    with pytest.raises(BadRequest, match="no pixels of a class other than background"):
        experiments.start_experiment(studio, project="crowd")

    _project(studio, tmp_path, "ok", 6)
    with pytest.raises(
        InvalidInput, match="one weight per class, in this order: background, ellipse, rectangle"
    ):
        experiments.start_experiment(studio, project="ok", config={"class_weights": [1.0, 2.0, 3.0]})
    with pytest.raises(BadRequest, match="nms_iou: unknown key"):
        experiments.start_experiment(studio, project="ok", config={"nms_iou": 0.5})
    with pytest.raises(BadRequest, match="unknown semantic segmentation model 'fcos_resnet18_fpn64'"):
        experiments.start_experiment(studio, project="ok", config={"model": "fcos_resnet18_fpn64"})
    four = experiments.start_experiment(studio, project="ok", config={"class_weights": [0.1, 1, 1, 1]})
    assert four["experiment"]["classes"] == MODEL_CLASSES


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def test_segmentation_models_and_weights_over_the_api(
    client: TestClient, studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    r = client.get("/api/v1/experiments/models", params={"task": TASK})
    assert r.status_code == 200
    names = [m["name"] for m in r.json()["items"]]
    assert names[:6] == [
        "fcn_resnet50",
        "fcn_resnet101",
        "deeplabv3_resnet50",
        "deeplabv3_resnet101",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
    ]
    _project(studio, tmp_path, "api", 6)
    # the weights words reach the config (not taken for a file); offline, a clear 503
    for word in ("backbone", "full"):
        r = client.post("/api/v1/experiments", json={"project": "api", "config": {"pretrained": word}})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable", r.text
    r = client.post("/api/v1/experiments", json={"project": "api", "config": {"model": "nope"}})
    assert r.status_code == 400 and "unknown semantic segmentation model" in r.json()["error"]["message"]
    # the Train page: the task's models, and its form (the classifiers' fields) starts a training
    html = client.get("/projects/api/train").text
    models = html.split('id="tf-model"', 1)[1].split("</select>", 1)[0]
    assert 'value="lraspp_mobilenet_v3_large"' in models and 'value="resnet18"' not in models
    form = {
        "model": "lraspp_mobilenet_v3_small",
        "image_size": "64",
        "epochs": "1",
        "label_smoothing": "0",
        "class_weights": "balanced",
        "augment_flip": "on",
    }
    r = client.post("/projects/api/train/start", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text[:500]
    [exp] = experiments.list_experiments(studio, project="api")["items"]
    assert exp["config"]["pretrained"] == "none" and exp["config"]["class_weights"] == "balanced"
    assert exp["classes"] == MODEL_CLASSES
