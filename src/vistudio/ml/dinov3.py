"""DINOv3 backbones (Hugging Face ``transformers``): one wrapper that yields ``(N, C, H, W)`` feature
maps and a pooled feature vector, for the classifiers (``ml/models``), segmenters (``ml/segmenters``)
and detectors of the catalogs.

Six architectures: ``dinov3_vit_small|base|large`` (ViT-S/B/L, patch 16, four register tokens) and
``dinov3_convnext_small|base|large``. Their pretrained weights are Meta's official checkpoints on the
Hugging Face Hub (``facebook/dinov3-vits16-pretrain-lvd1689m``, …), released under the DINOv3
licence and *gated*: a user accepts the licence on the model's page once, then downloads with a
Hugging Face access token (``HF_TOKEN``, ``VISTUDIO_HF_TOKEN`` or ``hf auth login``). They follow
the one model policy (``ml/weights``): the Hugging Face cache, a local folder the user names, or a
download on first use — unless the workspace is offline. Without access, the Hub's refusal becomes
a ``ModelUnavailable`` naming the licence page and the token setting.

What the wrapper returns:

- a **ViT** runs on ``[CLS, 4 registers, patches]`` tokens; the CLS token (after the final norm) is
  the pooled feature for classification heads, the register tokens are dropped, and the patch
  tokens are reshaped into one ``(N, C, H/16, W/16)`` map;
- a **ConvNeXt** yields its four stage outputs (strides 4, 8, 16, 32: what an FPN takes); its
  pooled feature is the final layer norm over the global average of the last stage, as the
  official model computes it.

Input sides that are not a multiple of the patch (16 px for a ViT) or of the total stride (32 px
for a ConvNeXt) are **padded at the bottom and the right** with zeros — the mean colour, since the
input is already normalised — so no pixel is lost and the feature grid is ``ceil(H/16) ×
ceil(W/16)``; a dense head crops its upsampled output back to ``H × W``. The training studio
resizes every image to ``image_size`` first (224 by default, the checkpoints' processor size), so a
multiple of 16 avoids padding altogether.

Normalisation is the checkpoints' image processor's: ImageNet mean and standard deviation, 224 px.

``transformers`` is imported only when a network is built (it takes seconds to import): importing
this module costs nothing more than torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vistudio.errors import ModelUnavailable

if TYPE_CHECKING:
    from vistudio.ml.weights import WeightsPolicy

Kind = Literal["vit", "convnext"]
# the official checkpoints' image processor (preprocessor_config.json): ImageNet statistics, 224 px
IMAGE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
HUB_URL = "https://huggingface.co"
TOKEN_ENV = "HF_TOKEN"
TOKEN_SETTING_ENV = "VISTUDIO_HF_TOKEN"
WEIGHT_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class DINOv3Arch:
    """One catalog architecture: its Hub repository and the configuration that builds it."""

    name: str
    kind: Kind
    repo: str
    config: dict[str, Any] = field(default_factory=dict)  # the official config.json's architecture keys
    params_millions: float = 0.0

    @property
    def licence_url(self) -> str:
        """The model's page on the Hub, where its licence is accepted."""
        return f"{HUB_URL}/{self.repo}"

    @property
    def widths(self) -> list[int]:
        """Channels of each feature map ``forward`` returns."""
        if self.kind == "vit":
            return [int(self.config["hidden_size"])]
        return [int(c) for c in self.config["hidden_sizes"]]

    @property
    def embed_dim(self) -> int:
        """Size of the pooled feature (CLS token or pooled last stage)."""
        return self.widths[-1]

    @property
    def strides(self) -> list[int]:
        return [16] if self.kind == "vit" else [4, 8, 16, 32]

    @property
    def total_stride(self) -> int:
        return self.strides[-1]


def _vit(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "patch_size": 16,
        "num_register_tokens": 4,
        "key_bias": False,
        "use_gated_mlp": False,
        "layer_norm_eps": 1e-5,
        "rope_theta": 100.0,
        "image_size": IMAGE_SIZE,
    }


