"""Stages and what they return.

A stage is a plain function registered by name::

    @stage("resize")
    def resize(item: Item, data: Any, *, width: int, height: int) -> StepOutput: ...

It receives the item and the previous stage's ``data`` (``None`` for the first stage) plus its
parameters from the pipeline definition, and *returns* a ``StepOutput`` (any other return value is
taken as ``StepOutput(data=value)``). Stages never touch the file system for outputs: the runner's
``OutputSaver`` decides what is saved where, so a stage is tested by checking what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vistudio.registry import Registry


@dataclass(frozen=True)
class Item:
    """One input of a run. ``key`` is a readable, unique, file-name-safe name (used in outputs)."""

    key: str
    path: Path | None = None
    sample_id: int | None = None
    ground_truth: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """What a stage returns.

    - ``data``: handed to the next stage (and, for the last stage, the item's final result).
    - ``artifacts``: binary objects worth keeping by content (arrays, images, bytes) → the
      content-addressed store, deduplicated across runs.
    - ``outputs``: human-readable files as ``(obj, name_hint, ext)``: ext ``png``/``jpg`` (image),
      ``npy`` (array), ``json`` (anything JSON-serialisable), ``ply``/``pcd``/``xyz`` (N×3 or N×6
      points); ``ext`` ``""`` lets the saver pick from the object and the configured formats.
    - ``metrics``: numbers recorded per item and stage (and appended to the run's Parquet table).
    """

    data: Any = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    outputs: list[tuple[Any, str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


StageFn = Callable[..., Any]
STAGES: Registry[StageFn] = Registry("pipeline stage")
stage = STAGES.register


def as_output(value: Any) -> StepOutput:
    return value if isinstance(value, StepOutput) else StepOutput(data=value)


class StageError(Exception):
    """A stage refuses its input or parameters; ``message`` is shown in the audit and report."""
