"""Albums of a project's photos (``services/albums.py``).

- ``albums``: a manual album (its photos chosen by hand, in the user's order) or a smart album
  (``query`` in the search box's syntax: its photos are worked out when read, so photos that
  arrive later join it). ``cover_sample_id``: the user's cover (NULL: the first photo);
  ``deleted_at``: a deleted album kept for its undo (purged after ``services.albums.KEEP_DELETED``).
  Names are unique among a project's albums that are not deleted (a partial unique index).
- ``album_photos``: a manual album's photos; ``position`` orders them (sparse integers, gaps of
  ``services.albums.GAP``, renumbered when a move finds no room). Deleting a photo removes it
  from its albums (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Album(Base):
    __tablename__ = "albums"
    __table_args__ = (
        Index(
            "ux_albums_project_name",
            "project_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))  # manual | smart
    query: Mapped[str | None] = mapped_column(Text)  # smart albums: the query as typed
    cover_sample_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]


class AlbumPhoto(Base):
    __tablename__ = "album_photos"
    __table_args__ = (Index("ix_album_photos_order", "album_id", "position", "sample_id"),)

    album_id: Mapped[int] = mapped_column(ForeignKey("albums.id", ondelete="CASCADE"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(BigInteger)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
