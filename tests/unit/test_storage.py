from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from vistudio.db import Artifact
from vistudio.services.doctor import run_doctor
from vistudio.storage.artifacts import ArtifactStore, BlobError, BlobVanished
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


STALE = 6 * 3600 + 60  # older than the default stale_upload_seconds (6 h)


def _age(path: Path, seconds: float) -> None:
    """Make a file look written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


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
    _age(store.path("checkpoint", orphan), STALE)
    _age(store.folder("checkpoint") / ".tmp-killed", STALE)
    with studio.sessions() as s:
        problems = {(p.problem, p.sha256) for p in store.scan(s)}
    assert ("corrupt", bad) in problems
    assert ("orphan", orphan) in problems
    assert any(kind == "temp" for kind, _ in problems)
    assert not any(sha == good for _, sha in problems)


def test_young_orphans_are_writes_in_flight_and_doctor_leaves_them(studio: Studio) -> None:
    """An import writes its blobs before its batch commits their rows: a blob no row names yet,
    or a temporary file, younger than ``stale_seconds`` is no orphan, and ``doctor --fix`` must
    not delete it (it did: the photo then pointed at nothing)."""
    store: ArtifactStore = studio.store
    fresh = store.write_bytes("original", b"a photo an import is writing", ext="jpg")
    old = store.write_bytes("original", b"left by a crash long ago", ext="jpg")
    _age(store.path("original", old, "jpg"), STALE)
    young_tmp = store.folder("original") / ".tmp-writing"
    young_tmp.write_bytes(b"half")
    report = run_doctor(studio)
    orphans = {p["sha256"] for p in report["problems"] if p["kind"] == "blob_orphan"}
    assert orphans == {old}
    assert not [p for p in report["problems"] if p["kind"] == "blob_temp"]
    run_doctor(studio, fix=True)
    assert store.path("original", fresh, "jpg").is_file() and young_tmp.is_file()
    assert not store.path("original", old, "jpg").exists()


def test_a_blob_collected_before_it_is_referenced_again_is_not_left_dangling(studio: Studio) -> None:
    """A worker imports a photo whose blob awaits gc: it finds the file and writes nothing; a gc
    in another process deletes the file; the worker's reference must not then point at nothing."""
    store: ArtifactStore = studio.store
    data = b"a photo deleted from one project, imported into another"
    sha = store.write_bytes("original", data, ext="jpg")
    with studio.sessions.begin() as s:
        store.acquire(s, "original", sha, size=len(data), ext="jpg")
    with studio.sessions.begin() as s:
        store.release(s, "original", sha)  # awaiting gc
    assert store.write_bytes("original", data, ext="jpg") == sha  # the worker: found, not rewritten
    with studio.sessions.begin() as s:  # the server's gc
        assert store.gc(s) == 1
    with pytest.raises(BlobVanished), studio.sessions.begin() as s:  # the worker's batch
        store.acquire_many(s, [("original", sha, len(data), "jpg")])
    with studio.sessions() as s:  # rolled back: no reference to a missing file
        assert s.scalar(select(Artifact).where(Artifact.sha256 == sha)) is None
    # the job's retry writes it again
    store.write_bytes("original", data, ext="jpg")
    with studio.sessions.begin() as s:
        store.acquire_many(s, [("original", sha, len(data), "jpg")])
    assert store.verify_blob("original", sha, "jpg") is None


def test_gc_deletes_its_rows_before_the_files_and_holds_them_until_commit(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer referencing the blob while gc deletes the file waits for gc's transaction, then
    finds the file gone: it fails (and retries) rather than committing a dangling reference."""
    store: ArtifactStore = studio.store
    sha = store.write_bytes("checkpoint", b"weights")
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", sha, size=7)
        store.release(s, "checkpoint", sha)
    outcome: list[BaseException | None] = []

    def writer() -> None:
        try:
            with studio.sessions.begin() as s:
                store.acquire(s, "checkpoint", sha, size=7)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    real = ArtifactStore.delete_blob
    seen_rows: list[int] = []
    thread = threading.Thread(target=writer)

    def delete_blob(self: ArtifactStore, kind: str, sha: str, ext: str = "") -> None:
        other = sqlite3.connect(studio.home / "vistudio.db")  # a reader outside gc's transaction
        seen_rows.append(other.execute("SELECT count(*) FROM artifacts").fetchone()[0])
        other.close()
        thread.start()  # the writer queues behind gc's transaction
        time.sleep(0.3)
        real(self, kind, sha, ext)

    monkeypatch.setattr(ArtifactStore, "delete_blob", delete_blob)
    with studio.sessions.begin() as s:
        assert store.gc(s) == 1
    thread.join(timeout=60)
    assert seen_rows == [1]  # the files go while the rows' deletion is not yet committed
    assert len(outcome) == 1 and isinstance(outcome[0], BlobVanished)
    with studio.sessions() as s:
        assert s.scalar(select(Artifact).where(Artifact.sha256 == sha)) is None


def test_gc_that_fails_to_delete_keeps_its_rows(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    store: ArtifactStore = studio.store
    sha = store.write_bytes("checkpoint", b"x")
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", sha, size=1)
        store.release(s, "checkpoint", sha)

    def refuse(self: ArtifactStore, kind: str, sha: str, ext: str = "") -> None:
        raise BlobError("the store said no")

    monkeypatch.setattr(ArtifactStore, "delete_blob", refuse)
    with pytest.raises(BlobError), studio.sessions.begin() as s:
        store.gc(s)
    monkeypatch.undo()
    with studio.sessions() as s:
        assert s.scalar(select(Artifact.ref_count).where(Artifact.sha256 == sha)) == 0
    with studio.sessions.begin() as s:
        assert store.gc(s) == 1
    assert not store.path("checkpoint", sha).exists()


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
