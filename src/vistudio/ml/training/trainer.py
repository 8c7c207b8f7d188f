"""The trainer factory and :func:`train`, the one entry point that runs an experiment's training.

``train`` takes plain data (a :class:`TrainSpec`: task name, config dict, class names,
``(path, target)`` pairs, a work folder) and reports through
:class:`~vistudio.ml.training.callbacks.TrainingCallbacks`. It writes nothing outside the work
folder: Lightning's progress bar, logger, model summary and own checkpoints are all off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from vistudio.errors import BadRequest
from vistudio.ml.tasks import get_training
from vistudio.ml.training.callbacks import Reporter, TrainingCallbacks
from vistudio.ml.training.config import TrainConfig, validate_config
from vistudio.ml.training.data import auto_workers
from vistudio.ml.training.module import TaskModule
from vistudio.ml.training.resume import (
    STATE_KEY,
    ResumableDataModule,
    lightning_checkpoint,
    loader_state,
    read_training_state,
)
from vistudio.ml.training.task import TrainingTask


@dataclass
class TrainSpec:
    """Everything one training run needs, as plain picklable data."""

    task: str
    config: dict[str, Any]
    classes: list[str]
    train: list[tuple[str, Any]]
    val: list[tuple[str, Any]]
    workdir: str
    meta: dict[str, Any] = field(default_factory=dict)  # extra checkpoint meta (experiment, project)
    # a ``last`` checkpoint (with its training state) to continue from, and why: "retry" (the
    # run was interrupted: continue exactly) or "extend" (the user resumes, maybe with more epochs)
    resume_from: str | None = None
    resume_mode: str = "retry"
    # this process's place in a DDP run of ``config["devices"]`` processes (0: the one that
    # reports and writes checkpoints); set by ``TrainingProcess``, which starts every rank
    rank: int = 0


@dataclass
class TrainResult:
    status: str  # completed | early_stopped | stopped
    epochs: int
    step: int
    best: dict[str, Any] | None
    last: dict[str, Any] | None
    final_metrics: dict[str, float]
    seconds: float


def resolve_accelerator(device: str) -> str:
    """``auto``/``cpu``/``cuda`` → Lightning's ``gpu`` or ``cpu``; asking for absent CUDA is a 400."""
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise BadRequest(
            "device 'cuda' was asked for, but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use device 'auto' or 'cpu'",
            details={"device": device},
        )
    if device == "cpu" or (device == "auto" and not has_cuda):
        return "cpu"
    return "gpu"


DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK")


