"""The semantic segmentation training task without a workspace: its classes (background first),
config and weights policy, label maps (polygons, RLE at another size, ignored regions on top), the
joint augmentation of image and map, the loss, the validation metric on the prediction contract,
and every catalog model building with logits at the input's size (random init, offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vistudio.errors import BadRequest, ModelUnavailable
from vistudio.ml.inference.segmentation_metrics import confusion_histogram, segmentation_scores
from vistudio.ml.preprocess import eval_array
from vistudio.ml.segmenters import (
    SEGMENTERS,
    SegmentationModel,
    _hub_file,
    build_segmenter,
    get_segmenter_spec,
    segmenter_names,
)
from vistudio.ml.tasks import get_task, get_training
from vistudio.ml.tasks import semantic_segmentation as seg
from vistudio.ml.training.config import Augment, config_warnings, validate_config
from vistudio.ml.training.trainer import resolve_monitor
from vistudio.ml.weights import WeightsPolicy
from vistudio.services.experiments import model_catalog, validate_experiment_config

CLASSES = ["background", "cat", "dog"]


def _task(classes: list[str] = CLASSES, **config: Any) -> seg.SemanticSegmentationTask:
    cls = get_training("semantic_segmentation")
    task = cls(classes=classes, config=validate_config(cls.config_model, config))
    assert isinstance(task, seg.SemanticSegmentationTask)
    return task


def _obj(k: int, box: list[float], mask: Any, crowd: bool = False) -> dict[str, Any]:
    return {"class": k, "box": box, "iscrowd": crowd, "mask": mask}


def _rect(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"polygons": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]}


def _offline() -> WeightsPolicy:
    return WeightsPolicy(offline=True, offline_because="VISTUDIO_OFFLINE=1")


# --- classes --------------------------------------------------------------------------------------


def test_the_model_classes_put_background_first() -> None:
    cls = get_training("semantic_segmentation")
    assert cls.model_classes(["dog", "cat"]) == ["background", "cat", "dog"]
    # the project's own background class moves to index 0, once
    assert cls.model_classes(["road", "background", "car"]) == ["background", "car", "road"]
    assert cls.model_classes([]) == ["background"]
    assert cls.min_classes == 1 and cls.model_noun == "segmentation model"
    with pytest.raises(BadRequest, match="at most 255 classes"):
        cls.model_classes([f"c{i:03d}" for i in range(255)])
    # the other tasks keep the project's classes as they are
    assert get_training("classification").model_classes(["b", "a"]) == ["b", "a"]
    assert get_training("detection").model_classes(["a", "b"]) == ["a", "b"]


def test_the_task_spec_is_a_segmenter_with_objects_not_a_detector() -> None:
    spec = get_task("semantic_segmentation")
    assert spec.can_train and spec.has_objects and spec.object_kinds == ("polygon", "mask_rle")
    assert spec.dense and not spec.is_detector and not spec.masks
    assert get_task("detection").is_detector and get_task("instance_segmentation").is_detector
    assert not get_task("classification").is_detector


# --- config -----------------------------------------------------------------------------------------


def test_config_defaults_and_words() -> None:
    cls = get_training("semantic_segmentation")
    cfg = validate_config(cls.config_model, {})
    assert isinstance(cfg, seg.SemanticSegmentationConfig)
    assert (cfg.model, cfg.pretrained, cfg.image_size, cfg.lr, cfg.loss, cfg.batch_size) == (
        "lraspp_mobilenet_v3_large",
        "none",
        256,
        0.01,
        "ce",
        8,
    )
    assert cfg.class_weights == "none" and resolve_monitor(cls, cfg) == ("val_miou", "max")
    assert validate_config(cls.config_model, {"pretrained": True}).pretrained == "backbone"
    assert validate_config(cls.config_model, {"pretrained": False}).pretrained == "none"
    assert validate_config(cls.config_model, {"pretrained": " COCO "}).pretrained == "full"
    assert validate_config(cls.config_model, {"pretrained": "Full"}).pretrained == "full"
    with pytest.raises(BadRequest, match=r"pretrained: .*weights file is not supported"):
        validate_config(cls.config_model, {"pretrained": "/tmp/w.pt"})
    for bad, key in (
        ({"loss": "focal"}, "loss"),
        ({"class_weights": [1.0]}, "class_weights"),
        ({"class_weights": [0.0, 0.0]}, "class_weights"),
        ({"class_weights": "inverse"}, "class_weights"),
        ({"image_size": 16}, "image_size"),
        ({"score_threshold": 0.5}, "score_threshold"),  # a detector's key
        ({"label_smoothing": 0.6}, "label_smoothing"),
    ):
        with pytest.raises(BadRequest, match=key):
            validate_config(cls.config_model, bad)
    small = config_warnings(validate_config(cls.config_model, {"image_size": 48}))
    assert [w["code"] for w in small] == ["image_size_too_small"] and "lraspp_mobilenet_v3_large" in small[0][
        "message"
    ]
    assert (
        config_warnings(
            validate_config(cls.config_model, {"image_size": 48, "model": "lraspp_mobilenet_v3_small"})
        )
        == []
    )
    assert [w["code"] for w in config_warnings(validate_config(cls.config_model, {"image_size": 1500}))] == [
        "image_size_large"
    ]


def test_the_weights_policy_and_the_config_checks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))  # no weights cached
    with pytest.raises(BadRequest, match="unknown semantic segmentation model 'resnet18'"):
        validate_experiment_config("semantic_segmentation", {"model": "resnet18"})
    with pytest.raises(
        BadRequest, match=r"has no segmentation .*weights; use pretrained 'backbone' or 'none'"
    ):
        validate_experiment_config(
            "semantic_segmentation", {"model": "deeplabv3plus_resnet50", "pretrained": "full"}
        )
    with pytest.raises(BadRequest, match=r"batch_size: deeplabv3_mobilenet_v3_large .* at least 2"):
        validate_experiment_config(
            "semantic_segmentation", {"model": "deeplabv3_mobilenet_v3_large", "batch_size": 1}
        )
    validate_experiment_config(
        "semantic_segmentation", {"model": "lraspp_mobilenet_v3_small", "batch_size": 1}
    )
    # offline and nothing cached: a clear model_unavailable naming the settings, for both kinds
    for pretrained in ("backbone", "full"):
        with pytest.raises(ModelUnavailable, match=r"downloads are off .*pretrained: none") as err:
            validate_experiment_config(
                "semantic_segmentation", {"pretrained": pretrained}, weights=_offline()
            )
        assert err.value.details["model"] == "lraspp_mobilenet_v3_large"
        assert err.value.details["expected_file"].startswith(
            ("mobilenet_v3_large", "lraspp_mobilenet_v3_large")
        )
    with pytest.raises(ModelUnavailable, match="downloads are off"):
        build_segmenter("lraspp_mobilenet_v3_small", 3, pretrained="backbone", weights=_offline())
    # pretrained none needs nothing
    cfg = validate_experiment_config("semantic_segmentation", {}, weights=_offline())
    assert cfg.monitor == "val_miou"


def test_backbone_and_full_weights_load_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same path as a real download's second use: the files in torch hub's cache (written here
    from fresh networks, since the suite is offline) are what the built models hold."""
    from torchvision import models as tvm
    from torchvision.models import segmentation as tvs

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = get_segmenter_spec("lraspp_mobilenet_v3_small")
    backbone = tvm.mobilenet_v3_small(weights=None)
    _hub_file(spec.backbone_weights).parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone.state_dict(), _hub_file(spec.backbone_weights))
    model, info = build_segmenter("lraspp_mobilenet_v3_small", 3, pretrained="backbone", weights=_offline())
    assert info.pretrained == str(spec.backbone_weights)
    got = model.net.backbone.state_dict()
    want = backbone.features.state_dict()
    assert got.keys() <= want.keys() and all(torch.equal(v, want[k]) for k, v in got.items())

    full = get_segmenter_spec("lraspp_mobilenet_v3_large")
    voc = tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    torch.save(voc.state_dict(), _hub_file(full.full_weights))
    model, info = build_segmenter("lraspp_mobilenet_v3_large", 3, pretrained="full", weights=_offline())
    assert info.pretrained == str(full.full_weights)
    assert torch.equal(model.net.backbone["16"][0].weight, voc.backbone["16"][0].weight)
    head = model.net.classifier
    assert head.low_classifier.out_channels == head.high_classifier.out_channels == 3
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 80)).shape == (1, 3, 48, 80)
    # the task's catalog says what is cached
    item = next(
        m for m in get_training("semantic_segmentation").catalog() if m["name"] == "lraspp_mobilenet_v3_large"
    )
    assert item["weights_cached"] == {"backbone": False, "full": True} and item["pretrained_cached"]

    # FCN/DeepLabV3's COCO weights carry an auxiliary head: dropped; the class convolution replaced
    fcn = get_segmenter_spec("fcn_resnet50")
    voc_fcn = tvs.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    torch.save(voc_fcn.state_dict(), _hub_file(fcn.full_weights))
    model, _ = build_segmenter("fcn_resnet50", 5, pretrained="full", weights=_offline())
    assert model.net.aux_classifier is None and model.net.classifier[4].out_channels == 5
    rebuilt, _ = build_segmenter("fcn_resnet50", 5)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()  # a checkpoint loads over it


