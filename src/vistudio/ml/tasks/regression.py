"""Image regression: the training parts of the ``regression`` task (one or more numbers per image).

Model: a backbone of the classification catalog (``ml/models``) whose head is a linear layer with
one output per target and no activation, wrapped in :class:`Regressor`, which also holds the
z-score of the targets as buffers: ``target_mean`` and ``target_std``, per target, of the
**training subset** (population std; a target whose training values are all equal gets std 1, so
nothing is divided by zero). The network learns the normalised targets ``(y − mean) / std``; the
wrapper's ``forward`` undoes it (``values = net(x) × std + mean``), so a checkpoint, an exported
ONNX or TorchScript file, the evaluation and ``vistudio predict`` all give values in the targets'
own units. The statistics are also stored in the checkpoint's ``meta`` (``target_mean``,
``target_std``) and in an export's metadata.

Loss (config key ``loss``): ``mse`` (default), ``l1`` or ``huber`` (``huber_delta`` in standard
deviations of the targets), on the normalised targets so that targets of different scales weigh
alike; ``train_loss`` and ``val_loss`` are that loss. Metrics, per epoch, in the targets' units
with the evaluation's definitions (``ml/inference/regression``): ``mae``, ``mse``, ``rmse`` and
``r2`` for ``train_`` and ``val_``, averaged over the targets (R² over those where it is defined).
The default monitor is ``val_rmse`` (lower is better; ``val_r2`` is maximised).

Augmentation: by default only a random horizontal flip (``augment.crop`` is off): a crop changes
the apparent size and position of what is in the image, colour jitter its brightness and
contrast — exactly what a regression target often measures. Turn ``flip`` off too when the target
depends on left and right (a position, a direction).

Targets (``services.experiments.split_items``): a list of floats per image, one per target, in the
order of the experiment's ``classes`` (the targets' names, ``ml/inference/regression.target_names``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torchmetrics import Metric, MetricCollection

from vistudio.errors import BadRequest
from vistudio.ml.inference.regression import normalisation, value_vector
from vistudio.ml.models import ModelInfo, build_model, get_model_spec
from vistudio.ml.tasks import lower_is_better, register_training
from vistudio.ml.tasks.classification import EvalTransform, TrainTransform
from vistudio.ml.training.config import Augment, TrainConfig
from vistudio.ml.training.task import TrainingTask, Transform

LOSSES = ("mse", "l1", "huber")
ERRORS = ("mae", "mse", "rmse")


def _light_augment() -> Augment:
    return Augment(crop=False, flip=True)


class RegressionConfig(TrainConfig):
    """Regression keys on top of the generic ones (and a lighter default augmentation)."""

    loss: Literal["mse", "l1", "huber"] = Field(
        default="mse", description="mse | l1 | huber, on the z-scored targets"
    )
    huber_delta: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="huber: where the loss turns linear, in target standard deviations",
    )
    augment: Augment = Field(
        default_factory=_light_augment,
        description="default: horizontal flip only (a crop or colour jitter changes what targets often measure)",
    )


class Regressor(nn.Module):
    """A catalog backbone with a ``num_outputs`` linear head, and the targets' z-score.

    ``forward(x)``: N×3×H×W → N×T values in the targets' units; :meth:`normalised` gives the
    network's own N×T output, the z-scored values."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, net: nn.Module, num_outputs: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("target_mean", torch.zeros(num_outputs))
        self.register_buffer("target_std", torch.ones(num_outputs))

    def set_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        with torch.no_grad():
            self.target_mean.copy_(torch.tensor(list(mean), dtype=torch.float32))
            self.target_std.copy_(torch.tensor(list(std), dtype=torch.float32))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalised(x) * self.target_std + self.target_mean


def build_regressor(
    name: str, num_outputs: int, *, pretrained: bool | str = False, freeze_backbone: bool = False
) -> tuple[Regressor, ModelInfo]:
    """A catalog model (``ml/models``) with a linear head of ``num_outputs`` values, wrapped in a
    :class:`Regressor` (z-score 0/1 until :meth:`Regressor.set_normalisation`)."""
    if num_outputs < 1:
        raise BadRequest("a regression model needs at least one target")
    # the classifier's builder (weights, freezing), then its head replaced: a fresh linear layer
    # that trains even when the backbone is frozen
    net, info = build_model(name, 2, pretrained=pretrained, freeze_backbone=freeze_backbone)
    parent, attr = get_model_spec(name).head(net)
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_outputs))
    info.num_classes = num_outputs
    return Regressor(net, num_outputs), info


def rebuild_regressor(meta: dict[str, Any]) -> Regressor:
    """The untrained :class:`Regressor` a checkpoint's ``meta`` describes (its weights and z-score
    buffers are loaded over it)."""
    model, _ = build_regressor(meta["model"], len(meta["classes"]), pretrained=False)
    return model


