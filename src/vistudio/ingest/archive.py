"""Extract uploaded zip files without letting them write outside their destination.

A zip is untrusted input: member names may be absolute, carry drive letters or ``..``,
members may be symlinks, and the declared sizes may hide a decompression bomb. Bad members
are skipped and reported; a zip that is not a zip, is corrupt or looks like a bomb is refused.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path

from vistudio.ingest.types import ItemError, SourceError

# Deflate cannot exceed ~1032:1; real images and label files stay far below 100:1, so a
# large member above this ratio is a bomb, not data.
DEFAULT_MAX_RATIO = 100
# Members smaller than this cannot hurt whatever their ratio (a 1 KB file of spaces is fine).
_RATIO_MIN_BYTES = 1 << 20
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def extract_zip(
    zip_path: Path,
    dest: Path,
    *,
    max_total_bytes: int = 20 * 2**30,
    max_members: int = 1_000_000,
    max_ratio: int = DEFAULT_MAX_RATIO,
) -> list[ItemError]:
    """Extract ``zip_path`` into ``dest`` (created if needed); return the skipped members.

    Skipped with an ``ItemError``: absolute names, drive letters, ``..`` components, symlink
    entries, names listed twice. Skipped silently: ``__MACOSX/`` and hidden entries.
    Raises ``SourceError`` when the file is not a zip or is corrupt, has more than
    ``max_members`` entries, declares more than ``max_total_bytes`` uncompressed, has a member
    whose compression ratio exceeds ``max_ratio``, or inflates past its declared sizes.
    Each file is written to a temporary name in its folder and renamed into place.
    """
    if not zip_path.is_file():
        raise SourceError(f"zip file not found: {zip_path}")
    try:
        if not zipfile.is_zipfile(zip_path):
            raise SourceError(f"not a zip file: {zip_path.name}")
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise SourceError(f"corrupt zip file {zip_path.name}: {exc}") from exc
    with archive:
        members = archive.infolist()
        _check_bomb(members, max_total_bytes=max_total_bytes, max_members=max_members, max_ratio=max_ratio)
        dest.mkdir(parents=True, exist_ok=True)
        real_dest = dest.resolve()
        errors: list[ItemError] = []
        seen: set[tuple[str, ...]] = set()
        written = 0
        for info in members:
            parts, reason = _member_parts(info)
            if parts is None:
                if reason:
                    errors.append(ItemError(info.filename, reason))
                continue
            if info.is_dir():
                try:
                    _make_dirs(real_dest, parts)
                except OSError as exc:
                    errors.append(ItemError(info.filename, f"cannot create folder: {exc}"))
                continue
            if parts in seen:
                errors.append(ItemError(info.filename, "listed twice in the zip"))
                continue
            seen.add(parts)
            try:
                written += _extract_member(archive, info, real_dest, parts, budget=max_total_bytes - written)
            except _ItemSkip as exc:
                errors.append(ItemError(info.filename, str(exc)))
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                EOFError,
                ValueError,
                NotImplementedError,
            ) as exc:
                # NotImplementedError: unsupported compression; ValueError: encrypted member.
                raise SourceError(f"corrupt zip file {zip_path.name}: {info.filename}: {exc}") from exc
            except OSError as exc:
                errors.append(ItemError(info.filename, f"cannot write: {exc.strerror or exc}"))
        return errors


class _ItemSkip(Exception):
    pass


def _check_bomb(
    members: list[zipfile.ZipInfo], *, max_total_bytes: int, max_members: int, max_ratio: int
) -> None:
    if len(members) > max_members:
        raise SourceError(f"zip has {len(members)} entries, more than the limit of {max_members}")
    total = sum(m.file_size for m in members)
    if total > max_total_bytes:
        raise SourceError(
            f"zip declares {total} uncompressed bytes, more than the limit of {max_total_bytes}"
        )
    # Many members just under _RATIO_MIN_BYTES escape the per-member test below; the zip as a
    # whole must not expand past the ratio either.
    packed = sum(m.compress_size for m in members)
    if total >= _RATIO_MIN_BYTES and total > max_ratio * max(packed, 1):
        raise SourceError(
            f"zip expands {total / max(packed, 1):.0f}:1 in all (limit {max_ratio}:1): possible zip bomb"
        )
    for m in members:
        if m.file_size >= _RATIO_MIN_BYTES and m.file_size > max_ratio * max(m.compress_size, 1):
            ratio = m.file_size / max(m.compress_size, 1)
            raise SourceError(
                f"zip member {m.filename!r} expands {ratio:.0f}:1 (limit {max_ratio}:1): possible zip bomb"
            )


def _member_parts(info: zipfile.ZipInfo) -> tuple[tuple[str, ...] | None, str | None]:
    """Safe path components of a member, or ``(None, reason)``; reason None means skip silently."""
    name = info.filename
    if "\x00" in name:
        return None, "entry name contains a NUL byte"
    text = name.replace("\\", "/")
    if text.startswith("/"):
        return None, "absolute path not allowed"
    if _DRIVE.match(text):
        return None, "drive letter not allowed"
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None, "path escapes the destination ('..')"
    if not parts:
        return None, None
    if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None, None
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return None, "symlink entries are not allowed"
    return parts, None


def _make_dirs(real_dest: Path, parts: tuple[str, ...]) -> Path:
    """Create ``dest/parts`` and prove it lies inside ``dest`` even if something there is a link."""
    folder = real_dest.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    real = folder.resolve()
    if real != real_dest and not real.is_relative_to(real_dest):
        raise _ItemSkip("folder resolves outside the destination")
    return real


def _extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, real_dest: Path, parts: tuple[str, ...], *, budget: int
) -> int:
    folder = _make_dirs(real_dest, parts[:-1]) if len(parts) > 1 else real_dest
    target = folder / parts[-1]
    if target.is_symlink() or target.is_dir():
        raise _ItemSkip("a folder or link of that name already exists")
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as src:
            while True:
                # Count what actually inflates: the declared size in the header may lie.
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                count += len(chunk)
                if count > info.file_size or count > budget:
                    raise SourceError(
                        f"zip member {info.filename!r} inflates past its declared size: possible zip bomb"
                    )
                out.write(chunk)
        # No fsync: this is a scratch copy that the zip can recreate; the rename alone keeps a
        # crash from leaving a partial file under the final name.
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return count