# --- the catalog --------------------------------------------------------------------------------------


def test_the_catalog_lists_every_model() -> None:
    names = segmenter_names()
    expected = {
        "fcn_resnet50",
        "fcn_resnet101",
        "deeplabv3_resnet50",
        "deeplabv3_resnet101",
        "deeplabv3_mobilenet_v3_large",
        "lraspp_mobilenet_v3_large",
        "deeplabv3plus_resnet50",
        "deeplabv3plus_mobilenet_v3_large",
        "lraspp_mobilenet_v3_small",
        "deeplabv3plus_resnet18",
        "dinov3_vit_small",
        "dinov3_vit_base",
        "dinov3_vit_large",
    }
    assert set(names) == expected
    items = model_catalog("semantic_segmentation")["items"]
    assert [m["name"] for m in items] == names
    lraspp = next(m for m in items if m["name"] == "lraspp_mobilenet_v3_large")
    assert lraspp["params_millions"] == 3.2 and lraspp["pretrained"] == ["none", "backbone", "full"]
    plus = next(m for m in items if m["name"] == "deeplabv3plus_resnet18")
    assert plus["pretrained"] == ["none", "backbone"] and plus["family"] == "deeplabv3plus"
    dino = next(m for m in items if m["name"] == "dinov3_vit_small")
    assert dino["pretrained"] == ["none", "backbone"] and dino["family"] == "dinov3_linear"
    assert all(m["task"] == "semantic_segmentation" and m["mean"] == [0.485, 0.456, 0.406] for m in items)