class ValueErrors(Metric):
    """Running sums over an epoch, per target, in float64: count, Σ|e|, Σe², Σy, Σy² of the
    z-scored predictions and targets (scale-free, so the sums stay well conditioned whatever the
    targets' units). ``compute()`` → a 5×T tensor of those sums."""

    full_state_update = False
    count: torch.Tensor
    abs_sum: torch.Tensor
    sq_sum: torch.Tensor
    y_sum: torch.Tensor
    y2_sum: torch.Tensor

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.add_state("count", torch.zeros(num_outputs, dtype=torch.float64), dist_reduce_fx="sum")
        for key in ("abs_sum", "sq_sum", "y_sum", "y2_sum"):
            self.add_state(key, torch.zeros(num_outputs, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        p, y = preds.double(), target.double()
        err = p - y
        self.count += torch.full_like(self.count, float(y.shape[0]))
        self.abs_sum += err.abs().sum(dim=0)
        self.sq_sum += (err * err).sum(dim=0)
        self.y_sum += y.sum(dim=0)
        self.y2_sum += (y * y).sum(dim=0)

    def compute(self) -> torch.Tensor:
        return torch.stack([self.count, self.abs_sum, self.sq_sum, self.y_sum, self.y2_sum])


def errors_from_sums(sums: Sequence[Sequence[float]], std: Sequence[float]) -> list[dict[str, float | None]]:
    """Per target: MAE, MSE, RMSE (in the targets' units) and R² from :class:`ValueErrors`' sums
    of z-scored values and the targets' standard deviations."""
    out: list[dict[str, float | None]] = []
    for t, s in enumerate(std):
        n, abs_sum, sq_sum, y_sum, y2_sum = (float(row[t]) for row in sums)
        if n <= 0:
            out.append({"mae": None, "mse": None, "rmse": None, "r2": None})
            continue
        mse = sq_sum / n * s * s
        sst = y2_sum - y_sum * y_sum / n
        # R² is scale-free: the z-scored sums give the same value as the targets' own units
        r2 = 1.0 - sq_sum / sst if sst > 1e-12 * n else None
        out.append({"mae": abs_sum / n * s, "mse": mse, "rmse": math.sqrt(mse), "r2": r2})
    return out


@register_training("regression")
class RegressionTask(TrainingTask):
    name = "regression"
    config_model: ClassVar[type[TrainConfig]] = RegressionConfig
    default_monitor = "val_rmse"
    min_classes = 0  # a regression project has no classes: its outputs are its targets
    model_noun = "regressor"

    def __init__(self, *, classes: list[str], config: TrainConfig) -> None:
        super().__init__(classes=classes, config=config)
        if not self.classes:
            raise BadRequest("a regression model needs at least one target (the experiment names none)")
        self.regressor: Regressor | None = None
        self.mean = [0.0] * len(self.classes)
        self.std = [1.0] * len(self.classes)

    @classmethod
    def metric_names(cls) -> list[str]:
        return [f"{p}_{m}" for p in ("train", "val") for m in ("loss", *ERRORS, "r2")]

    @classmethod
    def monitor_mode(cls, metric: str) -> str:
        """Losses and errors (MAE, MSE, RMSE) are minimised, R² maximised."""
        return "min" if lower_is_better(metric) else "max"

    @classmethod
    def targets_problem(cls, targets: Sequence[Any]) -> str | None:
        if not targets:
            return "its training images have no usable values"
        return None

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        model, info = build_regressor(
            self.config.model,
            self.num_outputs,
            pretrained=self.config.pretrained,
            freeze_backbone=self.config.freeze_backbone,
        )
        self.regressor = model
        return model, info

    def build_loss(self, train_targets: Sequence[Any]) -> nn.Module:
        """The loss; first the z-score of ``train_targets`` (T-vectors) goes into the model."""
        cfg = self.config
        assert isinstance(cfg, RegressionConfig)
        values = [[float(v) for v in t] for t in train_targets]
        self.mean, self.std = normalisation(values)
        if self.regressor is not None:
            self.regressor.set_normalisation(self.mean, self.std)
        if cfg.loss == "l1":
            return nn.L1Loss()
        if cfg.loss == "huber":
            return nn.HuberLoss(delta=cfg.huber_delta)
        return nn.MSELoss()

    def build_metrics(self, prefix: str) -> MetricCollection:
        return MetricCollection({"errors": ValueErrors(self.num_outputs)})

    def encode_target(self, target: Any) -> torch.Tensor:
        values = value_vector({"values": list(target)}) if isinstance(target, list | tuple) else None
        if values is None or len(values) != self.num_outputs:
            raise ValueError(f"a target must be {self.num_outputs} finite number(s), got {str(target)[:80]}")
        return torch.tensor(values, dtype=torch.float32)

    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        return TrainTransform(preprocess, self.config.augment)

    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        return EvalTransform(preprocess)

    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[torch.Tensor, Any, Any]:
        """``(loss on z-scores, predicted z-scores, true z-scores)``; the metrics turn them back
        into the targets' units."""
        assert isinstance(model, Regressor)
        x, y = batch
        z = model.normalised(x).float()
        target = (y.float() - model.target_mean) / model.target_std
        return loss(z, target), z.detach(), target

    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        sums = computed["errors"].double().cpu().tolist()
        per = errors_from_sums(sums, self.std)
        scalars: dict[str, float] = {}
        for key in (*ERRORS, "r2"):
            values = [p[key] for p in per if p[key] is not None]
            if values and (key == "r2" or len(values) == len(per)):
                mean = sum(v for v in values if v is not None) / len(values)
                if math.isfinite(mean):  # an undefined or overflowing value is left out, not NaN
                    scalars[f"{prefix}_{key}"] = mean
        details = {
            "per_target": {
                name: {k: (round(v, 6) if v is not None and math.isfinite(v) else None) for k, v in p.items()}
                for name, p in zip(self.classes, per, strict=True)
            }
        }
        return scalars, details

    def checkpoint_meta(self) -> dict[str, Any]:
        """The z-score the model's buffers hold, readable without loading the weights."""
        return {"target_mean": list(self.mean), "target_std": list(self.std), "targets": list(self.classes)}
