"""The text index's tables: one folded text document per sample, and the projects awaiting a rebuild.

The index proper lives beside ``text_documents`` and is kept by the database itself: on SQLite an
FTS5 table ``text_fts`` (external content, filled by triggers on ``text_documents``), on PostgreSQL
a generated ``tsv`` column with a GIN index. Both are made by migration 0019, not by these models,
because neither can be described portably; ``UNMANAGED_TABLES`` names what the schema comparison
must leave alone.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from vistudio.db.base import Base

# FTS5's virtual table and its shadow tables (SQLite), made by migration 0019.
UNMANAGED_TABLES = frozenset(
    {"text_fts", "text_fts_data", "text_fts_idx", "text_fts_docsize", "text_fts_config", "text_fts_content"}
)
# The generated tsvector column (PostgreSQL), made by migration 0019.
UNMANAGED_COLUMNS = frozenset({("text_documents", "tsv")})
UNMANAGED_INDEXES = frozenset({"ix_text_documents_tsv"})


class TextDocument(Base):
    """A sample's searchable text, field by field, folded (lower case, no diacritics)."""

    __tablename__ = "text_documents"
    __table_args__ = (Index("ix_text_documents_project_id", "project_id", "sample_id"),)

    sample_id: Mapped[int] = mapped_column(
        ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    caption: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)
    labels: Mapped[str] = mapped_column(Text)
    camera: Mapped[str] = mapped_column(Text)
    place: Mapped[str] = mapped_column(Text)
    people: Mapped[str] = mapped_column(Text)


class TextIndexPending(Base):
    """A project whose text index is incomplete (made before the index existed): a rebuild job
    (``job_id``, once queued) fills it and deletes this row."""

    __tablename__ = "text_index_pending"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    job_id: Mapped[int | None]


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: leave the index that migration 0019 makes by hand alone."""
    return not (type_ == "table" and name in UNMANAGED_TABLES)


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object`` hook: the generated ``tsv`` column exists only in the database."""
    if type_ == "column" and reflected and compare_to is None:
        table = getattr(getattr(obj, "table", None), "name", None)
        return (table, name) not in UNMANAGED_COLUMNS
    if type_ == "index" and reflected and compare_to is None:
        return name not in UNMANAGED_INDEXES
    return True
