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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vistudio.storage.atomic import TMP_PREFIX, atomic_writer

SHA_RE = re.compile(r"^[0-9a-f]{64}$")
KIND_DIRS = {"original": "media", "thumbnail": "thumbs"}
DEFAULT_DIR = "artifacts"
CHUNK = 1 << 20
# blobs no row names and temporary files younger than this may belong to a write still in flight
# (an import uploads its blobs before its batch commits the rows): scan leaves them alone
STALE_SECONDS = 6 * 3600.0


class BlobError(Exception):
    pass


class BlobVanished(BlobError):
    """A blob was collected by a concurrent ``gc`` between its write and the reference to it, and no
    local copy could put it back: the caller's transaction must roll back (a retry writes it again)."""


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
    # blobs live elsewhere (a bucket): ``path()`` fetches into a local cache, downloads redirect
    remote = False

    def __init__(self, root: Path, *, thumb_size: int = 256, stale_seconds: float = STALE_SECONDS) -> None:
        self.root = root
        self.thumb_size = thumb_size
        self.stale_seconds = stale_seconds

    def folder(self, kind: str) -> Path:
        return self.root / KIND_DIRS.get(kind, DEFAULT_DIR)

    def suffix(self, kind: str, ext: str = "") -> str:
        if kind == "thumbnail":
            return f"-{self.thumb_size}.webp"
        return f".{ext}" if ext else ""

    def path(self, kind: str, sha: str, ext: str = "") -> Path:
        """A local file with the blob's bytes (it may not exist: check ``is_file()``). A remote
        store fetches the blob into its local cache first (see ``vistudio.storage.s3``)."""
        check_sha(sha)
        return self.folder(kind) / sha[:2] / f"{sha}{self.suffix(kind, ext)}"

    def original(self, rel: str) -> Path:
        """A copy-mode original as a local file, from its workspace-relative path (what
        ``samples.path`` holds: ``media/ab/<sha>.jpg``). Here the path itself; a remote store
        fetches the blob into its cache first."""
        return self.root / rel

    def key(self, kind: str, sha: str, ext: str = "") -> str:
        """The blob's place in the layout, relative to the store: ``media/ab/<sha>.jpg``."""
        check_sha(sha)
        return f"{KIND_DIRS.get(kind, DEFAULT_DIR)}/{sha[:2]}/{sha}{self.suffix(kind, ext)}"

    def location(self, kind: str, sha: str, ext: str = "") -> str:
        """Where the blob lives, as ``scan`` reports it and ``remove_file`` accepts it."""
        return str(BlobFiles.path(self, kind, sha, ext))

    def exists(self, kind: str, sha: str, ext: str | None = "") -> bool:
        """Whether the blob is stored; ``ext=None``: under any extension (originals)."""
        if ext is None:
            check_sha(sha)
            return any((self.folder(kind) / sha[:2]).glob(f"{sha}.*"))
        return BlobFiles.path(self, kind, sha, ext).is_file()

    def size(self, kind: str, sha: str, ext: str = "") -> int:
        return BlobFiles.path(self, kind, sha, ext).stat().st_size

    def delete_blob(self, kind: str, sha: str, ext: str = "") -> None:
        BlobFiles.path(self, kind, sha, ext).unlink(missing_ok=True)

    def delete_blobs(self, blobs: list[tuple[str, str, str]]) -> None:
        """Delete every ``(kind, sha256, ext)`` (absent ones are no error)."""
        for kind, sha, ext in blobs:
            self.delete_blob(kind, sha, ext)

    def missing(self, blobs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """The ``(kind, sha256, ext)`` of ``blobs`` that are not stored."""
        return [b for b in blobs if not self.exists(*b)]

    def restore(self, kind: str, sha: str, ext: str = "") -> bool:
        """Put a blob that vanished back from a local copy of it; False when there is none (the
        local store's files *are* the blobs)."""
        return False

    def download_url(
        self,
        kind: str,
        sha: str,
        ext: str = "",
        *,
        filename: str | None = None,
        media_type: str | None = None,
    ) -> str | None:
        """A short-lived URL a client downloads the blob from directly; None: serve the local file."""
        return None

    def iter_locations(self) -> Iterator[tuple[str | None, str, bool, float]]:
        """Every stored object as ``(kind or None for artifacts, location, is_temporary, age)``, the
        age in seconds since it was last written (a file's mtime)."""
        now = time.time()
        for kind, p in BlobFiles.iter_files(self):
            try:
                age = now - p.stat().st_mtime
            except FileNotFoundError:  # removed since it was listed
                continue
            yield kind, str(p), p.name.startswith(TMP_PREFIX), age

    def sweep_stale(self) -> int:
        """Remove abandoned uploads (a remote store's temporary keys); local temp files are left to
        ``doctor``, which reports them. Returns how many were removed."""
        return 0

    def spec(self) -> dict[str, Any]:
        """What a worker process needs to open the same store (see ``blob_files_from_spec``)."""
        return {"root": str(self.root), "thumb_size": self.thumb_size}

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

    def remove_file(self, path: Path | str) -> None:
        """Delete a stray file (a path or a ``location``), refusing anything outside the store."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise BlobError(f"refusing to delete outside the workspace: {path}")
        if resolved.is_dir():
            shutil.rmtree(resolved)
        else:
            resolved.unlink(missing_ok=True)


def blob_files_from_spec(spec: dict[str, Any]) -> BlobFiles:
    """The store that ``BlobFiles.spec`` describes (import pool processes open theirs with it)."""
    if spec.get("s3"):
        from vistudio.storage.s3 import S3BlobFiles, S3Config

        return S3BlobFiles(Path(spec["root"]), thumb_size=spec["thumb_size"], config=S3Config(**spec["s3"]))
    return BlobFiles(Path(spec["root"]), thumb_size=spec["thumb_size"])
