"""Videos found in library folders (services/videos.py).

One ``videos`` row per video file under a library root (``path`` relative to the root, posix),
with what its container said and the ``size``/``mtime`` it had when it was read, so that an
unchanged video is not decoded again. Its keyframes are samples of the project (``samples.video_id``
and ``samples.video_time``); ``poster_sample_id`` is the one the library grid shows. A file that is
not a usable video keeps its reason in ``error`` and no keyframes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (
        UniqueConstraint("root_id", "path"),
        Index("ix_videos_project", "project_id", "path", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # SET NULL: a root unregistered by other means leaves rows the next scan of the project removes
    root_id: Mapped[int | None] = mapped_column(ForeignKey("library_roots.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float]
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    container: Mapped[str | None] = mapped_column(String(16))
    codec: Mapped[str | None] = mapped_column(String(40))
    duration: Mapped[float | None]
    fps: Mapped[float | None]
    frames: Mapped[int | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    created_at: Mapped[datetime | None]  # UTC: the container's creation_time, else the file's mtime
    created_source: Mapped[str | None] = mapped_column(String(16))  # container | file
    poster_sample_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="SET NULL"))
    keyframes: Mapped[int] = mapped_column(default=0)
    cuts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    scanned_at: Mapped[datetime] = mapped_column(default=utcnow)
