"""Small real files for the ingest tests: images drawn with Pillow, PNGs built by hand, zips."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    """A smooth random RGB picture: blocky noise upsampled, so that phash has structure."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


def write_image(
    path: Path, *, size: tuple[int, int] = (64, 48), seed: int = 0, fmt: str | None = None
) -> Path:
    """Write ``pattern`` to ``path`` (format from the suffix unless ``fmt``), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern(*size, seed=seed).save(path, format=fmt)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG, all black, compressed row by row (never held in memory whole)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def jpeg_bytes(image: Image.Image, **save_args: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **save_args)
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    """Zip ``members`` (name -> bytes) written verbatim, plus symlink entries (name -> target)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0
            archive.writestr(info, target)
    return path


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (posix, relative), links not followed."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}
