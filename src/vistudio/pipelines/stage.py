"""Stages and what they return.

A stage is a plain function registered by name::

    @stage("resize")
    def resize(item: Item, data: Any, *, width: int, height: int) -> StepOutput: ...

It receives the item and the previous stage's ``data`` (``None`` for the first stage) plus its
parameters from the pipeline definition, and *returns* a ``StepOutput`` (any other return value is
taken as ``StepOutput(data=value)``). Stages never touch the file system for outputs: the runner's
``OutputSaver`` decides what is saved where, so a stage is tested by checking what it returns.

A stage also declares what kind of ``data`` it *takes* and *gives* (``image``, ``array``,
``label``, ``any``; a chain starts with ``file``: no data, only the item's file), so a pipeline
whose stages cannot fit together is refused when it is loaded rather than failing every item::

    @stage("resize", takes=("image",), gives="image")
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

# What travels between stages. FILE is what the first stage gets: no data, only ``item.path``.
FILE, IMAGE, ARRAY, LABEL, ANY = "file", "image", "array", "label", "any"
KIND_WORDS = {
    FILE: "only the item's file (no data yet)",
    IMAGE: "an image (uint8 H×W or H×W×3)",
    ARRAY: "an array (float C×H×W)",
    LABEL: "a prediction (label)",
    ANY: "any data",
}


@dataclass(frozen=True)
class StageIO:
    """The kinds of ``data`` a stage accepts from the previous stage, and the kind it passes on.

    ``takes`` containing ``any`` accepts everything (the stage ignores or inspects its input);
    ``file`` in ``takes`` means it can come first and read the item's file itself.
    """

    takes: tuple[str, ...] = (ANY,)
    gives: str = ANY

    def accepts(self, kind: str) -> bool:
        return ANY in self.takes or kind == ANY or kind in self.takes


STAGE_IO: Registry[StageIO] = Registry("pipeline stage kinds")
ANY_IO = StageIO()


def stage(name: str, *, takes: tuple[str, ...] = (ANY,), gives: str = ANY) -> Callable[[StageFn], StageFn]:
    """Register a stage function under ``name`` with what it takes and gives (default: any)."""
    unknown = [k for k in (*takes, gives) if k not in KIND_WORDS]
    if unknown:
        raise ValueError(f"stage {name!r}: unknown data kinds {unknown}; use {', '.join(KIND_WORDS)}")

    def register(fn: StageFn) -> StageFn:
        STAGES.add(name, fn)
        STAGE_IO.add(name, StageIO(takes=tuple(takes), gives=gives))
        return fn

    return register


def io_of(fn: StageFn, name: str | None = None) -> StageIO:
    """A stage's kinds: registered with it, or declared by a custom function as ``takes``/``gives``
    attributes; a custom stage that declares nothing takes and gives anything."""
    if name is not None and name in STAGE_IO.entries:
        return STAGE_IO.entries[name]
    takes, gives = getattr(fn, "takes", None), getattr(fn, "gives", None)
    if takes is None and gives is None:
        return ANY_IO
    takes_t = (takes,) if isinstance(takes, str) else tuple(takes or (ANY,))
    return StageIO(takes=takes_t, gives=str(gives or ANY))


def as_output(value: Any) -> StepOutput:
    return value if isinstance(value, StepOutput) else StepOutput(data=value)


class StageError(Exception):
    """A stage refuses its input or parameters; ``message`` is shown in the audit and report."""