def resolve_devices(config: TrainConfig, accelerator: str) -> int:
    """How many processes train together: ``devices`` checked against the machine and the batch.

    On a GPU each process gets one GPU (so at most ``torch.cuda.device_count()``); on CPU they
    are processes talking through gloo. ``batch_size`` is per optimiser step and split evenly."""
    devices = config.devices
    if devices < 1:
        raise BadRequest(f"devices must be 1 or more, got {devices}", details={"devices": devices})
    if accelerator == "gpu" and devices > torch.cuda.device_count():
        raise BadRequest(
            f"devices {devices} asked for, but this machine has {torch.cuda.device_count()} GPU(s); "
            "use at most that many, or device 'cpu' for CPU processes",
            details={"devices": devices, "gpus": torch.cuda.device_count()},
        )
    if devices > 1 and config.batch_size % devices:
        raise BadRequest(
            f"batch_size {config.batch_size} does not split evenly over {devices} devices; "
            f"use a multiple of {devices} (it is the batch of one optimiser step, all devices together)",
            details={"batch_size": config.batch_size, "devices": devices},
        )
    return devices


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 mixed precision on a GPU that has it, else fp16 mixed on GPU, 32-bit on CPU."""
    if precision == "auto":
        if accelerator == "gpu":
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    if precision == "16" and accelerator != "gpu":
        raise BadRequest("precision '16' (float16 mixed) needs a GPU; use 'bf16' or '32' on CPU")
    return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[precision]


def resolve_monitor(task_cls: type[TrainingTask], config: TrainConfig) -> tuple[str, str]:
    monitor = config.monitor or task_cls.default_monitor
    if monitor not in task_cls.metric_names():
        raise BadRequest(
            f"monitor {monitor!r} is not a metric of this task; use one of {', '.join(task_cls.metric_names())}",
            details={"metrics": task_cls.metric_names()},
        )
    return monitor, task_cls.monitor_mode(monitor)


def check_launched(devices: int) -> None:
    """A DDP process must have been started as one (by ``TrainingProcess``): a clear 400 if not."""
    missing = [k for k in DISTRIBUTED_ENV if k not in os.environ]
    if missing:
        raise BadRequest(
            f"training on {devices} devices runs through the training job (TrainingProcess), which "
            f"starts one process per device; this process lacks {', '.join(missing)}",
            details={"devices": devices},
        )


def _distributed(accelerator: str, devices: int) -> dict[str, Any]:
    """Trainer arguments of a DDP run whose processes vistudio started (see ``process.py``).

    Lightning's own launchers do not fit a job: ``ddp`` re-runs ``sys.argv`` for the other ranks
    and ``ddp_spawn`` pickles the whole trainer into fresh processes whose results stay there.
    With ``LOCAL_RANK`` set, ``LightningEnvironment`` takes the processes as launched outside and
    only joins them; the data is sharded by our own samplers (``use_distributed_sampler`` off)."""
    from lightning.pytorch.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies import DDPStrategy

    check_launched(devices)
    return {
        "strategy": DDPStrategy(
            cluster_environment=LightningEnvironment(),
            process_group_backend="nccl" if accelerator == "gpu" else "gloo",
        ),
        "num_nodes": 1,
        "use_distributed_sampler": False,
        # batch norm over the whole batch of a step, as on one device; PyTorch's SyncBatchNorm
        # runs on GPUs only, so CPU processes normalise over their own part of the batch
        "sync_batchnorm": accelerator == "gpu",
    }


def build_trainer(
    config: TrainConfig, *, workdir: Path, callbacks: list[L.Callback], accelerator: str, devices: int = 1
) -> L.Trainer:
    """A Lightning Trainer from the experiment config: quiet, deterministic, no files of its own.

    ``devices`` > 1: one DDP process of ``devices``, started by ``TrainingProcess``."""
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        **(_distributed(accelerator, devices) if devices > 1 else {}),
        precision=resolve_precision(config.precision, accelerator),  # type: ignore[arg-type]
        max_epochs=config.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        # some CUDA kernels have no deterministic version: warn there instead of failing
        deterministic=True if accelerator == "cpu" else "warn",
        benchmark=False,
        gradient_clip_val=config.gradient_clip or None,
        log_every_n_steps=config.log_every_n_steps,
        default_root_dir=str(workdir),
        callbacks=callbacks,
    )


def _workers(config: TrainConfig, accelerator: str, devices: int) -> int:
    """Loader processes of one training process: ``auto`` shares the cores among the devices."""
    workers = auto_workers(config.num_workers, accelerator=accelerator)
    if config.num_workers < 0 and devices > 1:
        workers = min(workers, max(0, ((os.cpu_count() or 1) - 1) // devices))
    return workers


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's info lines and advice warnings off; global torch state restored afterwards."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*Consider setting `persistent_workers=True`.*")
            warnings.filterwarnings(
                "ignore", message=".*number of training batches.*is smaller than the logging interval.*"
            )
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            warnings.filterwarnings(
                "ignore", message=".*is supported for historical reasons but its usage is discouraged.*"
            )
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _resume_checkpoint(spec: TrainSpec) -> dict[str, Any]:
    """The checkpoint a resumed run continues from, checked against the run's model and classes."""
    assert spec.resume_from is not None
    saved = read_training_state(spec.resume_from)
    meta = saved["meta"]
    if meta.get("model") != spec.config.get("model", meta.get("model")) or meta.get("classes") != list(
        spec.classes
    ):
        raise BadRequest(
            "the checkpoint to resume from was trained with another model or other classes",
            details={"model": meta.get("model"), "classes": meta.get("classes")},
        )
    return saved


def _resumed_last(spec: TrainSpec, saved: dict[str, Any] | None) -> dict[str, Any] | None:
    if saved is None:
        return None
    meta = saved["meta"]
    return {
        "kind": "last",
        "path": spec.resume_from,
        "epoch": meta["epoch"],
        "step": meta["step"],
        "metrics": meta.get("metrics") or {},
    }


