"""Browse benchmark: one page of samples from a 100,000-sample project, filtered and sorted.

vistudio answers each page with indexed SQL (filters as IN-subqueries, ORDER BY an indexed
column with id as tie-breaker, LIMIT/OFFSET). The baseline in the same run is the naive way:
load every sample with its labels, filter and sort in Python, slice the page.

    .venv/bin/python benchmarks/browse.py [--samples 100000] [--repeat 20]

Prints one JSON document: per query shape, p50/p95 milliseconds of both and the ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from vistudio.config import Settings
from vistudio.db import Annotation, LabelClass, Sample
from vistudio.services import projects, samples, splits
from vistudio.studio import Studio, open_studio


def build(studio: Studio, n: int) -> None:
    """Insert ``n`` samples with one of 20 labels each, straight into the database."""
    p = projects.create_project(studio, name="big", task="classification")
    rng = random.Random(0)
    start = datetime(2015, 1, 1)
    with studio.sessions.begin() as s:
        class_ids = []
        for i in range(20):
            row = LabelClass(project_id=p["id"], name=f"class-{i:02d}", ordinal=i)
            s.add(row)
            s.flush()
            class_ids.append(row.id)
        for lo in range(0, n, 20_000):
            s.execute(
                insert(Sample),
                [
                    {
                        "project_id": p["id"],
                        "sha256": f"{i:064x}",
                        "name": f"photos/{rng.randrange(10**6):06d}-{i}.jpg",
                        "storage": "reference",
                        "path": f"/photos/{i}.jpg",
                        "width": 4000,
                        "height": 3000,
                        "format": "JPEG",
                        "bytes": rng.randrange(10**5, 10**7),
                        "taken_at": start + timedelta(minutes=rng.randrange(5_000_000)),
                        "phash": f"{rng.getrandbits(64):016x}",
                        "exif": {},
                    }
                    for i in range(lo, min(n, lo + 20_000))
                ],
            )
        ids = list(s.scalars(select(Sample.id)))
        s.execute(
            insert(Annotation),
            [{"sample_id": i, "kind": "label", "class_id": class_ids[rng.randrange(20)]} for i in ids],
        )
    splits.create_split(studio, project="big", name="default")


def naive_page(
    studio: Studio, *, label: str | None, sort: str, reverse: bool, offset: int, limit: int
) -> list[int]:
    """The baseline: everything into Python, then filter, sort and slice."""
    with studio.sessions() as s:
        rows = s.execute(select(Sample.id, Sample.name, Sample.taken_at, Sample.bytes)).all()
        labels: dict[int, set[str]] = {}
        for sid, cname in s.execute(
            select(Annotation.sample_id, LabelClass.name).join(
                LabelClass, LabelClass.id == Annotation.class_id
            )
        ):
            labels.setdefault(sid, set()).add(cname)
    key = {"name": 1, "taken_at": 2, "bytes": 3}[sort]
    kept = [r for r in rows if label is None or label in labels.get(r[0], ())]
    kept.sort(key=lambda r: (r[key], r[0]), reverse=reverse)
    return [r[0] for r in kept[offset : offset + limit]]


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "p50_ms": sig(statistics.median(times)),
        "p95_ms": sig(times[int(0.95 * (len(times) - 1))]),
    }


def sig(x: float) -> float:
    """Three significant digits: a tiny time or ratio must not round to 0."""
    return float(f"{x:.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        studio = open_studio(Settings(home=Path(tmp)))
        t = time.perf_counter()
        build(studio, args.samples)
        print(f"built {args.samples} samples in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        shapes: dict[str, dict[str, Any]] = {
            "first page by name": {"sort": "name", "order": "asc", "offset": 0},
            "last page by name": {"sort": "name", "order": "asc", "offset": args.samples - 60},
            "newest first (taken_at desc)": {"sort": "taken_at", "order": "desc", "offset": 0},
            "one class, page 50": {"label": "class-07", "sort": "name", "order": "asc", "offset": 3000},
            "largest files": {"sort": "bytes", "order": "desc", "offset": 0},
        }
        results = {}
        for title, q in shapes.items():
            fast = timed(lambda q=q: samples.list_samples(studio, project="big", limit=60, **q), args.repeat)
            slow = timed(
                lambda q=q: naive_page(
                    studio,
                    label=q.get("label"),
                    sort=q["sort"],
                    reverse=q["order"] == "desc",
                    offset=q["offset"],
                    limit=60,
                ),
                max(3, args.repeat // 5),
            )
            results[title] = {
                "vistudio": fast,
                "baseline": slow,
                "ratio_p50": sig(slow["p50_ms"] / fast["p50_ms"]),
            }
            print(f"{title}: {fast['p50_ms']} ms vs {slow['p50_ms']} ms", file=sys.stderr)
        subset = timed(
            lambda: samples.list_samples(studio, project="big", subset="val", limit=60), args.repeat
        )
        studio.close()
    print(
        json.dumps(
            {
                "benchmark": "browse",
                "machine": platform.machine(),
                "python": platform.python_version(),
                "samples": args.samples,
                "page_size": 60,
                "queries": results,
                "split_subset_page": subset,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