def _convnext(hidden_sizes: list[int]) -> dict[str, Any]:
    return {"depths": [3, 3, 27, 3], "hidden_sizes": hidden_sizes, "image_size": IMAGE_SIZE}


ARCHS: dict[str, DINOv3Arch] = {
    a.name: a
    for a in (
        DINOv3Arch(
            "dinov3_vit_small", "vit", "facebook/dinov3-vits16-pretrain-lvd1689m", _vit(384, 12, 6), 21.6
        ),
        DINOv3Arch(
            "dinov3_vit_base", "vit", "facebook/dinov3-vitb16-pretrain-lvd1689m", _vit(768, 12, 12), 85.7
        ),
        DINOv3Arch(
            "dinov3_vit_large", "vit", "facebook/dinov3-vitl16-pretrain-lvd1689m", _vit(1024, 24, 16), 303.1
        ),
        DINOv3Arch(
            "dinov3_convnext_small",
            "convnext",
            "facebook/dinov3-convnext-small-pretrain-lvd1689m",
            _convnext([96, 192, 384, 768]),
            49.5,
        ),
        DINOv3Arch(
            "dinov3_convnext_base",
            "convnext",
            "facebook/dinov3-convnext-base-pretrain-lvd1689m",
            _convnext([128, 256, 512, 1024]),
            87.6,
        ),
        DINOv3Arch(
            "dinov3_convnext_large",
            "convnext",
            "facebook/dinov3-convnext-large-pretrain-lvd1689m",
            _convnext([192, 384, 768, 1536]),
            196.2,
        ),
    )
}


def is_dinov3(name: str) -> bool:
    return name in ARCHS


def get_arch(name: str) -> DINOv3Arch:
    return ARCHS[name]


# --- the wrapper -----------------------------------------------------------------------------------


def _hf_model(kind: Kind, config: dict[str, Any]) -> nn.Module:
    """A randomly initialised ``DINOv3ViTModel`` / ``DINOv3ConvNextModel`` of ``config``."""
    if kind == "vit":
        from transformers import DINOv3ViTConfig, DINOv3ViTModel

        return DINOv3ViTModel(DINOv3ViTConfig(**config))
    from transformers import DINOv3ConvNextConfig, DINOv3ConvNextModel

    return DINOv3ConvNextModel(DINOv3ConvNextConfig(**config))


