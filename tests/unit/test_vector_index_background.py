"""FaissVectorIndex: background HNSW builds with an atomic swap, and the filtered-search paths
(exact gather, exact flat scan through a bitmap) against brute force."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vistudio.ml.embed import FaissVectorIndex, load_or_rebuild
from vistudio.ml.embed import faiss_index as fi

D = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def vectors(n: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32))


def brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = unit(q) @ x.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


class GatedIndex(FaissVectorIndex):
    """A FaissVectorIndex whose background build waits at a gate (a build that takes long)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail: BaseException | None = None

    def _fill(self, index: Any, vecs: np.ndarray) -> None:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail is not None:
            raise self.fail
        super()._fill(index, vecs)


def run_in_thread(fn: Any, timeout: float = 10.0) -> Any:
    """Call ``fn`` in a thread and return its result; fails if it does not finish in time
    (i.e. it waited for the build)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the call waited for the background build"
    return out[0]


def test_search_during_a_build_uses_the_old_state_and_the_swap_brings_the_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fi, "CATCH_UP_LOCKED", 50)  # the unlocked catch-up rounds run too
    x = vectors(4_000, 1)
    ids = np.arange(4_000, dtype=np.int64) * 5 + 2
    index = GatedIndex(D, hnsw_threshold=2_000, ef_search=64, background=True)
    index.add(ids[:1_999], x[:1_999])
    index.add(ids[1_999:2_500], x[1_999:2_500])  # crosses the threshold: a build starts
    assert index.building and index.entered.wait(10)
    assert index.kind == "exact" and len(index) == 2_500  # the add itself did not wait

    q = vectors(20, 2)
    _, found = run_in_thread(lambda: index.search(q, 10))
    np.testing.assert_array_equal(found, brute(x[:2_500], ids[:2_500], q, 10)[1])  # old (exact) state

    # changes during the build: new ids, removals, a replaced vector
    index.add(ids[2_500:3_000], x[2_500:3_000])
    assert index.remove(ids[:300]) == 300
    index.add(ids[400:401], x[3_999:4_000])  # id 400's vector is now x[3999]
    assert index.kind == "exact" and index.building

    rebuilds = index.rebuilds
    index.gate.set()
    assert index.wait_build(30) and not index.building and index.build_error is None
    assert index.kind == "hnsw" and index.rebuilds >= rebuilds + 1  # swapped in
    assert len(index) == 2_700 and index.tombstones == 301  # the removed and replaced rows
    assert set(index.ids().tolist()) == set(ids[300:3_000].tolist())
    np.testing.assert_allclose(index.get(ids[400:401]), x[3_999:4_000], atol=1e-6)
    # the vectors added during the build are found after the swap; the removed ones never are
    _, found = index.search(x[2_500:3_000], 1)
    np.testing.assert_array_equal(found[:, 0], ids[2_500:3_000])
    _, found = index.search(x[:300], 10)
    assert not np.isin(found, ids[:300]).any() and (found >= 0).all()
    _, found = index.search(x[3_999], 1)
    assert found[0, 0] == ids[400]


def test_a_failed_build_keeps_the_old_state_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    x = vectors(2_200, 3)
    ids = np.arange(2_200, dtype=np.int64)
    index = GatedIndex(D, hnsw_threshold=2_000, background=True)
    index.fail = MemoryError("no room for the graph")
    index.add(ids, x)
    index.gate.set()
    with caplog.at_level(logging.ERROR, logger=fi.__name__):
        assert index.wait_build(30)
    assert index.build_error == "MemoryError: no room for the graph"
    assert "background HNSW build failed" in caplog.text
    assert index.kind == "exact" and len(index) == 2_200 and not index.building
    _, found = index.search(x[:50], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:50])  # still answers, exactly
    index.fail = None
    index.rebuild()  # a later build works
    assert index.wait_build(30) and index.kind == "hnsw" and index.build_error is None


def test_concurrent_searches_during_the_swap_never_fail() -> None:
    x = vectors(6_000, 4)
    ids = np.arange(6_000, dtype=np.int64) + 10
    index = GatedIndex(D, hnsw_threshold=3_000, ef_search=64, background=True, exact_filter_max=100)
    index.add(ids[:3_000], x[:3_000])
    assert index.building
    stop = threading.Event()
    errors: list[BaseException] = []
    kinds: set[str] = set()
    allowed = ids[:3_000:7]
    rounds = [0, 0, 0]

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                rounds[seed] += 1
                kinds.add(index.kind)
                j = int(rng.integers(0, 3_000))
                _, found = index.search(x[j], 5)
                assert (found >= 0).all() and found[0, 0] == ids[j]
                _, found = index.search(x[j], 5, allowed=allowed)
                assert np.isin(found, allowed).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    index.add(ids[3_000:3_500], x[3_000:3_500])

    def all_past(marks: list[int]) -> None:
        deadline = time.monotonic() + 30
        while min(r - m for r, m in zip(rounds, marks, strict=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    all_past([0, 0, 0])  # every searcher ran on the old state
    index.gate.set()
    assert index.wait_build(30)
    all_past(list(rounds))  # and on the new one
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[0]
    assert index.kind == "hnsw" and len(index) == 3_500 and kinds == {"exact", "hnsw"}


def test_on_swap_runs_before_wait_build_returns_and_a_rebuild_after_removals(tmp_path: Path) -> None:
    x = vectors(3_000, 5)
    ids = np.arange(3_000, dtype=np.int64)
    path = tmp_path / "i.npz"
    saved: list[str] = []

    def save(index: FaissVectorIndex) -> None:
        index.save(path, fingerprint="m@1")
        saved.append(index.kind)

    index = FaissVectorIndex(D, hnsw_threshold=1_000, background=True, on_swap=save)
    index.add(ids, x)
    assert index.wait_build(30) and saved == ["hnsw"]
    assert FaissVectorIndex.load(path).kind == "hnsw"
    index.remove(ids[:1_000])  # 33 % tombstones: a background rebuild
    assert index.wait_build(30) and saved == ["hnsw", "hnsw"]
    assert index.tombstones == 0 and index.rows == 2_000


def test_a_file_saved_mid_build_builds_its_graph_when_loaded(tmp_path: Path) -> None:
    x = vectors(2_500, 6)
    ids = np.arange(2_500, dtype=np.int64)
    index = GatedIndex(D, hnsw_threshold=2_000, background=True)
    index.add(ids, x)
    path = tmp_path / "i.npz"
    index.save(path, fingerprint="m@1:2500")  # while the graph is still being built
    index.gate.set()
    index.wait_build(30)
    assert FaissVectorIndex.load(path).kind == "exact"

    def provider() -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("the file matches: not read again")

    loaded = load_or_rebuild(path, fingerprint="m@1:2500", vectors_provider=provider, dim=D, background=True)
    assert loaded.wait_build(30) and loaded.kind == "hnsw" and len(loaded) == 2_500


CRASH = """
import os, sys
import numpy as np
from vistudio.ml.embed import FaissVectorIndex
index = FaissVectorIndex.load(sys.argv[1])
index.background = True
index.on_swap = lambda i: i.save(sys.argv[1], fingerprint="new")
def crash(*args):
    os._exit(9)  # killed in the middle of the build
