"""The ``detect_onnx`` pipeline stage with a small hand-made ONNX detector (fixed boxes given as
fractions of the input image, so the expected outcome of every case is known exactly), and the
box-by-box comparison used by detector exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vistudio.ml.export.detection import detection_parity
from vistudio.ml.inference.detections import Detections, encode_masks
from vistudio.pipelines.builtin import BUILTIN_STAGES, OnnxSessionCache, detect_onnx
from vistudio.pipelines.spec import check_chain, load_spec
from vistudio.pipelines.stage import STAGE_IO, STAGES, Item, StageError

CLASSES = ["cat", "dog"]
# two detections: a dog over the left half (score 0.9), a cat in the bottom-right corner (0.4)
FRACTIONS = [[0.0, 0.0, 0.5, 1.0], [0.75, 0.75, 1.0, 1.0]]
LABELS = [2, 1]  # model labels: 1-based, 0 is the background
SCORES = [0.9, 0.4]


def make_fixed_detector(path: Path, *, task: str = "detection", props: dict[str, str] | None = None) -> Path:
    """An ONNX model of the exported detectors' shape: ``image`` [3, H, W] → ``boxes`` (the
    ``FRACTIONS`` of W and H), ``labels``, ``scores``, with vistudio's metadata."""
    import onnx
    from onnx import TensorProto, helper

    n = len(FRACTIONS)
    nodes = [
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Gather", ["shape", "whwh_index"], ["whwh_int"], axis=0),
        helper.make_node("Cast", ["whwh_int"], ["whwh"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["fractions", "whwh"], ["boxes"]),
        helper.make_node("Identity", ["label_values"], ["labels"]),
        helper.make_node("Identity", ["score_values"], ["scores"]),
    ]
    init = [
        helper.make_tensor("whwh_index", TensorProto.INT64, [4], [2, 1, 2, 1]),
        helper.make_tensor("fractions", TensorProto.FLOAT, [n, 4], np.ravel(FRACTIONS).tolist()),
        helper.make_tensor("label_values", TensorProto.INT64, [n], LABELS),
        helper.make_tensor("score_values", TensorProto.FLOAT, [n], SCORES),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, "height", "width"])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, 4]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [n]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n]),
        ],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    preprocess = {
        "kind": "detection",
        "input_size": [64, 64],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "color": "RGB",
    }
    default = {
        "vistudio": "vistudio-model/1",
        "task": task,
        "model": "fixed",
        "class_names": json.dumps(CLASSES),
        "preprocess": json.dumps(preprocess),
        "input_size": "64,64",
        "score_threshold": "0.05",
    }
    helper.set_model_props(model, default if props is None else props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def detector(tmp_path: Path) -> Path:
    return make_fixed_detector(tmp_path / "fixed.onnx")


def picture(path: Path, size: tuple[int, int] = (80, 40)) -> Path:
    Image.new("RGB", size, (120, 120, 120)).save(path)
    return path


def test_detect_onnx_is_registered_and_chains_like_classify_onnx() -> None:
    assert "detect_onnx" in BUILTIN_STAGES and STAGES.get("detect_onnx") is detect_onnx
    io = STAGE_IO.get("detect_onnx")
    assert io.takes == ("image", "file") and io.gives == "label"
    base = {"name": "p", "version": "1"}
    for stages in (
        [{"name": "detect_onnx", "params": {"model": "m.onnx"}}],  # reads the item's file itself
        [
            {"name": "load"},
            {"name": "resize", "params": {"max_side": 32}},
            {"name": "detect_onnx", "params": {"model": "m.onnx"}},
        ],
    ):
        spec = load_spec({**base, "stages": stages})
        check_chain(spec, {s.name: STAGES.get(s.function) for s in spec.stages})
    with pytest.raises(Exception, match="needs an image"):
        load_spec(
            {**base, "stages": [{"name": "detect_onnx", "params": {"model": "m.onnx"}}, {"name": "blur"}]}
        )


def test_detections_of_the_items_file_in_its_pixels(detector: Path, tmp_path: Path) -> None:
    item = Item(key="a", path=picture(tmp_path / "a.png"))
    out = detect_onnx(item, None, model=str(detector))
    assert out.data["label"] == "1 cat, 1 dog" and out.data["count"] == 2 and "mistaken" not in out.data
    dets = out.data["detections"]
    assert [d["label"] for d in dets] == ["dog", "cat"] and [d["class_index"] for d in dets] == [1, 0]
    assert dets[0]["box"] == [0.0, 0.0, 40.0, 40.0] and dets[1]["box"] == [60.0, 30.0, 80.0, 40.0]
    assert dets[0]["score"] == pytest.approx(0.9) and out.metrics == {
        "detections": 2.0,
        "max_score": pytest.approx(0.9),
    }
    (overlay, name, ext), (saved, name2, ext2) = out.outputs
    assert (name, ext, name2, ext2) == ("overlay", "png", "detections", "json") and saved == out.data
    assert overlay.shape == (40, 80, 3) and overlay.dtype == np.uint8
    assert (overlay != 120).any(axis=2).mean() > 0.01  # boxes and labels drawn over the grey


def test_after_an_image_stage_it_runs_on_that_image(detector: Path) -> None:
    grey = np.full((10, 20), 50, np.uint8)  # a grey H×W image from an earlier stage
    out = detect_onnx(Item(key="g"), grey, model=str(detector))
    assert out.data["detections"][0]["box"] == [0.0, 0.0, 10.0, 10.0]
    assert out.outputs[0][0].shape == (10, 20, 3)


def test_score_threshold_keeps_what_scores_at_least_it(detector: Path, tmp_path: Path) -> None:
    item = Item(key="a", path=picture(tmp_path / "a.png"))
    out = detect_onnx(item, None, model=str(detector), score_threshold=0.5)
    assert [d["label"] for d in out.data["detections"]] == ["dog"] and out.data["label"] == "1 dog"
    out = detect_onnx(item, None, model=str(detector), score_threshold=0.95)
    assert out.data["detections"] == [] and out.data["label"] == "nothing" and "max_score" not in out.metrics


def test_against_ground_truth_each_outcome_is_counted_and_drawn(detector: Path, tmp_path: Path) -> None:
    # truth given at twice the image's size (the sample's size; the file shown smaller): scaled
    objects = [
        {"class": "dog", "box": [0, 0, 82, 80], "iscrowd": False},  # the dog detection: TP
        {"class": "cat", "box": [10, 40, 40, 70], "iscrowd": False},  # nothing there: FN
    ]
    meta = {"objects": objects, "width": 160, "height": 80}
    item = Item(key="a", path=picture(tmp_path / "a.png"), meta=meta)
    out = detect_onnx(item, None, model=str(detector))
    d = out.data
    assert (d["tp"], d["fp"], d["fn"]) == (1, 1, 1) and d["mistaken"] is True
    assert d["outcomes"] == ["tp", "fp"] and d["truth"] == "1 cat, 1 dog"
    assert {k: out.metrics[k] for k in ("tp", "fp", "fn")} == {"tp": 1.0, "fp": 1.0, "fn": 1.0}
    overlay = out.outputs[0][0]
    assert tuple(overlay[20, 0]) == (40, 200, 70)  # the true positive's left edge: green
    assert tuple(overlay[35, 60]) == (230, 40, 40)  # the false positive's left edge: red
    missed = overlay[20:35, 5]  # the missed cat's left edge (x = 5 after scaling), dashed orange
    assert any(tuple(p) == (255, 150, 0) for p in missed) and any(tuple(p) == (120, 120, 120) for p in missed)


def test_a_perfect_image_is_no_mistake_and_crowd_regions_are_ignored(detector: Path, tmp_path: Path) -> None:
    objects = [
        {"class": "dog", "box": [0, 0, 40, 40], "iscrowd": False},
        {"class": "cat", "box": [55, 25, 80, 40], "iscrowd": True},  # a crowd region under the cat
    ]
    item = Item(
        key="a", path=picture(tmp_path / "a.png"), meta={"objects": objects, "width": 80, "height": 40}
    )
    out = detect_onnx(item, None, model=str(detector))
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (1, 0, 0) and out.data["mistaken"] is False
    assert out.data["outcomes"] == ["tp", "ignored"] and out.data["truth"] == "1 dog"
    # an image without objects: every detection is a false positive
    empty = Item(key="b", path=item.path, meta={"objects": [], "width": 80, "height": 40})
    out = detect_onnx(empty, None, model=str(detector))
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (0, 2, 0) and out.data["mistaken"] is True
    # a class the model does not know is missed; a malformed object is skipped
    odd = [{"class": "bird", "box": [0, 0, 40, 40]}, {"class": "dog", "box": [0, "x", 1, 1]}, "junk"]
    out = detect_onnx(Item(key="c", path=item.path, meta={"objects": odd}), None, model=str(detector))
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (0, 2, 1)


def _crop_chain(item: Item, *stages: tuple[Any, dict[str, Any]]) -> Any:
    """The item through ``stages`` (functions and their parameters) as a run chains them."""
    data = None
    for fn, params in stages:
        data = fn(item, data, **params).data
    return data


def test_after_a_crop_the_ground_truth_is_cut_to_the_kept_region(detector: Path, tmp_path: Path) -> None:
    from vistudio.pipelines.builtin import crop, load, resize

    objects = [
        {"class": "dog", "box": [0, 0, 40, 40], "iscrowd": False},  # the left half: cropped away
        {"class": "cat", "box": [65, 32, 80, 40], "iscrowd": False},  # the bottom-right corner: kept
    ]
    image = picture(tmp_path / "a.png")  # 80×40
    # the whole image: both objects found
    whole = detect_onnx(
        Item(key="w", path=image, meta={"objects": objects, "width": 80, "height": 40}),
        None,
        model=str(detector),
    )
    assert (whole.data["tp"], whole.data["fp"], whole.data["fn"]) == (2, 0, 0)
    # the right half, 40×40: the detector's dog box [0, 0, 20, 40] lies where no dog is left (a false
    # positive), its cat box [30, 30, 40, 40] on the cat cut to [25, 32, 40, 40] (IoU 0.57)
    item = Item(key="a", path=image, meta={"objects": objects, "width": 80, "height": 40})
    data = _crop_chain(item, (load, {}), (crop, {"box": [40, 0, 40, 40]}))
    out = detect_onnx(item, data, model=str(detector))
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (1, 1, 0) and out.data["truth"] == "1 cat"
    assert out.data["outcomes"] == ["fp", "tp"]
    # a resize, then a crop in the resized image's pixels, then a crop of that: followed in order
    doubled = [{**o, "box": [2 * v for v in o["box"]]} for o in objects]  # the sample's size: 160×80
    item = Item(key="b", path=image, meta={"objects": doubled, "width": 160, "height": 80})
    data = _crop_chain(
        item,
        (load, {}),
        (resize, {"max_side": 40}),  # 80×40 → 40×20
        (crop, {"box": [10, 0, 30, 20]}),  # → 30×20, x 10..40 of the resized image
        (crop, {"box": [10, 0, 20, 20]}),  # → 20×20, x 20..40 of it: its right half
    )
    out = detect_onnx(item, data, model=str(detector))
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (1, 1, 0) and out.data["truth"] == "1 cat"
    # loading the file again undoes the crops: both objects are back
    item = Item(key="c", path=image, meta={"objects": objects, "width": 80, "height": 40})
    data = _crop_chain(item, (load, {}), (crop, {"box": [40, 0, 40, 40]}), (load, {}))
    out = detect_onnx(item, data, model=str(detector))
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (2, 0, 0)


def test_predict_and_the_stage_keep_what_scores_at_least_the_files_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exported detector records the threshold to use (e.g. the evaluation's best-F1
    confidence); predict and detect_onnx apply it by default, an explicit threshold wins."""
    from vistudio.cli.main import main

    props = {
        "vistudio": "vistudio-model/1",
        "task": "detection",
        "model": "fixed",
        "class_names": json.dumps(CLASSES),
        "preprocess": json.dumps(
            {
                "kind": "detection",
                "input_size": [64, 64],
                "mean": [0.5] * 3,
                "std": [0.2] * 3,
                "scale": 1 / 255,
            }
        ),
        "score_threshold": "0.5",
        "score_threshold_source": "evaluation",
        "graph_score_threshold": "0.05",
    }
    model = make_fixed_detector(tmp_path / "best.onnx", props=props)
    image = picture(tmp_path / "a.png")
    assert main(["--json", "predict", str(model), str(image)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["label"] for d in out["predictions"][0]["detections"]] == ["dog"]
    assert out["model"]["score_threshold"] == 0.5 and out["model"]["score_threshold_source"] == "evaluation"
    assert main(["--json", "predict", str(model), str(image), "--score-threshold", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["label"] for d in out["predictions"][0]["detections"]] == ["dog", "cat"]
    assert out["model"]["score_threshold"] == 0.3 and out["model"]["score_threshold_source"] == "given"
    item = Item(key="a", path=image)
    assert detect_onnx(item, None, model=str(model)).data["label"] == "1 dog"
    assert detect_onnx(item, None, model=str(model), score_threshold=0.3).data["label"] == "1 cat, 1 dog"
    # a damaged recorded threshold is no threshold: everything the graph gave is kept
    for bad in ("nan", "high", "-3"):
        broken = make_fixed_detector(tmp_path / f"bad-{bad}.onnx", props={**props, "score_threshold": bad})
        assert detect_onnx(item, None, model=str(broken)).data["count"] == 2


def test_bad_models_parameters_and_images_are_refused_with_a_reason(detector: Path, tmp_path: Path) -> None:
    item = Item(key="a", path=picture(tmp_path / "a.png"))
    with pytest.raises(StageError, match="model must be a path"):
        detect_onnx(item, None, model="")
    with pytest.raises(StageError, match="model file not found"):
        detect_onnx(item, None, model=str(tmp_path / "nope.onnx"))
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(StageError, match="detect_onnx: not a loadable ONNX model"):
        detect_onnx(item, None, model=str(tmp_path / "text.onnx"))
    classifier = make_fixed_detector(tmp_path / "clf.onnx", task="classification")
    with pytest.raises(StageError, match="is a classification model, not a detector"):
        detect_onnx(item, None, model=str(classifier))
    bare = make_fixed_detector(tmp_path / "bare.onnx", props={"task": "detection"})
    with pytest.raises(StageError, match="has no vistudio metadata"):
        detect_onnx(item, None, model=str(bare))
    for params, message in (
        ({"score_threshold": 1.5}, "score_threshold must be a number in"),
        ({"score_threshold": "high"}, "score_threshold must be a number in"),
        ({"iou": 1.0}, "iou must be a number between 0 and 1"),
        ({"iou": float("nan")}, "iou must be a number between 0 and 1"),
    ):
        with pytest.raises(StageError, match=message):
            detect_onnx(item, None, model=str(detector), **params)
    with pytest.raises(StageError, match="has no image data and no file path"):
        detect_onnx(Item(key="x"), None, model=str(detector))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(StageError, match=r"cannot read broken\.png as an image"):
        detect_onnx(Item(key="b", path=broken), None, model=str(detector))
    with pytest.raises(StageError, match="file not found"):
        detect_onnx(Item(key="m", path=tmp_path / "missing.png"), None, model=str(detector))
    with pytest.raises(StageError, match="expected a uint8 image"):
        detect_onnx(item, np.zeros((4, 4, 3), np.float32), model=str(detector))


def test_the_session_is_loaded_once_per_model_version(detector: Path, tmp_path: Path) -> None:
    OnnxSessionCache.clear()
    item = Item(key="a", path=picture(tmp_path / "a.png"))
    for _ in range(3):
        detect_onnx(item, None, model=str(detector))
    assert OnnxSessionCache.size() == 1
    OnnxSessionCache.clear()


# --- the export's comparison ----------------------------------------------------------------------


def _dets(boxes: list[list[float]], labels: list[int], scores: list[float], masks: Any = None) -> Detections:
    return Detections(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(scores, np.float32),
        masks,
    )


def test_parity_matches_boxes_whatever_their_order() -> None:
    a = _dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1], [0.9, 0.8])
    b = _dets([[20, 20, 40, 40.01], [0, 0, 10, 10]], [1, 0], [0.8002, 0.9])
    v = detection_parity([(a, b)], score_threshold=0.05)
    assert v["passed"] and v["matched"] == 2 and v["faults"] == 0 and v["borderline"] == 0
    assert v["min_box_iou"] == pytest.approx(20 * 20 / (20 * 20.01)) and v[
        "max_abs_score_diff"
    ] == pytest.approx(2e-4, abs=1e-6)
    assert detection_parity([], score_threshold=0.05)["passed"]


@pytest.mark.parametrize(
    ("exported", "why"),
    [
        (_dets([[0, 0, 10, 10]], [1], [0.9]), "box"),  # the same box, another class
        (_dets([[0, 0, 10, 10.5]], [0], [0.9]), "box"),  # IoU 0.95
        (_dets([[0, 0, 10, 10]], [0], [0.902]), "score"),  # |Δscore| 2e-3
        (_dets([], [], []), "box"),  # missing altogether
    ],
)
def test_parity_faults(exported: Detections, why: str) -> None:
    reference = _dets([[0, 0, 10, 10]], [0], [0.9])
    v = detection_parity([(reference, exported)], score_threshold=0.05)
    assert not v["passed"] and v["faults"] >= 1 and v["fault_examples"][0]["why"] == why


def test_parity_forgives_only_near_a_cut() -> None:
    ref = _dets([[0, 0, 10, 10], [30, 30, 40, 40]], [0, 0], [0.9, 0.0505])  # just above the threshold
    exp = _dets([[0, 0, 10, 10]], [0], [0.9])
    v = detection_parity([(ref, exp)], score_threshold=0.05)
    assert v["passed"] and v["borderline"] == 1
    # near the last kept score of a full image (2 detections per image here)
    ref = _dets([[0, 0, 10, 10], [30, 30, 40, 40]], [0, 0], [0.9, 0.5])
    exp = _dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.9, 0.5004])
    v = detection_parity([(ref, exp)], score_threshold=0.05, detections_per_image=2)
    assert v["passed"] and v["borderline"] == 2
    v = detection_parity([(ref, exp)], score_threshold=0.05, detections_per_image=100)
    assert not v["passed"] and v["faults"] == 2


def test_parity_compares_masks() -> None:
    square = np.zeros((1, 20, 20), bool)
    square[0, 2:12, 2:12] = True
    bigger = square.copy()
    bigger[0, 12, 2:12] = True  # IoU 100/110
    a = _dets([[2, 2, 12, 12]], [0], [0.9], encode_masks(square))
    assert (
        detection_parity([(a, _dets([[2, 2, 12, 12]], [0], [0.9], encode_masks(square)))])["min_mask_iou"]
        == 1.0
    )
    v = detection_parity([(a, _dets([[2, 2, 12, 12]], [0], [0.9], encode_masks(bigger)))])
    assert not v["passed"] and v["fault_examples"][0]["why"] == "mask"
    assert v["min_mask_iou"] == pytest.approx(100 / 110)


# --- vistudio predict with a detector ---------------------------------------------------------------


def test_predict_cli_contract_with_a_detector(
    detector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.cli.main import main

    image = picture(tmp_path / "a.png")
    code = main(["--json", "predict", str(detector), str(image), "--save-overlays", str(tmp_path / "o")])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["errors"] == []
    assert out["model"] == {
        "path": str(detector),
        "name": "fixed",
        "task": "detection",
        "classes": CLASSES,
        "score_threshold": 0.05,
        "score_threshold_source": "training",
    }
    (pred,) = out["predictions"]
    assert pred["path"] == str(image) and (pred["width"], pred["height"]) == (80, 40)
    assert pred["detections"][0] == {
        "label": "dog",
        "class_index": 1,
        "score": pytest.approx(0.9),
        "box": [0.0, 0.0, 40.0, 40.0],
    }
    assert pred["overlay"] == str(tmp_path / "o" / "a.png") and Image.open(pred["overlay"]).size == (80, 40)
    # the human table
    assert main(["predict", str(detector), str(image)]) == 0
    text = capsys.readouterr().out
    assert "dog 0.90" in text and "cat 0.40" in text
    # the detector options mean nothing to a classifier
    classifier = make_fixed_detector(tmp_path / "clf.onnx", task="classification")
    code = main(["--json", "predict", str(classifier), str(image), "--score-threshold", "0.5"])
    err = json.loads(capsys.readouterr().out)["error"]
    assert code == 1 and "are for detection models" in err["message"]
