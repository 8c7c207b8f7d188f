"""The detector catalog (``ml/detectors``) and the one detections shape (``ml/inference/detections``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from vistudio.errors import BadRequest, ModelUnavailable
from vistudio.ml import detectors as det
from vistudio.ml.inference.detections import Detections, decode_masks, encode_masks, from_arrays

# --- catalog ------------------------------------------------------------------------------------------


def test_catalog_lists_every_family_per_task() -> None:
    boxes, masks = det.detector_names("detection"), det.detector_names("instance_segmentation")
    assert {"fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fcos_resnet50_fpn"} <= set(
        boxes
    )
    assert {"retinanet_resnet50_fpn_v2", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large"} <= set(boxes)
    assert {"maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet18_fpn64"} == set(masks)
    assert not set(boxes) & set(masks)
    assert det.get_detector_spec("ssd300_vgg16").describe()["fixed_size"] == 300


@pytest.mark.parametrize(
    ("name", "task", "message"),
    [
        ("yolo_v99", None, "unknown detector 'yolo_v99'"),
        ("maskrcnn_resnet50_fpn", "detection", "unknown detection model"),
        ("fcos_resnet50_fpn", "instance_segmentation", "unknown instance segmentation model"),
    ],
)
def test_unknown_or_wrong_task_models_are_refused(name: str, task: str | None, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        det.get_detector_spec(name, task)


def test_bad_build_arguments_are_400s() -> None:
    with pytest.raises(BadRequest, match="at least one class"):
        det.build_detector("fcos_resnet18_fpn64", 0, image_size=96)
    with pytest.raises(BadRequest, match="pretrained must be one of"):
        det.build_detector("fcos_resnet18_fpn64", 2, image_size=96, pretrained="imagenet")
    with pytest.raises(BadRequest, match="has no COCO weights"):
        det.build_detector("fcos_resnet18_fpn64", 2, image_size=96, pretrained="coco")
    with pytest.raises(BadRequest, match=r"trainable_backbone_layers must be 0\.\.5"):
        det.build_detector("fcos_resnet50_fpn", 2, image_size=96, trainable_backbone_layers=9)


def test_offline_missing_weights_fail_at_once_naming_the_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(ModelUnavailable, match="VISTUDIO_OFFLINE"):
        det.build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 2, image_size=128, pretrained="coco")
    with pytest.raises(ModelUnavailable):
        det.check_detector_weights(det.get_detector_spec("retinanet_resnet50_fpn"), "backbone")
    det.check_detector_weights(det.get_detector_spec("retinanet_resnet50_fpn"), "none")  # always fine


def test_image_size_sets_the_internal_resize_and_never_800() -> None:
    model, info = det.build_detector(
        "fcos_resnet18_fpn64", 3, image_size=96, score_threshold=0.3, nms_iou=0.4
    )
    transform = model.transform  # type: ignore[union-attr]
    assert transform.min_size == (96,) and transform.max_size == 96
    assert model.score_thresh == 0.3 and model.nms_thresh == 0.4  # type: ignore[union-attr]
    assert info.extra == {"image_size": 96, "masks": False, "family": "fcos"}
    _ssd, info = det.build_detector("ssdlite320_mobilenet_v3_large", 3, image_size=96)
    assert info.extra["image_size"] == 320  # fixed by the architecture, and said so


@pytest.mark.parametrize(
    "name",
    [
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "retinanet_resnet50_fpn_v2",
        "fcos_resnet50_fpn",
        "ssdlite320_mobilenet_v3_large",
        "maskrcnn_resnet50_fpn",
    ],
)
def test_coco_heads_are_replaced_for_the_project_classes(name: str) -> None:
    """What ``pretrained="coco"`` does after loading the 91-class detector (built here without
    its weights, which cannot be downloaded in the suite): every class-dependent layer is resized."""
    spec = det.get_detector_spec(name)
    kwargs = {} if spec.fixed_size else {"min_size": 96, "max_size": 96}
    model = spec.builder(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    det._replace_heads(model, spec, 4)
    outputs = {n: p.shape[0] for n, p in model.named_parameters() if n.endswith("bias")}
    if spec.family in ("faster_rcnn", "mask_rcnn"):
        assert outputs["roi_heads.box_predictor.cls_score.bias"] == 4
        assert outputs["roi_heads.box_predictor.bbox_pred.bias"] == 16
        if spec.masks:
            assert outputs["roi_heads.mask_predictor.mask_fcn_logits.bias"] == 4
    else:
        head = model.head.classification_head  # type: ignore[union-attr]
        # SSD's heads call their outputs columns
        assert getattr(head, "num_classes", getattr(head, "num_columns", None)) == 4
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 96, 96)])[0]
    assert all(1 <= int(k) <= 3 for k in out["labels"])


# --- detections -----------------------------------------------------------------------------------------


def test_boxes_scale_back_to_the_original_image_and_sort_by_score() -> None:
    d = from_arrays(
        [[10, 10, 20, 30], [0, 0, 50, 50], [40, 40, 60, 60]],
        [1, 3, 2],
        [0.2, 0.9, 0.5],
        input_size=(50, 50),
        original_size=(100, 200),
    )
    assert d.scores.tolist() == pytest.approx([0.9, 0.5, 0.2])
    assert d.labels.tolist() == [2, 1, 0]  # model label k is class k - 1
    assert d.boxes.tolist() == [[0, 0, 100, 200], [80, 160, 100, 200], [20, 40, 40, 120]]  # clipped
    assert d.above(0.5).labels.tolist() == [2, 1]
    assert d.to_list(["a", "b", "c"])[0] == {
        "label": "c",
        "class_index": 2,
        "score": pytest.approx(0.9),
        "box": [0.0, 0.0, 100.0, 200.0],
    }
    assert len(Detections.empty()) == 0 and Detections.empty(masks=True).masks == []


def test_masks_are_resized_thresholded_and_encoded_as_coco_rle() -> None:
    probs = np.zeros((1, 1, 8, 8), np.float32)
    probs[0, 0, 2:6, 1:5] = 0.8
    d = from_arrays([[1, 2, 5, 6]], [1], [0.7], probs, input_size=(8, 8), original_size=(16, 16))
    assert d.masks is not None
    binary = decode_masks(d.masks)
    assert binary.shape == (1, 16, 16)
    ref = coco_mask.decode({"size": d.masks[0]["size"], "counts": d.masks[0]["counts"].encode()})
    assert np.array_equal(binary[0], ref)
    assert binary[0, 5:11, 3:9].all() and binary.sum() == pytest.approx(64, abs=12)


def test_rle_round_trip_equals_pycocotools() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 13, 17)) > 0.6
    rles = encode_masks(masks)
    for m, r in zip(masks, rles, strict=True):
        ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
        assert r["counts"] == ref["counts"].decode() and r["size"] == [13, 17]
    assert np.array_equal(decode_masks(rles).astype(bool), masks)
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []


def _smooth_probabilities(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Mask-R-CNN-like maps: a blob of probability per detection, zero far from it."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((n, 1, h, w), np.float32)
    for k in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, h / 2), rng.uniform(1, w / 2)
        blob = np.exp(-(((yy - cy) / ry) ** 2) - ((xx - cx) / rx) ** 2).astype(np.float32)
        out[k, 0] = np.where(blob > 0.05, blob, 0) * np.float32(rng.uniform(0.6, 1.0))
    out[n // 2 :, 0] += rng.random((n - n // 2, h, w), dtype=np.float32) * np.float32(0.02)
    return out


@pytest.mark.parametrize(
    ("model", "original"), [((28, 40), (161, 97)), ((50, 30), (50, 300)), ((64, 64), (17, 9))]
)
def test_masks_one_at_a_time_equal_resizing_all_maps_at_once(model, original) -> None:
    from vistudio.ml.inference.detections import _resize_probabilities, threshold_resized

    rng = np.random.default_rng(sum(model) + sum(original))
    (iw, ih), (ow, oh) = model, original
    probs = _smooth_probabilities(rng, 6, ih, iw)
    probs[0, 0] = rng.random((ih, iw), dtype=np.float32)  # noise everywhere: the whole frame
    probs[1, 0] = 0  # nothing above the threshold: an empty mask
    full = _resize_probabilities(probs[:, 0], (oh, ow)) >= 0.5
    assert threshold_resized(probs[:, 0], (oh, ow), 0.5) == encode_masks(full)
    boxes = np.tile([0.0, 0.0, iw, ih], (6, 1))
    d = from_arrays(
        boxes, np.ones(6), np.linspace(0.9, 0.4, 6), probs, input_size=model, original_size=original
    )
    assert d.masks == encode_masks(full) and decode_masks(d.masks)[1].sum() == 0


def test_detections_do_not_depend_on_the_batch(tmp_path) -> None:
    from PIL import Image

    from vistudio.ml.inference.pytorch import detect_batches

    torch.manual_seed(0)
    # at 128 px a landscape and a portrait image pad to different sizes (multiples of 32): batched
    # together, both would be padded to 128×128 and get other detections (off by up to 145 px)
    model, _ = det.build_detector("fcos_resnet18_fpn64", 3, image_size=128, score_threshold=0.0)
    rng = np.random.default_rng(3)
    items = []
    for i, (w, h) in enumerate(
        [(192, 128), (128, 192), (192, 128), (160, 160), (128, 192), (192, 128), (140, 100)]
    ):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        items.append((i, str(path), (w * 2, h * 2)))
    meta = {"input_size": [128, 128]}

    def run(batch_size: int) -> dict[int, Detections]:
        found = {}
        for batch in detect_batches(model, items, meta, batch_size=batch_size, device=torch.device("cpu")):
            found.update(zip(batch.items, batch.detections, strict=True))
        return found

    alone, batched = run(1), run(4)
    assert list(batched) == list(range(len(items)))
    assert sum(len(d) for d in alone.values()) > 0
    for i, d in alone.items():
        assert len(batched[i]) == len(d)
        assert np.abs(batched[i].boxes - d.boxes).max(initial=0) <= 1e-4
        assert np.abs(batched[i].scores - d.scores).max(initial=0) <= 1e-5
        assert np.array_equal(batched[i].labels, d.labels)
