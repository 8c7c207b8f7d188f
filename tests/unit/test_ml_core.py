"""The model catalog, the shared evaluation preprocessing and the checkpoint format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vistudio.errors import BadRequest, InvalidInput, ModelUnavailable
from vistudio.ml.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from vistudio.ml.models import build_model, model_names
from vistudio.ml.preprocess import eval_array, eval_batch, open_rgb, preprocess_meta


def test_catalog_builds_every_model_with_its_head_and_frozen_backbone() -> None:
    assert {"resnet18", "resnet50", "efficientnet_b0", "mobilenet_v3_small"} <= set(model_names())
    for name in ("resnet18", "mobilenet_v3_small", "efficientnet_b0"):
        model, info = build_model(name, 5, freeze_backbone=True)
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert len(trainable) == 2, name  # the new head's weight and bias only
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
        assert info.mean == pytest.approx([0.485, 0.456, 0.406]) and info.pretrained is None


def test_pretrained_weights_come_from_a_file_or_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(ModelUnavailable, match="not in the local cache"):
        build_model("resnet18", 3, pretrained=True)
    with pytest.raises(ModelUnavailable, match="not found"):
        build_model("resnet18", 3, pretrained=tmp_path / "missing.pth")
    # a torchvision-format state dict (1,000-class head) given as a file: loaded, head replaced
    imagenet = build_model("resnet18", 1000)[0]
    torch.save(imagenet.state_dict(), tmp_path / "r18.pth")
    model, info = build_model("resnet18", 3, pretrained=tmp_path / "r18.pth")
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.out_features == 3 and info.pretrained == str(tmp_path / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ModelUnavailable, match="cannot load"):
        build_model("resnet18", 3, pretrained=tmp_path / "junk.pth")


def test_unknown_model_and_too_few_classes_are_bad_requests() -> None:
    with pytest.raises(BadRequest, match="known: resnet18"):
        build_model("resnet999", 3)
    with pytest.raises(BadRequest, match="at least 2 classes"):
        build_model("resnet18", 1)


def test_preprocessing_is_exact_and_orientation_aware() -> None:
    meta = preprocess_meta(4, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    arr = eval_array(Image.new("RGB", (10, 6), (255, 0, 51)), meta)
    assert arr.shape == (3, 4, 4) and arr.dtype == np.float32
    assert np.allclose(arr[0], 2.0) and np.allclose(arr[1], -2.0) and np.allclose(arr[2], (0.2 - 0.5) / 0.25)
    # a portrait photo stored landscape with EXIF orientation 6 is turned upright before resizing
    img = Image.new("RGB", (40, 20), "white")
    img.paste((0, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    upright = open_rgb(buf.getvalue())
    assert upright.size == (20, 40)
    # greyscale and palette images become RGB; a batch stacks
    batch = eval_batch([Image.new("L", (8, 8), 128), Image.new("P", (8, 8))], meta)
    assert batch.shape == (2, 3, 4, 4)


def test_checkpoint_round_trip_is_weights_only_and_atomic(tmp_path: Path) -> None:
    model, info = build_model("resnet18", 3)
    meta = {
        "model": "resnet18",
        "classes": ["a", "b", "c"],
        "preprocess": preprocess_meta(32, info.mean, info.std),
    }
    path = save_checkpoint(tmp_path / "ck" / "best.pt", model, meta)
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left behind
    loaded, meta2 = load_checkpoint(path)
    x = torch.from_numpy(eval_batch([Image.new("RGB", (32, 32), "red")], meta2["preprocess"]))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), loaded(x))
    assert meta2["classes"] == ["a", "b", "c"] and not loaded.training
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(tmp_path / "x.pt", model, {"model": "resnet18", "preprocess": {}})


def test_foreign_or_hostile_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InvalidInput, match="not a loadable checkpoint"):
        read_checkpoint(tmp_path / "garbage.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(InvalidInput, match="not a vistudio checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save({"format": "vistudio-checkpoint/1", "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InvalidInput):  # weights_only refuses to run pickled code
        read_checkpoint(tmp_path / "evil.pt")
    model, _ = build_model("resnet18", 3)
    torch.save(
        {
            "format": "vistudio-checkpoint/1",
            "state_dict": model.state_dict(),
            "meta": {"model": "resnet34", "classes": ["a", "b", "c"], "preprocess": {}},
        },
        tmp_path / "mismatch.pt",
    )
    with pytest.raises(InvalidInput, match="do not fit"):
        load_checkpoint(tmp_path / "mismatch.pt")
