"""The backup folder on disk: content-addressed objects shared by every snapshot, one manifest per
snapshot, and the checks a manifest must pass before anything trusts it.

```
DEST/
  vistudio-backup.json       marker: {"format": "vistudio-backup", "version": 1}
  objects/ab/<sha256>        every backed-up file's bytes (the database dump included), once
  snapshots/<stamp>.json     one complete snapshot: its manifest, written atomically, last
  .lock                      held (flock) by the one backup writing here
```

A snapshot exists only once its manifest is renamed into ``snapshots/``: objects are written
(temp file, fsync, rename) before it, and are never modified or deleted by a backup, so a killed
backup leaves the earlier snapshots whole and at most some unreferenced objects (used by the next
backup) and ``.tmp-`` files (removed by the next backup).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vistudio.errors import BadRequest, Conflict, NotFound, VistudioError
from vistudio.storage.atomic import TMP_PREFIX, atomic_writer
from vistudio.storage.blobs import CHUNK, SHA_RE

FORMAT = "vistudio-backup"
VERSION = 1
MARKER = "vistudio-backup.json"
LOCK = ".lock"
SNAPSHOT_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
# workspace entries never backed up: the live database (dumped instead), scratch, logs
EXCLUDED_TOP = frozenset({"tmp", "logs"})
DB_FILE_RE = re.compile(r"^vistudio\.db(-wal|-shm|-journal)?$")


class BackupInvalid(VistudioError):
    """A backup that does not match its manifests (or whose manifest cannot be trusted)."""

    code = "backup_invalid"
    status = 422


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Objects:
    """``DEST/objects``: content-addressed, write-once files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # folders that gained an entry: synced by ``sync`` before the manifest names the objects
        # (a rename is durable only once its folder is; one fsync per folder, not per object)
        self._touched: set[Path] = set()
        self._touched_lock = threading.Lock()

    def sync(self) -> None:
        """Make every object renamed in so far survive a power cut (their folders' entries)."""
        with self._touched_lock:
            folders, self._touched = self._touched, set()
        for folder in sorted(folders):
            fsync_dir(folder)
        if folders:
            fsync_dir(self.root)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def has(self, sha: str, size: int) -> bool:
        """Present with the expected size (the full hash is checked by ``--verify``)."""
        try:  # a string path: this runs once per file of every backup
            return os.stat(f"{self.root}/{sha[:2]}/{sha}").st_size == size
        except FileNotFoundError:
            return False

    def put(self, src: Path, *, expected_sha: str | None = None) -> tuple[str, int, bool]:
        """Copy ``src`` in, hashing while copying. Returns (sha256, size, copied): ``copied`` is
        False when an object with those bytes was there already. Raises ``BlobMismatch`` when
        ``expected_sha`` is given and the bytes are not that."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.root)
        try:
            h = hashlib.sha256()
            size = 0
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            sha = h.hexdigest()
            if expected_sha is not None and sha != expected_sha:
                raise BlobMismatch(f"{src}: its bytes hash to {sha}, not {expected_sha}")
            final = self.path(sha)
            if self.has(sha, size):
                os.unlink(tmp)
                return sha, size, False
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            with self._touched_lock:
                self._touched.add(final.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, size, True

    def adopt(self, tmp: Path) -> tuple[str, int]:
        """Make an object of a finished temp file in ``self.root`` (hashed, synced, renamed)."""
        sha = file_sha(tmp)
        size = tmp.stat().st_size
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if self.has(sha, size):
            tmp.unlink()
        else:
            self.path(sha).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, self.path(sha))
            with self._touched_lock:
                self._touched.add(self.path(sha).parent)
        return sha, size

    def temp(self, suffix: str = "") -> Path:
        """A fresh temp file name in ``self.root`` (removed by the next backup if left behind)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=self.root)
        os.close(fd)
        return Path(tmp)

    def remove_temps(self) -> int:
        """Temp files a killed backup left (only while holding the lock: no writer is running)."""
        if not self.root.is_dir():
            return 0
        stale = [*self.root.glob(f"{TMP_PREFIX}*"), *self.root.glob(f"*/{TMP_PREFIX}*")]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)


class BlobMismatch(Exception):
    pass


