"""Experiment names, validating a training config before it is frozen, its warnings, and the
catalog of trainable models.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from vistudio.errors import BadRequest, InvalidInput
from vistudio.ml.weights import WeightsPolicy

if TYPE_CHECKING:
    from vistudio.ml.training.config import TrainConfig


NAME_RE = re.compile(r"^[\w][\w.\-]{0,99}$")


def experiment_warnings(task: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Warnings about a (frozen) config that runs but may not learn well; [] when it cannot be read."""
    from vistudio.ml.tasks import get_training
    from vistudio.ml.training.config import config_warnings

    try:
        return config_warnings(get_training(task).config_model.model_validate(config))
    except (BadRequest, ValueError):
        return []


def model_catalog(task: str | None = None) -> dict[str, Any]:
    """The models that can be trained for ``task`` (default: classification), with their weights
    metadata; a task that cannot be trained is a 400."""
    from vistudio.ml.tasks import get_training

    items = get_training(task or "classification").catalog()
    return {"items": items, "total": len(items)}


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name):
        raise InvalidInput(
            "an experiment name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            details={"name": name[:200]},
        )
    return name


def validate_experiment_config(
    task: str, raw: dict[str, Any] | None, *, weights: WeightsPolicy | None = None
) -> TrainConfig:
    """The task's config model applied to ``raw`` plus what can be checked before training:
    model name, monitored metric, device, devices and precision, pretrained weights present or downloadable
    under ``weights`` (the workspace's model policy; default: the environment's)."""
    from vistudio.ml.tasks import get_training
    from vistudio.ml.training.config import validate_config
    from vistudio.ml.training.trainer import (
        resolve_accelerator,
        resolve_devices,
        resolve_monitor,
        resolve_precision,
    )

    task_cls = get_training(task)
    config = validate_config(task_cls.config_model, raw)
    task_cls.check_config(config, weights)
    monitor, _ = resolve_monitor(task_cls, config)
    accelerator = resolve_accelerator(config.device)
    resolve_precision(config.precision, accelerator)
    resolve_devices(config, accelerator)
    return config.model_copy(update={"monitor": monitor})
