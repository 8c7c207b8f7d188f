"""Embedding on Ray against the local embed job, in photos per second, on the same photos and model.

- **baseline**: the local ``embed`` job (``start_embedding`` + ``Worker.run_one``): a torch
  DataLoader in this process, batches of ``--batch-size``, torch on every core of this process.
- **ray**: an ``enrich`` job with ``--steps embed`` on a local Ray instance started before the
  clock (``ray.init(num_cpus=--cpus)``, as a running cluster would be): readers pinned to this node
  ship the files' bytes to ``--actors`` actors (default: one per CPU, one CPU left to the
  readers), each with its own copy of the model, one CPU each.

Both jobs include loading the model (the actors load theirs after the clock starts: that is part
of what a Ray job costs), writing every vector to SQLite and building the index. Each phase has
its own project over the same imported files (reference mode; the imports are not timed), and the
vectors of both are compared (they must agree to 1e-5).

The model is **untrained**: ``--model tiny`` (default) a 32-px two-layer CLIP saved as a
self-describing checkpoint, or ``--model ViT-B-32`` with seeded untrained weights (the real
architecture and cost, nothing to download). Numbers on a machine other jobs share are noisy: the
load average is reported with them. Prints one JSON document.

    .venv/bin/python benchmarks/enrich_ray.py [--images 200] [--megapixels 0.3] [--model tiny]
        [--cpus 2] [--actors N] [--batch-size 32] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset_files, ensure_dataset, prewarm

TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tiny_checkpoint(folder: Path) -> Path:
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**json.loads(json.dumps(TINY_CONFIG)))
    path = folder / "tiny-untrained.pt"
    torch.save(
        {"model_name": "tiny-untrained", "model_cfg": TINY_CONFIG, "state_dict": model.state_dict()}, path
    )
    return path


def vectors_of(studio: Any, project: str) -> dict[str, np.ndarray]:
    from sqlalchemy import select

    from vistudio.db import Sample
    from vistudio.db.embeddings import Embedding
    from vistudio.services.projects import get_project

    pid = get_project(studio, project)["id"]
    with studio.sessions() as s:
        rows = s.execute(
            select(Sample.name, Embedding.vector)
            .join(Embedding, Embedding.sample_id == Sample.id)
            .where(Sample.project_id == pid)
        ).all()
    return {name: np.frombuffer(blob, dtype="<f4") for name, blob in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--megapixels", type=float, default=0.3)
    ap.add_argument("--model", default="tiny", help="tiny, or an open_clip architecture (untrained)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--actors", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vistudio-bench")
    args = ap.parse_args()

    import ray

    from vistudio.config import EmbedSettings, ImportSettings, Settings
    from vistudio.jobs.worker import Worker
    from vistudio.services import embeddings, enrich, ingest, projects
    from vistudio.studio import open_studio

    folder = ensure_dataset(args.cache, args.images, args.megapixels, os.cpu_count() or 1)
    files = dataset_files(folder)[: args.images]
    prewarm(files)
    with tempfile.TemporaryDirectory(prefix="vistudio-bench-ray-") as tmp:
        work = Path(tmp)
        if args.model == "tiny":
            embed_cfg = EmbedSettings(
                model="tiny-untrained",
                checkpoint=str(tiny_checkpoint(work)),
                batch_size=args.batch_size,
                workers=0,
            )
        else:
            embed_cfg = EmbedSettings(
                model=args.model, pretrained="none", batch_size=args.batch_size, workers=0
            )
        embed_cfg = embed_cfg.model_copy(update={"device": "cpu"})
        studio = open_studio(
            Settings(
                home=work / "ws",
                offline=True,
                imports=ImportSettings(workers=os.cpu_count() or 1),
                embed=embed_cfg,
            )
        )
        try:
            for name in ("local", "ray"):
                projects.create_project(studio, name=name, task="library")
                job = ingest.start_import(studio, project=name, source=folder, mode="reference")
                Worker(studio).run_one(job["id"])
                if studio.queue.get(job["id"]).status != "succeeded":
                    raise SystemExit(f"import failed: {studio.queue.get(job['id']).error}")
            load0 = os.getloadavg()
            log(f"baseline: the local embed job over {len(files)} photos")
            job = embeddings.start_embedding(studio, project="local")
            t0 = time.perf_counter()
            Worker(studio).run_one(job["id"])
            local_s = time.perf_counter() - t0
            done = studio.queue.get(job["id"])
            if done.status != "succeeded":
                raise SystemExit(f"local embedding failed: {done.error}")

            log(f"ray: starting a local instance of {args.cpus} CPUs (not timed)")
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
            try:
                started = enrich.start_enrich(
                    studio, project="ray", steps="embed", ray="local", actors=args.actors
                )
                t0 = time.perf_counter()
                Worker(studio).run_one(started["jobs"][0]["id"])
                ray_s = time.perf_counter() - t0
            finally:
                ray.shutdown()
            done = studio.queue.get(started["jobs"][0]["id"])
            if done.status != "succeeded":
                raise SystemExit(f"ray embedding failed: {done.error}")
            step = done.result["report"]["steps"]["embed"]
            load1 = os.getloadavg()
            local_v, ray_v = vectors_of(studio, "local"), vectors_of(studio, "ray")
            if sorted(local_v) != sorted(ray_v) or len(local_v) != len(files):
                raise SystemExit("the two jobs embedded different photos")
            diff = max(float(np.abs(local_v[n] - ray_v[n]).max()) for n in local_v)
            if diff > 1e-5:
                raise SystemExit(f"the vectors differ by {diff}")
        finally:
            studio.close()
    local_ips, ray_ips = len(files) / local_s, len(files) / ray_s
    print(
        json.dumps(
            {
                "benchmark": "enrich_ray",
                "images": len(files),
                "megapixels": args.megapixels,
                "model": args.model,
                "weights": "untrained (random, seeded): the cost of the architecture, no meaningful vectors",
                "batch_size": args.batch_size,
                "ray": {"cpus": args.cpus, "plan": step["plan"], "version": ray.__version__},
                "local_job_s": round(local_s, 3),
                "ray_job_s": round(ray_s, 3),
                "local_ips": round(local_ips, 2),
                "ray_ips": round(ray_ips, 2),
                "ratio_ray_over_local": round(ray_ips / local_ips, 3),
                "max_abs_vector_diff": diff,
                "load_average_before_after": [round(load0[0], 2), round(load1[0], 2)],
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "note": "both jobs include model loading; Ray's includes starting its actors",
            }
        )
    )


if __name__ == "__main__":
    main()
