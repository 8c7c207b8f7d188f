"""pgvector index: the vectors in a PostgreSQL table with an HNSW index, shared by every server.

One table per index (``vectors_<name>``: ``id bigint`` primary key, ``v vector(d)``) with an HNSW
index on inner product (``vector_ip_ops``; vectors are unit length, so it is the cosine), kept up
to date by PostgreSQL itself: no file, no rebuild, no background build — every server and worker
that adds or removes a vector changes the one index all of them search.

Writes go through ``COPY … (FORMAT BINARY)`` into a temporary table and one upsert: the rows are
packed with NumPy in pgvector's binary format (no text formatting of 512 floats per row). Adding
one vector at a time to an HNSW graph costs more than building the graph once from all of them
(3.9x at 20,000 × 512-d here, docs/benchmarks.md), so a
bulk add (at least ``bulk_min`` vectors and at least as many as the table holds: a first
embedding of a library) drops the HNSW index, loads, and builds it again with ``CREATE INDEX
CONCURRENTLY`` — other servers keep searching meanwhile, exactly (a sequential scan) until the
new index is valid. One process at a time drops and builds (an advisory lock per table; the
others add row by row meanwhile); an index left invalid by a crash mid-build is rebuilt by the
next process that opens it and gets the lock.

Filters (``allowed``): pgvector before 0.8 applies a ``WHERE`` after the HNSW scan has produced
its ``hnsw.ef_search`` candidates, so a selective filter can leave fewer than ``k`` results. A
filter of at most ``exact_filter_max`` ids is therefore searched exactly (a sequential scan of
those rows through the primary key, the ordering expression made unusable by the HNSW index);
a wider one takes the graph's ``ef_search`` nearest, ``ef_search`` raised for the filter's
selectivity (up to pgvector's 1,000), keeps the allowed ones here (the ids never travel to the
server, and the planner cannot trade the graph for a scan of the filtered rows), and falls back
to the exact scan when that still finds fewer than ``k``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from vistudio.ml.embed.index import (
    DimensionMismatch,
    FloatArray,
    IdArray,
    VectorIndexError,
    as_ids,
    as_unit_vectors,
)

NAME_RE = re.compile(r"^[a-z0-9_]{1,48}$")
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
MAX_EF = 1000  # pgvector's limit for hnsw.ef_search


class PgVectorUnavailable(VectorIndexError):
    """The database is not PostgreSQL, or its server has no pgvector extension."""


def _literal(v: FloatArray) -> str:
    """A vector as pgvector's text input (queries: one per search, so text is cheap enough)."""
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def copy_rows(ids: IdArray, vecs: FloatArray) -> bytes:
    """``COPY … (FORMAT BINARY)`` data of rows (id int8, v vector(d)), packed with NumPy."""
    n, d = vecs.shape
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("v_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("v", ">f4", (d,)),
        ]
    )
    packed = np.empty(n, dtype=row)
    packed["fields"] = 2
    packed["id_len"] = 8
    packed["id"] = ids
    packed["v_len"] = 4 + 4 * d
    packed["dim"] = d
    packed["unused"] = 0
    packed["v"] = vecs
    return COPY_HEADER + packed.tobytes() + b"\xff\xff"


