"""The open_clip encoder and batched embedding, with a tiny registered architecture (no downloads)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from embed_factories import TINY, TINY_CONFIG, register_tiny
from vistudio.errors import InvalidInput, ModelUnavailable
from vistudio.ml.embed.batch import ImageItem, embed_images, open_image
from vistudio.ml.embed.clip import cached_weights, describe, load_open_clip, resolve_device
from vistudio.ml.embed.encoder import UNTRAINED_VERSION, ImageTextEncoder, ModelSpec


class NotAWeight:
    """Any class: what a weights-only load must refuse."""


@pytest.fixture(scope="module")
def tiny() -> str:
    torch.set_num_threads(1)
    return register_tiny()


def test_untrained_is_explicit_seeded_and_gives_unit_float32_vectors(tiny: str) -> None:
    a = load_open_clip(ModelSpec(tiny, "none"))
    b = load_open_clip(ModelSpec(tiny, "None"))
    assert isinstance(a, ImageTextEncoder)
    assert a.info.version == UNTRAINED_VERSION and a.info.untrained and a.info.to_dict()["untrained"]
    assert a.info.dim == TINY_CONFIG["embed_dim"] and a.info.image_size == 32 and a.info.device == "cpu"
    texts = a.encode_texts(["a red circle", "a blue square"])
    assert texts.dtype == np.float32 and texts.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    # the same seeded weights in every process: vectors stored earlier stay comparable
    np.testing.assert_allclose(texts, b.encode_texts(["a red circle", "a blue square"]), atol=1e-6)
    image = a.preprocess(Image.new("RGB", (50, 40), (200, 30, 30)))
    assert tuple(image.shape) == (3, 32, 32)
    vec = a.encode_images(image.unsqueeze(0))
    assert vec.shape == (1, 32) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5
    assert a.encode_texts([]).shape == (0, 32)


def test_weights_that_cannot_be_had_are_model_unavailable_never_random(tiny: str, tmp_path: Path) -> None:
    # a real tag whose file is not in any local cache (this machine is offline)
    with pytest.raises(ModelUnavailable, match="VISTUDIO_EMBED__MODEL") as exc:
        describe(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), cache_dir=tmp_path)
    assert exc.value.status == 503 and "--checkpoint" in exc.value.message
    assert cached_weights("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path) is None
    with pytest.raises(ModelUnavailable, match="checkpoint file not found"):
        describe(ModelSpec(tiny, checkpoint=tmp_path / "missing.pt"))
    with pytest.raises(ModelUnavailable, match="no weights named"):
        describe(ModelSpec(tiny, ""))
    with pytest.raises(InvalidInput, match="not a pretrained tag") as bad_tag:
        describe(ModelSpec("ViT-B-32", "no-such-tag"))
    assert "laion2b_s34b_b79k" in bad_tag.value.details["tags"]
    with pytest.raises(InvalidInput, match="unknown CLIP architecture"):
        describe(ModelSpec("no-such-model", "none"))


def test_a_tag_found_in_the_cache_resolves_to_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"x")
    monkeypatch.setattr(
        "huggingface_hub.try_to_load_from_cache", lambda repo, name, cache_dir=None: str(weights)
    )
    d = describe(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"))
    assert d.weights == weights and d.version == "laion2b_s34b_b79k" and d.pretrained == "laion2b_s34b_b79k"


def test_checkpoint_round_trip_self_describing_and_plain(tiny: str, tmp_path: Path) -> None:
    enc = load_open_clip(ModelSpec(tiny, "none"))
    sd = enc.model.state_dict()
    described = tmp_path / "described.pt"
    torch.save({"model_name": "my-clip", "model_cfg": TINY_CONFIG, "state_dict": sd}, described)
    plain = tmp_path / "plain.pt"
    torch.save({"module." + k: v for k, v in sd.items()}, plain)  # a DataParallel state dict
    a = load_open_clip(ModelSpec(None, checkpoint=described))
    b = load_open_clip(ModelSpec(tiny, checkpoint=plain))
    assert a.info.name == "my-clip" and b.info.name == tiny
    assert len(a.info.version) == 64 and a.info.version != b.info.version  # sha256 of each file
    assert a.info.checkpoint == str(described.resolve()) and not a.info.untrained
    ref = enc.encode_texts(["a green triangle"])
    np.testing.assert_allclose(a.encode_texts(["a green triangle"]), ref, atol=1e-6)
    np.testing.assert_allclose(b.encode_texts(["a green triangle"]), ref, atol=1e-6)


def test_hostile_or_mismatched_checkpoints_are_refused(tiny: str, tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pickled code ran",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    with pytest.raises(InvalidInput, match="weights-only"):
        load_open_clip(ModelSpec(tiny, checkpoint=evil))
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"visual.conv1.weight": torch.zeros(3)}}, wrong)
    with pytest.raises(InvalidInput, match="does not fit"):
        load_open_clip(ModelSpec(tiny, checkpoint=wrong))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InvalidInput):
        load_open_clip(ModelSpec(tiny, checkpoint=junk))
    zipped = tmp_path / "zipped.pt"  # the current torch.save format, holding an arbitrary object
    torch.save({"state_dict": {}, "extra": NotAWeight()}, zipped)
    with pytest.raises(InvalidInput, match="weights-only"):
        describe(ModelSpec(tiny, checkpoint=zipped))
    partial = tmp_path / "partial.pt"
    torch.save({"state_dict": {"logit_scale": torch.zeros(())}}, partial)
    with pytest.raises(InvalidInput, match="missing weights"):
        load_open_clip(ModelSpec(tiny, checkpoint=partial))


def test_device_auto_and_refusals() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(InvalidInput, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_open_image_shrinks_jpeg_on_load_and_applies_exif(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: the stored 1600×800 shows as 800×1600
    Image.new("RGB", (1600, 800), (10, 120, 200)).save(big, quality=90, exif=exif)
    im = open_image(big, min_side=100)
    assert im.mode == "RGB"
    assert im.size[1] > im.size[0]  # EXIF orientation applied
    assert 100 <= min(im.size) < 800  # decoded at a reduced scale, never below the model's size
    full = open_image(big, min_side=0)
    assert full.size == (800, 1600)
    png = tmp_path / "p.png"
    Image.new("P", (40, 30)).save(png)
    assert open_image(png, min_side=100).size == (40, 30) and open_image(png, min_side=100).mode == "RGB"


def test_embed_images_in_batches_with_failures_reported(tiny: str, tmp_path: Path) -> None:
    enc = load_open_clip(ModelSpec(tiny, "none"))
    items = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 40), (i * 30, 0, 0)).save(p)
        items.append(ImageItem(i + 1, p))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    items.insert(3, ImageItem(100, tmp_path / "bad.jpg"))
    items.append(ImageItem(101, tmp_path / "gone.png"))
    batches = list(embed_images(enc, items, batch_size=3))
    assert len(batches) == 3
    ids = np.concatenate([b.ids for b in batches])
    assert ids.tolist() == [1, 2, 3, 4, 5, 6, 7]
    failures = dict(f for b in batches for f in b.failures)
    assert set(failures) == {100, 101}
    assert failures[101] == "file not found" and failures[100].startswith("unreadable image")
    vecs = np.concatenate([b.vectors for b in batches])
    assert vecs.shape == (7, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # the same image alone gives the same vector as in its batch
    alone = next(embed_images(enc, [items[0]], batch_size=1)).vectors[0]
    np.testing.assert_allclose(alone, vecs[0], atol=1e-5)

    # a non-finite vector (an fp16 overflow on some GPUs) is a failure of its image, not stored
    real = enc.encode_images

    def overflowing(batch: Any) -> Any:
        out = real(batch)
        out[1] = np.nan
        return out

    enc.encode_images = overflowing  # type: ignore[method-assign]
    first = next(embed_images(enc, items[:3], batch_size=3))
    assert first.ids.tolist() == [1, 3] and np.isfinite(first.vectors).all()
    assert first.failures == [(2, "the model produced a non-finite vector for this image")]


@pytest.mark.slow
def test_dataloader_workers_decode_in_spawned_processes(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vistudio.ml.embed.batch.MIN_ITEMS_FOR_WORKERS", 1)
    enc = load_open_clip(ModelSpec(tiny, "none"))
    items = []
    for i in range(6):
        p = tmp_path / f"{i}.jpg"
        Image.new("RGB", (64, 48), (0, i * 40, 0)).save(p)
        items.append(ImageItem(i + 1, p))
    # workers receive the transform alone, never a copy of the model's weights
    assert len(pickle.dumps(enc.preprocess)) < 20_000
    with_workers = list(embed_images(enc, items, batch_size=4, workers=1))
    inline = list(embed_images(enc, items, batch_size=4, workers=0))
    assert [b.ids.tolist() for b in with_workers] == [[1, 2, 3, 4], [5, 6]]
    for a, b in zip(with_workers, inline, strict=True):
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)


def test_tiny_name_is_registered_through_open_clip(tiny: str) -> None:
    import open_clip

    assert tiny == TINY and TINY in open_clip.list_models()
