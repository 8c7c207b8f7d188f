"""Captions of photos (``services/captions.py``).

``captions``: per photo, one row per captioning model and version (``model`` the model's name,
``version`` the fingerprint of its files) and at most one written by the user (``model`` "user",
``version`` ""). The caption a photo shows is the user's, else the one of the model the workspace
captions with; a model's run never touches the user's row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow

USER = "user"


class Caption(Base):
    __tablename__ = "captions"
    __table_args__ = (Index("ix_captions_project_model", "project_id", "model", "version"),)

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(300), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