class PgVectorIndex:
    """A ``VectorIndex`` in PostgreSQL (see the module docstring). ``engine`` must reach a server
    with the ``vector`` extension available (created here if missing)."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str,
        dim: int,
        m: int = 16,
        ef_construction: int = 64,
        ef_search: int = 200,
        exact_filter_max: int = 20_000,
        bulk_min: int = 10_000,
        build_memory: str = "1GB",
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise PgVectorUnavailable(f"the pgvector index needs PostgreSQL, not {engine.dialect.name}")
        if not NAME_RE.match(name):
            raise VectorIndexError(f"index name must match {NAME_RE.pattern}: {name!r}")
        if dim < 1 or dim > 16_000:
            raise DimensionMismatch(f"pgvector indexes 1..16000 dimensions, got {dim}")
        self._engine = engine
        self._dim = dim
        self.table = f"vectors_{name}"
        self.ef_search = min(ef_search, MAX_EF)
        self.exact_filter_max = exact_filter_max
        self.bulk_min = bulk_min
        if not re.match(r"^\d+\s*(kB|MB|GB)$", build_memory):
            raise VectorIndexError(f"build_memory must look like 512MB or 2GB, got {build_memory!r}")
        self.build_memory = build_memory
        self._hnsw_with = f"(m = {int(m)}, ef_construction = {int(ef_construction)})"
        with self._conn() as conn:
            has = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
            if has is None:
                raise PgVectorUnavailable(
                    "the PostgreSQL server has no pgvector extension (install it: "
                    "https://github.com/pgvector/pgvector, or use the pgvector/pgvector image)"
                )
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            found = conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'v'",
                (self.table,),
            ).fetchone()
            if found is not None and found[0] != dim:
                raise DimensionMismatch(f"{self.table} holds {found[0]}-d vectors, not {dim}-d")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (id bigint PRIMARY KEY, v vector({dim}) NOT NULL)"
            )
        if not self._index_valid():
            with self._maintenance() as conn:
                # under the lock nobody else builds: an index still invalid is a dead build's
                # (PostgreSQL keeps it, unusable); without the lock another process is building
                if conn is not None and not self._index_valid():
                    conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {self.table}_hnsw")
                    self._build(conn)

    def _index_valid(self) -> bool | None:
        """Whether the HNSW index is valid; None when there is none."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
                (f"{self.table}_hnsw",),
            ).fetchone()
        return None if row is None else bool(row[0])

    @contextmanager
    def _maintenance(self) -> Iterator[Any]:
        """The right to drop and build this table's HNSW index, for one process at a time (a
        session advisory lock): an autocommit connection (``… CONCURRENTLY`` cannot run in a
        transaction) holding it, or None when another process holds it."""
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            key = (f"vistudio:{self.table}",)
            if not conn.exec_driver_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key).scalar():
                yield None
                return
            try:
                yield conn
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)

    def _build(self, conn: Any) -> None:
        conn.exec_driver_sql(f"SET maintenance_work_mem = '{self.build_memory}'")
        conn.exec_driver_sql(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.table}_hnsw ON {self.table} "
            f"USING hnsw (v vector_ip_ops) WITH {self._hnsw_with}"
        )
        conn.exec_driver_sql("RESET maintenance_work_mem")

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """A psycopg connection in one transaction (committed on success)."""
        with self._engine.connect() as sa:
            raw: Any = sa.connection.driver_connection
            try:
                yield raw
                raw.commit()
            except BaseException:
                raw.rollback()
                raise

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        with self._conn() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def __contains__(self, id_: object) -> bool:
        if not isinstance(id_, int | np.integer):
            return False
        with self._conn() as conn:
            return (
                conn.execute(f"SELECT 1 FROM {self.table} WHERE id = %s", (int(id_),)).fetchone() is not None
            )

    def __repr__(self) -> str:
        return f"PgVectorIndex(table={self.table}, dim={self._dim})"

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        id_arr = as_ids(ids)
        vecs = as_unit_vectors(vectors, self._dim)
        if id_arr.shape[0] != vecs.shape[0]:
            raise VectorIndexError(f"{id_arr.shape[0]} ids for {vecs.shape[0]} vectors")
        if id_arr.size == 0:
            return
        # the last vector of a repeated id wins, as in the FAISS index
        _, last = np.unique(id_arr[::-1], return_index=True)
        keep = np.sort(id_arr.size - 1 - last)
        id_arr, vecs = id_arr[keep], vecs[keep]
        if id_arr.size >= self.bulk_min and id_arr.size >= len(self):
            with self._maintenance() as conn:
                if conn is not None:  # else another process is loading in bulk: add row by row
                    conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {self.table}_hnsw")
                    try:
                        self._upsert(id_arr, vecs)
                    finally:
                        self._build(conn)
                    return
        self._upsert(id_arr, vecs)

    def _upsert(self, id_arr: IdArray, vecs: FloatArray) -> None:
        with self._conn() as conn:
            conn.execute(f"CREATE TEMP TABLE vstage (LIKE {self.table}) ON COMMIT DROP")
            chunk = 20_000
            for a in range(0, id_arr.size, chunk):
                with conn.cursor().copy("COPY vstage (id, v) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(copy_rows(id_arr[a : a + chunk], vecs[a : a + chunk]))
            conn.execute(
                f"INSERT INTO {self.table} (id, v) SELECT id, v FROM vstage "
                "ON CONFLICT (id) DO UPDATE SET v = excluded.v"
            )

    def remove(self, ids: npt.ArrayLike) -> int:
        id_arr = as_ids(ids)
        if id_arr.size == 0:
            return 0
        with self._conn() as conn:
            cur = conn.execute(f"DELETE FROM {self.table} WHERE id = ANY(%s)", (id_arr.tolist(),))
            return int(cur.rowcount)

    def search(
        self, query: npt.ArrayLike, k: int, *, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        if k < 1:
            raise VectorIndexError(f"k must be at least 1, got {k}")
        q = as_unit_vectors(query, self._dim)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        out_ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        only: IdArray | None = None
        if allowed is not None:
            only = np.unique(as_ids(allowed))
            if not len(only):
                return scores, out_ids
        with self._conn() as conn:
            total = (
                None
                if only is None
                else int(conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])
            )
            for i, vec in enumerate(q):
                lit = _literal(vec)
                if only is not None and (len(only) <= self.exact_filter_max or len(only) * 20 < (total or 0)):
                    rows = self._exact(conn, lit, k, only)
                else:
                    rows = self._hnsw(conn, lit, k, only, total)
                    if only is not None and len(rows) < min(k, len(only)):
                        rows = self._exact(conn, lit, k, only)
                for j, (id_, dist) in enumerate(rows):
                    out_ids[i, j] = id_
                    scores[i, j] = -dist  # <#> is the negative inner product
        return scores, out_ids

    def _hnsw(self, conn: Any, lit: str, k: int, only: IdArray | None, total: int | None) -> list[Any]:
        """The graph's top ``k``; with ``only`` (sorted unique ids) those of them among its
        widened candidates (fewer than ``k`` when the filter took too many)."""
        ef = max(self.ef_search, k)
        if only is None:
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
            return list(
                conn.execute(
                    f"SELECT id, v <#> %s::vector FROM {self.table} ORDER BY v <#> %s::vector LIMIT %s",
                    (lit, lit, k),
                )
            )
        # the scan's candidates, filtered here: a WHERE with the allowed ids would send them all to
        # the server for every query (a 100,000-id array) and lets the planner leave the graph for
        # a scan of those rows. Enough candidates for k allowed ones three times over: a 10 %
        # filter and k=10 take 300 (the scan's cost grows with ef: 1,000 costs 5× the default 200)
        if total:
            ef = min(MAX_EF, max(ef, int(3 * k * total / max(1, len(only)))))
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        rows = conn.execute(
            f"SELECT id, v <#> %s::vector FROM {self.table} ORDER BY v <#> %s::vector LIMIT %s", (lit, lit, ef)
        ).fetchall()
        if not rows:
            return []
        found = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        at = np.searchsorted(only, found).clip(max=len(only) - 1)
        return [rows[i] for i in np.flatnonzero(only[at] == found)[:k]]

    def _exact(self, conn: Any, lit: str, k: int, only: IdArray) -> list[Any]:
        # "+ 0" keeps the planner off the HNSW index: this is the true top k of those rows
        return list(
            conn.execute(
                f"SELECT id, v <#> %s::vector AS d FROM {self.table} WHERE id = ANY(%s) "
                "ORDER BY (v <#> %s::vector) + 0, id LIMIT %s",
                (lit, only.tolist(), lit, k),
            )
        )

    def ids(self) -> IdArray:
        with self._conn() as conn:
            rows = conn.execute(f"SELECT id FROM {self.table}").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def get(self, ids: npt.ArrayLike) -> FloatArray:
        id_arr = as_ids(ids)
        with self._conn() as conn:
            rows = dict(
                conn.execute(
                    f"SELECT id, v::text FROM {self.table} WHERE id = ANY(%s)", (id_arr.tolist(),)
                ).fetchall()
            )
        out = np.empty((id_arr.size, self._dim), dtype=np.float32)
        for i, id_ in enumerate(id_arr.tolist()):
            if id_ not in rows:
                raise KeyError(id_)
            out[i] = np.array(rows[id_].strip("[]").split(","), dtype=np.float32)
        return out

    def save(self, path: str | Path, *, fingerprint: str = "") -> None:
        """Nothing to write: PostgreSQL holds the index (the protocol's save is for file indexes)."""

    def drop(self) -> None:
        """Delete the table and its HNSW index."""
        with self._conn() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")
