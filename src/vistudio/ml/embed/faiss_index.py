"""FAISS vector index: exact inner product when small, HNSW when large; tombstones; atomic files.

Layout: the FAISS index stores *rows* (labels 0..rows-1, in insertion order); ``_row_ids`` maps a
row to its sample id and ``_id_to_row`` maps a live id back to its row. Removing or replacing an
id tombstones its row (HNSW cannot delete); searches exclude dead rows through an
``IDSelectorBitmap`` of live rows, so a search still returns ``k`` live results without
over-fetching, and once dead rows exceed ``rebuild_ratio`` of all rows the index is rebuilt
from its own stored vectors (``IndexFlat`` storage, read back zero-copy) — no encoder needed.
The exact backend uses the same row layout over an ``IndexFlatIP``, so both kinds share one
id map, one filter path and one file format.

HNSW builds (the add that crosses ``hnsw_threshold``, the rebuild that drops tombstones, an
explicit ``rebuild``) can run in the background (``background=True``, what the services use): the
index keeps answering searches and taking adds and removes on its current state (exact search
over the flat vectors while it was still exact) while a thread builds the new HNSW graph from a
copy of the live vectors, without any lock. The thread then catches up with the rows added
meanwhile (in rounds under the read lock, the last few under the write lock), maps the rows
removed meanwhile to tombstones, and swaps the new state in under the write lock: a search sees
either the old state or the new one, never a mix, and never waits for the build itself. A build
that fails leaves the old state in place (``build_error`` says why, the log has the traceback);
the file on disk only ever changes by an atomic ``save``, so a process killed mid-build leaves
the previous file intact. ``on_swap`` (e.g. a save) runs in the builder thread after the swap.

Defaults (measured at 1 M × 512-d on 2 cores, docs/benchmarks.md "Index builds"): HNSW ``M=32``
with ``efConstruction=32`` builds in ≈ 3.5 min instead of ≈ 16 min at ``efConstruction=200``;
the looser graph needs ``efSearch=512`` for recall@10 ≈ 0.98 (p95 ≈ 5 ms on 1 thread).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from vistudio.ml.embed.index import (
    DimensionMismatch,
    FloatArray,
    IdArray,
    IndexFileError,
    VectorIndexError,
    as_ids,
    as_unit_vectors,
)

log = logging.getLogger(__name__)

FILE_FORMAT = "vistudio-faiss-index"
FILE_VERSION = 1
IndexKind = Literal["exact", "hnsw"]
_FAISS: Any = faiss  # the type stubs shipped with faiss-cpu miss SearchParametersHNSW and others
BUILD_CHUNK = 50_000  # vectors per add into a graph being built in the background
CATCH_UP_LOCKED = 2_000  # rows added during a build that are caught up under the write lock


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class FaissVectorIndex:
    """A ``VectorIndex`` backed by FAISS (cosine similarity on L2-normalised float32 vectors).

    Below ``hnsw_threshold`` live vectors it is an exact ``IndexFlatIP``; the ``add`` that reaches
    the threshold rebuilds it as ``IndexHNSWFlat(M=hnsw_m)`` built with ``ef_construction`` and
    searched with ``ef_search``. A filter (``allowed``) of fewer than ``exact_filter_max`` live ids
    is answered by an exact scan of just those vectors; larger filters go through an
    ``IDSelectorBitmap`` of their rows in the FAISS search (HNSW's ``efSearch`` is raised in
    proportion to how selective the filter is, and a query that still finds too few is redone
    exactly).

    Mutations hold an exclusive lock; searches share a lock and run concurrently. With
    ``background=True`` HNSW builds run in a thread and swap in when done (module docstring);
    ``on_swap(index)`` is called after each such swap, from that thread.
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int = 50_000,
        hnsw_m: int = 32,
        ef_construction: int = 32,
        ef_search: int = 512,
        rebuild_ratio: float = 0.2,
        exact_filter_max: int = 5_000,
        background: bool = False,
        on_swap: Callable[[FaissVectorIndex], None] | None = None,
    ) -> None:
        if dim <= 0:
            raise VectorIndexError(f"dimension must be positive, got {dim}")
        if not 0.0 < rebuild_ratio <= 1.0:
            raise VectorIndexError("rebuild_ratio must be in (0, 1]")
        self._dim = int(dim)
        self.hnsw_threshold = int(hnsw_threshold)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.rebuild_ratio = float(rebuild_ratio)
        self.exact_filter_max = int(exact_filter_max)
        self.filter_widening = 0.25  # efSearch × clip(sqrt(this · live / allowed), 1, 4) for filters
        # filters up to this fraction of the live vectors are scanned exactly (docs/search.md)
        self.exact_filter_fraction = 0.02
        self.fingerprint = ""
        self._lock = _RWLock()
        self._kind: IndexKind = "exact"
        self._index: Any = self._new_index("exact")  # faiss's partial type stubs lack most members
        self._row_ids: IdArray = np.empty(0, dtype=np.int64)
        self._live = np.empty(0, dtype=bool)
        self._id_to_row: dict[int, int] = {}
        self._bitmap: npt.NDArray[np.uint8] | None = None  # packed live rows, cached
        self._lookup: tuple[IdArray, IdArray] | None = None  # vectorised id → row, cached
        self.rebuilds = 0
        self._saved_rebuilds = 0  # ``rebuilds`` when last saved or loaded
        self.background = bool(background)
        self.on_swap = on_swap
        self.build_error: str | None = None  # why the last background build failed, if it did
        self._building = False  # a background build is under way (set and cleared under the write lock)
        self._idle = threading.Event()
        self._idle.set()

    # -- properties ------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the vectors."""
        return self._dim

    @property
    def kind(self) -> IndexKind:
        """``"exact"`` (IndexFlatIP) or ``"hnsw"`` (IndexHNSWFlat)."""
        return self._kind

    @property
    def rows(self) -> int:
        """Rows in the FAISS index, dead ones included."""
        return int(self._row_ids.shape[0])

    @property
    def building(self) -> bool:
        """Whether a background build is under way (searches use the current state meanwhile)."""
        return self._building

    @property
    def rebuilt_since_save(self) -> bool:
        """Whether the index was rebuilt (e.g. a background build swapped in) since its last
        ``save`` or ``load``: its file, if any, holds an older state."""
        return self.rebuilds != self._saved_rebuilds

    def wait_build(self, timeout: float | None = None) -> bool:
        """Wait until no background build is under way; False if ``timeout`` s passed first."""
        return self._idle.wait(timeout)

    @property
    def tombstones(self) -> int:
        """Dead rows waiting for the next rebuild."""
        return self.rows - len(self._id_to_row)

    def __len__(self) -> int:
        return len(self._id_to_row)

    def __contains__(self, id_: object) -> bool:
        try:
            return int(id_) in self._id_to_row  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return (
            f"FaissVectorIndex(dim={self._dim}, kind={self._kind!r}, live={len(self)}, "
            f"tombstones={self.tombstones})"
        )

    def nbytes(self) -> int:
        """Memory of the index in bytes: vectors, HNSW links and the row arrays (not the id dict)."""
        with self._lock.read():
            total = int(self._index.ntotal) * self._dim * 4 + self._row_ids.nbytes + self._live.nbytes
            if self._kind == "hnsw":
                hnsw = self._index.hnsw
                total += hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
            return total

    # -- mutations -------------------------------------------------------------------------

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add ``vectors`` (n, d) under ``ids`` (n,); present ids are replaced.

        Within one call a repeated id keeps its last vector. The add that brings the live count
        to ``hnsw_threshold`` switches the index to HNSW (a rebuild from the stored vectors).
        """
        id_arr = as_ids(ids)
        vecs = as_unit_vectors(vectors, self._dim)
        if vecs.shape[0] != id_arr.shape[0]:
            raise VectorIndexError(f"{id_arr.shape[0]} ids for {vecs.shape[0]} vectors")
        if id_arr.size == 0:
            return
        # keep the last occurrence of each id
        _, last_from_end = np.unique(id_arr[::-1], return_index=True)
        keep = np.sort(id_arr.size - 1 - last_from_end)
        if keep.size != id_arr.size:
            id_arr, vecs = id_arr[keep], vecs[keep]
        with self._lock.write():
            self._tombstone(id_arr)
            crossing = self._kind == "exact" and len(self) + id_arr.size >= self.hnsw_threshold
            if crossing and not self.background:
                live_rows = np.flatnonzero(self._live)
                all_ids = np.concatenate([self._row_ids[live_rows], id_arr])
                all_vecs = np.concatenate([self._vectors()[live_rows], vecs])
                self._build("hnsw", all_ids, all_vecs)
            else:
                start = self.rows
                self._index.add(vecs)
                self._row_ids = np.concatenate([self._row_ids, id_arr])
                self._live = np.concatenate([self._live, np.ones(id_arr.size, dtype=bool)])
                self._id_to_row.update(zip(id_arr.tolist(), range(start, start + id_arr.size), strict=True))
                self._invalidate()
                if crossing:
                    self._start_build()  # searches stay exact over the flat vectors until the swap
            self._maybe_rebuild()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone ``ids`` (n,); unknown ids are ignored. Returns how many were live.

        Rebuilds the index when dead rows exceed ``rebuild_ratio`` of all rows.
        """
        id_arr = as_ids(ids)
        with self._lock.write():
            removed = self._tombstone(np.unique(id_arr))
            self._maybe_rebuild()
        return removed

    def rebuild(self) -> None:
        """Rebuild from the live stored vectors, dropping tombstones; the kind follows the size.

        With ``background`` an HNSW rebuild starts in a thread and this returns at once
        (``wait_build`` waits for it); a build already under way is waited for first.
        """
        self.wait_build()
        with self._lock.write():
            self._rebuild()

    def _tombstone(self, ids: IdArray) -> int:
        rows = [r for r in map(self._id_to_row.pop, ids.tolist(), [None] * ids.size) if r is not None]
        if rows:
            self._live[np.asarray(rows, dtype=np.int64)] = False
            self._invalidate()
        return len(rows)

    def _invalidate(self) -> None:
        self._bitmap = None
        self._lookup = None

    def _rows_of(self, ids: IdArray) -> tuple[IdArray, npt.NDArray[np.bool_]]:
        """Rows (n,) of ``ids`` (n,) and whether each is live, vectorised (filters can be 100k ids).

        Dense non-negative ids (the usual autoincrement sample ids) use a direct table, others a
        sorted array; either is built once after each mutation.
        """
        lookup = self._lookup
        if lookup is None:
            live_rows = np.flatnonzero(self._live)
            live_ids = self._row_ids[live_rows]
            if live_ids.size and live_ids.min() >= 0 and live_ids.max() < 4 * live_ids.size + 1024:
                table = np.full(int(live_ids.max()) + 1, -1, dtype=np.int64)
                table[live_ids] = live_rows
                lookup = (np.empty(0, dtype=np.int64), table)
            else:
                order = np.argsort(live_ids, kind="stable")
                lookup = (live_ids[order], live_rows[order])
            self._lookup = lookup  # readers may race to build it: both results are equal
        keys, values = lookup
        if keys.size == 0 and values.size:  # direct table
            if ids.size and ids.min() >= 0 and ids.max() < values.size:
                rows = values[ids]  # the usual case, one pass
            else:
                inside = (ids >= 0) & (ids < values.size)
                rows = np.where(inside, values[np.where(inside, ids, 0)], -1)
        elif keys.size:
            pos = np.minimum(np.searchsorted(keys, ids), keys.size - 1)
            rows = np.where(keys[pos] == ids, values[pos], -1)
        else:
            rows = np.full(ids.size, -1, dtype=np.int64)
        return rows, rows >= 0

    def _maybe_rebuild(self) -> None:
        # never while a background build runs: its catch-up relies on the row numbers staying put
        if not self._building and self.tombstones and self.tombstones > self.rebuild_ratio * self.rows:
            self._rebuild()

    def _rebuild(self) -> None:
        live_rows = np.flatnonzero(self._live)
        kind: IndexKind = "hnsw" if live_rows.size >= self.hnsw_threshold else "exact"
        if kind == "hnsw" and self.background:
            self._start_build()
            return
        ids = self._row_ids[live_rows]
        vecs = self._vectors()[live_rows]  # a copy: the old index is freed below
        self._build(kind, ids, vecs)

    # -- background builds -------------------------------------------------------------------

    def build_if_due(self) -> bool:
        """Start the HNSW build an exact index of ``hnsw_threshold`` or more live vectors waits
        for (a file saved before its build swapped in); in the background with ``background``.
        Returns whether a build was started (or done)."""
        with self._lock.write():
            if self._building or self._kind != "exact" or len(self) < self.hnsw_threshold:
                return False
            self._rebuild()
            return True

    def _start_build(self) -> None:
        """Start building an HNSW graph of the live rows in a thread (call with the write lock)."""
        if self._building:
            return
        self._building = True
        self._idle.clear()
        self.build_error = None
        snapshot = np.flatnonzero(self._live)
        thread = threading.Thread(
            target=self._background_build,
            args=(snapshot, self.rows),
            name=f"vistudio-index-build-{id(self):x}",
            daemon=True,  # a process that exits mid-build keeps its old file: nothing was written
        )
        thread.start()

    def _background_build(self, snapshot: IdArray, start_rows: int) -> None:
        """Build, catch up and swap (the module docstring); ``snapshot`` are the rows live at the
        start and ``start_rows`` the row count then (rows are only appended while this runs)."""
        t0 = time.monotonic()
        try:
            index = self._new_index("hnsw")
            for lo in range(0, snapshot.size, BUILD_CHUNK):
                # a chunk at a time: a copy of all the vectors would add their size to the peak
                # memory; copies, because the flat storage may move when rows are appended
                with self._lock.read():
                    vecs = self._vectors()[snapshot[lo : lo + BUILD_CHUNK]]
                self._fill(index, vecs)
            sources = [snapshot]  # the old rows behind the new index's rows, in order
            done = start_rows
            for _ in range(8):  # rows added meanwhile, without blocking searches or adds
                with self._lock.read():
                    end = self.rows
                    if end - done <= CATCH_UP_LOCKED:
                        break
                    rows = done + np.flatnonzero(self._live[done:end])
                    vecs = self._vectors()[rows]
                self._fill(index, vecs)
                sources.append(rows)
                done = end
            # the id → row map of the rows so far, outside the lock (1 M ids take ≈ 0.2 s); an id
            # replaced during the build maps to its newer row, which comes later
            with self._lock.read():
                pre = np.concatenate(sources)
                pre_ids = self._row_ids[pre]
            id_to_row = dict(zip(pre_ids.tolist(), range(pre.size), strict=True))
            with self._lock.write():
                rows = done + np.flatnonzero(self._live[done:])
                if rows.size:
                    index.add(self._vectors()[rows])
                src = np.concatenate([pre, rows])
                live = self._live[src]
                # rows removed or replaced since they were copied are tombstones in the new index
                for pos in np.flatnonzero(~live[: pre.size]).tolist():
                    if id_to_row.get(int(pre_ids[pos])) == pos:
                        del id_to_row[int(pre_ids[pos])]
                id_to_row.update(zip(self._row_ids[rows].tolist(), range(pre.size, src.size), strict=True))
                self._install(index, "hnsw", self._row_ids[src], live, id_to_row=id_to_row)
                self._building = False
                log.info(
                    "background HNSW build of %d vectors (%d caught up) swapped in after %.1f s",
                    src.size,
                    src.size - snapshot.size,
                    time.monotonic() - t0,
                )
                self._maybe_rebuild()  # many removals during the build
        except Exception as exc:
            # logged before waiters wake (they may read the log), and never able to stop the
            # wake-up itself: a waiter must never hang on a failed build
            with contextlib.suppress(Exception):
                log.exception("background HNSW build failed; the index keeps its previous state")
            with self._lock.write():
                self.build_error = f"{type(exc).__name__}: {exc}"
                self._building = False
                self._idle.set()
            return
        callback = self.on_swap
        if callback is not None:
            try:
                callback(self)
            except Exception:
                log.exception("after the index swap: on_swap failed")
        with self._lock.write():  # idle only after on_swap (a waiter may expect the saved file)
            if not self._building:
                self._idle.set()

    def _fill(self, index: Any, vecs: FloatArray) -> None:
        """Add ``vecs`` (n, d) to a graph under construction (no lock: nobody else sees it)."""
        for lo in range(0, vecs.shape[0], BUILD_CHUNK):
            index.add(np.ascontiguousarray(vecs[lo : lo + BUILD_CHUNK]))

    def _build(self, kind: IndexKind, ids: IdArray, vecs: FloatArray) -> None:
        index = self._new_index(kind)
        if ids.size:
            index.add(np.ascontiguousarray(vecs))
        self._install(index, kind, ids, np.ones(ids.size, dtype=bool))
        log.debug("built %s index of %d vectors", kind, ids.size)

    def _install(
        self,
        index: Any,
        kind: IndexKind,
        ids: IdArray,
        live: npt.NDArray[np.bool_],
        *,
        id_to_row: dict[int, int] | None = None,
    ) -> None:
        """Make ``index`` (rows ``ids`` (n,), ``live`` (n,)) the current state (write lock held);
        ``id_to_row`` is the live ids' map when the caller built it already."""
        self._index = index
        self._kind = kind
        self._row_ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._live = np.ascontiguousarray(live, dtype=bool)
        if id_to_row is None:
            live_rows = np.flatnonzero(self._live)
            id_to_row = dict(zip(self._row_ids[live_rows].tolist(), live_rows.tolist(), strict=True))
        self._id_to_row = id_to_row
        self._invalidate()
        self.rebuilds += 1

    def _new_index(self, kind: IndexKind) -> Any:
        if kind == "exact":
            return faiss.IndexFlatIP(self._dim)
        index = _FAISS.IndexHNSWFlat(self._dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _vectors(self) -> FloatArray:
        """Zero-copy view (rows, d) of the stored vectors; valid until the next mutation."""
        n = int(self._index.ntotal)
        if n == 0:
            return np.empty((0, self._dim), dtype=np.float32)
        flat: Any = self._index if self._kind == "exact" else faiss.downcast_index(self._index.storage)
        view: FloatArray = faiss.rev_swig_ptr(flat.get_xb(), n * self._dim).reshape(n, self._dim)
        return view

    # -- queries ---------------------------------------------------------------------------

    def ids(self) -> IdArray:
        """The live ids (n,), in insertion order."""
        with self._lock.read():
            return self._row_ids[self._live].copy()

    def get(self, ids: npt.ArrayLike) -> FloatArray:
        """Stored unit vectors (n, d) of live ``ids`` (n,); ``KeyError`` names a missing id."""
        id_arr = as_ids(ids)
        with self._lock.read():
            rows, ok = self._rows_of(id_arr)
            if not ok.all():
                raise KeyError(f"id {int(id_arr[~ok][0])} is not in the index")
            return self._vectors()[rows].copy()

    def search(
        self, query: npt.ArrayLike, k: int, *, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Top ``k`` live ids for ``query`` (d,) or (q, d) → ``(scores (q, k), ids (q, k))``.

        Scores are cosine similarities, best first; missing results are ``-1`` / ``-inf``.
        ``allowed`` (m,) restricts results to those ids (unknown or removed ids are ignored).
        """
        if k < 1:
            raise VectorIndexError(f"k must be at least 1, got {k}")
        q = as_unit_vectors(query, self._dim)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        if q.shape[0] == 0:
            return scores, out_ids
        with self._lock.read():
            if allowed is None:
                rows_d, rows_i = self._search_all(q, k)
            else:
                # no np.unique of the filter (a sort: ≈ 20 ms for 100,000 ids): the ids map to rows
                # through the cached table, and a bitmap of those rows absorbs repeated ids
                rows, ok = self._rows_of(as_ids(allowed))
                rows = rows[ok]
                member: npt.NDArray[np.bool_] | None = None
                if rows.size <= self.exact_filter_max:
                    rows = np.unique(rows)
                else:
                    member = np.zeros(self.rows, dtype=bool)
                    member[rows] = True
                    count = int(np.count_nonzero(member))  # distinct allowed rows
                    if count <= self.exact_filter_max:
                        rows, member = np.flatnonzero(member), None
                if rows.size == 0:
                    return scores, out_ids
                if member is None:
                    rows_d, rows_i = self._search_rows_exact(q, k, rows)
                else:
                    rows_d, rows_i = self._search_selected(q, k, member, count)
            found = rows_i >= 0
            kk = rows_i.shape[1]
            scores[:, :kk] = np.where(found, rows_d, -np.inf)
            out_ids[:, :kk] = np.where(found, self._row_ids[np.where(found, rows_i, 0)], -1)
        return scores, out_ids

    def _search_all(self, q: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        live = len(self)
        if live == 0:
            return np.empty((q.shape[0], 0), np.float32), np.empty((q.shape[0], 0), np.int64)
        kk = min(k, live)
        params = self._params(max(self.ef_search, kk))
        if self.tombstones:
            bitmap = self._live_bitmap()
            sel = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(bitmap))
            params.sel = sel  # the selector only borrows the bitmap: both stay referenced here
        d, i = self._index.search(q, kk, params=params)
        return d, i

    def _search_selected(
        self, q: FloatArray, k: int, member: npt.NDArray[np.bool_], allowed: int
    ) -> tuple[FloatArray, IdArray]:
        """Top-k among the rows where ``member`` (rows,) is true, through a FAISS bitmap selector:
        HNSW for a filter above ``exact_filter_fraction`` of the live vectors, else an exact scan
        of the flat storage that computes only the members' similarities; ``allowed`` members."""
        kk = min(k, allowed)
        ef = max(self.ef_search, kk)
        hnsw = self._kind == "hnsw" and allowed > self.exact_filter_fraction * len(self)
        if hnsw:
            # HNSW returns only members among the nodes it explores: widen the beam for selective
            # filters (measured at 1 M × 512-d, docs/benchmarks.md: a 10 % filter needs ≈ 1.5×
            # efSearch 256 for recall@10 0.98, a 2 % one ≈ 3.5×); a query that still finds too
            # few is redone exactly below.
            ef = int(ef * np.clip(np.sqrt(self.filter_widening * len(self) / allowed), 1.0, 4.0))
        params = self._params(ef) if hnsw else faiss.SearchParameters()
        index = self._index if hnsw or self._kind == "exact" else faiss.downcast_index(self._index.storage)
        # a bitmap of the rows (rows / 8 bytes, built from numpy in well under a millisecond at
        # 1 M rows) is cheaper to build than IDSelectorBatch's hash set and O(1) to test
        bitmap = np.packbits(member, bitorder="little")
        sel = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(bitmap))
        params.sel = sel  # the selector only borrows the bitmap: both stay referenced here
        d, i = index.search(q, kk, params=params)
        short = np.flatnonzero((i >= 0).sum(axis=1) < kk)
        if short.size:
            d[short], i[short] = self._search_rows_exact(q[short], k, np.flatnonzero(member))
        return d, i

    def _search_rows_exact(self, q: FloatArray, k: int, rows: IdArray) -> tuple[FloatArray, IdArray]:
        """Exact top-k over just ``rows`` (m,): (q, min(k, m)) scores and rows."""
        sub = self._vectors()[rows]
        sims = q @ sub.T  # (q, m)
        kk = min(k, rows.size)
        if kk < rows.size:
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(rows.size), (q.shape[0], rows.size))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        return np.take_along_axis(top, order, axis=1).astype(np.float32), rows[best]

    def _params(self, ef: int) -> Any:
        if self._kind == "hnsw":
            params = _FAISS.SearchParametersHNSW()
            params.efSearch = int(ef)
            return params
        return faiss.SearchParameters()

    def _live_bitmap(self) -> npt.NDArray[np.uint8]:
        bitmap = self._bitmap
        if bitmap is None:
            bitmap = np.packbits(self._live, bitorder="little")  # FAISS reads bit (i & 7) of byte i >> 3
            self._bitmap = bitmap
        return bitmap

    # -- persistence -----------------------------------------------------------------------

    def save(self, path: str | Path, *, fingerprint: str = "") -> None:
        """Write the index to ``path`` atomically (temp file in the same folder, fsync, rename).

        The file is an uncompressed ``.npz`` (no pickle): the serialised FAISS index, the row ids,
        the live mask and a JSON meta (dim, metric, kind, count, fingerprint, parameters).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            meta = {
                "format": FILE_FORMAT,
                "version": FILE_VERSION,
                "dim": self._dim,
                "metric": "inner_product",
                "kind": self._kind,
                "count": len(self),
                "rows": self.rows,
                "fingerprint": fingerprint,
                "params": self._param_dict(),
                "faiss": faiss.__version__,
            }
            meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            blob = faiss.serialize_index(self._index)
            rebuilds = self.rebuilds
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    # numeric arrays only: nothing is pickled, and load() refuses pickles
                    np.savez(fh, meta=meta_bytes, index=blob, row_ids=self._row_ids, live=self._live)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _fsync_dir(path.parent)
        self.fingerprint = fingerprint
        self._saved_rebuilds = rebuilds

    def _param_dict(self) -> dict[str, Any]:
        return {
            "hnsw_threshold": self.hnsw_threshold,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rebuild_ratio": self.rebuild_ratio,
            "exact_filter_max": self.exact_filter_max,
        }

    @classmethod
    def load(cls, path: str | Path) -> FaissVectorIndex:
        """Read an index written by ``save``; ``IndexFileError`` if missing, truncated or corrupt."""
        path = Path(path)
        if not path.is_file():
            raise IndexFileError(f"vector index file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
                if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT:
                    raise IndexFileError(f"{path} is not a vistudio vector index file")
                blob = np.ascontiguousarray(npz["index"], dtype=np.uint8)
                row_ids = np.ascontiguousarray(npz["row_ids"], dtype=np.int64)
                live = np.ascontiguousarray(npz["live"], dtype=bool)
        except IndexFileError:
            raise
        except Exception as exc:  # zipfile, numpy and json raise many kinds for a damaged file
            raise IndexFileError(f"vector index file {path} is corrupt or truncated: {exc}") from exc
        if meta.get("version") != FILE_VERSION:
            raise IndexFileError(f"{path}: unsupported index file version {meta.get('version')}")
        try:
            index = faiss.deserialize_index(blob)
        except Exception as exc:
            raise IndexFileError(f"vector index file {path}: FAISS index unreadable: {exc}") from exc
        dim, kind = int(meta["dim"]), meta["kind"]
        expected_type = faiss.IndexFlatIP if kind == "exact" else faiss.IndexHNSWFlat
        problems = []
        if index.d != dim:
            problems.append(f"index dimension {index.d} != meta dimension {dim}")
        if not isinstance(index, expected_type):
            problems.append(f"index type {type(index).__name__} does not match kind {kind!r}")
        if not (index.ntotal == row_ids.size == live.size == meta["rows"]):
            problems.append(f"row counts differ: index {index.ntotal}, ids {row_ids.size}, live {live.size}")
        if int(live.sum()) != meta["count"]:
            problems.append(f"live count {int(live.sum())} != meta count {meta['count']}")
        live_ids = row_ids[live]
        if np.unique(live_ids).size != live_ids.size:
            problems.append("duplicate live ids")
        if problems:
            raise IndexFileError(f"vector index file {path} is inconsistent: " + "; ".join(problems))
        try:
            self = cls(dim, **meta.get("params", {}))
        except (TypeError, ValueError) as exc:
            raise IndexFileError(f"vector index file {path}: bad parameters: {exc}") from exc
        self._index = index
        self._kind = kind
        self._row_ids = row_ids
        self._live = live
        live_rows = np.flatnonzero(live)
        self._id_to_row = dict(zip(live_ids.tolist(), live_rows.tolist(), strict=True))
        self.fingerprint = str(meta.get("fingerprint", ""))
        return self


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_or_rebuild(
    path: str | Path,
    *,
    fingerprint: str,
    vectors_provider: Callable[[], tuple[npt.ArrayLike, npt.ArrayLike]],
    dim: int,
    **options: Any,
) -> FaissVectorIndex:
    """The stored index at ``path`` if its fingerprint and dimension match, else a fresh one.

    The database is the source of truth and the file a cache: when the file is missing, corrupt,
    of another dimension or carries another ``fingerprint`` (e.g. ``"model@version:count:max_id"``),
    the index is rebuilt from ``vectors_provider() -> (ids (n,), vectors (n, dim))`` and saved.
    ``options`` are ``FaissVectorIndex`` keyword arguments for a rebuilt index; ``background``
    and ``on_swap`` apply to a loaded one too (which then starts a build it was saved before).
    """
    try:
        stored = FaissVectorIndex.load(path)
    except IndexFileError as exc:
        log.info("rebuilding vector index %s: %s", path, exc)
    else:
        if stored.fingerprint == fingerprint and stored.dim == dim:
            stored.background = bool(options.get("background", False))
            stored.on_swap = options.get("on_swap")
            stored.build_if_due()
            return stored
        log.info(
            "rebuilding vector index %s: fingerprint %r (dim %d) != %r (dim %d)",
            path,
            stored.fingerprint,
            stored.dim,
            fingerprint,
            dim,
        )
    ids, vectors = vectors_provider()
    index = FaissVectorIndex(dim, **options)
    id_arr = as_ids(ids)
    if id_arr.size:
        index.add(id_arr, vectors)
    elif np.asarray(vectors).size:
        raise DimensionMismatch("vectors_provider returned vectors without ids")
    index.save(path, fingerprint=fingerprint)
    return index