# the larger DINOv3 ViTs are the small one's code with wider and more layers (their sizes are checked
# in test_dinov3), and a random ViT-L takes ten seconds to initialise
@pytest.mark.parametrize(
    "name", sorted(n for n in SEGMENTERS.entries if n not in ("dinov3_vit_base", "dinov3_vit_large"))
)
def test_every_catalog_model_gives_logits_at_the_input_size(name: str) -> None:
    """Random init (nothing downloaded); a non-square input of a side that no stride divides. All
    of them, the ResNet-101 ones too: building one takes under a second here."""
    torch.manual_seed(0)
    model, info = build_segmenter(name, 4)
    assert isinstance(model, SegmentationModel) and info.num_classes == 4 and info.pretrained is None
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 37, 53))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, 37, 53) and torch.isfinite(out).all()
    # batch norm settles within tens of steps (see BN_MOMENTUM), whatever torchvision set
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 for m in norms)


def test_a_small_model_trains_a_step_and_freezes_its_backbone() -> None:
    model, info = build_segmenter("deeplabv3plus_resnet18", 3, freeze_backbone=True)
    assert info.frozen_backbone
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("net.backbone.") for n in trainable)
    model.train()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)


def test_a_segmenter_exports_to_onnx_with_the_same_logits(tmp_path: Path) -> None:
    import onnxruntime as ort

    from vistudio.ml.export import DEFAULT_OPSET
    from vistudio.ml.export.models import export_onnx

    model, _ = build_segmenter("lraspp_mobilenet_v3_large", 3)
    model.eval()
    dest = export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64), props={}, opset=DEFAULT_OPSET)
    x = torch.randn(3, 3, 64, 64)
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == (3, 3, 64, 64) and np.abs(out - ref).max() < 1e-4


