"""Albums benchmark: a library of N photos (default 1,000,000) inserted straight into a temporary
SQLite workspace (dates over 25 years, cameras, 2 % tagged "trip"), then

- "On this day" (``services.albums.on_this_day``: the years by a skip scan of the timeline index,
  then one range read per earlier year), against the baseline in the same run: one scan of every
  photo comparing ``strftime('%m-%d', sort_time)``;
- a smart album's first page (its filters on the page's query, walking the (project, sort_time,
  id) index newest first and stopping once the page is full), against the baseline in the same
  run: the same photos sorted as the search's filters-only results are (every match sorted, then
  the page), for a common filter (``camera:fuji``, ~⅓ of the photos) and a rare one
  (``tag:trip``, 2 %).

    .venv/bin/python benchmarks/albums.py [--n 1000000] [--repeat 5]

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
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from photo_rows import SQLITE_TIME, insert_photos, timed
from sqlalchemy import select

from vistudio.config import Settings
from vistudio.db import Sample
from vistudio.query_syntax import parse
from vistudio.services import albums, projects
from vistudio.services.albums.read import _smart_page, _smart_select
from vistudio.studio import Studio, open_studio

PAGE = 100
DAY = date(2025, 6, 15)
CAMERAS = ("FUJIFILM", "Canon", "Apple")


def _rows(n: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(0)
    start = datetime(2000, 1, 1)
    span = 25 * 365 * 86400
    for i in range(n):
        when = (start + timedelta(seconds=rng.randrange(span))).strftime(SQLITE_TIME)
        undated = rng.random() < 0.03
        when_or_none = None if undated else when
        yield {"taken_at": when_or_none, "sort_time": when_or_none, "camera_make": CAMERAS[i % 3]}


def build(studio: Studio, db: Path, n: int) -> int:
    p = projects.create_project(studio, name="big", task="library")
    insert_photos(db, p["id"], _rows(n))
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO sample_tags (sample_id, tag) SELECT id, 'trip' FROM samples WHERE id % 50 = 7"
        )
        conn.execute("ANALYZE")
    return int(p["id"])


def on_this_day(studio: Studio, conn: sqlite3.Connection, project_id: int, repeat: int) -> dict[str, Any]:
    def ours() -> dict[str, Any]:
        return albums.on_this_day(studio, project="big", day=DAY, per_year=albums.MAX_PER_YEAR)

    scan = (
        "SELECT id, sort_time FROM samples WHERE project_id = ? AND sort_time < ? "
        "AND strftime('%m-%d', sort_time) = ? ORDER BY sort_time, id"
    )

    def baseline() -> list[tuple[int, str]]:
        return conn.execute(scan, (project_id, f"{DAY.year}-01-01", DAY.strftime("%m-%d"))).fetchall()

    ms, got = timed(ours, repeat)
    base_ms, rows = timed(baseline, repeat)
    assert got["total"] == len(rows), "on this day and the scan disagree"
    assert [p["id"] for y in reversed(got["years"]) for p in y["photos"]] == [r[0] for r in rows]
    return {
        "date": DAY.isoformat(),
        "years": len(got["years"]),
        "photos": got["total"],
        "range_reads_ms": round(ms, 2),
        "strftime_scan_ms": round(base_ms, 1),
        "scan_over_range_reads": round(base_ms / ms, 1),
    }


def smart_first_page(studio: Studio, project_id: int, query: str, repeat: int) -> dict[str, Any]:
    made = albums.create_album(studio, project="big", name=query, kind="smart", query=query)["album"]

    def ours() -> list[int]:  # the page alone
        with studio.sessions() as s:
            rows, _ = _smart_page(s, _smart_select(s, project_id, parse(query)), None, PAGE)
            return [r.id for r in rows]

    def whole() -> list[int]:  # the album's GET: the page, its count (every match) and its cover
        page = albums.get_album(studio, project="big", album=made["id"], limit=PAGE)
        return [i["id"] for i in page["items"]]

    def baseline() -> list[int]:  # every match sorted, then the page (the search's filters-only order)
        with studio.sessions() as s:
            allowed = _smart_select(s, project_id, parse(query))
            t = Sample.sort_time
            stmt = (
                select(Sample.id)
                .where(Sample.id.in_(allowed))
                .order_by(t.is_(None), t.desc(), Sample.id.desc())
                .limit(PAGE)
            )
            return list(s.scalars(stmt))

    ms, ids = timed(ours, repeat)
    get_ms, get_ids = timed(whole, repeat)
    base_ms, base_ids = timed(baseline, repeat)
    assert ids == base_ids == get_ids, "the album's page and the sorted matches differ"
    return {
        "query": query,
        "album_photos": made["photos"],
        "first_page_ms": round(ms, 2),
        "sort_all_ms": round(base_ms, 1),
        "sort_all_over_page": round(base_ms / ms, 1),
        "get_album_ms": round(get_ms, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "ws"
        studio = open_studio(Settings(home=home, offline=True))
        t0 = time.perf_counter()
        project_id = build(studio, home / "vistudio.db", args.n)
        result: dict[str, Any] = {
            "benchmark": "albums",
            "photos": args.n,
            "build_s": round(time.perf_counter() - t0, 1),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
        }
        conn = sqlite3.connect(home / "vistudio.db")
        result["on_this_day"] = on_this_day(studio, conn, project_id, args.repeat)
        conn.close()
        result["smart_album"] = [
            smart_first_page(studio, project_id, q, args.repeat) for q in ("camera:fuji", "tag:trip")
        ]
        studio.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
