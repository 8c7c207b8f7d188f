"""Photo library tables: the folders a library project indexes in place, and the files found there.

A ``library_files`` row is one file under a root (``path`` relative to the root, posix) with the
``size`` and ``mtime`` it had when it was last read and the ``sha256`` of its bytes. Its
``sample_id`` is the project's sample with that content: several files with identical bytes are
several rows pointing at one sample (samples are unique per ``(project, sha256)``). A file that is
not a usable image keeps ``sample_id`` NULL and its reason in ``error``, so that an unchanged bad
file is not read again on every scan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base, utcnow


class LibraryRoot(Base):
    """A folder registered with a library project (reference mode: its files are never modified).

    ``last_report`` is this root's part of the last successful scan's report.
    """

    __tablename__ = "library_roots"
    __table_args__ = (UniqueConstraint("project_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_scan_at: Mapped[datetime | None]
    last_report: Mapped[dict[str, Any] | None]


class LibraryFile(Base):
    """One file under a library root. ``seen_at``: when a scan last read it (new, changed or
    touched); an unchanged file is not written again, so a rescan of a large library writes
    nothing but what changed (the root's ``last_scan_at`` says when it was last seen whole)."""

    __tablename__ = "library_files"
    __table_args__ = (
        UniqueConstraint("root_id", "path"),
        Index("ix_library_files_sample", "sample_id"),
        Index("ix_library_files_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("library_roots.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float]
    sha256: Mapped[str | None] = mapped_column(String(64))
    sample_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    # the user removed its sample from the project (duplicates review): scans leave the file out
    # until that decision is undone
    excluded: Mapped[bool] = mapped_column(default=False, server_default=false())
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
