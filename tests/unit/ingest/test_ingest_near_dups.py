from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vistudio.ingest.near_dups import hamming, near_duplicate_groups


def brute_force_groups(hashes: dict[int, str], max_distance: int) -> list[list[int]]:
    keys = sorted(hashes)
    parent = {k: k for k in keys}

    def find(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if hamming(hashes[a], hashes[b]) <= max_distance:
                parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for k in keys:
        groups.setdefault(find(k), []).append(k)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


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


def test_groups_are_transitive_components() -> None:
    chain = {0: as_hex(0), 1: as_hex(0b111), 2: as_hex(0b111111)}  # 0-1: 3 bits, 1-2: 3 bits, 0-2: 6
    assert near_duplicate_groups(chain, max_distance=3) == [[0, 1, 2]]


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
