from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Sample(Base):
    """One image in a project. ``storage`` is ``copy`` (file in media/) or ``reference`` (user's path)."""

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256"),
        Index("ix_samples_project_name", "project_id", "name", "id"),
        Index("ix_samples_project_taken", "project_id", "taken_at", "id"),
        Index("ix_samples_project_bytes", "project_id", "bytes", "id"),
        Index("ix_samples_project_dup", "project_id", "dup_group"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    storage: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    width: Mapped[int]
    height: Mapped[int]
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    taken_at: Mapped[datetime | None]
    camera_make: Mapped[str | None] = mapped_column(String(200))
    camera_model: Mapped[str | None] = mapped_column(String(200))
    lens: Mapped[str | None] = mapped_column(String(200))
    gps_lat: Mapped[float | None]
    gps_lon: Mapped[float | None]
    orientation: Mapped[int | None]
    phash: Mapped[str] = mapped_column(String(16))
    exif: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dup_group: Mapped[int | None]
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotation(Base):
    """Ground truth (``score`` NULL) or a prediction. Geometry follows ``vistudio.ingest.types``."""

    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    class_id: Mapped[int | None] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    geometry: Mapped[dict[str, Any] | None]
    score: Mapped[float | None]


class SampleTag(Base):
    __tablename__ = "sample_tags"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)
