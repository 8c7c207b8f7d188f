"""Data factories shared by the tests: generated images, class folders, zips, imports."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.studio import Studio, open_studio

POSTGRES_URL = os.environ.get("VISTUDIO_TEST_POSTGRES_URL")
POSTGRES_MARKS = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="set VISTUDIO_TEST_POSTGRES_URL to run against PostgreSQL"),
]


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the server of VISTUDIO_TEST_POSTGRES_URL → its URL; dropped
    afterwards (with any connection still open to it)."""
    assert POSTGRES_URL
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"vistudio_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def postgres_studio(home: Path, *, batch_size: int) -> Iterator[Studio]:
    """A studio on a throwaway database (:func:`postgres_database`)."""
    with postgres_database() as url:
        studio = open_studio(
            Settings(
                home=home,
                database_url=url,
                imports=ImportSettings(workers=1, batch_size=batch_size),
                jobs=JobSettings(heartbeat_seconds=0.2, backoff_base_seconds=0.01),
            )
        )
        try:
            yield studio
        finally:
            studio.close()


@contextmanager
def pgvector_server() -> Iterator[str]:
    """A PostgreSQL with the pgvector extension (the ``pgserver`` wheel's) for this process → its
    SQLAlchemy URL; the test is skipped where it cannot start."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver (PostgreSQL with pgvector) is not installed")
    # a short folder: the server's Unix socket path must stay under ~100 characters
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"vs-pgv-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        server = pgserver.get_server(folder, cleanup_mode="delete")
    except Exception as exc:  # the server binary cannot start here
        pytest.skip(f"pgserver could not start PostgreSQL: {exc}")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


def draw_image(path: Path, *, seed: int, size: tuple[int, int] = (64, 48), fmt: str | None = None) -> Path:
    """A distinct small picture: background colour and shapes vary with ``seed``."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0] // 2), rng.randrange(size[1] // 2)
        x1, y1 = x0 + rng.randrange(4, size[0] // 2), y0 + rng.randrange(4, size[1] // 2)
        shape = d.ellipse if rng.random() < 0.5 else d.rectangle
        shape((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def make_class_folders(root: Path, classes: dict[str, int], *, start_seed: int = 0) -> Path:
    """``root/<class>/<class>-<i>.png`` with distinct images."""
    seed = start_seed
    for name, n in classes.items():
        for i in range(n):
            draw_image(root / name / f"{name}-{i:03d}.png", seed=seed)
            seed += 1
    return root


def zip_folder(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return dest


def run_import(
    studio: Studio, project: str, source: Path, *, fmt: str | None = None, mode: str = "copy"
) -> dict[str, Any]:
    """Queue an import and run it in this process; returns the finished job as a dict."""
    from vistudio.jobs.queue import job_dict
    from vistudio.jobs.worker import Worker
    from vistudio.services.ingest import start_import

    job = start_import(studio, project=project, source=source, fmt=fmt, mode=mode)
    Worker(studio).run_one(job_id=job["id"])
    return job_dict(studio.queue.get(job["id"]))


def tree(root: Path) -> set[str]:
    """Every file under root, as relative posix paths."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def claim_all_concurrently(studio: Studio, jobs: int, *, threads: int = 4) -> tuple[list[int], list[int]]:
    """Queue ``jobs`` jobs and let ``threads`` workers claim until none is left.
    Returns (queued ids, claimed ids) so a test can check every job was claimed exactly once."""
    import threading

    queue = studio.queue
    ids = [queue.enqueue("noop", {}).id for _ in range(jobs)]
    claimed: list[int] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        while (job := queue.claim(name)) is not None:
            with lock:
                claimed.append(job.id)

    workers = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return ids, claimed


def probe_or_crash(args: tuple[str, str, str, int]) -> dict[str, Any]:
    """The import pool's task, except that a file named ``crash-*`` kills its worker process (as a
    decoder fault or the out-of-memory killer would). Importable by spawned workers."""
    from vistudio.ingest.pool import probe_task

    if Path(args[0]).name.startswith("crash-"):
        os._exit(70)
    return probe_task(args)


def channel_model(path: Path, props: dict[str, str] | None) -> Path:
    """logits = per-channel mean of the N×3×H×W input (dynamic batch): red, green, blue."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel().tolist())
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "channels",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if props is not None:
        helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def cli(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> tuple[int, Any]:
    """Run ``vistudio --workspace WS --json ARGS``: its exit code and its one JSON document."""
    from vistudio.cli.main import main

    code = main(["--workspace", str(ws), "--json", *args])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # exactly one JSON document
    return code, json.loads(lines[0])


_photo_seq = itertools.count(1)


def insert_photos(
    studio: Studio, project: str, photos: Iterable[dict[str, Any]], *, thumbnails: bool = False, seed: int = 0
) -> list[int]:
    """Photos straight into the database (no original file), one per dict of the columns a test
    varies (taken_at, file_time, gps_lat, place_city, name…); ``sort_time`` follows taken_at,
    else file_time, as the import sets it. ``thumbnails``: each gets a real one-colour thumbnail,
    for the pages. Returns their ids in order."""
    from sqlalchemy import insert

    from vistudio.db import Sample
    from vistudio.services import projects

    rng = random.Random(seed)
    with studio.sessions.begin() as s:
        pid = projects.find_project(s, project).id
    rows = []
    for cols in photos:
        n = next(_photo_seq)
        sha = f"{n:064x}"
        if thumbnails:
            thumb = studio.store.path("thumbnail", sha)
            thumb.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), tuple(rng.randrange(256) for _ in range(3))).save(thumb, "WEBP")
        row = {
            "project_id": pid,
            "sha256": sha,
            "name": f"IMG_{n:04d}.jpg",
            "storage": "copy",
            "path": f"media/{sha[:2]}/{sha}.jpg",
            "width": 64,
            "height": 48,
            "format": "JPEG",
            "bytes": 100,
            "phash": "0" * 16,
            "exif": {},
            **cols,
        }
        row.setdefault("sort_time", row.get("taken_at") or row.get("file_time"))
        rows.append(row)
    if not rows:
        return []
    with studio.sessions.begin() as s:
        return list(s.scalars(insert(Sample).returning(Sample.id, sort_by_parameter_order=True), rows))


def web_sign_in(client: Any, name: str, password: str) -> str:
    """Sign ``client`` (a TestClient) in through the login form → the session's CSRF token, read
    from a signed-in page as the browser does."""
    r = client.post(
        "/login", data={"username": name, "password": password, "next": "/projects"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/projects", r.text
    page = client.get("/projects")
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert found, "the signed-in page carries its CSRF token"
    return found.group(1)
