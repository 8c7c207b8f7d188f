"""Full-text search: build the text index for N synthetic samples, then time queries through it
(FTS5 + bm25, as the search service runs them) against a baseline in the same run: a LIKE
'%word%' scan over the same documents' text (what searching without an index costs).

    .venv/bin/python benchmarks/text_search.py [--n 100000] [--queries 50] [--out FILE]

Prints one JSON document: the build time (samples a second), and for each query kind (a rare
word, a common word, two words, a prefix, a word with a tag filter) the p50/p95 latency of both and
the ratio baseline / index.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from vistudio.config import Settings
from vistudio.db import Sample, SampleTag
from vistudio.db.text_index import TextDocument
from vistudio.query_syntax import parse
from vistudio.services import hybrid_search, projects, text_index
from vistudio.studio import open_studio

VOCAB = 5_000


def _word(i: int) -> str:
    syllables = ["ka", "lo", "mi", "ra", "tu", "sen", "vo", "pa", "ne", "ri", "zo", "ha"]
    out, n = "", i + 1
    while n:
        n, r = divmod(n, len(syllables))
        out += syllables[r]
    return out


def _zipf(rng: random.Random, n: int) -> int:
    """A word rank with a Zipf-like law: a few words everywhere, most rare."""
    return min(n - 1, int(rng.paretovariate(1.1)) - 1)


def _percentiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 3),
        "p95_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.95))] * 1000, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="synthetic samples (default 100,000)")
    ap.add_argument("--queries", type=int, default=50, help="queries of each kind (default 50)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    words = [_word(i) for i in range(VOCAB)]

    with tempfile.TemporaryDirectory(prefix="vistudio-bench-text-") as tmp:
        studio = open_studio(Settings(home=Path(tmp) / "ws", offline=True))
        project_id = projects.create_project(studio, name="bench", task="library")["id"]
        print(f"inserting {args.n:,} samples", file=sys.stderr)
        t0 = time.perf_counter()
        with studio.sessions.begin() as s:
            rows = [
                {
                    "project_id": project_id,
                    "sha256": f"{i:064x}",
                    "name": f"{words[_zipf(rng, VOCAB)]}/{words[_zipf(rng, VOCAB)]}_{i:06d}.jpg",
                    "storage": "copy",
                    "path": f"media/{i}.jpg",
                    "width": 1,
                    "height": 1,
                    "format": "jpeg",
                    "bytes": 1,
                    "camera_make": rng.choice(["FUJIFILM", "Canon", "Apple", None]),
                    "camera_model": rng.choice(["X100V", "EOS R5", "iPhone 13", None]),
                    "phash": "0" * 16,
                    "exif": {},
                }
                for i in range(args.n)
            ]
            s.execute(insert(Sample.__table__), rows)  # core, no RETURNING: seconds, not minutes
            ids = s.scalars(
                select(Sample.id).where(Sample.project_id == project_id).order_by(Sample.id)
            ).all()
            tags = {(sid, words[_zipf(rng, VOCAB)]) for sid in ids for _ in range(rng.randint(0, 3))}
            if tags:
                s.execute(insert(SampleTag.__table__), [{"sample_id": a, "tag": b} for a, b in sorted(tags)])
        insert_s = time.perf_counter() - t0

        print("building the text index", file=sys.stderr)
        with studio.sessions.begin() as s:  # as if the workspace came from before the index
            s.execute(text("DELETE FROM text_documents"))
        t0 = time.perf_counter()
        text_index.rebuild(studio, project=project_id)
        build_s = time.perf_counter() - t0
        with studio.sessions() as s:
            docs = s.scalar(select(func.count()).select_from(TextDocument)) or 0
            db_bytes = (studio.home / "vistudio.db").stat().st_size

        rare = [words[rng.randrange(30, 300)] for _ in range(args.queries)]
        common = [words[rng.randrange(0, 10)] for _ in range(args.queries)]
        pairs = [f"{words[rng.randrange(0, 50)]} {words[rng.randrange(0, 50)]}" for _ in range(args.queries)]
        prefixes = [words[rng.randrange(0, 200)][:3] + "*" for _ in range(args.queries)]
        tagged = [
            f"{words[rng.randrange(0, 50)]} tag:{words[rng.randrange(0, 20)]}" for _ in range(args.queries)
        ]
        kinds = {
            "rare word": rare,
            "common word": common,
            "two words": pairs,
            "prefix": prefixes,
            "word + tag filter": tagged,
        }
        concat = " || ' ' || ".join(f"d.{f}" for f in text_index.FIELDS)
        results: dict[str, Any] = {}
        for kind, queries in kinds.items():
            print(f"timing {kind}", file=sys.stderr)
            fts_t, like_t, fts_hits, like_hits = [], [], [], []
            for q in queries:
                parsed = parse(q)
                with studio.sessions() as s:
                    allowed = hybrid_search.allowed_select(s, project_id, parsed)
                    t0 = time.perf_counter()
                    hits = text_index.search(s, terms=parsed.terms, allowed=allowed, k=args.k)
                    fts_t.append(time.perf_counter() - t0)
                    fts_hits.append(len(hits))
                    # the baseline: every document's text scanned for each word (LIKE), the
                    # same filters, the first k matches by id (it has no relevance to sort by)
                    likes = " AND ".join(f"({concat}) LIKE :w{i}" for i in range(len(parsed.terms)))
                    params = {f"w{i}": f"%{t.text}%" for i, t in enumerate(parsed.terms)}
                    sql = text(
                        f"SELECT d.sample_id FROM text_documents d WHERE d.project_id = :p AND {likes} "
                        "AND d.sample_id IN (SELECT anon.id FROM ({allowed}) AS anon) ORDER BY d.sample_id"
                    )
                    compiled = allowed.compile(compile_kwargs={"literal_binds": True})
                    sql = text(sql.text.replace("{allowed}", str(compiled)))
                    t0 = time.perf_counter()
                    found = s.execute(sql, {"p": project_id, **params}).scalars().all()
                    like_t.append(time.perf_counter() - t0)
                    like_hits.append(len(found))
            fts, like = _percentiles(fts_t), _percentiles(like_t)
            results[kind] = {
                "fts5": fts,
                "like_scan": like,
                "ratio_p50": round(like["p50_ms"] / max(fts["p50_ms"], 1e-6), 1),
                "mean_matches_fts": round(statistics.mean(fts_hits), 1),
                "mean_matches_like": round(statistics.mean(like_hits), 1),
                "example": queries[0],
            }
        studio.close()

    out = {
        "benchmark": "text_search",
        "n": args.n,
        "queries_per_kind": args.queries,
        "k": args.k,
        "insert_s": round(insert_s, 2),
        "index_build_s": round(build_s, 2),
        "index_samples_per_s": round(args.n / build_s),
        "documents": docs,
        "db_bytes": db_bytes,
        "kinds": results,
        "note": "fts5 returns the k best by bm25 among all matches; like_scan returns every match "
        "(substring, no ranking) and is what a search without the index must read",
    }
    doc = json.dumps(out, indent=2)
    print(doc)
    if args.out:
        args.out.write_text(doc + "\n")


if __name__ == "__main__":
    main()
