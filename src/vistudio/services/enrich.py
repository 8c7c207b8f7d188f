"""Batch enrichment — embeddings, faces, captions — of a project's photos, locally or on Ray.

``start_enrich`` without a Ray address queues the local jobs (``embed``, ``faces``, ``captions``).
With one it queues a single ``enrich`` job. That job runs in a vistudio worker like any other
(progress, cancel, retries and the dead-letter queue are the job system's) and hands the model
work to a Ray cluster, the existing engine: per step, a Ray Data pipeline

    from_items(sample id, path) → map_batches(read_files) → map_batches(<Step>Actor, actor pool)

that the job (the Ray driver) iterates with ``iter_batches``, writing each batch through the same
idempotent writers as the local jobs (``embeddings.store_vectors``, ``faces.store_faces``,
``captions.store_captions``) and calling ``ctx.progress`` and ``ctx.check_cancelled`` between
batches.

What travels: the files are read by Ray tasks pinned to the node of the job's worker (the machine
that holds the workspace and the library), and their *bytes* travel to the actors through Ray's
object store; actors never need the workspace's paths. The models do not travel: each actor loads
its model from its node's caches, downloads it under the workspace's weights policy, or reads a
checkpoint or model folder at the same path on its node, and must find the version the job was
started with (else the job fails for good). vistudio must be installed on every node.

Cancel stops iterating and closes the pipeline (Ray stops its tasks and actors); what was written
stays, and a rerun does only what is left. A cluster that cannot be reached is a permanent
failure naming the address; an actor that dies (after Ray's own few restarts) fails the attempt,
which the job system retries with backoff and dead-letters after ``max_attempts``.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from vistudio.errors import BadRequest, Conflict
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.projects import find_project
from vistudio.studio import Studio

log = logging.getLogger(__name__)

KIND = "enrich"
STEPS = ("embed", "faces", "captions")
LOCAL = "local"  # the address that starts a Ray instance on this machine
READ_CPUS = 0.25  # a file-reading task waits on the disk: a quarter of a core each
FACES_BATCH = 8  # photos per face actor call: the HOG detector takes ~0.3 s a photo on a CPU
ACTOR_RESTARTS = 2  # Ray restarts a dead actor this often before the job's attempt fails
CONNECT_TIMEOUT_S = 5.0
FAILED_REPORTED = 1000


def parse_steps(steps: str | Sequence[str] | None) -> list[str]:
    """``"embed,faces"`` or a list → the steps in their order of work; None → all of them."""
    if steps is None:
        return list(STEPS)
    names = [s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps) if s.strip()]
    unknown = sorted(set(names) - set(STEPS))
    if unknown or not names:
        raise BadRequest(
            f"unknown enrichment step(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(STEPS)}",
            details={"steps": list(STEPS)},
        )
    return [s for s in STEPS if s in names]


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def start_enrich(
    studio: Studio,
    *,
    project: str | int,
    steps: str | Sequence[str] | None = None,
    ray: str | None = None,
    actors: int | None = None,
) -> dict[str, Any]:
    """Queue the enrichment of a project's photos → ``{"mode": "local" | "ray", "jobs": [job]}``.

    Without ``ray``: the local jobs of the steps. With a Ray address (``host:port``, ``auto``,
    ``ray://host:port``, or ``local`` for an instance on this machine): one ``enrich`` job; the
    models are checked here first, so a missing one is a clear error at once.
    """
    chosen = parse_steps(steps)
    if actors is not None and not 1 <= actors <= 1024:
        raise BadRequest("actors must be between 1 and 1024")
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, name = p.id, p.name
    if ray is None:
        return {"mode": "local", "jobs": [_start_local(studio, step, project_id) for step in chosen]}
    address = ray.strip()
    if not address:
        raise BadRequest("give a Ray address (host:port, auto, ray://host:port) or 'local'")
    if not ray_available():
        raise BadRequest("Ray is not installed: pip install 'vistudio[ray]'", details={"extra": "ray"})
    params: dict[str, Any] = {"project": name, "steps": chosen, "ray": address, "actors": actors}
    if "embed" in chosen:
        params["embed"] = _embed_params(studio)
    if "faces" in chosen:
        from vistudio.ml.faces import check_embedder, models_dir
        from vistudio.services.faces import _check_enabled

        _check_enabled(studio)
        models_dir()
        check_embedder(studio.settings.faces.embedder)
    if "captions" in chosen:
        from vistudio.ml.captions import locate
        from vistudio.ml.weights import WeightsPolicy

        policy = WeightsPolicy.from_settings(studio.settings)
        if policy.offline:
            locate(studio.settings.captions.model, policy)
    with studio.sessions() as s:
        from vistudio.db import Job

        for job in s.scalars(
            select(Job).where(
                Job.project_id == project_id, Job.kind == KIND, Job.status.in_(("queued", "running"))
            )
        ):
            if job.params == params:
                return {"mode": "ray", "jobs": [job_dict(job)]}
            raise Conflict(
                f"project {name!r} is already being enriched (job {job.id}); cancel it or wait for it",
                details={"job": job.id},
            )
    job = studio.queue.enqueue(KIND, params, project_id=project_id)
    return {"mode": "ray", "jobs": [job_dict(job)]}


def _start_local(studio: Studio, step: str, project_id: int) -> dict[str, Any]:
    if step == "embed":
        from vistudio.services.embeddings import start_embedding

        return start_embedding(studio, project=project_id)
    if step == "faces":
        from vistudio.services.faces import start_faces

        return start_faces(studio, project=project_id)
    from vistudio.services.captions import start_captions

    return start_captions(studio, project=project_id)


def _embed_params(studio: Studio) -> dict[str, Any]:
    """The configured CLIP model as the ``embed`` job names it (checked: ``model_unavailable``)."""
    from vistudio.services.embeddings import configured_spec, describe_spec

    spec = configured_spec(studio.settings)
    d = describe_spec(studio, spec)
    spec_d = spec.to_dict()
    spec_d["name"] = d.name
    if d.checkpoint:
        spec_d["checkpoint"] = str(d.checkpoint)
    return {"model": spec_d, "name": d.name, "version": d.version}


# --- the cluster ---------------------------------------------------------------------------------


@dataclass
class RayConnection:
    """This process's connection to Ray (``ray.init`` is per process): closed when the studio's
    cache lets it go, which shuts down only an instance that this connection started."""

    address: str
    started: bool

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


@dataclass(frozen=True)
class Plan:
    """How a step's actors are placed: ``actors`` of ``cpus`` and ``gpus`` each, models on ``device``."""

    actors: int
    cpus: float
    gpus: float
    device: str
    nodes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _probe(address: str) -> None:
    """A TCP connection to ``host:port`` within seconds: an unreachable cluster is a clear error
    at once rather than Ray's minutes of retries."""
    target = address.removeprefix("ray://")
    if target == "auto":
        return
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise PermanentJobError(f"not a Ray address: {address!r} (host:port, auto, ray://host:port or local)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise PermanentJobError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def connect(address: str) -> RayConnection:
    """Connect this process to the cluster at ``address`` (``local``: start an instance here)."""
    import ray

    if address != LOCAL:
        _probe(address)
    if ray.is_initialized():
        # one cluster per process: the one this process is connected to already (a server's
        # earlier job, a test's instance) serves a job asking for the same one, or for "local"
        current = ray.get_runtime_context().gcs_address
        if address not in (LOCAL, "auto", current, f"ray://{current}"):
            raise PermanentJobError(
                f"this worker is connected to the Ray cluster at {current}, not {address}: "
                "run jobs for other clusters on another worker"
            )
        return RayConnection(address, started=False)
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PermanentJobError(f"cannot connect to the Ray cluster at {address}: {first[:300]}") from None
    return RayConnection(address, started=True)


def plan(actors: int | None, *, gpu_step: bool) -> Plan:
    """Place a step's actors on the cluster: one per GPU for a model step when the cluster has
    GPUs, else one per CPU but a core left to the readers (at least one actor); ``actors`` asks
    for fewer or more (capped by what the cluster has, so that no actor waits forever)."""
    import ray

    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 1))
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if gpu_step and gpus:
        return Plan(min(actors or gpus, gpus), 1.0, 1.0, "cuda", nodes)
    most = max(1, int(cpus - 1)) if cpus > 1.5 else 1
    cpu_each = 1.0 if cpus >= 1.5 else max(0.25, cpus - READ_CPUS)
    return Plan(min(actors or most, most), cpu_each, 0.0, "cpu", nodes)


