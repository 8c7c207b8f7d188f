"""Dataset versions: immutable snapshots of a project's samples and their labels.

A version stores no annotation: the edit history is append-only (``vistudio.db.changes``), so the
labels as they were when the version was made are the current ones with the edits made since taken
back — ``watermark`` is the newest change the version includes. ``members`` is the sorted list of
its sample ids, delta-encoded and compressed (100,000 ids take a few kilobytes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_dataset_versions_number"),
        UniqueConstraint("project_id", "name", name="uq_dataset_versions_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]  # 1, 2, … within the project
    name: Mapped[str] = mapped_column(String(100))
    watermark: Mapped[int]  # the newest change included (0: none)
    members: Mapped[bytes] = mapped_column(LargeBinary)
    samples: Mapped[int]
    # per class, how many samples carry it: {"cat": 12, …}, for the list and the diff
    classes: Mapped[dict[str, Any]]
    auto: Mapped[bool] = mapped_column(default=False)  # made when an experiment started
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
