"""Faces and people: face detection throughput, grouping faces into people, incremental assignment.

    .venv/bin/python benchmarks/faces.py [--photos 24] [--faces 20000] [--existing 100000] [--out FILE]
    .venv/bin/python benchmarks/faces.py --quick          # small sizes (a minute)
    .venv/bin/python benchmarks/faces.py --only pages [--page-faces 1000000] [--page-workspace DIR]

Four parts, each against a baseline in the same run, and a fifth run only when asked for
(``--only pages``: it builds a 5.6 GB workspace); one JSON document on stdout:

- ``detect``: ``--photos`` generated photos of ``--size`` (1200×800 by default, about 1 MP) with one
  or two faces each, composed from the four real portraits of ``tests/face_photos.py``. vistudio:
  the face job's reader (``services.faces._results``: a pool of ``faces.workers`` spawned
  processes, each loading dlib's models, pool start-up included) through a Studio whose settings
  ask for ``--workers`` processes; baseline: ``DlibFaces.detect`` in a plain one-process loop
  (models loaded before the clock). Faces per second of both and the ratio, the median over
  ``--rounds`` interleaved rounds; both must find the same faces (same count, same descriptors).
- ``cluster``: ``--faces`` synthetic 128-d descriptors of known people (``--per-person`` faces
  each, every face in its own photo): ``ml.face_clusters.cluster_faces`` (no seeds, every face
  free) against brute force (all pairwise distances in blocks with NumPy, the same threshold,
  connected components with SciPy). Pairwise precision / recall / F1 from the contingency table,
  wall time and peak memory (VmHWM above the RSS before the call) of both.
- ``incremental``: ``--existing`` faces already in people (the seeds) and ``--batch`` new faces
  (90 % of known people, 10 % of new ones): ``cluster_faces`` with seeds = the people and
  free = the new faces, in ms per new face, against the nearest existing face from an exact FAISS
  flat index (built and searched) under the same threshold.
- ``db``: the same through the product's service on SQLite (``services.people.cluster_project``,
  incremental): ``--db-faces`` faces written straight into the ``faces`` table, a first grouping,
  then ``--db-batch`` new faces; seconds per incremental run, split into reading the faces, the
  grouping and the writes, and a run with nothing new.
- ``methods`` (only when asked for): the grouping method against DBSCAN, HDBSCAN (scikit-learn) and
  dlib's chinese whispers on ``--method-faces`` synthetic faces at each ``--method-radius``.
- ``pages``: the People pages at scale. A library of ``--page-faces`` faces (1,000,000) in
  ``--page-faces``/2 photos, 95 % of them in ``--page-people`` people (10,000; Zipf-like sizes,
  5 % named, 2 % hidden), 5 % unplaced, with random 512-byte descriptors and WebP-sized random
  crops (``--crop-bytes``), written with bulk inserts. Every call the People grid, the person
  page, the review (its first and a deep page, and a Yes and a No each undone), the photo
  detail's face boxes and the browse filter by people make — the
  services and the pages through FastAPI's TestClient — timed after a warm-up (p50 / p95 of
  ``--page-repeat``), with ``EXPLAIN QUERY PLAN`` of each statement and flags for the steps that
  read more than a page shows. Baseline in the same run: the same calls on a library of the same
  shape with ``--page-base-faces`` faces (10,000): a paginated call should cost the same at both
  (ratio ≈ 1). ``--page-workspace DIR`` keeps both workspaces (and reuses them: the same data
  before and after a change, a migration applied when the workspace is opened).

The synthetic descriptors look like dlib's: people's centres are random directions at radius
``--radius`` (0.6: two people ≥ 0.6 apart, 0.85 on average), each face adds isotropic noise with a
per-face scale, so two faces of one person are 0.3–0.45 apart (measured and reported).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DIM = 128
THRESHOLD = 0.5  # faces.max_distance's default


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- machine and resources --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import faiss

    try:
        import dlib

        dlib_version = dlib.__version__
    except ImportError:
        dlib_version = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "dlib": dlib_version,
        "loadavg_start": os.getloadavg()[0],
    }


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def busy_cpu_s() -> float:
    """The machine's busy CPU seconds, all cores (first line of /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        f = [int(x) for x in fh.readline().split()[1:8]]
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Measured:
    """Wall time, own CPU (this process and its reaped children), the rest of the machine's CPU,
    and the peak RSS above the RSS at the start."""

    def __enter__(self) -> Measured:
        gc.collect()
        reset_peak()
        self.rss0 = rss_mib()
        self.cpu0, self.busy0 = own_cpu_s(), busy_cpu_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = own_cpu_s() - self.cpu0
        self.other_cpu = max(0.0, busy_cpu_s() - self.busy0 - self.cpu)
        self.peak_mib = rss_mib("VmHWM") - self.rss0

    def figures(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 3),
            "cpu_s": round(self.cpu, 2),
            "other_cpu_s": round(self.other_cpu, 1),
            "peak_mib": round(self.peak_mib, 1),
        }


# --- 1. detection + descriptors ----------------------------------------------------------------


def portraits() -> list[Image.Image]:
    sys.path.insert(0, str(ROOT / "tests"))
    from face_photos import NAMES, face_photos

    # a first call downloads them with pip: keep its output off stdout (the JSON document)
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        folder = face_photos()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    out = []
    for name in NAMES:
        with Image.open(folder / name) as im:
            out.append(ImageOps.exif_transpose(im).convert("RGB"))
    return out


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[tuple[Path, int]]:
    """``n`` JPEGs of ``size``: a blurred noise background and one or two portraits (scaled, some
    mirrored) pasted side by side. Returns (path, faces pasted)."""
    rng = np.random.default_rng(seed)
    people = portraits()
    w, h = size
    out = []
    for k in range(n):
        noise = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        bg = Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(4))
        count = 1 + k % 2
        chosen = rng.choice(len(people), size=count, replace=False)
        slot = w // count
        for s, p in enumerate(chosen.tolist()):
            im = people[p]
            scale = min(h * rng.uniform(0.75, 1.0) / im.height, slot * 0.98 / im.width)
            im = im.resize(
                (max(1, int(im.width * scale)), max(1, int(im.height * scale))), Image.Resampling.BILINEAR
            )
            if rng.random() < 0.5:
                im = ImageOps.mirror(im)
            x = s * slot + int(rng.integers(0, max(1, slot - im.width)))
            y = int(rng.integers(0, max(1, h - im.height)))
            bg.paste(im, (x, y))
        path = folder / f"photo-{k:04d}.jpg"
        bg.save(path, quality=90)
        out.append((path, count))
    return out


def detect_baseline(paths: list[str]) -> tuple[list[list[np.ndarray]], Measured]:
    """The naive loop: open, orient, ``DlibFaces.detect`` one photo after the other."""
    from vistudio.ml.faces import DlibFaces

    provider = DlibFaces()
    provider._load()  # models loaded before the clock, as a long-running loop would have them
    found = []
    with Measured() as m:
        for path in paths:
            with Image.open(path) as im:
                faces = provider.detect(ImageOps.exif_transpose(im))
            found.append([f.embedding for f in faces])
    return found, m


