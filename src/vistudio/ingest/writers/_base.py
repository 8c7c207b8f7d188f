"""What every writer shares: the samples it is given, the plan of file names, what it reports.

A writer is built for one export from the samples (with their ground-truth annotations) and the
project's classes. ``plan`` decides which samples go in and where each image lands; ``render``
turns the planned samples into the format's label files and manifests, and counts what the format
cannot express (``dropped``) and what it keeps in another form (``converted``). Nothing is written
here: the caller copies the images and writes the rendered files, so a dry run is the same code
without the writing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vistudio.ingest.writers._names import NameBook, safe_component, safe_relpath, strip_leading
from vistudio.registry import Registry

# Folders that a re-import puts in front of every name (COCO and YOLO ``images/``, VOC's
# ``JPEGImages/``): removed from the front of a name, so that exporting what was imported from an
# export gives the same names again instead of ``images/images/…``.
LAYOUT_FOLDERS = ("images", "JPEGImages")
# Geometry flags the readers keep: COCO's iscrowd, VOC's difficult, truncated, occluded.
IGNORE_FLAGS = ("iscrowd", "difficult")
OTHER_FLAGS = ("truncated", "occluded")
NO_CLASS = "objects without a class"
INVALID = "invalid geometry (the format's reader would refuse it)"


@dataclass(frozen=True)
class ExportAnnotation:
    """One ground-truth annotation, as ``vistudio.ingest.types.Annotation`` (normalised geometry)."""

    kind: str
    class_name: str | None = None
    geometry: dict[str, Any] | None = None


@dataclass
class ExportSample:
    """One image to export: its name (untrusted), its size as displayed, its annotations."""

    name: str
    width: int
    height: int
    format: str = ""
    annotations: list[ExportAnnotation] = field(default_factory=list)
    subset: str | None = None  # train / val / test when exporting by split
    key: Any = None  # the caller's id for it (the sample id)


@dataclass
class Rendered:
    """A writer's files (relative posix path → bytes) and its accounting."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    annotations: int = 0  # annotations written (each comes back as one annotation on re-import)
    dropped: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)


@dataclass
class Plan:
    """The samples that go in, each with its image's path in the export, and the samples left out."""

    entries: list[tuple[ExportSample, str]] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)


