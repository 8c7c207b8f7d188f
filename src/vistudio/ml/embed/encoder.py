"""The image/text encoder interface that semantic search is built on, and what identifies a model.

An encoder turns preprocessed images (n, 3, H, W) and texts into L2-normalised float32 vectors
(n, d) in one shared space, so that a text and the images it describes score high by inner
product. ``ModelSpec`` is what a user asks for (architecture + pretrained tag, or a checkpoint);
``ModelInfo`` is what was loaded, with the ``version`` that keys stored vectors: the pretrained
tag, the checkpoint's sha256, or ``untrained-seed0`` for deliberately untrained weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
UNTRAINED = "none"  # the pretrained tag that asks for random (seeded) weights
UNTRAINED_VERSION = "untrained-seed0"


@dataclass(frozen=True)
class ModelSpec:
    """A request for a model: ``name`` (open_clip architecture), ``pretrained`` tag or ``checkpoint``.

    With a checkpoint the tag is ignored; the architecture comes from ``name`` or from the
    checkpoint itself (a ``model_cfg`` entry). ``pretrained == "none"`` means untrained weights.
    """

    name: str | None
    pretrained: str | None = None
    checkpoint: Path | None = None

    @property
    def untrained(self) -> bool:
        return self.checkpoint is None and (self.pretrained or "").strip().lower() == UNTRAINED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pretrained": None if self.checkpoint else self.pretrained,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        ckpt = d.get("checkpoint")
        return cls(
            name=d.get("name"), pretrained=d.get("pretrained"), checkpoint=Path(ckpt) if ckpt else None
        )


@dataclass(frozen=True)
class ModelInfo:
    """What an encoder is: enough to reload it and to tell its vectors from any other model's."""

    name: str
    pretrained: str | None  # the tag, "none" when untrained, None for a checkpoint
    version: str  # tag, checkpoint sha256, or "untrained-seed0"
    dim: int
    device: str
    checkpoint: str | None = None
    image_size: int = 224

    @property
    def untrained(self) -> bool:
        return self.version == UNTRAINED_VERSION

    @property
    def key(self) -> str:
        """``name@version``: unique per set of vectors."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["untrained"] = self.untrained
        return d


@runtime_checkable
class ImageTextEncoder(Protocol):
    """A CLIP-style dual encoder. Vectors are L2-normalised float32, one row per input."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def preprocess(self) -> Callable[[Any], Any]:
        """A PIL RGB image → the model's input tensor (3, H, W) (resize, crop, normalise).

        A plain picklable transform, not a bound method: data loader workers receive it without
        a copy of the model."""
        ...

    def encode_images(self, batch: Any) -> FloatArray:
        """Preprocessed images (n, 3, H, W) → vectors (n, d)."""
        ...

    def encode_texts(self, texts: list[str]) -> FloatArray:
        """Texts (n,) → vectors (n, d)."""
        ...


def l2_normalise(x: npt.ArrayLike) -> FloatArray:
    """Rows of ``x`` (n, d) scaled to unit length as float32 (zero rows stay zero)."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    out: FloatArray = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out
