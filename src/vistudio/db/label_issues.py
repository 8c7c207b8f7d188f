"""Likely label errors found for a project's labels with an experiment's model (confident learning):
one row per scored sample, and what the user decided about it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class LabelIssue(Base):
    __tablename__ = "label_issues"
    __table_args__ = (
        UniqueConstraint("experiment_id", "sample_id"),
        Index("ix_label_issues_experiment_score", "experiment_id", "score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    given: Mapped[str] = mapped_column(Text)
    suggested: Mapped[str] = mapped_column(Text)
    # 1 - cleanlab's label quality (self-confidence of the given label): higher = more likely wrong
    score: Mapped[float]
    flagged: Mapped[bool]  # cleanlab's find_label_issues counts it as an issue
    decision: Mapped[str | None] = mapped_column(String(16))  # accepted | rejected
    change_id: Mapped[int | None]  # the relabelling an accept made
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
