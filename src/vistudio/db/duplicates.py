"""Duplicate review: dihedral perceptual hashes, review decisions, and samples hidden by them.

``duplicate_hashes`` holds, per sample, the perceptual hash of each of the eight rotations and
flips of its thumbnail (8 × uint64, big-endian, in ``vistudio.ingest.dedup.DIHEDRAL`` order), so
that a rotated or mirrored copy is found without decoding anything again. ``exact`` is False when
the thumbnail could not be read and the variants were derived from the sample's stored hash.

A decision is taken on one group, named by ``group_key`` (a digest of its level and members: a
group that gains or loses a member is a new group, to be reviewed again). ``affected`` lists the
samples the action changed (hidden, or removed from the project), and ``snapshot`` the removed
samples' rows so that a removal can be undone while their blobs have not been collected.
``duplicate_group_cache`` keeps computed groups while what they were computed from is unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class DuplicateHash(Base):
    __tablename__ = "duplicate_hashes"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    variants: Mapped[bytes] = mapped_column(LargeBinary(64))
    exact: Mapped[bool] = mapped_column(default=True)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DuplicateDecision(Base):
    """``action`` is keep | hide | remove; ``keeper_id`` is a sample id (kept as a record: no FK)."""

    __tablename__ = "duplicate_decisions"
    __table_args__ = (UniqueConstraint("project_id", "group_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    group_key: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    keeper_id: Mapped[int | None]
    members: Mapped[list[Any]] = mapped_column(default=list)
    affected: Mapped[list[Any]] = mapped_column(default=list)
    snapshot: Mapped[dict[str, Any] | None]
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class HiddenSample(Base):
    """A sample hidden from browsing by a "hide others" decision (reversible: undo the decision)."""

    __tablename__ = "hidden_samples"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("duplicate_decisions.id", ondelete="SET NULL"), index=True
    )
    hidden_at: Mapped[datetime] = mapped_column(default=utcnow)


class DuplicateGroupCache(Base):
    """Groups computed at one level and threshold, reused while ``fingerprint`` (a digest of what
    they were computed from) is unchanged: semantic grouping takes seconds on a large project."""

    __tablename__ = "duplicate_group_cache"
    __table_args__ = (UniqueConstraint("project_id", "level", "threshold"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(200))
    groups: Mapped[list[Any]] = mapped_column(default=list)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
