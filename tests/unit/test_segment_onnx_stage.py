"""The ``segment_onnx`` pipeline stage with a small hand-made ONNX segmenter whose logits are the
normalised image itself (class 0 the red channel, 1 the green, 2 the blue), so that the label of
every region of a test picture is known: red → background, green → leaf, blue → sky."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vistudio.ml.inference.label_images import read_label_png
from vistudio.pipelines.builtin import BUILTIN_STAGES, OnnxSessionCache, segment_onnx
from vistudio.pipelines.saver import encode_artifact
from vistudio.pipelines.spec import check_chain, load_spec
from vistudio.pipelines.stage import STAGE_IO, STAGES, Item, StageError

CLASSES = ["background", "leaf", "sky"]
COLOURS = [[0, 0, 0], [40, 200, 70], [60, 90, 230]]
SIZE = 8
PREPROCESS = {
    "kind": "segmentation",
    "version": 1,
    "input_size": [SIZE, SIZE],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "scale": 1 / 255,
    "color": "RGB",
}


def props(task: str = "semantic_segmentation") -> dict[str, str]:
    return {
        "vistudio": "vistudio-model/1",
        "task": task,
        "model": "channels",
        "class_names": json.dumps(CLASSES),
        "preprocess": json.dumps(PREPROCESS),
        "input_size": f"{SIZE},{SIZE}",
        "class_colours": json.dumps(COLOURS),
    }


def make_segmenter(path: Path, *, metadata: dict[str, str] | None = None, pooled: bool = False) -> Path:
    """``input`` (N, 3, 8, 8) → ``logits`` (N, 3, 8, 8) equal to the input (``pooled``: (N, 3), the
    shape of a classifier's output), with vistudio's metadata."""
    import onnx
    from onnx import TensorProto, helper

    if pooled:
        node = helper.make_node("ReduceMean", ["input"], ["logits"], axes=[2, 3], keepdims=0)
        out_shape: list[Any] = ["batch", 3]
    else:
        node = helper.make_node("Identity", ["input"], ["logits"])
        out_shape = ["batch", 3, SIZE, SIZE]
    graph = helper.make_graph(
        [node],
        "channels",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props() if metadata is None else metadata)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def segmenter(tmp_path: Path) -> Path:
    return make_segmenter(tmp_path / "channels.onnx")


def picture(path: Path, size: tuple[int, int] = (40, 20)) -> Path:
    """Left half red, right half green above blue."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[: h // 2, w // 2 :] = (0, 255, 0)
    arr[h // 2 :, w // 2 :] = (0, 0, 255)
    Image.fromarray(arr).save(path)
    return path


def reference_map(path: Path) -> np.ndarray:
    """The map the evaluation's functions give for the picture: its preprocessed pixels are the
    logits, upsampled to its size by ``predict_label_map``."""
    from vistudio.ml.preprocess import eval_array, open_rgb
    from vistudio.ml.tasks.semantic_segmentation import predict_label_map

    img = open_rgb(path)
    return predict_label_map(eval_array(img, PREPROCESS), img.width, img.height)


def test_segment_onnx_is_registered_and_chains_like_detect_onnx() -> None:
    assert "segment_onnx" in BUILTIN_STAGES and STAGES.get("segment_onnx") is segment_onnx
    io = STAGE_IO.get("segment_onnx")
    assert io.takes == ("image", "file") and io.gives == "label"
    base = {"name": "p", "version": "1"}
    for stages in (
        [{"name": "segment_onnx", "params": {"model": "m.onnx"}}],  # reads the item's file itself
        [
            {"name": "load"},
            {"name": "resize", "params": {"max_side": 32}},
            {"name": "segment_onnx", "params": {"model": "m.onnx"}},
        ],
    ):
        spec = load_spec({**base, "stages": stages})
        check_chain(spec, {s.name: STAGES.get(s.function) for s in spec.stages})
    with pytest.raises(Exception, match="needs an image"):
        load_spec(
            {**base, "stages": [{"name": "segment_onnx", "params": {"model": "m.onnx"}}, {"name": "blur"}]}
        )


def test_the_items_file_gets_its_label_map_at_its_size(segmenter: Path, tmp_path: Path) -> None:
    path = picture(tmp_path / "a.png")
    out = segment_onnx(Item(key="a", path=path), None, model=str(segmenter))
    d = out.data
    assert (d["width"], d["height"]) == (40, 20) and d["classes_present"] == CLASSES
    assert list(d["class_shares"]) == CLASSES and sum(d["class_shares"].values()) == pytest.approx(1.0)
    assert d["class_shares"]["background"] == pytest.approx(0.5, abs=0.08)
    assert d["class_shares"]["leaf"] == pytest.approx(0.25, abs=0.08)
    assert d["label"].startswith(("leaf ", "sky ")) and "background" not in d["label"]
    palette = out.artifacts["label_map"]
    assert isinstance(palette, Image.Image) and palette.mode == "P" and palette.size == (40, 20)
    labels = np.asarray(palette)
    assert np.array_equal(labels, reference_map(path))
    # each region's inside has its class: red background, green leaf, blue sky
    assert (labels[10, 2], labels[2, 37], labels[17, 37]) == (0, 1, 2)
    assert palette.getpalette()[3:9] == [40, 200, 70, 60, 90, 230]  # the colours the file records
    (saved_map, n1, e1), (overlay, n2, e2), (summary, n3, e3) = out.outputs
    assert (n1, e1, n2, e2, n3, e3) == ("label_map", "png", "overlay", "png", "segmentation", "json")
    assert saved_map is palette and summary == d
    assert overlay.shape == (20, 40, 3) and overlay.dtype == np.uint8
    original = np.asarray(Image.open(path).convert("RGB"))
    tinted = (overlay != original).any(axis=2)
    assert not tinted[labels == 0].any() and tinted[labels != 0].all()
    assert out.metrics == {
        "foreground_share": pytest.approx(1 - d["class_shares"]["background"]),
        "classes_present": 3.0,
    }


def test_the_artifact_is_the_evaluations_png_and_equal_maps_give_equal_bytes(
    segmenter: Path, tmp_path: Path
) -> None:
    from vistudio.ml.inference.label_images import encode_label_png, label_palette

    a = segment_onnx(Item(key="a", path=picture(tmp_path / "a.png")), None, model=str(segmenter))
    b = segment_onnx(Item(key="b", path=picture(tmp_path / "b.png")), None, model=str(segmenter))
    data_a, ext = encode_artifact(a.artifacts["label_map"])
    data_b, _ = encode_artifact(b.artifacts["label_map"])
    assert ext == "png" and data_a == data_b  # one blob for two images of the same map
    assert np.array_equal(read_label_png(data_a), np.asarray(a.artifacts["label_map"]))
    # the palette is the one the evaluation's PNGs carry for these colours
    evaluation_png = encode_label_png(
        np.asarray(a.artifacts["label_map"]), label_palette([tuple(c) for c in COLOURS])
    )
    with Image.open(io.BytesIO(evaluation_png)) as im:
        assert im.getpalette() == a.artifacts["label_map"].getpalette()


def test_after_an_image_stage_it_labels_that_image(segmenter: Path) -> None:
    grey = np.full((10, 20), 50, np.uint8)  # a grey H×W image from an earlier stage: R = G = B
    out = segment_onnx(Item(key="g"), grey, model=str(segmenter))
    assert (out.data["width"], out.data["height"]) == (20, 10)
    assert (
        out.data["classes_present"] == ["background"] and out.data["label"] == "background"
    )  # a tie: class 0
    assert out.metrics["foreground_share"] == 0.0
    rgb = np.zeros((6, 12, 3), np.uint8)
    rgb[..., 2] = 200  # all blue
    out = segment_onnx(Item(key="b"), rgb, model=str(segmenter))
    assert out.data["class_shares"]["sky"] == 1.0 and out.data["label"] == "sky 100%"
    assert np.asarray(out.artifacts["label_map"]).shape == (6, 12)


def test_the_stage_writes_the_map_predict_writes(
    segmenter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.cli.main import main

    path = picture(tmp_path / "a.png", (33, 47))
    staged = segment_onnx(Item(key="a", path=path), None, model=str(segmenter))
    assert main(["--json", "predict", str(segmenter), str(path), "--label-maps", str(tmp_path / "maps")]) == 0
    (pred,) = json.loads(capsys.readouterr().out)["predictions"]
    assert pred["label_map"] == str(tmp_path / "maps" / "a.png")
    assert np.array_equal(read_label_png(pred["label_map"]), np.asarray(staged.artifacts["label_map"]))
    assert pred["class_shares"] == pytest.approx(staged.data["class_shares"])
    assert pred["classes_present"] == staged.data["classes_present"]
    assert (pred["width"], pred["height"]) == (33, 47)


def test_bad_models_parameters_and_images_are_refused_with_a_reason(segmenter: Path, tmp_path: Path) -> None:
    item = Item(key="a", path=picture(tmp_path / "a.png"))
    with pytest.raises(StageError, match="model must be a path"):
        segment_onnx(item, None, model="")
    with pytest.raises(StageError, match="model file not found"):
        segment_onnx(item, None, model=str(tmp_path / "nope.onnx"))
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(StageError, match="segment_onnx: not a loadable ONNX model"):
        segment_onnx(item, None, model=str(tmp_path / "text.onnx"))
    for task in ("classification", "detection"):
        other = make_segmenter(tmp_path / f"{task}.onnx", metadata=props(task))
        with pytest.raises(StageError, match=f"is a {task} model, not a semantic segmentation model"):
            segment_onnx(item, None, model=str(other))
    bare = make_segmenter(tmp_path / "bare.onnx", metadata={"task": "semantic_segmentation"})
    with pytest.raises(StageError, match="has no vistudio metadata"):
        segment_onnx(item, None, model=str(bare))
    pooled = make_segmenter(tmp_path / "pooled.onnx", pooled=True)
    with pytest.raises(StageError, match=r"expected one \(N, 3, H, W\) input and \(N, K, H, W\) logits"):
        segment_onnx(item, None, model=str(pooled))
    with pytest.raises(StageError, match="has no image data and no file path"):
        segment_onnx(Item(key="x"), None, model=str(segmenter))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(StageError, match=r"cannot read broken\.png as an image"):
        segment_onnx(Item(key="b", path=broken), None, model=str(segmenter))
    with pytest.raises(StageError, match="file not found"):
        segment_onnx(Item(key="m", path=tmp_path / "missing.png"), None, model=str(segmenter))
    with pytest.raises(StageError, match="expected a uint8 image"):
        segment_onnx(item, np.zeros((4, 4, 3), np.float32), model=str(segmenter))


def test_a_file_without_recorded_colours_gets_the_classes_page_colours(tmp_path: Path) -> None:
    from vistudio.ml.inference.label_images import class_colours

    meta = props()
    del meta["class_colours"]
    model = make_segmenter(tmp_path / "plain.onnx", metadata=meta)
    out = segment_onnx(Item(key="a", path=picture(tmp_path / "a.png")), None, model=str(model))
    expected = class_colours(CLASSES, CLASSES[1:])
    assert out.artifacts["label_map"].getpalette()[:9] == [v for c in expected for v in c]


def test_the_session_is_loaded_once_per_model_version(segmenter: Path, tmp_path: Path) -> None:
    OnnxSessionCache.clear()
    item = Item(key="a", path=picture(tmp_path / "a.png"))
    for _ in range(3):
        segment_onnx(item, None, model=str(segmenter))
    assert OnnxSessionCache.size() == 1
    OnnxSessionCache.clear()
