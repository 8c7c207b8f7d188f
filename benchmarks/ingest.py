"""Import benchmark: vistudio's import against a naive one-process Pillow loop, in the same run.

Two modes:

* **compare** (default): generate ``--images`` JPEGs of ``--megapixels`` (4:3, real EXIF), then
  time (1) the *baseline*, one process doing for each file a full decode, ``exif_transpose``,
  a 256-px WebP thumbnail, ``imagehash.phash`` on the full-size image, sha256 and EXIF; and
  (2) a real *vistudio* import (copy mode, ``start_import`` + ``Worker.run_one``) of the same
  folder into a fresh workspace with ``--workers`` probe processes. Reports images/s of each,
  their ratio and the peak RSS of each phase's process tree.
* **memory** (``--memory-images N``): a vistudio import of N (small) images, sampling the
  process tree's RSS together with the job's progress, to show that peak memory depends on
  the number of images in flight (workers), not on the number of images imported.

Each phase runs in its own child process (this script re-invoked with ``--phase``) so that its
peak RSS and ``getrusage`` figures are its own and not the generator's or the other phase's.
Progress goes to stderr; one JSON document goes to stdout at the end.

Usage::

    .venv/bin/python benchmarks/ingest.py [--images 1000] [--megapixels 12] [--workers N]
        [--cache DIR] [--out results.json]
    .venv/bin/python benchmarks/ingest.py --memory-images 10000 --megapixels 1 [--cache DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageOps
from PIL.TiffImagePlugin import IFDRational

GENERATOR_VERSION = 1  # bump when the generated content changes, so caches are not reused
JPEG_QUALITY = 90
NOISE_SIGMA = 6.0  # sensor-like noise; gives ~3 MB per 12 MP JPEG at quality 90
ORIENTATIONS = (1, 6, 1, 1, 8, 3)  # half upright, half needing a transpose
THUMB_SIZE = 256
SAMPLE_INTERVAL_S = 0.05
MIB = 1024 * 1024
MEMORY_GOAL_MIB = 1.5 * 1024  # the "under 1.5 GB", read as GiB
RATIO_GOAL = 3.0


def log(message: str) -> None:
    """Progress line on stderr (stdout carries only the final JSON)."""
    print(f"[ingest-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- synthetic photos ---------------------------------------------------------------------------


def dimensions(megapixels: float) -> tuple[int, int]:
    """Width and height of a 4:3 image of about ``megapixels`` (12 -> 4000x3000)."""
    width = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    return width, round(width * 3 / 4)


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    centiseconds = round((value - degrees - minutes / 60) * 360000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(centiseconds, 100)


def make_exif(index: int) -> Image.Exif:
    """EXIF as a phone writes it: date, make/model, lens, GPS IFD and orientation."""
    exif = Image.Exif()
    taken = datetime(2023, 6, 1, 8, 0, 0) + timedelta(minutes=7 * index)
    stamp = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = f"BC-{index % 5}"  # Model
    exif[0x0112] = ORIENTATIONS[index % len(ORIENTATIONS)]  # Orientation
    exif[0x0132] = stamp  # DateTime
    exif[0x0131] = "vistudio-benchmark"  # Software
    sub = exif.get_ifd(0x8769)  # Exif IFD
    sub[0x9003] = stamp  # DateTimeOriginal
    sub[0x9004] = stamp  # DateTimeDigitized
    sub[0xA434] = "BenchLens 4.2mm f/1.8"  # LensModel
    sub[0x829A] = IFDRational(1, 120)  # ExposureTime
    sub[0x8827] = 100 + (index % 8) * 50  # ISOSpeedRatings
    gps = exif.get_ifd(0x8825)  # GPS IFD
    lat = 48.8566 + (index % 97) * 0.001
    lon = 2.3522 - (index % 89) * 0.001
    gps[0x0001] = "N"
    gps[0x0002] = _dms(lat)
    gps[0x0003] = "E" if lon >= 0 else "W"
    gps[0x0004] = _dms(lon)
    return exif


def make_photo(index: int, width: int, height: int) -> Image.Image:
    """A deterministic photo-like picture: smooth colour field, soft-edged shapes and noise.

    Drawn at a quarter of the size and upscaled (so edges are soft, as in a photo, and drawing
    is cheap), then Gaussian noise is added so the JPEG is as large as a real photo's.
    """
    rng = np.random.default_rng(1_000_003 * GENERATOR_VERSION + index)
    sw, sh = max(8, width // 4), max(6, height // 4)
    field = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    im = Image.fromarray(field, "RGB").resize((sw, sh), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = int(rng.integers(0, sw)), int(rng.integers(0, sh))
        r = int(rng.integers(sw // 40 + 1, sw // 6 + 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + r, y0 + r * 2 // 3), fill=colour)
    im = im.resize((width, height), Image.Resampling.BICUBIC)
    noise = (rng.standard_normal(size=(height, width, 1), dtype=np.float32) * NOISE_SIGMA).astype(np.int16)
    pixels = np.clip(np.asarray(im).astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _write_one(job: tuple[int, int, int, str]) -> int:
    """Generate image ``index`` into ``folder`` (atomically: a killed run leaves no half file)."""
    index, width, height, folder = job
    dest = Path(folder) / f"img_{index:06d}.jpg"
    if dest.is_file() and dest.stat().st_size > 0:
        return 0
    buf = io.BytesIO()
    make_photo(index, width, height).save(buf, "JPEG", quality=JPEG_QUALITY, exif=make_exif(index))
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, dest)
    return 1


def ensure_dataset(root: Path, images: int, megapixels: float, processes: int) -> Path:
    """The folder of ``images`` generated JPEGs under ``root``, generating only what is missing."""
    width, height = dimensions(megapixels)
    folder = root / f"jpeg-v{GENERATOR_VERSION}-{width}x{height}-q{JPEG_QUALITY}-n{images}"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(images) if not (folder / f"img_{i:06d}.jpg").is_file()]
    if not missing:
        log(f"dataset: {images} cached images in {folder}")
        return folder
    log(f"dataset: generating {len(missing)} of {images} images ({width}x{height}) in {folder}")
    start = time.perf_counter()
    jobs = [(i, width, height, str(folder)) for i in missing]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=processes) as pool:
        for done, _ in enumerate(pool.imap_unordered(_write_one, jobs, chunksize=4), 1):
            if done % max(1, len(jobs) // 20) == 0 or done == len(jobs):
                log(f"dataset: {done}/{len(jobs)} generated ({time.perf_counter() - start:.0f} s)")
    return folder


def dataset_files(folder: Path) -> list[Path]:
    """The generated JPEGs of ``folder``, in order."""
    return sorted(folder.glob("img_*.jpg"))


def prewarm(files: Iterable[Path]) -> int:
    """Read every file once so both phases start with the same (warm) page cache."""
    total = 0
    for path in files:
        total += len(path.read_bytes())
    return total


# --- memory sampling ----------------------------------------------------------------------------


def _kib(status: str, key: str) -> int:
    for line in status.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from ``/proc/<pid>/task/*/children``; None if unsupported."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids  # exited
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                kids.extend(int(x) for x in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # kernel without CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return kids


def _children_by_scan() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: the ppid is 2nd after the last ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from ``/proc/<pid>/task/*/children``, else ppids)."""
    tree, todo = [], [root]
    scanned: dict[int, list[int]] | None = None
    while todo:
        pid = todo.pop()
        tree.append(pid)
        kids = _children(pid) if scanned is None else None
        if kids is None:
            scanned = scanned if scanned is not None else _children_by_scan()
            kids = scanned.get(pid, [])
        todo.extend(kids)
    return tree


