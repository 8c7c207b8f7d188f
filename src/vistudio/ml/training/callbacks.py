"""How a caller follows a training run: metrics, checkpoints and a graceful stop.

:class:`TrainingCallbacks` is the interface the caller implements (the training job sends each
call to its parent process); :class:`Reporter` is the Lightning callback that drives it. Epoch
numbers are 1-based counts of finished epochs; ``step`` is the number of optimiser steps so far.

Step points come every ``log_every_n_steps`` steps, from the very first step on, and more often
when an epoch is short: every epoch gets at least :data:`MIN_POINTS_PER_EPOCH` of them, so the
curves move during the first epoch instead of waiting for its end. :class:`Throughput` measures
images per second over the last batches and estimates the time left.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any

import lightning as L
import torch

from vistudio.ml.checkpoint import save_checkpoint
from vistudio.ml.training.module import TaskModule
from vistudio.ml.training.resume import (
    STATE_KEY,
    ResumableLoader,
    rng_state,
    set_rng_state,
    training_state,
)


class TrainingCallbacks:
    """Override what you need; every method is called from the training loop's thread."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first step: sizes, steps per epoch, device and precision."""

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """At step 1, then every :func:`report_every` steps: ``train_loss_step`` (the batch's loss),
        ``lr`` and the task's running training metrics of the epoch so far (``train_accuracy_step``)."""

    def on_progress(self, live: dict[str, Any]) -> None:
        """After each ``on_step`` and each finished epoch: where the run is and how fast it goes.

        ``live``: ``epoch`` (the one in progress, 1-based) of ``epochs``, ``step`` of ``total_steps``
        (``steps_per_epoch`` each), ``images_per_s`` over the last batches, ``eta_s`` (training and
        the validations left; None until measured) and ``elapsed_s``."""

    def on_epoch(
        self, *, epoch: int, step: int, metrics: dict[str, float], details: dict[str, Any], best: bool
    ) -> None:
        """After each epoch's validation: every scalar metric, per-class details, whether it is the best."""

    def on_checkpoint(
        self, *, kind: str, path: Path, epoch: int, step: int, metrics: dict[str, float]
    ) -> None:
        """A checkpoint was written to ``path`` (a fresh file each time: the caller may move it)."""

    def should_stop(self) -> bool:
        """Polled after every step; True stops training gracefully (the last checkpoint is saved)."""
        return False


MIN_POINTS_PER_EPOCH = 4
THROUGHPUT_WINDOW = 20  # batches: recent enough to follow a change, long enough to smooth jitter
# a validation batch costs about a third of a training batch (a forward pass, no backward): the
# estimate used for the time left until the first validation has been measured
VAL_COST = 1 / 3


