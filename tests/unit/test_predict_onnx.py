"""The torch-free ONNX predictor: metadata, preprocessing, folders, bad files, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factories import channel_model
from vistudio.errors import InvalidInput, NotFound
from vistudio.ml.inference.onnx import (
    METADATA_FORMAT,
    OnnxClassifier,
    collect_images,
    metadata_props,
    parse_metadata,
)
from vistudio.ml.preprocess import eval_batch, preprocess_meta

CLASSES = ["red", "green", "blue"]
PRE = preprocess_meta(8, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return channel_model(
        tmp_path / "colours.onnx", metadata_props(model="toy", classes=CLASSES, preprocess=PRE)
    )


def colour_images(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, rgb in (("red", (250, 10, 10)), ("green", (5, 240, 30)), ("blue", (0, 0, 255))):
        out[name] = root / f"{name}.png"
        Image.new("RGB", (20, 12), rgb).save(out[name])
    return out


def test_metadata_round_trip_and_flat_keys_for_the_pipeline_stage() -> None:
    props = metadata_props(model="resnet18", classes=CLASSES, preprocess=PRE, extra={"epoch": 3, "note": "x"})
    assert props["vistudio"] == METADATA_FORMAT and props["model"] == "resnet18"
    assert props["input_size"] == "8,8" and props["mean"] == "0.5,0.5,0.5"
    assert json.loads(props["class_names"]) == CLASSES and props["epoch"] == "3" and props["note"] == "x"
    assert all(isinstance(v, str) for v in props.values())
    assert parse_metadata(props, source="m") == (CLASSES, PRE)
    with pytest.raises(InvalidInput, match="has no vistudio metadata"):
        parse_metadata({"input_size": "8,8"}, source="m")
    with pytest.raises(InvalidInput, match="damaged"):
        parse_metadata({**props, "class_names": "[oops"}, source="m")
    with pytest.raises(InvalidInput, match="lacks 'scale'"):
        parse_metadata(
            {**props, "preprocess": json.dumps({"input_size": [8, 8], "mean": [0], "std": [1]})}, source="m"
        )


def test_predicts_labels_with_the_embedded_preprocessing(model: Path, tmp_path: Path) -> None:
    images = colour_images(tmp_path / "imgs")
    clf = OnnxClassifier(model)
    assert clf.classes == CLASSES and clf.model == "toy" and clf.preprocess == PRE
    preds, errors = clf.predict_files(list(images.values()), k=2, batch_size=2)
    assert errors == [] and [p.label for p in preds] == ["red", "green", "blue"]
    assert all(len(p.top_k) == 2 and p.top_k[0]["probability"] == p.confidence for p in preds)
    # the same numbers as running the shared preprocessing by hand
    logits = clf.logits(eval_batch(list(images.values()), PRE))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert [p.confidence for p in preds] == pytest.approx(expected.max(axis=1).tolist(), abs=1e-7)


def test_folders_are_walked_and_bad_files_reported_without_stopping(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    colour_images(root / "a" / "b")
    (root / "notes.txt").write_text("not an image, and not named like one")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "a" / "empty.jpg").write_bytes(b"")
    files, errors = collect_images([root, tmp_path / "missing.png"])
    assert {f.name for f in files} == {"red.png", "green.png", "blue.png", "broken.png", "empty.jpg"}
    assert errors == [{"path": str(tmp_path / "missing.png"), "reason": "file not found"}]
    preds, bad = OnnxClassifier(model).predict_files(files)
    assert sorted(p.label for p in preds) == ["blue", "green", "red"]
    assert sorted(Path(b["path"]).name for b in bad) == ["broken.png", "empty.jpg"]
    assert all("not a readable image" in b["reason"] for b in bad)


def test_models_without_metadata_or_not_models_are_clear_errors(tmp_path: Path) -> None:
    bare = channel_model(tmp_path / "bare.onnx", {"input_size": "8,8", "mean": "0,0,0", "std": "1,1,1"})
    with pytest.raises(InvalidInput, match=r"bare\.onnx has no vistudio metadata"):
        OnnxClassifier(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InvalidInput, match=r"not a loadable ONNX model: junk\.onnx"):
        OnnxClassifier(junk)
    with pytest.raises(NotFound, match="model file not found"):
        OnnxClassifier(tmp_path / "nope.onnx")
    wrong = channel_model(
        tmp_path / "two.onnx", metadata_props(model="toy", classes=["a", "b"], preprocess=PRE)
    )
    with pytest.raises(InvalidInput, match="do not match 2 classes"):
        OnnxClassifier(wrong).logits(np.zeros((1, 3, 8, 8), np.float32))


def test_prediction_never_imports_torch(model: Path, tmp_path: Path) -> None:
    images = colour_images(tmp_path / "imgs")
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from vistudio.ml.inference.onnx import OnnxClassifier, collect_images\n"
        f"files, _ = collect_images([Path({str(tmp_path / 'imgs')!r})])\n"
        f"preds, _ = OnnxClassifier(Path({str(model)!r})).predict_files(files)\n"
        "print(json.dumps({'labels': [p.label for p in preds],"
        " 'torch': sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout)
    assert sorted(result["labels"]) == sorted(images) and result["torch"] == []


def test_the_pipeline_stage_uses_the_embedded_preprocessing(model: Path, tmp_path: Path) -> None:
    from vistudio.pipelines.builtin import OnnxSessionCache, classify_onnx, read_image
    from vistudio.pipelines.stage import Item

    OnnxSessionCache.clear()
    images = colour_images(tmp_path / "imgs")
    preds, _ = OnnxClassifier(model).predict_files(list(images.values()), k=3)
    for pred, path in zip(preds, images.values(), strict=True):
        out = classify_onnx(Item(path.stem, path=path), read_image(path), model=str(model), top_k=3)
        assert out.data["label"] == pred.label
        assert out.data["confidence"] == pytest.approx(pred.confidence, abs=1e-6)
    assert OnnxSessionCache.get(model).preprocess == PRE
    OnnxSessionCache.clear()