def _pipeline(
    rows: Sequence[tuple[int, Path]], actor: type, kwargs: dict[str, Any], p: Plan, batch_size: int
) -> Any:
    """The Ray Data pipeline of one step over ``rows`` (sample id, file)."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from vistudio.ml.enrich import read_files

    ray.data.DataContext.get_current().enable_progress_bars = False
    here = ray.get_runtime_context().get_node_id()
    items = [{"sample_id": int(sid), "path": str(path)} for sid, path in rows]
    with warnings.catch_warnings():
        # the extra remote arguments (node pinning, restarts) are "deprecated" in recent Ray
        # releases in favour of named ones that older releases lack
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        warnings.filterwarnings("ignore", message=".*concurrency.*")
        return (
            ray.data.from_items(items)
            .map_batches(
                read_files,
                batch_size=batch_size,
                num_cpus=READ_CPUS,
                # the files are on the machine of this worker: read them there
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
            )
            .map_batches(
                actor,
                fn_constructor_kwargs=kwargs,
                batch_size=batch_size,
                compute=ActorPoolStrategy(size=p.actors),
                num_cpus=p.cpus,
                num_gpus=p.gpus or None,
                max_restarts=ACTOR_RESTARTS,
                max_task_retries=ACTOR_RESTARTS,
            )
        )


def _batches(ds: Any) -> Iterator[dict[str, Any]]:
    """The pipeline's output batches as they come; stopping early (a cancel) shuts it down. A
    model that an actor cannot load or that is not the job's version fails the job for good."""
    it = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
    try:
        yield from it
    except Exception as exc:
        text = str(exc)
        for marker in ("ModelMismatch", "ModelUnavailable"):
            if marker in text:
                line = next((ln for ln in text.splitlines() if marker in ln), text)
                raise PermanentJobError(f"on the Ray cluster: {line.strip()[:500]}") from None
        raise
    finally:
        close = getattr(it, "close", None)
        if callable(close):
            close()


