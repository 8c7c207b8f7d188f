"""Batched PyTorch inference over image files with the shared evaluation preprocessing.

Images are decoded and preprocessed by :mod:`vistudio.ml.preprocess` (Pillow + NumPy) on a
background thread while the model runs on the previous batch. An image that cannot be read is
reported with its reason and left out; the rest go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vistudio.errors import BadRequest
from vistudio.ml.preprocess import eval_array, open_rgb

T = TypeVar("T")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a clear 400."""
    if device not in DEVICES:
        raise BadRequest(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadRequest("device 'cuda' was asked for but no CUDA GPU is available here; use auto or cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def exact_math(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """No TF32 on CUDA: evaluation must agree with the CPU-run exported models to ~1e-5."""
    if device.type == "cuda":
        return torch.backends.cudnn.flags(
            enabled=True, benchmark=False, deterministic=False, allow_tf32=False
        )
    return contextlib.nullcontext()


@dataclass
class Batch(Generic[T]):
    items: list[T]
    logits: npt.NDArray[np.float32]  # len(items) × num_classes


def _load(item_path: tuple[T, str], meta: dict[str, Any], size: int) -> tuple[T, Any]:
    item, path = item_path
    try:
        return item, eval_array(open_rgb(path, draft_size=size), meta)
    except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
        reason = "file not found" if isinstance(exc, FileNotFoundError) else f"not a readable image: {exc}"
        return item, reason[:300]


def predict_batches(
    model: nn.Module,
    items: Sequence[tuple[T, str]],
    meta: dict[str, Any],
    *,
    batch_size: int,
    device: torch.device,
    on_error: Callable[[T, str], None] | None = None,
) -> Iterator[Batch[T]]:
    """Yield logits for ``(item, image path)`` pairs, ``batch_size`` at a time, in order.

    ``meta`` is the checkpoint's preprocess dict. Unreadable images go to ``on_error(item, reason)``.
    """
    size = max(meta["input_size"])
    model = model.to(device).eval()

    def prepare(chunk: Sequence[tuple[T, str]]) -> list[tuple[T, Any]]:
        return [_load(x, meta, size) for x in chunk]

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preprocess") as pool:
        future = pool.submit(prepare, chunks[0]) if chunks else None
        for n in range(len(chunks)):
            assert future is not None
            loaded = future.result()
            future = pool.submit(prepare, chunks[n + 1]) if n + 1 < len(chunks) else None
            good = [(it, arr) for it, arr in loaded if not isinstance(arr, str)]
            for it, arr in loaded:
                if isinstance(arr, str) and on_error is not None:
                    on_error(it, arr)
            if not good:
                continue
            x = torch.from_numpy(np.stack([arr for _, arr in good])).to(device)
            with torch.inference_mode(), exact_math(device):
                logits = model(x).float().cpu().numpy()
            yield Batch([it for it, _ in good], logits)


def eager_logits(model: nn.Module, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Logits of a preprocessed N×C×H×W batch on the CPU (the reference for parity checks)."""
    model = model.cpu().eval()
    with torch.inference_mode():
        out: npt.NDArray[np.float32] = model(torch.from_numpy(batch)).float().numpy()
    return out


@dataclass
class DetectionBatch(Generic[T]):
    items: list[T]
    detections: list[Any]  # one vistudio.ml.inference.detections.Detections per item


def _load_rgb(
    entry: tuple[T, str, tuple[int, int] | None], size: int
) -> tuple[T, Any, tuple[int, int] | None]:
    from vistudio.ml.inference.onnx import detection_input  # the one decode of detector inputs

    item, path, original = entry
    try:
        arr, _, full = detection_input(path, size, original=original)
        return item, arr, full
    except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
        reason = "file not found" if isinstance(exc, FileNotFoundError) else f"not a readable image: {exc}"
        return item, reason[:300], None


def detect_batches(
    model: nn.Module,
    items: Sequence[tuple[T, str, tuple[int, int] | None]],
    meta: dict[str, Any],
    *,
    batch_size: int,
    device: torch.device,
    on_error: Callable[[T, str], None] | None = None,
) -> Iterator[DetectionBatch[T]]:
    """Run a torchvision detector over ``(item, image path, (width, height))`` triples, in order.

    Each image is decoded upright in RGB (JPEG drafted down to the checkpoint's input size at the
    least), scaled to 0..1 and given to the detector at its decoded size (the detector resizes and
    normalises inside); images are batched only with images of the same decoded size, so each
    image's detections are those it gets alone, whatever ``batch_size``. Its output becomes :class:`~vistudio.ml.inference.detections.Detections` in
    the pixels of ``(width, height)`` — the sample's own size — or of the decoded image when None.
    ``meta`` is the checkpoint's preprocess dict. Unreadable images go to ``on_error(item, reason)``.
    """
    from vistudio.ml.inference.detections import from_torchvision

    size = max(meta["input_size"])
    model = model.to(device).eval()

    def prepare(chunk: Sequence[tuple[T, str, tuple[int, int] | None]]) -> list[tuple[T, Any, Any]]:
        return [_load_rgb(x, size) for x in chunk]

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preprocess") as pool:
        future = pool.submit(prepare, chunks[0]) if chunks else None
        for n in range(len(chunks)):
            assert future is not None
            loaded = future.result()
            future = pool.submit(prepare, chunks[n + 1]) if n + 1 < len(chunks) else None
            good = [(it, arr, orig) for it, arr, orig in loaded if not isinstance(arr, str)]
            for it, arr, _ in loaded:
                if isinstance(arr, str) and on_error is not None:
                    on_error(it, arr)
            if not good:
                continue
            # one model call per decoded size: torchvision pads a batch to its largest image, which
            # changes the features (and so the detections) of the smaller ones; images of one size
            # give the same detections batched as alone
            by_size: dict[tuple[int, ...], list[int]] = {}
            for i, (_, arr, _) in enumerate(good):
                by_size.setdefault(tuple(arr.shape), []).append(i)
            outputs: list[Any] = [None] * len(good)
            for indices in by_size.values():
                images = [torch.from_numpy(good[i][1]).to(device) for i in indices]
                with torch.inference_mode(), exact_math(device):
                    for i, out in zip(indices, model(images), strict=True):
                        outputs[i] = out
            yield DetectionBatch(
                [it for it, _, _ in good],
                [
                    from_torchvision(
                        out,
                        input_size=(int(arr.shape[2]), int(arr.shape[1])),
                        original_size=(int(orig[0]), int(orig[1])),
                    )
                    for (_, arr, orig), out in zip(good, outputs, strict=True)
                ],
            )
