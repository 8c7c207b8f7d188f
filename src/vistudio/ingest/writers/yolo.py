"""YOLO writer (Ultralytics layout): ``data.yaml`` + ``images/…`` + ``labels/….txt``.

A YOLO dataset holds one kind of object, and Ultralytics reads it so: the writer picks the
dataset's task from the project's task (the first of its annotation kinds that YOLO holds: a
detection project is ``detect``, an instance or semantic segmentation project ``segment``, an
oriented detection project ``obb``; without a task, from the kinds present, in the order obb,
segment, detect) and writes it as ``task:`` in ``data.yaml`` (the reader reads 8 numbers as a
rotated box only with ``task: obb``). ``names`` maps class ids (the project's class order, from
0) to names. By split, images go to ``images/<subset>/`` and ``data.yaml`` names ``train`` /
``val`` / ``test`` (the subsets that have images); otherwise everything is one set, ``train:
images`` (add a ``val:`` to train on it). One label file per image (empty when it has no
objects), at the image's path with its last ``images`` folder swapped for ``labels`` — the
reader's rule. Lines, normalised to 0..1 with six decimals:

- detect: ``box`` → ``class cx cy w h``;
- segment: ``polygon`` → ``class x1 y1 x2 y2 …``, one ring per object (a polygon of several
  rings is dropped); the box the COCO reader stores before each polygon is the polygon's own
  (Ultralytics derives it), so it is dropped without loss of an object;
- obb: ``rotated_box`` → ``class x1 y1 … x4 y4``.

Dropped: the kinds the dataset's task does not hold, image-level labels, values, RLE masks
(turning a mask into a polygon changes it), and crowd or difficult objects (YOLO has no "ignore"
flag; Ultralytics' own converters skip them).
Every line is checked with the YOLO reader before it is written; a line it would refuse (an
object that rounding to six decimals makes empty or self-crossing) is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import yaml

from vistudio.ingest.readers.yolo import _label_for, parse_yolo_labels
from vistudio.ingest.writers._base import (
    IGNORE_FLAGS,
    INVALID,
    ExportAnnotation,
    ExportSample,
    Rendered,
    Writer,
    box_of,
    num,
    points_of,
    register_writer,
    rings_of,
)
from vistudio.ingest.writers._geometry import same_object

DIGITS = 6
YAML_NAME = "data.yaml"
SUBSETS = ("train", "val", "test")
# the object kind of each YOLO dataset task
TASKS = {"box": "detect", "polygon": "segment", "rotated_box": "obb"}


@register_writer("yolo")
class YoloWriter(Writer):
    kinds = frozenset({"box", "polygon", "rotated_box"})
    layout = "data.yaml + images/… + labels/….txt (by split: images/<subset>/…, labels/<subset>/…)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kinds = [k for k in self.task_kinds if k in self.kinds]
        if not kinds:
            present = {a.kind for s in self.samples for a in s.annotations}
            kinds = [k for k in ("rotated_box", "polygon", "box") if k in present] or ["box"]
        self.kind = kinds[0]
        self.task = TASKS[self.kind]
        self.obb = self.task == "obb"

    def image_path(self, s: ExportSample, name: str) -> str:
        return f"images/{self.subset_folder(s)}/{name}" if self.by_split else f"images/{name}"

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        rendered = Rendered()
        names = {i: c for i, c in enumerate(self.classes)}
        ids = {c: i for i, c in names.items()}
        for s, path in entries:
            anns = s.annotations
            lines = []
            for i, a in enumerate(anns):
                nxt = anns[i + 1] if i + 1 < len(anns) else None
                paired = (
                    self.kind == "polygon"
                    and nxt is not None
                    and nxt.kind == "polygon"
                    and same_object(a, nxt, s.width, s.height)
                )
                line = self._line(a, ids, names, rendered, paired=paired)
                if line:
                    lines.append(line)
            text = "".join(line + "\n" for line in lines)
            rendered.files.append((_label_for(PurePosixPath(path)), text.encode()))
        config: dict[str, object] = {}
        if self.by_split:
            present = sorted({self.subset_folder(s) for s, _ in entries}, key=_subset_order)
            for subset in present:
                config[subset] = f"images/{subset}"
        else:
            config["train"] = "images"
        config["task"] = self.task
        config["names"] = names
        head = f"# {self.title}, exported by vistudio. " + (
            "Subsets of the split.\n" if self.by_split else "One set of images: add `val:` to train on it.\n"
        )
        body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)
        rendered.files.append((YAML_NAME, (head + body).encode()))
        return self.finish(rendered)

    def _line(
        self,
        a: ExportAnnotation,
        ids: dict[str, int],
        names: dict[int, str],
        rendered: Rendered,
        *,
        paired: bool = False,
    ) -> str | None:
        """The label line of ``a``, or None (counted in ``dropped``). ``paired``: a box directly
        followed by a polygon of its class in a segment dataset (one COCO object)."""
        reason = self.unsupported(a)
        if reason:
            rendered.dropped[reason] += 1
            return None
        if a.kind != self.kind:
            if paired:
                rendered.dropped["boxes of polygon objects (a segment dataset derives them)"] += 1
            else:
                rendered.dropped[f"{a.kind} (a YOLO {self.task} dataset holds {self.kind} only)"] += 1
            return None
        g = a.geometry or {}
        if any(g.get(flag) is True for flag in IGNORE_FLAGS):
            rendered.dropped["crowd or difficult objects"] += 1
            return None
        self.flags(a, rendered, keeps=())
        cid = ids[a.class_name or ""]
        coords: list[float] | None = None
        if a.kind == "box":
            b = box_of(g)
            if b is not None:
                x, y, w, h = b
                coords = [x + w / 2, y + h / 2, w, h]
        elif a.kind == "polygon":
            rings = rings_of(g)
            if rings is not None and len(rings) > 1:
                rendered.dropped["polygons of several rings"] += 1
                return None
            coords = [v for p in rings[0] for v in p] if rings is not None else None
        else:
            points = points_of(g)
            coords = [v for p in points for v in p] if points is not None and len(points) == 4 else None
        if coords is None:
            rendered.dropped[INVALID] += 1
            return None
        line = " ".join([str(cid), *(num(v, DIGITS) for v in coords)])
        back, errors = parse_yolo_labels(line, names=names, obb=self.obb)
        if errors or len(back) != 1 or back[0].kind != a.kind:
            rendered.dropped[INVALID] += 1
            return None
        rendered.annotations += 1
        return line


def _subset_order(name: str) -> tuple[int, str]:
    return (SUBSETS.index(name) if name in SUBSETS else len(SUBSETS), name)
