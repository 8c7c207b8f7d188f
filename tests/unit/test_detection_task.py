"""The detection and instance segmentation training tasks without a workspace: their config, the
stored target → torchvision target path with joint augmentation, the validation mAP against the
evaluation's function, and one training step of every catalog model with finite losses."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vistudio.errors import BadRequest, ModelUnavailable
from vistudio.ml.detectors import detector_names, get_detector_spec
from vistudio.ml.inference.detection_metrics import PredictedBox, TruthBox, TruthImage, coco_box_metrics
from vistudio.ml.inference.detections import Detections, decode_masks
from vistudio.ml.tasks import get_training
from vistudio.ml.tasks.detection import DetectionConfig, DetectionMAP, truth_rle
from vistudio.ml.training.config import config_warnings, validate_config
from vistudio.ml.training.trainer import resolve_monitor
from vistudio.services.experiments import model_catalog, validate_experiment_config


def _task(task: str = "detection", **config: Any) -> Any:
    cls = get_training(task)
    return cls(classes=["a", "b", "c"], config=validate_config(cls.config_model, config))


def _target(objects: list[dict[str, Any]], w: int = 64, h: int = 48) -> dict[str, Any]:
    return {"width": w, "height": h, "objects": objects}


def _obj(k: int, box: list[float], crowd: bool = False, mask: Any = None) -> dict[str, Any]:
    return {"class": k, "box": box, "iscrowd": crowd, "mask": mask}


# --- config ----------------------------------------------------------------------------------------


def test_config_defaults_and_pretrained_words() -> None:
    det = validate_config(get_training("detection").config_model, {})
    seg = validate_config(get_training("instance_segmentation").config_model, {})
    assert det.model == "fasterrcnn_mobilenet_v3_large_320_fpn" and det.image_size == 320
    assert seg.model == "maskrcnn_resnet50_fpn" and seg.image_size == 512
    assert (det.score_threshold, det.nms_iou, det.detections_per_image) == (0.05, 0.5, 100)
    cls = get_training("detection").config_model
    assert validate_config(cls, {"pretrained": True}).pretrained == "backbone"
    assert validate_config(cls, {"pretrained": False}).pretrained == "none"
    assert validate_config(cls, {"pretrained": " COCO "}).pretrained == "coco"
    with pytest.raises(BadRequest, match=r"pretrained: .*weights file is not supported"):
        validate_config(cls, {"pretrained": "/tmp/weights.pt"})
    for bad in (
        {"detections_per_image": 0},
        {"detections_per_image": 1001},
        {"nms_iou": 0},
        {"score_threshold": 2},
    ):
        with pytest.raises(BadRequest, match=next(iter(bad))):
            validate_config(cls, bad)


def test_validation_of_a_box_task_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty weights cache
    # a model of the other task, an unknown one: 400 naming the known ones
    with pytest.raises(BadRequest, match="unknown detection model 'maskrcnn_resnet50_fpn'"):
        validate_experiment_config("detection", {"model": "maskrcnn_resnet50_fpn"})
    with pytest.raises(BadRequest, match="unknown instance segmentation model 'resnet18'"):
        validate_experiment_config("instance_segmentation", {"model": "resnet18"})
    with pytest.raises(BadRequest, match="trainable_backbone_layers"):
        validate_experiment_config(
            "detection", {"model": "fcos_resnet50_fpn", "trainable_backbone_layers": 6}
        )
    with pytest.raises(BadRequest, match="has no COCO weights"):
        validate_experiment_config("detection", {"model": "fcos_resnet18_fpn64", "pretrained": "coco"})
    # offline, and the hub cache holds no detector weights: a clear model_unavailable
    with pytest.raises(ModelUnavailable):
        validate_experiment_config(
            "detection", {"model": "fcos_resnet50_fpn", "pretrained": "coco"}, weights=_offline()
        )
    cfg = validate_experiment_config("detection", {"model": "fcos_resnet18_fpn64", "image_size": 96})
    assert cfg.monitor == "val_map" and cfg.pretrained == "none"
    seg = validate_experiment_config("instance_segmentation", {"model": "maskrcnn_resnet18_fpn64"})
    assert seg.monitor == "val_mask_map"
    with pytest.raises(BadRequest, match="monitor 'val_loss' is not a metric"):
        validate_experiment_config("detection", {"model": "fcos_resnet18_fpn64", "monitor": "val_loss"})


def _offline() -> Any:
    from vistudio.ml.weights import WeightsPolicy

    return WeightsPolicy(offline=True, offline_because="VISTUDIO_OFFLINE=1")


def test_metric_names_and_monitor_modes() -> None:
    det, seg = get_training("detection"), get_training("instance_segmentation")
    assert "val_loss" not in det.metric_names() and "val_map" in det.metric_names()
    assert {"val_mask_map", "val_mask_map50", "train_loss_mask"} <= set(seg.metric_names())
    assert "train_loss_mask" not in det.metric_names()
    assert det.monitor_mode("train_loss_box_reg") == "min" and det.monitor_mode("val_map50") == "max"
    assert resolve_monitor(det, DetectionConfig(monitor="train_loss")) == ("train_loss", "min")


def test_warnings_for_fixed_and_small_sizes() -> None:
    cls = get_training("detection").config_model
    [fixed] = config_warnings(validate_config(cls, {"model": "ssd300_vgg16", "image_size": 128}))
    assert fixed["code"] == "image_size_fixed" and "300" in fixed["message"]
    [small] = config_warnings(validate_config(cls, {"model": "fasterrcnn_resnet50_fpn", "image_size": 96}))
    assert small["code"] == "image_size_too_small" and small["minimum"] == 128
    assert config_warnings(validate_config(cls, {"model": "fcos_resnet18_fpn64", "image_size": 96})) == []


def test_catalog_per_task() -> None:
    det = model_catalog("detection")["items"]
    seg = model_catalog("instance_segmentation")["items"]
    assert [m["name"] for m in det] == detector_names("detection")
    assert [m["name"] for m in seg] == detector_names("instance_segmentation")
    assert all(not m["masks"] for m in det) and all(m["masks"] for m in seg)
    assert all(isinstance(m["pretrained_cached"], bool) for m in det + seg)
    assert "resnet18" in [m["name"] for m in model_catalog()["items"]]  # classification by default
    assert model_catalog("oriented_detection")["items"][0]["name"] == "fcos_obb_resnet18_fpn64"
    with pytest.raises(BadRequest, match="not available"):
        model_catalog("library")


# --- targets and transforms ------------------------------------------------------------------------


def test_encode_target_keeps_crowd_drops_degenerate_and_checks_classes() -> None:
    task = _task()
    enc = task.encode_target(
        _target(
            [
                _obj(0, [0.1, 0.1, 0.5, 0.5]),
                _obj(1, [0.2, 0.2, 0.0, 0.3]),  # zero width
                _obj(2, [math.nan, 0.1, 0.2, 0.2]),
                _obj(2, [0.0, 0.0, 0.5, 0.5], crowd=True),
            ]
        )
    )
    assert [(o["class"], o["iscrowd"]) for o in enc["objects"]] == [(0, False), (2, True)]
    with pytest.raises(ValueError, match="class index 3"):
        task.encode_target(_target([_obj(3, [0.1, 0.1, 0.2, 0.2])]))
    with pytest.raises(ValueError, match="detection target"):
        task.encode_target(7)


def test_train_transform_builds_torchvision_targets_without_crowd() -> None:
    task = _task(augment={"crop": False, "flip": False, "rotate": False, "color": False})
    img = Image.new("RGB", (64, 48), (10, 20, 30))
    target = task.encode_target(
        _target([_obj(0, [0.25, 0.5, 0.5, 0.25]), _obj(1, [0.0, 0.0, 0.5, 0.5], crowd=True)])
    )
    x, t = task.train_transform({"input_size": [96, 96]})(img, target)
    assert x.dtype == torch.float32 and x.shape == (3, 48, 64) and float(x.max()) <= 1.0
    assert abs(float(x[0, 0, 0]) - 10 / 255) < 1e-6
    assert t["boxes"].tolist() == [[16.0, 24.0, 48.0, 36.0]] and t["labels"].tolist() == [1]
    assert "masks" not in t
    # every object a crowd region: a negative image, empty but well-formed targets
    only_crowd = task.encode_target(_target([_obj(1, [0.0, 0.0, 0.5, 0.5], crowd=True)]))
    _, t = task.train_transform({"input_size": [96, 96]})(img, only_crowd)
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)


def test_augmentation_moves_boxes_and_masks_together() -> None:
    task = _task("instance_segmentation", augment={"crop": True, "flip": True, "rotate": True, "color": True})
    transform = task.train_transform({"input_size": [96, 96]})
    size = 80
    poly = [[0.1, 0.1], [0.6, 0.1], [0.6, 0.5], [0.1, 0.5]]
    target = task.encode_target(
        _target([_obj(2, [0.1, 0.1, 0.5, 0.4], mask={"polygons": [poly]})], size, size)
    )
    img = Image.new("RGB", (size, size))
    torch.manual_seed(0)
    import random

    random.seed(0)
    seen_shapes = set()
    for _ in range(30):
        x, t = transform(img, target)
        h, w = x.shape[-2:]
        seen_shapes.add((h, w))
        assert t["masks"].shape == (len(t["boxes"]), h, w) and t["masks"].dtype == torch.uint8
        assert len(t["labels"]) == len(t["boxes"]) and set(t["labels"].tolist()) <= {3}
        for box, mask in zip(t["boxes"], t["masks"], strict=True):
            x0, y0, x1, y1 = box.tolist()
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            ys, xs = np.nonzero(mask.numpy())
            # the mask lies inside its box (rotation makes the box enclose the rotated box)
            assert (
                xs.min() >= x0 - 1.5
                and xs.max() <= x1 + 0.5
                and ys.min() >= y0 - 1.5
                and ys.max() <= y1 + 0.5
            )
    assert len(seen_shapes) > 1  # the crop changed the size at least once


def test_polygon_and_rle_masks_rasterise_to_the_same_pixels() -> None:
    from faster_coco_eval.core import mask as mask_utils

    from vistudio.ml.inference.detection_matching import object_rle
    from vistudio.ml.tasks.detection import _rasterise

    # a triangle and a hexagon with slanted edges: boundary pixels are where rasterisers differ
    tri = [[0.1, 0.1], [0.9, 0.2], [0.3, 0.85]]
    hexagon = [[0.5, 0.05], [0.9, 0.3], [0.88, 0.7], [0.5, 0.95], [0.12, 0.7], [0.1, 0.3]]
    for ring in (tri, hexagon):
        poly = {"polygons": [ring]}
        obj = _obj(0, [0.1, 0.05, 0.8, 0.9], mask=poly)
        rle = truth_rle(obj, 40, 20)
        drawn = _rasterise([obj], 40, 20)[0].numpy()
        decoded = decode_masks([rle])[0]
        # training masks are the evaluation's ground truth, pixel for pixel
        assert decoded.shape == drawn.shape == (20, 40) and drawn.sum() > 0
        assert np.array_equal(drawn, decoded)
        evaluation = decode_masks([object_rle(poly, [4.0, 1.0, 36.0, 19.0], width=40, height=20)])[0]
        assert np.array_equal(drawn, evaluation)
        # and pycocotools' own polygon rasterisation
        flat = [c for x, y in ring for c in (x * 40, y * 20)]
        reference = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([flat], 20, 40)))
        assert np.array_equal(drawn, reference)
    # an RLE stored at another size is resized to the decoded image (nearest neighbour)
    resized = _rasterise([_obj(0, [0.25, 0.25, 0.5, 0.5], mask=rle)], 80, 40)[0].numpy()
    assert resized.shape == (40, 80)
    assert np.array_equal(resized, np.repeat(np.repeat(decoded, 2, axis=0), 2, axis=1))
    # no mask: the box, filled; no objects: an empty stack at the image size
    boxed = _rasterise([_obj(1, [0.25, 0.5, 0.5, 0.25])], 40, 20)[0].numpy()
    assert boxed.sum() == 20 * 5 and boxed[10:15, 10:30].all()
    assert tuple(_rasterise([], 40, 20).shape) == (0, 20, 40)


# --- validation mAP --------------------------------------------------------------------------------


def test_validation_map_is_the_evaluation_function() -> None:
    metric = DetectionMAP(3, masks=False)
    truths = [
        _target([_obj(0, [0.1, 0.1, 0.4, 0.4]), _obj(1, [0.5, 0.5, 0.3, 0.3], crowd=True)], 100, 50),
        _target([], 100, 50),  # a negative image
    ]
    dets = [
        Detections(
            np.array([[10.0, 5.0, 50.0, 25.0], [50.0, 25.0, 80.0, 40.0]]),
            np.array([0, 1]),
            np.array([0.9, 0.8], np.float32),
        ),
        Detections(np.array([[1.0, 1.0, 20.0, 20.0]]), np.array([2]), np.array([0.7], np.float32)),
    ]
    metric.update(dets, truths)
    out = metric.compute()
    ref = coco_box_metrics(
        truths=[
            TruthImage(
                1,
                100,
                50,
                [TruthBox(0, (10.0, 5.0, 40.0, 20.0)), TruthBox(1, (50.0, 25.0, 30.0, 15.0), True)],
            ),
            TruthImage(2, 100, 50, []),
        ],
        predictions={
            1: [
                PredictedBox(0, (10.0, 5.0, 40.0, 20.0), 0.9),
                PredictedBox(1, (50.0, 25.0, 30.0, 15.0), 0.8),
            ],
            2: [PredictedBox(2, (1.0, 1.0, 19.0, 19.0), 0.7)],
        },
        class_ids=range(3),
    )
    assert float(out["map"]) == pytest.approx(ref.ap, abs=1e-12) and float(out["map50"]) == 1.0
    assert out["per_class"].tolist()[0] == [ref.per_class[0].ap, ref.per_class[0].ap50]
    scalars, details = _task().summarise("val", out)
    assert set(scalars) == {"val_map", "val_map50", "val_map75"}
    assert details["per_class"]["a"] == {"ap": 1.0, "ap50": 1.0} and details["per_class"]["b"]["ap"] == -1.0
    metric.reset()
    assert metric.truths == [] and metric.predictions == []


# --- every catalog model: one training step ------------------------------------------------------


# the base and large DINOv3 detectors are the small ones' code at a larger size (ten seconds each
# just to initialise at random)
@pytest.mark.parametrize(
    "name",
    [n for n in detector_names() if not (n.startswith("fcos_dinov3_") and n.endswith(("_base", "_large")))],
)
def test_one_training_step_of_every_catalog_model(name: str) -> None:
    spec = get_detector_spec(name)
    task = _task(spec.task, model=name, image_size=96, pretrained="none", detections_per_image=10)
    torch.manual_seed(0)
    model, info = task.build_model()
    assert info.extra["image_size"] == (spec.fixed_size or 96)
    transform = task.train_transform(task.preprocess(info))
    poly = {"polygons": [[[0.2, 0.2], [0.7, 0.2], [0.7, 0.6], [0.2, 0.6]]]}
    samples = [
        transform(
            Image.new("RGB", (120, 96), (200, 30, 30)),
            task.encode_target(_target([_obj(0, [0.2, 0.2, 0.5, 0.4], mask=poly)], 120, 96)),
        ),
        transform(Image.new("RGB", (96, 96), (30, 30, 200)), task.encode_target(_target([], 96, 96))),
    ]
    batch = task.collate(samples)
    model.train()
    loss, parts, _ = task.forward(model, batch, task.build_loss([]))
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) > 0
    assert set(parts) == set(task.build_metrics("train")["losses"].names)
    loss.backward()
    model.eval()
    with torch.no_grad():
        none, dets, _ = task.forward(
            model, (batch[0], [{"width": 240, "height": 192}, {"width": 96, "height": 96}]), None
        )
    assert none is None and len(dets) == 2 and all(isinstance(d, Detections) for d in dets)
    assert all((d.boxes[:, 2] <= 240).all() for d in dets)
    assert (dets[0].masks is not None) == spec.masks