class TreeSampler(threading.Thread):
    """Samples the summed VmRSS of a process tree every ``interval`` seconds.

    Keeps the peak of the sum, every process's last-seen VmHWM (its own peak), and a timeline of
    ``(elapsed_s, tree_rss_kib, progress)`` where ``progress`` comes from the optional callable
    (polled at most every 0.25 s).
    """

    def __init__(
        self,
        root: int,
        *,
        interval: float = SAMPLE_INTERVAL_S,
        progress: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root = root
        self.interval = interval
        self.progress = progress
        self.stop_event = threading.Event()
        self.peak_kib = 0
        self.peak_processes = 0
        self.hwm_kib: dict[int, int] = {}
        self.timeline: list[tuple[float, int, int | None]] = []
        self.samples = 0
        self._last_progress: int | None = None
        self._start = time.perf_counter()

    def sample(self) -> None:
        """Take one sample of the tree."""
        total = 0
        pids = process_tree(self.root)
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                    status = fh.read()
            except OSError:
                continue  # exited between the scan and the read
            total += _kib(status, "VmRSS:")
            self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), _kib(status, "VmHWM:"))
        self.samples += 1
        if total > self.peak_kib:
            self.peak_kib = total
        self.peak_processes = max(self.peak_processes, len(pids))
        self.timeline.append((time.perf_counter() - self._start, total, self._last_progress))

    def run(self) -> None:
        """Sample until stopped."""
        next_poll = 0.0
        while not self.stop_event.is_set():
            now = time.perf_counter()
            if self.progress is not None and now >= next_poll:
                next_poll = now + 0.25
                with contextlib.suppress(Exception):  # a busy database: keep the previous value
                    self._last_progress = self.progress()
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        """Stop and take a last sample."""
        self.stop_event.set()
        self.join()

    def summary(self) -> dict[str, Any]:
        """Peak figures in MiB."""
        own = self.hwm_kib.get(self.root, 0)
        children = [v for pid, v in self.hwm_kib.items() if pid != self.root]
        return {
            "peak_tree_rss_mib": round(self.peak_kib / 1024, 1),
            "main_hwm_mib": round(own / 1024, 1),
            "max_child_hwm_mib": round(max(children, default=0) / 1024, 1),
            "sum_of_hwm_mib": round((own + sum(children)) / 1024, 1),
            "processes_seen": len(self.hwm_kib),
            "peak_processes": self.peak_processes,
            "rss_samples": self.samples,
        }


