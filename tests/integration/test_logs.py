"""Structured JSON logs in <workspace>/logs: lines that parse and carry the job id, request id and
project; rotation; `vistudio logs` and GET /api/v1/jobs/{id}/logs; corrupt lines skipped."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from factories import cli, make_class_folders
from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.studio import Studio
from vistudio.telemetry import logs as tlogs

log = logging.getLogger("vistudio.tests.logs")


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    app = create_app(studio)

    @app.get("/api/v1/projects/{project}/log-probe")
    def probe(project: str) -> dict[str, str]:  # a sync route: runs in a worker thread
        log.info("probe for %s", project, extra={"answer": 42})
        return {"ok": project}

    @app.get("/api/v1/log-crash")
    def crash() -> None:
        raise RuntimeError("kaboom")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def lines(studio: Studio) -> list[dict]:  # type: ignore[type-arg]
    text = (studio.home / "logs" / "vistudio.log").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run_import(studio: Studio, client: TestClient, folder: Path, project: str) -> int:
    client.post("/api/v1/projects", json={"name": project, "task": "classification"})
    job_id = int(
        client.post("/api/v1/imports", json={"project": project, "source": str(folder)}).json()["job"]["id"]
    )
    Worker(studio).run_one(job_id=job_id)
    return job_id


def test_lines_are_json_with_request_id_and_project(client: TestClient, studio: Studio) -> None:
    resp = client.get("/api/v1/projects/holiday-2024/log-probe")
    rid = resp.headers["x-request-id"]
    probe = [x for x in lines(studio) if x["message"] == "probe for holiday-2024"]
    assert len(probe) == 1
    p = probe[0]
    assert p["request_id"] == rid and p["project"] == "holiday-2024" and p["answer"] == 42
    assert p["level"] == "INFO" and p["logger"] == "vistudio.tests.logs" and p["ts"].endswith("Z")
    assert "job_id" not in p
    # an unhandled error: a 500 in the API's envelope, and the traceback in the log under the same id
    boom = client.get("/api/v1/log-crash")
    assert boom.status_code == 500
    errors = [x for x in lines(studio) if x.get("request_id") == boom.headers["x-request-id"]]
    assert any("kaboom" in x.get("exc", "") for x in errors)
    assert any(x["level"] == "ERROR" and "/api/v1/log-crash" in x["message"] for x in errors)


def test_job_lines_carry_the_job_and_the_cli_and_api_filter_by_job(
    client: TestClient, studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run_import(studio, client, make_class_folders(tmp_path / "a", {"x": 2}), "first")
    second = _run_import(studio, client, make_class_folders(tmp_path / "b", {"y": 2}), "second")
    mine = [x for x in lines(studio) if x.get("job_id") == first]
    assert {x["job_kind"] for x in mine} == {"import"} and {x["project"] for x in mine} == {"first"}
    assert any(x["message"].startswith("job started") for x in mine)
    assert any(x["message"].startswith("job succeeded") and x["outcome"] == "succeeded" for x in mine)

    code, out = cli(capsys, studio.home, "logs", "--job", str(first), "-n", "100")
    assert code == 0 and out["items"] and out["skipped"] == 0
    assert {x["job_id"] for x in out["items"]} == {first}
    assert out["total"] == len(mine)
    code, out = cli(capsys, studio.home, "logs", "-n", "3")
    assert code == 0 and len(out["items"]) == 3 and out["items"][-1]["job_id"] == second

    api = client.get(f"/api/v1/jobs/{second}/logs").json()
    assert (
        api["items"] and {x["job_id"] for x in api["items"]} == {second} and api["total"] == len(api["items"])
    )
    assert client.get("/api/v1/jobs/99999/logs").json()["error"]["code"] == "not_found"
    assert client.get(f"/api/v1/jobs/{second}/logs", params={"limit": 0}).status_code == 422

    # the job page shows the job's log lines
    page = client.get(f"/jobs/{first}").text
    assert 'id="job-log"' in page and "job succeeded" in page


def test_corrupt_lines_are_skipped_with_a_note(
    client: TestClient, studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = _run_import(studio, client, make_class_folders(tmp_path / "a", {"x": 2}), "p")
    path = studio.home / "logs" / "vistudio.log"
    with path.open("a", encoding="utf-8") as f:
        f.write('{"ts":"2026-01-01T00:00:00Z","job_id":' + str(job_id) + ',"message":"torn\n')
        f.write("not json at all\n[1, 2, 3]\n\x00\x00\x00\n")
    with path.open("ab") as fb:
        fb.write(b'{"job_id":%d,"message":"\xff\xfe bad utf-8"}\n' % job_id)
    page = tlogs.read_lines(studio.home)
    assert page.skipped == 4 and page.items  # the line with bad bytes still parses (replaced)
    code, out = cli(capsys, studio.home, "logs", "--job", str(job_id))
    assert code == 0 and out["skipped"] == 1 and all(x["job_id"] == job_id for x in out["items"])
    from vistudio.cli.main import main

    assert main(["--workspace", str(studio.home), "logs", "--job", str(job_id)]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable log line" in captured.err and "job succeeded" in captured.out


def test_rotation_keeps_a_bounded_number_of_files_and_reads_across_them(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    handler = tlogs.attach(home, max_bytes=4096, backups=2)
    try:
        for i in range(400):
            log.warning("line %04d %s", i, "x" * 40)
    finally:
        tlogs.detach(handler)
    files = tlogs.log_files(home)
    assert [f.name for f in files] == ["vistudio.log.2", "vistudio.log.1", "vistudio.log"]
    assert all(f.stat().st_size <= 4096 for f in files)
    page = tlogs.read_lines(home, limit=1000)
    numbers = [int(x["message"].split()[1]) for x in page.items]
    assert numbers == sorted(numbers) and numbers[-1] == 399 and page.skipped == 0
    assert len(tlogs.read_lines(home, limit=5).items) == 5


def test_a_file_rotated_by_another_process_is_reopened(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    handler = tlogs.attach(home, max_bytes=1 << 20, backups=3)
    try:
        log.warning("before")
        path = home / "logs" / "vistudio.log"
        path.rename(home / "logs" / "vistudio.log.1")  # what another process's rollover does
        log.warning("after")
    finally:
        tlogs.detach(handler)
    assert [x["message"] for x in tlogs.read_lines(home).items] == ["before", "after"]
    assert json.loads(path.read_text())["message"] == "after"


def test_follow_yields_new_lines_of_one_job(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    handler = tlogs.attach(home, max_bytes=1 << 20, backups=3)
    got: list[dict] = []  # type: ignore[type-arg]
    stop = threading.Event()
    try:
        log.warning("old line", extra={"job_id": 7})

        def reader() -> None:
            for item in tlogs.follow(home, job_id=7, stop=stop.is_set, poll=0.02):
                got.append(item)
                if len(got) == 2:
                    stop.set()

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.2)
        log.warning("other job", extra={"job_id": 8})
        log.warning("new one", extra={"job_id": 7})
        log.warning("and another", extra={"job_id": 7})
        t.join(timeout=10)
    finally:
        stop.set()
        tlogs.detach(handler)
    assert [x["message"] for x in got] == ["new one", "and another"]


def test_a_log_line_of_another_workspace_stays_out(tmp_path: Path) -> None:
    from vistudio.telemetry import context

    a, b = tmp_path / "a", tmp_path / "b"
    ha, hb = tlogs.attach(a, max_bytes=1 << 20, backups=1), tlogs.attach(b, max_bytes=1 << 20, backups=1)
    try:
        token = context.workspace.set(a)
        log.warning("for a only")
        context.workspace.reset(token)
    finally:
        tlogs.detach(ha)
        tlogs.detach(hb)
    assert [x["message"] for x in tlogs.read_lines(a).items] == ["for a only"]
    assert tlogs.read_lines(b).items == []
