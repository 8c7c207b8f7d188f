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

``--task detection`` (or ``instance_segmentation``) runs the same comparison for a catalog detector
(``--model``, default ``fcos_resnet18_fpn64`` / ``maskrcnn_resnet18_fpn64``): the JPEGs hold 1–3
coloured rectangles with their boxes (and polygons), the baseline cycles in-memory batches of
random images at the input size with fixed targets, and the data path is the project's: stored
targets → decode with draft → joint augmentation → list collate → the detector's own resize.

``--task semantic_segmentation`` (default model ``lraspp_mobilenet_v3_small``): the same JPEGs of
rectangles, whose polygons the data path paints into label maps (stored targets → decode with
draft → label map → joint image+mask augmentation, nearest-neighbour for the mask → collate); the
baseline cycles in-memory (N, 3, S, S) batches with fixed (N, S, S) label maps through the same
network and the task's own loss (cross-entropy, 255 ignored).

    .venv/bin/python benchmarks/train.py [--images 512] [--image-size 64] [--model resnet18] \\
        [--batch-size 32] [--device auto|cpu|cuda] [--precision 32|bf16] [--channels-last] \\
        [--num-workers N] [--source-size 256] [--cache DIR] [--out FILE]

    # semantic segmentation on CPU (docs/benchmarks.md):
    .venv/bin/python benchmarks/train.py --task semantic_segmentation --images 256 --image-size 128 \
        --source-size 256 --batch-size 8

    # detection on CPU (docs/benchmarks.md):
    .venv/bin/python benchmarks/train.py --task detection --images 96 --image-size 96 \
        --source-size 128 --batch-size 4

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
BOX_CLASSES = 3
DEFAULT_DETECTORS = {
    "detection": "fcos_resnet18_fpn64",
    "instance_segmentation": "maskrcnn_resnet18_fpn64",
    "semantic_segmentation": "lraspp_mobilenet_v3_small",
}


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


