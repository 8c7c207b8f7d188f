"""pgvector against FAISS in the same run: load time, recall@10 against exact search, and
single-query latency p50/p95, unfiltered and with a 10 % filter (for pgvector also the exact
scan of the filtered rows: the baseline of its filtered path).

FAISS is vistudio's FaissVectorIndex with its defaults (HNSW above 50,000 vectors, built in
the process); pgvector is PgVectorIndex on the PostgreSQL of the ``pgserver`` wheel (pgvector
0.6, HNSW m=16, ef_construction=64, ef_search=200), the vectors sent in one bulk add as an
embedding job's sync sends them: binary COPY of the rows, then the HNSW graph built once.

    .venv/bin/python benchmarks/pgvector.py [--n 100000] [--dim 512] [--queries 200] [--build-memory 1GB]
        [--exact-filter-max N] [--folder DIR]

Data: benchmarks/search.py's clustered vectors (``--latent`` 32 as there; 64 is harder for every
graph index). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).parent))
from search import make_data

from vistudio.ml.embed import FaissVectorIndex
from vistudio.ml.embed.pgvector_index import PgVectorIndex


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: list[set[int]]
) -> dict[str, float]:
    times, hits = [], 0
    for q, want in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        got = search(q)
        times.append((time.perf_counter() - t0) * 1000)
        hits += len(want & set(got.tolist()))
    times.sort()
    return {
        "recall_at_10": round(hits / (10 * len(queries)), 4),
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3),
    }


def exact(vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray, rows: np.ndarray | None) -> list[set[int]]:
    pool = vecs if rows is None else vecs[rows]
    pool_ids = ids if rows is None else ids[rows]
    out = []
    for q in queries:
        top = np.argpartition(-(pool @ q), 10)[:10]
        out.append(set(pool_ids[top].tolist()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--latent", type=int, default=32, help="intrinsic dimension of the clustered data")
    ap.add_argument("--build-memory", default="1GB", help="maintenance_work_mem of the HNSW build")
    ap.add_argument(
        "--exact-filter-max",
        type=int,
        default=None,
        help="the index's exact_filter_max (default its own, 20,000): lower it to take the graph "
        "path for the 10 %% filter on a small --n",
    )
    ap.add_argument(
        "--folder", type=Path, default=None, help="the PostgreSQL data folder (default: a temp one)"
    )
    args = ap.parse_args()
    import pgserver

    # the data of benchmarks/search.py and index_build.py (their --latent default and seeds)
    vecs = make_data(args.n, args.dim, kind="clustered", latent=args.latent, seed=args.n)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    queries = make_data(args.queries, args.dim, kind="clustered", latent=args.latent, seed=args.n + 1)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rng = np.random.default_rng(3)
    rows10 = np.flatnonzero(rng.random(args.n) < 0.10)
    allowed = ids[rows10]
    truth = exact(vecs, ids, queries, None)
    truth10 = exact(vecs, ids, queries, rows10)

    log(f"FAISS: {args.n} × {args.dim}")
    faiss_index = FaissVectorIndex(args.dim)
    t0 = time.perf_counter()
    faiss_index.add(ids, vecs)
    faiss_index.wait_build()
    faiss_load = time.perf_counter() - t0
    faiss_res = {
        "load_s": round(faiss_load, 2),
        "kind": faiss_index.kind,
        "unfiltered": measure(lambda q: faiss_index.search(q, 10)[1][0], queries, truth),
        "filter_10pct": measure(lambda q: faiss_index.search(q, 10, allowed=allowed)[1][0], queries, truth10),
    }

    with tempfile.TemporaryDirectory(prefix="vs-pgv-", dir="/tmp") as tmp:
        folder = args.folder or Path(tmp) / "pg"
        log(f"pgvector: starting PostgreSQL in {folder}")
        server = pgserver.get_server(folder, cleanup_mode="stop")
        engine = create_engine(server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1))
        index = PgVectorIndex(engine, name="bench", dim=args.dim)
        index.drop()
        index = PgVectorIndex(engine, name="bench", dim=args.dim, build_memory=args.build_memory)
        t0 = time.perf_counter()
        index.add(ids, vecs)  # one bulk add, as an embedding job's sync: rows first, graph once
        pg_load = time.perf_counter() - t0
        log(f"pgvector: {args.n} loaded and indexed in {pg_load:.0f} s")
        if args.exact_filter_max is not None:
            index.exact_filter_max = args.exact_filter_max
        pg_res = {
            "load_s": round(pg_load, 2),
            "exact_filter_max": index.exact_filter_max,
            "unfiltered": measure(lambda q: index.search(q, 10)[1][0], queries, truth),
            "filter_10pct": measure(lambda q: index.search(q, 10, allowed=allowed)[1][0], queries, truth10),
        }
        index.exact_filter_max = args.n  # the baseline of the filtered path: an exact scan of the rows
        pg_res["filter_10pct_exact_scan"] = measure(
            lambda q: index.search(q, 10, allowed=allowed)[1][0], queries, truth10
        )
        index.drop()
        engine.dispose()
        server.cleanup()

    print(
        json.dumps(
            {
                "benchmark": "pgvector",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "n": args.n,
                "latent": args.latent,
                "dim": args.dim,
                "queries": args.queries,
                "faiss": faiss_res,
                "pgvector": pg_res,
                "ratio_load_pg_over_faiss": round(pg_load / faiss_load, 2),
                "ratio_p50_pg_over_faiss": round(
                    pg_res["unfiltered"]["p50_ms"] / max(1e-9, faiss_res["unfiltered"]["p50_ms"]), 2
                ),
                "ratio_filtered_p50_pg_over_faiss": round(
                    pg_res["filter_10pct"]["p50_ms"] / max(1e-9, faiss_res["filter_10pct"]["p50_ms"]), 2
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
