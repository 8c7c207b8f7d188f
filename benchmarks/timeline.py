"""Timeline benchmark: a library of N photos (default 1,000,000) inserted straight into a temporary
SQLite workspace, then

- the buckets (photos per year, month, day: range counts over the timeline index), against the
  baseline in the same run: one ``GROUP BY`` of the date's prefix;
- one page deep in the timeline (at 90 % of it) by keyset cursor, as the timeline reads it, against
  the baseline in the same run: the same page by ``ORDER BY … LIMIT … OFFSET`` (the database walks
  every photo before the page);
- reverse geocoding throughput of the batch path (``Gazetteer.lookup``: one k-d tree query per
  batch), and the gazetteer's load time.

    .venv/bin/python benchmarks/timeline.py [--n 1000000] [--repeat 5] [--points 200000]

Prints one JSON document (milliseconds: median of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from photo_rows import SQLITE_TIME, insert_photos, timed
from sqlalchemy import select

from vistudio.config import Settings
from vistudio.db import Sample
from vistudio.services import places, projects, timeline
from vistudio.studio import Studio, open_studio

PAGE = 100


def _rows(n: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(0)
    start = datetime(2000, 1, 1)
    span = 25 * 365 * 86400
    for _ in range(n):
        when = (start + timedelta(seconds=rng.randrange(span))).strftime(SQLITE_TIME)
        kind = rng.random()
        taken, file = (when, None) if kind < 0.85 else (None, when) if kind < 0.97 else (None, None)
        yield {"taken_at": taken, "file_time": file, "sort_time": taken or file}


def build(studio: Studio, db: Path, n: int) -> int:
    """Insert ``n`` photos with bulk INSERTs (85 % EXIF-dated, 12 % file-dated, 3 % undated)."""
    p = projects.create_project(studio, name="big", task="library")
    insert_photos(db, p["id"], _rows(n))
    return int(p["id"])


def deep_pages(studio: Studio, project_id: int, depth: int, repeat: int) -> dict[str, Any]:
    t = timeline.photo_time()
    order = (t.desc(), Sample.id.desc())
    dated = select(Sample.id, t.label("time")).where(Sample.project_id == project_id, t.is_not(None))

    def by_offset() -> list[int]:
        with studio.sessions() as s:
            return list(s.scalars(dated.order_by(*order).offset(depth).limit(PAGE)))

    with studio.sessions() as s:  # the cursor of the photo just before the page
        before_id, before_time = s.execute(dated.order_by(*order).offset(depth - 1).limit(1)).one()
    cursor = timeline.make_cursor(before_time, before_id)

    def by_keyset() -> list[int]:
        page = timeline.photos(studio, project="big", cursor=cursor, limit=PAGE)
        return [item["id"] for item in page["items"]]

    offset_ms, offset_ids = timed(by_offset, repeat)
    keyset_ms, keyset_ids = timed(by_keyset, repeat)
    assert offset_ids == keyset_ids, "keyset and OFFSET pages differ"
    return {
        "depth": depth,
        "page": PAGE,
        "keyset_ms": round(keyset_ms, 2),
        "offset_ms": round(offset_ms, 2),
        "offset_over_keyset": round(offset_ms / keyset_ms, 1),
    }


def geocoding(n_points: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    gaz = places.Gazetteer.from_package()
    load_s = time.perf_counter() - t0
    rng = random.Random(1)
    # positions within ~20 km of known places (as photos are), and a tenth anywhere (much of it sea)
    pts: list[tuple[float, float]] = []
    for _ in range(n_points):
        if rng.random() < 0.1:
            pts.append((rng.uniform(-60, 70), rng.uniform(-180, 180)))
        else:
            j = rng.randrange(len(gaz))
            pts.append(
                (float(gaz.lat[j]) + rng.uniform(-0.2, 0.2), float(gaz.lon[j]) + rng.uniform(-0.2, 0.2))
            )
    batch = 2000
    t0 = time.perf_counter()
    named = 0
    for lo in range(0, n_points, batch):
        named += sum(p is not None for p in gaz.lookup(pts[lo : lo + batch]))
    secs = time.perf_counter() - t0
    return {
        "gazetteer": gaz.name,
        "places": len(gaz),
        "load_s": round(load_s, 2),
        "points": n_points,
        "batch": batch,
        "points_per_s": round(n_points / secs),
        "named_share": round(named / n_points, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--points", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        studio = open_studio(Settings(home=home, offline=True))
        t0 = time.perf_counter()
        project_id = build(studio, home / "vistudio.db", args.n)
        build_s = time.perf_counter() - t0
        result: dict[str, Any] = {
            "benchmark": "timeline",
            "photos": args.n,
            "build_s": round(build_s, 1),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
            "buckets_ms": {},
        }
        conn = sqlite3.connect(home / "vistudio.db")
        for by, n in (("year", 4), ("month", 7), ("day", 10)):
            ms, out = timed(lambda by=by: timeline.buckets(studio, project="big", by=by), args.repeat)
            assert out["total"] == args.n
            # the baseline: one GROUP BY over the date's text prefix (SQLite reads every row)
            group_by = (
                f"SELECT substr(sort_time, 1, {n}) AS k, count(*) FROM samples "
                "WHERE project_id = ? GROUP BY k"
            )
            base_ms, rows = timed(lambda q=group_by: conn.execute(q, (project_id,)).fetchall(), args.repeat)
            assert {k: c for k, c in rows if k} == {g["key"]: g["count"] for g in out["groups"]}
            result["buckets_ms"][by] = {
                "range_counts_ms": round(ms, 1),
                "group_by_ms": round(base_ms, 1),
                "group_by_over_range_counts": round(base_ms / ms, 1),
                "groups": len(out["groups"]),
            }
        conn.close()
        first_ms, _ = timed(lambda: timeline.photos(studio, project="big", limit=PAGE), args.repeat)
        jump_ms, _ = timed(
            lambda: timeline.photos(studio, project="big", at="2012-06", limit=PAGE), args.repeat
        )
        result["first_page_ms"] = round(first_ms, 2)
        result["jump_page_ms"] = round(jump_ms, 2)
        result["deep_page"] = deep_pages(studio, project_id, int(args.n * 0.9), args.repeat)
        studio.close()
    result["geocoding"] = geocoding(args.points)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