def test_a_checkpoint_rebuilds_from_the_segmenter_catalog(tmp_path: Path) -> None:
    from vistudio.ml.checkpoint import load_checkpoint, save_checkpoint

    model, _ = build_segmenter("lraspp_mobilenet_v3_small", 3)
    meta = {"model": "lraspp_mobilenet_v3_small", "task": "semantic_segmentation", "classes": CLASSES}
    path = save_checkpoint(tmp_path / "c.pt", model, {**meta, "preprocess": {"input_size": [64, 64]}})
    loaded, _ = load_checkpoint(path)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# --- label maps -----------------------------------------------------------------------------------------


def test_label_maps_of_polygons_with_later_objects_on_top_and_ignored_regions_last() -> None:
    target = {
        "width": 40,
        "height": 20,
        "objects": [
            _obj(2, [0.5, 0.0, 0.5, 1.0], _rect(0.5, 0.0, 1.0, 1.0)),  # the right half: dog (2)
            _obj(-1, [0.0, 0.0, 0.25, 0.5], _rect(0.0, 0.0, 0.25, 0.5)),  # class-less: ignored
            _obj(1, [0.25, 0.0, 0.5, 1.0], _rect(0.25, 0.0, 0.75, 1.0)),  # cat, over part of the dog
            _obj(2, [0.0, 0.5, 0.25, 0.5], _rect(0.0, 0.5, 0.25, 1.0), crowd=True),  # a crowd: ignored
            _obj(0, [0.9, 0.9, 0.1, 0.1], _rect(0.9, 0.9, 1.0, 1.0)),  # the project's background class
        ],
    }
    m = seg.label_map(target, 40, 20)
    assert m.dtype == np.uint8 and m.shape == (20, 40)
    assert (m[:, 10:30] == 1).all()  # the cat, painted after the dog
    assert (m[:, 30:36] == 2).all()
    assert (m[18:, 36:] == 0).all()  # background painted by a background object
    assert (m[:10, :10] == 255).all() and (m[10:, :10] == 255).all()  # both ignored regions
    assert set(np.unique(m).tolist()) == {0, 1, 2, 255}
    # another size: the normalised polygons scale with it
    small = seg.label_map(target, 8, 4)
    assert small.shape == (4, 8) and (small[:, 2:6] == 1).all() and (small[:, :2] == 255).all()
    # the same pixels as the evaluation's ground truth of instance segmentation (pycocotools)
    from vistudio.ml.inference.detections import decode_masks
    from vistudio.ml.tasks.detection import truth_rle

    cat = decode_masks([truth_rle(target["objects"][2], 40, 20)])[0].astype(bool)
    assert (m[cat] == 1).all() and cat.sum() == (m == 1).sum()


def test_label_maps_of_rle_masks_at_another_size_and_of_no_objects() -> None:
    from vistudio.ml.inference.detections import encode_masks

    stored = np.zeros((10, 20), bool)
    stored[2:8, 5:15] = True
    rle = encode_masks(stored[None])[0]
    target = {"width": 20, "height": 10, "objects": [_obj(1, [0.25, 0.2, 0.5, 0.6], rle)]}
    assert (seg.label_map(target, 20, 10) == stored.astype(np.uint8)).all()
    # a decoded size twice as large: the RLE resized nearest, every pixel doubled
    big = seg.label_map(target, 40, 20)
    assert (big == np.kron(stored, np.ones((2, 2), bool)).astype(np.uint8)).all()
    # an ignored RLE region (a class-less mask of an imported PNG's 255 pixels)
    target["objects"].append(_obj(-1, [0.25, 0.2, 0.25, 0.6], {**encode_masks(stored[None])[0]}))
    assert set(np.unique(seg.label_map(target, 20, 10)).tolist()) == {0, 255}
    assert (seg.label_map({"width": 5, "height": 3, "objects": []}, 5, 3) == 0).all()
    with pytest.raises(ValueError, match="positive size"):
        seg.label_map(target, 0, 3)


