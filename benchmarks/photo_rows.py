"""What the library benchmarks (albums, geo, timeline) share: a large photo library inserted
straight into a workspace's SQLite file with bulk INSERTs, and the median of repeated timings."""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import Any

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite datetime text


def insert_photos(db: Path, project_id: int, extras: Iterable[dict[str, Any]]) -> None:
    """One photo per dict of ``extras`` (the columns a benchmark varies: dates, camera, position…;
    every dict has the same keys), the other columns alike (a 12 MP JPEG in the user's folder),
    then ``ANALYZE``."""
    it = iter(extras)
    first = next(it, None)
    if first is None:
        return
    keys = list(first)
    columns = ["project_id", "sha256", "name", "storage", "path", "width", "height", "format", "bytes"]
    columns += [*keys, "phash", "exif", "imported_at"]

    def same(i: int) -> tuple[Any, ...]:
        return (
            project_id,
            f"{i:064x}",
            f"photos/{i}.jpg",
            "reference",
            f"/photos/{i}.jpg",
            4000,
            3000,
            "JPEG",
            3_000_000,
        )

    rows = (
        (*same(i), *(e[k] for k in keys), "0" * 16, "{}", "2025-01-01 00:00:00.000000")
        for i, e in enumerate(chain([first], it))
    )
    sql = f"INSERT INTO samples ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    with sqlite3.connect(db) as conn:
        conn.executemany(sql, rows)
        conn.execute("ANALYZE")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median of ``repeat`` runs of ``fn`` in milliseconds, and its last answer."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out