def cpu_times() -> dict[str, float]:
    """System-wide CPU seconds (all cores) from the first line of ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "idle": idle / tick,
        "iowait": iowait / tick,
        "steal": steal / tick,
    }


def machine_load(before: dict[str, float], own_cpu_s: float, seconds: float) -> dict[str, Any]:
    """How busy the whole machine was during a phase, and how much of that was someone else.

    ``other_cpu_s`` is the machine's busy CPU time minus this phase's own: on a shared machine a
    large value means the phase competed for the cores and its figures are pessimistic.
    """
    after = cpu_times()
    busy = after["busy"] - before["busy"]
    return {
        "machine_busy_cpu_s": round(busy, 1),
        "other_cpu_s": round(max(0.0, busy - own_cpu_s), 1),
        "iowait_s": round(after["iowait"] - before["iowait"], 1),
        "steal_s": round(after["steal"] - before["steal"], 1),
        "core_utilisation": round(own_cpu_s / (seconds * (os.cpu_count() or 1)), 2),
        "loadavg_end": os.getloadavg()[0],
    }


def rusage_figures(before_self: Any, before_children: Any) -> dict[str, Any]:
    """CPU seconds since the ``before`` snapshots and ``ru_maxrss`` (KiB on Linux) of self/children."""
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_self = (after_self.ru_utime - before_self.ru_utime) + (after_self.ru_stime - before_self.ru_stime)
    cpu_children = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    return {
        "cpu_s_main": round(cpu_self, 2),
        "cpu_s_children": round(cpu_children, 2),
        "ru_maxrss_self_mib": round(after_self.ru_maxrss / 1024, 1),
        "ru_maxrss_children_mib": round(after_children.ru_maxrss / 1024, 1),
    }


# --- the baseline -------------------------------------------------------------------------------


def _rational(value: Any) -> float:
    return float(value[0]) / float(value[1]) if isinstance(value, tuple) else float(value)


def naive_one(path: Path, thumbs: Path) -> dict[str, Any]:
    """The naive probe of one file: what a straightforward script would do, in one process."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # full-resolution decode
        exif = im.getexif()
        sub = exif.get_ifd(0x8769)
        gps = exif.get_ifd(0x8825)
        meta: dict[str, Any] = {
            "make": exif.get(0x010F),
            "model": exif.get(0x0110),
            "orientation": exif.get(0x0112),
            "taken": sub.get(0x9003),
            "lens": sub.get(0xA434),
        }
        if 2 in gps and 4 in gps:
            meta["lat"] = sum(_rational(v) / 60**i for i, v in enumerate(gps[2]))
            meta["lon"] = sum(_rational(v) / 60**i for i, v in enumerate(gps[4]))
        upright = ImageOps.exif_transpose(im).convert("RGB")
    phash = str(imagehash.phash(upright))  # on the full-size image
    width, height = upright.size
    upright.thumbnail((THUMB_SIZE, THUMB_SIZE))
    upright.save(thumbs / f"{sha}.webp", "WEBP")
    return {"sha256": sha, "phash": phash, "width": width, "height": height, **meta}


