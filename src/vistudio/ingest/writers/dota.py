"""DOTA writer: ``images/…`` + ``labelTxt/….txt`` (by split: ``<subset>/images/…`` and
``<subset>/labelTxt/…``, as DOTA ships ``train/`` and ``val/``).

One label file per image (empty without objects), at the image's path with its last ``images``
folder swapped for ``labelTxt``. Each ``rotated_box`` is a line ``x1 y1 x2 y2 x3 y3 x4 y4 class
difficult``: its four corners in the order stored, in pixels of the image as displayed, with up to
three decimals. ``difficult`` is kept; COCO's ``iscrowd`` is written as ``difficult``. A class name
cannot hold spaces in this format: they become ``_`` (reported in ``converted``).

Dropped: everything but rotated boxes — axis-aligned boxes too (written as four corners they
would come back as rotated boxes), and truncated/occluded flags. Every line is checked with the
DOTA reader before it is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vistudio.ingest.readers.dota import label_path_for, parse_dota_labels
from vistudio.ingest.writers._base import (
    INVALID,
    ExportSample,
    Rendered,
    Writer,
    num,
    points_of,
    register_writer,
)

DIGITS = 3
_SPACE = re.compile(r"\s+")


@register_writer("dota")
class DotaWriter(Writer):
    kinds = frozenset({"rotated_box"})
    layout = "images/… + labelTxt/….txt (by split: <subset>/images/…, <subset>/labelTxt/…)"

    def image_path(self, s: ExportSample, name: str) -> str:
        return f"{self.subset_folder(s)}/images/{name}" if self.by_split else f"images/{name}"

    def format_class_name(self, name: str) -> str | None:
        written = _SPACE.sub("_", name.strip())
        if not written or written.startswith("#"):
            return None
        try:
            float(written)
        except ValueError:
            return written
        return f"class_{written}"  # a number where the class goes reads as a misplaced coordinate

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        rendered = Rendered()
        for s, path in entries:
            lines: list[str] = []
            w, h = float(s.width), float(s.height)
            for a in s.annotations:
                reason = self.unsupported(a)
                name = self.class_label(a.class_name) if not reason and a.class_name else None
                if reason or name is None:
                    rendered.dropped[reason or "objects whose class name DOTA cannot hold"] += 1
                    continue
                points = points_of(a.geometry)
                if points is None or len(points) != 4:
                    rendered.dropped[INVALID] += 1
                    continue
                difficult = self.flags(a, rendered, keeps=("difficult",))
                coords = " ".join(f"{num(x * w, DIGITS)} {num(y * h, DIGITS)}" for x, y in points)
                line = f"{coords} {name} {int(difficult)}"
                back, errors = parse_dota_labels(line, width=w, height=h)
                if errors or len(back) != 1:
                    rendered.dropped[INVALID] += 1
                    continue
                lines.append(line)
                rendered.annotations += 1
            text = "".join(line + "\n" for line in lines)
            rendered.files.append((label_path_for(path), text.encode()))
        return self.finish(rendered)
