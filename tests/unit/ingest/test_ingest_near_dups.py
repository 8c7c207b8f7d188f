from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vistudio.ingest.near_dups import centre_groups, hamming, near_duplicate_groups, priority_order


def brute_force_groups(hashes: dict[int, str], max_distance: int) -> list[list[int]]:
    """Centre grouping the slow way: visit keys in order; an unclaimed key with unclaimed near
    keys becomes a centre and claims them all."""
    keys = sorted(hashes)
    claimed: set[int] = set()
    groups = []
    for a in keys:
        if a in claimed:
            continue
        near = [
            b for b in keys if b != a and b not in claimed and hamming(hashes[a], hashes[b]) <= max_distance
        ]
        if near:
            claimed.update([a, *near])
            groups.append(sorted([a, *near]))
    return sorted(groups, key=lambda g: g[0])


def as_hex(value: int) -> str:
    return f"{value:016x}"


def test_hamming() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("0000000000000000", "ffffffffffffffff") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2
    with pytest.raises(ValueError):
        hamming("xyz", "00")


def test_groups_small_example() -> None:
    hashes = {
        "c.jpg": "ffff0000ffff0000",
        "a.jpg": "ffff0000ffff0001",  # 1 bit from c
        "b.jpg": "0f0f0f0f0f0f0f0f",
        "d.jpg": "0f0f0f0f0f0f0f0f",  # identical to b
        "e.jpg": "123456789abcdef0",
    }
    assert near_duplicate_groups(hashes) == [["a.jpg", "c.jpg"], ["b.jpg", "d.jpg"]]
    assert near_duplicate_groups(hashes, max_distance=0) == [["b.jpg", "d.jpg"]]
    assert near_duplicate_groups({}) == []
    assert near_duplicate_groups({1: "ff"}) == []


def test_groups_do_not_chain() -> None:
    # A–B: 3 bits, B–C: 3 bits, A–C: 6 bits. Single linkage made one group of all three; every
    # member must be within the threshold of the group's centre (its keeper) instead.
    chain = {0: as_hex(0), 1: as_hex(0b111), 2: as_hex(0b111111)}
    assert near_duplicate_groups(chain, max_distance=3) == [[0, 1]]
    # the keeper rule picks the centre: with B first, B claims both A and C
    assert near_duplicate_groups(chain, max_distance=3, rank=lambda k: k != 1) == [[1, 0, 2]]
    assert near_duplicate_groups(chain, max_distance=6) == [[0, 1, 2]]


def test_centre_groups() -> None:
    i, j = np.array([0, 1, 3, 5]), np.array([1, 2, 4, 5])  # a chain 0–1–2, a pair 3–4, a self-pair
    assert [g.tolist() for g in centre_groups(7, i, j)] == [[0, 1], [3, 4]]
    assert [g.tolist() for g in centre_groups(7, i, j, order=[1, 0, 2, 3, 4, 5, 6])] == [[1, 0, 2], [3, 4]]
    assert [g.tolist() for g in centre_groups(7, i, j, order=[4, 3, 2, 1, 0, 5, 6])] == [[4, 3], [2, 1]]
    assert centre_groups(0, i[:0], j[:0]) == [] and centre_groups(3, i[:0], j[:0]) == []
    with pytest.raises(ValueError):
        centre_groups(7, i, j, order=[0, 0, 1, 2, 3, 4, 5])
    order = priority_order(6, [4, 2, 4], rank=lambda rows: [-int(r) for r in rows])
    assert order.tolist() == [4, 2, 0, 1, 3, 5]


@settings(max_examples=60, deadline=None)
@given(
    seeds=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40),
    plants=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 10), st.integers(0, 2**32)), max_size=40),
    max_distance=st.integers(0, 10),
)
def test_groups_match_brute_force(
    seeds: list[int], plants: list[tuple[int, int, int]], max_distance: int
) -> None:
    values = list(seeds)
    for source, flips, rnd in plants:
        rng = random.Random(rnd)
        value = values[source % len(values)]
        for bit in rng.sample(range(64), flips):
            value ^= 1 << bit
        values.append(value)
    hashes = {i: as_hex(v) for i, v in enumerate(values)}
    assert near_duplicate_groups(hashes, max_distance=max_distance) == brute_force_groups(
        hashes, max_distance
    )


def test_groups_scale_to_many_items() -> None:
    rng = random.Random(7)
    hashes = {i: as_hex(rng.getrandbits(64)) for i in range(100_000)}
    planted = []
    for i in range(0, 2_000, 20):
        value = int(hashes[i], 16)
        for bit in rng.sample(range(64), 5):
            value ^= 1 << bit
        hashes[200_000 + i] = as_hex(value)
        planted.append([i, 200_000 + i])
    groups = near_duplicate_groups(hashes, max_distance=6)
    # Random 64-bit hashes are ~32 bits apart: the planted pairs are the only groups.
    assert groups == planted