def test_targets_are_checked_and_their_problems_named() -> None:
    task = _task()
    target = {
        "width": 30,
        "height": 20,
        "objects": [
            _obj(1, [0.1, 0.1, 0.2, 0.2], _rect(0.1, 0.1, 0.3, 0.3)),
            _obj(-1, [0.5, 0.5, 0.2, 0.2], _rect(0.5, 0.5, 0.7, 0.7)),
            _obj(2, [0.5, 0.5, 0.0, 0.2], None),  # no area: dropped
        ],
    }
    encoded = task.encode_target(target)
    assert [o["class"] for o in encoded["objects"]] == [1, -1] and encoded["objects"][1]["iscrowd"]
    with pytest.raises(ValueError, match="class index 3"):
        task.encode_target({**target, "objects": [_obj(3, [0, 0, 1, 1], None)]})
    with pytest.raises(ValueError, match="segmentation target"):
        task.encode_target([1, 2])
    cls = get_training("semantic_segmentation")
    assert cls.targets_problem([target]) is None
    only_ignored = {**target, "objects": [target["objects"][1], {**target["objects"][0], "iscrowd": True}]}
    only_background = {**target, "objects": [_obj(0, [0, 0, 1, 1], _rect(0, 0, 1, 1))]}
    for bad in ([only_ignored], [only_background], [{**target, "objects": []}]):
        problem = cls.targets_problem(bad)
        assert problem is not None and "no pixels of a class other than background" in problem


# --- transforms ----------------------------------------------------------------------------------------


def _coded_image(size: tuple[int, int] = (48, 32)) -> tuple[Image.Image, dict[str, Any]]:
    """An image whose colour says the class of each pixel (cat red, dog blue, background grey) and
    its target; the shapes are not symmetric, so a flip shows."""
    w, h = size
    target = {
        "width": w,
        "height": h,
        "objects": [
            _obj(1, [0.05, 0.1, 0.35, 0.5], _rect(0.05, 0.1, 0.4, 0.6)),
            _obj(2, [0.6, 0.4, 0.3, 0.5], {"polygons": [[[0.6, 0.4], [0.95, 0.45], [0.7, 0.9]]]}),
        ],
    }
    labels = seg.label_map(target, w, h)
    palette = np.array([[128, 128, 128], [255, 0, 0], [0, 0, 255]], np.uint8)
    return Image.fromarray(palette[labels]), target


def _decode(image: torch.Tensor) -> np.ndarray:
    """The class each pixel's colour says (nearest palette colour)."""
    palette = torch.tensor([[128, 128, 128], [255, 0, 0], [0, 0, 255]], dtype=torch.float32)
    pixels = image.float().permute(1, 2, 0).reshape(-1, 3)
    return torch.cdist(pixels, palette).argmin(1).reshape(image.shape[1:]).numpy()


def test_joint_augmentation_keeps_image_and_map_aligned() -> None:
    img, target = _coded_image((96, 64))
    preprocess = _task(image_size=64).preprocess(build_segmenter("lraspp_mobilenet_v3_small", 3)[1])
    every = seg.SegmentationTrainTransform(
        preprocess, Augment(crop=True, flip=True, rotate=True, color=False)
    )
    flipped_seen = rotated_seen = False
    for seed in range(12):
        torch.manual_seed(seed)
        image, mask = every.pair(img, target)
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64) and mask.dtype == torch.uint8
        m = mask.numpy()
        labelled = m != 255
        rotated_seen |= bool((~labelled).any())  # the corners a rotation uncovers are ignored
        # a pixel's colour and its label agree, except along borders (the image is interpolated);
        # the map mirrored (what a flip of one and not the other gives) agrees far less
        decoded = _decode(image)
        assert (decoded[labelled] == m[labelled]).mean() > 0.96
        assert (decoded[:, ::-1][labelled] == m[labelled]).mean() < 0.85
        assert set(np.unique(m).tolist()) <= {0, 1, 2, 255}  # nearest: no blended labels
        flipped_seen |= bool(m[:, :16].__eq__(2).any())  # the dog is on the right unless flipped
    assert flipped_seen and rotated_seen

    # a flip alone, at the image's own size: exactly the mirrored image and map
    square, starget = _coded_image((32, 32))
    flip = seg.SegmentationTrainTransform(
        {**preprocess, "input_size": [32, 32]}, Augment(crop=False, flip=True)
    )
    base = torch.from_numpy(np.array(square)).permute(2, 0, 1)
    base_map = torch.from_numpy(seg.label_map(starget, 32, 32))
    outcomes = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image, mask = flip.pair(square, starget)
        mirrored = torch.equal(mask, base_map.flip(-1))
        assert torch.equal(image, base.flip(-1) if mirrored else base)
        assert mirrored or torch.equal(mask, base_map)
        outcomes.add(mirrored)
    assert outcomes == {True, False}
    # the normalised input the model gets
    torch.manual_seed(0)
    x, t = flip(square, starget)
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and t["mask"].dtype == torch.int64
    assert t["full"] is None


