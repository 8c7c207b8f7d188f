"""Semantic near duplicates (no database): pairs of embeddings whose cosine similarity reaches a
threshold, grouped around a keeper (``near_dups.centre_groups``: every member reaches the
threshold with the keeper, no chaining).

Vectors are L2-normalised, so cosine similarity is the inner product. Up to ``exact_below``
vectors a FAISS flat range search compares every pair (blocked, so memory stays bounded); above,
an inverted file (IVF, k-means cells trained with a fixed seed) compares each vector with the
cells nearest to it only. Pairs at a high threshold (0.95) are very close, so they almost
always share a cell: the approximate path loses little and costs O(n·√n) instead of O(n²).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from vistudio.ingest.near_dups import Rank, centre_groups, priority_order

_FAISS: Any = faiss
EXACT_BELOW = 20_000
_QUERY_BLOCK = 2048
_EPS = 1e-6

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def _unit(vectors: npt.ArrayLike) -> F32:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError("vectors must be an n×d array")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or infinite values")
    x = x.copy()
    _FAISS.normalize_L2(x)
    return x


def similar_pairs(
    vectors: npt.ArrayLike,
    *,
    threshold: float,
    exact_below: int = EXACT_BELOW,
    nprobe: int = 8,
) -> tuple[I64, I64, npt.NDArray[np.float32]]:
    """Pairs ``(i, j, similarity)``, ``i < j``, with cosine similarity >= ``threshold``.

    ``vectors`` is n×d (normalised again here: a stray norm must not change the answer).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    x = _unit(vectors)
    n, dim = x.shape
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    index: Any
    if n < exact_below:
        index = _FAISS.IndexFlatIP(dim)
    else:
        # √n-ish cells: training k-means costs cells² · 40 · d, searching n · (nprobe / cells) · n · d
        cells = int(min(max(8, 2 * np.sqrt(n)), n // 40))
        quantizer = _FAISS.IndexFlatIP(dim)
        index = _FAISS.IndexIVFFlat(quantizer, dim, cells, _FAISS.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = x[rng.choice(n, size=min(n, cells * 40), replace=False)]
        index.train(train)
        index.nprobe = min(nprobe, cells)
    index.add(x)
    out_i: list[I64] = []
    out_j: list[I64] = []
    out_s: list[npt.NDArray[np.float32]] = []
    for lo in range(0, n, _QUERY_BLOCK):
        block = x[lo : lo + _QUERY_BLOCK]
        lims, sims, ids = index.range_search(block, float(threshold) - _EPS)
        owner = np.repeat(np.arange(lo, lo + len(block)), np.diff(lims.astype(np.int64)))
        ids = ids.astype(np.int64)
        keep = (ids > owner) & (sims >= threshold - _EPS)
        out_i.append(owner[keep])
        out_j.append(ids[keep])
        out_s.append(np.minimum(sims[keep], 1.0).astype(np.float32))
    i, j, s = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    return i, j, s


def similarity_groups(
    vectors: npt.ArrayLike, *, threshold: float, exact_below: int = EXACT_BELOW, rank: Rank | None = None
) -> list[I64]:
    """Groups (size >= 2) of vectors whose cosine similarity with the group's keeper is >=
    ``threshold``: the keeper first, the other members ascending.

    ``rank`` gives the keeper sort key of the rows it is handed (only rows that may group are
    asked); without it the first row is preferred.
    """
    x = np.asarray(vectors)
    i, j, _ = similar_pairs(x, threshold=threshold, exact_below=exact_below)
    n = len(x)
    return centre_groups(n, i, j, order=priority_order(n, np.concatenate([i, j]), rank))