class _Progress:
    def __init__(self, ctx: JobContext, total: int) -> None:
        self.ctx, self.total, self.done = ctx, total, 0

    def add(self, n: int, message: str) -> None:
        self.done += n
        self.ctx.progress(self.done, self.total, message)
        self.ctx.check_cancelled()


# --- the job --------------------------------------------------------------------------------------


@job_handler(KIND)
def run_enrich(ctx: JobContext) -> dict[str, Any]:
    studio = ctx.studio
    if ctx.project_id is None:
        raise PermanentJobError("the project of this enrichment job was deleted")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise PermanentJobError("Ray is not installed on this worker: pip install 'vistudio[ray]'") from None
    steps = parse_steps(ctx.params.get("steps"))
    address = str(ctx.params["ray"])
    ctx.progress(0, None, f"connecting to Ray at {address}", force=True)
    with studio.cache.hold(("ray", address), lambda: connect(address)):
        return _run_steps(ctx, ctx.project_id, steps, address)


def _run_steps(ctx: JobContext, project_id: int, steps: list[str], address: str) -> dict[str, Any]:
    import ray

    studio = ctx.studio
    work: dict[str, Any] = {}
    if "embed" in steps:
        work["embed"] = _embed_work(ctx, project_id)
    if "faces" in steps:
        work["faces"] = _faces_work(studio, project_id)
    if "captions" in steps:
        work["captions"] = _captions_work(studio, project_id)
    progress = _Progress(ctx, sum(w["count"] for w in work.values()))
    ctx.progress(0, progress.total, f"{progress.total} photo steps to do on Ray", force=True)
    report: dict[str, Any] = {
        "ray": {
            "address": address,
            "resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")},
        },
        "steps": {},
    }
    for step in steps:
        started = time.perf_counter()
        if step == "embed":
            out = _embed(ctx, project_id, work[step], progress)
        elif step == "faces":
            out = _faces(ctx, project_id, work[step], progress)
        else:
            out = _captions(ctx, project_id, work[step], progress)
        seconds = time.perf_counter() - started
        out["seconds"] = round(seconds, 3)
        out["photos_per_second"] = round(work[step]["count"] / seconds, 3) if seconds > 0 else None
        report["steps"][step] = out
    report["failed"] = sum(int(r.get("failed_count", 0)) for r in report["steps"].values())
    return {"report": report}