def test_the_eval_transform_is_the_shared_preprocessing_with_maps_at_both_sizes() -> None:
    img, target = _coded_image((48, 32))
    task = _task(image_size=32)
    preprocess = task.preprocess(build_segmenter("lraspp_mobilenet_v3_small", 3)[1])
    assert preprocess == {
        "kind": "segmentation",
        "version": 1,
        "input_size": [32, 32],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "color": "RGB",
    }
    x, t = task.eval_transform(preprocess)(img, target)
    assert np.array_equal(x.numpy(), eval_array(img, preprocess))
    assert t["mask"].shape == (32, 32) and np.array_equal(t["full"], seg.label_map(target, 48, 32))
    _, t2 = task.eval_transform(preprocess)(img.resize((24, 16)), target)  # a JPEG drafted smaller
    assert t2["full"].shape == (32, 48)  # the metrics are at the sample's size all the same


# --- prediction, loss, metrics ---------------------------------------------------------------------------


def test_predict_label_map_is_bilinear_upsampling_then_argmax(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 16, 16)
    logits[3, 4:8, 4:8] = logits[1, 4:8, 4:8]  # ties: the lower class wins, as argmax
    want = F.interpolate(logits[None], size=(37, 61), mode="bilinear", align_corners=False)[0].argmax(0)
    got = seg.predict_label_map(logits, 61, 37)
    assert got.dtype == np.uint8 and got.shape == (37, 61)
    assert np.array_equal(got, want.numpy())
    # a few classes at a time (what a large photo gets): the very same map
    monkeypatch.setattr(seg, "RESIZE_CHUNK", 2 * 37 * 61)
    assert np.array_equal(seg.predict_label_map(logits, 61, 37), want.numpy())
    assert np.array_equal(seg.predict_label_map(logits.numpy(), 61, 37), want.numpy())  # ONNX outputs
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        seg.predict_label_map(logits[None], 61, 37)


