"""CSV writer: ``labels.csv`` + ``images/…`` (by split: ``<subset>/labels.csv`` +
``<subset>/images/…``, each folder a CSV dataset of its own).

Two shapes, as the CSV reader reads them back:

- classification: ``file,label`` — one label per image; an unlabelled image has an empty cell
  (read back without a label). A sample with several labels cannot be one row: it is left out
  (``multi-label samples``).
- regression, when the samples carry ``value`` annotations: ``file,target`` (or ``target_1,
  target_2, …`` for several values). vistudio does not keep the names of the targets, hence the
  generic names. A sample without values, with another number of values than the others, or with
  a value that is not a finite number is left out; labels are dropped.

Class names lose surrounding spaces (the reader strips cells). Everything but labels and values
is dropped.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from vistudio.ingest.writers._base import ExportSample, Rendered, Writer, register_writer

MANIFEST = "labels.csv"
PATH_COLUMN = "file"
LABEL_COLUMN = "label"


def _values(s: ExportSample) -> list[list[Any]]:
    return [
        list(a.geometry.get("values") or [])
        for a in s.annotations
        if a.kind == "value" and isinstance(a.geometry, dict) and isinstance(a.geometry.get("values"), list)
    ]


def _labels(s: ExportSample) -> list[str]:
    return [a.class_name for a in s.annotations if a.kind == "label" and a.class_name]


@register_writer("csv")
class CsvWriter(Writer):
    kinds = frozenset({"label", "value"})
    layout = "labels.csv + images/… (by split: <subset>/labels.csv + <subset>/images/…)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lengths = Counter(len(v) for s in self.samples for v in _values(s)[:1])
        # regression when the samples hold values: as many targets as most of them have
        self.targets = lengths.most_common(1)[0][0] if lengths else 0

    def format_class_name(self, name: str) -> str | None:
        return name.strip() or None

    def exclude(self, s: ExportSample) -> str | None:
        if not self.targets:
            labels = {n for n in (self.class_label(c) for c in _labels(s)) if n}
            return "multi-label samples" if len(labels) > 1 else None
        values = _values(s)
        if not values:
            return "samples without a value"
        if len(values[0]) != self.targets:
            return "samples with another number of values"
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values[0]
        ):
            return "samples with a value that is not a finite number"
        return None

    def image_path(self, s: ExportSample, name: str) -> str:
        return f"{self.subset_folder(s)}/images/{name}" if self.by_split else f"images/{name}"

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        rendered = Rendered()
        if self.targets == 1:
            header = [PATH_COLUMN, "target"]
        elif self.targets:
            header = [PATH_COLUMN, *(f"target_{i}" for i in range(1, self.targets + 1))]
        else:
            header = [PATH_COLUMN, LABEL_COLUMN]
        groups: dict[str, list[tuple[ExportSample, str]]] = {}
        for s, path in entries:
            groups.setdefault(self.subset_folder(s) + "/" if self.by_split else "", []).append((s, path))
        if not groups and not self.by_split:
            groups[""] = []
        for prefix, items in sorted(groups.items()):
            buf = io.StringIO()
            out = csv.writer(buf, lineterminator="\n")
            out.writerow(header)
            for s, path in items:
                out.writerow([path.removeprefix(prefix), *self._cells(s, rendered)])
            rendered.files.append((f"{prefix}{MANIFEST}", buf.getvalue().encode()))
        return self.finish(rendered)

    def _cells(self, s: ExportSample, rendered: Rendered) -> list[str]:
        kept = "value" if self.targets else "label"
        for a in s.annotations:
            if a.kind != kept:
                rendered.dropped[a.kind] += 1
        if self.targets:
            values = _values(s)
            rendered.dropped["value"] += len(values) - 1  # a second set of values on one image
            rendered.annotations += 1
            return [repr(float(v)) for v in values[0]]
        labels = _labels(s)
        if not labels:
            return [""]
        rendered.dropped["duplicate labels"] += len(labels) - 1
        rendered.annotations += 1
        return [self.class_label(labels[0]) or ""]
