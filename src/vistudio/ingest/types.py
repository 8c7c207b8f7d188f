"""Plain data types shared by the ingest readers and the import service.

Geometry conventions (all coordinates normalised to 0..1 of the image as displayed,
i.e. after EXIF orientation when the source says so; readers use the size their source
declares, or the probed size):

- ``label``: ``class_name`` set, ``geometry`` None.
- ``box``: ``{"x": .., "y": .., "w": .., "h": ..}`` top-left corner and size.
- ``polygon``: ``{"polygons": [[[x, y], ...], ...]}`` one or more rings.
- ``mask_rle``: ``{"size": [h, w], "counts": [...] | "..."}`` COCO RLE, pixel space.
- ``rotated_box``: ``{"points": [[x, y] * 4]}`` the four corners in order.
- ``value``: ``{"values": [float, ...]}`` with ``ParsedSource.targets`` naming them.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

AnnotationKind = Literal["label", "box", "polygon", "mask_rle", "rotated_box", "value"]
ANNOTATION_KINDS: tuple[str, ...] = ("label", "box", "polygon", "mask_rle", "rotated_box", "value")


@dataclass(frozen=True)
class Annotation:
    kind: AnnotationKind
    class_name: str | None = None
    geometry: dict[str, Any] | None = None


@dataclass
class SourceItem:
    """One image named by a source: an absolute path proven to lie inside the source root."""

    path: Path
    name: str  # posix path relative to the source root, used in reports
    annotations: list[Annotation] = field(default_factory=list)


@dataclass(frozen=True)
class ItemError:
    path: str
    reason: str


@dataclass
class ParsedSource:
    format: str
    root: Path
    classes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    items: list[SourceItem] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


@dataclass
class Probe:
    """What one read of an image file yields."""

    sha256: str
    bytes: int
    format: str  # JPEG, PNG, WEBP, TIFF, BMP, GIF, HEIF
    width: int  # after EXIF orientation
    height: int
    phash: str  # 16 hex digits, 64-bit DCT perceptual hash
    # builtins.bytes: inside this class the field `bytes` shadows the type.
    thumbnail: builtins.bytes  # WebP, longest side <= thumb size
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    orientation: int | None = None
    exif: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class IngestError(Exception):
    """A single item cannot be imported; ``reason`` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceError(Exception):
    """The whole source is unusable (missing, wrong format, unreadable manifest)."""
