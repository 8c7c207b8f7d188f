"""Group images whose 64-bit perceptual hashes are within a Hamming distance.

Comparing every pair is O(n²): 5·10⁹ comparisons for 100,000 images. Instead we use the
pigeonhole multi-index trick: split the 64 bits into ``max_distance + 1`` chunks; two hashes
that differ in at most ``max_distance`` bits must agree exactly on at least one chunk. So
only hashes sharing a chunk value (one bucket) are compared, vectorised with numpy.

Near pairs become groups by :func:`centre_groups`, the one grouping rule of every duplicate
layer (perceptual at import and in the review, semantic): each group has a centre, its keeper,
and every member is within the threshold *of the centre*. Joining pairs into connected
components instead (single linkage) chains: on similar but distinct pictures (scanned digits)
A–B and B–C each within 6 bits made one group of 56 images up to 24 bits apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

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


def centre_groups(
    n: int, i: npt.ArrayLike, j: npt.ArrayLike, *, order: npt.ArrayLike | None = None
) -> list[npt.NDArray[np.int64]]:
    """Groups of ``n`` items joined by near pairs ``(i[k], j[k])``, without chaining.

    Items are visited in ``order`` (the keeper priority, best first; default ``0..n-1``). An
    item not yet claimed that still has unclaimed near items becomes a centre and claims them
    all: every member is a near pair *with its centre*, never only with another member. A centre
    comes before each of its members in ``order`` (a member seen earlier would have claimed the
    centre itself), so the centre is also the group's keeper. Returns arrays with the centre
    first and the other members ascending, in the order the centres were found; groups have at
    least two members and no item is in two groups.
    """
    a = np.asarray(i, dtype=np.int64).reshape(-1)
    b = np.asarray(j, dtype=np.int64).reshape(-1)
    if len(a) != len(b):
        raise ValueError("i and j must have the same length")
    if n <= 0 or len(a) == 0:
        return []
    loops = a != b
    src = np.concatenate([a[loops], b[loops]])
    dst = np.concatenate([b[loops], a[loops]])
    by_src = np.argsort(src, kind="stable")
    neighbours = dst[by_src]
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=starts[1:])
    visit = np.arange(n, dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
    if not np.array_equal(np.sort(visit), np.arange(n)):
        raise ValueError("order must be a permutation of 0..n-1")
    visit = visit[np.diff(starts)[visit] > 0]  # items without near pairs never group
    claimed = np.zeros(n, dtype=bool)
    groups: list[npt.NDArray[np.int64]] = []
    for x in visit.tolist():
        if claimed[x]:
            continue
        near = neighbours[starts[x] : starts[x + 1]]
        free = np.unique(near[~claimed[near]])
        if len(free) == 0:
            continue
        claimed[x] = True
        claimed[free] = True
        groups.append(np.concatenate([np.array([x], dtype=np.int64), free]))
    return groups


Rank = Callable[[npt.NDArray[np.int64]], Sequence[Any]]


def priority_order(n: int, candidates: npt.ArrayLike, rank: Rank | None) -> npt.NDArray[np.int64]:
    """An ``order`` for :func:`centre_groups`: the ``candidates`` (the items that may group) by
    their sort keys ``rank(candidates)`` (best first, ties by index), then every other item.

    Only the candidates are ranked, so a caller that looks keys up (a database) asks for few.
    """
    cand = np.unique(np.asarray(candidates, dtype=np.int64).reshape(-1))
    if rank is not None and len(cand):
        keys = list(rank(cand))
        if len(keys) != len(cand):
            raise ValueError("rank must give one key per candidate")
        cand = cand[sorted(range(len(cand)), key=lambda k: (keys[k], int(cand[k])))]
    rest = np.ones(n, dtype=bool)
    rest[cand] = False
    return np.concatenate([cand, np.flatnonzero(rest)]).astype(np.int64)


def near_duplicate_groups(
    hashes: Mapping[K, str], *, max_distance: int = 6, rank: Callable[[K], Any] | None = None
) -> list[list[K]]:
    """Groups (size >= 2) of items whose hashes are within ``max_distance`` bits of the group's
    centre (:func:`centre_groups`; ``rank`` orders the candidates for centre, best first, by
    default the keys themselves).

    Identical hashes are always grouped. Each group starts with its centre, the rest sorted
    (with the default rank the whole group is sorted); groups are sorted by their first
    element. Cost is roughly linear in the number of items for well-spread hashes.
    """
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    keys = sorted(hashes, key=rank) if rank is not None else sorted(hashes)
    if len(keys) < 2:
        return []
    # Work on distinct hash values: identical hashes join for free and cannot blow up buckets.
    # Slots are numbered in rank order, so the first key of a slot is its best.
    unique: dict[int, int] = {}
    key_slot = [unique.setdefault(parse_hash(hashes[k]), len(unique)) for k in keys]
    values = np.fromiter(unique.keys(), dtype=np.uint64, count=len(unique))
    pairs: list[tuple[int, int]] = []
    if len(values) > 1 and max_distance > 0:
        if max_distance >= _BITS:
            pairs = [(0, s) for s in range(1, len(values))]
        else:
            _join_near_pairs(values, max_distance, lambda a, b: pairs.append((a, b)))
    members: dict[int, list[K]] = {}
    for key, slot in zip(keys, key_slot, strict=True):
        members.setdefault(slot, []).append(key)
    si = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
    sj = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
    groups: list[list[K]] = []
    grouped: set[int] = set()
    for g in centre_groups(len(values), si, sj):
        centre, *rest = (int(x) for x in g)
        grouped.update((centre, *rest))
        first, *same = members[centre]
        groups.append([first, *sorted([*same, *(k for s in rest for k in members[s])])])
    for slot, ks in members.items():
        if slot not in grouped and len(ks) >= 2:
            groups.append([ks[0], *sorted(ks[1:])])
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
    values: np.ndarray[Any, Any], max_distance: int, on_pair: Callable[[int, int], None]
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
            _join_bucket(values, order[start:end], max_distance, on_pair)


def _join_bucket(
    values: np.ndarray[Any, Any],
    members: np.ndarray[Any, Any],
    max_distance: int,
    on_pair: Callable[[int, int], None],
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
            on_pair(i, j)
