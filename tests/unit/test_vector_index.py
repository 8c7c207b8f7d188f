"""FaissVectorIndex: exact and HNSW search, replace/remove, filters, persistence, crash recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vistudio.ml.embed import (
    DimensionMismatch,
    FaissVectorIndex,
    IndexFileError,
    VectorIndex,
    VectorIndexError,
    load_or_rebuild,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, d: int, *, seed: int = 0, centers: int = 50, latent: int = 16) -> np.ndarray:
    """Clusters around random directions, each spread over a shared ``latent``-dim subspace plus a
    little isotropic noise: embeddings have a low intrinsic dimension like this (isotropic noise in
    all ``d`` dimensions is the worst case of any graph index)."""
    rng = np.random.default_rng(seed)
    shared = np.random.default_rng(12345)  # same centers and subspace for data and queries
    c = unit(shared.standard_normal((centers, d)))
    basis = shared.standard_normal((latent, d)) / np.sqrt(d)
    x = c[rng.integers(0, centers, n)] + 0.5 * rng.standard_normal((n, latent)) @ basis
    return (x + 0.05 * rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)


def brute(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = unit(queries) @ unit(vectors).T
    order = np.argsort(-sims, axis=1)[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = clustered(20_000, 32, seed=1)
    ids = np.arange(20_000, dtype=np.int64) * 7 + 3  # ids are not row numbers
    q = clustered(100, 32, seed=2)
    return ids, x, q


@pytest.fixture(scope="module")
def hnsw(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> FaissVectorIndex:
    ids, x, _ = data
    index = FaissVectorIndex(32, hnsw_threshold=5_000, exact_filter_max=1_000)
    index.add(ids, x)
    assert index.kind == "hnsw"
    return index


def test_protocol_and_empty_index() -> None:
    index = FaissVectorIndex(8)
    assert isinstance(index, VectorIndex)
    assert len(index) == 0 and index.kind == "exact"
    scores, ids = index.search(np.ones(8), 3)
    assert ids.tolist() == [[-1, -1, -1]] and np.all(np.isneginf(scores))
    with pytest.raises(VectorIndexError):
        index.search(np.ones(8), 0)


def test_exact_matches_numpy_brute_force(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ids, x, q = data
    index = FaissVectorIndex(32)
    index.add(ids[:3000], x[:3000])
    scores, found = index.search(q, 10)
    t_scores, t_ids = brute(x[:3000], ids[:3000], q, 10)
    assert found.dtype == np.int64 and scores.dtype == np.float32 and found.shape == (100, 10)
    np.testing.assert_array_equal(found, t_ids)
    np.testing.assert_allclose(scores, t_scores, atol=1e-5)
    # a single (d,) query gives a (1, k) answer; k larger than the index pads
    _, i1 = index.search(q[0], 10)
    np.testing.assert_array_equal(i1, found[:1])
    small = FaissVectorIndex(32)
    small.add([1, 2], x[:2])
    s2, i2 = small.search(q[:2], 4)
    assert (i2[:, 2:] == -1).all() and np.isneginf(s2[:, 2:]).all() and set(i2[0, :2]) == {1, 2}


def test_add_replaces_existing_ids() -> None:
    rng = np.random.default_rng(3)
    v = rng.standard_normal((4, 16)).astype(np.float32)
    index = FaissVectorIndex(16)
    index.add([1, 2, 3], v[:3])
    index.add([2], v[3:])
    assert len(index) == 3
    np.testing.assert_allclose(index.get([2]), unit(v[3:]), atol=1e-6)
    scores, found = index.search(v[3], 3)
    assert found[0, 0] == 2 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert found[0].tolist().count(2) == 1  # the old vector of 2 is gone
    # a repeated id within one call keeps its last vector
    index.add([9, 9], v[:2])
    np.testing.assert_allclose(index.get([9]), unit(v[1:2]), atol=1e-6)
    assert sorted(index.ids().tolist()) == [1, 2, 3, 9]
    index.add([-7, 2**40], v[2:4])  # negative and sparse ids work too (sorted lookup)
    np.testing.assert_allclose(index.get([2**40, -7]), unit(v[[3, 2]]), atol=1e-6)
    assert index.search(v[2], 1, allowed=[-7, 2**40])[1][0, 0] == -7
    with pytest.raises(KeyError, match="42"):
        index.get([42])


@pytest.mark.parametrize("threshold", [100_000, 2_000])
def test_removed_ids_never_come_back(threshold: int) -> None:
    x = clustered(6_000, 24, seed=4)
    ids = np.arange(6_000, dtype=np.int64)
    index = FaissVectorIndex(24, hnsw_threshold=threshold)
    index.add(ids, x)
    gone = ids[::10]  # 10 %: below the rebuild ratio, so these stay as tombstones
    assert index.remove(gone) == gone.size
    assert index.remove(gone) == 0  # removing again (or unknown ids) is a no-op
    assert index.tombstones == gone.size and len(index) == 6_000 - gone.size
    _, found = index.search(x[::10][:200], 10)  # query with the removed vectors themselves
    assert not np.isin(found, gone).any()
    assert (found >= 0).all()  # still k live results
    assert all(int(i) not in index for i in gone[:20]) and 1 in index


def test_filter_small_set_is_exact(hnsw: FaissVectorIndex, data: tuple[np.ndarray, ...]) -> None:
    ids, x, q = data
    rng = np.random.default_rng(5)
    pick = rng.choice(ids.size, 500, replace=False)
    allowed = np.concatenate([ids[pick], [-5, 10**12]])  # unknown ids are ignored
    scores, found = hnsw.search(q, 10, allowed=allowed)
    t_scores, t_ids = brute(x[pick], ids[pick], q, 10)
    np.testing.assert_array_equal(found, t_ids)
    np.testing.assert_allclose(scores, t_scores, atol=1e-5)
    # fewer allowed than k: padded
    _, found3 = hnsw.search(q[:2], 10, allowed=ids[:3])
    assert set(found3[0, :3]) == set(ids[:3]) and (found3[:, 3:] == -1).all()
    _, none = hnsw.search(q[:2], 5, allowed=[])
    assert (none == -1).all()


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_filter_selector_path_returns_top_k_among_allowed(
    kind: str, hnsw: FaissVectorIndex, data: tuple[np.ndarray, ...]
) -> None:
    ids, x, q = data
    if kind == "exact":
        index = FaissVectorIndex(32, exact_filter_max=100)
        index.add(ids, x)
    else:
        index = hnsw
    # a project-like filter of 20 % of the ids (above exact_filter_max: a FAISS IDSelectorBitmap)
    mask = (ids // 7) % 5 == 0
    assert mask.sum() > index.exact_filter_max
    _, found = index.search(q, 10, allowed=ids[mask])
    assert np.isin(found, ids[mask]).all()
    _, truth = brute(x[mask], ids[mask], q, 10)
    r = recall(found, truth)
    assert r == 1.0 if kind == "exact" else r >= 0.95


def test_hnsw_selective_filter_still_finds_k(data: tuple[np.ndarray, ...]) -> None:
    ids, x, q = data
    index = FaissVectorIndex(32, hnsw_threshold=5_000, exact_filter_max=50)
    index.add(ids[:10_000], x[:10_000])
    index.remove(ids[:1_000])  # tombstones inside the filter are not returned either
    pick = np.random.default_rng(11).choice(10_000, 100, replace=False)  # 1 %: IDSelectorBatch
    allowed = ids[pick]
    _, found = index.search(q, 10, allowed=allowed)
    live = pick[pick >= 1_000]
    assert (found >= 0).all() and np.isin(found, ids[live]).all()
    assert recall(found, brute(x[live], ids[live], q, 10)[1]) >= 0.95


def test_hnsw_recall_against_exact(hnsw: FaissVectorIndex, data: tuple[np.ndarray, ...]) -> None:
    ids, x, q = data
    _, found = hnsw.search(q, 10)
    _, truth = brute(x, ids, q, 10)
    assert recall(found, truth) >= 0.95


def test_switch_to_hnsw_on_the_crossing_add_and_rebuild_on_tombstones() -> None:
    x = clustered(3_000, 16, seed=6)
    ids = np.arange(3_000, dtype=np.int64) + 100
    index = FaissVectorIndex(16, hnsw_threshold=2_000, ef_search=64)
    index.add(ids[:1_999], x[:1_999])
    assert index.kind == "exact"
    index.add(ids[1_999:2_500], x[1_999:2_500])
    assert index.kind == "hnsw" and len(index) == 2_500 and index.rows == 2_500
    index.add(ids[2_500:], x[2_500:])
    assert index.kind == "hnsw" and len(index) == 3_000
    rebuilds = index.rebuilds
    index.remove(ids[:500])  # 16.7 % of rows: tombstones
    assert index.tombstones == 500 and index.rebuilds == rebuilds
    index.remove(ids[500:700])  # 23 % > 20 %: rebuilt without the dead rows
    assert index.tombstones == 0 and index.rows == 2_300 and index.rebuilds == rebuilds + 1
    assert index.kind == "hnsw"
    _, found = index.search(x[700:800], 1)
    np.testing.assert_array_equal(found[:, 0], ids[700:800])
    # shrinking below the threshold: the next rebuild goes back to exact
    index.remove(ids[700:1_700])
    assert index.kind == "exact" and len(index) == 1_300
    _, found = index.search(x[1_700:1_710], 1)
    np.testing.assert_array_equal(found[:, 0], ids[1_700:1_710])


@pytest.mark.parametrize("threshold", [100_000, 1_000])
def test_save_load_round_trip(tmp_path: Path, threshold: int) -> None:
    x = clustered(2_500, 16, seed=7)
    ids = np.arange(2_500, dtype=np.int64) * 3
    index = FaissVectorIndex(16, hnsw_threshold=threshold, ef_search=40)
    index.add(ids, x)
    index.remove(ids[:100])
    q = clustered(20, 16, seed=8)
    before = index.search(q, 10), index.search(q, 10, allowed=ids[::2])
    path = tmp_path / "idx" / "clip.vsi"
    index.save(path, fingerprint="clip@1:2400:7497")
    assert [p.name for p in path.parent.iterdir()] == ["clip.vsi"]  # no temp file left
    loaded = FaissVectorIndex.load(path)
    assert loaded.fingerprint == "clip@1:2400:7497"
    assert (loaded.kind, len(loaded), loaded.tombstones, loaded.ef_search) == (
        index.kind,
        len(index),
        index.tombstones,
        40,
    )
    after = loaded.search(q, 10), loaded.search(q, 10, allowed=ids[::2])
    for (s0, i0), (s1, i1) in zip(before, after, strict=True):
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_array_equal(s0, s1)
    loaded.add([10**9], x[:1])  # still mutable after loading
    assert len(loaded) == len(index) + 1


def test_truncated_or_garbage_file_raises_clear_error(tmp_path: Path) -> None:
    index = FaissVectorIndex(8)
    index.add(np.arange(50), np.random.default_rng(0).standard_normal((50, 8)))
    path = tmp_path / "i.vsi"
    index.save(path)
    blob = path.read_bytes()
    with pytest.raises(IndexFileError, match="does not exist"):
        FaissVectorIndex.load(tmp_path / "missing.vsi")
    for name, content in {
        "truncated": blob[: len(blob) // 2],
        "garbage": b"\x00garbage" * 100,
        "empty": b"",
        "flipped": blob[:200] + bytes([blob[200] ^ 0xFF]) + blob[201:],
    }.items():
        bad = tmp_path / f"{name}.vsi"
        bad.write_bytes(content)
        with pytest.raises(IndexFileError, match=r"corrupt|truncated|not a vistudio|inconsistent|unreadable"):
            FaissVectorIndex.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(IndexFileError, match="not a vistudio"):
        FaissVectorIndex.load(other)


def test_load_or_rebuild(tmp_path: Path) -> None:
    x = np.random.default_rng(9).standard_normal((300, 16)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64)
    calls: list[int] = []

    def provider() -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return ids, x

    path = tmp_path / "indexes" / "m.vsi"
    a = load_or_rebuild(path, fingerprint="m@1:300:299", vectors_provider=provider, dim=16)
    assert len(calls) == 1 and path.is_file() and len(a) == 300  # missing file: rebuilt and saved
    b = load_or_rebuild(path, fingerprint="m@1:300:299", vectors_provider=provider, dim=16)
    assert len(calls) == 1 and len(b) == 300  # fingerprint matches: the file is used
    c = load_or_rebuild(path, fingerprint="m@1:301:300", vectors_provider=provider, dim=16)
    assert len(calls) == 2 and c.fingerprint == "m@1:301:300"  # stale: rebuilt
    assert FaissVectorIndex.load(path).fingerprint == "m@1:301:300"
    path.write_bytes(path.read_bytes()[:100])  # a crash left a damaged file
    d = load_or_rebuild(path, fingerprint="m@1:301:300", vectors_provider=provider, dim=16)
    assert len(calls) == 3 and len(d) == 300
    np.testing.assert_array_equal(d.search(x[:5], 1)[1][:, 0], ids[:5])


def test_dimension_and_shape_errors() -> None:
    index = FaissVectorIndex(16)
    with pytest.raises(DimensionMismatch, match="16"):
        index.add([1], np.ones((1, 8)))
    with pytest.raises(DimensionMismatch):
        index.search(np.ones(15), 3)
    with pytest.raises(VectorIndexError, match="2 ids for 3 vectors"):
        index.add([1, 2], np.ones((3, 16)))
    with pytest.raises(VectorIndexError, match="NaN"):
        index.add([1], np.full((1, 16), np.nan))
    with pytest.raises(VectorIndexError, match="integers"):
        index.add([1.5], np.ones((1, 16)))
    with pytest.raises(VectorIndexError):
        FaissVectorIndex(0)
    assert issubclass(DimensionMismatch, ValueError)


def test_concurrent_searches_and_adds() -> None:
    x = clustered(4_000, 16, seed=10)
    index = FaissVectorIndex(16, hnsw_threshold=1_500)
    index.add(np.arange(1_000), x[:1_000])
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for i in range(100):
                _, found = index.search(x[i], 5)
                assert (found >= 0).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    for lo in range(1_000, 4_000, 500):
        index.add(np.arange(lo, lo + 500), x[lo : lo + 500])
    for t in threads:
        t.join()
    assert not errors and len(index) == 4_000 and index.kind == "hnsw"


def _vec(id_: int, version: int, d: int = 8) -> np.ndarray:
    return np.random.default_rng([id_, version]).standard_normal(d).astype(np.float32)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(0, 60), min_size=1, max_size=15)),
        st.tuples(st.just("remove"), st.lists(st.integers(0, 60), max_size=15)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_random_add_remove_sequences_match_a_dict_model(ops: list[tuple[str, list[int]]]) -> None:
    index = FaissVectorIndex(8, hnsw_threshold=20, rebuild_ratio=0.3)
    model: dict[int, np.ndarray] = {}
    for step, (op, id_list) in enumerate(ops):
        if op == "add":
            vecs = np.stack([_vec(i, step) for i in id_list])
            index.add(id_list, vecs)
            for i, v in zip(id_list, vecs, strict=True):
                model[i] = v
        else:
            removed = index.remove(id_list)
            assert removed == len(set(id_list) & model.keys())
            for i in id_list:
                model.pop(i, None)
        assert len(index) == len(model)
        assert sorted(index.ids().tolist()) == sorted(model)
    if not model:
        assert (index.search(np.ones(8), 3)[1] == -1).all()
        return
    keys = sorted(model)
    mat = np.stack([model[i] for i in keys])
    _, found = index.search(mat, 1)
    np.testing.assert_array_equal(found[:, 0], keys)  # each live vector finds itself
    _, every = index.search(mat[0], len(model) + 2)
    assert set(every[0, : len(model)].tolist()) == set(keys) and (every[0, len(model) :] == -1).all()
    np.testing.assert_allclose(index.get(keys), unit(mat), atol=1e-5)
