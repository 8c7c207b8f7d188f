"""Batched image embedding: a torch ``DataLoader`` decodes (shrink-on-load) while the model encodes.

Decoding is where a naive loop loses its time: a 12 MP JPEG takes ~100 ms to decode in full,
but the model wants 224 px. ``open_image`` asks libjpeg for a reduced decode (``Image.draft``:
DCT scaling by 1/2, 1/4 or 1/8, still at least the model's input size), then applies the EXIF
orientation. With ``workers > 0`` the decoding runs in spawned worker processes (spawn, not
fork: the caller may be a threaded server) overlapping the forward passes; small jobs decode
in-process because starting workers costs seconds.

A file that cannot be read (missing, corrupt, not an image, a decompression bomb) becomes a
failure with its reason; the rest of its batch is embedded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from vistudio.ml.embed.encoder import FloatArray, ImageTextEncoder

# Below this many images a job decodes in-process: spawning DataLoader workers (each imports
# torch) costs more than it saves.
MIN_ITEMS_FOR_WORKERS = 256


@dataclass(frozen=True)
class ImageItem:
    """One image to embed: its id (a sample id) and its file."""

    id: int
    path: Path


@dataclass
class EmbeddedBatch:
    ids: npt.NDArray[np.int64]  # (n,)
    vectors: FloatArray  # (n, d), unit rows
    failures: list[tuple[int, str]] = field(default_factory=list)  # (id, reason)


def open_image(
    source: str | Path | IO[bytes], *, min_side: int, max_pixels: int | None = None
) -> Image.Image:
    """Decode ``source`` as RGB at no less than ``min_side`` px on its short side where the format
    allows a reduced decode (JPEG), EXIF orientation applied. Raises on unreadable input, and
    ``DecompressionBombError`` when the decode would exceed ``max_pixels`` (checked before it)."""
    with Image.open(source) as im:
        if im.format == "JPEG" and min_side > 0:
            w, h = im.size
            short = min(w, h)
            if short > 2 * min_side:
                # draft keeps each side >= the requested size: ask for the scaled aspect
                scale = min_side / short
                im.draft("RGB", (max(1, round(w * scale)), max(1, round(h * scale))))
        if max_pixels is not None and im.size[0] * im.size[1] > max_pixels:
            raise Image.DecompressionBombError(f"{im.size[0]}×{im.size[1]} pixels is over {max_pixels:,}")
        im.load()
        out = ImageOps.exif_transpose(im)
        if out.mode != "RGB":
            out = out.convert("RGB")
        elif out is im:
            out = im.copy()
        return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, Image.DecompressionBombError):
        return "image too large (decompression bomb limit)"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"unreadable image: {text[:200]}"


class ImageFileDataset:
    """``(id, tensor | None, reason | None)`` per item: decoded with ``open_image``, then ``transform``."""

    def __init__(self, items: Sequence[ImageItem], transform: Callable[[Any], Any], *, min_side: int) -> None:
        self.items = list(items)
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        item = self.items[i]
        try:
            image = open_image(item.path, min_side=self.min_side)
            return item.id, self.transform(image), None
        except Exception as exc:  # every failure of one file is that file's, not the job's
            return item.id, None, _reason(exc)


def collate(batch: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list[tuple[int, str]]]:
    """Stack the decoded images; set the failures aside. → (ids, (n, 3, S, S) or None, failures)."""
    import torch

    ok = [(i, t) for i, t, err in batch if err is None]
    failures = [(i, err) for i, _, err in batch if err is not None]
    images = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], images, failures


def encode_batch(
    encoder: ImageTextEncoder, ids: Sequence[int], images: Any, failures: list[tuple[int, str]]
) -> EmbeddedBatch:
    """Encode one decoded batch — ``images`` (n, 3, S, S) preprocessed, or None when every image
    of the batch failed — into an ``EmbeddedBatch``; a non-finite vector becomes a failure."""
    id_arr = np.asarray(ids, dtype=np.int64)
    if images is None:
        return EmbeddedBatch(id_arr, np.empty((0, encoder.info.dim), dtype=np.float32), failures)
    vectors = encoder.encode_images(images)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():  # an fp16 overflow: one bad vector must not poison the index
        reason = "the model produced a non-finite vector for this image"
        failures = [*failures, *((int(i), reason) for i in id_arr[~finite])]
        id_arr, vectors = id_arr[finite], vectors[finite]
    return EmbeddedBatch(id_arr, vectors, failures)


def embed_images(
    encoder: ImageTextEncoder,
    items: Sequence[ImageItem],
    *,
    batch_size: int = 64,
    workers: int = 0,
) -> Iterator[EmbeddedBatch]:
    """Embed ``items`` in order, one ``EmbeddedBatch`` per ``batch_size`` items.

    Vectors are L2-normalised float32 (n, d); unreadable files are reported in ``failures``.
    Stopping the iteration early (e.g. a cancelled job) shuts the loader's workers down.
    """
    from torch.utils.data import DataLoader

    if not items:
        return
    workers = workers if len(items) >= MIN_ITEMS_FOR_WORKERS else 0
    dataset = ImageFileDataset(items, encoder.preprocess, min_side=encoder.info.image_size)
    loader: DataLoader[Any] = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=encoder.info.device.startswith("cuda"),
        multiprocessing_context="spawn" if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    it = iter(loader)
    try:
        for ids, images, failures in it:
            yield encode_batch(encoder, ids, images, failures)
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()
        del it
