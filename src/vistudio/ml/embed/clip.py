"""The open_clip encoder: pretrained weights from the local caches, a local checkpoint, or untrained.

Where weights come from, in order:

- ``checkpoint``: a local file loaded with ``torch.load(weights_only=True)`` — a state dict, or a
  dict with ``state_dict`` and optionally ``model_cfg`` (an open_clip model config: then the
  checkpoint describes its own architecture), ``model_name`` and ``preprocess_cfg``;
- ``pretrained`` tag: the file open_clip would download, looked up in the Hugging Face cache (or
  open_clip's URL cache); downloaded on first use under the one model policy
  (``vistudio.ml.weights``: never when offline, and a fast network check first) — otherwise a
  missing file is a ``ModelUnavailable`` naming the settings to change, never a silent fallback to
  random weights;
- ``pretrained == "none"``: untrained weights, seeded (``torch.manual_seed(0)``) so that every
  process builds the same model and its vectors stay comparable. Only on explicit request.

``describe`` answers *which* model a spec names (architecture and version) without building it;
``load_open_clip`` builds it. Neither touches a database.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vistudio.errors import InvalidInput, ModelUnavailable
from vistudio.ml.embed.encoder import UNTRAINED_VERSION, FloatArray, ModelInfo, ModelSpec, l2_normalise
from vistudio.ml.weights import WeightsPolicy, hf_endpoint
from vistudio.storage.blobs import sha256_file

log = logging.getLogger(__name__)

HF_WEIGHTS = "open_clip_pytorch_model.bin"
HF_SAFE_WEIGHTS = "open_clip_model.safetensors"
MODEL_SETTING = "VISTUDIO_EMBED__MODEL / --model"
PRETRAINED_SETTING = "VISTUDIO_EMBED__PRETRAINED / --pretrained"
CHECKPOINT_SETTING = "VISTUDIO_EMBED__CHECKPOINT / --checkpoint"


@dataclass(frozen=True)
class Described:
    """What a spec resolves to before anything is loaded."""

    name: str
    pretrained: str | None
    version: str
    checkpoint: Path | None
    weights: Path | None  # the local weights file (None: untrained, or to be downloaded)


def resolve_device(device: str | None) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an explicit device is checked."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput(
                f"device {device!r} asked for, but CUDA is not available here (setting VISTUDIO_EMBED__DEVICE)"
            )
        return device
    if device in ("cpu", "mps"):
        return device
    raise InvalidInput(
        f"unknown device {device!r}: use auto, cpu, cuda or cuda:N (setting VISTUDIO_EMBED__DEVICE)"
    )


def _open_clip() -> Any:
    import open_clip

    return open_clip


def _known_config(name: str) -> dict[str, Any] | None:
    cfg = _open_clip().get_model_config(name)
    return cfg if isinstance(cfg, dict) else None


def _unknown_model(name: str | None) -> InvalidInput:
    names = _open_clip().list_models()
    common = [n for n in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50", "convnext_base_w") if n in names]
    return InvalidInput(
        f"unknown CLIP architecture {name!r} (setting {MODEL_SETTING}); open_clip knows {len(names)} "
        f"(open_clip.list_models()), e.g. {', '.join(common)}",
        details={"model": name, "setting": "embed.model"},
    )


def check_architecture(name: str) -> None:
    """``InvalidInput`` unless open_clip knows the architecture ``name``."""
    if _known_config(name) is None:
        raise _unknown_model(name)


def pretrained_tags(name: str) -> list[str]:
    """The pretrained tags open_clip knows for the architecture ``name`` (``[]`` for none)."""
    return list(_open_clip().list_pretrained_tags_by_model(name))


def _checkpoint_header(path: Path) -> dict[str, Any]:
    """The non-tensor entries of a checkpoint, read without loading its tensors (mmap)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not memory-mappable (an old serialisation) or refused: say why below
        obj = _load_checkpoint(path)
    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if k in ("model_name", "model_cfg", "preprocess_cfg")}


