"""The vector index interface shared by every backend (FAISS here, pgvector later).

Conventions, whatever the backend:

- vectors are float32 of a fixed dimension ``d`` and are L2-normalised by the index, so the score
  is the cosine similarity (inner product of unit vectors), higher is better;
- ids are int64 (sample ids); adding an id that is already present replaces its vector;
- ``search`` answers ``(scores (q, k) float32, ids (q, k) int64)``, best first, padded with
  ``-1`` ids and ``-inf`` scores when fewer than ``k`` results exist;
- the database is the source of truth and the index file a cache: see ``load_or_rebuild``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class VectorIndexError(ValueError):
    """Base class of the errors raised by vector indexes."""


class DimensionMismatch(VectorIndexError):
    """Vectors or queries whose dimension differs from the index's."""


class IndexFileError(VectorIndexError):
    """An index file that is missing, truncated, corrupt or of another format/dimension."""


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable nearest-neighbour index of unit vectors keyed by int64 ids."""

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the vectors."""
        ...

    def __len__(self) -> int:
        """Number of live (not removed) vectors."""
        ...

    def __contains__(self, id_: object) -> bool:
        """Whether ``id_`` is live in the index."""
        ...

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add ``vectors`` (n, d) under ``ids`` (n,); ids already present are replaced."""
        ...

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove ``ids`` (n,); unknown ids are ignored. Returns how many were removed."""
        ...

    def search(
        self, query: npt.ArrayLike, k: int, *, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Top ``k`` for ``query`` (d,) or (q, d) → ``(scores (q, k), ids (q, k))``.

        ``allowed`` (m,) restricts the results to those ids: the answer is the true top ``k``
        among them (as good as the index's recall), not the top ``k`` filtered afterwards.
        """
        ...

    def ids(self) -> IdArray:
        """The live ids (n,), in no particular order."""
        ...

    def get(self, ids: npt.ArrayLike) -> FloatArray:
        """The stored (normalised) vectors (n, d) of live ``ids``; KeyError for an unknown id."""
        ...

    def save(self, path: str | Path, *, fingerprint: str = "") -> None:
        """Write the index to ``path`` atomically, tagged with the caller's ``fingerprint``."""
        ...


def as_ids(ids: npt.ArrayLike) -> IdArray:
    """``ids`` as a 1-D contiguous int64 array (n,); refuses non-integer input."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise VectorIndexError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise VectorIndexError(f"ids must be integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_unit_vectors(vectors: npt.ArrayLike, dim: int) -> FloatArray:
    """``vectors`` (n, d) or (d,) as a fresh C-contiguous float32 (n, d) array of unit rows.

    Zero rows stay zero (they score 0 against everything). Raises ``DimensionMismatch`` on a
    wrong ``d`` and ``VectorIndexError`` on NaN or infinite values.
    """
    arr = np.array(vectors, dtype=np.float32, copy=True, order="C")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise DimensionMismatch(f"expected vectors of shape (n, {dim}), got {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatch(f"expected dimension {dim}, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise VectorIndexError("vectors contain NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    np.divide(arr, norms, out=arr, where=norms > 0)
    return arr
