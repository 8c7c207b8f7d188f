from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Split(Base):
    """A saved split is immutable: ``locked`` is set when it is created and never cleared."""

    __tablename__ = "splits"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    ratios: Mapped[dict[str, Any]]
    seed: Mapped[int]
    locked: Mapped[bool] = mapped_column(default=True)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SplitMember(Base):
    __tablename__ = "split_members"
    __table_args__ = (Index("ix_split_members_subset", "split_id", "subset"),)

    split_id: Mapped[int] = mapped_column(ForeignKey("splits.id", ondelete="CASCADE"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    subset: Mapped[str] = mapped_column(String(32))
