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
from vistudio.storage.s3 import S3BlobFiles, S3Config

__all__ = [
    "KIND_DIRS",
    "SHA_RE",
    "ArtifactStore",
    "BlobError",
    "BlobFiles",
    "BlobProblem",
    "S3ArtifactStore",
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
            self.delete_blob(row.kind, row.sha256, row.ext)
        session.execute(delete(Artifact).where(Artifact.ref_count <= 0))
        # abandoned uploads of a remote store (a no-op locally, where doctor removes temp files)
        self.sweep_stale()
        return len(rows)

    def scan(self, session: Session, *, check_hashes: bool = True) -> list[BlobProblem]:
        """Compare the stored blobs (files on disk, or a bucket's keys) with the ``artifacts`` table.
        Each problem's ``path`` is the blob's ``location``, which ``remove_file`` accepts."""
        known: dict[str, Artifact] = {}
        problems: list[BlobProblem] = []
        for row in session.scalars(select(Artifact)):
            loc = self.location(row.kind, row.sha256, row.ext)
            known[loc] = row
            status = (
                self.verify_blob(row.kind, row.sha256, row.ext)
                if check_hashes
                else (None if self.exists(row.kind, row.sha256, row.ext) else "missing")
            )
            if status:
                problems.append(BlobProblem(row.kind, row.sha256, status, loc))
        for kind, loc, temp in self.iter_locations():
            if temp:
                problems.append(BlobProblem(kind or DEFAULT_DIR, "", "temp", loc))
            elif loc not in known:
                name = loc.rsplit("/", 1)[-1]
                problems.append(BlobProblem(kind or DEFAULT_DIR, name[:64], "orphan", loc))
        return problems


class S3ArtifactStore(S3BlobFiles, ArtifactStore):
    """The artifact store on an S3-compatible bucket (``vistudio.storage.s3``)."""


def open_store(home: Path, *, thumb_size: int, s3: S3Config | None = None) -> ArtifactStore:
    """The workspace's store: local folders, or a bucket (checked at once, so a wrong endpoint,
    missing credentials or a missing bucket fail at start, not in the middle of an import)."""
    if s3 is None:
        return ArtifactStore(home, thumb_size=thumb_size)
    store = S3ArtifactStore(home, thumb_size=thumb_size, config=s3)
    store.check()
    return store
