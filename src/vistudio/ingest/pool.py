"""Work done in import pool processes: read a file once, probe it, write its blobs.

Plain data in, plain data out. This module imports no database or web code, so a spawned pool
process starts quickly. The image hashes already in the project are handed to each process once,
by the pool initializer, instead of with every task — as ``HashPrefixes`` (8 bytes a hash rather
than ~140 for a set of strings: a million-photo library would otherwise cost every worker 140 MB).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Container
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vistudio.ingest.probe import probe_bytes
from vistudio.ingest.types import IngestError
from vistudio.storage.blobs import BlobFiles, blob_files_from_spec

EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "TIFF": "tif",
    "BMP": "bmp",
    "GIF": "gif",
    "HEIF": "heic",
}

# Files are read whole into memory. Anything larger cannot decode within Pillow's pixel limit
# (89 Mpx of 16-bit RGBA is ~0.7 GB), so it is refused before it is read.
MAX_IMAGE_BYTES = 1 << 30


class HashPrefixes:
    """Membership of sha256 hex digests by their first 8 bytes, in a sorted array.

    Two digests share a prefix with a probability of about n / 2^64: a rare false "known" answer,
    which the parent (holding the exact set) checks and corrects."""

    def __init__(self, shas: Collection[str]) -> None:
        keys = np.fromiter((int(s[:16], 16) for s in shas), dtype=np.uint64, count=len(shas))
        self.keys = np.sort(keys)

    def __contains__(self, sha: object) -> bool:
        if not isinstance(sha, str) or len(sha) < 16:
            return False
        key = np.uint64(int(sha[:16], 16))
        i = int(np.searchsorted(self.keys, key))
        return i < self.keys.size and bool(self.keys[i] == key)

    def __len__(self) -> int:
        return int(self.keys.size)


# Per-process state of a pool worker, set once by ``init_worker``: the hashes the project
# already holds. (The parent never touches it; ``probe_and_store`` takes it as an argument.)
_KNOWN: Container[str] = frozenset()


def init_worker(known: Container[str]) -> None:
    global _KNOWN
    _KNOWN = known


def probe_task(args: tuple[Any, ...]) -> dict[str, Any]:
    """Pool entry point: ``probe_and_store`` with the known hashes given to this process.

    ``args``: ``(path, mode, home, thumb_size)``, and optionally the store's ``spec()`` (a remote
    blob store: the process opens its own client, see ``blob_files_from_spec``)."""
    path, mode, home, thumb_size, *rest = args
    spec = rest[0] if rest and rest[0] else None
    store = _store(spec) if spec else BlobFiles(Path(home), thumb_size=thumb_size)
    return probe_and_store(Path(path), mode=mode, store=store, known=_KNOWN)


# Per-process, like ``_KNOWN``: the stores this worker opened, by spec (a client is costly to make)
_STORES: dict[str, BlobFiles] = {}


def _store(spec: dict[str, Any]) -> BlobFiles:
    """One store per spec and process: a remote store's client (its connections) is reused."""
    key = repr(sorted(spec.items()))
    if key not in _STORES:
        _STORES[key] = blob_files_from_spec(spec)
    return _STORES[key]


def _blobs_present(store: BlobFiles, sha: str, mode: str) -> bool:
    if not store.exists("thumbnail", sha):
        return False
    return mode != "copy" or store.exists("original", sha, None)


def probe_and_store(path: Path, *, mode: str, store: BlobFiles, known: Container[str]) -> dict[str, Any]:
    """Probe one image and write its original (copy mode) and thumbnail.

    Returns ``{"status": "ok", "probe": {...}}`` for a new image, ``{"status": "known"}`` for one
    the project has (``"restored": True`` when its lost blobs were written again), or
    ``{"status": "error", "reason": ...}``. The file is read once; the same bytes feed the hash,
    EXIF, perceptual hash, thumbnail and the stored copy.
    """
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return {"status": "error", "reason": f"file too large ({size} bytes, limit {MAX_IMAGE_BYTES})"}
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if sha in known and _blobs_present(store, sha, mode):
            return {"status": "known", "sha256": sha}
        probe = probe_bytes(data, thumb_size=store.thumb_size, sha256=sha)
        ext = EXTENSIONS.get(probe.format, "bin")
        if mode == "copy":
            store.write_bytes("original", data, ext=ext, key=sha)
        store.write_bytes("thumbnail", probe.thumbnail, key=sha)
        if sha in known:
            return {"status": "known", "sha256": sha, "restored": True}
        fields = asdict(probe)
        fields.pop("thumbnail")
        fields["thumb_size"] = len(probe.thumbnail)
        fields["ext"] = ext
        return {"status": "ok", "probe": fields}
    except IngestError as exc:
        return {"status": "error", "reason": exc.reason}
    # "transient": the file may read fine next time (a drive unplugged mid-read, permissions
    # fixed, memory freed); a decode error (IngestError) is a fact about the bytes
    except OSError as exc:
        return {"status": "error", "reason": f"cannot read file: {exc.strerror or exc}", "transient": True}
    except MemoryError:
        return {"status": "error", "reason": "not enough memory to decode this image", "transient": True}