def test_the_losses() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, :2] = 255
    ce = seg.SegmentationLoss("ce", 3)(logits, target)
    assert torch.allclose(ce, F.cross_entropy(logits, target, ignore_index=255))
    smoothed = seg.SegmentationLoss("ce", 3, label_smoothing=0.1)(logits, target)
    assert torch.allclose(smoothed, F.cross_entropy(logits, target, ignore_index=255, label_smoothing=0.1))
    weight = torch.tensor([0.2, 1.0, 3.0])
    weighted = seg.SegmentationLoss("ce", 3, weight)(logits, target)
    assert torch.allclose(weighted, F.cross_entropy(logits, target, weight=weight, ignore_index=255))
    # every pixel ignored: 0, not NaN
    assert seg.SegmentationLoss("ce+dice", 3)(logits, torch.full_like(target, 255)).item() == 0.0
    # Dice: near 0 for a confident right answer, near 1 for a confident wrong one
    onehot = F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 50
    dice = seg.SegmentationLoss("dice", 3)
    assert dice(onehot, target).item() < 1e-6 and dice(onehot.roll(1, dims=1), target).item() > 0.99
    both = seg.SegmentationLoss("ce+dice", 3)(logits, target)
    assert torch.allclose(both, ce + dice(logits, target))
    # gradients flow through both
    logits.requires_grad_(True)
    seg.SegmentationLoss("ce+dice", 3)(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_class_weights_balanced_and_given() -> None:
    task = _task(class_weights="balanced")
    targets = [
        task.encode_target(
            {"width": 20, "height": 10, "objects": [_obj(1, [0, 0, 0.5, 1], _rect(0, 0, 0.5, 1))]}
        )
    ]
    assert task.class_pixels(targets).tolist() == [100, 100, 0]
    loss = task.build_loss(targets)
    assert isinstance(loss, seg.SegmentationLoss) and loss.weight is not None
    assert loss.weight.tolist() == pytest.approx([200 / 300, 200 / 300, 0.0])
    given = _task(class_weights=[1.0, 2.0, 3.0]).build_loss(targets)
    assert isinstance(given, seg.SegmentationLoss) and given.weight is not None
    assert given.weight.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(BadRequest, match=r"class_weights has 2 values for 3 classes .*background, cat, dog"):
        _task(class_weights=[1.0, 2.0]).build_loss(targets)


def test_validation_scores_the_prediction_contract_at_the_sample_size() -> None:
    task = _task(image_size=32)
    model, info = task.build_model()
    preprocess = task.preprocess(info)
    images = [_coded_image((48, 32)), _coded_image((30, 44))]
    transform = task.eval_transform(preprocess)
    batch = task.collate([transform(img, task.encode_target(t)) for img, t in images])
    model.eval()
    with torch.no_grad():
        loss, predictions, truths = task.forward(model, batch, task.build_loss([]))
        logits = model(batch[0])
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert [p.shape for p in predictions] == [(32, 48), (44, 30)]
    for i, (p, (_, t)) in enumerate(zip(predictions, images, strict=True)):
        assert np.array_equal(p, seg.predict_label_map(logits[i], t["width"], t["height"]))
        assert np.array_equal(truths[i], seg.label_map(t, t["width"], t["height"]))
    metrics = task.build_metrics("val")
    metrics.update(predictions, truths)
    scalars, details = task.summarise("val", metrics.compute())
    hist = sum(confusion_histogram(t, p, 3) for p, t in zip(predictions, truths, strict=True))
    expected = segmentation_scores(hist)
    assert scalars["val_miou"] == expected.miou and scalars["val_pixel_accuracy"] == expected.pixel_accuracy
    assert set(scalars) == {"val_miou", "val_pixel_accuracy", "val_mean_class_accuracy", "val_dice"}
    assert set(details["per_class_iou"]) == set(CLASSES) and details["confusion"] == hist.tolist()


def test_training_metrics_on_the_device_equal_the_numpy_histogram() -> None:
    task = _task()
    torch.manual_seed(1)
    preds = torch.randint(0, 3, (2, 9, 7))
    targets = torch.randint(0, 3, (2, 9, 7))
    targets[1, :3] = 255
    train = task.build_metrics("train")
    train.update(preds, targets)
    computed = train.compute()
    expected = confusion_histogram(targets.numpy(), preds.numpy(), 3)
    assert computed["confusion"].tolist() == expected.tolist()
    scalars, details = task.summarise("train", computed)
    assert set(scalars) == {"train_miou", "train_pixel_accuracy"} and details == {}
    assert scalars["train_miou"] == pytest.approx(segmentation_scores(expected).miou)
    # absent classes: None in the details, left out of the mean
    val = task.build_metrics("val")
    val.update([np.zeros((4, 4), np.uint8)], [np.zeros((4, 4), np.uint8)])
    scalars, details = task.summarise("val", val.compute())
    assert scalars["val_miou"] == 1.0 and details["per_class_iou"] == {
        "background": 1.0,
        "cat": None,
        "dog": None,
    }
    # a training forward: the loss and the argmax at the input size
    model, _ = task.build_model()
    model.train()
    x = torch.randn(2, 3, 64, 64)
    masks = torch.randint(0, 3, (2, 64, 64))
    loss, p, t = task.forward(model, (x, masks, [None, None]), task.build_loss([]))
    assert loss.requires_grad and p.shape == (2, 64, 64) and t is masks


def test_metric_names_display_and_checkpoint_meta() -> None:
    cls = get_training("semantic_segmentation")
    names = cls.metric_names()
    assert cls.default_monitor == "val_miou" and {
        "train_loss",
        "val_loss",
        "val_miou",
        "val_pixel_accuracy",
        "val_mean_class_accuracy",
        "val_dice",
        "train_miou",
    } <= set(names)
    display = cls.display()
    assert [m.key for m in display.headline] == ["val_miou", "val_pixel_accuracy", "val_loss"]
    assert [k for k, _ in display.metric_series] == ["train_miou_step", "val_miou", "train_miou"]
    assert cls.monitor_mode("val_loss") == "min" and cls.monitor_mode("val_miou") == "max"
    assert _task().checkpoint_meta() == {"family": "lraspp", "ignore_index": 255}
