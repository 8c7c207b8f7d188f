"""Exact resume: batches and augmentations as pure functions of (seed, epoch, position), RNG states.

A training that stops (or whose process dies) continues from its last checkpoint as if it had
never stopped: ``N`` steps stopped after ``N/2`` and resumed end with the same weights as ``N``
uninterrupted steps. Three things make that hold:

* **The order of the batches.** :class:`EpochBatchSampler` draws each epoch's permutation from
  ``(seed, epoch)`` alone and can skip the batches of an epoch that were already trained on, so
  a resumed run continues with the very next batch of the epoch it stopped in.
* **Augmentations.** :class:`SeededDataset` seeds the random number generators (torch CPU, numpy,
  ``random``) of each image from ``(seed, epoch, index)`` and restores torch's and ``random``'s
  afterwards, so an image is augmented the same way however many loader processes there are,
  whether its batch was prefetched or not, and the training step's own random draws are untouched
  by data loading.
* **Everything else.** The model, the optimiser, the learning-rate schedule, Lightning's loop
  counters, the early-stopping and best/last bookkeeping and the global RNG states (torch CPU and
  CUDA, numpy, ``random``; ``Reporter.state_dict``, restored when training starts) are saved with
  every ``last`` checkpoint under :data:`STATE_KEY` and restored by Lightning's own ``ckpt_path``
  resume.

Everything in the saved state is tensors and plain values: the file loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from vistudio.ml.training.data import ImageDataModule, ImageDataset, _seed_worker

STATE_KEY = "training_state"
STATE_FORMAT = "vistudio-training-state/1"
_MASK32 = 2**32 - 1


def derived_seed(*parts: int) -> int:
    """A 32-bit seed that depends on every part (numpy's SeedSequence mixes them)."""
    return int(np.random.SeedSequence([int(p) & _MASK32 for p in parts]).generate_state(1)[0])


def item_seeds(base: int, indices: list[int]) -> list[int]:
    """One 32-bit seed per image index, mixed from ``base`` (splitmix64's finaliser, vectorised:
    a whole epoch of keys costs microseconds, not a SeedSequence per image)."""
    with np.errstate(over="ignore"):
        x = np.asarray(indices, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(base)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x & np.uint64(_MASK32)).astype(np.int64).tolist()


# --- random number generator states as plain data ---------------------------------------------
def rng_state() -> dict[str, Any]:
    """The global RNG states: torch CPU (and CUDA when initialised), numpy and ``random``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only onto as many devices)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --- data order and augmentation --------------------------------------------------------------
class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, seed)`` keys: epoch ``e`` shuffles with ``(seed, e)`` only; the first
    ``skip`` batches of epoch ``resume_epoch`` are left out (they were trained on before a stop).

    ``len()`` is always the full number of batches of an epoch: Lightning counts a resumed epoch
    from where it stopped, so the shorter first epoch still ends at the right batch index.

    In a DDP run of ``world`` processes every process draws the same batches of ``batch_size``
    (one optimiser step) and keeps every ``world``-th image of each, starting at ``rank``: the
    processes together train on exactly the batches one process would.
    """

    def __init__(
        self, size: int, batch_size: int, *, seed: int, drop_last: bool, rank: int = 0, world: int = 1
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.resume_epoch = -1
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = epoch

    @property
    def sampler(self) -> EpochBatchSampler:
        """Lightning calls ``set_epoch`` on a loader's ``batch_sampler.sampler``."""
        return self

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    def order(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
        return torch.randperm(self.size, generator=gen).tolist()

    def batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        order = self.order(epoch)
        seeds = item_seeds(derived_seed(self.seed, epoch, 2), order)
        keys = list(zip(order, seeds, strict=True))
        return [
            keys[b * self.batch_size : (b + 1) * self.batch_size][self.rank :: self.world]
            for b in range(len(self))
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        skip = self.skip if epoch == self.resume_epoch else 0
        yield from self.batches(epoch)[skip:]

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue with batch ``batches_done`` of ``epoch`` (0-based); a finished epoch moves on
        to the next one."""
        if batches_done >= len(self):
            epoch, batches_done = epoch + 1, 0
        self.epoch = self.resume_epoch = epoch
        self.skip = batches_done


class SeededDataset(Dataset[Any]):
    """Wraps a dataset: item ``(index, seed)`` is ``dataset[index]`` under RNGs (torch CPU,
    numpy, ``random``) seeded with ``seed``. In the training process torch's and ``random``'s
    global states are restored afterwards (a training step draws from them); numpy's is left at
    the last image's seed."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if get_worker_info() is not None:  # a loader process: its own RNGs serve nobody else
            _seed_all(seed)
            return self.dataset[index]
        torch_state = torch.get_rng_state()
        py_state = random.getstate()
        try:
            _seed_all(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
            # numpy's global state is reseeded, not restored (saving it costs 0.2 ms an image):
            # it is then a function of the last image loaded, the same in a resumed run


def _seed_all(seed: int) -> None:
    # the CPU generator only: torch.manual_seed would reseed CUDA's too
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class ResumableLoader(DataLoader[Any]):
    """The training loader: Lightning saves its ``state_dict`` (where training stands: the epoch
    and how many of its batches were trained on, set by :meth:`mark` after every step) in
    checkpoints; a resumed run gives it back through ``load_state_dict`` before ``fit`` (Lightning
    would do it too late: the loader is first iterated while the optimiser is configured)."""

    batch_sampler: EpochBatchSampler

    def __init__(self, dataset: Dataset[Any], *, batch_sampler: EpochBatchSampler, **kwargs: Any) -> None:
        super().__init__(SeededDataset(dataset), batch_sampler=batch_sampler, **kwargs)
        self.position = (0, 0)  # (epoch, batches of it done)

    def mark(self, epoch: int, batches_done: int) -> None:
        self.position = (epoch, batches_done)

    def state_dict(self) -> dict[str, Any]:
        epoch, done = self.position
        return {"epoch": epoch, "batches_done": done, "batches": len(self.batch_sampler)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.resume_at(int(state["epoch"]), int(state["batches_done"]))
        self.position = (self.batch_sampler.epoch, self.batch_sampler.skip)


def loader_state(state: dict[str, Any]) -> dict[str, Any] | None:
    """The training loader's saved position in a training state (None when it has none)."""
    fit = (state.get("loops") or {}).get("fit_loop") or {}
    loaders = (fit.get("state_dict") or {}).get("combined_loader") or []
    return loaders[0] if loaders else None


def lightning_checkpoint(state: dict[str, Any], model_state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A saved training state plus the LightningModule's weights → the dict Lightning resumes from."""
    out = {k: v for k, v in state.items() if k != "format"}
    out["state_dict"] = model_state
    return out


def training_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Lightning's checkpoint dict → what goes under :data:`STATE_KEY` (its weights left out:
    they are the checkpoint's own ``state_dict``)."""
    return {"format": STATE_FORMAT, **{k: v for k, v in checkpoint.items() if k != "state_dict"}}


def read_training_state(path: str | Path) -> dict[str, Any]:
    """The training state of a ``last`` checkpoint; a file without one is a clear ``InvalidInput``."""
    from vistudio.errors import InvalidInput
    from vistudio.ml.checkpoint import read_checkpoint

    obj = read_checkpoint(path)
    state = obj.get(STATE_KEY)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise InvalidInput(f"checkpoint {Path(path).name} holds no training state to resume from")
    return obj


def check_training_state(path: str | Path) -> None:
    """Whether a ``last`` checkpoint can be resumed from, without reading its tensors: the file is
    memory-mapped (``torch.load(mmap=True, weights_only=True)``), so only its small pickled
    structure is read — a checkpoint of hundreds of MB costs no full read. A missing, damaged or
    foreign file, or one without a training state, is a clear ``InvalidInput`` (as
    :func:`read_training_state`, which the training itself reads)."""
    from vistudio.errors import InvalidInput
    from vistudio.ml.checkpoint import FORMAT

    name = Path(path).name
    try:
        obj = torch.load(Path(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise InvalidInput(f"not a loadable checkpoint: {name}: {exc}") from exc
    try:
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise InvalidInput(f"not a vistudio checkpoint: {name}")
        state = obj.get(STATE_KEY)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise InvalidInput(f"checkpoint {name} holds no training state to resume from")
        if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("meta"), dict):
            raise InvalidInput(f"checkpoint {name} holds no weights to resume from")
    finally:
        del obj  # the tensors map the file: let it go now


class ResumableDataModule(ImageDataModule):
    """``ImageDataModule`` with one :class:`ResumableLoader` for training, made once and reused
    (the loader Lightning iterates is the one the ``Reporter`` marks)."""

    _train_loader: ResumableLoader | None = None

    def __init__(self, *, rank: int = 0, world: int = 1, **kwargs: Any) -> None:
        """``rank`` of ``world`` DDP processes: training batches are split between them (see
        :class:`EpochBatchSampler`) and each validates every ``world``-th image, so that the
        processes together see the validation subset once, without the repeated images a
        padding ``DistributedSampler`` would add (metrics and loss are summed over processes)."""
        super().__init__(**kwargs)
        self.rank, self.world = rank, world
        if world > 1:
            val = self.val_set
            self.val_set = ImageDataset(self.val_items[rank::world], val.transform, draft_size=val.draft_size)

    def train_dataloader(self) -> ResumableLoader:
        if self._train_loader is None:
            data = self.train_set
            drop_last = len(data) > self.batch_size  # a last batch of one image breaks batch norm
            sampler = EpochBatchSampler(
                len(data),
                self.batch_size,
                seed=self.seed,
                drop_last=drop_last,
                rank=self.rank,
                world=self.world,
            )
            self._train_loader = ResumableLoader(
                data,
                batch_sampler=sampler,
                num_workers=self.num_workers,
                collate_fn=self.task.collate,
                # the loader draws its workers' base seed from this, never from the global RNG
                generator=torch.Generator().manual_seed(derived_seed(self.seed, 1)),
                worker_init_fn=_seed_worker if self.num_workers else None,
                persistent_workers=self.num_workers > 0,
                pin_memory=self.pin_memory,
            )
        return self._train_loader
