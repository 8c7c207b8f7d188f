"""Library scan benchmark: a first scan of a folder of photos against the import benchmark's naive
baseline, in the same run, then rescans of the unchanged folder.

Phases, each in its own child process (so that its CPU figures are its own):

* **baseline** — ``benchmarks/ingest.py``'s naive one-process loop, imported from there: per file
  a full decode, ``exif_transpose``, ``imagehash.phash`` on the full-size image, a 256-px WebP
  thumbnail, sha256 and EXIF;
* **vistudio** — in a fresh workspace, a ``library`` project with the folder as its root:
  1. the *first scan* (``start_scan`` + ``Worker.run_one``; reference mode, so originals are read
     once and never copied; ``--workers`` probe processes) → images/s and the ratio to the baseline;
  2. a *no-change rescan*: the folder is only listed and stat'ed, no file is read;
  3. a *touched rescan*: every file's mtime moved by one second (restored afterwards), so each
     file is read and hashed again but, its hash being unchanged, not decoded.

The images are ``benchmarks/ingest.py``'s generated JPEGs (4:3, quality 90, photo-like, with EXIF),
made by its generator and cached with ``--cache``. Progress goes to stderr; one JSON document goes
to stdout at the end.

Usage::

    .venv/bin/python benchmarks/scan.py [--images 100] [--megapixels 12] [--workers N]
        [--cache DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as ingest_bench  # benchmarks/ is not a package: its folder is on sys.path


def log(message: str) -> None:
    """Progress line on stderr (stdout carries only the final JSON)."""
    print(f"[scan-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _timed_scan(studio: Any, project: str) -> dict[str, Any]:
    """Run one scan job here; its wall time, CPU time and report."""
    from vistudio.jobs.worker import Worker
    from vistudio.services import library

    job = library.start_scan(studio, project=project)
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = ingest_bench.cpu_times()
    start = time.perf_counter()
    Worker(studio).run_one(job_id=job["id"])
    seconds = time.perf_counter() - start
    out = ingest_bench.rusage_figures(ru_self, ru_children)
    out.update(ingest_bench.machine_load(cpu0, out["cpu_s_main"] + out["cpu_s_children"], seconds))
    done = library.scan_report(studio, job["id"])
    if done["job"]["status"] != "succeeded":
        raise SystemExit(f"scan failed: {done['job']['error']}")
    report = done["report"]
    out.update(
        seconds=round(seconds, 3),
        job_seconds=report["seconds"],
        files_read=done["job"]["progress"]["total"],
        **{k: report[k] for k in ("added", "updated", "removed", "unchanged", "touched", "failed_count")},
    )
    return out


def phase_vistudio(source: Path, workers: int, workdir: Path | None) -> dict[str, Any]:
    """First scan, no-change rescan and touched rescan of ``source`` in a fresh workspace."""
    from sqlalchemy import func, select

    from vistudio.config import ImportSettings, Settings
    from vistudio.db import Sample
    from vistudio.services import library, projects
    from vistudio.studio import open_studio

    files = ingest_bench.dataset_files(source)
    home = Path(tempfile.mkdtemp(prefix="bench-scan-", dir=workdir))
    mtimes = {p: p.stat() for p in files}
    try:
        studio = open_studio(Settings(home=home, imports=ImportSettings(workers=workers)))
        projects.create_project(studio, name="bench", task="library")
        library.add_roots(studio, project="bench", paths=[str(source)])
        log(f"vistudio: first scan of {len(files)} images with {workers} workers into {home}")
        first = _timed_scan(studio, "bench")
        log(f"vistudio: first scan {first['seconds']:.2f} s ({len(files) / first['seconds']:.2f} images/s)")
        rescan = _timed_scan(studio, "bench")
        log(
            f"vistudio: no-change rescan {rescan['seconds'] * 1000:.1f} ms, {rescan['files_read']} files read"
        )
        for p, st in mtimes.items():
            os.utime(p, (st.st_atime, st.st_mtime + 1))
        try:
            touched = _timed_scan(studio, "bench")
        finally:
            for p, st in mtimes.items():
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        log(f"vistudio: touched rescan {touched['seconds']:.2f} s, {touched['touched']} files re-hashed")
        with studio.sessions() as s:
            count = s.scalar(select(func.count()).select_from(Sample))
        studio.close()
        return {
            "images": len(files),
            "workers": workers,
            "ips": round(len(files) / first["seconds"], 3),
            "samples_in_db": int(count or 0),
            "first_scan": first,
            "rescan": rescan,
            "touched_rescan": touched,
        }
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_vistudio(source: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The vistudio phase in a fresh child process (this script with ``--phase``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", "--source", str(source)]
    cmd += ["--workers", str(args.workers)]
    if args.workdir:
        cmd += ["--workdir", str(args.workdir)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the vistudio phase failed with exit status {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def compare(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    source = ingest_bench.ensure_dataset(root, args.images, args.megapixels, args.gen_processes)
    files = ingest_bench.dataset_files(source)
    size = ingest_bench.prewarm(files)
    log(f"dataset: {len(files)} files, {size / ingest_bench.MIB:.0f} MiB")
    baseline = ingest_bench.run_phase("baseline", source, args)
    log(f"baseline: {baseline['ips']} images/s")
    vistudio = run_vistudio(source, args)
    first, rescan, touched = vistudio["first_scan"], vistudio["rescan"], vistudio["touched_rescan"]
    n = len(files)
    base_cpu = (baseline["cpu_s_main"] + baseline["cpu_s_children"]) / n
    scan_cpu = (first["cpu_s_main"] + first["cpu_s_children"]) / n
    cores = min(args.workers, os.cpu_count() or 1)
    width, height = ingest_bench.dimensions(args.megapixels)
    return {
        "benchmark": "scan",
        "machine": ingest_bench.machine(),
        "images": n,
        "megapixels": args.megapixels,
        "width": width,
        "height": height,
        "dataset_mib": round(size / ingest_bench.MIB, 1),
        "workers": args.workers,
        "baseline_ips": baseline["ips"],
        "scan_ips": vistudio["ips"],
        "ratio": round(vistudio["ips"] / baseline["ips"], 2),
        "baseline_cpu_ms_per_image": round(base_cpu * 1000, 1),
        "scan_cpu_ms_per_image": round(scan_cpu * 1000, 1),
        "cpu_bound_ratio": round(cores * base_cpu / scan_cpu, 2),
        "first_scan_s": first["seconds"],
        "rescan_s": rescan["seconds"],
        "rescan_job_s": rescan["job_seconds"],
        "rescan_files_per_s": round(n / rescan["seconds"]),
        "rescan_files_read": rescan["files_read"],
        "rescan_vs_first_scan": round(first["seconds"] / rescan["seconds"], 1),
        "touched_rescan_s": touched["seconds"],
        "touched_rescan_ips": round(n / touched["seconds"], 1),
        "other_cpu_s": {
            "baseline": baseline["other_cpu_s"],
            "first_scan": first["other_cpu_s"],
            "rescan": rescan["other_cpu_s"],
        },
        "samples_in_db": vistudio["samples_in_db"],
        "failed": first["failed_count"],
        "goals": {
            "samples_equal_images": vistudio["samples_in_db"] == n,
            "no_failures": first["failed_count"] == 0 and baseline["failed"] == 0,
            "rescan_reads_nothing": rescan["files_read"] == 0 and rescan["unchanged"] == n,
            "touched_rescan_decodes_nothing": touched["touched"] == n and touched["updated"] == 0,
        },
        "baseline": baseline,
        "vistudio": vistudio,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--images", type=int, default=100, help="generated images (default 100)")
    p.add_argument("--megapixels", type=float, default=12.0, help="image size, 4:3 (default 12)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="vistudio probe processes")
    p.add_argument("--cache", type=Path, default=None, help="keep generated images here and reuse them")
    p.add_argument(
        "--workdir", type=Path, default=None, help="where temporary workspaces go (default: TMPDIR)"
    )
    p.add_argument(
        "--gen-processes", type=int, default=os.cpu_count() or 1, help="processes generating images"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    p.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        print(json.dumps(phase_vistudio(args.source, args.workers, args.workdir)))
        return 0
    cleanup: list[Path] = []
    try:
        root = ingest_bench._dataset_root(args, cleanup)
        result = compare(args, root)
    finally:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
