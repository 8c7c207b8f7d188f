"""Dataset writers: the readers' inverse — a project's samples and annotations as COCO, YOLO, Pascal
VOC, DOTA, CSV or class folders, laid out so that the matching reader reads them back.

A pure library (no database, no files written): each format is one module registering a
``Writer`` subclass with ``@register_writer(name)``. A writer plans the export (which samples go
in, the safe and unique path of each image), renders the label files and manifests, and counts
what the format cannot express (``dropped``) or keeps in another form (``converted``).
:func:`summarise` is that accounting alone, for a dry run: the same code as a real export.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from vistudio.ingest.writers import coco, csv, dota, folders, voc, yolo
from vistudio.ingest.writers._base import (
    WRITERS,
    ExportAnnotation,
    ExportSample,
    Plan,
    Rendered,
    Writer,
    register_writer,
)

__all__ = [
    "WRITERS",
    "ExportAnnotation",
    "ExportSample",
    "Plan",
    "Rendered",
    "Summary",
    "Writer",
    "coco",
    "counts",
    "csv",
    "dota",
    "folders",
    "get_writer",
    "register_writer",
    "summarise",
    "voc",
    "writer_formats",
    "yolo",
]


def writer_formats() -> list[str]:
    """Registered export formats, sorted."""
    return WRITERS.names()


def get_writer(name: str) -> type[Writer]:
    """The writer class of format ``name`` (``KeyError`` naming the known ones)."""
    return WRITERS.get(name)


@dataclass(frozen=True)
class Summary:
    samples: int
    annotations: int
    dropped: dict[str, int]
    converted: dict[str, int]


def counts(counter: Counter[str]) -> dict[str, int]:
    """A counter as a plain dict, zero counts left out, keys sorted."""
    return {k: v for k, v in sorted(counter.items()) if v > 0}


def summarise(
    fmt: str,
    samples: Sequence[ExportSample],
    *,
    classes: Sequence[str],
    by_split: bool = False,
    task_kinds: Sequence[str] = (),
) -> Summary:
    """What exporting ``samples`` to ``fmt`` keeps and loses, without writing anything: the samples
    and annotations it would write, ``dropped`` ``{kind or reason: count}`` (whole samples left
    out and annotations the format cannot hold) and ``converted`` (kept in another form).
    ``task_kinds``: the annotation kinds of the project's task (see ``Writer``)."""
    writer = get_writer(fmt)(samples, classes=classes, by_split=by_split, task_kinds=task_kinds)
    plan = writer.plan()
    rendered = writer.render(plan.entries)
    return Summary(
        samples=len(plan.entries),
        annotations=rendered.annotations,
        dropped=counts(plan.excluded + rendered.dropped),
        converted=counts(rendered.converted),
    )
