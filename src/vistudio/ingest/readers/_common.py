"""Helpers shared by the readers: collecting items once, naming them, finding manifests, sizes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from vistudio.ingest.types import Annotation, ItemError, ParsedSource, SourceError, SourceItem


class Collector:
    """Builds a ``ParsedSource`` while refusing the same file twice."""

    def __init__(self, fmt: str, root: Path) -> None:
        self.root = root.resolve()
        self.parsed = ParsedSource(format=fmt, root=self.root)
        self._seen: dict[Path, SourceItem] = {}

    def __contains__(self, path: object) -> bool:
        return path in self._seen

    def error(self, path: str, reason: str) -> None:
        """Record a problem with one item (the rest of the source still imports)."""
        self.parsed.errors.append(ItemError(path, reason))

    def add(self, path: Path, annotations: list[Annotation] | None = None) -> SourceItem | None:
        """Add the image at ``path`` (already proven inside root); None if it was listed before."""
        name = self.name(path)
        if path in self._seen:
            self.error(name, "listed twice; only the first entry is imported")
            return None
        item = SourceItem(path=path, name=name, annotations=list(annotations or []))
        self._seen[path] = item
        self.parsed.items.append(item)
        return item

    def name(self, path: Path) -> str:
        """Posix path of ``path`` relative to the root (or the path itself if outside)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def single_file(path: Path, suffix: str, what: str) -> Path:
    """``path`` itself if it is a file, else the one non-hidden ``*suffix`` file in folder ``path``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise SourceError(f"source not found: {path}")
    found = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() == suffix and not p.name.startswith(".")
    )
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise SourceError(f"expected exactly one {suffix} {what} file in {path.name or path}, found {names}")
    return found[0]


def short(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters for messages."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_ORIENTATION = 0x0112


def exif_orientation(im: Image.Image) -> int | None:
    """EXIF orientation, read as the probe reads it; None when absent or unreadable."""
    if im.format == "PNG" and "exif" not in im.info:
        return None  # PNG's getexif() would decode every pixel to look past the image data
    try:
        value = im.getexif().get(_ORIENTATION)
    except Exception:  # malformed EXIF: the probe ignores it too
        return None
    return value if isinstance(value, int) else None


def displayed_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path`` as displayed (after EXIF orientation).

    Only the header is read: ``Image.open`` does not decode pixels. Raises whatever Pillow
    raises for a file it cannot read.
    """
    with Image.open(path) as im:
        width, height = im.size
        if exif_orientation(im) in (5, 6, 7, 8):
            width, height = height, width
    return width, height
