"""File names inside an export: readable (a sample keeps its name), safe, and never shared.

A sample's name is a relative posix path that came from a source (or was edited since), so it is
untrusted: it may climb out with ``..``, look absolute, hold control or bidi characters, or be
longer than a file system allows. ``safe_relpath`` keeps what can be kept; ``NameBook`` hands out
paths that no two images share, even on a case-insensitive file system, and that no two label
files share either (``a.jpg`` and ``a.png`` would both want ``a.txt``).
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from vistudio.ingest.safepath import is_image_name

# Bytes of one path component: most file systems allow 255; room is left for a numbered suffix.
MAX_COMPONENT_BYTES = 200
MAX_DEPTH = 16
# Separators (a class or subset name becomes one folder), characters Windows refuses in names (the
# export may be unzipped there), and the two that XML cannot hold although they are not control
# characters (a VOC <filename> must name the file).
_UNSAFE = frozenset('/\\<>:"|?*\ufffe\uffff')
# Characters that reorder the text around them: "x\u202egpj.exe" shows as "xexe.jpg".
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)
# A sample's format (the probe's) → the extension added to a name that has none.
FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "GIF": ".gif",
    "HEIF": ".heic",
}


def _truncate(text: str, limit: int = MAX_COMPONENT_BYTES) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes, keeping a short extension and whole characters."""
    if len(text.encode()) <= limit:
        return text
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = text, ""
    else:
        ext = "." + ext
    room = limit - len(ext.encode())
    return stem.encode()[:room].decode(errors="ignore").rstrip() + ext


def safe_component(text: str) -> str:
    """One path component made safe for any file system and for zip tools; ``""`` when nothing of
    it can be kept (``..``, ``.``, blanks). Control, bidi and Windows-reserved characters become
    ``_``; a leading dot becomes ``_`` (readers skip hidden files); trailing dots and spaces go."""
    text = unicodedata.normalize("NFC", text)
    chars = [
        "_" if ch in _UNSAFE or ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text
    ]
    out = "".join(chars).strip().rstrip(". ")
    if out in ("", ".", ".."):
        return ""
    if out.startswith("."):
        out = "_" + out[1:]
    if out.split(".")[0].upper() in _RESERVED:
        out = "_" + out
    return _truncate(out)


def safe_relpath(name: str, image_format: str = "") -> str:
    """``name`` (untrusted) as a safe relative posix path of an image: ``..``, empty and ``.``
    components dropped, an absolute path made relative, each component made safe, at most
    ``MAX_DEPTH`` folders deep, and an image extension (from ``image_format``) added when the
    name has none that the readers know."""
    parts = [safe_component(p) for p in name.replace("\\", "/").split("/")]
    parts = [p for p in parts if p]
    if not parts:
        parts = ["image"]
    if len(parts) > MAX_DEPTH:
        head = _truncate("_".join(parts[: len(parts) - MAX_DEPTH + 1]))
        parts = [head, *parts[len(parts) - MAX_DEPTH + 1 :]]
    if not is_image_name(parts[-1]):
        ext = FORMAT_EXTENSIONS.get(image_format.upper(), ".jpg")
        parts[-1] = _truncate(parts[-1], MAX_COMPONENT_BYTES - len(ext)) + ext
    return "/".join(parts)


def strip_leading(path: str, names: tuple[str, ...]) -> str:
    """``path`` without its first folder when that folder is one of ``names`` (an export's own
    ``images/`` folder, which a re-import puts back in front of every name)."""
    parts = path.split("/")
    if len(parts) > 1 and parts[0] in names:
        return "/".join(parts[1:])
    return path


class NameBook:
    """Hands out export paths that do not collide: the same path, the same path in another case,
    the same path without its extension (their label files would collide), a file where a folder
    is, or a folder where a file is. A taken path gets a numbered suffix: ``a.jpg``, ``a-2.jpg``."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._stems: set[str] = set()
        self._dirs: set[str] = set()

    def claim(self, path: str) -> str:
        """A path for ``path`` (already safe, relative, posix) that nothing before took."""
        parts = path.split("/")
        for i in range(len(parts) - 1):  # a folder named like a file taken before
            while "/".join(parts[: i + 1]).casefold() in self._files:
                parts[i] = _truncate(parts[i] + "_")
        folder, name = parts[:-1], parts[-1]
        pure = PurePosixPath(name)
        stem, ext = (pure.stem, pure.suffix) if pure.suffix else (name, "")
        candidate = name
        number = 1
        while self._taken("/".join([*folder, candidate])):
            number += 1
            tail = f"-{number}{ext}"
            candidate = _truncate(stem, MAX_COMPONENT_BYTES - len(tail.encode())) + tail
        full = "/".join([*folder, candidate])
        key = full.casefold()
        self._files.add(key)
        self._stems.add(_stem_key(key))
        for i in range(1, len(folder) + 1):
            self._dirs.add("/".join(folder[:i]).casefold())
        return full

    def _taken(self, path: str) -> bool:
        key = path.casefold()
        return key in self._files or key in self._dirs or _stem_key(key) in self._stems


def _stem_key(key: str) -> str:
    pure = PurePosixPath(key)
    return str(pure.with_suffix("")) if pure.suffix else key
