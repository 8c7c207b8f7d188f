"""Several vistudio processes on one PostgreSQL (and one S3-compatible store): they start at once
without tripping over each other's schema upgrade, and two servers with two workers, as on four
machines, do every job once and lose nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from factories import POSTGRES_MARKS, make_class_folders, postgres_database
from vistudio.db.session import head_revision

pytestmark = POSTGRES_MARKS

CLI = [sys.executable, "-m", "vistudio.cli.main"]


def test_processes_starting_together_migrate_a_new_database_once(tmp_path: Path) -> None:
    with postgres_database() as url:
        env = {**os.environ, "VISTUDIO_DATABASE_URL": url}
        # four processes, each its own workspace folder (as on four machines), one database
        procs = [
            subprocess.Popen(
                [*CLI, "--workspace", str(tmp_path / f"ws{i}"), "--json", "project", "list"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outs]
        db = create_engine(url)
        with db.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                head_revision()
            ]
        db.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited: {proc.communicate()[1][-2000:]}"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base} did not answer /health in {timeout} s")


def test_two_servers_and_two_workers_do_every_job_once(tmp_path: Path, s3_server: str) -> None:
    import boto3

    bucket = f"vs-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket=bucket)
    folders = [
        make_class_folders(tmp_path / "photos" / f"set{i}", {"cat": 3, "dog": 3}, start_seed=100 * i)
        for i in range(4)
    ]
    procs: list[subprocess.Popen[str]] = []
    with postgres_database() as url:
        env = {
            **os.environ,
            "VISTUDIO_DATABASE_URL": url,
            "VISTUDIO_BLOB_STORE__URL": f"s3://{bucket}/ws",
            "VISTUDIO_BLOB_STORE__ENDPOINT_URL": s3_server,
            "VISTUDIO_IMPORT_ROOTS": f'["{tmp_path / "photos"}"]',
            "VISTUDIO_IMPORTS__WORKERS": "1",
            "VISTUDIO_JOBS__POLL_SECONDS": "0.1",
            "VISTUDIO_OFFLINE": "1",
        }

        def start(*args: str, home: str) -> subprocess.Popen[str]:
            proc = subprocess.Popen(
                [*CLI, "--workspace", str(tmp_path / home), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            return proc

        try:
            # each process its own workspace folder, as on its own machine: only the database
            # and the bucket are shared
            bases = []
            for i in range(2):
                port = _free_port()
                server = start("serve", "--port", str(port), "--workers", "0", home=f"server{i}")
                bases.append(f"http://127.0.0.1:{port}")
                _wait_healthy(bases[-1], server)
            for i in range(2):
                start("worker", home=f"worker{i}")
            jobs = []
            for i, folder in enumerate(folders):
                api = bases[i % 2]  # half the requests to each server
                assert (
                    httpx.post(
                        f"{api}/api/v1/projects", json={"name": f"p{i}", "task": "classification"}
                    ).status_code
                    == 201
                )
                r = httpx.post(f"{api}/api/v1/imports", json={"project": f"p{i}", "source": str(folder)})
                assert r.status_code == 202, r.text
                jobs.append(r.json()["job"]["id"])
            deadline = time.monotonic() + 240
            while True:
                done = [httpx.get(f"{bases[1]}/api/v1/jobs/{j}").json()["job"] for j in jobs]
                if all(j["status"] in ("succeeded", "failed", "dead") for j in done):
                    break
                assert time.monotonic() < deadline, [(j["id"], j["status"]) for j in done]
                assert all(p.poll() is None for p in procs), "a server or worker exited"
                time.sleep(0.3)
            assert [j["status"] for j in done] == ["succeeded"] * 4
            assert [j["attempts"] for j in done] == [1] * 4  # each claimed once
            assert len({j["worker"] for j in done}) <= 2
            assert [j["result"]["report"]["imported"] for j in done] == [6] * 4

            db = create_engine(url)
            with db.connect() as conn:
                counts = conn.execute(
                    text("SELECT project_id, count(*), count(DISTINCT sha256) FROM samples GROUP BY 1")
                ).all()
                shas = set(conn.execute(text("SELECT sha256 FROM samples")).scalars())
                sample = conn.execute(text("SELECT id, sha256 FROM samples ORDER BY id LIMIT 1")).one()
            db.dispose()
            assert sorted((n, d) for _, n, d in counts) == [(6, 6)] * 4 and len(shas) == 24
            keys = [
                o["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", [])
            ]
            originals = [k for k in keys if k.startswith("ws/media/")]
            assert len(originals) == 24 and {k.rsplit("/", 1)[1].split(".")[0] for k in originals} == shas
            assert len([k for k in keys if k.startswith("ws/thumbs/")]) == 24
            # a thumbnail a worker wrote, served by either server (a presigned redirect into the bucket)
            for api in bases:
                r = httpx.get(f"{api}/api/v1/samples/{sample[0]}/thumbnail", follow_redirects=True)
                assert r.status_code == 200 and r.content[:4] == b"RIFF"
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
