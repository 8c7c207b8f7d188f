"""Dataset export benchmark: a project of ``--images`` generated images × ``--boxes`` boxes exported to
COCO and to YOLO by the real export job, against a naive exporter in the same run.

The project is built by importing a generated COCO dataset (PNG images ``--size`` pixels wide, 4:3;
boxes of three classes), not timed. Then, round by round (``--rounds``, medians reported), each
format is exported twice into fresh folders:

- **vistudio**: ``start_dataset_export`` + ``Worker.run_one`` (the job as the CLI runs it): the
  selection and all annotations in three queries, every image copied with its sha256 checked, every
  label line checked by the format's own reader before it is written, the partial folder renamed
  at the end;
- **baseline**: what a first implementation does — one ORM query per sample for its annotations
  (and a lookup per annotation for its class), ``shutil.copy2`` per image, no hashing, no checks.

Both write the same files (the baseline's COCO JSON and YOLO labels hold the same objects); the
ratio is baseline time / vistudio time (> 1: vistudio is faster). The dry run (``preview_export``:
what the format drops, without writing) is timed too.

    .venv/bin/python benchmarks/dataset_export.py [--images 2000] [--boxes 10] [--size 64] [--rounds 3]

Prints one JSON document (and writes it to ``--out FILE``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select

from vistudio.config import ImportSettings, Settings
from vistudio.db import Annotation, LabelClass, Sample
from vistudio.jobs.worker import Worker
from vistudio.services import dataset_export, projects
from vistudio.services.ingest import start_import
from vistudio.studio import Studio, open_studio

CLASSES = ("car", "person", "dog")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def generate(root: Path, n: int, boxes: int, width: int, seed: int = 0) -> Path:
    """A COCO folder of ``n`` noise PNGs with ``boxes`` random boxes each."""
    height = width * 3 // 4
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(1, n + 1):
        name = f"img{i:06d}.png"
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name, compress_level=1)
        images.append({"id": i, "file_name": name, "width": width, "height": height})
        for _ in range(boxes):
            x, y = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
            w, h = rng.uniform(2, width - x), rng.uniform(2, height - y)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(rng.integers(1, len(CLASSES) + 1)),
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "iscrowd": 0,
                }
            )
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return root


def vistudio_export(studio: Studio, fmt: str, out: Path) -> dict[str, Any]:
    job = dataset_export.start_dataset_export(studio, project="bench", format=fmt, out=out)
    Worker(studio).run_one(job_id=job["id"])
    final = studio.queue.get(job["id"])
    assert final.status == "succeeded", final.error
    return dict((final.result or {})["export"])


def _naive_samples(s: Any) -> list[Sample]:
    p = projects.find_project(s, "bench")
    return list(s.scalars(select(Sample).where(Sample.project_id == p.id).order_by(Sample.name)))


def _class_name(s: Any, class_id: int | None) -> str:
    row = s.get(LabelClass, class_id)  # the session's identity map caches it, as in an ORM loop
    return str(row.name)


def naive_coco(studio: Studio, out: Path) -> int:
    """One query per sample, a copy per image, one json.dump."""
    (out / "images").mkdir(parents=True)
    images, anns = [], []
    with studio.sessions() as s:
        samples = _naive_samples(s)
        names = {c.id: c.name for c in s.scalars(select(LabelClass))}
        cat_ids = {n: i + 1 for i, n in enumerate(sorted(set(names.values())))}
        for image_id, smp in enumerate(samples, start=1):
            shutil.copy2(studio.home / smp.path, out / "images" / Path(smp.name).name)
            images.append(
                {"id": image_id, "file_name": Path(smp.name).name, "width": smp.width, "height": smp.height}
            )
            for a in s.scalars(
                select(Annotation).where(Annotation.sample_id == smp.id, Annotation.score.is_(None))
            ):
                g = a.geometry or {}
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": cat_ids[_class_name(s, a.class_id)],
                        "bbox": [
                            g["x"] * smp.width,
                            g["y"] * smp.height,
                            g["w"] * smp.width,
                            g["h"] * smp.height,
                        ],
                        "iscrowd": 0,
                    }
                )
    cats = [{"id": i, "name": n} for n, i in cat_ids.items()]
    (out / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return len(anns)


def naive_yolo(studio: Studio, out: Path) -> int:
    """One query per sample, a copy and a label file per image, a data.yaml."""
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    count = 0
    with studio.sessions() as s:
        samples = _naive_samples(s)
        names = sorted({c.name for c in s.scalars(select(LabelClass))})
        ids = {n: i for i, n in enumerate(names)}
        for smp in samples:
            base = Path(smp.name).name
            shutil.copy2(studio.home / smp.path, out / "images" / base)
            lines = []
            for a in s.scalars(
                select(Annotation).where(Annotation.sample_id == smp.id, Annotation.score.is_(None))
            ):
                g = a.geometry or {}
                cid = ids[_class_name(s, a.class_id)]
                lines.append(
                    f"{cid} {g['x'] + g['w'] / 2:.6f} {g['y'] + g['h'] / 2:.6f} {g['w']:.6f} {g['h']:.6f}\n"
                )
                count += 1
            (out / "labels" / Path(base).with_suffix(".txt")).write_text("".join(lines))
    (out / "data.yaml").write_text(
        "train: images\nnames:\n" + "".join(f"  {i}: {n}\n" for n, i in ids.items())
    )
    return count


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--boxes", type=int, default=10)
    ap.add_argument("--size", type=int, default=64, help="image width in pixels (4:3)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        src = generate(root / "src", args.images, args.boxes, args.size)
        log(f"generated {args.images} images in {time.perf_counter() - t:.1f}s")
        studio = open_studio(
            Settings(home=root / "ws", offline=True, imports=ImportSettings(workers=os.cpu_count() or 1))
        )
        projects.create_project(studio, name="bench", task="detection")
        t = time.perf_counter()
        job = start_import(studio, project="bench", source=src, fmt="coco")
        Worker(studio).run_one(job_id=job["id"])
        assert studio.queue.get(job["id"]).status == "succeeded"
        log(f"imported in {time.perf_counter() - t:.1f}s")
        expected = args.images * args.boxes
        dry_s, preview = timed(lambda: dataset_export.preview_export(studio, project="bench", format="yolo"))
        assert preview["annotations"] == expected, preview
        times: dict[str, dict[str, list[float]]] = {
            f: {"vistudio": [], "baseline": []} for f in ("coco", "yolo")
        }
        naive = {"coco": naive_coco, "yolo": naive_yolo}
        results: dict[str, Any] = {}
        for r in range(args.rounds):
            for fmt in ("coco", "yolo"):
                seconds, res = timed(lambda fmt=fmt, r=r: vistudio_export(studio, fmt, root / f"v-{fmt}-{r}"))
                assert res["annotations"] == expected and res["dropped"] == {}, res
                times[fmt]["vistudio"].append(seconds)
                results[fmt] = res
                seconds, written = timed(lambda fmt=fmt, r=r: naive[fmt](studio, root / f"b-{fmt}-{r}"))
                assert written == expected
                times[fmt]["baseline"].append(seconds)
                log(
                    f"round {r + 1} {fmt}: vistudio {times[fmt]['vistudio'][-1]:.2f}s, baseline {seconds:.2f}s"
                )
                shutil.rmtree(root / f"v-{fmt}-{r}")
                shutil.rmtree(root / f"b-{fmt}-{r}")
        studio.close()
    formats = {}
    for fmt, t2 in times.items():
        v, b = statistics.median(t2["vistudio"]), statistics.median(t2["baseline"])
        formats[fmt] = {
            "vistudio_s": round(v, 3),
            "baseline_s": round(b, 3),
            "ratio": round(b / v, 2),
            "vistudio_images_per_s": round(args.images / v, 1),
            "baseline_images_per_s": round(args.images / b, 1),
            "rounds": {k: [round(x, 3) for x in xs] for k, xs in t2.items()},
            "annotations": results[fmt]["annotations"],
        }
    report = {
        "benchmark": "dataset_export",
        "images": args.images,
        "boxes_per_image": args.boxes,
        "image_size": [args.size, args.size * 3 // 4],
        "rounds": args.rounds,
        "formats": formats,
        "dry_run_s": round(dry_s, 3),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
