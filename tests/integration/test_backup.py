"""Backup and restore (``vistudio backup`` / ``restore``) on real workspaces: online while an import
runs, restored elsewhere and compared row by row and byte by byte, incremental, verified, killed
with SIGKILL half-way, and fed hostile folders and manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select

from embed_factories import run_embedding, with_embed
from eval_factories import make_experiment
from factories import POSTGRES_URL, cli, make_class_folders, postgres_database, postgres_studio, run_import
from vistudio.config import Settings
from vistudio.db import Annotation, Artifact, Sample
from vistudio.db.training import Checkpoint, Experiment
from vistudio.errors import BadRequest, Conflict
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.services import backup, projects, search, splits
from vistudio.services.backup.store import checksum
from vistudio.services.doctor import run_doctor
from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND
from vistudio.services.ingest import start_import
from vistudio.studio import Studio, open_studio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pets(studio: Studio, tmp: Path) -> None:
    """A classification project with labels, a split, an experiment with checkpoints, embeddings."""
    projects.create_project(studio, name="pets", task="classification")
    job = run_import(studio, "pets", make_class_folders(tmp / "pets", {"cat": 6, "dog": 5, "fox": 4}))
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project="pets", name="default", ratios=(0.6, 0.2, 0.2), seed=1)
    make_experiment(studio, project="pets", name="exp1", model="mobilenet_v3_small", image_size=16)
    assert run_embedding(studio, "pets")["status"] == "succeeded"


def _rows(studio: Studio, project: str | None = None) -> dict[str, Any]:
    """What must survive a restore: samples, annotations, experiments, checkpoints, blob rows."""
    with studio.sessions() as s:
        samples = s.execute(
            select(
                Sample.id, Sample.project_id, Sample.sha256, Sample.name, Sample.path, Sample.width
            ).order_by(Sample.id)
        ).all()
        anns = s.execute(
            select(
                Annotation.id, Annotation.sample_id, Annotation.kind, Annotation.class_id, Annotation.geometry
            )
        ).all()
        exps = s.execute(select(Experiment.id, Experiment.name, Experiment.config, Experiment.status)).all()
        ckpts = s.execute(
            select(Checkpoint.experiment_id, Checkpoint.kind, Checkpoint.sha256, Checkpoint.size)
        ).all()
        blobs = s.execute(select(Artifact.kind, Artifact.sha256, Artifact.ext, Artifact.size)).all()
    return {
        "samples": sorted(map(tuple, samples)),
        "annotations": sorted((tuple(a[:4]), json.dumps(a[4], sort_keys=True)) for a in anns),
        "experiments": sorted((e[0], e[1], json.dumps(e[2], sort_keys=True), e[3]) for e in exps),
        "checkpoints": sorted(map(tuple, ckpts)),
        "blobs": sorted(map(tuple, blobs)),
    }


def _hits(studio: Studio, **query: Any) -> list[tuple[int, float]]:
    out = search.search(studio, project="pets", k=10, reembed=False, **query)
    return [(h["sample_id"], round(h["score"], 6)) for h in out["items"]]


def test_backup_during_an_import_restores_an_equal_workspace(
    tiny: Studio, settings: Settings, tmp_path: Path
) -> None:
    _pets(tiny, tmp_path)
    before_hits = _hits(tiny, text="a cat")
    by_image = _hits(tiny, sample_id=3)
    pets_rows = _rows(tiny)
    dest = tmp_path / "backup"

    # an import of 80 more photos runs in a thread; the backup starts once its first batch is in
    projects.create_project(tiny, name="more", task="classification")
    src = make_class_folders(tmp_path / "more", {"a": 40, "b": 40}, start_seed=100)
    job = start_import(tiny, project="more", source=src, fmt="folder", mode="copy")
    runner = threading.Thread(target=Worker(tiny).run_one, kwargs={"job_id": job["id"]})
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with tiny.sessions() as s:
                if len(s.scalars(select(Sample.id).where(Sample.project_id == 2)).all()) >= 8:
                    break
            time.sleep(0.01)
        first = backup.create_backup(tiny, dest)
    finally:
        runner.join()
    assert job_dict(tiny.queue.get(job["id"]))["status"] == "succeeded"
    # taken during the import: part of it, consistent (doctor below: every row has its files)
    assert 15 + 8 <= first["samples"] < 15 + 80, first
    assert first["new_blobs"] == first["blobs"] and first["missing"] == []

    target = settings.model_copy(update={"home": tmp_path / "restored"})
    restored_out = backup.restore_backup(target, dest)
    assert restored_out["samples"] == first["samples"] and restored_out["snapshot"] == first["snapshot"]
    restored = open_studio(with_embed(target))
    try:
        report = run_doctor(restored)
        assert report["ok"], report["problems"]
        after = _rows(restored)
        # the pets project (finished before the backup) comes back whole
        pets_ids = {r[0] for r in pets_rows["samples"]}
        assert [r for r in after["samples"] if r[1] == 1] == pets_rows["samples"]
        assert [a for a in after["annotations"] if a[0][1] in pets_ids] == pets_rows["annotations"]
        assert after["experiments"] == pets_rows["experiments"]
        assert after["checkpoints"] == pets_rows["checkpoints"]
        # the import: a prefix of what the source holds now, rows equal
        now = _rows(tiny)
        assert set(after["samples"]) <= set(now["samples"]) and len(after["samples"]) == first["samples"]
        assert set(after["annotations"]) <= set(now["annotations"])
        # every blob the restored database knows is byte-equal to the source's, checkpoints included
        for kind, sha, ext, _size in after["blobs"]:
            assert (
                restored.store.path(kind, sha, ext).read_bytes()
                == tiny.store.path(kind, sha, ext).read_bytes()
            )
        ckpt = pets_rows["checkpoints"][0][2]
        assert restored.store.verify_blob(CHECKPOINT_KIND, ckpt, CHECKPOINT_EXT) is None
        # searches rank the same samples with the same scores
        assert _hits(restored, text="a cat") == before_hits
        assert _hits(restored, sample_id=3) == by_image
    finally:
        restored.close()

    # incremental: the rest of the import is new, the rest is not copied again
    second = backup.create_backup(tiny, dest)
    assert second["samples"] == 15 + 80
    assert 0 < second["new_blobs"] < second["blobs"]
    assert second["new_blobs"] >= 2 * (95 - first["samples"])  # each new sample: original + thumbnail
    third = backup.create_backup(tiny, dest)
    assert third["new_blobs"] == 0 and third["new_bytes"] == 0 and third["blobs"] == second["blobs"]
    assert backup.snapshot_names(dest) == sorted([first["snapshot"], second["snapshot"], third["snapshot"]])
    assert backup.verify_backup(dest)["objects_checked"] > 0


def test_incremental_backup_copies_only_new_photos_and_cli_output(
    studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 4}))
    dest = tmp_path / "bk"
    code, out = cli(capsys, studio.home, "backup", str(dest))
    assert code == 0, out
    assert set(out["backup"]) >= {"path", "samples", "blobs", "bytes", "new_blobs"}
    b1 = out["backup"]
    assert b1["samples"] == 10 and b1["blobs"] == b1["new_blobs"] >= 20 and b1["bytes"] > 0
    run_import(studio, "pets", make_class_folders(tmp_path / "new", {"cat": 3}, start_seed=50))
    code, out = cli(capsys, studio.home, "backup", str(dest))
    assert code == 0 and out["backup"]["samples"] == 13
    assert out["backup"]["new_blobs"] == 6, out  # three originals and their thumbnails
    code, out = cli(capsys, studio.home, "backup", str(dest), "--verify")
    assert code == 0 and out["backup"]["verified"] and out["backup"]["snapshots"] == 2
    # human output: one summary line
    from vistudio.cli.main import main

    assert main(["--workspace", str(studio.home), "backup", str(dest)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # Rich wraps at the console's width
    assert "backed up" in text and "13 samples" in text and "(0 new" in text


def test_verify_finds_a_flipped_byte_and_a_missing_object(
    studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 3, "dog": 3}))
    dest = tmp_path / "bk"
    backup.create_backup(studio, dest)
    m = json.loads((dest / "snapshots" / f"{backup.snapshot_names(dest)[-1]}.json").read_text())
    media = [f for f in m["files"] if f["path"].startswith("media/")]
    flipped = dest / "objects" / media[0]["sha256"][:2] / media[0]["sha256"]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    gone = dest / "objects" / media[1]["sha256"][:2] / media[1]["sha256"]
    gone.unlink()
    code, out = cli(capsys, studio.home, "backup", str(dest), "--verify")
    assert code == 1 and out["error"]["code"] == "backup_invalid"
    problems = {(p["problem"], p["path"]) for p in out["error"]["details"]["problems"]}
    assert problems == {("corrupt", media[0]["path"]), ("missing", media[1]["path"])}
    # a restore refuses the incomplete snapshot before writing anything
    code, out = cli(capsys, tmp_path / "elsewhere", "restore", str(dest))
    assert code == 1 and out["error"]["code"] == "backup_invalid"
    assert not (tmp_path / "elsewhere").exists()
    # the next backup copies the missing object again; the damaged one (its size unchanged) is
    # left to the restore's hash check, which stops and removes what it wrote
    backup.create_backup(studio, dest)
    assert gone.is_file()
    code, out = cli(capsys, tmp_path / "elsewhere", "restore", str(dest))
    assert code == 1 and out["error"]["code"] == "backup_invalid" and "damaged" in out["error"]["message"]
    assert not (tmp_path / "elsewhere").exists()


def test_blobs_gone_from_the_workspace_come_from_earlier_snapshots_or_are_reported(
    studio: Studio, tmp_path: Path
) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 2}))
    dest = tmp_path / "bk"
    backup.create_backup(studio, dest)
    with studio.sessions() as s:
        old = s.scalars(select(Sample).order_by(Sample.id)).first()
        assert old is not None
    (studio.home / old.path).unlink()  # as if collected after the next dump
    studio.store.path("thumbnail", old.sha256).unlink()
    run_import(studio, "pets", make_class_folders(tmp_path / "new", {"dog": 1}, start_seed=9))
    with studio.sessions() as s:
        new = s.scalars(select(Sample).order_by(Sample.id.desc())).first()
        assert new is not None
    (studio.home / new.path).unlink()
    out = backup.create_backup(studio, dest)
    # the first sample's files come from the earlier snapshot; the new one's original was never copied
    assert [m["path"] for m in out["missing"]] == [new.path]
    assert out["missing"][0]["reason"] == "deleted before it was copied"
    m = json.loads((dest / "snapshots" / f"{out['snapshot']}.json").read_text())
    paths = {f["path"] for f in m["files"]}
    assert old.path in paths and f"thumbs/{old.sha256[:2]}/{old.sha256}-256.webp" in paths
    assert m["missing"] == out["missing"] and backup.verify_backup(dest)["snapshots"] == 2


def test_restore_refuses_a_non_empty_workspace(
    studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 2}))
    dest = tmp_path / "bk"
    backup.create_backup(studio, dest)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, out = cli(capsys, busy, "restore", str(dest))
    assert code == 1 and out["error"]["code"] == "conflict" and "not empty" in out["error"]["message"]
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    with pytest.raises(Conflict):
        backup.restore_backup(Settings(home=studio.home), dest)  # the live workspace itself
    # an empty folder is fine, and the restored workspace opens healthy
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = cli(capsys, empty, "restore", str(dest))
    assert code == 0 and out["backup"]["samples"] == 2, out
    code, out = cli(capsys, empty, "doctor")
    assert code == 0 and out["ok"], out


def test_hostile_destinations_and_manifests(
    studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 2}))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, out = cli(capsys, studio.home, "backup", str(a_file))
    assert code == 1 and out["error"]["code"] == "bad_request" and "not a folder" in out["error"]["message"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.jpg").write_text("not mine")
    code, out = cli(capsys, studio.home, "backup", str(other))
    assert code == 1 and "other files" in out["error"]["message"]
    with pytest.raises(BadRequest):
        backup.create_backup(studio, studio.home / "exports" / "bk")  # inside the workspace
    code, out = cli(capsys, tmp_path / "ws2", "restore", str(tmp_path / "nothing"))
    assert code == 1 and out["error"]["code"] == "not_found"

    dest = tmp_path / "bk"
    backup.create_backup(studio, dest)
    name = backup.snapshot_names(dest)[-1]
    manifest = dest / "snapshots" / f"{name}.json"
    good = manifest.read_text()

    manifest.write_text(good[: len(good) // 2])  # truncated JSON
    for args in (("restore", str(dest)), ("backup", str(dest), "--verify")):
        code, out = cli(capsys, tmp_path / "ws3", *args)
        assert code == 1 and out["error"]["code"] == "backup_invalid", out
        assert "JSON" in (out["error"]["message"] + json.dumps(out["error"]["details"]))
    assert not (tmp_path / "ws3").exists()

    # a path that leaves the workspace, even with a recomputed checksum
    body = json.loads(good)
    body["files"][0]["path"] = "../../escaped.bin"
    body["checksum"] = checksum(body)
    manifest.write_text(json.dumps(body))
    code, out = cli(capsys, tmp_path / "ws4", "restore", str(dest))
    assert (
        code == 1
        and out["error"]["code"] == "backup_invalid"
        and "leaves the workspace" in out["error"]["message"]
    )
    assert not (tmp_path / "ws4").exists() and not (tmp_path / "escaped.bin").exists()
    # an edit the checksum catches
    body = json.loads(good)
    body["files"][0]["size"] += 1
    manifest.write_text(json.dumps(body))
    code, out = cli(capsys, tmp_path / "ws5", "restore", str(dest))
    assert code == 1 and "checksum" in out["error"]["message"]
    # the database file itself is not a path a manifest may name
    body = json.loads(good)
    body["files"][0]["path"] = "vistudio.db"
    body["checksum"] = checksum(body)
    manifest.write_text(json.dumps(body))
    code, out = cli(capsys, tmp_path / "ws6", "restore", str(dest))
    assert code == 1 and out["error"]["code"] == "backup_invalid"
    manifest.write_text(good)
    code, out = cli(capsys, tmp_path / "ws7", "restore", str(dest), "--snapshot", "../../etc")
    assert code == 1 and out["error"]["code"] == "not_found"


def _fill(studio: Studio, n: int, *, seed: int, size: int = 256 * 1024) -> None:
    """``n`` distinct artifact blobs of ``size`` bytes with their rows (what a backup copies)."""
    rng = torch.Generator().manual_seed(seed)
    with studio.sessions.begin() as s:
        for _ in range(n):
            data = torch.randint(0, 256, (size,), generator=rng, dtype=torch.uint8).numpy().tobytes()
            sha = studio.store.write_bytes("bench-blob", data)
            studio.store.acquire(s, "bench-blob", sha, size=size)


def test_kill_9_during_a_backup_leaves_the_previous_snapshot_intact(studio: Studio, tmp_path: Path) -> None:
    _fill(studio, 20, seed=1)
    dest = tmp_path / "bk"
    first = backup.create_backup(studio, dest)
    _fill(studio, 200, seed=2)
    objects = dest / "objects"
    before = sum(1 for _ in objects.glob("*/*"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vistudio.cli.main",
            "--workspace",
            str(studio.home),
            "--json",
            "backup",
            str(dest),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # the dump and a first blob are in: the backup is copying
        while sum(1 for _ in objects.glob("*/*")) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert backup.snapshot_names(dest) == [first["snapshot"]]  # the half snapshot does not exist
    assert backup.verify_backup(dest)["snapshot"] == first["snapshot"]
    again = backup.create_backup(studio, dest)
    # what the killed run had copied is reused: fewer than the 200 new blobs are copied now
    assert again["blobs"] == first["blobs"] + 200 and again["new_blobs"] < 200
    assert not list(objects.glob(".tmp-*")) and not list(objects.glob("*/.tmp-*"))
    verified = backup.verify_backup(dest)
    assert verified["snapshots"] == 2 and verified["snapshot"] == again["snapshot"]


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="set VISTUDIO_TEST_POSTGRES_URL to run against PostgreSQL")
def test_postgres_backup_and_restore(tmp_path: Path) -> None:
    import shutil

    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("pg_dump / pg_restore not installed (PostgreSQL client tools)")
    dest = tmp_path / "bk"
    with postgres_studio(tmp_path / "src", batch_size=4) as src:
        projects.create_project(src, name="pets", task="classification")
        run_import(src, "pets", make_class_folders(tmp_path / "pets", {"cat": 3, "dog": 2}))
        rows = _rows(src)
        out = backup.create_backup(src, dest)
        assert out["samples"] == 5 and out["database"]["dialect"] == "postgresql"
    with postgres_database() as url:
        home = tmp_path / "restored"
        restored = backup.restore_backup(Settings(home=home, database_url=url), dest)
        assert restored["samples"] == 5
        # a second restore into the now full database is refused
        with pytest.raises(Conflict):
            backup.restore_backup(Settings(home=tmp_path / "again", database_url=url), dest)
        again = open_studio(Settings(home=home, database_url=url))
        try:
            assert _rows(again) == rows
            assert run_doctor(again)["ok"]
        finally:
            again.close()


def test_the_database_urls_connection_parameters_reach_pg_dump() -> None:
    from vistudio.errors import BadRequest
    from vistudio.services.backup.create import pg_env

    env = pg_env(
        "postgresql+psycopg://ann:s3cret@/vistudio?host=/run/pg&port=5433&sslmode=require&connect_timeout=5"
    )
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGPASSWORD"], env["PGDATABASE"]) == (
        "/run/pg",
        "5433",
        "ann",
        "s3cret",
        "vistudio",
    )
    assert (env["PGSSLMODE"], env["PGCONNECT_TIMEOUT"]) == ("require", "5")
    with pytest.raises(BadRequest, match="'prepare_threshold'"):
        pg_env("postgresql+psycopg://ann@db/vistudio?prepare_threshold=0")
