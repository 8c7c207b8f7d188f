"""The pgvector index against a real PostgreSQL with the extension (the ``pgserver`` wheel's):
results against brute force, filters exact, replace/remove, two servers sharing one index, and
clear errors where pgvector cannot run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine

from factories import POSTGRES_URL, pgvector_server
from vistudio.ml.embed.index import DimensionMismatch, VectorIndexError
from vistudio.ml.embed.pgvector_index import PgVectorIndex, PgVectorUnavailable, copy_rows


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    with pgvector_server() as url:
        engine = create_engine(url)
        yield engine
        engine.dispose()


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-(unit(vecs) @ unit(q[None])[0]), kind="stable")[:k]
    return ids[order]


def test_search_matches_brute_force_and_filters_are_exact(pg_engine: Engine) -> None:
    rng = np.random.default_rng(0)
    n, d = 3000, 32
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    ids = np.arange(10, 10 + n, dtype=np.int64) * 7
    index = PgVectorIndex(pg_engine, name="recall", dim=d, exact_filter_max=100)
    index.drop()
    index = PgVectorIndex(pg_engine, name="recall", dim=d, exact_filter_max=100)
    index.add(ids, vecs)
    assert len(index) == n
    queries = rng.standard_normal((40, d)).astype(np.float32)
    scores, got = index.search(queries, 10)
    hits = sum(len(set(got[i]) & set(brute(vecs, ids, q, 10))) for i, q in enumerate(queries))
    assert hits / (40 * 10) >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # scores are cosines
    first = unit(vecs)[np.searchsorted(ids, got[0, 0])]
    assert scores[0, 0] == pytest.approx(float(first @ unit(queries[:1])[0]), abs=1e-5)

    for share in (0.01, 0.3):  # exact path, and HNSW with a widened scan
        pick = rng.random(n) < share
        allowed = ids[pick]
        _, got = index.search(queries[:5], 10, allowed=np.concatenate([allowed, allowed[:3], [-5]]))
        for i in range(5):
            want = brute(vecs[pick], allowed, queries[i], 10)
            assert set(got[i]) <= set(allowed)
            if share < 0.05:
                assert got[i].tolist() == want.tolist()
            else:
                assert len(set(got[i]) & set(want)) >= 8
    scores, got = index.search(queries[0], 5, allowed=[ids[0], 999_999_999])
    assert got[0].tolist() == [ids[0], -1, -1, -1, -1] and np.isinf(scores[0, 1:]).all()
    assert index.search(queries[0], 3, allowed=[])[1].tolist() == [[-1, -1, -1]]


def test_a_bulk_load_builds_the_graph_once_after_the_rows(pg_engine: Engine) -> None:
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((1500, 16)).astype(np.float32)
    index = PgVectorIndex(pg_engine, name="bulk", dim=16, bulk_min=1000)
    index.drop()
    index = PgVectorIndex(pg_engine, name="bulk", dim=16, bulk_min=1000)
    index.add(np.arange(1000), vecs[:1000])  # bulk: the index dropped, rebuilt after the load
    index.add(np.arange(1000, 1500), vecs[1000:])  # fewer than the table holds: row by row
    assert index._index_valid() is True and len(index) == 1500
    with pg_engine.connect() as conn:
        plan = "\n".join(
            r[0]
            for r in conn.exec_driver_sql(
                f"EXPLAIN SELECT id FROM {index.table} ORDER BY v <#> '[{','.join(['0.25'] * 16)}]' LIMIT 5"
            )
        )
    assert "vectors_bulk_hnsw" in plan
    _, got = index.search(vecs[1200], 1)
    assert got[0, 0] == 1200
    with pytest.raises(VectorIndexError, match="build_memory"):
        PgVectorIndex(pg_engine, name="bulk", dim=16, build_memory="1GB'; DROP TABLE x; --")


def test_one_process_at_a_time_drops_and_builds_the_graph(pg_engine: Engine) -> None:
    vecs = np.random.default_rng(2).standard_normal((600, 8)).astype(np.float32)
    index = PgVectorIndex(pg_engine, name="locked", dim=8, bulk_min=100)
    index.drop()
    index = PgVectorIndex(pg_engine, name="locked", dim=8, bulk_min=100)
    key = "vistudio:vectors_locked"
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
        # another process is building: a bulk add goes row by row and leaves its index alone
        assert other.exec_driver_sql("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).scalar()
        index.add(np.arange(300), vecs[:300])
        assert index._index_valid() is True and len(index) == 300
        # an invalid index (what a build under way looks like) is not dropped by a newcomer
        other.exec_driver_sql(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass('vectors_locked_hnsw')"
        )
        PgVectorIndex(pg_engine, name="locked", dim=8, bulk_min=100)
        assert index._index_valid() is False
        other.exec_driver_sql("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
    # the build's process died (lock free, index still invalid): the next open rebuilds it
    again = PgVectorIndex(pg_engine, name="locked", dim=8, bulk_min=100)
    assert again._index_valid() is True
    again.add(np.arange(300, 600), vecs[300:])  # the lock is free: the bulk path, rebuilt
    assert again._index_valid() is True and len(again) == 600
    assert again.search(vecs[450], 1)[1][0, 0] == 450


def test_replace_remove_get_and_two_servers_share_it(pg_engine: Engine) -> None:
    a = PgVectorIndex(pg_engine, name="shared", dim=4)
    a.drop()
    a = PgVectorIndex(pg_engine, name="shared", dim=4)
    other = create_engine(pg_engine.url)  # a second server: its own connections, the same table
    b = PgVectorIndex(other, name="shared", dim=4)
    a.add([1, 2, 3], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    b.add([2, 2], [[0, 0, 0, 5], [0, 0, 3, 3]])  # the last of a repeated id wins, and replaces
    assert len(a) == 3 and 2 in a and 7 not in a and "2" not in a
    assert np.allclose(a.get([2]), [[0, 0, 2**-0.5, 2**-0.5]], atol=1e-6)
    with pytest.raises(KeyError):
        a.get([7])
    assert a.search([0, 0, 1, 0], 1)[1].tolist() == [[3]]
    assert b.remove([3, 99]) == 1 and 3 not in a
    assert sorted(a.ids().tolist()) == [1, 2]
    other.dispose()


def test_bad_input_and_where_pgvector_cannot_run(pg_engine: Engine, tmp_path: Path) -> None:
    index = PgVectorIndex(pg_engine, name="bad", dim=4)
    with pytest.raises(DimensionMismatch):
        index.add([1], [[1, 2, 3]])
    with pytest.raises(VectorIndexError, match="NaN"):
        index.add([1], [[np.nan, 1, 1, 1]])
    with pytest.raises(VectorIndexError, match="ids"):
        index.add([1, 2], [[1, 1, 1, 1]])
    with pytest.raises(VectorIndexError, match="k must"):
        index.search([1, 1, 1, 1], 0)
    with pytest.raises(DimensionMismatch, match="holds 4-d"):
        PgVectorIndex(pg_engine, name="bad", dim=8)
    for name in ("Robert'); DROP TABLE x;--", "", "x" * 49):
        with pytest.raises(VectorIndexError, match="name"):
            PgVectorIndex(pg_engine, name=name, dim=4)
    with pytest.raises(PgVectorUnavailable, match="needs PostgreSQL"):
        PgVectorIndex(create_engine(f"sqlite:///{tmp_path / 'x.db'}"), name="x", dim=4)


@pytest.mark.skipif(not POSTGRES_URL, reason="set VISTUDIO_TEST_POSTGRES_URL (a server without pgvector)")
def test_a_server_without_the_extension_is_a_clear_error() -> None:
    assert POSTGRES_URL
    engine = create_engine(POSTGRES_URL)
    with engine.connect() as conn:
        has = conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").first()
    if has is not None:
        pytest.skip("this PostgreSQL has pgvector")
    with pytest.raises(PgVectorUnavailable, match="no pgvector extension"):
        PgVectorIndex(engine, name="x", dim=4)
    engine.dispose()


def test_copy_rows_is_pgvector_binary_format() -> None:
    data = copy_rows(np.array([3], np.int64), np.array([[1.0, -2.0]], np.float32))
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    body = data[19:-2]
    assert body == (
        (2).to_bytes(2, "big")
        + (8).to_bytes(4, "big")
        + (3).to_bytes(8, "big")
        + (12).to_bytes(4, "big")
        + (2).to_bytes(2, "big")
        + (0).to_bytes(2, "big")
        + np.array([1.0, -2.0], ">f4").tobytes()
    )
