"""Embedding throughput: JPEG files → stored vectors, in images per second — vistudio's embed job
against a naive loop in the same run, with the same model.

- **baseline**: one image at a time — ``Image.open`` + full decode, EXIF transpose, RGB, the model's
  preprocessing, ``encode_image`` on a batch of one, L2 normalisation. Vectors stay in memory.
- **vistudio**: a real ``embed`` job (``start_embedding`` + ``Worker.run_one``) over a project whose
  images were imported beforehand (reference mode; the import is not timed): a torch DataLoader
  decoding with shrink-on-load (``Image.draft``) in ``--workers`` processes, batches of
  ``--batch-size``, autocast on GPU, every vector written to SQLite and the FAISS index built and
  saved. The model is loaded before the clock starts, in both phases.

The model defaults to ViT-B-32 with **untrained** weights (``--pretrained none``): the same
architecture, so the same cost, as pretrained weights, with nothing to download. ``--model-config
FILE.json`` registers an open_clip model config first (its name is the file's stem), e.g. a tiny
model for a smoke run. Both phases run on ``--device``. Prints one JSON document.

    .venv/bin/python benchmarks/embed.py [--images 200] [--megapixels 2] [--device auto]
        [--model ViT-B-32] [--pretrained none] [--batch-size 64] [--workers N] [--cache DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import dataset_files, ensure_dataset, prewarm


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (from /proc/stat), to see other load."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in fields]
        busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def baseline(files: list[Path], encoder: Any) -> tuple[float, np.ndarray, dict[str, Any]]:
    """The naive loop: full decode and a forward pass per image."""
    from PIL import Image, ImageOps

    vectors = np.empty((len(files), encoder.info.dim), dtype=np.float32)
    cpu0, busy0, t0 = cpu_seconds(), machine_busy(), time.perf_counter()
    for i, path in enumerate(files):
        with Image.open(path) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        vectors[i] = encoder.encode_images(encoder.preprocess(rgb).unsqueeze(0))[0]
    if encoder.info.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    return wall, vectors, {"cpu_s": round(cpu, 2), "other_cpu_s": round(machine_busy() - busy0 - cpu, 2)}


def vistudio_phase(
    files: list[Path], folder: Path, work: Path, args: argparse.Namespace
) -> tuple[float, dict[int, np.ndarray], dict[str, Any]]:
    from vistudio.config import EmbedSettings, ImportSettings, Settings
    from vistudio.jobs.worker import Worker
    from vistudio.services import embeddings, ingest, projects
    from vistudio.studio import open_studio

    embed_cfg = EmbedSettings(
        model=args.model,
        pretrained=args.pretrained,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
    )
    studio = open_studio(
        Settings(home=work / "ws", imports=ImportSettings(workers=os.cpu_count() or 1), embed=embed_cfg)
    )
    try:
        project_id = projects.create_project(studio, name="bench", task="library")["id"]
        log(f"vistudio: importing {len(files)} images (reference mode, not timed)")
        job = ingest.start_import(studio, project="bench", source=folder, mode="reference")
        Worker(studio).run_one(job["id"])
        imported = studio.queue.get(job["id"])
        if imported.status != "succeeded":
            raise SystemExit(f"import failed: {imported.error}")
        spec = embeddings.configured_spec(studio.settings)
        encoder = embeddings.encoder_for(studio, spec)  # loaded before the clock, like the baseline's
        log(f"vistudio: embedding on {encoder.info.device} (batch {args.batch_size}, {args.workers} workers)")
        job = embeddings.start_embedding(studio, project="bench")
        cpu0, busy0, t0 = cpu_seconds(), machine_busy(), time.perf_counter()
        Worker(studio).run_one(job["id"])
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        done = studio.queue.get(job["id"])
        if done.status != "succeeded":
            raise SystemExit(f"embedding failed: {done.error}")
        report = (done.result or {})["report"]
        ids, vecs, _ = embeddings.project_vectors(studio, project_id) or (np.empty(0), np.empty((0, 0)), {})
        from sqlalchemy import select

        from vistudio.db import Sample

        with studio.sessions() as s:
            names = dict(s.execute(select(Sample.id, Sample.name)).all())
        by_name = {names[int(i)]: v for i, v in zip(ids, vecs, strict=True)}
        extra = {
            "cpu_s": round(cpu, 2),
            "other_cpu_s": round(machine_busy() - busy0 - cpu, 2),
            "embedded": report["embedded"],
            "failed": report["failed"],
            "vectors_in_db": int(ids.size),
            "index_files": [str(p.relative_to(work)) for p in (work / "ws" / "indexes").rglob("*.npz")],
        }
        return wall, by_name, extra
    finally:
        studio.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--megapixels", type=float, default=2.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--model-config", type=Path, help="an open_clip model config JSON to register first")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--cache", type=Path, help="keep the generated JPEGs here and reuse them")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import open_clip
    import torch
    from PIL import Image

    if args.model_config:
        open_clip.add_model_config(args.model_config)
    from vistudio.ml.embed.clip import load_open_clip, resolve_device
    from vistudio.ml.embed.encoder import ModelSpec

    tmp = Path(tempfile.mkdtemp(prefix="vistudio-bench-embed-"))
    try:
        folder = ensure_dataset(
            args.cache or tmp / "images", args.images, args.megapixels, os.cpu_count() or 1
        )
        files = dataset_files(folder)[: args.images]
        prewarm(files)
        device = resolve_device(args.device)
        log(f"baseline: {len(files)} images one at a time on {device}")
        encoder = load_open_clip(ModelSpec(args.model, args.pretrained), device=device)
        encoder.encode_images(encoder.preprocess(Image.new("RGB", (64, 64))).unsqueeze(0))  # warm-up
        base_s, base_vecs, base_extra = baseline(files, encoder)
        del encoder
        log(f"baseline: {len(files) / base_s:.1f} images/s")
        vis_s, vis_vecs, vis_extra = vistudio_phase(files, folder, tmp, args)
        log(f"vistudio: {len(files) / vis_s:.1f} images/s")
        # the same images, the same model: shrink-on-load changes pixels a little, not the meaning
        agree = [float(base_vecs[i] @ vis_vecs[f.name]) for i, f in enumerate(files) if f.name in vis_vecs]
        result = {
            "benchmark": "embed",
            "images": len(files),
            "megapixels": args.megapixels,
            "model": args.model,
            "pretrained": args.pretrained,
            "device": device,
            "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "torch_threads": torch.get_num_threads(),
            "baseline_s": round(base_s, 3),
            "vistudio_s": round(vis_s, 3),
            "baseline_ips": round(len(files) / base_s, 2),
            "vistudio_ips": round(len(files) / vis_s, 2),
            "ratio": round(base_s / vis_s, 2),
            "cosine_baseline_vs_vistudio": {
                "min": round(min(agree), 4) if agree else None,
                "mean": round(float(np.mean(agree)), 4) if agree else None,
            },
            "baseline": base_extra,
            "vistudio": vis_extra,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
