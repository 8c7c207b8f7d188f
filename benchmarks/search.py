"""Vector search benchmark: vistudio's FaissVectorIndex against exact search in the same run.

For each size: build time, memory (RSS delta and peak during the build, index bytes), single-query
latency p50/p95 (one query at a time; FAISS on 1 thread, then on all threads) for a sweep of HNSW
``efSearch`` values, recall@10 against the exact answer, and the exact ``IndexFlatIP`` (the
baseline) on the same vectors with its own single-query latency and the speed-up ratio.

    .venv/bin/python benchmarks/search.py [--sizes 100000,1000000] [--dim 512] [--queries 1000]
        [--data clustered|random] [--ef 32,64,128,256] [--out FILE]

Data: ``clustered`` (default) puts vectors around 100 random directions, spread over a shared
``--latent``-dimensional subspace plus 5 % isotropic noise — image embeddings have a low intrinsic
dimension like this; ``random`` is isotropic Gaussian in all ``--dim`` dimensions, the worst case
of any graph index. Queries are fresh points from the same distribution. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vistudio.ml.embed import FaissVectorIndex


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def make_data(n: int, dim: int, *, kind: str, latent: int, seed: int) -> np.ndarray:
    """``n`` float32 vectors (n, dim), generated in chunks to bound the temporary memory."""
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(2024)  # the same centers and subspace for data and queries
    centers = shared.standard_normal((100, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    basis = (shared.standard_normal((latent, dim)) / np.sqrt(dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 50_000):
        m = min(50_000, n - lo)
        if kind == "random":
            out[lo : lo + m] = rng.standard_normal((m, dim), dtype=np.float32)
            continue
        x = centers[rng.integers(0, len(centers), m)]
        x += 0.5 * rng.standard_normal((m, latent), dtype=np.float32) @ basis
        x += 0.05 / np.sqrt(dim) * rng.standard_normal((m, dim), dtype=np.float32)
        out[lo : lo + m] = x
    return out


def latencies(search: Any, queries: np.ndarray) -> dict[str, float]:
    times = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        search(q)
        times[i] = time.perf_counter() - t
    ms = times * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "queries": len(queries),
    }


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return round(hits / (k * len(truth)), 4)


def run_size(n: int, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    k = args.k
    log(f"n={n}: generating {args.data} data, dim {args.dim}")
    x = make_data(n, args.dim, kind=args.data, latent=args.latent, seed=n)
    q = make_data(args.queries, args.dim, kind=args.data, latent=args.latent, seed=n + 1)
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # sample ids are not row numbers
    faiss.normalize_L2(x)
    faiss.normalize_L2(q)
    result: dict[str, Any] = {"n": n}

    faiss.omp_set_num_threads(threads)
    rss0 = rss_mib()
    t = time.perf_counter()
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    result["exact_build_s"] = round(time.perf_counter() - t, 3)
    result["exact_rss_delta_mib"] = round(rss_mib() - rss0, 1)
    t = time.perf_counter()
    _, truth_rows = exact.search(q, k)
    truth = ids[truth_rows]
    result["exact_batch_search_s"] = round(time.perf_counter() - t, 3)
    log(f"n={n}: ground truth for {len(q)} queries in {result['exact_batch_search_s']} s")

    index = FaissVectorIndex(
        args.dim, hnsw_threshold=args.hnsw_threshold, ef_construction=args.ef_construction, hnsw_m=args.m
    )
    reset_peak()
    rss0 = rss_mib()
    t = time.perf_counter()
    index.add(ids, x)
    build_s = time.perf_counter() - t
    result["vistudio"] = {
        "kind": index.kind,
        "build_s": round(build_s, 2),
        "rss_delta_mib": round(rss_mib() - rss0, 1),
        "peak_rss_during_build_mib": round(rss_mib("VmHWM") - rss0, 1),
        "index_mib": round(index.nbytes() / 2**20, 1),
        "M": args.m,
        "ef_construction": args.ef_construction,
    }
    log(f"n={n}: vistudio {index.kind} built in {build_s:.1f} s")

    # the baseline's latency: exact scan, one query at a time, 1 thread (fewer queries: it is slow)
    faiss.omp_set_num_threads(1)
    nb = min(len(q), args.baseline_queries)
    result["exact_latency_1_thread"] = latencies(lambda v: exact.search(v.reshape(1, -1), k), q[:nb])
    faiss.omp_set_num_threads(threads)
    result[f"exact_latency_{threads}_threads"] = latencies(
        lambda v: exact.search(v.reshape(1, -1), k), q[:nb]
    )
    log(f"n={n}: exact p50 {result['exact_latency_1_thread']['p50_ms']} ms (1 thread)")
    base_p50 = result["exact_latency_1_thread"]["p50_ms"]

    sweep = []
    for ef in args.ef:
        index.ef_search = ef
        row: dict[str, Any] = {"ef_search": ef}
        found = index.search(q, k)[1]
        row["recall_at_10"] = recall_at(found, truth)
        faiss.omp_set_num_threads(1)
        row["latency_1_thread"] = latencies(lambda v: index.search(v, k), q)
        faiss.omp_set_num_threads(threads)
        row[f"latency_{threads}_threads"] = latencies(lambda v: index.search(v, k), q)
        t = time.perf_counter()
        index.search(q, k)
        row[f"batch_qps_{threads}_threads"] = round(len(q) / (time.perf_counter() - t), 1)
        row["speedup_vs_exact_p50_1_thread"] = round(base_p50 / row["latency_1_thread"]["p50_ms"], 1)
        row["goal_met"] = row["recall_at_10"] >= 0.95 and row["latency_1_thread"]["p95_ms"] < 5.0
        sweep.append(row)
        log(
            f"n={n} ef={ef}: recall@10 {row['recall_at_10']}, p50/p95 "
            f"{row['latency_1_thread']['p50_ms']}/{row['latency_1_thread']['p95_ms']} ms (1 thread)"
        )
    result["sweep"] = sweep

    # filtered search: a project-like filter of 10 % of the ids (IDSelectorBatch path) and a
    # small one of 1,000 ids (exact scan of those vectors), at the smallest ef meeting recall
    good = [r["ef_search"] for r in sweep if r["recall_at_10"] >= 0.95]
    index.ef_search = good[0] if good else max(args.ef)
    rng = np.random.default_rng(0)
    filtered: dict[str, Any] = {"ef_search": index.ef_search}
    faiss.omp_set_num_threads(1)
    for name, m in (("10pct", n // 10), ("1000_ids", 1000)):
        rows = rng.choice(n, m, replace=False)
        allowed = ids[rows]
        nq = min(len(q), 200)
        lat = latencies(lambda v, a=allowed: index.search(v, k, allowed=a), q[:nq])
        sub_truth = ids[rows][np.argsort(-(q[:nq] @ x[rows].T), axis=1)[:, :k]]
        found = index.search(q[:nq], k, allowed=allowed)[1]
        filtered[name] = {"allowed": m, "recall_at_10": recall_at(found, sub_truth), "latency_1_thread": lat}
    result["filtered"] = filtered
    faiss.omp_set_num_threads(threads)
    return result


def machine() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), ""
        )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--baseline-queries", type=int, default=100, help="queries timed on the exact index")
    ap.add_argument("--data", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--latent", type=int, default=32, help="intrinsic dimension of the clustered data")
    ap.add_argument("--ef", default="32,64,128,256", help="efSearch values to sweep")
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--hnsw-threshold", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.ef = [int(v) for v in args.ef.split(",")]
    threads = os.cpu_count() or 1
    doc: dict[str, Any] = {
        "benchmark": "search",
        "machine": machine(),
        "params": {
            "dim": args.dim,
            "queries": args.queries,
            "data": args.data,
            "latent": args.latent if args.data == "clustered" else None,
            "k": args.k,
            "threads": threads,
        },
        "goal": "recall@10 >= 0.95 and single-query p95 < 5 ms (1 thread) at 1,000,000",
        "results": [],
    }
    for n in (int(s) for s in args.sizes.split(",")):
        doc["results"].append(run_size(n, args, threads))
        if args.out:  # keep what we have if a later size is interrupted
            args.out.write_text(json.dumps(doc, indent=2))
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