def train(spec: TrainSpec, callbacks: TrainingCallbacks | None = None) -> TrainResult:
    """Run one training to the end, an early stop, or a stop asked for by ``callbacks``.

    Raises ``BadRequest`` for a config that cannot run here (unknown model, CUDA absent…),
    ``ModelUnavailable`` when pretrained weights are missing, anything else on a crash.
    """
    started = time.perf_counter()
    callbacks = callbacks or TrainingCallbacks()
    task_cls = get_training(spec.task)
    config = validate_config(task_cls.config_model, spec.config)
    if len(spec.classes) < task_cls.min_classes:
        raise BadRequest(
            f"training a {spec.task.replace('_', ' ')} model needs at least {task_cls.min_classes} classes"
        )
    if not spec.train:
        raise BadRequest("the training subset is empty")
    if not spec.val:
        raise BadRequest("the validation subset is empty")
    monitor, mode = resolve_monitor(task_cls, config)
    accelerator = resolve_accelerator(config.device)
    devices = resolve_devices(config, accelerator)
    for subset, items in (("training", spec.train), ("validation", spec.val)):
        if len(items) < devices:
            raise BadRequest(
                f"the {subset} subset has {len(items)} image(s), fewer than the {devices} devices"
            )
    if devices > 1:
        check_launched(devices)
    workdir = Path(spec.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    saved = _resume_checkpoint(spec) if spec.resume_from else None
    if devices > 1 and accelerator == "cpu":
        # the processes share the cores: each with all of them as threads would oversubscribe
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    with _quiet():
        L.seed_everything(config.seed, workers=True, verbose=False)
        task = task_cls(classes=spec.classes, config=config)
        model, info = task.build_model()
        preprocess = task.preprocess(info)
        data = ResumableDataModule(
            task=task,
            preprocess=preprocess,
            train=spec.train,
            val=spec.val,
            batch_size=config.batch_size,
            num_workers=_workers(config, accelerator, devices),
            seed=config.seed,
            pin_memory=accelerator == "gpu",
            rank=spec.rank,
            world=devices,
        )
        module = TaskModule(task=task, model=model, loss=task.build_loss(data.train_targets), config=config)
        meta = {
            **spec.meta,
            **task.checkpoint_meta(),
            "model": config.model,
            "task": spec.task,
            "classes": list(spec.classes),
            "preprocess": preprocess,
            "config": config.model_dump(mode="json"),
            "pretrained": info.pretrained,
        }
        loader = data.train_dataloader()
        steps_per_epoch = len(loader)
        reporter = Reporter(
            callbacks,
            workdir=workdir,
            meta=meta,
            monitor=monitor,
            mode=mode,
            patience=config.patience if config.early_stopping else None,
            log_every_n_steps=config.log_every_n_steps,
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
            val_steps=len(data.val_dataloader()),
            loader=loader,
            resumed=spec.resume_mode if saved is not None else None,
            last=_resumed_last(spec, saved),
            rank=spec.rank,
            world=devices,
        )
        trainer = build_trainer(
            config, workdir=workdir, callbacks=[reporter], accelerator=accelerator, devices=devices
        )
        reporter.report_start(
            {
                "train_images": len(data.train_items),
                "val_images": len(data.val_items),
                "steps_per_epoch": steps_per_epoch,
                "total_steps": steps_per_epoch * config.epochs,
                "log_every_n_steps": reporter.log_every,
                "epochs": config.epochs,
                "accelerator": accelerator,
                "precision": resolve_precision(config.precision, accelerator),
                "devices": devices,
                "strategy": "ddp" if devices > 1 else "single",
                "monitor": monitor,
                "mode": mode,
                "preprocess": preprocess,
                "resumed_from_step": saved["meta"]["step"] if saved is not None else None,
            }
        )
        ckpt_path = None
        if saved is not None:
            # the module's own weights (loss buffers…) with the checkpoint's model weights over them
            weights = module.state_dict()
            weights.update({f"model.{k}": v for k, v in saved["state_dict"].items()})
            position = loader_state(saved[STATE_KEY])
            if position is not None:
                loader.load_state_dict(position)
            ckpt_path = workdir / f"resume-r{spec.rank}.ckpt"  # one per process: no write races
            torch.save(lightning_checkpoint(saved[STATE_KEY], weights), ckpt_path)
            del saved
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
        reporter.finish(trainer, module)
    # a stop asked for while the last epoch was ending (no step left to notice it) still counts
    stopped = reporter.stop_requested or callbacks.should_stop()
    status = "stopped" if stopped else "early_stopped" if reporter.early_stopped else "completed"
    return TrainResult(
        status=status,
        epochs=reporter.epochs_done,
        step=trainer.global_step,
        best=reporter.best,
        last=reporter.last,
        final_metrics=reporter.final_metrics,
        seconds=time.perf_counter() - started,
    )
