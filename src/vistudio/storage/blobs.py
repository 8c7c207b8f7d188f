"""Blob files: the content-addressed layout on disk, with atomic, hash-verified writes.

Blobs live at ``<root>/<dir>/<ab>/<sha256><suffix>`` where the folder depends on the kind:
originals in ``media/``, thumbnails in ``thumbs/``, everything else in ``artifacts/``.
Thumbnails are keyed by the sha256 of their *original* (``thumbs/ab/<sha>-256.webp``) so that a
sample finds its thumbnail without a lookup. This module has no database imports: import pool
processes use it to write blobs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vistudio.storage.atomic import TMP_PREFIX, atomic_writer

SHA_RE = re.compile(r"^[0-9a-f]{64}$")
KIND_DIRS = {"original": "media", "thumbnail": "thumbs"}
DEFAULT_DIR = "artifacts"
CHUNK = 1 << 20


class BlobError(Exception):
    pass


def check_sha(sha: str) -> str:
    if not SHA_RE.match(sha):
        raise BlobError(f"not a blob id (64 lowercase hex digits): {sha[:80]!r}")
    return sha


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, *, chunk_size: int = CHUNK) -> str:
    """Hex sha256 of a file, read in chunks (for files too large to hold in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class BlobProblem:
    kind: str
    sha256: str
    problem: str  # missing | corrupt | orphan | temp
    path: str


class BlobFiles:
    def __init__(self, root: Path, *, thumb_size: int = 256) -> None:
        self.root = root
        self.thumb_size = thumb_size

    def folder(self, kind: str) -> Path:
        return self.root / KIND_DIRS.get(kind, DEFAULT_DIR)

    def suffix(self, kind: str, ext: str = "") -> str:
        if kind == "thumbnail":
            return f"-{self.thumb_size}.webp"
        return f".{ext}" if ext else ""

    def path(self, kind: str, sha: str, ext: str = "") -> Path:
        check_sha(sha)
        return self.folder(kind) / sha[:2] / f"{sha}{self.suffix(kind, ext)}"

    def write_bytes(self, kind: str, data: bytes, *, ext: str = "", key: str | None = None) -> str:
        """Store ``data``; returns its key (its sha256 unless ``key`` is given). Idempotent."""
        sha = key or sha256_bytes(data)
        dest = self.path(kind, sha, ext)
        if not dest.exists():
            with atomic_writer(dest) as fh:
                fh.write(data)
        return sha

    def write_file(self, kind: str, src: Path, *, ext: str = "", expected_sha: str | None = None) -> str:
        """Copy ``src`` in, hashing while copying; refuses to publish if the hash is not the expected one."""
        if expected_sha is not None:
            dest = self.path(kind, expected_sha, ext)
            if dest.exists():
                return expected_sha
        folder = self.folder(kind)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        try:
            h = hashlib.sha256()
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                for chunk in iter(lambda: fin.read(CHUNK), b""):
                    h.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            sha = h.hexdigest()
            if expected_sha is not None and sha != expected_sha:
                raise BlobError(f"{src} changed while it was copied (hash mismatch)")
            final = self.path(kind, sha, ext)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def iter_files(self) -> Iterator[tuple[str | None, Path]]:
        """Every file under the store folders, with the kind its folder belongs to (None: artifacts)."""
        for kind, sub in (("original", "media"), ("thumbnail", "thumbs"), (None, DEFAULT_DIR)):
            base = self.root / sub
            if base.is_dir():
                for p in sorted(base.rglob("*")):
                    if p.is_file():
                        yield kind, p

    def verify_blob(self, kind: str, sha: str, ext: str = "") -> str | None:
        """None when the blob is intact, else ``missing`` or ``corrupt``."""
        p = self.path(kind, sha, ext)
        if not p.is_file():
            return "missing"
        if kind == "thumbnail":
            from PIL import Image

            try:
                with Image.open(p) as im:
                    im.load()
            except Exception:
                return "corrupt"
            return None
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
        return None if h.hexdigest() == sha else "corrupt"

    def remove_file(self, path: Path) -> None:
        """Delete a stray file, refusing anything outside the store."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise BlobError(f"refusing to delete outside the workspace: {path}")
        if resolved.is_dir():
            shutil.rmtree(resolved)
        else:
            resolved.unlink(missing_ok=True)