# --- embed ----------------------------------------------------------------------------------------


def _embed_work(ctx: JobContext, project_id: int) -> dict[str, Any]:
    from sqlalchemy import exists, func

    from vistudio.db import Sample
    from vistudio.db.embeddings import Embedding, EmbeddingModel
    from vistudio.ml.embed.encoder import ModelSpec
    from vistudio.services.embeddings import describe_spec

    studio = ctx.studio
    params = ctx.params["embed"]
    spec = ModelSpec.from_dict(params["model"])
    d = describe_spec(studio, spec)  # ModelUnavailable fails the job for good
    if d.version != params.get("version"):
        raise PermanentJobError(
            f"the checkpoint {spec.checkpoint} changed since this job was queued; start a new one"
        )
    with studio.sessions() as s:
        model = s.scalar(
            select(EmbeddingModel).where(EmbeddingModel.name == d.name, EmbeddingModel.version == d.version)
        )
        q = select(func.count()).select_from(Sample).where(Sample.project_id == project_id)
        if model is not None:
            q = q.where(~exists().where(Embedding.sample_id == Sample.id, Embedding.model_id == model.id))
        count = int(s.scalar(q) or 0)
        model_row = None if model is None else (model.id, model.dim, model.pretrained, model.checkpoint)
    return {"spec": spec, "described": d, "model": model_row, "count": count}


