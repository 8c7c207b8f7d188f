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
    BlobVanished,
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
    "BlobVanished",
    "S3ArtifactStore",
    "check_sha",
    "sha256_bytes",
]


class ArtifactStore(BlobFiles):
    """Blob files plus their rows in ``artifacts``: references are recorded in the caller's session.

    Writers and ``gc`` run in different processes, so the order of their steps is what keeps a
    referenced blob stored (docs/storage.md, "GC"): ``gc`` deletes the rows first, in the caller's
    transaction, then the objects, and the caller commits after; ``acquire`` takes the reference
    first and then checks that the object is still there, putting it back or failing when a
    concurrent ``gc`` took it.
    """

    def acquire(self, session: Session, kind: str, sha: str, *, size: int, ext: str = "", n: int = 1) -> None:
        """Record ``n`` more references to a blob already written (see ``acquire_many``)."""
        self.acquire_many(session, [(kind, sha, size, ext)] * n)

    def acquire_many(self, session: Session, refs: list[tuple[str, str, int, str]]) -> None:
        """Record one reference per ``(kind, sha256, size, ext)`` in one statement per blob kind.

        An upsert (insert, or add to ``ref_count`` on conflict) so a batch of thousands of samples
        costs a few statements, not a SELECT and an INSERT each. Then every blob whose row is new or
        was unreferenced (awaiting ``gc``) is checked: a ``gc`` in another process may have deleted
        it after the caller wrote it (a writer skips the upload of an object it finds stored). A
        vanished blob is uploaded again from the local copy when there is one, else ``BlobVanished``
        is raised so that the caller's transaction rolls back and its job retries. The check runs
        after the upsert, while this transaction holds the row (PostgreSQL) or the write lock
        (SQLite): a ``gc`` that has not yet deleted the row can no longer do so.
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
        upsert = stmt.on_conflict_do_update(
            index_elements=[Artifact.kind, Artifact.sha256],
            set_={"ref_count": Artifact.ref_count + stmt.excluded.ref_count},
        ).returning(Artifact.kind, Artifact.sha256, Artifact.ref_count)
        after = session.execute(upsert, rows).all()
        # a count no higher than what this call added: a new row, or one revived from 0
        revived = [
            (kind, sha, meta[kind, sha][1]) for kind, sha, count in after if count <= counts[kind, sha]
        ]
        vanished = [b for b in self.missing(revived) if not self.restore(*b)]
        if vanished:
            kind, sha, ext = vanished[0]
            raise BlobVanished(
                f"{len(vanished)} blob(s) were collected while they were referenced again "
                f"(first: {self.key(kind, sha, ext)}): write them again"
            )

    def release(self, session: Session, kind: str, sha: str, *, n: int = 1) -> None:
        session.execute(
            update(Artifact)
            .where(Artifact.kind == kind, Artifact.sha256 == sha, Artifact.ref_count >= n)
            .values(ref_count=Artifact.ref_count - n)
        )

    def gc(self, session: Session) -> int:
        """Delete unreferenced blobs and their rows. Returns the number of blobs removed.

        The rows go first (one DELETE … RETURNING: SQLite ≥ 3.35 or PostgreSQL), then exactly
        their objects; the caller commits afterwards. Until then this transaction holds those rows
        (or SQLite's write lock), so a writer that references one of the blobs again waits, and
        finds the object gone when it checks (``acquire_many``) — never a row pointing at nothing.
        """
        gone = session.execute(
            delete(Artifact)
            .where(Artifact.ref_count <= 0)
            .returning(Artifact.kind, Artifact.sha256, Artifact.ext)
        ).all()
        self.delete_blobs([(kind, sha, ext) for kind, sha, ext in gone])
        # abandoned uploads of a remote store (a no-op locally, where doctor removes temp files)
        self.sweep_stale()
        return len(gone)

    def scan(self, session: Session, *, check_hashes: bool = True) -> list[BlobProblem]:
        """Compare the stored blobs (files on disk, or a bucket's keys) with the ``artifacts`` table.
        Each problem's ``path`` is the blob's ``location``, which ``remove_file`` accepts.

        Blobs no row names and temporary files are reported only once older than
        ``stale_seconds``: an import writes its blobs before its batch commits their rows, and a
        write may still be running in another process."""
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
        for kind, loc, temp, age in self.iter_locations():
            if age < self.stale_seconds:
                continue
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
