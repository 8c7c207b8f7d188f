"""Images on disk → batches: a Dataset over ``(path, target)`` items and a LightningDataModule.

Decoding uses the shared ``open_rgb`` with JPEG draft mode (shrink-on-load to about the input
size, which makes big photos several times cheaper to decode), then the task's transform. The
training loader shuffles with a seeded generator and seeds its worker processes, so a run with a
given seed sees the same batches in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vistudio.ml.preprocess import open_rgb
from vistudio.ml.training.task import TrainingTask, Transform


class Item(Protocol):
    """Anything with a file path and a target (``services.experiments.LabelledItem`` is one)."""

    @property
    def path(self) -> str: ...

    @property
    def target(self) -> Any: ...


def as_pairs(items: Sequence[Item | tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Items or ``(path, target)`` tuples → plain tuples (cheap to send to another process)."""
    return [it if isinstance(it, tuple) else (str(it.path), it.target) for it in items]


class ImageDataset(Dataset[tuple[torch.Tensor, Any]]):
    def __init__(
        self, items: Sequence[tuple[str, Any]], transform: Transform, *, draft_size: int | None = None
    ) -> None:
        self.items = list(items)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        path, target = self.items[index]
        try:
            img = open_rgb(path, draft_size=self.draft_size)
        except Exception as exc:  # name the file: "cannot identify image" alone helps nobody
            raise RuntimeError(f"cannot read training image {path}: {exc}") from exc
        return self.transform(img, target)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow it
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def auto_workers(num_workers: int, *, accelerator: str) -> int:
    """``-1`` → 0 on CPU (the model needs the cores more than decoding does), up to 8 on GPU."""
    if num_workers >= 0:
        return num_workers
    if accelerator == "cpu":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class ImageDataModule(L.LightningDataModule):
    """Train and validation loaders over ``(path, target)`` pairs, for one task."""

    def __init__(
        self,
        *,
        task: TrainingTask,
        preprocess: dict[str, Any],
        train: Sequence[Item | tuple[str, Any]],
        val: Sequence[Item | tuple[str, Any]],
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.task = task
        self.preprocess = preprocess
        encode = task.encode_target
        self.train_items = [(p, encode(t)) for p, t in as_pairs(train)]
        self.val_items = [(p, encode(t)) for p, t in as_pairs(val)]
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        draft = max(preprocess["input_size"])
        self.train_set = ImageDataset(self.train_items, task.train_transform(preprocess), draft_size=draft)
        self.val_set = ImageDataset(self.val_items, task.eval_transform(preprocess), draft_size=draft)

    @property
    def train_targets(self) -> list[Any]:
        return [t for _, t in self.train_items]

    def _loader(self, data: ImageDataset, *, shuffle: bool) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.task.collate,
            generator=generator,
            worker_init_fn=_seed_worker if self.num_workers else None,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            # a last batch of one image breaks batch norm; dropping a partial batch costs nothing
            drop_last=shuffle and len(data) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val_set, shuffle=False)
