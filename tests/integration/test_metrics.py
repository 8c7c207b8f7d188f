"""/metrics through prometheus-client: requests by route template, job durations by kind, the
queue gauges against the database, a worker process's numbers, and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from factories import make_class_folders
from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.studio import Studio
from vistudio.telemetry.context import multiproc_dir

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) → value."""
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(resp.text)
        for s in fam.samples
    }


def value(snap: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return snap.get((name, tuple(sorted(labels.items()))), 0.0)  # type: ignore[no-any-return]


def label_values(snap: dict, name: str, label: str) -> set[str]:  # type: ignore[type-arg]
    return {dict(lbl)[label] for (n, lbl) in snap if n == name and label in dict(lbl)}


def _import_job(studio: Studio, client: TestClient, folder: Path, project: str = "p") -> int:
    if client.get(f"/api/v1/projects/{project}").status_code == 404:
        client.post("/api/v1/projects", json={"name": project, "task": "classification"})
    resp = client.post("/api/v1/imports", json={"project": project, "source": str(folder)})
    assert resp.status_code == 202, resp.text
    return int(resp.json()["job"]["id"])


def test_requests_are_counted_by_route_template_never_the_raw_path(client: TestClient) -> None:
    for job_id in (123456, 654321, 42):
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.get("/api/v1/projects").status_code == 200
    snap = samples(client)
    by_template = dict(method="GET", route="/api/v1/jobs/{job_id}", status="404")
    assert value(snap, "vistudio_http_requests_total", **by_template) == 3
    assert value(snap, "vistudio_http_request_duration_seconds_count", **by_template) == 3
    assert value(snap, "vistudio_http_request_duration_seconds_bucket", le="+Inf", **by_template) == 3
    assert value(snap, "vistudio_http_request_duration_seconds_sum", **by_template) > 0
    assert (
        value(snap, "vistudio_http_requests_total", method="GET", route="/api/v1/projects", status="200") == 1
    )
    routes = label_values(snap, "vistudio_http_requests_total", "route")
    assert not any(str(n) in r for r in routes for n in (123456, 654321))

    # hostile input: a huge or odd path, an invented method, static files: no new label values
    before = routes | {"<unmatched>", "/static/{path}"}
    client.get("/" + "a" * 20_000)
    client.get("/api/v1/jobs/%00%ff/../../etc/passwd")
    client.get("/static/" + "x" * 300 + ".css")
    client.request("BREW", "/api/v1/projects")
    client.get("/api/v1/jobs/not-a-number")  # a matched route, refused by validation: its template
    snap = samples(client)
    routes = label_values(snap, "vistudio_http_requests_total", "route")
    assert routes <= before | {"/metrics"}, routes - before
    assert label_values(snap, "vistudio_http_requests_total", "method") <= {"GET", "OTHER"}
    assert (
        value(snap, "vistudio_http_requests_total", method="GET", route="/api/v1/jobs/{job_id}", status="422")
        == 1
    )


def test_request_id_header(client: TestClient) -> None:
    fresh = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert client.get("/health").headers["x-request-id"] != fresh
    # a plain id from a proxy is kept; anything else is replaced, never echoed
    assert (
        client.get("/health", headers={"X-Request-ID": "edge-7.abc"}).headers["x-request-id"] == "edge-7.abc"
    )
    odd = client.get("/health", headers={"X-Request-ID": "a b\tc" + "x" * 100}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", odd)


def test_job_duration_items_retries_and_queue_gauges(
    client: TestClient, studio: Studio, tmp_path: Path
) -> None:
    job_id = _import_job(studio, client, make_class_folders(tmp_path / "f", {"a": 3, "b": 2}))
    Worker(studio).run_one(job_id=job_id)
    assert studio.queue.get(job_id).status == "succeeded"
    # a job that fails for good, and one whose transient failures end in the dead-letter queue
    failed = studio.queue.enqueue(
        "import", {"source": str(tmp_path / "missing"), "format": "folder", "mode": "copy"}
    )
    Worker(studio).run_one(job_id=failed.id)
    dead = studio.queue.enqueue("no_such_kind_at_all", {}, max_attempts=1)
    w = Worker(studio, kinds=["no_such_kind_at_all"])
    job = studio.queue.claim(w.name, job_id=dead.id)
    assert job is not None
    studio.queue.fail(job.id, w.name, {"message": "x"}, transient=True)  # → dead (its only attempt)
    retry = studio.queue.enqueue(
        "import", {"source": str(tmp_path / "f"), "format": "folder"}, max_attempts=3
    )
    studio.queue.enqueue("import", {"source": "/nowhere"})  # stays queued

    snap = samples(client)
    assert value(snap, "vistudio_job_duration_seconds_count", kind="import", status="succeeded") == 1
    assert (
        value(snap, "vistudio_job_duration_seconds_bucket", kind="import", status="succeeded", le="+Inf") == 1
    )
    assert value(snap, "vistudio_job_duration_seconds_sum", kind="import", status="succeeded") > 0
    assert value(snap, "vistudio_job_duration_seconds_count", kind="import", status="failed") == 1
    # the import reported its files as progress: items/s of ingest is rate() of this counter
    assert value(snap, "vistudio_job_items_total", kind="import") >= 5
    # queue depth per status and the dead-letter count equal the database
    for status in ("queued", "running", "succeeded", "failed", "dead", "cancelled"):
        _, total = studio.queue.list(status=status, limit=1)
        assert value(snap, "vistudio_jobs", status=status) == total, status
    assert value(snap, "vistudio_jobs", status="queued") == 2
    assert value(snap, "vistudio_dead_letter_jobs") == 1 == value(snap, "vistudio_jobs", status="dead")
    assert value(snap, "vistudio_projects") == 1 and value(snap, "vistudio_samples") == 5

    # a transient failure that is retried counts as a retry
    from vistudio.jobs import worker as worker_mod

    def boom(_: object) -> dict:  # type: ignore[type-arg]
        raise OSError("disk hiccup")

    original = worker_mod.get_handler
    worker_mod.get_handler = lambda kind: boom  # type: ignore[assignment,return-value]
    try:
        Worker(studio).run_one(job_id=retry.id)
    finally:
        worker_mod.get_handler = original
    assert studio.queue.get(retry.id).status == "queued"
    snap = samples(client)
    assert value(snap, "vistudio_job_retries_total", kind="import") == 1
    assert value(snap, "vistudio_job_duration_seconds_count", kind="import", status="retried") == 1


def test_model_cache_hits_and_load_times(client: TestClient, studio: Studio) -> None:
    for _ in range(3):
        studio.cache.get(("encoder", "tiny", 1), lambda: object())
    snap = samples(client)
    assert value(snap, "vistudio_model_cache_requests_total", entry="encoder", result="miss") == 1
    assert value(snap, "vistudio_model_cache_requests_total", entry="encoder", result="hit") == 2
    assert value(snap, "vistudio_model_load_seconds_count", entry="encoder") == 1


def test_index_sizes(client: TestClient, studio: Studio) -> None:
    folder = studio.home / "indexes" / "ViT-B-32"
    folder.mkdir(parents=True)
    (folder / "index.faiss").write_bytes(b"\0" * 1234)
    assert value(samples(client), "vistudio_index_bytes", index="ViT-B-32") == 1234


def test_a_worker_process_reports_to_the_server(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    """A standalone `vistudio worker` writes its metrics to <workspace>/metrics; the server's
    /metrics merges them with its own (one series, summed)."""
    folder = make_class_folders(tmp_path / "f", {"a": 2})
    in_process = _import_job(studio, client, folder)
    Worker(studio).run_one(job_id=in_process)
    elsewhere = _import_job(studio, client, make_class_folders(tmp_path / "g", {"b": 2}), project="q")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vistudio.cli.main",
            "--workspace",
            str(studio.home),
            "--json",
            "worker",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["job"]["id"] == elsewhere
    assert studio.queue.get(elsewhere).status == "succeeded"
    files = list(multiproc_dir(studio.home).glob("*.db"))
    assert files, "the worker process wrote no metric files"
    snap = samples(client)
    assert value(snap, "vistudio_job_duration_seconds_count", kind="import", status="succeeded") == 2
    assert value(snap, "vistudio_job_items_total", kind="import") >= 4

    # a server that starts again drops the files of processes that are gone
    with TestClient(create_app(studio)) as again:
        assert not list(multiproc_dir(studio.home).glob("*.db"))
        assert (
            value(samples(again), "vistudio_job_duration_seconds_count", kind="import", status="succeeded")
            == 1
        )


def test_metrics_keep_the_api_token(studio: Studio) -> None:
    studio.settings.api_token = "s3cret"
    with TestClient(create_app(studio)) as c:
        assert c.get("/metrics").status_code == 401
        ok = c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and "vistudio_jobs" in ok.text
        # the refused request is counted, under no route (nothing was routed)
        assert 'route="<unrouted>",status="401"' in ok.text


# --- the Grafana dashboard -------------------------------------------------------------------
METRIC = re.compile(r"\b(vistudio_[a-zA-Z0-9_]+)\b")
BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _exprs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from _exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _exprs(v)


def exported(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """The series names /metrics exports (a declared histogram exports _bucket/_sum/_count, a
    counter _total, even before its first sample) and the label names seen on each."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for fam in text_string_to_metric_families(text):
        for suffix in suffixes.get(fam.type, ("",)):
            names.add(fam.name + suffix)
        for s in fam.samples:
            names.add(s.name)
            labels.setdefault(s.name, set()).update(s.labels)
    for line in text.splitlines():  # families without samples yet: their declared label names
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            for suffix in suffixes.get(typ, ("",)):
                names.add(name + suffix)
    return names, labels


def test_every_metric_the_grafana_dashboard_queries_exists(
    client: TestClient, studio: Studio, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_exprs(dashboard))
    assert len(exprs) >= 10
    # a few requests and a job, so that labelled series exist
    client.get("/api/v1/projects")
    client.get("/api/v1/jobs/77")
    Worker(studio).run_one(job_id=_import_job(studio, client, make_class_folders(tmp_path / "f", {"a": 2})))
    studio.cache.get(("encoder", "x"), lambda: 1)
    studio.cache.get(("encoder", "x"), lambda: 1)
    names, labels = exported(client.get("/metrics").text)
    used: set[str] = set()
    for expr in exprs:
        found = METRIC.findall(expr)
        assert found, f"no vistudio metric in {expr!r}"
        for name in found:
            assert name in names, f"{name} (in {expr!r}) is not exported by /metrics"
            used.add(name)
        # the labels it groups by exist on the series it queries (le: histogram buckets), where
        # the series has samples yet (a counter of retries has none until a job is retried)
        if not any(labels.get(n) for n in found):
            continue
        for group in BY.findall(expr):
            for label in (g.strip() for g in group.split(",") if g.strip()):
                assert any(label in labels.get(n, set()) for n in found), f"label {label} in {expr!r}"
    # the dashboard covers each area of the issue
    for needed in (
        "vistudio_http_requests_total",
        "vistudio_http_request_duration_seconds_bucket",
        "vistudio_job_duration_seconds_bucket",
        "vistudio_jobs",
        "vistudio_dead_letter_jobs",
        "vistudio_job_retries_total",
        "vistudio_job_items_total",
        "vistudio_index_vectors",
        "vistudio_model_load_seconds_bucket",
        "vistudio_model_cache_requests_total",
    ):
        assert needed in used, needed


@pytest.mark.slow
def test_metrics_overhead_benchmark_runs() -> None:
    """The benchmark keeps working at a toy size (its speed is measured by running it, not here)."""
    out = subprocess.run(
        [sys.executable, "benchmarks/metrics_overhead.py", "--requests", "30", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert set(result["routes"]) == {"/bench/ping", "/health", "middleware_alone"}
    for r in ("/bench/ping", "/health"):
        assert result["routes"][r]["with_us"] > 0 and result["routes"][r]["ratio"] > 0
    assert result["routes"]["middleware_alone"]["cpu_with_us"] > 0 and result["metrics_scrape_ms"] > 0
