"""How a caller follows a training run: metrics, checkpoints and a graceful stop.

:class:`TrainingCallbacks` is the interface the caller implements (the training job sends each
call to its parent process); :class:`Reporter` is the Lightning callback that drives it. Epoch
numbers are 1-based counts of finished epochs; ``step`` is the number of optimiser steps so far.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L

from vistudio.ml.checkpoint import save_checkpoint
from vistudio.ml.training.module import TaskModule


class TrainingCallbacks:
    """Override what you need; every method is called from the training loop's thread."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first step: sizes, steps per epoch, device and precision."""

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        """Every ``log_every_n_steps`` optimiser steps: ``train_loss_step`` and ``lr``."""

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


class Reporter(L.Callback):
    """Reports steps and epochs, writes best/last checkpoints, applies early stopping and stops."""

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
    ) -> None:
        self.callbacks = callbacks
        self.workdir = workdir
        self.meta = meta
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.log_every = log_every_n_steps
        self.best_value: float | None = None
        self.best: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None
        self.final_metrics: dict[str, float] = {}
        self.final_details: dict[str, Any] = {}
        self.epochs_done = 0
        self.bad_epochs = 0
        self.stop_requested = False
        self.early_stopped = False
        self._val_epoch = -1

    # --- steps ------------------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert isinstance(pl_module, TaskModule)
        step = trainer.global_step
        if step % self.log_every == 0 and pl_module.last_loss is not None:
            self.callbacks.on_step(
                epoch=trainer.current_epoch + 1,
                step=step,
                metrics={"train_loss_step": float(pl_module.last_loss.item()), "lr": pl_module.current_lr()},
            )
        if not self.stop_requested and self.callbacks.should_stop():
            self.stop_requested = True
            trainer.should_stop = True

    # --- epochs -----------------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch

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
        self.last = self.save(pl_module, "last", epoch=epoch, step=step, metrics=metrics, details=details)
        self.callbacks.on_epoch(epoch=epoch, step=step, metrics=metrics, details=details, best=improved)
        if self.patience is not None and self.bad_epochs >= self.patience and not trainer.should_stop:
            self.early_stopped = True
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
    ) -> dict[str, Any]:
        path = self.workdir / f"{kind}-e{epoch:04d}-s{step:08d}.pt"
        meta = {
            **self.meta,
            "kind": kind,
            "epoch": epoch,
            "step": step,
            "monitor": self.monitor,
            "metrics": metrics,
            "details": details,
        }
        save_checkpoint(path, pl_module.model, meta)
        self.callbacks.on_checkpoint(kind=kind, path=path, epoch=epoch, step=step, metrics=metrics)
        return {"kind": kind, "path": str(path), "epoch": epoch, "step": step, "metrics": metrics}
