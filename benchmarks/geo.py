"""Map benchmark: a library of N photos with a GPS position (default 1,000,000; a few without),
inserted straight into a temporary SQLite workspace — most in crowds round a few hundred "cities",
the rest anywhere — then the clusters the Map tab asks for (services/geo.py: one ``GROUP BY`` of
the cells in SQL, over the index ``(project_id, gps_lat, gps_lon, id)``)

- at a world zoom (2, the whole world) and
- at a city zoom (12, a 1280 × 800 screen's area round the largest crowd),

each against the baseline in the same run: fetching every position inside the area and clustering
them in Python (a dict of cells, the same cells; the answers are checked equal). Also one page of
the photos of the city area (newest first) and the clusters once more without the index (dropped
at the end), for what the index brings.

    .venv/bin/python benchmarks/geo.py [--n 1000000] [--repeat 5]

Prints one JSON document (milliseconds: median of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import json
import math
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

from vistudio.config import Settings
from vistudio.services import geo, projects
from vistudio.services.geo import BBox
from vistudio.studio import Studio, open_studio

CITIES = 300
NO_GPS = 0.02  # a share of photos without a position


def _rows(n: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(0)
    cities = [(rng.uniform(-50, 65), rng.uniform(-180, 180)) for _ in range(CITIES)]
    weights = [1 / (i + 1) for i in range(CITIES)]  # a few big cities, many small ones (Zipf)
    start = datetime(2005, 1, 1)
    span = 20 * 365 * 86400
    picks = rng.choices(range(CITIES), weights=weights, k=n)
    for i in range(n):
        r = rng.random()
        if r < NO_GPS:
            lat = lon = None
        elif r < 0.8:
            clat, clon = cities[picks[i]]
            lat = max(-90.0, min(90.0, rng.gauss(clat, 0.05)))
            lon = (rng.gauss(clon, 0.07) + 180.0) % 360.0 - 180.0
        else:
            lat, lon = rng.uniform(-60, 75), rng.uniform(-180, 180)
        when = (start + timedelta(seconds=rng.randrange(span))).strftime(SQLITE_TIME)
        yield {"taken_at": when, "sort_time": when, "gps_lat": lat, "gps_lon": lon}


def build(studio: Studio, db: Path, n: int) -> tuple[int, tuple[float, float]]:
    """Insert ``n`` photos with bulk INSERTs; the project's id and the largest crowd's centre."""
    p = projects.create_project(studio, name="big", task="library")
    insert_photos(db, p["id"], _rows(n))
    rng = random.Random(0)
    return int(p["id"]), (rng.uniform(-50, 65), rng.uniform(-180, 180))  # the first city: the biggest


def python_clusters(
    conn: sqlite3.Connection, project_id: int, box: BBox, zoom: int
) -> dict[tuple[int, int], int]:
    """The baseline: every position inside the area fetched, then counted per cell in Python."""
    lon_sql = "gps_lon BETWEEN ? AND ?"
    lon_args: tuple[float, ...] = (box.west, box.east)
    if box.crosses_antimeridian:
        lon_sql = "(gps_lon BETWEEN ? AND 180 OR gps_lon BETWEEN -180 AND ?)"
    rows = conn.execute(
        f"SELECT gps_lat, gps_lon FROM samples WHERE project_id = ? AND gps_lat BETWEEN ? AND ? AND {lon_sql}",
        (project_id, box.south, box.north, *lon_args),
    )
    size = geo.cell_size(zoom)
    cells: dict[tuple[int, int], int] = {}
    for lat, lon in rows:
        key = (math.floor((lat + 90.0) / size), math.floor((lon + 180.0) / size))
        cells[key] = cells.get(key, 0) + 1
    return cells


def compare(
    studio: Studio, conn: sqlite3.Connection, project_id: int, box: BBox, zoom: int, repeat: int
) -> dict[str, Any]:
    sql_ms, answer = timed(lambda: geo.clusters(studio, project="big", bbox=box, zoom=zoom), repeat)
    py_ms, cells = timed(lambda: python_clusters(conn, project_id, box, zoom), repeat)
    assert sorted(c["count"] for c in answer["clusters"]) == sorted(cells.values()), "the clusters differ"
    return {
        "zoom": zoom,
        "bbox": box.as_list(),
        "photos": answer["photos"],
        "clusters": len(answer["clusters"]),
        "sql_ms": round(sql_ms, 1),
        "python_ms": round(py_ms, 1),
        "python_over_sql": round(py_ms / sql_ms, 1),
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
        project_id, (clat, clon) = build(studio, home / "vistudio.db", args.n)
        build_s = time.perf_counter() - t0
        # a 1280 × 800 screen at zoom 12: 1280 / (256 · 2^12) of 360° wide, about 0.44° × 0.28°
        w = 1280 / (256 * 2**12) * 360
        h = 800 / (256 * 2**12) * 360 * math.cos(math.radians(clat))
        city = BBox(clon - w / 2, clat - h / 2, clon + w / 2, clat + h / 2)
        conn = sqlite3.connect(home / "vistudio.db")
        result: dict[str, Any] = {
            "benchmark": "geo",
            "photos": args.n,
            "build_s": round(build_s, 1),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "machine": platform.machine(),
            "summary_ms": round(timed(lambda: geo.summary(studio, project="big"), args.repeat)[0], 1),
            "world": compare(studio, conn, project_id, BBox(*geo.WORLD), 2, args.repeat),
            "city": compare(studio, conn, project_id, city, 12, args.repeat),
        }
        page_ms, page = timed(lambda: geo.photos(studio, project="big", bbox=city, limit=60), args.repeat)
        result["city_photos_page"] = {"ms": round(page_ms, 1), "total": page["total"], "limit": 60}
        # what the index brings: the same clusters read from the table
        conn.execute("DROP INDEX ix_samples_project_gps")
        conn.commit()
        for name, box, zoom in (("world", BBox(*geo.WORLD), 2), ("city", city, 12)):
            ms, _ = timed(
                lambda box=box, zoom=zoom: geo.clusters(studio, project="big", bbox=box, zoom=zoom),
                args.repeat,
            )
            result[name]["without_index_ms"] = round(ms, 1)
        conn.close()
        studio.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
