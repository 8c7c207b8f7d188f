"""text index: one text document per sample, indexed by SQLite FTS5 (bm25) or PostgreSQL full text

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# The document's fields, in the FTS5 column order (services.text_index.FIELDS says the same).
_FIELDS = ("name", "caption", "tags", "labels", "camera", "place", "people")


def upgrade() -> None:
    # One row per indexed sample: the folded text of each field. It is the content table of the
    # SQLite FTS5 index (external content: the text is kept once, here, and FTS5 reads it back for
    # highlight()) and carries the tsvector on PostgreSQL.
    op.create_table(
        "text_documents",
        sa.Column("sample_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        *[sa.Column(f, sa.Text(), nullable=False) for f in _FIELDS],
        sa.ForeignKeyConstraint(
            ["sample_id"],
            ["samples.id"],
            name=op.f("fk_text_documents_sample_id_samples"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_text_documents_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sample_id", name=op.f("pk_text_documents")),
    )
    op.create_index(
        op.f("ix_text_documents_project_id"), "text_documents", ["project_id", "sample_id"], unique=False
    )
    # Projects whose index is not complete (every project that had samples before this migration):
    # the search queues a rebuild job for them and answers "text index building: N of M" meanwhile,
    # so an upgrade of a large workspace does not stall for minutes inside the migration.
    op.create_table(
        "text_index_pending",
        sa.Column("project_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_text_index_pending_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_text_index_pending")),
    )
    op.execute("INSERT INTO text_index_pending (project_id) SELECT DISTINCT project_id FROM samples")

    bind = op.get_bind()
    cols = ", ".join(_FIELDS)
    if bind.dialect.name == "sqlite":
        op.execute(
            f"CREATE VIRTUAL TABLE text_fts USING fts5({cols}, content='text_documents', "
            "content_rowid='sample_id', tokenize='unicode61 remove_diacritics 2', prefix='2 3')"
        )
        new = ", ".join(f"new.{f}" for f in _FIELDS)
        old = ", ".join(f"old.{f}" for f in _FIELDS)
        op.execute(
            "CREATE TRIGGER text_documents_ai AFTER INSERT ON text_documents BEGIN "
            f"INSERT INTO text_fts(rowid, {cols}) VALUES (new.sample_id, {new}); END"
        )
        op.execute(
            "CREATE TRIGGER text_documents_ad AFTER DELETE ON text_documents BEGIN "
            f"INSERT INTO text_fts(text_fts, rowid, {cols}) "
            f"VALUES ('delete', old.sample_id, {old}); END"
        )
        op.execute(
            "CREATE TRIGGER text_documents_au AFTER UPDATE ON text_documents BEGIN "
            f"INSERT INTO text_fts(text_fts, rowid, {cols}) "
            f"VALUES ('delete', old.sample_id, {old}); "
            f"INSERT INTO text_fts(rowid, {cols}) VALUES (new.sample_id, {new}); END"
        )
    else:
        # 'simple': names and places are not English, so no stemming or stop words. The weights
        # rank a hit in a person, tag or label above one in a place or camera, then caption, name.
        op.execute(
            "ALTER TABLE text_documents ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
            "setweight(to_tsvector('simple', people || ' ' || tags || ' ' || labels), 'A') || "
            "setweight(to_tsvector('simple', place || ' ' || camera), 'B') || "
            "setweight(to_tsvector('simple', caption), 'C') || "
            "setweight(to_tsvector('simple', name), 'D')) STORED"
        )
        op.execute("CREATE INDEX ix_text_documents_tsv ON text_documents USING gin (tsv)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("text_documents_ai", "text_documents_ad", "text_documents_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS text_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_text_documents_tsv")
    op.drop_table("text_index_pending")
    op.drop_index(op.f("ix_text_documents_project_id"), table_name="text_documents")
    op.drop_table("text_documents")
