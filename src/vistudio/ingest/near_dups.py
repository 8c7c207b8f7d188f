"""Group images whose 64-bit perceptual hashes are within a Hamming distance.

Comparing every pair is O(n²): 5·10⁹ comparisons for 100,000 images. Instead we use the
pigeonhole multi-index trick: split the 64 bits into ``max_distance + 1`` chunks; two hashes
that differ in at most ``max_distance`` bits must agree exactly on at least one chunk. So
only hashes sharing a chunk value (one bucket) are compared, vectorised with numpy, and the
near pairs are joined with union-find into connected components.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import numpy as np

_BITS = 64
# Row block for comparing one bucket: bounds the temporary matrix to ~32 MB of uint64.
_BLOCK_CELLS = 1 << 22


class _Sortable(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Sortable)


def parse_hash(value: str) -> int:
    """The integer of a hex hash of at most 64 bits; ``ValueError`` otherwise."""
    text = value.strip().lower()
    if not 0 < len(text) <= _BITS // 4 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not a 64-bit hex hash: {value!r}")
    return int(text, 16)


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes."""
    return (parse_hash(a) ^ parse_hash(b)).bit_count()


def near_duplicate_groups(hashes: Mapping[K, str], *, max_distance: int = 6) -> list[list[K]]:
    """Connected components (size >= 2) of items whose hashes are within ``max_distance`` bits.

    Identical hashes are always grouped. Each group is sorted, and groups are sorted by their
    first element. Cost is roughly linear in the number of items for well-spread hashes.
    """
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    keys = list(hashes)
    if len(keys) < 2:
        return []
    # Work on distinct hash values: identical hashes join for free and cannot blow up buckets.
    unique: dict[int, int] = {}
    key_slot = [unique.setdefault(parse_hash(hashes[k]), len(unique)) for k in keys]
    values = np.fromiter(unique.keys(), dtype=np.uint64, count=len(unique))

    parent = list(range(len(values)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    if len(values) > 1 and max_distance > 0:
        if max_distance >= _BITS:
            for i in range(1, len(values)):
                union(0, i)
        else:
            _join_near_pairs(values, max_distance, union)

    components: dict[int, list[K]] = {}
    for key, slot in zip(keys, key_slot, strict=True):
        components.setdefault(find(slot), []).append(key)
    groups = [sorted(members) for members in components.values() if len(members) >= 2]
    groups.sort(key=lambda g: g[0])
    return groups


def _chunks(count: int) -> list[tuple[int, int]]:
    """(shift, mask) of ``count`` nearly equal bit chunks covering 64 bits."""
    out: list[tuple[int, int]] = []
    shift = 0
    for i in range(count):
        width = _BITS // count + (1 if i < _BITS % count else 0)
        out.append((shift, (1 << width) - 1))
        shift += width
    return out


def _popcount(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def _join_near_pairs(
    values: np.ndarray[Any, Any], max_distance: int, union: Callable[[int, int], None]
) -> None:
    for shift, mask in _chunks(max_distance + 1):
        chunk = (values >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(chunk, kind="stable")
        sorted_chunk = chunk[order]
        bounds = np.flatnonzero(sorted_chunk[1:] != sorted_chunk[:-1]) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(sorted_chunk)]))
        multi = (ends - starts) > 1
        for start, end in zip(starts[multi].tolist(), ends[multi].tolist(), strict=True):
            _join_bucket(values, order[start:end], max_distance, union)


def _join_bucket(
    values: np.ndarray[Any, Any],
    members: np.ndarray[Any, Any],
    max_distance: int,
    union: Callable[[int, int], None],
) -> None:
    bucket = values[members]
    size = len(bucket)
    block = max(1, _BLOCK_CELLS // size)
    for row in range(0, size, block):
        rows = bucket[row : row + block]
        dist = _popcount(rows[:, None] ^ bucket[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + row
        upper = jj > ii  # each unordered pair once, and never an item with itself
        for i, j in zip(members[ii[upper]].tolist(), members[jj[upper]].tolist(), strict=True):
            union(i, j)
