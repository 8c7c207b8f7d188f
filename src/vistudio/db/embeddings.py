"""Embeddings: the models that made vectors, the vectors, and each project's embedding sets.

- ``embedding_models``: one row per (architecture ``name``, ``version``) — the version is the
  pretrained tag, the checkpoint's sha256, or ``untrained-seed0``.
- ``embeddings``: one float32 vector per (sample, model): the primary key makes a rerun after a
  crash leave exactly one. ``project_id`` is denormalised from the sample so that a project's
  vectors and their fingerprint are one indexed range.
- ``embedding_sets``: per (project, model), the progress of embedding that project with that
  model (``building`` until every sample was processed once, then ``complete``).
- ``active_embeddings``: per project, the model whose vectors searches use. It switches, in the
  same transaction that completes the new set, only when that set is complete.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class EmbeddingModel(Base):
    __tablename__ = "embedding_models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    pretrained: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(200))
    checkpoint: Mapped[str | None] = mapped_column(Text)
    dim: Mapped[int]
    device: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Embedding(Base):
    __tablename__ = "embeddings"
    # covering: a project's fingerprint (count, sum of ids, newest) is read from the index alone
    __table_args__ = (
        Index("ix_embeddings_model_project", "model_id", "project_id", "created_at", "sample_id"),
    )

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("embedding_models.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, dim values
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmbeddingSet(Base):
    __tablename__ = "embedding_sets"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("embedding_models.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))  # building | complete
    embedded: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    device: Mapped[str | None] = mapped_column(String(32))
    # made with a model named in the request (not the configured one): a change of the
    # configured model does not re-embed it
    explicit: Mapped[bool] = mapped_column(default=False)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class ActiveEmbedding(Base):
    __tablename__ = "active_embeddings"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("embedding_models.id", ondelete="CASCADE"))
    switched_at: Mapped[datetime] = mapped_column(default=utcnow)
