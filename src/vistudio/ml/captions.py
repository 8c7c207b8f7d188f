"""Image captioning through Hugging Face transformers: one provider for every image-to-text model
that ``AutoModelForImageTextToText`` loads (BLIP base and large — the default is BLIP base —
BLIP-2, GIT, …), named by a Hub repository or a local folder.

A model comes from, in order: a local folder (``config.json``, the weights, the processor and
tokenizer files, as ``save_pretrained`` writes them); the Hugging Face cache; a download through
the workspace's weights policy (refused with a clear ``ModelUnavailable`` when offline or when the
Hub refuses the user). Captions are generated in batches without gradients, greedy (or with
``num_beams``), at most ``max_new_tokens`` tokens; on a GPU in bfloat16.

A library module: images in, strings out; no database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vistudio.errors import ModelUnavailable

if TYPE_CHECKING:
    from vistudio.ml.weights import WeightsPolicy

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
# the files a captioning model's folder may hold: the first two are needed, the rest as present
NEEDED = ("config.json", "preprocessor_config.json")
OPTIONAL = (
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "processor_config.json",
    "generation_config.json",
)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
KNOWN = {  # short names users may type
    "blip-base": "Salesforce/blip-image-captioning-base",
    "blip-large": "Salesforce/blip-image-captioning-large",
    "blip2-opt-2.7b": "Salesforce/blip2-opt-2.7b",
    "git-base-coco": "microsoft/git-base-coco",
}


def resolve_name(name: str) -> str:
    """A short name of :data:`KNOWN` → its repository; anything else as given."""
    return KNOWN.get(name.strip(), name.strip())


def _settings_hint() -> list[tuple[str, str]]:
    return [("captions.model", "set captions.model to a local folder holding a captioning model")]


def locate(name: str, policy: WeightsPolicy) -> Path:
    """The local folder of the model ``name``: the folder itself, the Hugging Face cache, or a
    download (network and offline mode checked first)."""
    source = resolve_name(name)
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(
                f"{folder} is not a captioning model's folder (no config.json)",
                details={"model": source, "setting": "captions.model"},
            )
        return folder
    if source.startswith(("/", ".", "~")) or source.count("/") != 1:
        raise ModelUnavailable(
            f"captioning model {source!r} is neither a folder on this machine nor a Hugging Face "
            "repository name (owner/name)",
            details={"model": source, "setting": "captions.model"},
        )
    cached = _cached(source, policy)
    if cached is not None:
        return cached
    what = f"the captioning model {source} is"
    paths = [policy.hf_download(source, [n], what=what, settings=_settings_hint()) for n in NEEDED]
    policy.hf_download(source, list(WEIGHT_FILES), what=what, settings=_settings_hint())
    for n in OPTIONAL[2:]:
        with suppress(ModelUnavailable):  # not every model has every tokenizer file
            policy.hf_download(source, [n], what=what, settings=_settings_hint())
    return paths[0].parent


def _cached(repo: str, policy: WeightsPolicy) -> Path | None:
    """The cached snapshot of ``repo`` that holds a config and weights, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers brings it
        return None
    cache = str(policy.cache_dir) if policy.cache_dir else None
    config = try_to_load_from_cache(repo, "config.json", cache_dir=cache)
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder if any((folder / w).is_file() for w in WEIGHT_FILES) else None


def version_of(folder: Path) -> str:
    """A short fingerprint of a model folder's configuration and weights (sizes and names): a
    model changed in place gets a new version, so its captions are written again."""
    h = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
        if name.endswith((".json", ".txt", ".safetensors", ".bin", ".model")):
            p = folder / name
            h.update(name.encode())
            h.update(str(p.stat().st_size).encode())
            if p.stat().st_size < 1_000_000:
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def caption_image(source: str | Path | bytes, *, max_side: int) -> Any:
    """A photo (path or bytes) as the captioner reads it: upright RGB, JPEGs drafted on load, then
    shrunk to at most ``max_side`` px. Raises on an unreadable photo."""
    from vistudio.ml.preprocess import open_rgb

    img = open_rgb(source, draft_size=max_side)
    img.thumbnail((max_side, max_side))
    return img


@dataclass
class Captioner:
    """A loaded captioning model: ``caption(images)`` → one string per image."""

    name: str
    version: str
    device: str
    model: Any
    processor: Any
    max_new_tokens: int = 30
    num_beams: int = 1

    def caption(self, images: Sequence[Any]) -> list[str]:
        """Captions of ``images`` (PIL images, RGB), stripped, in order."""
        import torch

        if not images:
            return []
        inputs = self.processor(images=list(images), return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if self.device.startswith("cuda"):
            inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def close(self) -> None:
        self.model = None


def load_captioner(
    name: str, *, policy: WeightsPolicy, device: str = "cpu", max_new_tokens: int = 30, num_beams: int = 1
) -> Captioner:
    """The model ``name`` (a repository, a short name of :data:`KNOWN` or a folder) loaded on
    ``device``; ``ModelUnavailable`` with the reason when it cannot be had or read."""
    folder = locate(name, policy)
    try:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(str(folder))
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model: Any = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=dtype)
        model.to(device)
        model.eval()
    except ModelUnavailable:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelUnavailable(
            f"cannot load the captioning model {resolve_name(name)!r} from {folder}: {first[:300]}",
            details={"model": resolve_name(name), "setting": "captions.model"},
        ) from None
    return Captioner(
        name=resolve_name(name),
        version=version_of(folder),
        device=device,
        model=model,
        processor=processor,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
    )
