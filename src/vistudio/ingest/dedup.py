"""Duplicate detection under rotation and mirroring (no database): dihedral perceptual hashes,
near pairs by multi-index hashing, groups around a keeper (no chaining), the keeper rule and
group names.

The perceptual hash (``imagehash.phash``, stored per sample at import) thresholds the 8×8
lowest-frequency DCT coefficients of a 32×32 grey image at their median. A rotation by 90° or a
mirror image changes that hash completely, but it acts on the DCT coefficients in a known way: a
left-right mirror multiplies coefficient ``(u, v)`` by ``(-1)^v``, an up-down mirror by
``(-1)^u``, and a transpose swaps ``u`` and ``v`` (rotations are a mirror and a transpose). So one
DCT of a sample's thumbnail gives the exact coefficients of all eight variants (the dihedral
group D4) and so their eight hashes. A copy ``B`` of ``A`` turned by ``g`` then has
``hash(B) ≈ variant_g(A)``: matching ``B``'s own hash against the eight variants of every other
sample finds it.

Without the coefficients (only the stored 64-bit hash), :func:`derived_variants` predicts the
variants from the bits alone: a sign flip becomes a bit flip. That ignores the median moving, so
it costs a few bits of accuracy (about 2–3 on photos); it is the fallback until thumbnails have
been hashed.

Searching: comparing every pair is O(n²). :func:`dihedral_pairs` uses multi-index hashing: split
64 bits into ``c`` chunks; two hashes within ``d`` bits agree within ``d // c`` bits on at least
one chunk, so per chunk only the items in the buckets of the query's chunk value and its few
neighbours (at most 2 flipped bits) are compared — vectorised with numpy, never a Python loop
per pair. ``c`` is chosen per call from the sizes (pigeonhole exact buckets when small, 16-bit
chunks with one flipped bit around 100,000 items).

Grouping: near pairs become groups by ``near_dups.centre_groups`` — candidates are visited in
keeper order (:func:`keeper_rank`) and each unclaimed one claims its unclaimed near items, so every
member is within the threshold of the group's keeper. :func:`components` (single linkage) is kept
only as the benchmark's baseline: it chains similar but distinct pictures into huge groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import combinations, pairwise
from math import comb
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from vistudio.ingest.near_dups import Rank, _chunks, _popcount, centre_groups, parse_hash, priority_order

# The eight variants, in the order they are stored: rotations are counter-clockwise.
DIHEDRAL = ("identity", "rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "transverse")
HASH_SIZE = 8
_SIDE = HASH_SIZE * 4  # imagehash.phash: 32×32 grey pixels, DCT, keep the 8×8 lowest frequencies
_U, _V = np.meshgrid(np.arange(HASH_SIZE), np.arange(HASH_SIZE), indexing="ij")
# (transposed?, sign exponent) per variant: coefficient (u, v) of the variant is
# (-1)^exponent(u, v) × C[(v, u) if transposed else (u, v)]
_ODD_U, _ODD_V = _U % 2, _V % 2
_OPS: tuple[tuple[bool, npt.NDArray[np.int64]], ...] = (
    (False, np.zeros_like(_U)),  # identity
    (True, _ODD_U),  # rot90 = transpose(mirror left-right)
    (False, _ODD_U + _ODD_V),  # rot180
    (True, _ODD_V),  # rot270 = transpose(mirror up-down)
    (False, _ODD_V),  # flip_h: mirror left-right
    (False, _ODD_U),  # flip_v: mirror up-down
    (True, np.zeros_like(_U)),  # transpose
    (True, _ODD_U + _ODD_V),  # transverse = transpose(rot180)
)
MAX_WIDTH = 22  # widest chunk indexed by a counting table (2^22 int64 = 32 MiB)
_PAIR_BLOCK = 1 << 22  # candidate pairs compared at once (bounds temporary memory)
_QUERY_BLOCK = 1 << 16

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


# --- hashes --------------------------------------------------------------------------------------


def dct_block(image: Image.Image) -> npt.NDArray[np.float64]:
    """The 8×8 lowest-frequency DCT-II coefficients of the image as ``imagehash.phash`` sees it."""
    grey = image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    coeffs = scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)
    return np.asarray(coeffs[:HASH_SIZE, :HASH_SIZE])


def variant_blocks(block: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float64]]:
    """The DCT blocks of the eight dihedral variants of the image whose block is ``block``."""
    return [(block.T if transposed else block) * (-1.0) ** sign for transposed, sign in _OPS]


def hash_of_block(block: npt.NDArray[np.float64]) -> int:
    """The 64-bit perceptual hash of a DCT block (bits above the median, row-major, MSB first)."""
    bits = (block > np.median(block)).reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def dihedral_hashes(image: Image.Image) -> list[int]:
    """The perceptual hashes of the image turned and mirrored, in ``DIHEDRAL`` order.

    The first equals ``imagehash.phash(image)``; one DCT serves all eight.
    """
    return [hash_of_block(b) for b in variant_blocks(dct_block(image))]


def _bit_transform() -> tuple[list[npt.NDArray[np.intp]], list[npt.NDArray[np.bool_]]]:
    """Per variant: where each bit comes from, and which bits a sign flip inverts."""
    index = np.arange(HASH_SIZE * HASH_SIZE).reshape(HASH_SIZE, HASH_SIZE)
    sources, flips = [], []
    for transposed, sign in _OPS:
        sources.append((index.T if transposed else index).reshape(-1))
        flips.append((sign % 2 == 1).reshape(-1))
    return sources, flips


_SOURCES, _FLIPS = _bit_transform()


def derived_variants(hashes: U64 | Sequence[int]) -> U64:
    """Predict the eight variant hashes of each 64-bit hash from its bits alone (n → n×8).

    Exact up to the median's move (see the module notes); the identity column is the input.
    """
    values = np.asarray(hashes, dtype=np.uint64).reshape(-1)
    bits = np.unpackbits(values.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    out = np.empty((len(values), len(DIHEDRAL)), dtype=np.uint64)
    for g, (src, flip) in enumerate(zip(_SOURCES, _FLIPS, strict=True)):
        variant = bits[:, src] ^ flip.astype(np.uint8)
        packed = np.ascontiguousarray(np.packbits(variant, axis=1))
        out[:, g] = packed.view(">u8").reshape(-1).astype(np.uint64)
    return out


def pack_variants(hashes: Sequence[int]) -> bytes:
    """Eight hashes as 64 bytes (big-endian uint64s), the stored form."""
    if len(hashes) != len(DIHEDRAL):
        raise ValueError(f"expected {len(DIHEDRAL)} hashes, got {len(hashes)}")
    return np.asarray(hashes, dtype=np.uint64).astype(">u8").tobytes()


def unpack_variants(blobs: Sequence[bytes]) -> U64:
    """Stored 64-byte values → an n×8 uint64 array."""
    if not blobs:
        return np.zeros((0, len(DIHEDRAL)), dtype=np.uint64)
    raw = np.frombuffer(b"".join(blobs), dtype=">u8")
    if raw.size != len(blobs) * len(DIHEDRAL):
        raise ValueError("a stored variant value is not 64 bytes long")
    return raw.reshape(len(blobs), len(DIHEDRAL)).astype(np.uint64)


def hashes_from_hex(values: Iterable[str]) -> U64:
    """Hex perceptual hashes (as stored on samples) → uint64 array."""
    return np.fromiter((parse_hash(v) for v in values), dtype=np.uint64)


def dihedral_distance(a: U64, b: U64) -> int:
    """Bits between two images allowing any rotation or mirror: ``a`` and ``b`` are 8-variant rows."""
    return int(
        min(_popcount(a ^ b[0]).min(), _popcount(b ^ a[0]).min())  # both ways: variants may be derived
    )


# --- search --------------------------------------------------------------------------------------


def _plan(queries: int, items: int, max_distance: int) -> tuple[int, int]:
    """(chunks, sub-radius) with the least estimated work: lookups plus compared candidates."""
    best: tuple[float, int, int] | None = None
    for c in range(3, 65):
        width = -(-64 // c)
        if width > MAX_WIDTH:
            continue
        r = max_distance // c
        if r > 2:
            continue
        keys = sum(comb(width, k) for k in range(r + 1))
        cost = queries * c * keys * (1.0 + items / 2.0 ** (64 // c)) + c * 2.0**width / 8
        if best is None or cost < best[0]:
            best = (cost, c, r)
        if r == 0:
            break  # more chunks than max_distance + 1 only make the buckets bigger
    assert best is not None
    return best[1], best[2]


def _flip_masks(width: int, radius: int) -> I64:
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(width), k)]
    return np.asarray(masks, dtype=np.int64)


def near_pairs(queries: U64, items: U64, *, max_distance: int) -> tuple[I64, I64, I64]:
    """Every (query index, item index, distance) with ``popcount(q ^ item) <= max_distance``.

    Multi-index hashing; a pair may be reported more than once (from several chunks).
    """
    if not 0 <= max_distance < 64:
        raise ValueError("max_distance must be between 0 and 63")
    found: list[tuple[I64, I64, I64]] = []
    if len(queries) == 0 or len(items) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    chunks, radius = _plan(len(queries), len(items), max_distance)
    for shift, mask in _chunks(chunks):
        width = int(mask).bit_length()
        item_keys = ((items >> np.uint64(shift)) & np.uint64(mask)).astype(np.int64)
        order = np.argsort(item_keys, kind="stable")
        starts = np.zeros((1 << width) + 1, dtype=np.int64)
        np.cumsum(np.bincount(item_keys, minlength=1 << width), out=starts[1:])
        flips = _flip_masks(width, radius)
        query_keys = ((queries >> np.uint64(shift)) & np.uint64(mask)).astype(np.int64)
        step = max(1, _QUERY_BLOCK // len(flips))
        for lo in range(0, len(queries), step):
            keys = (query_keys[lo : lo + step, None] ^ flips[None, :]).reshape(-1)
            owner = np.repeat(np.arange(lo, lo + len(query_keys[lo : lo + step])), len(flips))
            first = starts[keys]
            length = starts[keys + 1] - first
            hit = length > 0
            found.extend(_compare(queries, items, order, owner[hit], first[hit], length[hit], max_distance))
    q = np.concatenate([f[0] for f in found]) if found else np.zeros(0, dtype=np.int64)
    i = np.concatenate([f[1] for f in found]) if found else np.zeros(0, dtype=np.int64)
    d = np.concatenate([f[2] for f in found]) if found else np.zeros(0, dtype=np.int64)
    return q, i, d


def _compare(
    queries: U64, items: U64, order: I64, owner: I64, first: I64, length: I64, max_distance: int
) -> Iterable[tuple[I64, I64, I64]]:
    """Expand bucket ranges into candidate pairs, a bounded block at a time, and keep the near ones."""
    if len(length) == 0:
        return
    ends = np.cumsum(length)
    cuts = np.searchsorted(ends, np.arange(_PAIR_BLOCK, int(ends[-1]), _PAIR_BLOCK), side="left")
    bounds = [0, *sorted(set((cuts + 1).tolist())), len(length)]
    for a, b in pairwise(bounds):
        if a >= b:
            continue
        ln = length[a:b]
        rep = np.repeat(np.arange(b - a), ln)
        within = np.arange(int(ln.sum())) - np.repeat(np.cumsum(ln) - ln, ln)
        cand = order[first[a:b][rep] + within]
        qidx = owner[a:b][rep]
        dist = _popcount(queries[qidx] ^ items[cand]).astype(np.int64)
        near = dist <= max_distance
        yield qidx[near], cand[near], dist[near]


def dihedral_pairs(variants: U64, *, max_distance: int) -> tuple[I64, I64, I64]:
    """Pairs ``(i, j, distance)``, ``i < j``, of rows of ``variants`` (n×8, column 0 the image's
    own hash) within ``max_distance`` bits under some rotation or mirror; each pair once, with
    its smallest distance.

    Rows with the same own hash are one search item: they are paired with the first of them
    only, and only that first one is paired with other rows. So the pairs join exactly the
    components brute force would, without listing every pair of a burst of identical frames.
    """
    variants = np.asarray(variants, dtype=np.uint64)
    if variants.ndim != 2 or variants.shape[1] != len(DIHEDRAL):
        raise ValueError("variants must be an n×8 array")
    n = len(variants)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty, empty
    # identical own hashes are one search item (a burst of blank frames must not blow up a bucket)
    uniq, first, inverse = np.unique(variants[:, 0], return_index=True, return_inverse=True)
    same_i = first[inverse]
    dup = same_i != np.arange(n)
    pi, pj, pd = [same_i[dup]], [np.flatnonzero(dup)], [np.zeros(int(dup.sum()), dtype=np.int64)]
    reps = variants[first]  # one row per distinct own hash
    q, item, dist = near_pairs(reps.reshape(-1), uniq, max_distance=max_distance)
    owner = q // len(DIHEDRAL)
    other = owner != item
    a = np.minimum(owner[other], item[other])
    b = np.maximum(owner[other], item[other])
    if len(a):
        order = np.lexsort((dist[other], b, a))
        a, b, d = a[order], b[order], dist[other][order]
        keep = np.ones(len(a), dtype=bool)
        keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        pi.append(first[a[keep]])
        pj.append(first[b[keep]])
        pd.append(d[keep])
    i, j, d = np.concatenate(pi), np.concatenate(pj), np.concatenate(pd)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return lo.astype(np.int64), hi.astype(np.int64), d.astype(np.int64)


def components(n: int, i: I64, j: I64) -> list[I64]:
    """Connected components (size >= 2) of ``n`` nodes joined by edges ``(i[k], j[k])``: sorted
    index arrays, ordered by their first index.

    Single linkage: members may be far apart (A–B and B–C near, A–C not). Groups shown to users
    come from :func:`perceptual_groups` / ``centre_groups``; this is the benchmarks' baseline.
    """
    if n == 0 or len(i) == 0:
        return []
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)
    multi = np.flatnonzero(sizes >= 2)
    if len(multi) == 0:
        return []
    members = np.flatnonzero(sizes[labels] >= 2)
    by_label = members[np.argsort(labels[members], kind="stable")]
    bounds = np.cumsum(sizes[multi])[:-1]
    groups = np.split(by_label, bounds)
    groups.sort(key=lambda g: int(g[0]))
    return [g.astype(np.int64) for g in groups]


def distances_to(variants: U64, keeper: int, rows: I64) -> I64:
    """:func:`dihedral_distance` from row ``keeper`` to each of ``rows`` (vectorised)."""
    k = variants[keeper]
    other = variants[rows]
    return np.minimum(
        _popcount(k[None, :] ^ other[:, :1]).min(axis=1), _popcount(other ^ k[0]).min(axis=1)
    ).astype(np.int64)


def perceptual_groups(variants: U64, *, max_distance: int, rank: Rank | None = None) -> list[I64]:
    """Groups of row indices of ``variants`` (n×8) that are near duplicates *of the group's keeper*
    up to a turn or mirror: every member is within ``max_distance`` bits of it.

    ``rank`` gives the keeper sort key (e.g. :func:`keeper_rank`) of the rows it is handed (only
    rows that may group are asked); without it the first row is preferred. Each group is an array
    with the keeper first and the other members ascending; groups are in keeper order.
    """
    variants = np.asarray(variants, dtype=np.uint64)
    n = len(variants)
    i, j, _ = dihedral_pairs(variants, max_distance=max_distance)
    if n < 2:
        return []
    # rows with the same own hash are one unit (dihedral_pairs pairs only its first row with others)
    _, inverse = np.unique(variants[:, 0], return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    units = int(inverse.max()) + 1
    sizes = np.bincount(inverse, minlength=units)
    ui, uj = inverse[i], inverse[j]
    inter = ui != uj
    involved = np.zeros(units, dtype=bool)
    involved[ui[inter]] = True
    involved[uj[inter]] = True
    involved |= sizes >= 2
    order = priority_order(n, np.flatnonzero(involved[inverse]), rank)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    by_unit = np.lexsort((pos, inverse))  # rows of each unit together, best first
    starts = np.zeros(units + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    head = by_unit[starts[:-1]]  # each unit's best row
    unit_order = np.argsort(pos[head], kind="stable")
    groups: list[I64] = []
    grouped = np.zeros(units, dtype=bool)
    for g in centre_groups(units, ui[inter], uj[inter], order=unit_order):
        grouped[g] = True
        keeper = int(head[g[0]])
        rows = np.concatenate([by_unit[starts[u] : starts[u + 1]] for u in g.tolist()])
        others = np.sort(rows[rows != keeper])
        # a unit's pairs were measured from its first row: re-check from the keeper itself (rows
        # of one unit may mix exact and predicted variants, a bit or two apart)
        others = others[distances_to(variants, keeper, others) <= max_distance]
        if len(others):
            groups.append(np.concatenate([[keeper], others]).astype(np.int64))
    for u in np.flatnonzero(~grouped & (sizes >= 2)).tolist():
        keeper = int(head[u])
        rows = by_unit[starts[u] : starts[u + 1]]
        groups.append(np.concatenate([[keeper], np.sort(rows[rows != keeper])]).astype(np.int64))
    groups.sort(key=lambda g: int(pos[g[0]]))
    return groups


# --- review helpers ------------------------------------------------------------------------------


def keeper_rank(*, width: int, height: int, when: datetime | None, ident: int) -> tuple[Any, ...]:
    """Sort key of the suggested keeper: the largest resolution, then the earliest date, then the
    first imported (lowest id). ``when`` is the date taken, else the import date."""
    return (-(max(width, 0) * max(height, 0)), when is None, when or datetime.max, ident)


def group_key(level: str, members: Iterable[int]) -> str:
    """A short stable name for a group: its level and its exact members (a changed group is new)."""
    text = f"{level}:" + ",".join(str(m) for m in sorted(members))
    return f"{level[:1]}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
