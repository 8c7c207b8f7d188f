"""Prometheus metrics of one Studio, and the ``/metrics`` text that merges them with the files of
worker processes and with gauges read from the database at scrape time.

- This process's counters and histograms live in a ``CollectorRegistry`` owned by the Studio (no
  module-level registry: two Studios in one process, as in tests, never mix their numbers).
- A standalone ``vistudio worker`` runs prometheus-client in multiprocess mode: its values go to
  files under ``<workspace>/metrics`` (see ``context.prepare_worker_process``); the server merges
  those files into its own output, summing series with the same labels.
- Queue depth, dead letters, projects, samples and index sizes are read when scraped: the
  database is the truth, and a gauge kept in memory would drift from it between processes.

The names, types and labels are listed in docs/operations.md; docs/grafana-dashboard.json queries them.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from vistudio.telemetry.context import multiproc_dir

if TYPE_CHECKING:
    from vistudio.studio import Studio

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "dead", "cancelled")


class Metrics:
    """The counters and histograms this process records (see the module docstring)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "vistudio_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "vistudio_http_request_duration_seconds",
            "HTTP request latency by method, route template and status code.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.job_seconds = Histogram(
            "vistudio_job_duration_seconds",
            "Wall time of one job attempt, by kind and outcome (succeeded, failed, dead, retried, "
            "cancelled, lease_lost).",
            ["kind", "status"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_retries = Counter(
            "vistudio_job_retries",
            "Job attempts that failed and went back to the queue.",
            ["kind"],
            registry=r,
        )
        self.jobs_dead_lettered = Counter(
            "vistudio_jobs_dead_lettered",
            "Jobs that used their last attempt and went to the dead-letter queue.",
            ["kind"],
            registry=r,
        )
        self.jobs_reaped = Counter(
            "vistudio_jobs_reaped", "Running jobs whose worker stopped renewing the lease.", registry=r
        )
        self.items = Counter(
            "vistudio_job_items",
            "Items processed by jobs (files imported or scanned, samples embedded, photos searched for "
            "faces, images captioned), by job kind: rate() gives items per second.",
            ["kind"],
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "vistudio_model_load_seconds",
            "Time to load a cached model or index, by cache entry kind.",
            ["entry"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.model_cache = Counter(
            "vistudio_model_cache_requests",
            "Model cache lookups by entry kind and result (hit or miss).",
            ["entry", "result"],
            registry=r,
        )

    def cache_event(self, key: Hashable, event: str, seconds: float) -> None:
        """The model cache's observer: ``event`` is ``hit`` or ``load`` (a miss that loaded)."""
        entry = _entry_kind(key)
        if event == "hit":
            self.model_cache.labels(entry, "hit").inc()
        else:
            self.model_cache.labels(entry, "miss").inc()
            self.model_load_seconds.labels(entry).observe(seconds)

    def exposition(self, studio: Studio) -> bytes:
        """The Prometheus text: this process, the worker processes' files, the database gauges."""
        families: list[Metric] = []
        if not _multiprocess_here():
            families += self.registry.collect()
        for folder in _metric_folders(studio.home):
            files = sorted(str(p) for p in folder.glob("*.db"))
            if files:
                families += MultiProcessCollector.merge(files, accumulate=True)
        families += database_gauges(studio)
        return generate_latest(_Families(merge_families(families)))


def _entry_kind(key: Hashable) -> str:
    # cache keys are tuples whose first item names the kind of entry ("encoder", "gazetteer", …):
    # bounded, unlike the full key (model names, project ids)
    head = key[0] if isinstance(key, tuple) and key else key
    return str(head)[:40] if isinstance(head, str) else type(head).__name__


def _multiprocess_here() -> bool:
    """Whether this process itself writes its values to files (then they are read from there)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _metric_folders(home: Path) -> list[Path]:
    folders = [multiproc_dir(home)]
    env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if env and Path(env).resolve() != folders[0].resolve():
        folders.append(Path(env))
    return [f for f in folders if f.is_dir()]


def clean_dead_files(home: Path) -> int:
    """Remove the metric files of worker processes that are gone (run when the server starts):
    their counts would otherwise be summed for ever. Files of live processes stay."""
    removed = 0
    folder = multiproc_dir(home)
    if not folder.is_dir():
        return 0
    for path in folder.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per name; samples with the same name and labels are summed (a counter counted
    by the server and by a worker process is one series)."""
    merged: dict[str, Metric] = {}
    index: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
    for fam in families:
        into = merged.get(fam.name)
        if into is None:
            into = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            index[fam.name] = {}
        seen = index[fam.name]
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            at = seen.get(key)
            if at is None:
                seen[key] = len(into.samples)
                into.samples.append(Sample(s.name, dict(s.labels), s.value, None, None))
            elif not s.name.endswith("_created"):
                old = into.samples[at]
                into.samples[at] = Sample(old.name, old.labels, old.value + s.value, None, None)
    return list(merged.values())


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def database_gauges(studio: Studio) -> list[Metric]:
    """Gauges read at scrape time: projects, samples, jobs by status (queue depth), dead letters,
    vectors per embedding model and bytes per index folder."""
    from sqlalchemy import func, select

    from vistudio.db import Job, Project, Sample
    from vistudio.db.embeddings import Embedding, EmbeddingModel

    with studio.sessions() as s:
        projects = s.scalar(select(func.count(Project.id))) or 0
        samples = s.scalar(select(func.count(Sample.id))) or 0
        jobs: dict[str, int] = {
            status: count for status, count in s.execute(select(Job.status, func.count()).group_by(Job.status))
        }
        vectors = s.execute(
            select(EmbeddingModel.name, EmbeddingModel.version, func.count())
            .join(Embedding, Embedding.model_id == EmbeddingModel.id)
            .group_by(EmbeddingModel.name, EmbeddingModel.version)
        ).all()
    out: list[Metric] = [
        GaugeMetricFamily("vistudio_projects", "Number of projects.", value=projects),
        GaugeMetricFamily("vistudio_samples", "Number of samples in all projects.", value=samples),
    ]
    depth = GaugeMetricFamily("vistudio_jobs", "Jobs by status (queue depth).", labels=["status"])
    for status in JOB_STATUSES:
        depth.add_metric([status], jobs.get(status, 0))
    out.append(depth)
    out.append(
        GaugeMetricFamily(
            "vistudio_dead_letter_jobs",
            "Jobs in the dead-letter queue (status dead), waiting to be requeued by hand.",
            value=jobs.get("dead", 0),
        )
    )
    vec = GaugeMetricFamily(
        "vistudio_index_vectors", "Stored embedding vectors by embedding model.", labels=["model"]
    )
    for name, version, count in vectors:
        vec.add_metric([f"{name}@{version}"[:120]], count)
    out.append(vec)
    size = GaugeMetricFamily("vistudio_index_bytes", "Bytes of each vector index folder.", labels=["index"])
    for folder, nbytes in index_sizes(studio.home / "indexes").items():
        size.add_metric([folder], nbytes)
    out.append(size)
    return out


def index_sizes(root: Path) -> dict[str, int]:
    """Bytes under each folder of ``indexes/`` (one per embedding model)."""
    sizes: dict[str, int] = {}
    if not root.is_dir():
        return sizes
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        total = 0
        for dirpath, _, names in os.walk(folder):
            for n in names:
                try:
                    total += os.stat(os.path.join(dirpath, n)).st_size
                except OSError:  # removed while we looked
                    continue
        sizes[folder.name[:120]] = total
    return sizes
