"""A project's photos grouped into events (``services/events.py``, ``ml/events.py``).

- ``events``: one row per event: its first and last photo dates, how many photos, a cover photo,
  its place (the most frequent place name of its photos) and its name — worked out from the
  place and the dates, or the user's (``named``: kept by every recomputation).
- ``event_photos``: the event of each photo (a photo is in at most one; photos without a date are
  in none).
- ``event_decisions``: the user's merges and splits, as the photo where an event must (``cut``)
  or must not (not ``cut``) start; every recomputation applies them on top of the rules.
- ``event_states``: per project, what the last computation saw (photos and the largest photo
  id), so that a change of the photos queues a new one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_project_start", "project_id", "start_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    named: Mapped[bool] = mapped_column(default=False)  # the user's name
    place: Mapped[str | None] = mapped_column(String(200))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    photos: Mapped[int]
    cover_sample_id: Mapped[int | None]  # one of its photos (no FK: checked on write)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EventPhoto(Base):
    __tablename__ = "event_photos"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)


class EventDecision(Base):
    __tablename__ = "event_decisions"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    cut: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventState(Base):
    __tablename__ = "event_states"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    samples: Mapped[int]
    max_sample_id: Mapped[int]
    job_id: Mapped[int | None]
    computed_at: Mapped[datetime | None]