class DINOv3Backbone(nn.Module):
    """A DINOv3 network as a backbone: ``forward(x)`` with ``x`` an ``(N, 3, H, W)`` normalised batch
    returns feature maps ``[(N, C_i, H_i, W_i), …]`` (ViT: one map at stride 16, registers and CLS
    dropped; ConvNeXt: four stage maps at strides 4–32); :meth:`pooled` and :meth:`features` add
    the ``(N, C)`` pooled feature (ViT: the CLS token; ConvNeXt: the normalised global average).

    Inputs whose sides are not a multiple of :attr:`multiple` are padded bottom/right with zeros.
    A frozen backbone (:meth:`freeze`) stays in eval mode while its owner trains, so a linear probe
    sees exactly the features it is evaluated on (a DINOv3 ViT jitters its position encoding in
    training mode)."""

    def __init__(self, model: nn.Module, kind: Kind) -> None:
        super().__init__()
        self.model = model
        self.kind: Kind = kind
        config: Any = model.config
        self.widths: list[int] = (
            [int(config.hidden_size)] if kind == "vit" else [int(c) for c in config.hidden_sizes]
        )
        self.strides: list[int] = [int(config.patch_size)] if kind == "vit" else [4, 8, 16, 32]
        self.multiple = self.strides[-1]
        self.num_prefix = 1 + int(config.num_register_tokens) if kind == "vit" else 0
        self.frozen = False

    @classmethod
    def from_config(cls, kind: Kind, **config: Any) -> DINOv3Backbone:
        """A randomly initialised backbone of any configuration (tests build tiny ones this way)."""
        return cls(_hf_model(kind, config), kind)

    @classmethod
    def from_arch(cls, name: str, *, weights: Path | None = None) -> DINOv3Backbone:
        """The catalog architecture ``name``: random, or with ``weights`` (a folder in the Hugging
        Face layout, ``config.json`` + ``model.safetensors``, or a state-dict file)."""
        arch = get_arch(name)
        if weights is None:
            return cls.from_config(arch.kind, **arch.config)
        return cls(_load_weights(arch, weights), arch.kind)

    @property
    def embed_dim(self) -> int:
        return self.widths[-1]

    def freeze(self) -> None:
        """No gradients, and eval mode whatever the owner's mode."""
        for p in self.parameters():
            p.requires_grad = False
        self.frozen = True
        self.model.eval()

    def train(self, mode: bool = True) -> DINOv3Backbone:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded bottom/right with zeros to sides that are multiples of :attr:`multiple`."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ph, pw = -h % self.multiple, -w % self.multiple
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(pooled (N, C), feature maps)`` in one pass."""
        x = self.pad(x)
        if self.kind == "vit":
            tokens = self.model(pixel_values=x).last_hidden_state  # (N, 1 + registers + h·w, C)
            # sizes kept symbolic (no int()): an exported graph then takes other input sizes
            h, w = x.shape[-2] // self.multiple, x.shape[-1] // self.multiple
            patches = tokens[:, self.num_prefix :, :]
            grid = patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], h, w)
            return tokens[:, 0, :], [grid]
        net: Any = self.model
        encoder = getattr(net, "model", net)  # transformers ≥ 5 nests the stages one level deeper
        maps = []
        out = x
        for stage in encoder.stages:
            out = stage(out)
            maps.append(out)
        pooled: torch.Tensor = net.layer_norm(out.mean(dim=(2, 3)))
        return pooled, maps

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: the CLS token (ViT) or the normalised average of the last stage (ConvNeXt)."""
        return self.features(x)[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.features(x)[1]


class DINOv3Classifier(nn.Module):
    """A DINOv3 backbone with a linear head on its pooled feature: ``(N, 3, H, W)`` → ``(N, K)``."""

    def __init__(self, backbone: DINOv3Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dim, num_classes)

    def freeze_backbone(self) -> None:
        self.backbone.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.backbone.pooled(x))
        return logits


def build_classifier(name: str, num_classes: int, *, weights: Path | None = None) -> DINOv3Classifier:
    """The catalog classifier ``name`` (random backbone, or ``weights``) with a fresh head."""
    return DINOv3Classifier(DINOv3Backbone.from_arch(name, weights=weights), num_classes)


# --- weights ---------------------------------------------------------------------------------------


def _alternatives(arch: DINOv3Arch) -> list[tuple[str, str]]:
    return [
        ("pretrained", "train from scratch (--no-pretrained / pretrained: false)"),
        ("weights", f"give a local copy of {arch.repo} (pretrained: FOLDER)"),
    ]


def _details(arch: DINOv3Arch) -> dict[str, Any]:
    return {"model": arch.name, "repo": arch.repo, "licence": arch.licence_url}