def make_box_images(
    folder: Path, n: int, size: int, *, first_class: int = 0
) -> list[tuple[str, dict[str, Any]]]:
    """``n`` JPEGs with 1–3 coloured rectangles each, and their stored targets (the format of
    ``services.experiments.split_items``: normalised boxes and polygons; class indices count from
    ``first_class``, 1 for a segmenter whose class 0 is the background)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        objects = []
        img = (rng.normal(120, 12, (size, size, 3))).clip(0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(0, BOX_CLASSES))
            w, h = rng.uniform(0.15, 0.45, 2)
            x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            img[int(y * size) : int((y + h) * size), int(x * size) : int((x + w) * size)] = (
                (230, 40, 40),
                (40, 200, 60),
                (50, 80, 230),
            )[k]
            poly = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
            objects.append(
                {
                    "class": k + first_class,
                    "box": [x, y, w, h],
                    "iscrowd": False,
                    "mask": {"polygons": [poly]},
                }
            )
        path = folder / f"box-{i:06d}.jpg"
        if not path.exists():
            Image.fromarray(img).save(path, quality=90)
        items.append((str(path), {"width": size, "height": size, "objects": objects}))
    return items


def baseline_detector(
    args: argparse.Namespace, device: torch.device, steps: int, warmup: int
) -> dict[str, Any]:
    """Plain PyTorch for a detector: model, AdamW, a few fixed in-memory batches (random images at
    the input size, one box per image) cycled."""
    from vistudio.ml.detectors import build_detector

    torch.manual_seed(0)
    model, _ = build_detector(args.model, BOX_CLASSES, image_size=args.image_size, task=args.task)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    s = args.image_size
    masks = args.task == "instance_segmentation"

    def target(j: int) -> dict[str, torch.Tensor]:
        x0, y0 = 4 + j % 8, 6 + j % 5
        box = torch.tensor([[x0, y0, x0 + s // 2, y0 + s // 3]], dtype=torch.float32, device=device)
        t = {"boxes": box, "labels": torch.tensor([1 + j % BOX_CLASSES], device=device)}
        if masks:
            m = torch.zeros(1, s, s, dtype=torch.uint8, device=device)
            m[0, y0 : y0 + s // 3, x0 : x0 + s // 2] = 1
            t["masks"] = m
        return t

    pool = [
        (
            [torch.rand(3, s, s, device=device) for _ in range(args.batch_size)],
            [target(b * args.batch_size + j) for j in range(args.batch_size)],
        )
        for b in range(4)
    ]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    model.train()

    def step(i: int) -> None:
        images, targets = pool[i % len(pool)]
        with autocast:
            losses = model(images, targets)
        loss = torch.stack([v.float() for v in losses.values()]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _timed(step, args, device, steps, warmup)


def baseline_segmenter(
    args: argparse.Namespace, device: torch.device, steps: int, warmup: int
) -> dict[str, Any]:
    """Plain PyTorch for a segmenter: the catalog network, AdamW, the task's loss, a few fixed
    in-memory batches of random images with rectangle label maps, cycled."""
    from vistudio.ml.segmenters import build_segmenter
    from vistudio.ml.tasks.semantic_segmentation import SegmentationLoss

    torch.manual_seed(0)
    k = BOX_CLASSES + 1  # the background first
    model, _ = build_segmenter(args.model, k)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    loss_fn = SegmentationLoss("ce", k, None).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    s, n = args.image_size, args.batch_size

    def labels(b: int) -> torch.Tensor:
        y = torch.zeros(n, s, s, dtype=torch.long, device=device)
        for j in range(n):
            x0, y0 = (b * n + j) % (s // 2), (b * n + 3 * j) % (s // 2)
            y[j, y0 : y0 + s // 3, x0 : x0 + s // 2] = 1 + (b * n + j) % BOX_CLASSES
        return y

    pool = [
        (torch.randn(n, 3, s, s, device=device).contiguous(memory_format=fmt), labels(b)) for b in range(4)
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

    return _timed(step, args, device, steps, warmup)


def _timed(
    step: Any, args: argparse.Namespace, device: torch.device, steps: int, warmup: int
) -> dict[str, Any]:
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

    return _timed(step, args, device, steps, warmup)


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
    args: argparse.Namespace, items: list[tuple[str, Any]], work: Path, warmup: int
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
        task=args.task,
        config=config,
        classes=model_classes(args.task),
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


def model_classes(task: str) -> list[str]:
    """The classes training gets: ten for classification, three box colours for detectors, the
    background and the three colours for a segmenter (its target class indices count from 1)."""
    if task == "classification":
        return [str(i) for i in range(CLASSES)]
    if task == "semantic_segmentation":
        return ["background", *(str(i) for i in range(BOX_CLASSES))]
    return [str(i) for i in range(BOX_CLASSES)]


def loader_only(args: argparse.Namespace, items: list[tuple[str, Any]]) -> dict[str, Any]:
    """The training DataLoader alone (decode + augment + normalise + collate), no model."""
    from vistudio.ml.tasks import get_training
    from vistudio.ml.training.data import ImageDataModule

    task_cls = get_training(args.task)
    config = task_cls.config_model(model=args.model, image_size=args.image_size, batch_size=args.batch_size)
    task = task_cls(classes=model_classes(args.task), config=config)
    _, info = task.build_model()
    data = ImageDataModule(
        task=task,
        preprocess=task.preprocess(info),
        train=items,
        val=items[:1],
        batch_size=args.batch_size,
        num_workers=max(0, args.num_workers),
    )
    t0 = time.perf_counter()
    n = sum(len(batch[0]) for batch in data.train_dataloader())  # a batch starts with its images
    wall = time.perf_counter() - t0
    return {"images": n, "seconds": round(wall, 3), "ips": round(n / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512, help="files on disk, one epoch (default 512)")
    ap.add_argument("--image-size", type=int, default=64, help="model input side (default 64)")
    ap.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs (default 256)")
    ap.add_argument(
        "--task",
        default="classification",
        choices=("classification", "detection", "instance_segmentation", "semantic_segmentation"),
    )
    ap.add_argument("--model", help="default resnet18; detection: fcos_resnet18_fpn64")
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
    args.model = args.model or DEFAULT_DETECTORS.get(args.task, "resnet18")
    if args.images < args.batch_size * (args.warmup + 2):
        ap.error(
            f"--images must be at least batch size × (warm-up + 2) = {args.batch_size * (args.warmup + 2)}"
        )
    accelerator = resolve_accelerator(args.device)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    with tempfile.TemporaryDirectory(prefix="vistudio-bench-train-") as tmp:
        boxes = args.task != "classification"
        dense = args.task == "semantic_segmentation"
        folder = (args.cache or Path(tmp)) / f"{'box' if boxes else 'jpeg'}-{args.source_size}-n{args.images}"
        log(f"generating {args.images} JPEGs of {args.source_size}px in {folder}")
        items: list[tuple[str, Any]] = (
            make_box_images(folder, args.images, args.source_size, first_class=int(dense))
            if boxes
            else list(make_images(folder, args.images, args.source_size))
        )
        steps = (
            args.images // args.batch_size - 1
        )  # the same number of optimiser steps as one epoch (drop_last)
        log(f"baseline: {args.model} on in-memory tensors, {steps} steps after {args.warmup} warm-up")
        bench = baseline_segmenter if dense else baseline_detector if boxes else baseline
        base = bench(args, device, steps - args.warmup, args.warmup)
        log(f"baseline: {base['ips']} images/s")
        log("vistudio: files → ImageDataModule → Lightning, one epoch")
        ours = vistudio(args, items, Path(tmp) / "work", args.warmup)
        log(f"vistudio: {ours['ips']} images/s")
        loader = loader_only(args, items)
        log(f"loader only: {loader['ips']} images/s")
    ratio = ours["ips"] / base["ips"] if ours["ips"] and base["ips"] else None
    result = {
        "benchmark": "train",
        "task": args.task,
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
