"""The edit history of a project's data: one row per change (a tag or label edit, single or bulk),
one entry per sample it changed, with that sample's state before and after.

Append-only: an undo is a new change that ``reverts`` an earlier one (and a redo reverts the undo),
so the history says who did what, when, and what was taken back. ``before`` / ``after`` hold the
part of the sample the change touched — for a tag change the touched tags the sample had (sorted
names), for a label change its ground-truth class names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Change(Base):
    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # tags | labels
    # what was asked, e.g. {"add": ["blurry"], "remove": []} or {"set": ["cat"]}
    request: Mapped[dict[str, Any]]
    samples: Mapped[int]  # how many samples it changed (its entries)
    actor: Mapped[str] = mapped_column(String(200))  # "cli:alice", "api", "web"
    reverts: Mapped[int | None] = mapped_column(ForeignKey("changes.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChangeEntry(Base):
    __tablename__ = "change_entries"

    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    before: Mapped[list[Any]]
    after: Mapped[list[Any]]
