"""Faces found in a project's photos, the people they are grouped into, and the user's decisions.

- ``faces``: one row per face: its box and 5 landmarks (normalised to the photo as displayed), the
  detector's score, the descriptor (float32 little-endian bytes) and a small WebP crop. The crop
  lives in the row, not in the blob store: deleting a photo, a project or a person's faces
  leaves no file behind (privacy), and a list of faces never loads it (deferred).
  ``person_id`` groups it; ``assigned`` says who decided: ``manual`` (a user: kept by every
  re-cluster, a must-link) or ``auto`` (the clustering). A face without a person keeps the review's
  suggestion for it (``services.people``): ``suggested_person_id``, the person of its nearest
  placed face (``suggested_face_id``) at ``suggested_distance``; no suggestion within reach is
  ``suggested_distance`` -1, and none worked out yet is NULL.
- ``face_scans``: per (sample, model), that the photo was processed and how many faces it has, so
  a face job re-processes a photo only when the model changes — also photos without any face.
- ``people``: a project's people; ``name`` is unique in the project (unnamed people have none).
- ``face_rejections``: "not this person" — the face never goes back to that person (a cannot-link).
- ``people_changes``: each user decision about people, with the state of the faces, people and
  rejections it touched before and after it, so that it can be undone and redone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    hidden: Mapped[bool] = mapped_column(default=False)
    cover_face_id: Mapped[int | None]  # a face of this person (checked on write; no FK: faces point here)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Face(Base):
    __tablename__ = "faces"
    __table_args__ = (
        Index("ix_faces_project_model", "project_id", "model", "id"),
        Index("ix_faces_person", "person_id", "id"),
        # the People pages read these from the index alone (migration 0017)
        Index("ix_faces_person_sample", "person_id", "sample_id"),
        Index("ix_faces_project_model_sample", "project_id", "model", "sample_id"),
        Index("ix_faces_project_model_person", "project_id", "model", "person_id"),
        # the review, surest first, from the index alone; a person's or a face's suggestions
        # (migration 0018)
        Index(
            "ix_faces_review",
            "project_id",
            "model",
            "person_id",
            "suggested_distance",
            "id",
            "suggested_person_id",
        ),
        Index("ix_faces_suggested_person", "suggested_person_id"),
        Index("ix_faces_suggested_face", "suggested_face_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    x: Mapped[float]
    y: Mapped[float]
    w: Mapped[float]
    h: Mapped[float]
    landmarks: Mapped[list[Any]] = mapped_column(default=list)
    score: Mapped[float]
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    crop: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    assigned: Mapped[str | None] = mapped_column(String(8))  # manual | auto | NULL (no person)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # no foreign keys (SQLite adds such a column in place): who deletes a person clears them
    suggested_person_id: Mapped[int | None]
    suggested_distance: Mapped[float | None]
    suggested_face_id: Mapped[int | None]


class FaceScan(Base):
    __tablename__ = "face_scans"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    faces: Mapped[int] = mapped_column(default=0)
    scanned_at: Mapped[datetime] = mapped_column(default=utcnow)


class FaceRejection(Base):
    __tablename__ = "face_rejections"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PeopleChange(Base):
    __tablename__ = "people_changes"
    __table_args__ = (Index("ix_people_changes_project", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(String(400))
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    undone: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
