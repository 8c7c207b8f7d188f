"""Content-addressed blob store.

Files follow ``vistudio.storage.blobs``: blobs live at ``<root>/<dir>/<ab>/<sha256><suffix>`` where the folder depends on the kind:
originals in ``media/``, thumbnails in ``thumbs/``, everything else in ``artifacts/``. Every blob
has a row in ``artifacts`` (kind, sha256, size, ref_count); the store writes files, the caller's
session records references, and ``gc`` removes blobs nobody references any more.

Thumbnails are keyed by the sha256 of their *original* (``thumbs/ab/<sha>-256.webp``) so that a
sample finds its thumbnail without a lookup; ``verify`` therefore checks them by decoding.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from vistudio.db import Artifact, utcnow
from vistudio.storage.atomic import TMP_PREFIX
from vistudio.storage.blobs import (
    DEFAULT_DIR,
    KIND_DIRS,
    SHA_RE,
    BlobError,
    BlobFiles,
    BlobProblem,
    check_sha,
    sha256_bytes,
)

__all__ = [
    "KIND_DIRS",
    "SHA_RE",
    "ArtifactStore",
    "BlobError",
    "BlobFiles",
    "BlobProblem",
    "check_sha",
    "sha256_bytes",
]


class ArtifactStore(BlobFiles):
    """Blob files plus their rows in ``artifacts``: references are recorded in the caller's session."""

    def acquire(self, session: Session, kind: str, sha: str, *, size: int, ext: str = "", n: int = 1) -> None:
        """Record ``n`` more references to a blob already written."""
        check_sha(sha)
        row = session.scalar(select(Artifact).where(Artifact.kind == kind, Artifact.sha256 == sha))
        if row is None:
            session.add(Artifact(kind=kind, sha256=sha, size=size, ext=ext, ref_count=n, created_at=utcnow()))
            session.flush()
        else:
            row.ref_count += n

    def acquire_many(self, session: Session, refs: list[tuple[str, str, int, str]]) -> None:
        """Record one reference per ``(kind, sha256, size, ext)`` in one statement per blob kind.

        An upsert (insert, or add to ``ref_count`` on conflict) so a batch of thousands of samples
        costs a few statements, not a SELECT and an INSERT each.
        """
        counts = Counter((kind, sha) for kind, sha, _, _ in refs)
        meta = {(kind, sha): (size, ext) for kind, sha, size, ext in refs}
        if not counts:
            return
        rows = [
            {
                "kind": kind,
                "sha256": check_sha(sha),
                "size": meta[kind, sha][0],
                "ext": meta[kind, sha][1],
                "ref_count": n,
                "created_at": utcnow(),
            }
            for (kind, sha), n in counts.items()
        ]
        # the dialects are imported here: every CLI command loads this module, few write blobs
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(Artifact)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Artifact.kind, Artifact.sha256],
            set_={"ref_count": Artifact.ref_count + stmt.excluded.ref_count},
        )
        session.execute(stmt, rows)

    def release(self, session: Session, kind: str, sha: str, *, n: int = 1) -> None:
        session.execute(
            update(Artifact)
            .where(Artifact.kind == kind, Artifact.sha256 == sha, Artifact.ref_count >= n)
            .values(ref_count=Artifact.ref_count - n)
        )

    def gc(self, session: Session) -> int:
        """Delete unreferenced blobs and their rows. Returns the number of blobs removed."""
        rows = session.scalars(select(Artifact).where(Artifact.ref_count <= 0)).all()
        for row in rows:
            self.path(row.kind, row.sha256, row.ext).unlink(missing_ok=True)
        session.execute(delete(Artifact).where(Artifact.ref_count <= 0))
        return len(rows)

    def scan(self, session: Session, *, check_hashes: bool = True) -> list[BlobProblem]:
        """Compare files on disk with the ``artifacts`` table."""
        known: dict[Path, Artifact] = {}
        problems: list[BlobProblem] = []
        for row in session.scalars(select(Artifact)):
            p = self.path(row.kind, row.sha256, row.ext)
            known[p] = row
            status = (
                self.verify_blob(row.kind, row.sha256, row.ext)
                if check_hashes
                else (None if p.is_file() else "missing")
            )
            if status:
                problems.append(BlobProblem(row.kind, row.sha256, status, str(p)))
        for kind, p in self.iter_files():
            if p.name.startswith(TMP_PREFIX):
                problems.append(BlobProblem(kind or DEFAULT_DIR, "", "temp", str(p)))
            elif p not in known:
                problems.append(BlobProblem(kind or DEFAULT_DIR, p.name[:64], "orphan", str(p)))
        return problems
