"""Resolve paths that come from input, and walk folders for images, without leaving a root.

Every path named by a source (a COCO ``file_name``, a CSV cell, a line of a YOLO list) is
untrusted: it may be absolute, climb out with ``..``, or reach outside through a symlink.
``resolve_inside`` is the one gate such paths pass through; ``walk_images`` is the one way a
folder is listed.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from vistudio.ingest.types import IngestError, ItemError, SourceError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"}
)

_DRIVE = re.compile(r"^[A-Za-z]:")


def is_image_name(name: str) -> bool:
    """True when ``name`` ends with one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def split_relative(relative: str) -> list[str]:
    """Split an untrusted relative path into safe components, or raise ``IngestError``.

    Backslashes count as separators because sources made on Windows write them; empty and
    ``.`` components are dropped.
    """
    if "\x00" in relative:
        raise IngestError("path contains a NUL byte")
    text = relative.replace("\\", "/")
    if not text.strip():
        raise IngestError("empty path")
    if text.startswith("/") or _DRIVE.match(text):
        raise IngestError(f"absolute path not allowed: {relative!r}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise IngestError(f"path escapes the source folder ('..'): {relative!r}")
    if not parts:
        raise IngestError(f"empty path: {relative!r}")
    return parts


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve ``relative`` (untrusted) against ``root``; return the resolved absolute path.

    Raises ``IngestError`` for NUL bytes, empty or absolute paths (``/x``, ``C:\\x``), any
    ``..`` component, and paths whose real target, symlinks followed, is outside the real root.
    The path need not exist.
    """
    parts = split_relative(relative)
    real_root = root.resolve()
    try:
        target = real_root.joinpath(*parts).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
        raise IngestError(f"cannot resolve path {relative!r}: {exc}") from exc
    if target != real_root and not target.is_relative_to(real_root):
        raise IngestError(f"path resolves outside the source folder (symlink?): {relative!r}")
    return target


def normalise_join(base: str, relative: str) -> str:
    """Join a root-relative ``base`` folder and an untrusted ``relative`` path lexically.

    ``sub/../images/x.jpg`` becomes ``images/x.jpg``; a result that still climbs above the
    root keeps its ``..`` so that ``resolve_inside`` refuses it.
    """
    text = relative.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        return text  # absolute: left for resolve_inside to refuse with the right reason
    joined = f"{base}/{text}" if base not in ("", ".") else text
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def walk_images(root: Path) -> tuple[list[Path], list[ItemError]]:
    """List image files under ``root`` recursively, in sorted order, never leaving ``root``.

    Returns ``(paths, errors)``. Paths are absolute and spelled under the resolved root (a
    symlinked file keeps its own name). Hidden entries (``.x``) are skipped; symlinks whose
    target is outside the root, broken symlinks and symlink loops are reported as errors;
    a folder reached twice through symlinks is walked once.
    """
    real_root = root.resolve()
    if not real_root.is_dir():
        raise SourceError(f"not a folder: {root}")
    found: list[tuple[tuple[str, ...], Path]] = []
    errors: list[ItemError] = []
    visited: set[Path] = {real_root}
    # Explicit stack (not recursion) so that deep trees cannot hit the recursion limit.
    stack: list[tuple[Path, tuple[str, ...], Path]] = [(real_root, (), real_root)]
    while stack:
        folder, rel, real_folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            errors.append(ItemError(_posix(rel) or ".", f"cannot list folder: {exc.strerror or exc}"))
            continue
        subdirs: list[tuple[Path, tuple[str, ...], Path]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child_rel = (*rel, entry.name)
            name = _posix(child_rel)
            try:
                if entry.is_symlink():
                    real = Path(entry.path).resolve()
                    if not real.exists():
                        if is_image_name(entry.name):
                            errors.append(ItemError(name, "broken symlink"))
                        continue
                    if real != real_root and not real.is_relative_to(real_root):
                        if real.is_dir():
                            errors.append(
                                ItemError(name, "symlinked folder points outside the source folder")
                            )
                        elif is_image_name(entry.name):
                            errors.append(ItemError(name, "symlink points outside the source folder"))
                        continue
                    if real.is_dir():
                        if real == real_folder or real_folder.is_relative_to(real):
                            errors.append(ItemError(name, "symlink loop (points to a parent folder)"))
                        elif real not in visited:
                            visited.add(real)
                            subdirs.append((Path(entry.path), child_rel, real))
                        continue
                    if real.is_file() and is_image_name(entry.name):
                        found.append((child_rel, real_root.joinpath(*child_rel)))
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    real = real_folder / entry.name
                    if real not in visited:
                        visited.add(real)
                        subdirs.append((Path(entry.path), child_rel, real))
                elif stat.S_ISREG(mode) and is_image_name(entry.name):
                    found.append((child_rel, real_root.joinpath(*child_rel)))
            except (OSError, RuntimeError) as exc:
                errors.append(ItemError(name, f"cannot read: {exc}"))
        # Reversed so that the stack pops sub-folders in sorted order.
        stack.extend(reversed(subdirs))
    found.sort(key=lambda pair: pair[0])
    errors.sort(key=lambda e: e.path)
    return [p for _, p in found], errors


def _posix(parts: tuple[str, ...]) -> str:
    return str(PurePosixPath(*parts)) if parts else ""