def detect_vistudio(
    paths: list[str], workers: int, home: Path
) -> tuple[list[list[np.ndarray]], Measured, float]:
    """The face job's reader: ``services.faces._results`` (pool start-up included)."""
    from vistudio.config import FaceSettings, Settings
    from vistudio.services import faces as face_service
    from vistudio.studio import open_studio

    studio = open_studio(Settings(home=home, faces=FaceSettings(workers=workers)))
    found = []
    first = float("nan")
    try:
        with Measured() as m:
            for res in face_service._results(studio, paths):
                if not found:
                    first = time.perf_counter() - m.t0
                if res["status"] != "ok":
                    raise RuntimeError(f"a photo failed: {res['reason']}")
                found.append([np.frombuffer(f["embedding"], dtype="<f4") for f in res["faces"]])
    finally:
        studio.close()
    return found, m, first


def bench_detect(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from vistudio.services.faces import POOL_MIN_PHOTOS

    w, h = (int(v) for v in args.size.lower().split("x"))
    folder = work / "photos"
    folder.mkdir()
    log(f"detect: making {args.photos} photos of {w}×{h}")
    photos = make_photos(folder, args.photos, (w, h))
    paths = [str(p) for p, _ in photos]
    for p in paths:
        Path(p).read_bytes()  # warm page cache for both
    pasted = sum(c for _, c in photos)
    rounds: list[dict[str, Any]] = []
    base_found: list[list[np.ndarray]] = []
    vis_found: list[list[np.ndarray]] = []
    for r in range(args.rounds):
        order = ("baseline", "vistudio") if r % 2 == 0 else ("vistudio", "baseline")
        row: dict[str, Any] = {}
        for which in order:
            log(f"detect: round {r + 1}/{args.rounds}, {which}")
            if which == "baseline":
                base_found, m = detect_baseline(paths)
                row["baseline"] = {**m.figures(), "faces": sum(map(len, base_found))}
            else:
                vis_found, m, first = detect_vistudio(paths, args.workers, work / f"ws-{r}")
                row["vistudio"] = {
                    **m.figures(),
                    "faces": sum(map(len, vis_found)),
                    "first_result_s": round(first, 2),
                }
        for k in ("baseline", "vistudio"):
            row[k]["faces_per_s"] = round(row[k]["faces"] / row[k]["seconds"], 2)
            row[k]["photos_per_s"] = round(len(paths) / row[k]["seconds"], 2)
        row["ratio"] = round(row["vistudio"]["faces_per_s"] / row["baseline"]["faces_per_s"], 2)
        rounds.append(row)
    same_counts = [len(a) for a in base_found] == [len(b) for b in vis_found]
    diff = max(
        (
            float(np.abs(a - b).max())
            for fa, fb in zip(base_found, vis_found, strict=True)
            for a, b in zip(fa, fb, strict=False)
        ),
        default=float("nan"),
    )
    med = lambda key, part: statistics.median(r[part][key] for r in rounds)  # noqa: E731
    return {
        "photos": len(paths),
        "size": f"{w}x{h}",
        "faces_pasted": pasted,
        "workers": args.workers,
        "path": "pool" if args.workers > 1 and len(paths) >= POOL_MIN_PHOTOS else "in-process",
        "baseline_faces_per_s": med("faces_per_s", "baseline"),
        "vistudio_faces_per_s": med("faces_per_s", "vistudio"),
        "ratio": statistics.median(r["ratio"] for r in rounds),
        # the ratio if each phase had its cores to itself (CPU time per face, pool start included)
        "cpu_bound_ratio": round(
            min(args.workers, os.cpu_count() or 1)
            * med("cpu_s", "baseline")
            / med("faces", "baseline")
            / (med("cpu_s", "vistudio") / med("faces", "vistudio")),
            2,
        ),
        "baseline_cpu_s_per_face": round(med("cpu_s", "baseline") / med("faces", "baseline"), 3),
        "vistudio_cpu_s_per_face": round(med("cpu_s", "vistudio") / med("faces", "vistudio"), 3),
        "vistudio_first_result_s": med("first_result_s", "vistudio"),
        "baseline_faces": rounds[-1]["baseline"]["faces"],
        "vistudio_faces": rounds[-1]["vistudio"]["faces"],
        "same_faces_per_photo": same_counts,
        "max_descriptor_diff": round(diff, 6),
        "rounds": rounds,
    }


# --- synthetic descriptors ----------------------------------------------------------------------


def centres(people: int, *, radius: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((people, DIM)).astype(np.float32)
    c *= radius / np.linalg.norm(c, axis=1, keepdims=True)
    return c


def faces_of(c: np.ndarray, labels: np.ndarray, *, noise: tuple[float, float], seed: int) -> np.ndarray:
    """One descriptor per label: its person's centre plus isotropic noise of a per-face scale."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(labels), DIM), dtype=np.float32)
    for lo in range(0, len(labels), 100_000):
        hi = min(len(labels), lo + 100_000)
        sigma = rng.uniform(noise[0], noise[1], hi - lo).astype(np.float32)[:, None]
        out[lo:hi] = c[labels[lo:hi]] + sigma * rng.standard_normal((hi - lo, DIM), dtype=np.float32)
    return out


def noise_for(args: argparse.Namespace) -> tuple[float, float]:
    return (args.noise * 0.8, args.noise * 1.2)


def distance_stats(x: np.ndarray, labels: np.ndarray, sample: int = 1000, seed: int = 3) -> dict[str, float]:
    """Percentiles of same-person distances and the nearest other person's face, on a sample."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    same, other = [], []
    sq = (x.astype(np.float64) ** 2).sum(1)
    for lo in range(0, len(picks), 250):
        p = picks[lo : lo + 250]
        d2 = sq[p][:, None] + sq[None, :] - 2 * (x[p].astype(np.float64) @ x.T.astype(np.float64))
        d = np.sqrt(np.maximum(d2, 0))
        mine = labels[p][:, None] == labels[None, :]
        mine_not_self = mine.copy()
        mine_not_self[np.arange(len(p)), p] = False
        same.extend(d[mine_not_self].tolist())
        other.extend(np.where(mine, np.inf, d).min(axis=1).tolist())
    s, o = np.array(same), np.array(other)
    return {
        "same_person_p1": round(float(np.percentile(s, 1)), 3) if len(s) else float("nan"),
        "same_person_p50": round(float(np.percentile(s, 50)), 3) if len(s) else float("nan"),
        "same_person_p99": round(float(np.percentile(s, 99)), 3) if len(s) else float("nan"),
        "same_person_max": round(float(s.max()), 3) if len(s) else float("nan"),
        "nearest_other_person_min": round(float(o.min()), 3),
        "nearest_other_person_p1": round(float(np.percentile(o, 1)), 3),
    }


def pairwise_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Pairwise precision / recall / F1 of a labelling from the contingency table (no pair lists)."""

    def pairs(counts: np.ndarray) -> int:
        c = counts.astype(np.int64)
        return int((c * (c - 1) // 2).sum())

    truth = np.unique(truth, return_inverse=True)[1].astype(np.int64)
    pred = np.unique(pred, return_inverse=True)[1].astype(np.int64)
    _, both = np.unique(truth * (int(pred.max()) + 1) + pred, return_counts=True)
    tp = pairs(both)
    predicted = pairs(np.unique(pred, return_counts=True)[1])
    actual = pairs(np.unique(truth, return_counts=True)[1])
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    return {
        "precision": round(p, 5),
        "recall": round(r, 5),
        "f1": round(2 * p * r / (p + r) if p + r else 0.0, 5),
        "true_pairs": actual,
        "predicted_pairs": predicted,
    }


def labels_of(n: int, groups: list[list[int]]) -> np.ndarray:
    """A label per face: its group's number, or a label of its own for a face in no group."""
    out = np.arange(n, dtype=np.int64) + n
    for g, members in enumerate(groups):
        out[np.asarray(members, dtype=np.int64)] = g
    return out


# --- 2. grouping from scratch -----------------------------------------------------------------


def brute_force_groups(x: np.ndarray, threshold: float, block: int = 256) -> np.ndarray:
    """Every pair closer than ``threshold`` (blocked NumPy distances), then connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(x)
    sq = (x * x).sum(1)
    limit = np.float32(threshold * threshold)
    rows, cols = [], []
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        d2 = x[lo:hi] @ x[lo:].T  # only j >= i's block: the upper triangle
        d2 *= -2
        d2 += sq[lo:][None, :]
        d2 += sq[lo:hi][:, None]
        i, j = np.nonzero(d2 < limit)
        keep = j > i  # both count from lo: the pair once, not a face with itself
        rows.append(i[keep] + lo)
        cols.append(j[keep] + lo)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def bench_cluster(args: argparse.Namespace) -> dict[str, Any]:
    from vistudio.ml.face_clusters import EXACT_WORK, cluster_faces

    n = args.faces
    people = max(1, n // args.per_person)
    rng = np.random.default_rng(1)
    truth = rng.permutation(np.repeat(np.arange(people), args.per_person)[:n])
    c = centres(people, radius=args.radius, seed=2)
    x = faces_of(c, truth, noise=noise_for(args), seed=4)
    log(f"cluster: {n} faces of {people} people; distance statistics")
    stats = distance_stats(x, truth)
    photos = np.arange(n, dtype=np.int64)  # every face in its own photo

    log("cluster: vistudio cluster_faces")
    with Measured() as mv:
        out = cluster_faces(x, photos, seeds={}, free=range(n), threshold=THRESHOLD, min_faces=args.min_faces)
    vis_labels = labels_of(n, out.new_groups)
    vis = {
        **mv.figures(),
        **pairwise_scores(truth, vis_labels),
        "people_found": len(out.new_groups),
        "faces_in_no_person": int((vis_labels >= n).sum()),
        "knn": "exact" if n * n <= EXACT_WORK else "HNSW",
    }
    log(f"cluster: vistudio {vis['seconds']} s, F1 {vis['f1']}; brute force")
    with Measured() as mb:
        labels = brute_force_groups(x, THRESHOLD)
    base = {**mb.figures(), **pairwise_scores(truth, labels), "people_found": len(np.unique(labels))}
    log(f"cluster: brute force {base['seconds']} s, F1 {base['f1']}")
    return {
        "faces": n,
        "people": people,
        "per_person": args.per_person,
        "threshold": THRESHOLD,
        "min_faces": args.min_faces,
        "distances": stats,
        "vistudio": vis,
        "brute_force": base,
        "ratio": round(base["seconds"] / vis["seconds"], 2),
        "memory_ratio": round(base["peak_mib"] / vis["peak_mib"], 2) if vis["peak_mib"] > 0 else None,
        "f1_goal_met": vis["f1"] >= 0.99,
    }


def bench_methods(args: argparse.Namespace) -> dict[str, Any]:
    """The grouping method chosen against the usual ones, on the same synthetic faces at each
    ``--method-radius`` (people's centres closer and closer: chaining gets likelier): vistudio's
    constrained single linkage, scikit-learn's DBSCAN (eps = the threshold, min_samples =
    ``--min-faces``) and HDBSCAN (min_cluster_size = ``--min-faces``), and dlib's chinese whispers
    (edges under the threshold). Pairwise F1, seconds and peak memory of each."""
    import dlib
    from sklearn.cluster import DBSCAN, HDBSCAN

    from vistudio.ml.face_clusters import cluster_faces

    n = args.method_faces
    people = max(1, n // args.per_person)
    rng = np.random.default_rng(1)
    truth = rng.permutation(np.repeat(np.arange(people), args.per_person)[:n])
    photos = np.arange(n, dtype=np.int64)

    def own(labels: np.ndarray) -> np.ndarray:  # "noise" (-1): each face a person of its own
        out = np.asarray(labels, dtype=np.int64).copy()
        lone = out < 0
        out[lone] = n + np.arange(int(lone.sum()))
        return out

    methods: dict[str, Any] = {
        "vistudio": lambda x: labels_of(
            n,
            cluster_faces(
                x, photos, seeds={}, free=range(n), threshold=THRESHOLD, min_faces=args.min_faces
            ).new_groups,
        ),
        "dbscan": lambda x: own(DBSCAN(eps=THRESHOLD, min_samples=args.min_faces).fit_predict(x)),
        "hdbscan": lambda x: own(HDBSCAN(min_cluster_size=max(2, args.min_faces)).fit_predict(x)),
        "chinese_whispers": lambda x: np.asarray(
            dlib.chinese_whispers_clustering([dlib.vector(v.tolist()) for v in x], THRESHOLD), dtype=np.int64
        ),
    }
    out: dict[str, Any] = {"faces": n, "people": people, "threshold": THRESHOLD, "runs": []}
    for radius in [float(r) for r in args.method_radius.split(",")]:
        x = faces_of(centres(people, radius=radius, seed=2), truth, noise=noise_for(args), seed=4)
        run: dict[str, Any] = {"radius": radius, "distances": distance_stats(x, truth)}
        for name, method in methods.items():
            log(f"methods: radius {radius}, {name}")
            gc.collect()
            with Measured() as m:
                labels = method(x)
            run[name] = {
                **m.figures(),
                **pairwise_scores(truth, labels),
                "people_found": len(np.unique(labels)),
            }
            log(f"methods: {name} {run[name]['seconds']} s, F1 {run[name]['f1']}")
        out["runs"].append(run)
    return out


# --- 3. incremental assignment (library) --------------------------------------------------------


def incremental_data(
    existing: int, batch: int, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, int]:
    """``existing`` faces of known people, then ``batch`` new faces: 90 % of known people, the rest
    of new people (``per_person`` faces each). Returns vectors, true labels, known people."""
    known = max(1, existing // args.per_person)
    fresh = max(1, (batch // 10) // args.per_person)
    rng = np.random.default_rng(7)
    old = rng.permutation(np.repeat(np.arange(known), args.per_person)[:existing])
    back = rng.integers(0, known, batch - fresh * args.per_person)
    new = rng.permutation(np.concatenate([back, np.repeat(np.arange(known, known + fresh), args.per_person)]))
    labels = np.concatenate([old, new]).astype(np.int64)
    c = centres(known + fresh, radius=args.radius, seed=8)
    return faces_of(c, labels, noise=noise_for(args), seed=9), labels, known


def bench_incremental(args: argparse.Namespace, existing: int, batch: int) -> dict[str, Any]:
    import faiss

    from vistudio.ml.face_clusters import EXACT_WORK, cluster_faces

    log(f"incremental: {existing} faces in people + {batch} new")
    x, labels, known = incremental_data(existing, batch, args)
    n = len(x)
    seeds: dict[int, list[int]] = {}
    for i, pid in enumerate(labels[:existing].tolist()):
        seeds.setdefault(pid, []).append(i)
    new = np.arange(existing, n)
    photos = np.arange(n, dtype=np.int64)
    log("incremental: vistudio cluster_faces")
    with Measured() as mv:
        out = cluster_faces(
            x, photos, seeds=seeds, free=new.tolist(), threshold=THRESHOLD, min_faces=args.min_faces
        )
    returning = [i for i in new.tolist() if labels[i] < known]
    right = sum(out.assigned.get(i) == int(labels[i]) for i in returning)
    wrong = sum(i in out.assigned and out.assigned[i] != int(labels[i]) for i in new.tolist())
    newcomers = [i for i in new.tolist() if labels[i] >= known]
    pred = labels_of(n, out.new_groups)[newcomers]
    vis = {
        **mv.figures(),
        "ms_per_new_face": round(mv.seconds * 1000 / batch, 3),
        "returning_assigned_right": round(right / max(1, len(returning)), 5),
        "assigned_wrong": wrong,
        "ambiguous": len(out.ambiguous),
        "new_people": len(out.new_groups),
        "new_people_pairwise": pairwise_scores(labels[newcomers], pred),
        "knn": "exact" if n * batch <= EXACT_WORK else "HNSW",
    }
    log(f"incremental: vistudio {vis['seconds']} s; exact nearest existing face (FAISS flat)")
    person = labels[:existing]
    with Measured() as mb:
        index = faiss.IndexFlatL2(DIM)
        index.add(np.ascontiguousarray(x[:existing]))
        built = time.perf_counter() - mb.t0
        d2, nearest = index.search(np.ascontiguousarray(x[existing:]), 1)
    hit = d2[:, 0] < THRESHOLD**2
    guess = np.where(hit, person[nearest[:, 0]], -1)
    truth_new = labels[existing:]
    base = {
        **mb.figures(),
        "build_s": round(built, 3),
        "search_s": round(mb.seconds - built, 3),
        "ms_per_new_face": round(mb.seconds * 1000 / batch, 3),
        "search_ms_per_new_face": round((mb.seconds - built) * 1000 / batch, 3),
        "returning_assigned_right": round(float((guess == truth_new)[truth_new < known].mean()), 5),
        "assigned_wrong": int(((guess >= 0) & (guess != truth_new)).sum()),
    }
    return {
        "existing_faces": existing,
        "existing_people": known,
        "new_faces": batch,
        "vistudio": vis,
        "nearest_face_baseline": base,
        "ratio": round(base["seconds"] / mv.seconds, 4),
    }


# --- 4. incremental runs through the service (SQLite) ------------------------------------------


def bench_db(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sqlalchemy import func, insert, select

    import vistudio.ml.face_clusters as face_clusters
    from vistudio.config import FaceSettings, Settings
    from vistudio.db import Sample
    from vistudio.db.faces import Face, Person
    from vistudio.services import people as people_service
    from vistudio.services import projects
    from vistudio.services.faces import model_name
    from vistudio.studio import open_studio

    total, batch = args.db_faces, args.db_batch
    x, labels, _known = incremental_data(total, batch, args)
    studio = open_studio(
        Settings(home=work / "db", faces=FaceSettings(min_faces=args.min_faces, max_distance=THRESHOLD))
    )
    timings: dict[str, float] = {}
    real = face_clusters.cluster_faces

    def timed_cluster(*a: Any, **kw: Any) -> Any:  # how much of a run is the grouping itself
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            timings["cluster_s"] = time.perf_counter() - t

    try:
        p = projects.create_project(studio, name="faces-bench", task="library")
        model = model_name(studio)

        def add_faces(lo: int, hi: int) -> None:
            with studio.sessions.begin() as s:
                for a in range(lo, hi, 10_000):
                    b = min(hi, a + 10_000)
                    ids = s.scalars(
                        insert(Sample).returning(Sample.id, sort_by_parameter_order=True),
                        [
                            {
                                "project_id": p["id"],
                                "sha256": f"{k:064x}",
                                "name": f"photos/{k}.jpg",
                                "storage": "reference",
                                "path": f"/photos/{k}.jpg",
                                "width": 1200,
                                "height": 800,
                                "format": "JPEG",
                                "bytes": 300_000,
                                "phash": f"{k:016x}",
                                "exif": {},
                            }
                            for k in range(a, b)
                        ],
                    ).all()
                    s.execute(
                        insert(Face),
                        [
                            {
                                "project_id": p["id"],
                                "sample_id": sid,
                                "model": model,
                                "x": 0.4,
                                "y": 0.3,
                                "w": 0.15,
                                "h": 0.25,
                                "landmarks": [],
                                "score": 1.0,
                                "embedding": x[k].astype("<f4").tobytes(),
                                "crop": b"",
                            }
                            for sid, k in zip(ids, range(a, b), strict=True)
                        ],
                    )

        def run(name: str) -> dict[str, Any]:
            # the read alone: the query cluster_project starts with
            with Measured() as mr, studio.sessions() as s:
                rows = s.execute(
                    select(
                        Face.id,
                        Face.embedding,
                        Face.sample_id,
                        Face.person_id,
                        Face.assigned,
                        Face.w,
                        Face.h,
                        Face.score,
                        Sample.width,
                        Sample.height,
                    )
                    .join(Sample, Sample.id == Face.sample_id)
                    .where(Face.project_id == p["id"], Face.model == model)
                    .order_by(Face.id)
                ).all()
                np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
            timings.clear()
            face_clusters.cluster_faces = timed_cluster  # type: ignore[assignment]
            try:
                with Measured() as m:
                    report = people_service.cluster_project(studio, p["id"], full=False)
            finally:
                face_clusters.cluster_faces = real  # type: ignore[assignment]
            cluster_s = timings.get("cluster_s", 0.0)
            log(f"db: {name}: {m.seconds:.2f} s")
            return {
                **m.figures(),
                "read_faces_s": round(mr.seconds, 3),
                "cluster_s": round(cluster_s, 3),
                "rest_s": round(m.seconds - mr.seconds - cluster_s, 3),
                "report": report,
            }

        log(f"db: writing {total} faces")
        add_faces(0, total)
        first = run("first grouping")
        log(f"db: writing {batch} new faces")
        add_faces(total, total + batch)
        incremental = run("incremental run")
        nothing = run("incremental run, nothing new")
        with studio.sessions() as s:
            placed = dict(s.execute(select(Face.id, Face.person_id).order_by(Face.id)).all())
            people = s.scalar(select(func.count()).select_from(Person))
        face_ids = sorted(placed)
        pred = np.array([placed[f] if placed[f] is not None else -1 - i for i, f in enumerate(face_ids)])
    finally:
        studio.close()
    return {
        "faces": total,
        "new_faces": batch,
        "people_in_db": people,
        "first_run": first,
        "incremental_run": {
            **incremental,
            "ms_per_new_face": round(incremental["seconds"] * 1000 / batch, 2),
        },
        "nothing_new_run": nothing,
        "pairwise_all_faces": pairwise_scores(labels, pred),
    }


# --- 5. the people pages at scale (SQLite) ------------------------------------------------------


def person_sizes(people: int, faces: int, rng: np.random.Generator) -> np.ndarray:
    """How many faces each person has: at least 2 (``min_faces``), the rest Zipf-like (exponent
    0.9: one person in a few percent of the faces, most in a few dozen), largest first."""
    weights = 1.0 / np.arange(1, people + 1) ** 0.9
    rest = max(0, faces - 2 * people)
    sizes = 2 + np.floor(rest * weights / weights.sum()).astype(np.int64)
    sizes[: faces - int(sizes.sum())] += 1  # what flooring left over
    rng.shuffle(sizes[people // 10 :])  # ids do not follow size (but the largest keep low ids)
    return sizes


def build_pages_workspace(
    home: Path, *, faces: int, people: int, photos: int, crop_bytes: int, seed: int
) -> dict[str, Any]:
    """A library whose ``faces`` faces (in ``photos`` photos, 128-d float32 descriptors, WebP-sized
    random crops) are 95 % in ``people`` people (5 % named, 2 % hidden) and 5 % in nobody,
    written with bulk inserts (not the face job). Returns what the timed calls need."""
    from datetime import datetime, timedelta

    from sqlalchemy import func, insert, select, update

    from vistudio.config import Settings
    from vistudio.db import Sample
    from vistudio.db.faces import Face, FaceScan, Person
    from vistudio.services import projects
    from vistudio.services.faces import model_name
    from vistudio.studio import open_studio

    rng = np.random.default_rng(seed)
    studio = open_studio(Settings(home=home))
    try:
        p = projects.create_project(studio, name="album", task="library")
        pid = p["id"]
        model = model_name(studio)
        start = datetime(2010, 1, 1)
        with studio.sessions.begin() as s:
            for lo in range(0, photos, 50_000):
                hi = min(photos, lo + 50_000)
                minutes = rng.integers(0, 7_000_000, hi - lo).tolist()
                s.execute(
                    insert(Sample),
                    [
                        {
                            "project_id": pid,
                            "sha256": f"{seed:08x}{k:056x}",
                            "name": f"photos/{k % 1000:03d}/{k:07d}.jpg",
                            "storage": "reference",
                            "path": f"/photos/{k % 1000:03d}/{k:07d}.jpg",
                            "width": 4000,
                            "height": 3000,
                            "format": "JPEG",
                            "bytes": 3_000_000,
                            # one photo in 10 undated, as scans and screenshots are
                            "taken_at": None if k % 10 == 9 else start + timedelta(minutes=m),
                            "phash": f"{k:016x}",
                            "exif": {},
                        }
                        for k, m in zip(range(lo, hi), minutes, strict=True)
                    ],
                )
            sample_ids = np.array(
                s.scalars(select(Sample.id).where(Sample.project_id == pid).order_by(Sample.id)).all()
            )
            named = set(rng.choice(people, size=max(1, people // 20), replace=False).tolist())
            hidden = set(rng.choice(people, size=max(1, people // 50), replace=False).tolist())
            s.execute(
                insert(Person),
                [
                    {
                        "project_id": pid,
                        "name": f"Person {k:06d}" if k in named else None,
                        "hidden": k in hidden,
                    }
                    for k in range(people)
                ],
            )
            person_ids = np.array(
                s.scalars(select(Person.id).where(Person.project_id == pid).order_by(Person.id)).all()
            )
        # 95 % of the faces in people, shuffled over the photos (each photo has faces // photos or
        # one more, in photo order, as the face job writes them)
        sizes = person_sizes(people, int(faces * 0.95), rng)
        owner = np.full(faces, -1, dtype=np.int64)
        owner[: int(sizes.sum())] = np.repeat(np.arange(people), sizes)
        rng.shuffle(owner)
        photo_of = np.sort(np.arange(faces) % photos)
        crops = [
            rng.bytes(int(n)) for n in rng.integers(int(crop_bytes * 0.75), int(crop_bytes * 1.25) + 1, 64)
        ]
        landmarks = [[0.41, 0.38], [0.46, 0.38], [0.57, 0.38], [0.52, 0.38], [0.49, 0.47]]
        for lo in range(0, faces, 50_000):
            hi = min(faces, lo + 50_000)
            vectors = rng.standard_normal((hi - lo, DIM), dtype=np.float32) * 0.05
            with studio.sessions.begin() as s:
                s.execute(
                    insert(Face),
                    [
                        {
                            "project_id": pid,
                            "sample_id": int(sample_ids[photo_of[k]]),
                            "model": model,
                            "x": 0.1 + 0.6 * (k % 3) / 3,
                            "y": 0.3,
                            "w": 0.12,
                            "h": 0.18,
                            "landmarks": landmarks,
                            "score": 1.0,
                            "embedding": vectors[k - lo].astype("<f4").tobytes(),
                            "crop": crops[k % 64],
                            "person_id": None if owner[k] < 0 else int(person_ids[owner[k]]),
                            "assigned": None if owner[k] < 0 else "auto",
                        }
                        for k in range(lo, hi)
                    ],
                )
        with studio.sessions.begin() as s:
            counts = np.bincount(photo_of, minlength=photos)
            for lo in range(0, photos, 50_000):
                s.execute(
                    insert(FaceScan),
                    [
                        {"sample_id": int(sample_ids[k]), "model": model, "faces": int(counts[k])}
                        for k in range(lo, min(photos, lo + 50_000))
                    ],
                )
            # covers: each person's first face (the grouping picks the largest; all are alike here)
            firsts = s.execute(
                select(Face.person_id, func.min(Face.id))
                .where(Face.project_id == pid, Face.person_id.is_not(None))
                .group_by(Face.person_id)
            ).all()
            s.execute(update(Person), [{"id": who, "cover_face_id": face} for who, face in firsts])
        suggestions = write_suggestions(studio, pid, seed)
        by_size = np.argsort(-sizes, kind="stable")
        visible = [k for k in by_size.tolist() if k not in hidden]
        busiest = int(np.bincount(photo_of).argmax())
        return {
            "project": "album",
            "faces": faces,
            "people": people,
            "photos": photos,
            "named": len(named),
            "hidden": len(hidden),
            "unassigned": int((owner < 0).sum()),
            "large_person": int(person_ids[visible[0]]),
            "large_person_faces": int(sizes[visible[0]]),
            "second_person": int(person_ids[visible[1]]),
            "second_person_faces": int(sizes[visible[1]]),
            "small_person": int(person_ids[visible[-1]]),
            "small_person_faces": int(sizes[visible[-1]]),
            "photo": int(sample_ids[busiest]),
            "suggestions": suggestions,
            "db_mib": round(sum(f.stat().st_size for f in home.glob("*.db*")) / 2**20, 1),
        }
    finally:
        studio.close()


def write_suggestions(studio: Any, project_id: int, seed: int) -> int:
    """The review's suggestions kept on the unplaced faces (migration 0018), written with the data:
    the descriptors are random (nobody is within reach of anybody: a grouping or the suggestions
    job would find none), so 90 % of the unplaced faces get a random visible person at a random
    distance in [0.15, 0.6) (through that person's cover face), the rest nobody (-1)."""
    from sqlalchemy import Table, bindparam, select, update

    from vistudio.db.faces import Face, Person

    rng = np.random.default_rng(seed + 1)
    table: Table = Face.__table__
    with studio.sessions.begin() as s:
        open_faces = s.scalars(
            select(Face.id).where(Face.project_id == project_id, Face.person_id.is_(None)).order_by(Face.id)
        ).all()
        visible = s.execute(
            select(Person.id, Person.cover_face_id).where(
                Person.project_id == project_id, Person.hidden.is_(False), Person.cover_face_id.is_not(None)
            )
        ).all()
        who = rng.integers(0, len(visible), len(open_faces))
        dist = rng.uniform(0.15, 0.6, len(open_faces))
        some = rng.random(len(open_faces)) < 0.9
        rows = [
            {
                "f": f,
                "p": visible[w].id if k else None,
                "d": float(d) if k else -1.0,
                "v": visible[w].cover_face_id if k else None,
            }
            for f, w, d, k in zip(open_faces, who.tolist(), dist.tolist(), some.tolist(), strict=True)
        ]
        stmt = (
            update(table)
            .where(table.c.id == bindparam("f"))
            .values(
                suggested_person_id=bindparam("p"),
                suggested_distance=bindparam("d"),
                suggested_face_id=bindparam("v"),
            )
        )
        for lo in range(0, len(rows), 10_000):
            s.execute(stmt, rows[lo : lo + 10_000])
    return int(some.sum())


def add_suggestions(home: Path, info: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """A workspace built before migration 0018: opened (the migration: three columns, three
    indexes), then :func:`write_suggestions`; the seconds of each."""
    from sqlalchemy import select

    from vistudio.config import Settings
    from vistudio.db import Project
    from vistudio.studio import open_studio

    log(f"pages: upgrading {home} (migration 0018) and writing the review's suggestions")
    t = time.perf_counter()
    studio = open_studio(Settings(home=home))
    try:
        opened = time.perf_counter() - t
        with studio.sessions() as s:
            project_id = s.scalar(select(Project.id).where(Project.name == info["project"]))
        t = time.perf_counter()
        info["suggestions"] = write_suggestions(studio, int(project_id or 0), seed)
        written = time.perf_counter() - t
    finally:
        studio.close()
    log(f"pages: migration {opened:.1f} s, suggestions {written:.1f} s")
    return {"migration_s": round(opened, 1), "suggestions_s": round(written, 1)}


def _timed(fn: Any, repeat: int, *, slow_s: float = 5.0) -> dict[str, Any]:
    """p50 / p95 ms of ``repeat`` calls after a warm-up call; when the warm-up took more than
    ``slow_s``, that call is the figure (``runs`` 1)."""
    t = time.perf_counter()
    fn()
    warm = (time.perf_counter() - t) * 1000
    times = [warm] if warm > slow_s * 1000 else []
    for _ in range(0 if times else repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "p50_ms": _sig(statistics.median(times)),
        "p95_ms": _sig(times[int(0.95 * (len(times) - 1))]),
        "runs": len(times),
    }


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


# plan steps that read more of faces, people or samples than a page shows
FLAGS = (
    (re.compile(r"^SCAN (faces|people|samples)\b"), "full scan"),
    (
        re.compile(r"^SEARCH faces USING INDEX ix_faces_project_model\w* \(project_id=\? AND model=\?\)$"),
        "every face of the project",
    ),
    (
        re.compile(
            r"^SEARCH faces USING COVERING INDEX ix_faces_project_model\w* \(project_id=\? AND model=\?\)$"
        ),
        "every face of the project (index entries)",
    ),
    (re.compile(r"^SEARCH faces USING INDEX ix_faces_person \(person_id=\?\)$"), "a person's face rows"),
    (re.compile(r"^SEARCH samples USING (COVERING )?INDEX ix_samples_\w+ \(project_id=\?\)$"), "every photo"),
)


def plan_flags(sql: str, plan: list[str]) -> list[str]:
    """The steps of ``EXPLAIN QUERY PLAN`` that read more than the page needs: a full scan,
    every face (or photo) of the project, a person's face rows rather than index entries, and
    any faces counted per row of an outer query that is then sorted (for every person). A
    ``LIMIT`` that the index order serves (no sort) stops the reading: not flagged."""
    sorted_after = any(s.startswith("USE TEMP B-TREE FOR ORDER BY") for s in plan)
    limited = " LIMIT " in sql and not sorted_after
    out, correlated = [], False
    for step in plan:
        correlated = correlated or step.startswith("CORRELATED")
        if correlated and sorted_after and step.startswith("SEARCH faces"):
            out.append(f"for every row, then sorted: {step}")
            continue
        for pattern, what in FLAGS:
            if pattern.match(step) and not (limited and not correlated):
                out.append(f"{what}{' (per outer row)' if correlated else ''}: {step}")
    return out


class _Statements:
    """The SQL statements an engine runs while ``on`` (reads only), to explain them afterwards."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine, self.on = engine, False
        self.seen: dict[str, Any] = {}
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if self.on and not many and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            self.seen.setdefault(statement, params)

    def explain(self) -> list[dict[str, Any]]:
        """``EXPLAIN QUERY PLAN`` of each statement seen, with :func:`plan_flags`."""
        out = []
        with self.engine.connect() as conn:
            for sql, params in self.seen.items():
                plan = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()]
                sql_text = " ".join(sql.split())
                out.append({"sql": sql_text[:400], "plan": plan, "flags": plan_flags(sql_text, plan)})
        self.seen = {}
        return out


def _workspace_counts(home: Path) -> dict[str, int]:
    """Unplaced faces and faces of visible people (the review's two sides)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(home / "vistudio.db")) as db:
        open_faces = db.execute("SELECT count(*) FROM faces WHERE person_id IS NULL").fetchone()[0]
        placed = db.execute(
            "SELECT count(*) FROM faces JOIN people ON people.id = faces.person_id WHERE people.hidden = 0"
        ).fetchone()[0]
    return {"open_faces": open_faces, "placed_visible_faces": placed}


def measure_pages(
    home: Path, info: dict[str, Any], repeat: int, *, skip: dict[str, str] | None = None
) -> dict[str, Any]:
    """Time every call the People pages, the review, the photo detail and the browse filter make
    (services and HTTP), with the query plans of their statements. ``skip``: calls not to make
    (name → why). Each result says whether the call ran the whole review (``review_queue``)."""
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app
    from vistudio.config import FaceSettings, Settings
    from vistudio.services import faces as face_service
    from vistudio.services import people, samples
    from vistudio.services.projects import find_project
    from vistudio.studio import open_studio

    skip = skip or {}
    settings = Settings(home=home, allowed_hosts=["testserver"], faces=FaceSettings(max_distance=THRESHOLD))
    studio = open_studio(settings)
    client = TestClient(create_app(studio))
    stmts = _Statements(studio.engine)
    proj, big, second, small = (
        info["project"],
        info["large_person"],
        info["second_person"],
        info["small_person"],
    )
    with studio.sessions() as s:
        project_id = find_project(s, proj).id
    total = people.list_people(studio, project=project_id, limit=1)["total"]
    last = max(0, (total - 1) // 60 * 60)  # the grid's last page (60 a page)
    reviews = [0]
    review_queue = people.review_queue

    def counted_review(*a: Any, **kw: Any) -> Any:
        reviews[0] += 1
        return review_queue(*a, **kw)

    def review_count() -> Any:
        count = getattr(people, "review_count", None)  # what the People page shows (after the fix)
        if count is not None:
            return count(studio, project=project_id)
        return people.review_queue(studio, project=project_id, limit=1)["total"]

    def get(url: str) -> Any:
        r = client.get(url)
        if r.status_code != 200:
            raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:300]}")
        return r

    # a deep page of the review: 90 % of the way (skipping far ahead on the review page)
    deep = int(0.9 * review_queue(studio, project=project_id, limit=1)["total"])

    def answer(yes: bool) -> None:
        """Answer the first suggestion, then undo it: the click and its undo."""
        item = review_queue(studio, project=project_id, limit=1)["items"][0]
        people.answer(
            studio, project=project_id, face=item["face"]["id"], person=item["person"]["id"], yes=yes
        )
        people.undo(studio, project=project_id)

    calls: dict[str, Any] = {
        "list_people page 1": lambda: people.list_people(studio, project=project_id, limit=60),
        "list_people last page": lambda: people.list_people(
            studio, project=project_id, offset=last, limit=60
        ),
        "list_people with hidden, page 1": lambda: people.list_people(
            studio, project=project_id, hidden=True, limit=60
        ),
        "people count (hidden toggle, limit 1)": lambda: people.list_people(
            studio, project=project_id, hidden=True, limit=1
        ),
        "people names (person page, 1000)": lambda: people.list_people(
            studio, project=project_id, hidden=True, limit=1000
        ),
        "get_person large": lambda: people.get_person(studio, project=project_id, person=big),
        "get_person small": lambda: people.get_person(studio, project=project_id, person=small),
        "review count (People page)": review_count,
        "review_queue page 1 (review page)": lambda: people.review_queue(studio, project=project_id, limit=1),
        "review_queue page 1, 50 (API)": lambda: people.review_queue(studio, project=project_id, limit=50),
        "review_queue deep page (90 %)": lambda: people.review_queue(
            studio, project=project_id, offset=deep, limit=50
        ),
        "faces of one photo (detail boxes)": lambda: face_service.photo_faces(
            studio, project=project_id, sample_id=info["photo"]
        ),
        "photos of a person, page 1": lambda: samples.list_samples(
            studio, project=project_id, person=str(big), limit=60
        ),
        "photos of a person, newest first": lambda: samples.list_samples(
            studio, project=project_id, person=str(big), sort="taken_at", order="desc", limit=60
        ),
        "photos of two people (AND), page 1": lambda: samples.list_samples(
            studio, project=project_id, person=[str(big), str(second)], limit=60
        ),
        "photos of a small person, page 1": lambda: samples.list_samples(
            studio, project=project_id, person=str(small), limit=60
        ),
        "HTTP People page": lambda: get(f"/projects/{proj}/people"),
        "HTTP People page, last page": lambda: get(f"/projects/{proj}/people?offset={last}"),
        "HTTP person page, large": lambda: get(f"/projects/{proj}/people/{big}"),
        "HTTP person page, small": lambda: get(f"/projects/{proj}/people/{small}"),
        "HTTP review page": lambda: get(f"/projects/{proj}/people/review"),
        "HTTP review page, deep (90 %)": lambda: get(f"/projects/{proj}/people/review?offset={deep}"),
        "HTTP photo detail": lambda: get(f"/projects/{proj}/samples/{info['photo']}"),
        "HTTP grid filtered by a person": lambda: get(f"/projects/{proj}/samples?person={big}"),
        "HTTP API people": lambda: get(f"/api/v1/projects/{proj}/people?limit=60"),
        # last: they change the data (each undone; a face answered no, then undone, waits for the
        # suggestions job in the big library, which is not run here)
        "answer yes, then undo": lambda: answer(True),
        "answer no, then undo": lambda: answer(False),
    }
    out: dict[str, Any] = {}
    people.review_queue = counted_review  # type: ignore[assignment]
    try:
        for name, fn in calls.items():
            if name in skip:
                log(f"pages: {info['faces']} faces: {name}: skipped ({skip[name]})")
                out[name] = {"skipped": skip[name]}
                continue
            log(f"pages: {info['faces']} faces: {name}")
            reviews[0] = 0
            stmts.on = True
            try:
                t = time.perf_counter()
                fn()  # the statements it runs, and a warm-up
                first_ms = (time.perf_counter() - t) * 1000
            finally:
                stmts.on = False
            plans = stmts.explain()
            with Measured() as m:
                timing = _timed(fn, repeat)
            out[name] = {
                **timing,
                "first_ms": _sig(first_ms),
                "cpu_s": round(m.cpu, 2),
                "other_cpu_s": round(m.other_cpu, 1),
                "runs_review_queue": reviews[0] > 0,
                "flags": sorted({f for p in plans for f in p["flags"]}),
                "plans": plans,
            }
    finally:
        people.review_queue = review_queue  # type: ignore[assignment]
        client.close()
        studio.close()
    return out


def bench_pages(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The People pages' calls on a workspace of ``--page-faces`` faces against the same calls on
    one of ``--page-base-faces`` (the same shape, scaled down): ideally as fast (ratio ≈ 1). A
    call that runs the whole review (every unplaced face against every placed one: every
    descriptor read) is not made on the large workspace when the base's time scaled by (unplaced ×
    placed) exceeds ``--page-max-s``: its estimate is given instead."""
    # every module the calls use, loaded now: what is measured is the code as it was at the start
    import vistudio.api.app
    import vistudio.services.people
    import vistudio.services.samples  # noqa: F401

    folder = args.page_workspace or work
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"base": args.page_base_faces, "large": args.page_faces}
    results: dict[str, Any] = {}
    infos: dict[str, Any] = {}
    for which, n in sizes.items():
        people = max(20, round(n * args.page_people / args.page_faces))
        home = folder / f"pages-{n}"
        info_file = home / "bench-info.json"
        if info_file.exists():  # built by an earlier run (--page-workspace): the same data
            infos[which] = json.loads(info_file.read_text())
            log(f"pages: reusing {home}")
            if "suggestions" not in infos[which]:  # built before the suggestions were kept (0018)
                infos[which]["upgrade"] = add_suggestions(
                    home, infos[which], seed=11 if which == "large" else 12
                )
                info_file.write_text(json.dumps(infos[which]))
        else:
            log(f"pages: building {which}: {n} faces, {people} people, {n // 2} photos")
            with Measured() as mb:
                infos[which] = build_pages_workspace(
                    home,
                    faces=n,
                    people=people,
                    photos=max(1, n // 2),
                    crop_bytes=args.crop_bytes,
                    seed=11 if which == "large" else 12,
                )
            infos[which]["build"] = mb.figures()
            info_file.write_text(json.dumps(infos[which]))
            log(f"pages: built {which} in {mb.seconds:.0f} s ({infos[which]['db_mib']} MiB)")
        infos[which].update(_workspace_counts(home))
        skip: dict[str, str] = {}
        if which == "large":
            base_info = infos["base"]
            scale = (infos["large"]["open_faces"] * infos["large"]["placed_visible_faces"]) / max(
                1, base_info["open_faces"] * base_info["placed_visible_faces"]
            )
            for name, r in results["base"].items():
                estimate = r.get("p50_ms", 0) / 1000 * scale
                # the whole review: every descriptor read (the review before 0018 kept suggestions)
                whole = any(f.startswith("every face of the project:") for f in r.get("flags", []))
                if r.get("runs_review_queue") and whole and estimate > args.page_max_s:
                    skip[name] = f"runs the whole review: ≈ {estimate:,.0f} s estimated (base × {scale:,.0f})"
        results[which] = measure_pages(home, infos[which], args.page_repeat, skip=skip)
    table = {}
    for name, big in results["large"].items():
        base = results["base"][name]
        row: dict[str, Any] = {
            "p50_ms": big.get("p50_ms"),
            "p95_ms": big.get("p95_ms"),
            "base_p50_ms": base["p50_ms"],
            "base_p95_ms": base["p95_ms"],
            "ratio": _sig(big["p50_ms"] / base["p50_ms"]) if big.get("p50_ms") and base["p50_ms"] else None,
            "runs_review_queue": base["runs_review_queue"],
            "flags": big.get("flags", base["flags"]),
        }
        if "skipped" in big:
            row["skipped"] = big["skipped"]
        table[name] = row
    return {
        "workspaces": infos,
        "calls": table,
        "flagged": {k: v["flags"] for k, v in table.items() if v["flags"]},
        "plans": {k: v.get("plans", results["base"][k]["plans"]) for k, v in results["large"].items()},
    }


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--photos", type=int, help="generated photos for detection (default 24)")
    ap.add_argument("--size", default="1200x800", help="photo size WxH (default 1200x800)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="faces.workers (default: CPUs)")
    ap.add_argument("--rounds", type=int, help="interleaved detection rounds (default 2)")
    ap.add_argument("--faces", type=int, help="faces grouped from scratch (default 20000)")
    ap.add_argument("--per-person", type=int, default=10)
    ap.add_argument("--min-faces", type=int, default=2)
    ap.add_argument("--radius", type=float, default=0.6, help="radius of people's centres")
    ap.add_argument("--noise", type=float, default=0.023, help="per-dimension noise of a face (mean)")
    ap.add_argument("--method-faces", type=int, help="faces of the methods comparison (default 10000)")
    ap.add_argument(
        "--method-radius", default="0.6,0.4,0.35", help="radii of people's centres the methods are run at"
    )
    ap.add_argument("--existing", type=int, help="faces in people before an incremental run (100000)")
    ap.add_argument("--batch", type=int, help="new faces of an incremental run (default 1000)")
    ap.add_argument("--db-faces", type=int, help="faces in the SQLite workspace (default 20000)")
    ap.add_argument("--db-batch", type=int, help="new faces of the SQLite incremental run (default 200)")
    ap.add_argument("--page-faces", type=int, help="faces of the People pages' workspace (1000000)")
    ap.add_argument("--page-people", type=int, help="people of that workspace (default 10000)")
    ap.add_argument("--page-base-faces", type=int, help="faces of the pages' baseline workspace (10000)")
    ap.add_argument("--page-repeat", type=int, help="timed calls of each page query (default 20)")
    ap.add_argument("--crop-bytes", type=int, default=4000, help="mean size of a face's stored crop")
    ap.add_argument(
        "--page-max-s",
        type=float,
        default=60,
        help="longest estimated review call made on the large workspace",
    )
    ap.add_argument(
        "--page-workspace", type=Path, help="keep the pages' workspaces here (and reuse them on a later run)"
    )
    ap.add_argument(
        "--skip", default="", help="parts to leave out, comma-separated: detect,cluster,incremental,db,pages"
    )
    ap.add_argument(
        "--only",
        default="",
        help="parts to run, comma-separated, instead of the default four; pages (the People pages at "
        "scale, a 5 GB workspace) and methods (DBSCAN, HDBSCAN and chinese whispers against "
        "vistudio's grouping) run only when named here",
    )
    ap.add_argument("--workdir", type=Path, help="where the temporary folder goes (default $TMPDIR)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    defaults = (
        {
            "photos": 8,
            "rounds": 1,
            "faces": 3000,
            "existing": 10000,
            "batch": 200,
            "db_faces": 2000,
            "db_batch": 50,
            "page_faces": 20_000,
            "page_people": 200,
            "page_base_faces": 2_000,
            "page_repeat": 5,
            "method_faces": 1000,
        }
        if args.quick
        else {
            "photos": 24,
            "rounds": 2,
            "faces": 20000,
            "existing": 100000,
            "batch": 1000,
            "db_faces": 20000,
            "db_batch": 200,
            "page_faces": 1_000_000,
            "page_people": 10_000,
            "page_base_faces": 10_000,
            "page_repeat": 20,
            "method_faces": 10_000,
        }
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    parts = (only or {"detect", "cluster", "incremental", "db"}) - skip
    os.environ.setdefault("VISTUDIO_OFFLINE", "1")
    result: dict[str, Any] = {"benchmark": "faces", "machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="vistudio-faces-") as tmp:
        work = Path(tmp)
        if "detect" in parts:
            result["detect"] = bench_detect(args, work)
        if "cluster" in parts:
            result["cluster"] = bench_cluster(args)
        if "incremental" in parts:
            result["incremental"] = bench_incremental(args, args.existing, args.batch)
        if "db" in parts:
            result["db"] = bench_db(args, work)
        if "pages" in parts:
            result["pages"] = bench_pages(args, work)
        if "methods" in parts:
            result["methods"] = bench_methods(args)
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
