"""CSV reader: a table with a header, one image per row.

The path column is the first header named ``path``, ``filename``, ``file_name``, ``file``,
``filepath``, ``image``, ``image_path`` or ``img`` (any case); its cells are resolved against
the CSV's folder and must stay inside it. The other columns decide the annotations:

- a column named ``label``, ``class``, ``category`` or ``class_name`` → ``label`` (an empty
  cell leaves that image unlabelled);
- otherwise, if every other column is numeric (most of its non-empty cells parse as finite
  floats) → regression: a ``value`` annotation, ``targets`` = those column names, and a row
  with a non-number in them is reported;
- otherwise the first other column is the label;
- no other column → images without annotations.

Bad rows are reported with their row number (the header is row 1) and skipped.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from vistudio.ingest.readers._common import Collector, short, single_file
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import resolve_inside
from vistudio.ingest.types import Annotation, IngestError, ParsedSource, SourceError

PATH_COLUMNS = ("path", "filename", "file_name", "file", "filepath", "image", "image_path", "img")
LABEL_COLUMNS = ("label", "class", "category", "class_name")


@register_reader("csv")
def read_csv(path: Path) -> ParsedSource:
    """Read a CSV file (or a folder holding exactly one ``*.csv``) of image paths and targets."""
    csv_path = single_file(path, ".csv", "CSV")
    try:
        raw = csv_path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {csv_path.name}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{csv_path.name} is not UTF-8 text (save it as UTF-8): {exc}") from exc
    return parse_csv_text(text, root=csv_path.parent)


def _float(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_csv_text(text: str, *, root: Path) -> ParsedSource:
    """Parse CSV ``text`` whose paths are relative to folder ``root``; see the module docstring."""
    text = text.removeprefix("\ufeff")
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SourceError(f"malformed CSV near row {reader.line_num}: {exc}") from exc
    if not rows:
        raise SourceError("empty CSV: a header row and at least one image row are needed")
    header = [cell.strip() for cell in rows[0][1]]
    lowered = [h.lower() for h in header]
    path_index = next((lowered.index(n) for n in PATH_COLUMNS if n in lowered), None)
    if path_index is None:
        raise SourceError(
            f"no path column in the CSV header {short(','.join(header))!r}; "
            f"expected one of: {', '.join(PATH_COLUMNS)}"
        )
    others = [i for i in range(len(header)) if i != path_index]
    body = rows[1:]
    well_formed = [(n, r) for n, r in body if len(r) == len(header)]

    label_index = next((lowered.index(n) for n in LABEL_COLUMNS if n in lowered), None)
    targets: list[int] = []
    if label_index is None and others:
        if all(_mostly_numeric([r[i] for _, r in well_formed]) for i in others):
            targets = others
        else:
            label_index = others[0]

    out = Collector("csv", root)
    out.parsed.targets = [header[i] for i in targets]
    classes: set[str] = set()
    for number, row in body:
        cell = row[path_index].strip() if path_index < len(row) else ""
        where = cell or f"row {number}"
        if len(row) != len(header):
            out.error(short(where), f"row {number}: expected {len(header)} columns, got {len(row)}")
            continue
        if not cell:
            out.error(where, f"row {number}: empty path")
            continue
        try:
            image = resolve_inside(out.root, cell)
        except IngestError as exc:
            out.error(short(cell), f"row {number}: {exc.reason}")
            continue
        if not image.is_file():
            out.error(short(cell), f"row {number}: file not found")
            continue
        annotations: list[Annotation] = []
        if targets:
            values = [_float(row[i].strip()) for i in targets]
            bad = next((i for i, v in zip(targets, values, strict=True) if v is None), None)
            if bad is not None:
                out.error(
                    short(cell),
                    f"row {number}: column {header[bad]!r} is not a number: {short(row[bad], 40)!r}",
                )
                continue
            annotations.append(Annotation(kind="value", geometry={"values": values}))
        elif label_index is not None:
            label = row[label_index].strip()
            if label:
                classes.add(label)
                annotations.append(Annotation(kind="label", class_name=label))
        if image in out:
            out.error(short(cell), f"row {number}: listed twice; only the first row is imported")
            continue
        out.add(image, annotations)
    out.parsed.classes = sorted(classes)
    return out.parsed


def _mostly_numeric(cells: list[str]) -> bool:
    filled = [c.strip() for c in cells if c.strip()]
    if not filled:
        return False
    numeric = sum(1 for c in filled if _float(c) is not None)
    return numeric * 2 > len(filled)
