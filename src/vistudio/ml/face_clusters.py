"""Grouping faces into people: constrained single-linkage over a k-nearest-neighbour graph.

Every face is a node; the ``k`` nearest neighbours of each free face closer than ``threshold``
are the candidate edges (exact k-NN up to 4·10⁹ distances — 63,000 faces re-grouped, or 1,000
new faces among 4,000,000 — HNSW above, approximate). Edges are taken shortest first
(Kruskal, ties broken by face order, so the result is deterministic) and join two groups only when
every rule holds:

- two groups that belong to two different people never join (a person is never merged by the
  clustering: only a user merges people);
- two faces of one photo are never one person (twins, a person and their reflection);
- a face the user said is "not this person" never joins that person's group (cannot-link);
- the faces of the two groups are, on average (root mean square over every pair across them),
  closer than ``threshold`` as well — single linkage alone chains two people together through a
  run of in-between faces, and two look-alikes whose centres are closer than the threshold through
  their nearest faces; this guard (average linkage, stronger than comparing centroids) stops both;
- a face that would join a person is ambiguous, and stays free, when another person's nearest face
  is within ``margin`` of the best (the nearest person, with a margin over the second best).

Seeds are the faces already decided (a user's, and in an incremental run the clustering's own
earlier ones): their groups start joined to their person. What the run returns is, for the free
faces, the person each joined, and the new groups of at least ``min_faces`` free faces that joined
no person (new people). Free faces in smaller groups stay without a person. Asked for (``near``),
it also gives the nearest faces of some faces within a longer ``reach``, from the same search
(the review's suggestions: the person of a face's nearest placed face).

A library module: NumPy and FAISS arrays in, plain dicts and lists out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

EXACT_WORK = 4_000_000_000  # distances (faces × queries): exact k-NN up to this, HNSW above
NEAR_K = 20  # the nearest faces a face's ``near`` list looks at


@dataclass
class Clustering:
    assigned: dict[int, int] = field(default_factory=dict)  # free face index → person id
    new_groups: list[list[int]] = field(default_factory=list)  # groups of free face indices
    ambiguous: list[int] = field(default_factory=list)  # free faces close to two people
    # the search's results for the faces of ``near`` (read with ``near_of``)
    _rows: dict[int, int] = field(default_factory=dict)  # face → its row in the results
    _squared: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 1), np.float32))
    _neighbours: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    _members: list[int] = field(default_factory=list)
    _reach: float = 0.0

    def near_of(self, face: int) -> list[tuple[int, float]]:
        """A face of ``near``'s nearest faces among the seeds and the free ones — ``(face,
        distance)`` closer than ``reach``, nearest first, itself left out (``[]`` for any other)."""
        r = self._rows.get(face)
        if r is None:
            return []
        dist = np.sqrt(np.maximum(self._squared[r], 0)).tolist()
        out = []
        for c, d in zip(self._neighbours[r].tolist(), dist, strict=True):
            if c >= 0 and d < self._reach and (g := self._members[c]) != face:
                out.append((g, float(d)))
        return out


def knn_edges(
    vectors: npt.NDArray[np.float32],
    *,
    k: int,
    threshold: float,
    queries: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``(i, j, distance)`` with ``i < j`` for the ``k`` nearest neighbours closer than
    ``threshold`` (Euclidean) of each face of ``queries`` (indices; default: every face), each
    pair once, sorted by distance then ``i`` then ``j``. Exact search unless both the faces and
    the queries are many (over ``EXACT_WORK`` distances): then HNSW, approximate."""
    n = vectors.shape[0]
    rows_of = np.arange(n, dtype=np.int64) if queries is None else np.asarray(queries, dtype=np.int64)
    if n < 2 or len(rows_of) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    squared, neighbours = nearest_faces(x, x[rows_of], k=min(k + 1, n), ef_k=k)
    return _edges(rows_of, squared, neighbours, n, threshold)