def phase_baseline(source: Path) -> dict[str, Any]:
    """Run the baseline over every file of ``source``; timings and memory of this process."""
    files = dataset_files(source)
    out: dict[str, Any] = {"images": len(files)}
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        thumbs = Path(tmp)
        sampler = TreeSampler(os.getpid())
        ru_self, ru_children = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        cpu0 = cpu_times()
        sampler.start()
        start = time.perf_counter()
        failed = 0
        for i, path in enumerate(files, 1):
            try:
                naive_one(path, thumbs)
            except Exception as exc:
                failed += 1
                log(f"baseline: {path.name}: {exc}")
            if i % max(1, len(files) // 10) == 0:
                rate = i / (time.perf_counter() - start)
                log(f"baseline: {i}/{len(files)} ({rate:.2f} images/s)")
        seconds = time.perf_counter() - start
        sampler.stop()
        out.update(rusage_figures(ru_self, ru_children))
        out.update(machine_load(cpu0, out["cpu_s_main"] + out["cpu_s_children"], seconds))
    out.update(sampler.summary())
    out.update(seconds=round(seconds, 2), ips=round(len(files) / seconds, 3), failed=failed)
    return out


# --- vistudio -----------------------------------------------------------------------------------


def _job_progress(db: Path, job_id: int) -> Callable[[], int | None]:
    """A callable reading the import job's ``progress_done`` through its own read-only connection."""
    conn: list[sqlite3.Connection] = []

    def read() -> int | None:
        if not conn:
            conn.append(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1, check_same_thread=False))
        row = conn[0].execute("SELECT progress_done FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else int(row[0])

    return read


def phase_vistudio(source: Path, workers: int, workdir: Path | None) -> dict[str, Any]:
    """A real copy-mode import of ``source`` into a fresh workspace; timings and memory of the tree."""
    from sqlalchemy import func, select

    from vistudio.config import ImportSettings, Settings
    from vistudio.db import Sample
    from vistudio.jobs.worker import Worker
    from vistudio.services.ingest import import_report, start_import
    from vistudio.services.projects import create_project
    from vistudio.studio import open_studio

    n_files = len(dataset_files(source))
    home = Path(tempfile.mkdtemp(prefix="bench-vistudio-", dir=workdir))
    try:
        studio = open_studio(Settings(home=home, imports=ImportSettings(workers=workers)))
        project = create_project(studio, name="bench", task="library")
        job = start_import(studio, project=project["id"], source=source, fmt="folder", mode="copy")
        sampler = TreeSampler(os.getpid(), progress=_job_progress(home / "vistudio.db", job["id"]))
        ru_self, ru_children = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        log(f"vistudio: importing {n_files} images with {workers} workers into {home}")
        cpu0 = cpu_times()
        sampler.start()
        start = time.perf_counter()
        finished = Worker(studio).run_one(job_id=job["id"])
        seconds = time.perf_counter() - start
        sampler.stop()
        out: dict[str, Any] = rusage_figures(ru_self, ru_children)
        out.update(machine_load(cpu0, out["cpu_s_main"] + out["cpu_s_children"], seconds))
        out.update(sampler.summary())
        report = import_report(studio, job["id"])
        rep = report["report"] or {}
        with studio.sessions() as s:
            count = s.scalar(
                select(func.count()).select_from(Sample).where(Sample.project_id == project["id"])
            )
        studio.close()
        out.update(
            images=n_files,
            workers=workers,
            seconds=round(seconds, 2),
            ips=round(n_files / seconds, 3),
            job_status=finished.status if finished is not None else None,
            job_error=report["job"].get("error"),
            samples_in_db=int(count or 0),
            imported=rep.get("imported"),
            failed=rep.get("failed_count"),
            duplicates=rep.get("duplicates"),
            near_duplicate_groups=rep.get("near_duplicate_groups"),
            timeline=_timeline(sampler.timeline, n_files),
        )
        log(f"vistudio: {out['ips']} images/s, status {out['job_status']}, {count} samples")
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _timeline(points: list[tuple[float, int, int | None]], total: int) -> dict[str, Any]:
    """Peak tree RSS against the number of images done (from the job's progress).

    ``checkpoints``: the running peak when the import had done k images; ``windows``: the peak
    within each tenth of the import. Flat values mean memory does not grow with the count.
    """
    marks = sorted({k for k in (100, 500, 1000, 2000, 5000, 10000, 20000, 50000) if k <= total} | {total})
    checkpoints, running, mi = [], 0, 0
    step = max(1, total // 10)
    windows: dict[int, int] = {}
    for _, rss, done in points:
        running = max(running, rss)
        if done is None:
            continue
        while mi < len(marks) and done >= marks[mi]:
            checkpoints.append({"images": marks[mi], "peak_tree_rss_mib": round(running / 1024, 1)})
            mi += 1
        bucket = min(done // step, 9) if done < total else 9
        windows[bucket] = max(windows.get(bucket, 0), rss)
    return {
        "checkpoints": checkpoints,
        "windows": [
            {
                "images": f"{b * step}-{total if b == 9 else (b + 1) * step}",
                "peak_tree_rss_mib": round(v / 1024, 1),
            }
            for b, v in sorted(windows.items())
        ],
    }


# --- orchestration ------------------------------------------------------------------------------


def run_phase(name: str, source: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run a phase in a fresh child process (this script with ``--phase``) and return its JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--source", str(source)]
    cmd += ["--workers", str(args.workers)]
    if args.workdir:
        cmd += ["--workdir", str(args.workdir)]
    log(f"phase {name}: starting")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed with exit status {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:
        mem_kib = _kib(fh.read(), "MemTotal:")
    import PIL

    return {
        "platform": platform.platform(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "mem_total_gib": round(mem_kib / MIB, 1),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "imagehash": imagehash.__version__,
    }


def _dataset_root(args: argparse.Namespace, stack: list[Path]) -> Path:
    if args.cache:
        return Path(args.cache).expanduser().resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-", dir=args.workdir))
    stack.append(tmp)
    return tmp


def compare(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The default mode: baseline and vistudio on the same images, then their ratio."""
    source = ensure_dataset(root, args.images, args.megapixels, args.gen_processes)
    files = dataset_files(source)
    size = prewarm(files)
    log(f"dataset: {len(files)} files, {size / MIB:.0f} MiB ({size / len(files) / MIB:.2f} MiB each)")
    baseline = run_phase("baseline", source, args)
    log(f"baseline: {baseline['ips']} images/s")
    vistudio = run_phase("vistudio", source, args)
    ratio = vistudio["ips"] / baseline["ips"]
    width, height = dimensions(args.megapixels)
    # Contention-robust secondary figures: CPU time per image, and the ratio the two would reach
    # if each had its cores to itself (baseline one core, vistudio min(workers, cores)).
    base_cpu = (baseline["cpu_s_main"] + baseline["cpu_s_children"]) / len(files)
    vis_cpu = (vistudio["cpu_s_main"] + vistudio["cpu_s_children"]) / len(files)
    cores = min(args.workers, os.cpu_count() or 1)
    return {
        "benchmark": "ingest",
        "mode": "compare",
        "machine": machine(),
        "images": len(files),
        "megapixels": args.megapixels,
        "width": width,
        "height": height,
        "dataset_mib": round(size / MIB, 1),
        "mean_file_mib": round(size / len(files) / MIB, 2),
        "workers": args.workers,
        "baseline_ips": baseline["ips"],
        "vistudio_ips": vistudio["ips"],
        "ratio": round(ratio, 2),
        "baseline_cpu_ms_per_image": round(base_cpu * 1000, 1),
        "vistudio_cpu_ms_per_image": round(vis_cpu * 1000, 1),
        "cpu_bound_ratio": round(cores * base_cpu / vis_cpu, 2),
        "other_cpu_s": {"baseline": baseline["other_cpu_s"], "vistudio": vistudio["other_cpu_s"]},
        "baseline_peak_rss_mib": baseline["peak_tree_rss_mib"],
        "peak_rss_mib": vistudio["peak_tree_rss_mib"],
        "samples_in_db": vistudio["samples_in_db"],
        "failed": vistudio["failed"],
        "goals": {
            f"ratio_at_least_{RATIO_GOAL:g}": ratio >= RATIO_GOAL,
            "samples_equal_images": vistudio["samples_in_db"] == len(files),
            "no_failures": vistudio["failed"] == 0 and baseline["failed"] == 0,
        },
        "baseline": baseline,
        "vistudio": vistudio,
    }


def memory(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The memory mode: one vistudio import of many images, peak RSS against images done."""
    source = ensure_dataset(root, args.memory_images, args.megapixels, args.gen_processes)
    files = dataset_files(source)
    size = prewarm(files)
    log(f"dataset: {len(files)} files, {size / MIB:.0f} MiB")
    vistudio = run_phase("vistudio", source, args)
    width, height = dimensions(args.megapixels)
    return {
        "benchmark": "ingest",
        "mode": "memory",
        "machine": machine(),
        "images": len(files),
        "megapixels": args.megapixels,
        "width": width,
        "height": height,
        "dataset_mib": round(size / MIB, 1),
        "workers": args.workers,
        "vistudio_ips": vistudio["ips"],
        "peak_rss_mib": vistudio["peak_tree_rss_mib"],
        "rss_by_images": vistudio["timeline"]["checkpoints"],
        "samples_in_db": vistudio["samples_in_db"],
        "failed": vistudio["failed"],
        "goals": {
            "peak_under_1_5_gib": vistudio["peak_tree_rss_mib"] < MEMORY_GOAL_MIB,
            "samples_equal_images": vistudio["samples_in_db"] == len(files),
            "no_failures": vistudio["failed"] == 0,
        },
        "vistudio": vistudio,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--images", type=int, default=1000, help="images in the compare mode (default 1000)")
    p.add_argument(
        "--megapixels", type=float, default=None, help="image size (default 12; 1 with --memory-images)"
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="vistudio probe processes")
    p.add_argument(
        "--memory-images", type=int, default=None, help="run the memory mode with this many images"
    )
    p.add_argument("--cache", type=Path, default=None, help="keep generated images here and reuse them")
    p.add_argument(
        "--workdir", type=Path, default=None, help="where temporary workspaces go (default: TMPDIR)"
    )
    p.add_argument(
        "--gen-processes", type=int, default=os.cpu_count() or 1, help="processes generating images"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    p.add_argument("--phase", choices=("baseline", "vistudio"), help=argparse.SUPPRESS)
    p.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.megapixels is None:
        args.megapixels = 1.0 if args.memory_images else 12.0
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: a phase (internal) or a whole benchmark run."""
    args = parse_args(argv)
    if args.phase:
        result = (
            phase_baseline(args.source)
            if args.phase == "baseline"
            else phase_vistudio(args.source, args.workers, args.workdir)
        )
        print(json.dumps(result))
        return 0
    cleanup: list[Path] = []
    try:
        root = _dataset_root(args, cleanup)
        result = memory(args, root) if args.memory_images else compare(args, root)
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
