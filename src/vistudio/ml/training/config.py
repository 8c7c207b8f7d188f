"""The experiment configuration: every training knob, validated, with defaults.

A task may extend :class:`TrainConfig` with its own keys (``ClassificationConfig`` adds label
smoothing and class weights); the task's ``config_model`` is what an experiment validates against.
Unknown keys and out-of-range values are refused with a 400 that names the key; a config that runs
but is unlikely to learn (an image size below the model's minimum) gets warnings, not an error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vistudio.errors import BadRequest

NAME_PATTERN = r"^[\w][\w.\-]{0,63}$"


class Augment(BaseModel):
    """Train-time augmentation toggles (torchvision.transforms.v2), applied before the shared
    resize/normalise; validation and test images are never augmented."""

    model_config = ConfigDict(extra="forbid")

    crop: bool = Field(default=True, description="random resized crop (scale 0.7–1, aspect 3/4–4/3)")
    flip: bool = Field(default=True, description="random horizontal flip")
    rotate: bool = Field(default=False, description="random rotation up to ±15°")
    color: bool = Field(default=False, description="colour jitter (brightness, contrast, saturation 0.2)")


class TrainConfig(BaseModel):
    """Task-independent training settings. Frozen into ``Experiment.config`` when training starts."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(default="resnet18", max_length=64, description="a model of the catalog")
    pretrained: bool | str = Field(
        default=False,
        description="false: random init; true: ImageNet weights from the local torch hub cache; "
        "a path: a weights file",
    )
    freeze_backbone: bool = Field(
        default=False,
        description="train the new head only; default false, true for the DINOv3 models (a linear probe)",
    )
    split: str | None = Field(default=None, max_length=64, description="split name (default: newest)")
    image_size: int = Field(default=224, ge=16, le=1024)
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(
        default=32, ge=1, le=4096, description="images per optimiser step, split evenly over devices"
    )
    lr: float = Field(default=1e-3, gt=0, le=10)
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD only")
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(default=10, ge=1, le=1000, description="step scheduler: epochs per decay")
    gamma: float = Field(default=0.1, gt=0, le=1, description="step scheduler: decay factor")
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    early_stopping: bool = True
    patience: int = Field(default=5, ge=1, le=1000, description="epochs without improvement")
    monitor: str = Field(default="", max_length=64, description="metric for best/early stop (task default)")
    precision: Literal["auto", "32", "bf16", "16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: int = Field(
        default=1,
        ge=1,
        le=64,
        description="processes training together (Lightning DDP): GPUs on a GPU, gloo processes on CPU",
    )
    # "ddp" only: vistudio starts one process per device itself (see ml/training/process.py);
    # Lightning's ddp_spawn and its script-relaunching launcher cannot run inside a job
    strategy: Literal["auto", "ddp"] = Field(
        default="auto", description="auto: one process for devices 1, DDP for more; ddp: DDP"
    )
    gradient_clip: float = Field(default=0.0, ge=0, le=1e6, description="0: off")
    num_workers: int = Field(default=-1, ge=-1, le=64, description="data loader processes; -1: auto")
    log_every_n_steps: int = Field(default=10, ge=1, le=100_000)
    channels_last: bool = False
    augment: Augment = Field(default_factory=Augment)

    @model_validator(mode="before")
    @classmethod
    def _frozen_default(cls, data: Any) -> Any:
        # DINOv3 features are made to be used frozen (a linear probe): that is their default, and
        # it is written into the experiment's config so that it shows. ``dinov3_`` names the
        # DINOv3 entries of every catalog (ml/dinov3); the check stays free of torch imports.
        dinov3 = isinstance(data, dict) and str(data.get("model") or "").startswith("dinov3_")
        if dinov3 and "freeze_backbone" not in data:
            return {**data, "freeze_backbone": True}
        return data

    @field_validator("pretrained")
    @classmethod
    def _pretrained(cls, v: bool | str) -> bool | str:
        if isinstance(v, str):
            if not v.strip() or len(v) > 4096:
                raise ValueError("a weights path must be 1-4096 characters")
            return v.strip()
        return v

    @field_validator("split")
    @classmethod
    def _split(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    def warnings(self) -> list[dict[str, Any]]:
        """What in this valid config will probably not train well (see :func:`config_warnings`);
        a task's config overrides it for its own models."""
        return _classifier_warnings(self)


def validate_config(model: type[TrainConfig], raw: dict[str, Any] | None) -> TrainConfig:
    """``raw`` → a config of the task's ``model``; any problem is a 400 listing every bad key."""
    if raw is not None and not isinstance(raw, dict):
        raise BadRequest("the training config must be a JSON object")
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        errors = [
            {"key": ".".join(str(x) for x in e["loc"]) or "config", "message": _message(e)}
            for e in exc.errors()
        ]
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BadRequest(
            f"invalid training config: {first['key']}: {first['message']}{more}", details={"errors": errors}
        ) from None


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return str(error["msg"])


def config_warnings(config: TrainConfig) -> list[dict[str, Any]]:
    """What in a valid config will probably not train well: ``[{"key", "code", "message", …}]``.

    Classifiers: an ``image_size`` below the model's ``min_image_size`` (see ``ml/models.py``);
    detectors: see ``DetectionConfig.warnings`` (``ml/tasks/detection.py``)."""
    return config.warnings()


def _classifier_warnings(config: TrainConfig) -> list[dict[str, Any]]:
    from vistudio.errors import VistudioError
    from vistudio.ml.models import MODELS, get_model_spec

    try:
        spec = get_model_spec(config.model)
    except VistudioError:
        return []  # an unknown model is the validation's error, not a warning
    if config.image_size >= spec.min_image_size:
        return []
    side = max(1, config.image_size // spec.total_stride)
    fitting = [m.name for m in MODELS.entries.values() if m.min_image_size <= config.image_size]
    instead = f", or a model that learns at {config.image_size} px ({', '.join(fitting)})" if fitting else ""
    return [
        {
            "key": "image_size",
            "code": "image_size_too_small",
            "minimum": spec.min_image_size,
            "message": f"{config.image_size} px is small for {spec.name}: it shrinks images "
            f"{spec.total_stride}× (a {side}×{side} feature map is left) and may not learn well; "
            f"use an image size of {spec.min_image_size} px or more{instead}",
        }
    ]
