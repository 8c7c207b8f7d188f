"""The generic LightningModule: one model, one loss, the task's metrics, the configured optimiser.

Everything task-specific is delegated to a :class:`~vistudio.ml.training.task.TrainingTask`;
this class only runs steps, accumulates losses and metrics, and builds the optimiser and the
learning-rate schedule from the config.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from vistudio.ml.training.config import TrainConfig
from vistudio.ml.training.task import TrainingTask


class TaskModule(L.LightningModule):
    def __init__(self, *, task: TrainingTask, model: nn.Module, loss: nn.Module, config: TrainConfig) -> None:
        super().__init__()
        self.task = task
        self.model = model
        self.loss = loss
        self.config = config
        self.train_metrics = task.build_metrics("train")
        self.val_metrics = task.build_metrics("val")
        self.last_loss: torch.Tensor | None = None
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self.val_report: tuple[dict[str, float], dict[str, Any]] | None = None
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out

    def _prepare(self, batch: Any) -> Any:
        """Inputs in channels-last layout when asked (faster convolutions on recent GPUs)."""
        if self.config.channels_last and isinstance(batch, list | tuple) and batch:
            x = batch[0]
            if isinstance(x, torch.Tensor) and x.dim() == 4:
                return (x.contiguous(memory_format=torch.channels_last), *batch[1:])
        return batch

    # --- loss bookkeeping (on device; read once per log step / epoch, never per batch) -------
    def _add(self, stage: str, loss: torch.Tensor, n: int) -> None:
        total = loss.detach().float() * n
        self._sums[stage] = self._sums[stage] + total if stage in self._sums else total
        self._counts[stage] = self._counts.get(stage, 0) + n

    def _mean(self, stage: str) -> float | None:
        """The mean loss of ``stage`` so far; in a DDP run over every process's images (each
        process must call it at the same point: it is a collective)."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            total = (
                self._sums[stage].detach().float()
                if stage in self._sums
                else torch.zeros((), device=self.device)
            )
            both = torch.stack(
                [total.to(self.device), torch.tensor(float(self._counts.get(stage, 0)), device=self.device)]
            )
            summed = trainer.strategy.reduce(both, reduce_op="sum")
            assert isinstance(summed, torch.Tensor)
            count = float(summed[1].item())
            return float(summed[0].item()) / count if count else None
        if not self._counts.get(stage):
            return None
        return float(self._sums[stage].item()) / self._counts[stage]

    def _reset(self, stage: str) -> None:
        self._sums.pop(stage, None)
        self._counts.pop(stage, None)

    # --- steps --------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, preds, targets = self.task.forward(self.model, self._prepare(batch), self.loss)
        self.train_metrics.update(preds, targets)
        self._add("train", loss, len(targets))
        self.last_loss = loss.detach()
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, preds, targets = self.task.forward(self.model, self._prepare(batch), self.loss)
        self.val_metrics.update(preds, targets)
        # a task without a validation loss (torchvision detectors only give losses in training
        # mode) returns None: no val_loss is reported rather than a made-up 0
        if loss is not None:
            self._add("val", loss, len(targets))

    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self.train_metrics.reset()

    def on_validation_epoch_start(self) -> None:
        self._reset("val")
        self.val_metrics.reset()

    def on_validation_epoch_end(self) -> None:
        scalars, details = self.task.summarise("val", self.val_metrics.compute())
        mean = self._mean("val")
        if mean is not None:
            scalars["val_loss"] = mean
        self.val_report = (scalars, details)
        self.val_metrics.reset()

    def train_summary(self) -> dict[str, float]:
        """The current epoch's training loss and metrics so far (over every DDP process: every
        process calls it at the same steps, the metrics' ``compute`` gathers their states)."""
        trainer = self._trainer
        if not self._counts.get("train") and (trainer is None or trainer.world_size == 1):
            return {}
        scalars, _ = self.task.summarise("train", self.train_metrics.compute())
        scalars["train_loss"] = self._mean("train") or 0.0
        return scalars

    def current_lr(self) -> float:
        opt = self.optimizers(use_pl_optimizer=False)
        assert isinstance(opt, torch.optim.Optimizer)
        return float(opt.param_groups[0]["lr"])

    # --- optimiser ------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                params,
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                nesterov=cfg.momentum > 0,
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return optimizer
        if cfg.scheduler == "step":
            step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": step, "interval": "epoch"}}
        # cosine over every optimiser step of the run: smoother than per epoch on short runs
        total = max(1, int(self.trainer.estimated_stepping_batches))
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
