"""The one evaluation preprocessing, shared by PyTorch evaluation and ONNX Runtime prediction.

It uses only Pillow and NumPy, so an exported model runs with exactly the same input wherever it
runs: decode → honour EXIF orientation → RGB → resize (stretch) to ``size``×``size`` with bilinear
filtering → scale to [0, 1] → subtract ``mean`` and divide by ``std`` per channel → C×H×W float32.
The same parameters are stored with every checkpoint and embedded in every exported model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

PREPROCESS_VERSION = 1


def preprocess_meta(size: int, mean: list[float], std: list[float]) -> dict[str, Any]:
    """The parameters of :func:`eval_array`, as stored in checkpoints and exported models."""
    return {
        "version": PREPROCESS_VERSION,
        "resize": "stretch",
        "interpolation": "bilinear",
        "input_size": [int(size), int(size)],
        "color": "RGB",
        "scale": 1 / 255,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "layout": "NCHW",
    }


def open_rgb(source: str | Path | bytes | Image.Image, *, draft_size: int | None = None) -> Image.Image:
    """Decode an image (path, bytes or PIL image) upright and in RGB.

    ``draft_size`` lets JPEG decoding shrink on load to at least that size (much faster for big
    photos; the later resize is then applied to the drafted image).
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        if draft_size and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
    img = ImageOps.exif_transpose(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def eval_array(img: Image.Image, meta: dict[str, Any]) -> npt.NDArray[np.float32]:
    """One RGB image → a C×H×W float32 array, exactly as :func:`preprocess_meta` describes."""
    width, height = meta["input_size"][1], meta["input_size"][0]
    if img.mode != "RGB":
        img = img.convert("RGB")
    resized = img.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32) * np.float32(meta["scale"])
    mean = np.asarray(meta["mean"], dtype=np.float32)
    std = np.asarray(meta["std"], dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def eval_batch(
    sources: list[str | Path | bytes | Image.Image], meta: dict[str, Any]
) -> npt.NDArray[np.float32]:
    """Several images → an N×C×H×W float32 batch."""
    return np.stack([eval_array(open_rgb(s, draft_size=max(meta["input_size"])), meta) for s in sources])