class Writer:
    """Base of the format writers (see the module docstring); one instance per export."""

    name: ClassVar[str] = ""
    # the annotation kinds the format can hold; a task none of whose kinds is here cannot be
    # exported to it at all
    kinds: ClassVar[frozenset[str]] = frozenset()
    # the folders of the layout, for documentation: where images and labels go
    layout: ClassVar[str] = ""

    def __init__(
        self,
        samples: Sequence[ExportSample],
        *,
        classes: Sequence[str],
        by_split: bool,
        title: str = "dataset",
        task_kinds: Sequence[str] = (),
    ) -> None:
        self.samples = samples
        self.by_split = by_split
        self.title = title
        # the annotation kinds of the project's task (its TaskSpec), for formats whose datasets
        # hold one kind of object (YOLO detect / segment / obb)
        self.task_kinds = tuple(task_kinds)
        seen = dict.fromkeys(classes)
        for s in samples:
            for a in s.annotations:
                if a.class_name is not None:
                    seen.setdefault(a.class_name)
        self.classes: list[str] = list(seen)
        self._class_names: dict[str, str | None] | None = None
        self.converted: Counter[str] = Counter()

    # --- planning ---------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Which samples go in and where their images land (unique, safe paths)."""
        plan = Plan()
        book = NameBook()
        for s in self.samples:
            if self.by_split and not s.subset:
                plan.excluded["samples outside the split"] += 1
                continue
            reason = self.exclude(s)
            if reason:
                plan.excluded[reason] += 1
                continue
            plan.entries.append((s, book.claim(self.image_path(s, self.relative_name(s)))))
        return plan

    def relative_name(self, s: ExportSample) -> str:
        """The sample's name as a safe relative path, without a layout folder in front (nor, by
        split, a folder named like its subset)."""
        name = strip_leading(safe_relpath(s.name, s.format), LAYOUT_FOLDERS)
        if self.by_split and s.subset:
            name = strip_leading(name, (self.subset_folder(s),))
        return name

    def subset_folder(self, s: ExportSample) -> str:
        return safe_component(s.subset or "") or "subset"

    def exclude(self, s: ExportSample) -> str | None:
        """Why the sample as a whole cannot go in (a reason counted in ``dropped``), or None."""
        return None

    def image_path(self, s: ExportSample, name: str) -> str:
        """Where the image of ``s`` goes, given its safe relative ``name``."""
        raise NotImplementedError

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        """The label files and manifests of the planned samples that were exported."""
        raise NotImplementedError

    # --- helpers for the formats -------------------------------------------------------------

    def unsupported(self, a: ExportAnnotation) -> str | None:
        """Why the format drops annotation ``a`` whatever its geometry, or None."""
        if a.kind not in self.kinds:
            return a.kind
        if a.kind != "value" and not a.class_name:
            return NO_CLASS
        return None

    def class_label(self, name: str) -> str | None:
        """The name the format writes for class ``name`` (None: it cannot write it at all). Two
        classes never end up with the same name; each renamed class is reported in ``converted``."""
        if self._class_names is None:
            self._class_names = {}
            taken: set[str] = set()
            for original in self.classes:
                written = self.format_class_name(original)
                if written is not None:
                    base, number = written, 1
                    while self.class_key(written) in taken:
                        number += 1
                        written = f"{base}-{number}"
                    taken.add(self.class_key(written))
                    if written != original:
                        self.converted[f"class {original!r} written as {written!r}"] += 1
                self._class_names[original] = written
        if name not in self._class_names:  # pragma: no cover - every class is collected in __init__
            return None
        return self._class_names[name]

    def format_class_name(self, name: str) -> str | None:
        """How the format spells class ``name`` (override where the format restricts names)."""
        return name

    def class_key(self, name: str) -> str:
        """When two written class names count as the same (folders: case-insensitively)."""
        return name

    def flags(self, a: ExportAnnotation, rendered: Rendered, *, keeps: tuple[str, ...]) -> bool:
        """Account for ``a``'s flags: those in ``keeps`` are written; an ignore flag (iscrowd,
        difficult) the format lacks is written as the one it has (reported in ``converted``);
        other flags are reported in ``dropped``. Returns whether the object is to be ignored."""
        g = a.geometry or {}
        ignore = False
        for flag in IGNORE_FLAGS:
            if g.get(flag) is True:
                ignore = True
                if flag not in keeps:
                    other = next((k for k in IGNORE_FLAGS if k in keeps), None)
                    if other is not None and g.get(other) is not True:
                        rendered.converted[f"{flag} written as {other}"] += 1
        for flag in OTHER_FLAGS:
            if g.get(flag) is True and flag not in keeps:
                rendered.dropped[f"{flag} flag"] += 1
        return ignore

    def finish(self, rendered: Rendered) -> Rendered:
        rendered.converted.update(self.converted)
        return rendered


WRITERS: Registry[type[Writer]] = Registry("writer")


def register_writer(name: str) -> Any:
    """Class decorator: register a ``Writer`` subclass as format ``name``."""

    def add(cls: type[Writer]) -> type[Writer]:
        cls.name = name
        return WRITERS.add(name, cls)

    return add


def num(value: float, digits: int) -> str:
    """``value`` rounded to ``digits`` decimals, without trailing zeros (``12``, ``0.5``, ``0.125``)."""
    text = f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def finite(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def points_of(geometry: dict[str, Any] | None, key: str = "points") -> list[list[float]] | None:
    """The ``[[x, y], ...]`` list stored under ``key``, or None when it is not one of finite numbers."""
    raw = (geometry or {}).get(key)
    if not isinstance(raw, list):
        return None
    out: list[list[float]] = []
    for p in raw:
        if not (isinstance(p, list | tuple) and len(p) == 2 and finite(*p)):
            return None
        out.append([float(p[0]), float(p[1])])
    return out


def rings_of(geometry: dict[str, Any] | None) -> list[list[list[float]]] | None:
    """A polygon's rings (``geometry["polygons"]``), or None when malformed."""
    raw = (geometry or {}).get("polygons")
    if not isinstance(raw, list) or not raw:
        return None
    rings = [points_of({"p": ring}, "p") for ring in raw]
    if any(r is None or len(r) < 3 for r in rings):
        return None
    return [r for r in rings if r is not None]


def box_of(geometry: dict[str, Any] | None) -> tuple[float, float, float, float] | None:
    """A box's ``(x, y, w, h)`` (normalised), or None when malformed."""
    g = geometry or {}
    values = [g.get(k) for k in ("x", "y", "w", "h")]
    if not finite(*values):
        return None
    x, y, w, h = (float(v) for v in values)  # type: ignore[arg-type]
    return x, y, w, h
