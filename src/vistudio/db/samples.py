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
        # the timeline's order (services/timeline.py, migration 0020)
        Index("ix_samples_project_time", "project_id", "sort_time", "id"),
        Index("ix_samples_project_gps", "project_id", "gps_lat", "gps_lon", "id"),  # the map (0024)
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
    # the file's modification time when it was imported or scanned, local wall clock like EXIF
    # dates: the timeline's date of a photo without an EXIF date (services/timeline.py)
    file_time: Mapped[datetime | None]
    # the timeline's date: taken_at, else file_time (None: neither), set with them by every writer
    # (services/places.fill_new_samples); a plain column, not an index on the expression, so that
    # Alembic's batch table rebuilds on SQLite keep its index (they cannot reflect expressions)
    sort_time: Mapped[datetime | None]
    # names of the place at the GPS position (services/places.py); ``place_lookup`` is the
    # gazetteer that answered, NULL while the position was not looked up
    place_city: Mapped[str | None] = mapped_column(String(200))
    place_region: Mapped[str | None] = mapped_column(String(200))
    place_country: Mapped[str | None] = mapped_column(String(200))
    place_country_code: Mapped[str | None] = mapped_column(String(2))
    place_lookup: Mapped[str | None] = mapped_column(String(40))
    # a keyframe of a library video (services/videos.py, migration 0021): the video and its time (s);
    # no foreign key (SQLite would rebuild samples to add one): the videos service deletes the
    # keyframes before their video
    video_id: Mapped[int | None] = mapped_column(index=True)
    video_time: Mapped[float | None]


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


class TimelinePending(Base):
    """A project whose photos predate migration 0020: their file dates and place names are filled
    by a ``places`` job (services/places.py), queued on the project's first timeline view."""

    __tablename__ = "timeline_pending"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    job_id: Mapped[int | None]