def nearest_faces(
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    *,
    k: int,
    ef_k: int | None = None,
    exact: bool | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """FAISS's ``(squared distances, indices into base)`` of the ``k`` nearest ``base`` rows of
    each query (-1: none): exact up to ``EXACT_WORK`` distances (or as ``exact`` says), HNSW above
    (``ef_k``: the ``k`` its search breadth is sized for, ``k`` by default)."""
    import faiss

    index: Any
    if exact if exact is not None else base.shape[0] * len(queries) <= EXACT_WORK:
        index = faiss.IndexFlatL2(base.shape[1])
    else:
        index = faiss.IndexHNSWFlat(base.shape[1], 16)
        index.hnsw.efConstruction = 40
        index.hnsw.efSearch = max(48, 2 * (k if ef_k is None else ef_k))
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    squared, neighbours = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return squared, neighbours.astype(np.int64)


def _edges(
    rows_of: npt.NDArray[np.int64],
    squared: npt.NDArray[np.float32],
    neighbours: npt.NDArray[np.int64],
    n: int,
    threshold: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``knn_edges``'s pairs from a search of the faces ``rows_of``."""
    rows = np.repeat(rows_of, neighbours.shape[1])
    cols = neighbours.reshape(-1).astype(np.int64)
    dist = np.sqrt(np.maximum(squared.reshape(-1), 0)).astype(np.float32)
    keep = (cols >= 0) & (cols != rows) & (dist < threshold)
    i, j, dist = np.minimum(rows, cols)[keep], np.maximum(rows, cols)[keep], dist[keep]
    # a pair found from both ends counts once, at its shorter distance
    key = i * n + j
    order = np.lexsort((dist, key))
    key, dist = key[order], dist[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, dist = key[first], dist[first]
    i, j = key // n, key % n
    order = np.lexsort((j, i, dist))
    return i[order], j[order], dist[order]


def find_root(parent: list[int], a: int) -> int:
    """Union-find's root of ``a``, halving the path on the way."""
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _spread(
    sum_a: npt.NDArray[np.float64],
    sq_a: float,
    n_a: int,
    sum_b: npt.NDArray[np.float64],
    sq_b: float,
    n_b: int,
) -> float:
    """The root mean square distance between the faces of two groups (every face of one with every
    face of the other: E‖a − b‖² = E‖a‖² + E‖b‖² − 2 μa·μb), from each group's sum of vectors and
    of squared norms. It is at least the centroids' distance, and grows with how spread both are."""
    mean = sq_a / n_a + sq_b / n_b - 2 * float((sum_a / n_a) @ (sum_b / n_b))
    return float(np.sqrt(max(mean, 0.0)))


def cluster_faces(
    vectors: npt.NDArray[np.float32],
    photos: npt.ArrayLike,
    *,
    seeds: Mapping[int, Iterable[int]],
    free: Iterable[int],
    rejected: Iterable[tuple[int, int]] = (),
    threshold: float = 0.5,
    margin: float = 0.04,
    min_faces: int = 3,
    k: int = 10,
    near: Iterable[int] = (),
    reach: float = 0.6,
) -> Clustering:
    """Group ``free`` faces (indices into ``vectors``) among themselves and into the people of
    ``seeds`` (person id → face indices). ``photos`` holds each face's photo; ``rejected`` the
    (face index, person id) pairs a user ruled out. Faces in neither ``seeds`` nor ``free`` take no
    part (too small, too unsure). For the faces of ``near`` (any), ``Clustering.near_of`` lists
    their ``NEAR_K`` nearest seed and free faces closer than ``reach``, from the same search."""
    photo = np.asarray(photos)
    free_list = sorted(set(free))
    near_list = sorted(set(near))
    if not free_list and not near_list:
        return Clustering()  # nothing to place: the seeds stay as they are
    members = sorted({i for faces in seeds.values() for i in faces} | set(free_list))
    local = {g: n for n, g in enumerate(members)}
    x = np.asarray(vectors, dtype=np.float32)[members]
    parent = list(range(len(members)))
    person: dict[int, int] = {}
    seed_person = np.full(len(members), -1, dtype=np.int64)
    total: dict[int, npt.NDArray[np.float64]] = {}
    squares: dict[int, float] = {}  # a group's sum of its faces' squared norms
    count: dict[int, int] = {}
    in_photos: dict[int, set[int]] = {}
    for pid, faces in seeds.items():  # each person's faces start as one group
        idx = [local[f] for f in faces]
        if not idx:
            continue
        root = idx[0]
        for n in idx[1:]:
            parent[n] = root
        seed_person[idx] = pid
        person[root] = pid
        total[root] = x[idx].sum(axis=0, dtype=np.float64)
        squares[root] = float((x[idx].astype(np.float64) ** 2).sum())
        count[root] = len(idx)
        in_photos[root] = {int(v) for v in photo[[members[n] for n in idx]]}
    free_local = [local[f] for f in free_list]
    for n in free_local:
        total[n] = x[n].astype(np.float64)
        squares[n] = float(total[n] @ total[n])
        count[n] = 1
        in_photos[n] = {int(photo[members[n]])}
    no_go: dict[int, set[int]] = {}
    for f, p in rejected:
        if f in local:
            no_go.setdefault(find_root(parent, local[f]), set()).add(p)

    def find(a: int) -> int:
        return find_root(parent, a)

    def join(a: int, b: int) -> int:
        if count[a] < count[b]:
            a, b = b, a
        parent[b] = a
        total[a] = total[a] + total.pop(b)
        squares[a] += squares.pop(b)
        count[a] += count.pop(b)
        in_photos[a] |= in_photos.pop(b)
        if b in no_go:
            no_go.setdefault(a, set()).update(no_go.pop(b))
        if b in person:
            person[a] = person.pop(b)
        return a

    is_free = np.zeros(len(members), dtype=bool)
    is_free[free_local] = True
    # one search: the free faces' neighbours (the edges, from the first k + 1), and the nearest
    # faces of the ``near`` ones that are not free (searched as well, from their own vectors)
    n = len(members)
    extra = [g for g in near_list if g not in local or not is_free[local[g]]]
    columns = min((max(k, NEAR_K) if near_list else k) + 1, n)
    if n >= 1 and (free_local or extra):
        queries = np.concatenate([x[free_local], np.asarray(vectors, dtype=np.float32)[extra]]).reshape(
            -1, x.shape[1]
        )
        # exact or not as the grouping alone would be (the extra queries change nothing there)
        exact = n * (len(free_local) or len(extra)) <= EXACT_WORK
        squared, neighbours = nearest_faces(x, queries, k=columns, ef_k=k, exact=exact)
    else:
        squared, neighbours = np.zeros((0, 1), np.float32), np.zeros((0, 1), np.int64)
    rows_of = np.asarray(free_local, dtype=np.int64)
    head = min(k + 1, n)
    ii, jj, dd = (
        _edges(rows_of, squared[: len(free_local), :head], neighbours[: len(free_local), :head], n, threshold)
        if free_local and n >= 2
        else (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    )
    # per free face: its nearest face of each seed person (for the margin rule)
    nearest: dict[int, dict[int, float]] = {}
    for a, b, d in zip(ii.tolist(), jj.tolist(), dd.tolist(), strict=True):
        for u, v in ((a, b), (b, a)):
            if is_free[u] and seed_person[v] >= 0:
                best = nearest.setdefault(u, {})
                pid = int(seed_person[v])
                best[pid] = min(best.get(pid, np.inf), d)
    out = Clustering()
    ambiguous = set()
    for u, best in nearest.items():
        ranked = sorted(best.values())
        if len(ranked) > 1 and ranked[1] - ranked[0] < margin:
            ambiguous.add(u)
    for a, b, _ in zip(ii.tolist(), jj.tolist(), dd.tolist(), strict=True):
        if not (is_free[a] or is_free[b]) or a in ambiguous or b in ambiguous:
            continue
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        pa, pb = person.get(ra), person.get(rb)
        if pa is not None and pb is not None:
            continue
        if in_photos[ra] & in_photos[rb]:
            continue
        if (pa is not None and pa in no_go.get(rb, ())) or (pb is not None and pb in no_go.get(ra, ())):
            continue
        if _spread(total[ra], squares[ra], count[ra], total[rb], squares[rb], count[rb]) >= threshold:
            continue
        join(ra, rb)

    groups: dict[int, list[int]] = {}
    for n in free_local:
        groups.setdefault(find(n), []).append(members[n])
    for root, faces in sorted(groups.items(), key=lambda kv: kv[1][0]):
        if root in person:
            out.assigned.update(dict.fromkeys(faces, person[root]))
        elif len(faces) >= min_faces:
            out.new_groups.append(sorted(faces))
    out.ambiguous = sorted(members[a] for a in ambiguous)
    # the near faces' rows of the search (the free ones' own, or their extra one)
    if len(squared):
        wanted = set(near_list)
        out._rows = {g: r for r, g in enumerate(members[a] for a in free_local) if g in wanted}
        out._rows.update({g: len(free_local) + r for r, g in enumerate(extra)})
    out._squared, out._neighbours, out._members, out._reach = squared, neighbours, members, reach
    return out