def cached_weights(arch: DINOv3Arch, policy: WeightsPolicy | None = None) -> Path | None:
    """The folder holding ``arch``'s ``config.json`` and ``model.safetensors`` in the Hugging Face
    cache, if both are there (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    cache_dir = str(policy.cache_dir) if policy is not None and policy.cache_dir else None
    found = [try_to_load_from_cache(arch.repo, name, cache_dir=cache_dir) for name in WEIGHT_FILES]
    if all(isinstance(f, str) for f in found):
        folders = {Path(str(f)).parent for f in found}
        if len(folders) == 1:
            return folders.pop()
    return None


def check_weights(arch: DINOv3Arch, policy: WeightsPolicy | None = None) -> None:
    """Before training starts: ``ModelUnavailable`` unless ``arch``'s weights are cached or the
    Hub lets this user download them. Fetching the small ``config.json`` is what asks the Hub:
    a gated repository refuses it exactly as it would refuse the weights."""
    from vistudio.ml.weights import WeightsPolicy

    policy = policy or WeightsPolicy.from_env()
    if cached_weights(arch, policy) is not None:
        return
    _download(arch, policy, WEIGHT_FILES[:1])


def ensure_weights(arch: DINOv3Arch, policy: WeightsPolicy | None = None) -> Path:
    """The local folder of ``arch``'s pretrained weights: the cache, else a download (gated:
    needs the licence accepted and a token)."""
    from vistudio.ml.weights import WeightsPolicy

    policy = policy or WeightsPolicy.from_env()
    folder = cached_weights(arch, policy)
    return folder if folder is not None else _download(arch, policy, WEIGHT_FILES)


def _download(arch: DINOv3Arch, policy: WeightsPolicy, names: tuple[str, ...]) -> Path:
    what = f"the pretrained weights of {arch.name} ({arch.repo}) are"
    paths = [
        policy.hf_download(
            arch.repo,
            [name],
            what=what,
            settings=_alternatives(arch),
            details=_details(arch),
            licence_url=arch.licence_url,
        )
        for name in names
    ]
    return paths[-1].parent


def _load_weights(arch: DINOv3Arch, source: Path) -> nn.Module:
    """``arch``'s network with the weights of ``source``: a Hugging Face folder (``config.json`` +
    ``model.safetensors``) or a state-dict file (``.safetensors``, or a ``torch.save`` loaded with
    ``weights_only``). A source of another architecture is refused, naming both."""
    try:
        if source.is_dir():
            model = _from_folder(arch, source)
        else:
            model = _hf_model(arch.kind, arch.config)
            expected = set(model.state_dict())
            # the official files name the blocks without the encoder's ``model.`` prefix that
            # recent transformers versions add
            state = {
                (f"model.{k}" if k not in expected and f"model.{k}" in expected else k): v
                for k, v in _read_state(source).items()
            }
            model.load_state_dict(state)
    except ModelUnavailable:
        raise
    except Exception as exc:  # a damaged file, a folder of another model: say which and why
        text = str(exc).strip().splitlines()
        raise ModelUnavailable(
            f"cannot load the weights of {arch.name} from {source}: {text[0][:300] if text else type(exc).__name__}",
            details=_details(arch),
        ) from None
    return model


def _from_folder(arch: DINOv3Arch, folder: Path) -> nn.Module:
    if arch.kind == "vit":
        from transformers import DINOv3ViTConfig as Config
        from transformers import DINOv3ViTModel as Model
    else:
        from transformers import DINOv3ConvNextConfig as Config  # type: ignore[assignment]
        from transformers import DINOv3ConvNextModel as Model  # type: ignore[assignment]
    config = Config.from_pretrained(str(folder))
    wrong = {
        k: getattr(config, k, None)
        for k, v in arch.config.items()
        if k != "image_size" and getattr(config, k, None) != v
    }
    if wrong:
        raise ModelUnavailable(
            f"{folder} does not hold {arch.name} ({arch.repo}): its configuration differs in "
            + ", ".join(f"{k}={v!r}" for k, v in sorted(wrong.items())),
            details=_details(arch),
        )
    loaded: Any = Model.from_pretrained(str(folder), config=config, output_loading_info=True)
    model: nn.Module = loaded[0]
    missing = sorted(loaded[1].get("missing_keys") or [])
    if missing:  # transformers would leave them random: never a half-trained model presented as real
        raise ModelUnavailable(
            f"{folder} lacks weights of {arch.name}: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
            details=_details(arch),
        )
    return model


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError("not a state dict")
    return state
