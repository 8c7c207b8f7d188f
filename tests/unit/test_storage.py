from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from vistudio.db import Artifact
from vistudio.storage.artifacts import ArtifactStore, BlobError
from vistudio.storage.atomic import atomic_writer
from vistudio.studio import Studio


def test_put_is_content_addressed_and_deduplicated(studio: Studio) -> None:
    store = studio.store
    a = store.write_bytes("checkpoint", b"weights")
    b = store.write_bytes("checkpoint", b"weights")
    assert a == b == hashlib.sha256(b"weights").hexdigest()
    assert store.path("checkpoint", a).read_bytes() == b"weights"
    assert store.path("checkpoint", a).parent.name == a[:2]
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", a, size=7)
        store.acquire(s, "checkpoint", a, size=7)
    with studio.sessions() as s:
        row = s.scalar(select(Artifact).where(Artifact.sha256 == a))
        assert row is not None and row.ref_count == 2


def test_gc_keeps_referenced_blobs(studio: Studio) -> None:
    store = studio.store
    keep = store.write_bytes("checkpoint", b"keep")
    drop = store.write_bytes("checkpoint", b"drop")
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", keep, size=4, n=2)
        store.acquire(s, "checkpoint", drop, size=4)
    with studio.sessions.begin() as s:
        store.release(s, "checkpoint", keep)
        store.release(s, "checkpoint", drop)
        assert store.gc(s) == 1
    assert store.path("checkpoint", keep).exists()
    assert not store.path("checkpoint", drop).exists()


def test_release_never_goes_negative(studio: Studio) -> None:
    sha = studio.store.write_bytes("checkpoint", b"x")
    with studio.sessions.begin() as s:
        studio.store.acquire(s, "checkpoint", sha, size=1)
    with studio.sessions.begin() as s:
        studio.store.release(s, "checkpoint", sha, n=5)
    with studio.sessions() as s:
        assert s.scalar(select(Artifact.ref_count)) == 1


def test_write_file_verifies_expected_hash(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc")
    with pytest.raises(BlobError, match="hash mismatch"):
        studio.store.write_file("checkpoint", src, expected_sha="0" * 64)
    # nothing published, no temp file left behind
    assert [p for p in (studio.home / "artifacts").rglob("*") if p.is_file()] == []
    sha = studio.store.write_file("checkpoint", src)
    assert studio.store.verify_blob("checkpoint", sha) is None


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "abc", "0" * 63 + "/"])
def test_blob_ids_must_be_sha256(studio: Studio, bad: str) -> None:
    with pytest.raises(BlobError):
        studio.store.path("checkpoint", bad)


def test_atomic_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(dest) as fh:
        fh.write(b"partial")
        raise RuntimeError("killed")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_scan_finds_orphans_temp_and_corruption(studio: Studio) -> None:
    store: ArtifactStore = studio.store
    good = store.write_bytes("checkpoint", b"good")
    bad = store.write_bytes("checkpoint", b"bad")
    orphan = store.write_bytes("checkpoint", b"orphan")
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", good, size=4)
        store.acquire(s, "checkpoint", bad, size=3)
    store.path("checkpoint", bad).write_bytes(b"tampered")
    (store.folder("checkpoint") / ".tmp-killed").write_bytes(b"half")
    with studio.sessions() as s:
        problems = {(p.problem, p.sha256) for p in store.scan(s)}
    assert ("corrupt", bad) in problems
    assert ("orphan", orphan) in problems
    assert any(kind == "temp" for kind, _ in problems)
    assert not any(sha == good for _, sha in problems)


def test_acquire_many_upserts_reference_counts(studio: Studio) -> None:
    store = studio.store
    a = store.write_bytes("checkpoint", b"a")
    b = store.write_bytes("checkpoint", b"b")
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", a, size=1)
    with studio.sessions.begin() as s:
        store.acquire_many(s, [("checkpoint", a, 1, ""), ("checkpoint", b, 1, ""), ("checkpoint", b, 1, "")])
        store.acquire_many(s, [])
    with studio.sessions() as s:
        counts = dict(s.execute(select(Artifact.sha256, Artifact.ref_count)).all())
    assert counts == {a: 2, b: 2}
