"""Embeddings: encoders and vector index backends (``VectorIndex``; FAISS in ``faiss_index``)."""

from vistudio.ml.embed.faiss_index import FaissVectorIndex, load_or_rebuild
from vistudio.ml.embed.index import (
    DimensionMismatch,
    IndexFileError,
    VectorIndex,
    VectorIndexError,
)

__all__ = [
    "DimensionMismatch",
    "FaissVectorIndex",
    "IndexFileError",
    "VectorIndex",
    "VectorIndexError",
    "load_or_rebuild",
]
