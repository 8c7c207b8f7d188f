"""Workspace settings: overrides of ``Settings`` made at run time (the Settings page, the CLI, the API).

One row per dotted key (``embed.model``, ``import_roots``, ``offline`` …) with its value as JSON.
Precedence when a Studio opens: environment > workspace (these rows) > built-in default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class WorkspaceSetting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