def _load_checkpoint(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        raise InvalidInput(
            f"checkpoint {path} is not a weights-only PyTorch file (only tensors and plain values "
            f"can be loaded; pickled code is refused): {str(exc).splitlines()[0][:300]}",
            details={"checkpoint": str(path)},
        ) from None


def cached_weights(name: str, tag: str, *, cache_dir: Path | None = None) -> Path | None:
    """The local file of open_clip's pretrained ``tag`` for ``name``, if a cache holds it."""
    cfg = _open_clip().get_pretrained_cfg(name, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        p = Path(cfg["file"])
        return p if p.is_file() else None
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on it
            return None
        # open_clip's convention: "org/repo/" (default file name) or "org/repo/file.pt"
        repo, filename = os.path.split(cfg["hf_hub"])
        candidates = [HF_SAFE_WEIGHTS, HF_WEIGHTS] if not filename else [filename]
        if filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for cand in candidates:
            found = try_to_load_from_cache(repo, cand, cache_dir=str(cache_dir) if cache_dir else None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if cfg.get("url"):
        folder = cache_dir or Path("~/.cache/clip").expanduser()
        p = folder / os.path.basename(cfg["url"])
        if p.is_file():
            return p
    return None


def describe(
    spec: ModelSpec,
    *,
    weights: WeightsPolicy | None = None,
    cache_dir: Path | None = None,
    sha256: str | None = None,
) -> Described:
    """Which model ``spec`` names, and whether its weights can be had — without building it.

    Raises ``ModelUnavailable`` when the weights are not local and cannot be downloaded (offline
    under ``weights``, default: the environment's policy; or the network check fails, within
    seconds), or the checkpoint file is missing; ``InvalidInput`` for an unknown architecture or
    tag. ``cache_dir`` overrides the policy's cache; ``sha256`` skips hashing a checkpoint whose
    hash the caller already knows.
    """
    policy = _policy(weights, cache_dir)
    cache_dir = policy.cache_dir
    oc = _open_clip()
    if spec.checkpoint is not None:
        path = Path(spec.checkpoint).expanduser()
        if not path.is_file():
            raise ModelUnavailable(
                f"checkpoint file not found: {path} (setting {CHECKPOINT_SETTING})",
                details={"checkpoint": str(path), "setting": "embed.checkpoint"},
            )
        path = path.resolve()
        header = _checkpoint_header(path)
        name = header.get("model_name") if isinstance(header.get("model_name"), str) else None
        if "model_cfg" not in header:
            name = spec.name or name
            if not name or _known_config(name) is None:
                raise _unknown_model(name)
        name = name or spec.name or "custom"
        return Described(name, None, sha256 or sha256_file(path), path, path)
    name = spec.name or ""
    if _known_config(name) is None:
        raise _unknown_model(spec.name)
    tag = (spec.pretrained or "").strip()
    if spec.untrained:
        return Described(name, "none", UNTRAINED_VERSION, None, None)
    if not tag:
        raise ModelUnavailable(
            f"no weights named for {name}: set a pretrained tag ({PRETRAINED_SETTING}) or a checkpoint "
            f"({CHECKPOINT_SETTING})",
            details={
                "model": name,
                "tags": oc.list_pretrained_tags_by_model(name),
                "setting": "embed.pretrained",
            },
        )
    if not oc.get_pretrained_cfg(name, tag):
        tags = oc.list_pretrained_tags_by_model(name)
        raise InvalidInput(
            f"{tag!r} is not a pretrained tag of {name} (setting {PRETRAINED_SETTING}); "
            + (f"known tags: {', '.join(tags)}" if tags else "this architecture has no pretrained weights"),
            details={"model": name, "pretrained": tag, "tags": tags, "setting": "embed.pretrained"},
        )
    found = cached_weights(name, tag, cache_dir=cache_dir)
    if found is None:
        # checked now, so that a request fails at once rather than a job minutes later
        policy.require_network(
            _download_url(oc.get_pretrained_cfg(name, tag)),
            what=f"the weights of {name} / {tag} are",
            settings=_ALTERNATIVES,
            details={"model": name, "pretrained": tag},
        )
    return Described(name, tag, tag, None, found)


def _policy(weights: WeightsPolicy | None, cache_dir: Path | None) -> WeightsPolicy:
    policy = weights or WeightsPolicy.from_env()
    return dataclasses.replace(policy, cache_dir=cache_dir) if cache_dir is not None else policy


# what a user can do instead of downloading: (setting key, how to set it)
_ALTERNATIVES = [
    ("embed.checkpoint", f"give a local weights file with {CHECKPOINT_SETTING}"),
    ("embed.model", f"pick weights already in the cache with {MODEL_SETTING} and {PRETRAINED_SETTING}"),
]


def _download_url(tag_cfg: dict[str, Any]) -> str:
    """Where open_clip fetches a tag's weights: the Hugging Face Hub, else a plain URL."""
    return hf_endpoint() if tag_cfg.get("hf_hub") else str(tag_cfg.get("url") or hf_endpoint())


def _download(tag_cfg: dict[str, Any], *, name: str, tag: str, policy: WeightsPolicy) -> Path:
    """The weights of ``name`` / ``tag`` fetched under ``policy``, as open_clip names them."""
    what = f"the weights of {name} / {tag} are"
    details = {"model": name, "pretrained": tag}
    if tag_cfg.get("hf_hub"):
        repo, filename = os.path.split(tag_cfg["hf_hub"])
        names = [HF_SAFE_WEIGHTS, HF_WEIGHTS] if not filename else [filename]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        return policy.hf_download(repo, names, what=what, settings=_ALTERNATIVES, details=details)
    policy.require_network(_download_url(tag_cfg), what=what, settings=_ALTERNATIVES, details=details)
    try:
        cache = str(policy.cache_dir) if policy.cache_dir else None
        return Path(_open_clip().pretrained.download_pretrained_from_url(tag_cfg["url"], cache_dir=cache))
    except Exception as exc:
        raise ModelUnavailable(
            f"could not download the weights of {name} / {tag}: {str(exc)[:300]} "
            f"(settings {CHECKPOINT_SETTING}, {MODEL_SETTING})",
            details={**details, "setting": "embed.checkpoint"},
        ) from None


class OpenClipEncoder:
    """An ``ImageTextEncoder`` around an open_clip model (eval mode, one device).

    On CUDA the forward passes run under ``torch.autocast`` in bfloat16 (float16 where bf16 is not
    supported); outputs are float32 and L2-normalised either way.
    """

    def __init__(self, model: Any, tokenizer: Any, preprocess_cfg: dict[str, Any], info: ModelInfo) -> None:
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self._info = info
        self.device = torch.device(info.device)
        size = preprocess_cfg.get("size", info.image_size)
        oc = _open_clip()
        self._transform = oc.image_transform(
            size,
            is_train=False,
            mean=preprocess_cfg.get("mean"),
            std=preprocess_cfg.get("std"),
            resize_mode=preprocess_cfg.get("resize_mode"),
            interpolation=preprocess_cfg.get("interpolation"),
        )
        self._amp: Any = None
        if self.device.type == "cuda":
            self._amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def preprocess(self) -> Any:
        """A PIL image → the normalised input tensor (3, S, S): the transform alone (picklable
        without the model, for data loader workers)."""
        return self._transform

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        if self._amp is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self._amp):
                yield

    def encode_images(self, batch: Any) -> FloatArray:
        """Preprocessed images (n, 3, S, S) → unit vectors (n, d) float32."""
        import torch

        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            with self._autocast():
                feats = self.model.encode_image(x)
            out = feats.float().cpu().numpy()
        return l2_normalise(out)

    def encode_texts(self, texts: list[str]) -> FloatArray:
        """Texts (n,) → unit vectors (n, d) float32 (each text truncated to the context length)."""
        import torch

        if not texts:
            return np.empty((0, self._info.dim), dtype=np.float32)
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            with self._autocast():
                feats = self.model.encode_text(tokens)
            out = feats.float().cpu().numpy()
        return l2_normalise(out)

    def close(self) -> None:
        """Free the model (called when a model cache evicts it)."""
        import torch

        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _model_from_config(cfg: dict[str, Any]) -> Any:
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(cfg)
    if "multimodal_cfg" in cfg:
        raise InvalidInput("CoCa checkpoints are not supported for embeddings")
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"]["hf_model_pretrained"] = False  # the checkpoint has the weights
    try:
        return (CustomTextCLIP if custom else CLIP)(**cfg)
    except (TypeError, KeyError, ValueError) as exc:
        raise InvalidInput(f"the checkpoint's model_cfg is not a valid open_clip config: {exc}") from None


def _tokenizer_for(cfg: dict[str, Any], name: str, cache_dir: Path | None) -> Any:
    oc = _open_clip()
    text_cfg = cfg.get("text_cfg", {})
    context = int(text_cfg.get("context_length", 77))
    try:
        if text_cfg.get("hf_tokenizer_name"):
            return oc.tokenizer.HFTokenizer(
                text_cfg["hf_tokenizer_name"],
                context_length=context,
                cache_dir=str(cache_dir) if cache_dir else None,
                **text_cfg.get("tokenizer_kwargs", {}),
            )
        if _known_config(name) is not None:
            return oc.get_tokenizer(name, cache_dir=str(cache_dir) if cache_dir else None)
        return oc.tokenizer.SimpleTokenizer(context_length=context, **text_cfg.get("tokenizer_kwargs", {}))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelUnavailable(
            f"the tokenizer of {name} is not available offline: {str(exc)[:300]} (setting {MODEL_SETTING})",
            details={"model": name},
        ) from None


def _strip_module(sd: dict[str, Any]) -> dict[str, Any]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_open_clip(
    spec: ModelSpec,
    *,
    device: str = "auto",
    weights: WeightsPolicy | None = None,
    cache_dir: Path | None = None,
    described: Described | None = None,
) -> OpenClipEncoder:
    """Build the encoder ``spec`` names on ``device`` (``describe`` first, unless given); missing
    weights are downloaded under ``weights`` (default: the environment's policy)."""
    import torch

    oc = _open_clip()
    policy = _policy(weights, cache_dir)
    cache_dir = policy.cache_dir
    d = described or describe(spec, weights=policy)
    dev = resolve_device(device)
    if d.checkpoint is not None:
        obj = _load_checkpoint(d.checkpoint)
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            sd, cfg = obj["state_dict"], obj.get("model_cfg")
            pp = obj.get("preprocess_cfg") or {}
        elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            sd, cfg, pp = obj, None, {}
        else:
            raise InvalidInput(f"checkpoint {d.checkpoint} holds no state dict")
        if cfg is not None:
            if not isinstance(cfg, dict):
                raise InvalidInput("the checkpoint's model_cfg must be a dict")
            model = _model_from_config(cfg)
        else:
            cfg = _known_config(d.name) or {}
            model = _model_from_config(cfg)
        try:
            missing, unexpected = model.load_state_dict(_strip_module(sd), strict=False)
        except RuntimeError as exc:  # tensors of the wrong shape
            lines = [x.strip() for x in str(exc).splitlines()[1:4]]
            raise InvalidInput(
                f"checkpoint {d.checkpoint.name} does not fit the architecture {d.name}: "
                f"{'; '.join(lines)[:400]} (settings {MODEL_SETTING}, {CHECKPOINT_SETTING})"
            ) from None
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise InvalidInput(
                f"checkpoint {d.checkpoint.name} does not fit the architecture {d.name}: "
                f"{len(missing)} missing weights (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}) (settings {MODEL_SETTING}, {CHECKPOINT_SETTING})",
                details={"missing": missing[:20], "unexpected": unexpected[:20]},
            )
        preprocess = {**oc.get_model_preprocess_cfg(model), **pp}
    else:
        cfg = _known_config(d.name) or {}
        if d.weights is None and d.version == UNTRAINED_VERSION:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # the same untrained model in every process
                model = oc.create_model(
                    d.name, pretrained=None, pretrained_text=False, pretrained_image=False
                )
            preprocess = dict(oc.get_model_preprocess_cfg(model))
        else:
            tag_cfg = oc.get_pretrained_cfg(d.name, d.pretrained or "")
            weights_file = d.weights
            if weights_file is None:  # not in the cache: describe found the network reachable
                weights_file = _download(tag_cfg, name=d.name, tag=d.pretrained or "", policy=policy)
            pp_override = {
                k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg
            }
            model = oc.create_model(
                d.name,
                pretrained=str(weights_file),
                force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                force_preprocess_cfg=pp_override,
                pretrained_text=False,
                pretrained_image=False,
            )
            preprocess = dict(oc.get_model_preprocess_cfg(model))
    tokenizer = _tokenizer_for(cfg or {}, d.name, cache_dir)
    model = model.to(dev)
    size = preprocess.get("size", 224)
    image_size = int(size if isinstance(size, int) else max(size))
    info = ModelInfo(
        name=d.name,
        pretrained=d.pretrained,
        version=d.version,
        dim=0,
        device=dev,
        checkpoint=str(d.checkpoint) if d.checkpoint else None,
        image_size=image_size,
    )
    encoder = OpenClipEncoder(model, tokenizer, preprocess, info)
    # the output dimension, measured: projections differ between tower kinds
    dim = int(encoder.encode_texts(["a photo"]).shape[1])
    encoder._info = dataclasses.replace(info, dim=dim)
    return encoder