index._fill = crash
index.remove(np.arange(1_000))
index.wait_build(30)
"""


@pytest.mark.slow
def test_a_process_killed_mid_build_leaves_the_old_file(tmp_path: Path) -> None:
    x = vectors(3_000, 7)
    ids = np.arange(3_000, dtype=np.int64)
    index = FaissVectorIndex(D, hnsw_threshold=1_000)
    index.add(ids, x)
    path = tmp_path / "i.npz"
    index.save(path, fingerprint="old")
    before = path.read_bytes()
    out = subprocess.run([sys.executable, "-c", CRASH, str(path)], capture_output=True, timeout=120)
    assert out.returncode == 9, out.stderr.decode()[-2000:]
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["i.npz"]
    loaded = FaissVectorIndex.load(path)
    assert loaded.fingerprint == "old" and len(loaded) == 3_000


# -- filtered search against brute force ---------------------------------------------------------

N = 3_000
X = vectors(N, 8)
IDS = np.arange(N, dtype=np.int64) * 3 + 1
Q = vectors(4, 9)


@pytest.fixture(scope="module")
def indexes() -> dict[str, FaissVectorIndex]:
    exact = FaissVectorIndex(D, exact_filter_max=40)
    exact.add(IDS, X)
    hnsw = FaissVectorIndex(D, hnsw_threshold=1_000, exact_filter_max=40)
    hnsw.exact_filter_fraction = 1.0  # every filter above 40 ids: the exact flat scan
    hnsw.add(IDS, X)
    for index in (exact, hnsw):
        index.remove(IDS[::11])  # tombstones inside filters are never returned
    return {"exact": exact, "hnsw": hnsw}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, N - 1), max_size=400),
    extra=st.lists(st.one_of(st.integers(-50, 0), st.integers(3 * N, 10 * N)), max_size=5),  # unknown
    k=st.integers(1, 12),
    kind=st.sampled_from(["exact", "hnsw"]),
)
def test_filtered_results_equal_brute_force(
    indexes: dict[str, FaissVectorIndex], picks: list[int], extra: list[int], k: int, kind: str
) -> None:
    index = indexes[kind]
    allowed = np.concatenate([IDS[picks], np.asarray(extra, dtype=np.int64), IDS[picks[:20]]])  # repeats
    scores, found = index.search(Q, k, allowed=allowed)
    live = np.unique([p for p in picks if p % 11])
    n = min(k, live.size)
    assert (found[:, n:] == -1).all() and np.isneginf(scores[:, n:]).all()
    if n:
        t_scores, t_ids = brute(X[live], IDS[live], Q, n)
        np.testing.assert_array_equal(found[:, :n], t_ids)
        np.testing.assert_allclose(scores[:, :n], t_scores, atol=1e-5)


def _vec(id_: int, version: int) -> np.ndarray:
    return np.random.default_rng([id_, version]).standard_normal(8).astype(np.float32)


changes = st.lists(
    st.tuples(st.sampled_from(["add", "remove"]), st.lists(st.integers(0, 80), min_size=1, max_size=12)),
    max_size=10,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=changes, locked=st.sampled_from([0, 5, 10_000]))
def test_changes_during_a_build_match_a_dict_model(
    monkeypatch: pytest.MonkeyPatch, ops: list[tuple[str, list[int]]], locked: int
) -> None:
    """Adds, replacements and removals while the graph builds are all in the swapped-in state."""
    monkeypatch.setattr(fi, "CATCH_UP_LOCKED", locked)  # 0: every catch-up round runs unlocked
    index = GatedIndex(8, hnsw_threshold=30, background=True, rebuild_ratio=0.5)
    model = {i: _vec(i, 1_000) for i in range(40)}
    index.add(list(model), np.stack(list(model.values())))
    assert index.building
    for step, (op, id_list) in enumerate(ops):
        if op == "add":
            vecs = np.stack([_vec(i, step) for i in id_list])
            index.add(id_list, vecs)
            model.update(zip(id_list, vecs, strict=True))
        else:
            assert index.remove(id_list) == len(set(id_list) & model.keys())
            for i in id_list:
                model.pop(i, None)
    index.gate.set()
    assert index.wait_build(30) and index.build_error is None
    assert len(index) == len(model) and sorted(index.ids().tolist()) == sorted(model)
    assert index._id_to_row == {int(i): r for r, i in enumerate(index._row_ids) if index._live[r]}
    if model:
        keys = sorted(model)
        mat = np.stack([model[i] for i in keys])
        np.testing.assert_allclose(index.get(keys), unit(mat), atol=1e-5)
        _, found = index.search(mat, 1)
        np.testing.assert_array_equal(found[:, 0], keys)  # each live vector finds itself
