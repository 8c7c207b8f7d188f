"""Index build benchmark: the HNSW parameters vistudio builds with now against the old ones, and the
filtered-search path against the old one, in the same run.

For each configuration (``--new``, default M 32 / efConstruction 32 / efSearch 512, and ``--old``,
M 32 / efConstruction 200 / efSearch 256): the build time of ``n`` vectors, recall@10 against the
exact answer and single-query latency p50/p95 (FAISS on 1 thread). The new configuration is built
the way the services build it — in the background (``FaissVectorIndex(background=True)``) — with
one probe search a second while it builds (they must return without waiting for the build, from
the exact flat state); the old one is built as before, in the ``add`` call.

Filtered search (on the new index, 1 thread): filters of ``--filters`` fractions of the ids (10 %:
HNSW with a bitmap selector; 2 % and 1 %: at 1 M an exact scan of the allowed vectors under the
2 % rule), through today's path and through a frozen copy of the old path (``np.unique`` of the
ids, IDSelectorBatch for sparse filters, HNSW above 5,000 allowed ids) on the same graph, with
recall among the allowed and the ratio of the p95s; then the 10 % filter at each ``--widening``
(``filter_widening`` w: efSearch × clip(sqrt(w · live / allowed), 1, 4); 0.1 is no widening for
a 10 % filter, 0.25 the default × 1.58).

    .venv/bin/python benchmarks/index_build.py [--n 100000] [--dim 512] [--queries 200]
        [--filters 0.1,0.02,0.01] [--widening 0.1,0.16,0.25] [--skip-old-build] [--out FILE]

``--n 1000000`` is the figure of issue 15 (the old build then takes ≈ 16 min on 2 cores;
``--skip-old-build`` leaves it out and keeps the filtered comparison). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from search import latencies, log, machine, make_data, recall_at

from vistudio.ml.embed import FaissVectorIndex
from vistudio.ml.embed.index import as_ids

_FAISS: Any = faiss


def config(text: str) -> dict[str, int]:
    m, efc, efs = (int(v) for v in text.split(","))
    return {"hnsw_m": m, "ef_construction": efc, "ef_search": efs}


def old_filtered_search(index: FaissVectorIndex, q: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """The filtered path before issue 15 (a frozen copy), on ``index``'s own graph: ids (q, k)."""
    allowed_ids = np.unique(as_ids(allowed))
    rows, ok = index._rows_of(allowed_ids)
    rows = rows[ok]
    if rows.size <= index.exact_filter_max:
        _, found = index._search_rows_exact(q, k, rows)
        return index._row_ids[found]
    kk = min(k, rows.size)
    ef = int(max(index.ef_search, kk) * np.clip(np.sqrt(0.25 * len(index) / rows.size), 1.0, 4.0))
    params = _FAISS.SearchParametersHNSW()
    params.efSearch = ef
    sel: Any
    if rows.size * 64 >= index.rows:
        member = np.zeros(index.rows, dtype=bool)
        member[rows] = True
        bitmap = np.packbits(member, bitorder="little")
        sel = faiss.IDSelectorBitmap(index.rows, faiss.swig_ptr(bitmap))
    else:
        sel = faiss.IDSelectorBatch(rows)
    params.sel = sel
    _, i = index._index.search(q, kk, params=params)
    return np.where(i >= 0, index._row_ids[np.maximum(i, 0)], -1)


def measure(
    index: FaissVectorIndex, q: np.ndarray, truth: np.ndarray, k: int, threads: int
) -> dict[str, Any]:
    found = index.search(q, k)[1]
    faiss.omp_set_num_threads(1)
    lat = latencies(lambda v: index.search(v, k), q)
    faiss.omp_set_num_threads(threads)
    return {"ef_search": index.ef_search, "recall_at_10": recall_at(found, truth), "latency_1_thread": lat}


def build_in_background(
    index: FaissVectorIndex, ids: np.ndarray, x: np.ndarray, q: np.ndarray, truth: np.ndarray, k: int
) -> dict[str, Any]:
    """Build through the background path, probing one search a second while it runs."""
    t = time.perf_counter()
    index.add(ids, x)
    add_s = time.perf_counter() - t
    probes: list[float] = []
    correct = 0
    while index.building:
        j = len(probes) % len(q)
        t1 = time.perf_counter()
        found = index.search(q[j], k)[1]
        probes.append((time.perf_counter() - t1) * 1000)
        correct += int(np.array_equal(np.sort(found[0]), np.sort(truth[j])))
        index.wait_build(1.0)
    index.wait_build()
    out: dict[str, Any] = {
        "build_s": round(time.perf_counter() - t, 2),
        "add_call_s": round(add_s, 3),
        "kind": index.kind,
        "build_error": index.build_error,
        "probes_during_build": len(probes),
        "probes_exact": correct,  # answered from the exact flat state, so equal to the truth
    }
    if probes:
        out["probe_p50_ms"] = round(float(np.percentile(probes, 50)), 2)
        out["probe_max_ms"] = round(max(probes), 2)
    return out


