"""Where an export's files go: a hidden partial folder or zip beside the destination, published by
one rename at the end, so that a crash never leaves a half-written export under the real name.

Images are copied with their sha256 checked on the way (a reference-mode original edited since its
import is not the sample any more), or hard-linked when asked and possible. Paths come from the
writers' plan: relative, without ``..`` — and a destination file is always created new (``x``
mode), never written through an existing file or link.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
# Images up to this size are read whole into memory for a zip (hashed before they go in: a zip
# member cannot be taken back); larger ones are hashed in a first pass, then streamed.
IN_MEMORY = 64 * 2**20
PARTIAL = ".partial-"


class ItemFailed(Exception):
    """One image cannot be exported (missing, unreadable, changed since its import)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def partial_path(dest: Path, tag: str) -> Path:
    """The hidden sibling an export writes into before it is published as ``dest``."""
    return dest.parent / f".{dest.name}{PARTIAL}{tag}"


def discard(path: Path) -> None:
    """Remove a partial export (a folder or a file) if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _check_sha(digest: str, expected: str) -> None:
    if digest != expected:
        raise ItemFailed("the file changed since it was imported (its sha256 differs from the sample's)")


def _sha_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _open_source(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ItemFailed(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ItemFailed(f"not a file: {path}") from None
    except OSError as exc:
        raise ItemFailed(f"cannot read {path}: {exc.strerror or exc}") from None


class Sink:
    """Receives images and files under relative paths; ``publish`` makes them the export."""

    linked = 0
    copied = 0

    def add_image(self, rel: str, source: Path, *, sha256: str, trusted: bool) -> None:
        raise NotImplementedError

    def add_bytes(self, rel: str, data: bytes) -> None:
        raise NotImplementedError

    def publish(self, dest: Path) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        raise NotImplementedError


class FolderSink(Sink):
    """Files in a partial folder, renamed to the destination folder at the end.

    ``link``: hard-link images (same file system only; otherwise, or when the system refuses,
    copy). ``trusted`` sources (content-addressed workspace copies, checked at import) are linked
    without reading them; others are hashed."""

    def __init__(self, root: Path, *, link: bool) -> None:
        self.root = root
        self.link = link
        root.mkdir(parents=True)

    def _target(self, rel: str) -> Path:
        target = self.root.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add_image(self, rel: str, source: Path, *, sha256: str, trusted: bool) -> None:
        target = self._target(rel)
        if self.link:
            try:
                os.link(source, target)
            except FileNotFoundError:
                raise ItemFailed(f"file not found: {source}") from None
            except OSError:
                pass  # another file system, or links refused: copy instead
            else:
                if not trusted:
                    try:
                        _check_sha(_sha_of(target), sha256)
                    except ItemFailed:
                        target.unlink()
                        raise
                self.linked += 1
                return
        h = hashlib.sha256()
        with _open_source(source) as src:
            try:
                with target.open("xb") as out:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                _check_sha(h.hexdigest(), sha256)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        with contextlib.suppress(OSError):
            shutil.copystat(source, target)  # the original's dates, as a file copy keeps them
        self.copied += 1

    def add_bytes(self, rel: str, data: bytes) -> None:
        with self._target(rel).open("xb") as out:
            out.write(data)

    def publish(self, dest: Path) -> None:
        # an empty folder at dest is replaced by the rename (POSIX); a non-empty one refuses it
        os.rename(self.root, dest)
        _sync_dir(dest.parent)

    def abandon(self) -> None:
        discard(self.root)


class ZipSink(Sink):
    """Members of a zip under one top folder (``<name>/…``, so that unzipping makes one folder and
    an import finds its root), written to a partial file, renamed at the end."""

    def __init__(self, path: Path, *, top: str) -> None:
        self.path = path
        self.top = top
        self.zip = zipfile.ZipFile(path, "x", allowZip64=True)
        self.stamp = time.localtime()[:6]

    def _info(self, rel: str, compress: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{self.top}/{rel}", date_time=self.stamp)
        info.compress_type = compress
        info.external_attr = 0o644 << 16
        return info

    def add_image(self, rel: str, source: Path, *, sha256: str, trusted: bool) -> None:
        with _open_source(source) as src:
            size = os.fstat(src.fileno()).st_size
            info = self._info(rel, zipfile.ZIP_STORED)  # images are compressed already
            if size <= IN_MEMORY:
                data = src.read()
                _check_sha(hashlib.sha256(data).hexdigest(), sha256)
                self.zip.writestr(info, data)
            else:
                _check_sha(_sha_of(source), sha256)
                with self.zip.open(info, "w", force_zip64=True) as out:
                    shutil.copyfileobj(src, out, CHUNK)
        self.copied += 1

    def add_bytes(self, rel: str, data: bytes) -> None:
        self.zip.writestr(self._info(rel, zipfile.ZIP_DEFLATED), data)

    def publish(self, dest: Path) -> None:
        self.zip.close()
        with self.path.open("rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(self.path, dest)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise
        except OSError:
            os.rename(self.path, dest)  # a file system without hard links
        else:
            self.path.unlink()
        _sync_dir(dest.parent)

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self.zip.close()
        discard(self.path)


def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
