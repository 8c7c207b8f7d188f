"""Training throughput benchmark: vistudio's data path against a plain PyTorch loop, same run.

Both train the same catalog model (``--model``, random init) with the same optimiser (AdamW),
batch size, input size, device, precision and memory format:

- **baseline**: a plain PyTorch loop over a few in-memory batches of random tensors
  (N×3×S×S, already on the device), cycled — no decoding, no loader, no Lightning;
- **vistudio**: ``vistudio.ml.training.trainer.train`` on ``--images`` generated JPEG files on disk
  (decoded with draft shrink-on-load, train transform, ``ImageDataModule`` → Lightning), one epoch;
  its images/s is timed between optimiser steps (``on_step`` of every step after the warm-up),
  so process start, validation and checkpoint writing are not counted;
- **loader only** (information): the same DataLoader iterated without a model, images/s.

The ratio ``vistudio_ips / baseline_ips`` is the share of the pure compute speed the full data
path keeps (1.0 = no overhead); ``overhead_pct`` = (1 − ratio) × 100.

    .venv/bin/python benchmarks/train.py [--images 512] [--image-size 64] [--model resnet18] \\
        [--batch-size 32] [--device auto|cpu|cuda] [--precision 32|bf16] [--channels-last] \\
        [--num-workers N] [--source-size 256] [--cache DIR] [--out FILE]

    # the GPU figure (pending a GPU machine):
    .venv/bin/python benchmarks/train.py --model resnet50 --device cuda --precision bf16 \\
        --channels-last --images 5000 --image-size 224 --batch-size 128 --num-workers 8

Progress goes to stderr; one JSON document to stdout (and to ``--out``). ``other_cpu_s`` is the
rest of the machine's busy CPU time during a phase: on a shared machine, a large value means the
phase competed for the cores.
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
import torch
from PIL import Image

from vistudio.ml.models import build_model
from vistudio.ml.training.callbacks import TrainingCallbacks
from vistudio.ml.training.trainer import TrainSpec, resolve_accelerator, train

CLASSES = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def busy_cpu_s() -> float:
    """System-wide busy CPU seconds (all cores) from ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (f + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def make_images(folder: Path, n: int, size: int) -> list[tuple[str, int]]:
    """``n`` photo-like JPEGs (smooth colour field, a bright disc, noise), labelled 0..9 by disc position."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    items = []
    for i in range(n):
        label = i % CLASSES
        path = folder / f"img-{i:06d}-{label}.jpg"
        if not path.exists():
            base = np.stack([xx * rng.uniform(80, 200), yy * rng.uniform(80, 200), (xx + yy) * 60], axis=-1)
            cx, cy = 0.2 + 0.6 * (label % 5) / 4, 0.3 + 0.4 * (label // 5)
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < 0.02
            base[disc] = (250, 240, 200)
            noisy = base + rng.normal(0, 6, base.shape)
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        items.append((str(path), label))
    return items


def baseline(args: argparse.Namespace, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    """Plain PyTorch: model, AdamW, cross-entropy, a few fixed in-memory batches cycled."""
    torch.manual_seed(0)
    model, _ = build_model(args.model, CLASSES)
    model = model.to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    pool = [
        (
            torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device).contiguous(
                memory_format=fmt
            ),
            torch.randint(0, CLASSES, (args.batch_size,), device=device),
        )
        for _ in range(4)
    ]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    model.train()

    def step(i: int) -> None:
        x, y = pool[i % len(pool)]
        with autocast:
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    sync(device)
    busy0, t0 = busy_cpu_s(), time.perf_counter()
    cpu0 = time.process_time()
    for i in range(steps):
        step(i)
    sync(device)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "images": steps * args.batch_size,
        "seconds": round(wall, 3),
        "ips": round(steps * args.batch_size / wall, 2),
        "other_cpu_s": round(max(0.0, busy_cpu_s() - busy0 - cpu), 2),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepClock(TrainingCallbacks):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: dict[int, float] = {}
        self.busy: dict[int, float] = {}
        self.cpu: dict[int, float] = {}

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.times[step] = time.perf_counter()
        self.busy[step] = busy_cpu_s()
        self.cpu[step] = time.process_time()


def vistudio(
    args: argparse.Namespace, items: list[tuple[str, int]], work: Path, warmup: int
) -> dict[str, Any]:
    config = {
        "model": args.model,
        "image_size": args.image_size,
        "epochs": 1,
        "batch_size": args.batch_size,
        "lr": 1e-3,
        "scheduler": "none",
        "device": args.device,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "num_workers": args.num_workers,
        "log_every_n_steps": 1,
        "early_stopping": False,
        "seed": 0,
    }
    clock = StepClock(warmup)
    spec = TrainSpec(
        task="classification",
        config=config,
        classes=[str(i) for i in range(CLASSES)],
        train=items,
        val=items[: args.batch_size],
        workdir=str(work),
    )
    t0 = time.perf_counter()
    result = train(spec, clock)
    total = time.perf_counter() - t0
    steps = sorted(clock.times)
    first, last = steps[min(warmup, len(steps) - 1)], steps[-1]
    timed_steps = last - first
    wall = clock.times[last] - clock.times[first]
    cpu = clock.cpu[last] - clock.cpu[first]
    return {
        "images": timed_steps * args.batch_size,
        "seconds": round(wall, 3),
        "ips": round(timed_steps * args.batch_size / wall, 2) if wall > 0 else None,
        "whole_train_call_s": round(total, 2),
        "steps": result.step,
        "other_cpu_s": round(max(0.0, clock.busy[last] - clock.busy[first] - cpu), 2),
    }


def loader_only(args: argparse.Namespace, items: list[tuple[str, int]]) -> dict[str, Any]:
    """The training DataLoader alone (decode + augment + normalise + collate), no model."""
    from vistudio.ml.preprocess import preprocess_meta
    from vistudio.ml.tasks.classification import ClassificationConfig, ClassificationTask
    from vistudio.ml.training.data import ImageDataModule

    config = ClassificationConfig(model=args.model, image_size=args.image_size, batch_size=args.batch_size)
    task = ClassificationTask(classes=[str(i) for i in range(CLASSES)], config=config)
    _, info = task.build_model()
    data = ImageDataModule(
        task=task,
        preprocess=preprocess_meta(args.image_size, info.mean, info.std),
        train=items,
        val=items[:1],
        batch_size=args.batch_size,
        num_workers=max(0, args.num_workers),
    )
    t0 = time.perf_counter()
    n = sum(len(y) for _, y in data.train_dataloader())
    wall = time.perf_counter() - t0
    return {"images": n, "seconds": round(wall, 3), "ips": round(n / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512, help="files on disk, one epoch (default 512)")
    ap.add_argument("--image-size", type=int, default=64, help="model input side (default 64)")
    ap.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs (default 256)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--precision", default="32", choices=("32", "bf16"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader processes for vistudio (default 0)"
    )
    ap.add_argument("--warmup", type=int, default=3, help="steps not timed, both sides (default 3)")
    ap.add_argument("--cache", type=Path, help="keep the generated images here and reuse them")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.images < args.batch_size * (args.warmup + 2):
        ap.error(
            f"--images must be at least batch size × (warm-up + 2) = {args.batch_size * (args.warmup + 2)}"
        )
    accelerator = resolve_accelerator(args.device)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    with tempfile.TemporaryDirectory(prefix="vistudio-bench-train-") as tmp:
        folder = (args.cache or Path(tmp)) / f"jpeg-{args.source_size}-n{args.images}"
        log(f"generating {args.images} JPEGs of {args.source_size}px in {folder}")
        items = make_images(folder, args.images, args.source_size)
        steps = (
            args.images // args.batch_size - 1
        )  # the same number of optimiser steps as one epoch (drop_last)
        log(f"baseline: {args.model} on in-memory tensors, {steps} steps after {args.warmup} warm-up")
        base = baseline(args, device, steps - args.warmup, args.warmup)
        log(f"baseline: {base['ips']} images/s")
        log("vistudio: files → ImageDataModule → Lightning, one epoch")
        ours = vistudio(args, items, Path(tmp) / "work", args.warmup)
        log(f"vistudio: {ours['ips']} images/s")
        loader = loader_only(args, items)
        log(f"loader only: {loader['ips']} images/s")
    ratio = ours["ips"] / base["ips"] if ours["ips"] and base["ips"] else None
    result = {
        "benchmark": "train",
        "model": args.model,
        "device": str(device),
        "precision": args.precision,
        "channels_last": args.channels_last,
        "images": args.images,
        "image_size": args.image_size,
        "source_size": args.source_size,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "baseline_ips": base["ips"],
        "vistudio_ips": ours["ips"],
        "ratio": round(ratio, 3) if ratio else None,
        "overhead_pct": round((1 - ratio) * 100, 1) if ratio else None,
        "loader_only_ips": loader["ips"],
        "baseline": base,
        "vistudio": ours,
        "loader_only": loader,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        },
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
