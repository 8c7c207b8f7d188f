"""DINOv3 backbones (ml/dinov3): tiny random configurations through the production wrapper — the
token layout (CLS, registers, patch grid), the pad-bottom/right policy, ConvNeXt stage maps, the
frozen linear probe — and the weights policy with the Hub mocked: gated repositories, offline
workspaces, the cache, local folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from vistudio.errors import ModelUnavailable
from vistudio.ml import dinov3
from vistudio.ml.dinov3 import DINOv3Arch, DINOv3Backbone, DINOv3Classifier
from vistudio.ml.weights import WeightsPolicy

TINY_VIT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 16,
    "num_register_tokens": 4,
    "image_size": 64,
}
TINY_CONVNEXT: dict[str, Any] = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}
REPO = "facebook/dinov3-vits16-pretrain-lvd1689m"


@pytest.fixture
def vit() -> DINOv3Backbone:
    torch.manual_seed(0)
    return DINOv3Backbone.from_config("vit", **TINY_VIT).eval()


def test_vit_patch_tokens_become_the_grid_and_cls_the_pooled_feature(vit: DINOv3Backbone) -> None:
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        tokens = vit.model(pixel_values=x).last_hidden_state
        pooled, maps = vit.features(x)
    # CLS, then the 4 registers, then the 4×3 patches, row by row
    assert tokens.shape == (2, 1 + 4 + 4 * 3, 32)
    assert len(maps) == 1 and maps[0].shape == (2, 32, 4, 3)
    assert torch.equal(pooled, tokens[:, 0])
    assert torch.equal(maps[0][:, :, 1, 2], tokens[:, 5 + 1 * 3 + 2])  # row 1, column 2
    assert torch.equal(maps[0][:, :, 0, 0], tokens[:, 5])  # the registers are not in the grid
    assert vit.widths == [32] and vit.strides == [16] and vit.embed_dim == 32


def test_sides_that_are_not_multiples_of_16_are_padded_bottom_right_with_zeros(vit: DINOv3Backbone) -> None:
    x = torch.randn(1, 3, 50, 33)
    with torch.no_grad():
        pooled, maps = vit.features(x)
        padded = vit.features(F.pad(x, (0, 64 - 33 - 16, 0, 64 - 50)))  # to 64×48 by hand
    assert maps[0].shape == (1, 32, 4, 3)  # ceil(50/16) × ceil(33/16): no pixel dropped
    assert torch.allclose(maps[0], padded[1][0]) and torch.allclose(pooled, padded[0])
    assert vit(torch.randn(1, 3, 64, 64))[0].shape == (1, 32, 4, 4)  # a multiple: untouched


def test_convnext_gives_four_stage_maps_and_the_official_pooled_feature() -> None:
    torch.manual_seed(0)
    net = DINOv3Backbone.from_config("convnext", **TINY_CONVNEXT).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        pooled, maps = net.features(x)
        official = net.model(pixel_values=x).pooler_output
    assert [tuple(m.shape) for m in maps] == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 24, 4, 6), (2, 32, 2, 3)]
    assert torch.allclose(pooled, official, atol=1e-5)
    assert net.strides == [4, 8, 16, 32] and net.widths == [8, 16, 24, 32]
    with torch.no_grad():
        odd = net(torch.randn(1, 3, 40, 70))  # padded to 64×96
    assert [tuple(m.shape[-2:]) for m in odd] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_the_classifier_trains_its_head_and_a_frozen_backbone_stays_in_eval_mode(vit: DINOv3Backbone) -> None:
    model = DINOv3Classifier(vit, 3)
    model.freeze_backbone()
    model.train()
    assert model.head.training and not model.backbone.model.training
    x = torch.randn(4, 3, 32, 32)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.backbone.parameters())
    with torch.no_grad():  # eval-mode features in training: what the probe is evaluated on
        assert torch.equal(model(x), model.eval()(x))


def test_an_unfrozen_backbone_learns_too(vit: DINOv3Backbone) -> None:
    model = DINOv3Classifier(vit, 2).train()
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    grad = model.backbone.model.embeddings.patch_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_the_catalog_has_the_six_entries_with_their_licence_statistics_and_frozen_default() -> None:
    from vistudio.ml.models import get_model_spec, model_names
    from vistudio.ml.segmenters import get_segmenter_spec
    from vistudio.ml.training.config import TrainConfig

    names = [n for n in model_names() if n.startswith("dinov3_")]
    assert names == [f"dinov3_{k}_{s}" for k in ("vit", "convnext") for s in ("small", "base", "large")]
    small = get_model_spec("dinov3_vit_small").describe()
    assert small["licence"] == f"https://huggingface.co/{REPO}" and small["weights"] == REPO
    assert small["mean"] == [0.485, 0.456, 0.406] and small["std"] == [0.229, 0.224, 0.225]
    assert (
        small["default_image_size"] == 224
        and small["total_stride"] == 16
        and small["params_millions"] == 21.6
    )
    assert small["freeze_backbone_default"] is True and small["gated"] is True
    assert get_model_spec("dinov3_convnext_large").hub.repo == (  # type: ignore[union-attr]
        "facebook/dinov3-convnext-large-pretrain-lvd1689m"
    )
    assert get_segmenter_spec("dinov3_vit_base").family == "dinov3_linear"
    # the linear probe is the default, written into the config; an explicit choice wins
    assert TrainConfig.model_validate({"model": "dinov3_vit_small"}).freeze_backbone is True
    assert (
        TrainConfig.model_validate({"model": "dinov3_vit_small", "freeze_backbone": False}).freeze_backbone
        is False
    )
    assert TrainConfig.model_validate({"model": "resnet18"}).freeze_backbone is False


def test_the_catalog_architectures_are_the_official_sizes() -> None:
    with torch.device("meta"):  # no memory, no initialisation
        sizes = {
            name: sum(p.numel() for p in DINOv3Backbone.from_arch(name).parameters()) for name in dinov3.ARCHS
        }
    for name, arch in dinov3.ARCHS.items():
        assert round(sizes[name] / 1e6, 1) == arch.params_millions, name


# --- weights: the Hub is mocked, nothing crosses the network ------------------------------------------


def _gated(url: str) -> Exception:
    import importlib

    from huggingface_hub import errors

    # the HTTP client huggingface_hub is built on (httpx or its successor), for a real 401 response
    http: Any = importlib.import_module(errors.Response.__module__.split(".")[0])  # type: ignore[attr-defined]
    response = http.Response(401, request=http.Request("GET", url))
    return errors.GatedRepoError(
        f"401 Client Error. Cannot access gated repo for url {url}.", response=response
    )


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The Hub as a user without access sees it: the host answers, every download is refused."""
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def refuse(repo_id: str, filename: str, **kw: Any) -> str:
        calls.append({"repo": repo_id, "filename": filename, **kw})
        raise _gated(f"https://huggingface.co/{repo_id}/resolve/main/{filename}")

    monkeypatch.setattr("vistudio.ml.weights.probe", lambda url, timeout=3.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    return calls


def test_gated_weights_give_a_clear_error_naming_the_licence_page_and_the_token(
    hub: list[dict[str, Any]], tmp_path: Path
) -> None:
    from vistudio.ml.models import build_model, check_pretrained_available, get_model_spec

    policy = WeightsPolicy(cache_dir=tmp_path, hf_token="hf_secret")
    with pytest.raises(ModelUnavailable) as err:
        check_pretrained_available(get_model_spec("dinov3_vit_small"), policy)
    message = str(err.value)
    assert f"https://huggingface.co/{REPO}" in message and "licence" in message
    assert "HF_TOKEN" in message and "VISTUDIO_HF_TOKEN" in message and "hf_secret" not in message
    assert err.value.status == 503 and err.value.details["setting"] == "hf_token"
    assert err.value.details["licence"] == f"https://huggingface.co/{REPO}"
    # the check asks for the small config.json, with the user's token
    assert [(c["repo"], c["filename"], c["token"]) for c in hub] == [(REPO, "config.json", "hf_secret")]
    with pytest.raises(ModelUnavailable, match="dinov3-convnext-base-pretrain-lvd1689m"):
        build_model("dinov3_convnext_base", 3, pretrained=True, weights=policy)


def test_an_offline_workspace_refuses_at_once_without_asking_the_hub(
    hub: list[dict[str, Any]], tmp_path: Path
) -> None:
    from vistudio.ml.segmenters import build_segmenter

    policy = WeightsPolicy(offline=True, offline_because="VISTUDIO_OFFLINE=1", cache_dir=tmp_path)
    with pytest.raises(ModelUnavailable, match="VISTUDIO_OFFLINE=1") as err:
        dinov3.ensure_weights(dinov3.get_arch("dinov3_vit_large"), policy)
    assert err.value.details["setting"] == "offline"
    with pytest.raises(ModelUnavailable, match="downloads are off"):
        build_segmenter("dinov3_vit_small", 3, pretrained="backbone", weights=policy)
    assert hub == []


def test_the_token_comes_from_the_settings_or_the_environment() -> None:
    from vistudio.config import Settings

    policy = WeightsPolicy.from_settings(Settings(hf_token="hf_abc"))  # type: ignore[arg-type]
    assert policy.hf_token == "hf_abc" and "hf_abc" not in repr(policy)
    assert WeightsPolicy.from_env({"VISTUDIO_HF_TOKEN": "hf_env"}).hf_token == "hf_env"
    assert WeightsPolicy.from_env({}).hf_token is None  # the Hub client's own (HF_TOKEN, hf auth login)


def _tiny_arch(monkeypatch: pytest.MonkeyPatch) -> DINOv3Arch:
    arch = DINOv3Arch("dinov3_vit_tiny", "vit", "facebook/dinov3-tiny-test", dict(TINY_VIT), 0.1)
    monkeypatch.setitem(dinov3.ARCHS, arch.name, arch)
    return arch


def test_weights_in_the_cache_or_a_local_folder_load_without_the_network(
    hub: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch = _tiny_arch(monkeypatch)
    torch.manual_seed(1)
    original = DINOv3Backbone.from_arch(arch.name)
    # the Hugging Face cache layout: models--org--name/{refs/main, snapshots/<revision>/…}
    repo_dir = tmp_path / "cache" / "models--facebook--dinov3-tiny-test"
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    original.model.save_pretrained(str(snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0" * 40)
    offline = WeightsPolicy(offline=True, offline_because="VISTUDIO_OFFLINE=1", cache_dir=tmp_path / "cache")
    assert dinov3.cached_weights(arch, offline) == snapshot
    dinov3.check_weights(arch, offline)  # cached: no download needed, offline or not
    loaded = DINOv3Backbone.from_arch(arch.name, weights=dinov3.ensure_weights(arch, offline)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.pooled(x), original.eval().pooled(x))
    # a state-dict file works as well
    torch.save(original.model.state_dict(), tmp_path / "state.pt")
    from_file = DINOv3Backbone.from_arch(arch.name, weights=tmp_path / "state.pt").eval()
    with torch.no_grad():
        assert torch.equal(from_file.pooled(x), loaded.pooled(x))
    assert hub == []


def test_a_folder_of_another_architecture_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tiny_arch(monkeypatch)
    other = DINOv3Backbone.from_config("vit", **{**TINY_VIT, "hidden_size": 48, "num_attention_heads": 3})
    other.model.save_pretrained(str(tmp_path / "other"))
    with pytest.raises(ModelUnavailable, match=r"does not hold dinov3_vit_tiny.*hidden_size=48"):
        DINOv3Backbone.from_arch("dinov3_vit_tiny", weights=tmp_path / "other")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="cannot load the weights of dinov3_vit_tiny"):
        DINOv3Backbone.from_arch("dinov3_vit_tiny", weights=tmp_path / "junk.pt")


def test_official_key_names_load_and_missing_weights_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file, save_file

    arch = _tiny_arch(monkeypatch)
    torch.manual_seed(2)
    original = DINOv3Backbone.from_arch(arch.name).eval()
    # the official files name the blocks ``layer.N…``, without the encoder's ``model.`` prefix
    state = {k.removeprefix("model."): v.contiguous() for k, v in original.model.state_dict().items()}
    assert any(k.startswith("layer.0.") for k in state)
    save_file(state, str(tmp_path / "official.safetensors"))
    loaded = DINOv3Backbone.from_arch(arch.name, weights=tmp_path / "official.safetensors").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.pooled(x), original.pooled(x))
    # a folder whose weights file lacks tensors: refused rather than left half random
    original.model.save_pretrained(str(tmp_path / "partial"))
    weights = load_file(str(tmp_path / "partial" / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("norm.")},
        str(tmp_path / "partial" / "model.safetensors"),
    )
    with pytest.raises(ModelUnavailable, match=r"lacks weights of dinov3_vit_tiny: norm\.bias, norm\.weight"):
        DINOv3Backbone.from_arch(arch.name, weights=tmp_path / "partial")


# --- detection: DINOv3 → FPN → FCOS -------------------------------------------------------------------


def test_fcos_on_dinov3_is_in_the_detector_catalog_and_freezes_as_asked(
    hub: list[dict[str, Any]], tmp_path: Path
) -> None:
    from vistudio.errors import BadRequest
    from vistudio.ml import detectors as det
    from vistudio.ml.tasks.detection import DetectionConfig
    from vistudio.ml.training.config import validate_config

    names = [n for n in det.detector_names("detection") if "dinov3" in n]
    assert names == [f"fcos_dinov3_{k}_{s}" for k in ("vit", "convnext") for s in ("small", "base", "large")]
    spec = det.get_detector_spec("fcos_dinov3_convnext_small")
    assert spec.describe()["backbone_weights"] == "facebook/dinov3-convnext-small-pretrain-lvd1689m"
    assert validate_config(DetectionConfig, {"model": "fcos_dinov3_vit_small"}).freeze_backbone is False
    with pytest.raises(BadRequest, match=r"0 \(frozen\) or 1"):
        det.build_detector("fcos_dinov3_vit_small", 2, image_size=64, trainable_backbone_layers=3)
    frozen, _ = det.build_detector("fcos_dinov3_vit_small", 2, image_size=64, trainable_backbone_layers=0)
    body = frozen.get_submodule("backbone.body")
    assert not any(p.requires_grad for p in body.parameters())
    assert all(p.requires_grad for p in frozen.get_submodule("backbone.fpn").parameters())
    policy = WeightsPolicy(cache_dir=tmp_path)
    with pytest.raises(ModelUnavailable, match=r"https://huggingface\.co/facebook/dinov3-vitl16"):
        det.check_detector_weights(det.get_detector_spec("fcos_dinov3_vit_large"), "backbone", policy)


def test_a_dinov3_vit_detector_exports_to_onnx_for_any_image_size(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    from torchvision.models import detection as tvd

    from vistudio.ml.detectors import DINOv3FPN
    from vistudio.ml.export.detection import INPUT_NAME, export_detector_onnx

    torch.manual_seed(0)
    body = DINOv3Backbone.from_config("vit", **TINY_VIT)
    model = tvd.FCOS(
        DINOv3FPN(body, 64), 3, min_size=96, max_size=96, score_thresh=0.0, detections_per_img=10
    )
    dest = export_detector_onnx(model.eval(), tmp_path / "det.onnx", image_size=96, props={}, opset=17)
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    for shape in ((3, 96, 96), (3, 60, 96), (3, 140, 100)):  # the patch grid follows the input
        image = torch.rand(*shape)
        with torch.no_grad():
            ref = model([image])[0]
        boxes, labels, scores = session.run(None, {INPUT_NAME: image.numpy()})
        assert np.abs(ref["boxes"].numpy() - boxes).max() < 1e-3, shape
        assert np.abs(ref["scores"].numpy() - scores).max() < 1e-5 and (ref["labels"].numpy() == labels).all()