def check_dest(dest: Path, *, create: bool) -> Path:
    """``dest`` as a backup folder: a new or empty folder (when ``create``), or a vistudio backup."""
    if dest.exists() and not dest.is_dir():
        raise BadRequest(f"backup destination is not a folder: {dest}")
    if not dest.exists():
        if not create:
            raise NotFound(f"no backup at {dest}")
        dest.mkdir(parents=True)
    marker = dest / MARKER
    if marker.is_file():
        try:
            head = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackupInvalid(f"{marker} is not a vistudio backup marker: {exc}") from exc
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise BackupInvalid(f"{marker} is not a vistudio backup marker")
        if head.get("version") != VERSION:
            raise BackupInvalid(
                f"{dest} is a version {head.get('version')} backup; this vistudio reads version {VERSION}"
            )
        return dest
    if not create:
        raise NotFound(f"{dest} is not a vistudio backup (no {MARKER})")
    if any(dest.iterdir()):
        raise BadRequest(
            f"{dest} holds other files: back up into an empty folder or an existing vistudio backup"
        )
    with atomic_writer(marker) as fh:
        fh.write(json.dumps({"format": FORMAT, "version": VERSION}).encode())
    return dest


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    """One writer per backup folder (a second backup at once is a conflict, not a wait)."""
    fd = os.open(dest / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict(f"another backup is writing to {dest}") from exc
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def checksum(body: dict[str, Any]) -> str:
    """The manifest's own checksum: sha256 of its canonical JSON without the checksum field."""
    return hashlib.sha256(_canonical({k: v for k, v in body.items() if k != "checksum"}).encode()).hexdigest()


def write_manifest(dest: Path, name: str, body: dict[str, Any]) -> Path:
    """Publish a snapshot: the manifest is renamed into place last, then the folder is synced."""
    rest = _canonical({k: v for k, v in body.items() if k != "checksum"})
    digest = hashlib.sha256(rest.encode()).hexdigest()
    if body and min(body) > "checksum":
        # the canonical JSON with the checksum, which sorts first: one dump of a long file list, not two
        text = f'{{"checksum":"{digest}",' + rest[1:]
    else:
        text = _canonical({**body, "checksum": digest})
    folder = dest / "snapshots"
    path = folder / f"{name}.json"
    with atomic_writer(path) as fh:
        fh.write(text.encode())
    fsync_dir(folder)
    return path


def snapshot_names(dest: Path) -> list[str]:
    """Complete snapshots, oldest first (a name is a UTC time stamp)."""
    folder = dest / "snapshots"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if SNAPSHOT_RE.match(p.stem))


def safe_relpath(value: Any) -> str:
    """A manifest path: relative, posix, inside the workspace, not the database nor scratch."""
    if not isinstance(value, str) or not value or "\\" in value or "\x00" in value:
        raise ValueError(f"not a relative path: {str(value)[:200]!r}")
    parts = value.split("/")
    if value.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"path leaves the workspace: {value[:200]!r}")
    if parts[0] in EXCLUDED_TOP or DB_FILE_RE.match(parts[0]) or parts[-1].startswith(TMP_PREFIX):
        raise ValueError(f"path is not something a backup holds: {value[:200]!r}")
    return value


def _entry(raw: Any, *, with_path: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError("an entry is not an object")
    sha, size = raw.get("sha256"), raw.get("size")
    if not isinstance(sha, str) or not SHA_RE.match(sha):
        raise ValueError(f"not a sha256: {str(sha)[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"not a size: {str(size)[:80]!r}")
    out = {**raw, "sha256": sha, "size": size}
    if with_path:
        out["path"] = safe_relpath(raw.get("path"))
    return out


def read_manifest(dest: Path, name: str) -> dict[str, Any]:
    """A snapshot's manifest, checked (format, checksum, every path and hash) before use."""
    if not SNAPSHOT_RE.match(name):
        raise NotFound(f"no snapshot {name[:80]!r} in {dest}")
    path = dest / "snapshots" / f"{name}.json"
    if not path.is_file():
        raise NotFound(f"no snapshot {name!r} in {dest}")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackupInvalid(f"snapshot {name}: the manifest is not readable JSON ({exc})") from exc
    try:
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError("not a vistudio backup manifest")
        if body.get("version") != VERSION:
            raise ValueError(f"manifest version {body.get('version')!r}, this vistudio reads {VERSION}")
        if body.get("checksum") != checksum(body):
            raise ValueError("its checksum does not match its content (edited or damaged)")
        db = body.get("database")
        if not isinstance(db, dict) or db.get("dialect") not in ("sqlite", "postgresql"):
            raise ValueError("no database entry")
        body["database"] = _entry(db, with_path=False)
        files = body.get("files")
        if not isinstance(files, list):
            raise ValueError("no file list")
        body["files"] = [_entry(f, with_path=True) for f in files]
        seen = [f["path"] for f in body["files"]]
        if len(set(seen)) != len(seen):
            raise ValueError("a path is listed twice")
    except ValueError as exc:
        raise BackupInvalid(f"snapshot {name}: invalid manifest: {exc}", details={"snapshot": name}) from exc
    return dict(body)