def report_every(log_every_n_steps: int, steps_per_epoch: int) -> int:
    """The step interval actually used: ``log_every_n_steps``, shortened so that an epoch of
    ``steps_per_epoch`` steps still gets :data:`MIN_POINTS_PER_EPOCH` points."""
    return max(1, min(log_every_n_steps, steps_per_epoch // MIN_POINTS_PER_EPOCH))


def batch_images(batch: Any) -> int:
    """The number of images in a batch: the first dimension of its first tensor, or the length of
    its first element when that is a list of images (detection batches)."""
    first = batch[0] if isinstance(batch, list | tuple) and batch else batch
    if isinstance(first, list | tuple):
        return len(first)
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 0


class Throughput:
    """Images per second over the last :data:`THROUGHPUT_WINDOW` training batches and the time left.

    A batch's time runs from the end of the previous batch (or the start of the epoch), so data
    loading counts and validation does not; validation is estimated separately. An epoch's first
    batch also waits for the data loader's worker processes to start: it counts only until another
    batch has been measured, or a slow start would read as a slow run for a whole window."""

    def __init__(self, *, steps_per_epoch: int, epochs: int, val_steps: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.total_steps = steps_per_epoch * epochs
        self.val_steps = val_steps
        self.started = time.perf_counter()
        self.batches: deque[tuple[float, int]] = deque(maxlen=THROUGHPUT_WINDOW)
        self.val_seconds: float | None = None
        self.first: tuple[float, int] | None = None  # the latest epoch's first batch
        self._last: float | None = None
        self._first_of_epoch = False
        self._val_started: float | None = None

    def epoch_start(self) -> None:
        self._last = time.perf_counter()
        self._first_of_epoch = True

    def batch_end(self, images: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            if self._first_of_epoch:
                self.first = (now - self._last, images)
            else:
                self.batches.append((now - self._last, images))
        self._first_of_epoch = False
        self._last = now

    def _window(self) -> list[tuple[float, int]]:
        return list(self.batches) or ([self.first] if self.first else [])

    def validation_start(self) -> None:
        self._val_started = time.perf_counter()

    def validation_end(self) -> None:
        if self._val_started is not None:
            self.val_seconds = time.perf_counter() - self._val_started
            self._val_started = None

    def images_per_s(self) -> float | None:
        window = self._window()
        seconds = sum(dt for dt, _ in window)
        images = sum(n for _, n in window)
        return images / seconds if seconds > 0 and images else None

    def live(self, *, epoch: int, step: int, validated: int) -> dict[str, Any]:
        """The ``on_progress`` dict at optimiser step ``step`` of epoch ``epoch`` (1-based), with
        ``validated`` epochs' validations done."""
        eta: float | None = None
        window = self._window()
        if window:
            per_step = sum(dt for dt, _ in window) / len(window)
            val = self.val_seconds if self.val_seconds is not None else self.val_steps * per_step * VAL_COST
            eta = max(0, self.total_steps - step) * per_step + max(0, self.epochs - validated) * val
        ips = self.images_per_s()
        return {
            "epoch": min(epoch, self.epochs),
            "epochs": self.epochs,
            "step": step,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "images_per_s": round(ips, 1) if ips is not None else None,
            "eta_s": round(eta, 1) if eta is not None else None,
            "elapsed_s": round(time.perf_counter() - self.started, 1),
        }


class Reporter(L.Callback):
    """Reports steps and epochs, writes best/last checkpoints, applies early stopping and stops.

    In a DDP run every process has one and runs the same hooks (the metrics they compute are
    collectives), but only rank 0 calls ``callbacks`` and writes checkpoint files; a stop is
    decided by all of them together (:meth:`_agree`), so none is left waiting in a collective.
    """

    def __init__(
        self,
        callbacks: TrainingCallbacks,
        *,
        workdir: Path,
        meta: dict[str, Any],
        monitor: str,
        mode: str,
        patience: int | None,
        log_every_n_steps: int,
        steps_per_epoch: int,
        epochs: int,
        val_steps: int,
        loader: ResumableLoader | None = None,
        resumed: str | None = None,
        last: dict[str, Any] | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        """``loader``: the training loader whose position goes into ``last`` checkpoints;
        ``resumed``: None for a fresh run, ``"retry"`` (continue as the interrupted run would
        have: an early stop it had decided stands) or ``"extend"`` (the user asked for more:
        early stopping counts its patience afresh); ``last``: the checkpoint resumed from;
        ``rank`` of ``world`` DDP processes (only rank 0 reports and writes files)."""
        self.callbacks = callbacks
        self.rank = rank
        self.world = world
        self.workdir = workdir
        self.meta = meta
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.log_every = report_every(log_every_n_steps, steps_per_epoch)
        self.clock = Throughput(steps_per_epoch=steps_per_epoch, epochs=epochs, val_steps=val_steps)
        self.best_value: float | None = None
        self.best: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = last
        self.final_metrics: dict[str, float] = {}
        self.final_details: dict[str, Any] = {}
        self.epochs_done = 0
        self.bad_epochs = 0
        self.stop_requested = False
        self.early_stopped = False
        self._val_epoch = -1
        self.loader = loader
        self.resumed = resumed
        self.steps_per_epoch = steps_per_epoch
        self._running: dict[str, Any] | None = None  # a resumed epoch's training sums so far
        self._rng: dict[str, Any] | None = None  # the RNG states to continue with

    @property
    def reports(self) -> bool:
        """This process reports to ``callbacks`` and writes the checkpoints (rank 0)."""
        return self.rank == 0

    def report_start(self, info: dict[str, Any]) -> None:
        if self.reports:
            self.callbacks.on_start(info)

    def _agree(self, trainer: L.Trainer, decision: bool) -> bool:
        """True on every process when it is True on any: a stop (the stop flag is read by each
        process at its own moment) or an early stop is then taken at the same step by all."""
        if self.world == 1:
            return decision
        return bool(trainer.strategy.reduce_boolean_decision(decision, all=False))

    # --- resume -----------------------------------------------------------------------------------
    BOOKKEEPING = (
        "best_value",
        "best",
        "final_metrics",
        "final_details",
        "epochs_done",
        "bad_epochs",
        "early_stopped",
    )

    def state_dict(self) -> dict[str, Any]:
        """Early stopping and best/last bookkeeping, and the global RNG states at this moment:
        saved by Lightning in every checkpoint dump."""
        return {**{k: getattr(self, k) for k in self.BOOKKEEPING}, "rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for k in self.BOOKKEEPING:
            if k in state_dict:
                setattr(self, k, state_dict[k])
        self._rng = state_dict.get("rng")
        if self.resumed == "extend":  # more epochs asked for: patience starts over
            self.bad_epochs = 0
            self.early_stopped = False

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if isinstance(pl_module, TaskModule):
            checkpoint["running"] = running_state(pl_module)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._running = checkpoint.get("running")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.resumed is None:
            return
        stretch_cosine(trainer)
        if self._rng is not None:  # the last thing before the first batch: nothing draws after it
            set_rng_state(self._rng)
            self._rng = None
        if self.resumed == "retry" and self.early_stopped:
            trainer.should_stop = True  # the interrupted run had decided to stop here

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # after the module reset its sums at the epoch's start: the resumed epoch's first part
        running, self._running = self._running, None
        if running and running.get("epoch") == trainer.current_epoch and isinstance(pl_module, TaskModule):
            load_running_state(pl_module, running)

    # --- steps ------------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.epoch_start()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert isinstance(pl_module, TaskModule)
        # every process trains on its part of the step's batch: the step's images are world× that
        self.clock.batch_end(batch_images(batch) * self.world)
        step = trainer.global_step
        # step 1 too: the first point shows up at once, not after log_every steps
        if (step == 1 or step % self.log_every == 0) and pl_module.last_loss is not None:
            running = {f"{k}_step": v for k, v in pl_module.train_summary().items() if k != "train_loss"}
            epoch = trainer.current_epoch + 1
            if self.reports:
                self.callbacks.on_step(
                    epoch=epoch,
                    step=step,
                    metrics={
                        # rank 0's part of the batch in DDP: an all-reduce every step costs more
                        "train_loss_step": float(pl_module.last_loss.item()),
                        "lr": pl_module.current_lr(),
                        **running,
                    },
                )
                self.callbacks.on_progress(
                    self.clock.live(epoch=epoch, step=step, validated=self.epochs_done)
                )
        if self.loader is not None:
            self.loader.mark(trainer.current_epoch, batch_idx + 1)
        if not self.stop_requested and self._agree(trainer, self.callbacks.should_stop()):
            self.stop_requested = True
            trainer.should_stop = True
            if batch_idx + 1 < self.steps_per_epoch:
                # part-way through an epoch: no validation (it is not a finished epoch); the
                # last checkpoint is saved now, while the loop can still be resumed from here
                trainer.limit_val_batches = 0
                self.last = self.save(
                    pl_module,
                    "last",
                    epoch=self.epochs_done,
                    step=step,
                    metrics=self.final_metrics,
                    details=self.final_details,
                    trainer=trainer,
                )

    # --- epochs -----------------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.clock.validation_start()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch
            self.clock.validation_end()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, TaskModule)
        if self._val_epoch != trainer.current_epoch or pl_module.val_report is None:
            return  # stopped part-way through the epoch: no validation, not a finished epoch
        val, details = pl_module.val_report
        metrics = {**pl_module.train_summary(), **val}
        epoch, step = trainer.current_epoch + 1, trainer.global_step
        self.epochs_done = epoch
        value = metrics.get(self.monitor)
        improved = (
            value is not None
            and math.isfinite(value)
            and (
                self.best_value is None
                or (value > self.best_value if self.mode == "max" else value < self.best_value)
            )
        )
        self.final_metrics, self.final_details = metrics, details
        if improved:
            self.best_value = value
            self.bad_epochs = 0
            self.best = self.save(pl_module, "best", epoch=epoch, step=step, metrics=metrics, details=details)
        else:
            self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience and not trainer.should_stop:
            self.early_stopped = True
        # the processes compute the same metrics, so they agree already: this makes it certain
        self.early_stopped = self._agree(trainer, self.early_stopped)
        self.last = self.save(
            pl_module, "last", epoch=epoch, step=step, metrics=metrics, details=details, trainer=trainer
        )
        if self.reports:
            self.callbacks.on_epoch(epoch=epoch, step=step, metrics=metrics, details=details, best=improved)
            self.callbacks.on_progress(self.clock.live(epoch=epoch + 1, step=step, validated=epoch))
        if self.early_stopped:
            trainer.should_stop = True

    def finish(self, trainer: L.Trainer, pl_module: TaskModule) -> None:
        """After ``fit``: a stop part-way through an epoch still leaves a last checkpoint."""
        step = trainer.global_step
        if self.last is None or self.last["step"] != step:
            self.last = self.save(
                pl_module,
                "last",
                epoch=self.epochs_done,
                step=step,
                metrics=self.final_metrics,
                details=self.final_details,
            )

    def save(
        self,
        pl_module: TaskModule,
        kind: str,
        *,
        epoch: int,
        step: int,
        metrics: dict[str, float],
        details: dict[str, Any],
        trainer: L.Trainer | None = None,
    ) -> dict[str, Any]:
        """Write a checkpoint; a ``last`` one with ``trainer`` also holds the training state.
        Only rank 0 writes (DDP keeps the weights equal on every process); the others keep the
        same bookkeeping."""
        path = self.workdir / f"{kind}-e{epoch:04d}-s{step:08d}.pt"
        if not self.reports:
            return {"kind": kind, "path": str(path), "epoch": epoch, "step": step, "metrics": metrics}
        meta = {
            **self.meta,
            "kind": kind,
            "epoch": epoch,
            "step": step,
            "monitor": self.monitor,
            "metrics": metrics,
            "details": details,
        }
        extra = None
        if kind == "last" and trainer is not None and self.loader is not None:
            dump = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            extra = {STATE_KEY: training_state(dump)}
        save_checkpoint(path, pl_module.model, meta, extra=extra)
        self.callbacks.on_checkpoint(kind=kind, path=path, epoch=epoch, step=step, metrics=metrics)
        return {"kind": kind, "path": str(path), "epoch": epoch, "step": step, "metrics": metrics}


def running_state(module: TaskModule) -> dict[str, Any]:
    """The current epoch's training loss sums and metric states so far (tensors and plain values)."""
    trainer = module._trainer
    metrics = {}
    for name, metric in module.train_metrics.items(keep_base=True, copy_state=False):
        state = {
            k: [t.detach().cpu() for t in v] if isinstance(v, list) else v.detach().cpu()
            for k, v in metric.metric_state.items()
        }
        metrics[name] = {"state": state, "updates": int(metric._update_count)}
    return {
        "epoch": trainer.current_epoch if trainer is not None else 0,
        "sums": {k: v.detach().cpu() for k, v in module._sums.items() if k == "train"},
        "counts": {k: v for k, v in module._counts.items() if k == "train"},
        "metrics": metrics,
    }


def load_running_state(module: TaskModule, running: dict[str, Any]) -> None:
    """Put back what :func:`running_state` saved, onto the module's device."""
    device = module.device
    for k, v in running.get("sums", {}).items():
        module._sums[k] = v.to(device)
    module._counts.update(running.get("counts", {}))
    members = dict(module.train_metrics.items(keep_base=True, copy_state=False))
    for name, saved in running.get("metrics", {}).items():
        metric = members.get(name)
        if metric is None:
            continue
        for k, v in saved["state"].items():
            setattr(metric, k, [t.to(device) for t in v] if isinstance(v, list) else v.to(device))
        metric._update_count = saved["updates"]
        metric._computed = None


def stretch_cosine(trainer: L.Trainer) -> None:
    """A run resumed with more epochs: its cosine schedule now spans the new total of steps; the
    learning rate continues from that longer curve at the step reached."""
    total = max(1, int(trainer.estimated_stepping_batches))
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if not isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) or sched.T_max == total:
            continue
        sched.T_max = total
        lrs = [
            sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * sched.last_epoch / total)) / 2
            for base in sched.base_lrs
        ]
        for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        sched._last_lr = lrs