def _embed(ctx: JobContext, project_id: int, work: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    from vistudio.ml.embed.encoder import ModelInfo
    from vistudio.ml.enrich import EmbedActor
    from vistudio.ml.weights import WeightsPolicy
    from vistudio.services.embeddings import SetRun, begin_set, complete_set, pending_samples

    studio = ctx.studio
    d = work["described"]
    p = plan(ctx.params.get("actors"), gpu_step=True)
    explicit = False  # the configured model, as a search or an import would start it

    def begin(dim: int) -> SetRun:
        info = ModelInfo(
            name=d.name,
            pretrained=d.pretrained,
            version=d.version,
            dim=dim,
            device=p.device,
            checkpoint=str(d.checkpoint) if d.checkpoint else None,
        )
        return begin_set(studio, project_id=project_id, info=info, job_id=ctx.job_id, explicit=explicit)

    run = begin(work["model"][1]) if work["model"] is not None else None
    kwargs = {
        "spec": work["spec"].to_dict(),
        "version": d.version,
        "device": p.device,
        "weights": dataclasses.asdict(WeightsPolicy.from_settings(studio.settings, embed=True)),
    }
    last = 0
    while True:
        rows = pending_samples(
            studio, project_id=project_id, model_id=run.model_id if run else None, after_id=last
        )
        if not rows:
            break
        last = rows[-1][0]
        ds = _pipeline(rows, EmbedActor, kwargs, p, studio.settings.embed.batch_size)
        for batch in _batches(ds):
            ids, vectors, errors = batch["sample_id"].astype(np.int64), batch["vector"], batch["error"]
            if run is None:
                run = begin(int(vectors.shape[1]))
            ok = np.array([not e for e in errors], dtype=bool)
            failures = [(int(sid), str(e)) for sid, e in zip(ids, errors, strict=True) if e]
            n = run.store(studio, ids[ok], np.ascontiguousarray(vectors[ok], dtype=np.float32), failures)
            progress.add(n, f"embedding with {d.name} on Ray")
    if run is None:  # a project without photos
        return {
            "embedded": 0,
            "failed": 0,
            "failed_count": 0,
            "failed_items": [],
            "total": 0,
            "plan": p.to_dict(),
        }
    ctx.progress(progress.done, progress.total, "indexing", force=True)
    out = complete_set(studio, run, attempt=ctx.attempt)
    return {**out, "failed_count": out["failed"], "plan": p.to_dict()}


# --- faces ----------------------------------------------------------------------------------------


def _faces_work(studio: Studio, project_id: int) -> dict[str, Any]:
    from vistudio.services.faces import _pending, model_name

    if not studio.settings.faces.enabled:
        raise PermanentJobError("face recognition is turned off in this workspace (setting faces.enabled)")
    model = model_name(studio)
    rows = [(sid, Path(path)) for sid, path in _pending(studio, project_id, model)]
    return {"model": model, "rows": rows, "count": len(rows)}


def _faces(ctx: JobContext, project_id: int, work: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    from vistudio.ml.enrich import FacesActor, decode_faces
    from vistudio.services.faces import DECODE_LIMIT, face_options, finish_faces, store_faces

    studio = ctx.studio
    model = work["model"]
    rows: list[tuple[int, Path]] = work["rows"]
    paths = {sid: str(path) for sid, path in rows}
    # dlib's HOG detector runs on CPUs: face actors take no GPU
    p = plan(ctx.params.get("actors"), gpu_step=False)
    found, failed_count = 0, 0
    failed: list[dict[str, Any]] = []
    if rows:
        kwargs = {"options": face_options(studio.settings.faces), "max_pixels": DECODE_LIMIT, "model": model}
        for batch in _batches(_pipeline(rows, FacesActor, kwargs, p, FACES_BATCH)):
            results = []
            for sid, text, error in zip(batch["sample_id"], batch["faces"], batch["error"], strict=True):
                if error:
                    failed_count += 1
                    if len(failed) < FAILED_REPORTED:
                        failed.append(
                            {"sample_id": int(sid), "path": paths.get(int(sid), ""), "reason": str(error)}
                        )
                else:
                    results.append((int(sid), {"faces": decode_faces(str(text))}))
            found += store_faces(studio, project_id=project_id, model=model, results=results)
            progress.add(len(batch["sample_id"]), f"{found} faces (Ray)")
    ctx.progress(progress.done, progress.total, f"{found} faces; grouping them into people", force=True)
    people = finish_faces(studio, project_id)
    return {
        "photos": len(rows),
        "faces": found,
        "failed": failed,
        "failed_count": failed_count,
        "people": people,
        "model": model,
        "plan": p.to_dict(),
    }


# --- captions -------------------------------------------------------------------------------------


def _captions_work(studio: Studio, project_id: int) -> dict[str, Any]:
    from vistudio.ml.captions import locate, resolve_name, version_of
    from vistudio.ml.weights import WeightsPolicy
    from vistudio.services.captions import pending_captions

    cfg = studio.settings.captions
    policy = WeightsPolicy.from_settings(studio.settings)
    version = version_of(locate(cfg.model, policy))  # ModelUnavailable fails the job for good
    name = resolve_name(cfg.model)
    rows = pending_captions(studio, project_id, name, version)
    return {"name": name, "version": version, "policy": policy, "rows": rows, "count": len(rows)}


def _captions(ctx: JobContext, project_id: int, work: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    from vistudio.ml.enrich import CaptionActor
    from vistudio.services.captions import store_captions

    studio = ctx.studio
    cfg = studio.settings.captions
    rows: list[tuple[int, Path]] = work["rows"]
    p = plan(ctx.params.get("actors"), gpu_step=True)
    written, failed_count = 0, 0
    skipped: list[dict[str, Any]] = []
    if rows:
        kwargs = {
            "model": cfg.model,
            "version": work["version"],
            "device": p.device,
            "weights": dataclasses.asdict(work["policy"]),
            "max_side": cfg.max_side,
            "max_new_tokens": cfg.max_new_tokens,
            "num_beams": cfg.num_beams,
        }
        for batch in _batches(_pipeline(rows, CaptionActor, kwargs, p, cfg.batch_size)):
            pairs = []
            for sid, text, error in zip(batch["sample_id"], batch["text"], batch["error"], strict=True):
                if error:
                    failed_count += 1
                    if len(skipped) < FAILED_REPORTED:
                        skipped.append({"sample_id": int(sid), "reason": str(error)})
                else:
                    pairs.append((int(sid), str(text)))
            written += store_captions(
                studio, project_id=project_id, model=work["name"], version=work["version"], captions=pairs
            )
            progress.add(len(batch["sample_id"]), f"captioning with {work['name']} on Ray")
    return {
        "model": work["name"],
        "version": work["version"],
        "captioned": written,
        "skipped": skipped,
        "failed_count": failed_count,
        "plan": p.to_dict(),
    }
