"""Backup benchmark: a full ``vistudio backup`` of a workspace against a plain ``shutil.copytree`` of
the same workspace (the baseline, in the same run), then an incremental backup after 1 % new photos,
an unchanged re-backup, ``--verify`` and a restore.

The workspace holds ``--photos`` originals of ``--kb`` KB (random bytes: incompressible, like JPEGs)
with a 12 KB thumbnail each, registered in ``artifacts`` as an import registers them, so the backup
walks the real path: database snapshot (SQLite backup API), the snapshot's blob list, content-
addressed copies (hash while copying, fsync per object), the manifest. ``copytree`` neither hashes
nor syncs: the ratio is the price of a verifiable, crash-safe, incremental copy. Both read from the
page cache (the workspace was just written), so the numbers are copy speed, not disk reads.

    .venv/bin/python benchmarks/backup.py [--photos 1000] [--kb 300] [--out results.json]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vistudio.config import Settings
from vistudio.services.backup import create_backup, restore_backup, verify_backup
from vistudio.studio import Studio, open_studio

THUMB_BYTES = 12 * 1024


def add_photos(studio: Studio, n: int, *, kb: int, start: int) -> int:
    """``n`` originals (+ thumbnails) written and registered; returns the bytes written."""
    written = 0
    with studio.sessions.begin() as s:
        for i in range(start, start + n):
            data = os.urandom(kb * 1024 - 16) + i.to_bytes(16, "little")
            sha = studio.store.write_bytes("original", data, ext="jpg")
            thumb = os.urandom(THUMB_BYTES)
            studio.store.write_bytes("thumbnail", thumb, key=sha)
            studio.store.acquire(s, "original", sha, size=len(data), ext="jpg")
            studio.store.acquire(s, "thumbnail", sha, size=len(thumb))
            written += len(data) + len(thumb)
    return written


def mb_s(nbytes: int, seconds: float) -> float:
    return round(nbytes / 1e6 / max(seconds, 1e-9), 1)


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--kb", type=int, default=300, help="size of one original")
    ap.add_argument(
        "--new-percent", type=float, default=1.0, help="photos added before the incremental backup"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vistudio-bench-backup-") as tmp:
        root = Path(tmp)
        studio = open_studio(Settings(home=root / "ws"))
        size = add_photos(studio, args.photos, kb=args.kb, start=0)
        print(f"workspace: {args.photos} photos, {size / 1e6:.0f} MB", file=sys.stderr)

        copy_s, _ = timed(lambda: shutil.copytree(studio.home, root / "copy"))
        shutil.rmtree(root / "copy")
        print(f"copytree: {copy_s:.2f}s", file=sys.stderr)
        full_s, full = timed(lambda: create_backup(studio, root / "bk"))
        print(f"full backup: {full_s:.2f}s", file=sys.stderr)

        new = max(1, round(args.photos * args.new_percent / 100))
        add_photos(studio, new, kb=args.kb, start=args.photos)
        inc_s, inc = timed(lambda: create_backup(studio, root / "bk"))
        same_s, same = timed(lambda: create_backup(studio, root / "bk"))
        print(f"incremental: {inc_s:.2f}s, unchanged: {same_s:.2f}s", file=sys.stderr)
        verify_s, verified = timed(lambda: verify_backup(root / "bk"))
        restore_s, restored = timed(lambda: restore_backup(Settings(home=root / "restored"), root / "bk"))
        studio.close()
        assert inc["new_blobs"] == 2 * new and same["new_blobs"] == 0, (inc, same)
        assert restored["blobs"] == 2 * (args.photos + new)

        result = {
            "benchmark": "backup",
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "photos": args.photos,
            "files": full["blobs"],
            "bytes": full["bytes"],
            "baseline_copytree": {"seconds": round(copy_s, 3), "mb_s": mb_s(full["bytes"], copy_s)},
            "full_backup": {
                "seconds": round(full_s, 3),
                "mb_s": mb_s(full["bytes"], full_s),
                "new_blobs": full["new_blobs"],
            },
            "full_over_copytree_time": round(full_s / copy_s, 2),
            "incremental_backup": {
                "new_photos": new,
                "new_blobs": inc["new_blobs"],
                "new_bytes": inc["new_bytes"],
                "seconds": round(inc_s, 3),
            },
            "incremental_over_full_time": round(inc_s / full_s, 3),
            "unchanged_backup_seconds": round(same_s, 3),
            "verify": {"seconds": round(verify_s, 3), "mb_s": mb_s(verified["bytes_checked"], verify_s)},
            "restore": {"seconds": round(restore_s, 3), "mb_s": mb_s(restored["bytes"], restore_s)},
        }
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