def filtered(
    index: FaissVectorIndex, x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, fraction: float
) -> dict[str, Any]:
    n = ids.size
    rng = np.random.default_rng(int(fraction * 1000))
    rows = rng.choice(n, max(1, int(n * fraction)), replace=False)
    allowed = ids[rows]
    truth = ids[rows][np.argsort(-(q @ x[rows].T), axis=1)[:, :k]]
    faiss.omp_set_num_threads(1)
    new_lat = latencies(lambda v: index.search(v, k, allowed=allowed), q)
    old_lat = latencies(lambda v: old_filtered_search(index, v.reshape(1, -1), k, allowed), q)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    new_found = index.search(q, k, allowed=allowed)[1]
    old_found = np.concatenate([old_filtered_search(index, v.reshape(1, -1), k, allowed) for v in q])
    exact_rule = rows.size <= max(index.exact_filter_max, index.exact_filter_fraction * n)
    return {
        "allowed": int(rows.size),
        "path": "exact scan" if exact_rule or index.kind == "exact" else "hnsw + bitmap",
        "vistudio": {"recall_at_10": recall_at(new_found, truth), "latency_1_thread": new_lat},
        "old_path": {"recall_at_10": recall_at(old_found, truth), "latency_1_thread": old_lat},
        "ratio_p95_old_over_new": round(old_lat["p95_ms"] / new_lat["p95_ms"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--latent", type=int, default=32, help="intrinsic dimension of the clustered data")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--new", type=config, default=config("32,32,512"), help="M,efConstruction,efSearch")
    ap.add_argument("--old", type=config, default=config("32,200,256"), help="M,efConstruction,efSearch")
    ap.add_argument("--hnsw-threshold", type=int, default=50_000)
    ap.add_argument("--filters", default="0.1,0.02,0.01", help="filter fractions of the ids")
    ap.add_argument("--widening", default="0.1,0.16,0.25", help="filter_widening values, 10 %% filter")
    ap.add_argument("--skip-old-build", action="store_true", help="leave out the old build (16 min at 1 M)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.filters = [float(v) for v in args.filters.split(",")]
    args.widening = [float(v) for v in args.widening.split(",")]
    threads = os.cpu_count() or 1
    n, k = args.n, args.k
    threshold = min(args.hnsw_threshold, n)

    log(f"n={n}: generating clustered data, dim {args.dim}")
    x = make_data(n, args.dim, kind="clustered", latent=args.latent, seed=n)
    q = make_data(args.queries, args.dim, kind="clustered", latent=args.latent, seed=n + 1)
    faiss.normalize_L2(x)
    faiss.normalize_L2(q)
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # sample ids are not row numbers
    faiss.omp_set_num_threads(threads)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(x)
    truth = ids[exact.search(q, k)[1]]
    del exact

    doc: dict[str, Any] = {
        "benchmark": "index_build",
        "machine": machine(),
        "params": {"n": n, "dim": args.dim, "queries": args.queries, "k": k, "threads": threads},
        "goal": "at 1,000,000: build <= 240 s, recall@10 >= 0.95, 10 % filter p95 <= 10 ms",
    }

    log(f"n={n}: new {args.new}, built in the background")
    new = FaissVectorIndex(args.dim, hnsw_threshold=threshold, background=True, **args.new)
    doc["new"] = {**args.new, **build_in_background(new, ids, x, q, truth, k)}
    doc["new"].update(measure(new, q, truth, k, threads))
    log(f"n={n}: new built in {doc['new']['build_s']} s, recall {doc['new']['recall_at_10']}")

    doc["filtered"] = {}
    for fraction in args.filters:
        name = f"{fraction:.0%}"
        doc["filtered"][name] = filtered(new, x, ids, q, k, fraction)
        log(f"n={n}: filtered {name}: {json.dumps(doc['filtered'][name])}")
    sweep = []
    rows = np.random.default_rng(7).choice(n, n // 10, replace=False)
    allowed, sub_truth = ids[rows], ids[rows][np.argsort(-(q @ x[rows].T), axis=1)[:, :k]]
    for w in args.widening:
        new.filter_widening = w
        found = new.search(q, k, allowed=allowed)[1]
        faiss.omp_set_num_threads(1)
        lat = latencies(lambda v: new.search(v, k, allowed=allowed), q)
        faiss.omp_set_num_threads(threads)
        ef = int(new.ef_search * np.clip(np.sqrt(w * n / rows.size), 1.0, 4.0))
        sweep.append(
            {"widening": w, "ef": ef, "recall_at_10": recall_at(found, sub_truth), "latency_1_thread": lat}
        )
        log(f"n={n}: 10 % filter, widening {w} (efSearch {ef}): {json.dumps(sweep[-1])}")
    new.filter_widening = 0.25
    doc["filtered_10pct_widening"] = sweep

    if args.skip_old_build:
        doc["old"] = {**args.old, "skipped": True}
    else:
        log(f"n={n}: old {args.old}, built in the add call")
        del new
        old = FaissVectorIndex(args.dim, hnsw_threshold=threshold, **args.old)
        t = time.perf_counter()
        old.add(ids, x)
        doc["old"] = {**args.old, "build_s": round(time.perf_counter() - t, 2), "kind": old.kind}
        doc["old"].update(measure(old, q, truth, k, threads))
        doc["ratio_build_old_over_new"] = round(doc["old"]["build_s"] / doc["new"]["build_s"], 2)
        log(f"n={n}: old built in {doc['old']['build_s']} s, recall {doc['old']['recall_at_10']}")

    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
