from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class Run(Base):
    """One execution of a pipeline. ``id`` is readable (``20261123-181502-a1b2c3``): it names folders."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_pipeline_started", "pipeline", "started_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    version_hash: Mapped[str] = mapped_column(String(16))
    tag: Mapped[str | None] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    items: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    mistakes: Mapped[int] = mapped_column(default=0)
    duration_ms: Mapped[float | None]
    peak_memory_mb: Mapped[float | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs_dir: Mapped[str | None] = mapped_column(Text)
    audit_path: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(Text)
    bytes_saved: Mapped[int] = mapped_column(BigInteger, default=0)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class RunStage(Base):
    __tablename__ = "run_stages"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int]
    ok: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    total_ms: Mapped[float] = mapped_column(default=0.0)
    outputs_saved: Mapped[int] = mapped_column(default=0)


class RunOutput(Base):
    """A file the run saved (``kind`` file) or a blob it references (``kind`` artifact)."""

    __tablename__ = "run_outputs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    item: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
