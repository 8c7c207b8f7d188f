"""The duplicate-detection libraries alone: dihedral hashes, multi-index search against brute force,
components, the keeper rule, group names, semantic pairs; and the perceptual layer's precision and
recall on transformed copies of real photos (``benchmarks/duplicates.py``'s evaluation set)."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data as skdata

from vistudio.ingest import dedup
from vistudio.ingest.near_dups import _popcount
from vistudio.ml.embed.dedup import similar_pairs, similarity_groups

ROOT = Path(__file__).resolve().parents[2]
T = Image.Transpose
PIL_OPS = (
    None,
    T.ROTATE_90,
    T.ROTATE_180,
    T.ROTATE_270,
    T.FLIP_LEFT_RIGHT,
    T.FLIP_TOP_BOTTOM,
    T.TRANSPOSE,
    T.TRANSVERSE,
)
NUMPY_OPS = (
    lambda a: a,
    lambda a: np.rot90(a, 1),
    lambda a: np.rot90(a, 2),
    lambda a: np.rot90(a, 3),
    lambda a: a[:, ::-1],
    lambda a: a[::-1, :],
    lambda a: a.T,
    lambda a: np.rot90(a, 2).T,
)


def _photo(name: str = "astronaut", side: int = 256) -> Image.Image:
    im = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    im.thumbnail((side, side))
    return im


def test_variant_blocks_are_the_dct_of_the_turned_pixels() -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (32, 32))
    block = scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)[:8, :8]
    for op, variant in zip(NUMPY_OPS, dedup.variant_blocks(block), strict=True):
        turned = op(pixels)
        expected = scipy.fft.dct(scipy.fft.dct(turned, axis=0), axis=1)[:8, :8]
        np.testing.assert_allclose(variant, expected, atol=1e-6)


def test_dihedral_hashes_match_imagehash() -> None:
    im = _photo()
    hashes = dedup.dihedral_hashes(im)
    assert len(hashes) == 8 and len(set(hashes)) == 8
    assert hashes[0] == int(str(imagehash.phash(im)), 16)  # the stored hash's definition
    for op, h in zip(PIL_OPS, hashes, strict=True):
        turned = im if op is None else im.transpose(op)
        # Pillow's resize of the turned image differs from the turned resize by rounding only
        assert (int(str(imagehash.phash(turned)), 16) ^ h).bit_count() <= 4


def test_derived_variants_predict_the_exact_ones() -> None:
    for name in ("astronaut", "coffee", "camera"):
        exact = dedup.dihedral_hashes(_photo(name))
        derived = dedup.derived_variants([exact[0]])[0]
        assert int(derived[0]) == exact[0]
        assert int(derived[6]) == exact[6]  # a transpose only moves bits: exact
        assert all((int(d) ^ e).bit_count() <= 8 for d, e in zip(derived, exact, strict=True))


def test_pack_and_unpack() -> None:
    hashes = [0, 1, 2**63, 2**64 - 1, 12345, 2**40, 7, 99]
    blob = dedup.pack_variants(hashes)
    assert len(blob) == 64
    assert dedup.unpack_variants([blob, blob]).tolist() == [hashes, hashes]
    assert dedup.unpack_variants([]).shape == (0, 8)
    with pytest.raises(ValueError):
        dedup.pack_variants([1, 2, 3])
    with pytest.raises(ValueError):
        dedup.unpack_variants([b"short"])


def _brute(variants: np.ndarray, d: int) -> set[tuple[int, int]]:
    out = set()
    for i in range(len(variants)):
        for j in range(i + 1, len(variants)):
            if dedup.dihedral_distance(variants[i], variants[j]) <= d:
                out.add((i, j))
    return out


def _random_variants(rng: np.random.Generator, n: int, *, planted: int, noise: int) -> np.ndarray:
    base = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    for c in rng.choice(n, size=planted, replace=False):
        src = int(rng.integers(0, n))
        v = int(dedup.derived_variants([int(base[src])])[0, int(rng.integers(0, 8))])
        for b in rng.integers(0, 64, size=int(rng.integers(0, noise + 1))):
            v ^= 1 << int(b)
        base[c] = np.uint64(v)
    base[:3] = base[3]  # identical hashes
    return dedup.derived_variants(base)


def _centres(n: int, pairs: set[tuple[int, int]], order: list[int]) -> list[list[int]]:
    """Centre grouping the slow way: in ``order``, an unclaimed item claims its unclaimed near items."""
    near: dict[int, set[int]] = {k: set() for k in range(n)}
    for a, b in pairs:
        near[a].add(b)
        near[b].add(a)
    claimed: set[int] = set()
    out = []
    for a in order:
        free = sorted(b for b in near[a] if b not in claimed)
        if a not in claimed and free:
            claimed.update([a, *free])
            out.append([a, *free])
    return out


@pytest.mark.parametrize("max_distance", [0, 3, 6, 10, 16])
def test_dihedral_pairs_equal_brute_force(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    variants = _random_variants(rng, 300, planted=40, noise=max_distance)
    i, j, d = dedup.dihedral_pairs(variants, max_distance=max_distance)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(found) == len(i)  # each pair once
    expected = _brute(variants, max_distance)
    assert found <= expected
    for a, b, dist in zip(i, j, d, strict=True):
        assert a < b and dist == dedup.dihedral_distance(variants[a], variants[b])
    priority = rng.permutation(300)  # keeper sort keys
    groups = dedup.perceptual_groups(
        variants, max_distance=max_distance, rank=lambda rows: [int(priority[r]) for r in rows]
    )
    order = sorted(range(300), key=lambda r: int(priority[r]))
    assert [g.tolist() for g in groups] == _centres(300, expected, order) and len(groups) >= 20
    for g in groups:  # no chaining: every member is near the keeper, which ranks first
        assert all(dedup.dihedral_distance(variants[g[0]], variants[m]) <= max_distance for m in g[1:])
        assert int(priority[g[0]]) == min(int(priority[m]) for m in g)
    # without repeated own hashes, every near pair is listed
    distinct = np.unique(variants[:, 0], return_index=True)[1]
    rest = variants[np.sort(distinct)]
    ri, rj, _ = dedup.dihedral_pairs(rest, max_distance=max_distance)
    assert set(zip(ri.tolist(), rj.tolist(), strict=True)) == _brute(rest, max_distance)


@settings(max_examples=30, deadline=None)
@given(
    hashes=st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=0, max_size=40),
    d=st.integers(min_value=0, max_value=12),
)
def test_near_pairs_property(hashes: list[int], d: int) -> None:
    values = np.asarray(hashes, dtype=np.uint64)
    queries = np.concatenate([values, values ^ np.uint64(1)]) if len(values) else values
    q, i, dist = dedup.near_pairs(queries, values, max_distance=d)
    found = set(zip(q.tolist(), i.tolist(), strict=True))
    expected = {
        (a, b)
        for a in range(len(queries))
        for b in range(len(values))
        if (int(queries[a]) ^ int(values[b])).bit_count() <= d
    }
    assert found == expected
    assert all(int(_popcount(queries[a] ^ values[b])) == x for a, b, x in zip(q, i, dist, strict=True))


def test_plans_and_bad_distances() -> None:
    assert dedup._plan(8_000, 1_000, 6) == (7, 0)  # few items: exact buckets (pigeonhole)
    chunks, radius = dedup._plan(800_000, 100_000, 6)
    assert radius >= 1 and 64 / chunks <= dedup.MAX_WIDTH  # many: wider chunks, a bit flipped
    with pytest.raises(ValueError):
        dedup.near_pairs(np.zeros(2, np.uint64), np.zeros(2, np.uint64), max_distance=64)
    with pytest.raises(ValueError):
        dedup.dihedral_pairs(np.zeros((3, 4), np.uint64), max_distance=3)
    empty = dedup.dihedral_pairs(np.zeros((1, 8), np.uint64), max_distance=3)
    assert all(len(x) == 0 for x in empty)


def test_a_chain_is_not_one_group() -> None:
    """A–B and B–C within the threshold, A–C not: A (the keeper) takes B, C stays out; with B
    as the keeper, B takes both. Single linkage (``components``) made one group of A, B, C."""
    a = 0x0123456789ABCDEF
    b, c = a ^ 0b111, a ^ 0b111111  # A–B: 3 bits, B–C: 3 bits, A–C: 6 bits
    variants = dedup.derived_variants([a, b, c])
    assert [g.tolist() for g in dedup.components(3, *dedup.dihedral_pairs(variants, max_distance=3)[:2])] == [
        [0, 1, 2]
    ]
    assert [g.tolist() for g in dedup.perceptual_groups(variants, max_distance=3)] == [[0, 1]]
    b_first = dedup.perceptual_groups(variants, max_distance=3, rank=lambda rows: [r != 1 for r in rows])
    assert [g.tolist() for g in b_first] == [[1, 0, 2]]
    # the same for embeddings: cos(A, B) = cos(B, C) = 0.966, cos(A, C) = 0.866
    angles = np.radians([0.0, 15.0, 30.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert [g.tolist() for g in similarity_groups(x, threshold=0.95)] == [[0, 1]]
    mid = similarity_groups(x, threshold=0.95, rank=lambda rows: [r != 1 for r in rows])
    assert [g.tolist() for g in mid] == [[1, 0, 2]]


def test_components() -> None:
    i = np.array([0, 2, 5, 7], dtype=np.int64)
    j = np.array([1, 3, 6, 5], dtype=np.int64)
    groups = dedup.components(9, i, j)
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3], [5, 6, 7]]
    assert dedup.components(5, np.zeros(0, np.int64), np.zeros(0, np.int64)) == []
    assert dedup.components(0, i[:0], j[:0]) == []


def test_keeper_rank_and_group_key() -> None:
    early, late = datetime(2020, 1, 1), datetime(2024, 1, 1)
    ranked = sorted(
        [
            ("small", dedup.keeper_rank(width=100, height=100, when=early, ident=1)),
            ("big-late", dedup.keeper_rank(width=400, height=300, when=late, ident=2)),
            ("big-early", dedup.keeper_rank(width=300, height=400, when=early, ident=3)),
            ("big-undated", dedup.keeper_rank(width=400, height=300, when=None, ident=0)),
            ("big-early-later-id", dedup.keeper_rank(width=400, height=300, when=early, ident=9)),
        ],
        key=lambda x: x[1],
    )
    assert [name for name, _ in ranked] == [
        "big-early",
        "big-early-later-id",
        "big-late",
        "big-undated",
        "small",
    ]
    key = dedup.group_key("perceptual", [3, 1, 2])
    assert key == dedup.group_key("perceptual", [1, 2, 3]) and key.startswith("p-") and len(key) == 14
    assert key != dedup.group_key("perceptual", [1, 2]) != dedup.group_key("semantic", [1, 2])


def test_semantic_pairs_against_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 24)).astype(np.float32)
    x[200:230] = x[:30] + 0.03 * rng.standard_normal((30, 24)).astype(np.float32)
    x[230] = 3 * x[231]  # a stray norm: the same direction
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    expected = {(a, b) for a in range(400) for b in range(a + 1, 400) if sims[a, b] >= 0.95}
    i, j, s = similar_pairs(x, threshold=0.95)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected and len(expected) >= 31
    assert np.all(s >= 0.95 - 1e-5) and np.all(s <= 1.0)
    # the inverted-file path (large collections) finds the same close pairs here
    ai, aj, _ = similar_pairs(x, threshold=0.95, exact_below=100)
    assert set(zip(ai.tolist(), aj.tolist(), strict=True)) == expected
    groups = similarity_groups(x, threshold=0.95)
    assert len(groups) == 31 and [0, 200] in [g.tolist() for g in groups]
    assert similarity_groups(x[:1], threshold=0.9) == []
    with pytest.raises(ValueError):
        similar_pairs(x, threshold=0.0)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        similar_pairs(bad, threshold=0.9)
    with pytest.raises(ValueError):
        similar_pairs(np.zeros(5, np.float32), threshold=0.9)


def _benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("bench_duplicates", ROOT / "benchmarks" / "duplicates.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_perceptual_precision_and_recall_on_transformed_copies() -> None:
    """20 photos × 8 transforms + 20 unrelated pictures, through the import's probe."""
    result = _benchmark().quality([6], side=256)["thresholds"]["6"]
    ours, plain = result["dihedral"], result["plain (baseline)"]
    print({k: v for k, v in ours["per_transform"].items()}, ours["precision"], ours["recall"])
    assert ours["precision"] >= 0.98 and ours["unrelated_in_a_group"] == 0
    for kind in ("resize_50", "jpeg_q60", "rot90", "rot180", "rot270", "flip_h", "flip_v"):
        assert ours["per_transform"][kind]["recall"] >= 0.95, kind
        assert ours["per_transform"][kind]["precision"] >= 0.95, kind
    assert ours["per_transform"]["crop_5pct"]["recall"] >= 0.3  # phash is not made for crops
    assert ours["recall"] >= 0.85 and ours["recall"] > plain["recall"] + 0.5
    assert plain["per_transform"]["rot90"]["recall"] <= 0.1  # what the dihedral variants add
    derived = result["derived"]
    assert derived["precision"] >= 0.98 and derived["recall"] >= 0.75


def test_speed_benchmark_agrees_with_brute_force() -> None:
    out = _benchmark().speed(1500, 400, 6)
    assert out["same_pairs_as_brute_force"] is True and out["planted_grouped"] == 1.0


@pytest.mark.slow
def test_similar_but_distinct_digits_do_not_chain() -> None:
    """The demo's digits (similar, none a copy of another) plus 40 true copies, at 6 bits."""
    row = _benchmark().similar_but_distinct([6])["thresholds"]["6"]
    ours, chained = row["keeper centre"], row["single linkage (before)"]
    assert ours["max_bits_to_keeper"] <= 6 < chained["max_bits_to_keeper"]
    assert ours["largest_group"] * 3 < chained["largest_group"]
    assert ours["precision"] > 3 * chained["precision"] and ours["copy_recall"] >= 0.95
    assert ours["false_pairs"] * 5 < chained["false_pairs"]
