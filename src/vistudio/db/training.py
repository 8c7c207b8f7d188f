"""Training tables: experiments, their per-step metrics and checkpoints, evaluations, exports.

An experiment's ``config`` is frozen when it starts; each experiment has one training execution,
at most one evaluation (1:1) and any number of exports. Checkpoints and exported files are blobs in
the artifact store (content-addressed); these rows point at them by sha256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow

EXPERIMENT_STATUSES = ("draft", "queued", "running", "succeeded", "stopped", "failed")


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    split_id: Mapped[int | None] = mapped_column(ForeignKey("splits.id", ondelete="SET NULL"))
    # the dataset version it trains and evaluates on (``dataset_versions.id``; versions go only
    # with their project, so no foreign key: adding one would make SQLite rebuild this table)
    version_id: Mapped[int | None]
    name: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    classes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    best_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    final_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    epochs_done: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class EpochMetric(Base):
    """One scalar at one point of training: ``epoch`` and global ``step``; ``name`` e.g. train_loss."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (Index("ix_epoch_metrics_experiment_name_step", "experiment_id", "name", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    epoch: Mapped[int]
    step: Mapped[int]
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """``kind`` best (by the monitored metric) or last; one row per kind, updated as training goes."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("experiment_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[int]
    step: Mapped[int]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), unique=True)
    checkpoint_kind: Mapped[str] = mapped_column(String(16))
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    subsets: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    confusion: Mapped[list[Any]] = mapped_column(default=list)
    classes: Mapped[list[Any]] = mapped_column(default=list)
    results_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class EvalResult(Base):
    """One image's prediction in an evaluation. ``topk`` is ``[[class_index, probability], …]``."""

    __tablename__ = "eval_results"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "sample_id"),
        Index("ix_eval_results_eval_correct", "evaluation_id", "correct", "confidence"),
        Index("ix_eval_results_eval_confidence", "evaluation_id", "confidence"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    subset: Mapped[str] = mapped_column(String(16))
    true_index: Mapped[int]
    pred_index: Mapped[int]
    confidence: Mapped[float]
    topk: Mapped[list[Any]] = mapped_column(default=list)
    correct: Mapped[bool]


class DetectionResult(Base):
    """One image of a detection or instance segmentation evaluation: its predictions and ground
    truth with their matching (JSON lists, pixels of the sample), and its counts at the
    evaluation's score threshold. ``ap`` is the image's AP at the evaluation's IoU (null without
    ground truth)."""

    __tablename__ = "detection_results"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "sample_id"),
        Index("ix_detection_results_eval_fn", "evaluation_id", "fn"),
        Index("ix_detection_results_eval_fp", "evaluation_id", "fp"),
        Index("ix_detection_results_eval_ap", "evaluation_id", "ap"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    subset: Mapped[str] = mapped_column(String(16))
    width: Mapped[int]
    height: Mapped[int]
    predictions: Mapped[list[Any]] = mapped_column(default=list)
    truths: Mapped[list[Any]] = mapped_column(default=list)
    tp: Mapped[int] = mapped_column(default=0)
    fp: Mapped[int] = mapped_column(default=0)
    fn: Mapped[int] = mapped_column(default=0)
    ap: Mapped[float | None]


class SegmentationResult(Base):
    """One image of a semantic segmentation evaluation: its confusion histogram (the pixels of
    true class ``t`` predicted ``p``, as sparse ``[[t, p, count], …]``, ignored pixels left out),
    the image's IoU (the mean over the classes present in its ground truth or prediction; null
    when no pixel is labelled) and pixel accuracy, the classes present (``",0,2,"``: in the
    ground truth or the prediction, for the class filter) and the predicted and ground-truth
    label PNGs (paths relative to the workspace). The dataset's metrics come from the sum of the
    histograms, not from these per-image numbers (see ``services/evaluation/segmentation``)."""

    __tablename__ = "segmentation_results"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "sample_id"),
        Index("ix_segmentation_results_eval_iou", "evaluation_id", "iou"),
        Index("ix_segmentation_results_eval_pixel_accuracy", "evaluation_id", "pixel_accuracy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    subset: Mapped[str] = mapped_column(String(16))
    width: Mapped[int]
    height: Mapped[int]
    iou: Mapped[float | None]
    pixel_accuracy: Mapped[float | None]
    pixels: Mapped[int] = mapped_column(BigInteger, default=0)  # labelled pixels
    histogram: Mapped[list[Any]] = mapped_column(default=list)
    classes: Mapped[str] = mapped_column(Text, default=",")
    prediction_path: Mapped[str] = mapped_column(Text)
    truth_path: Mapped[str] = mapped_column(Text)


class RegressionResult(Base):
    """One image of a regression evaluation: its true and predicted values (JSON lists, one number
    per target, in the targets' units) and ``abs_error``, the mean absolute error over its targets
    (indexed, for sorting the worst images first)."""

    __tablename__ = "regression_results"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "sample_id"),
        Index("ix_regression_results_eval_abs_error", "evaluation_id", "abs_error"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    subset: Mapped[str] = mapped_column(String(16))
    truth: Mapped[list[Any]] = mapped_column(default=list)
    prediction: Mapped[list[Any]] = mapped_column(default=list)
    abs_error: Mapped[float]


class ModelExport(Base):
    """An exported model file (ONNX or TorchScript) with its validation against PyTorch."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    checkpoint_kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str | None] = mapped_column(Text)
    validation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
