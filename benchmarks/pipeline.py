"""Pipeline benchmark: the runner's overhead per item and stage, and the cost of each saving mode.

The same four built-in stages (``load`` → ``resize`` max_side 128 → ``grayscale`` → ``edges``
threshold 40) run over the same generated images (half PNG, half JPEG, photo-like content) in
several ways, **in the same run**, interleaved round by round so that drift on a shared machine
hits all of them alike:

- **baseline**: the stage functions called in a plain Python loop, ``fn(item, data, **params)``
  per stage and item, one thread, nothing saved;
- **runner**: ``Runner(spec, OutputSaver(..., dry_run=True)).run(items, workers=--workers)`` with
  ``save_outputs.enabled: false`` and ``save_artifacts: false``; its overhead is
  ``runner / baseline - 1`` (target < 10 % at the same parallelism, one worker);
- **runner, threads**: the same with ``--threads`` workers (default 4), for information;
- **full jobs**: ``start_run`` + ``Worker(studio).run_one`` in one workspace: a dry run (no
  saving: the audit is built, nothing is written), then each saving mode for real:
  ``sample`` (``max_samples`` = N, all stages), ``production`` (the last stage of every item)
  and ``validation`` (a ground-truth CSV that disagrees with ~10 % of the items). Validation
  needs a prediction, so its pipeline has a fifth, trivial custom stage (``custom:…:label``,
  a module written to a temporary folder on ``sys.path``) that returns ``{"label": …}``;
  its reference is a dry run of that same five-stage pipeline.

    .venv/bin/python benchmarks/pipeline.py [--items 500] [--size 256] [--workers 1] \\
        [--threads 4] [--rounds 5] [--out FILE]

Every figure is the median over ``--rounds`` rounds (and the ratios are medians of the per-round
ratios, each taken between passes that ran seconds apart). Progress goes to stderr; one JSON
document goes to stdout (and to ``--out``). ``other_cpu_s`` per pass is the machine's busy CPU
time that was not this process's: on a shared machine, a large value means the pass competed
for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image

from vistudio.config import Settings
from vistudio.jobs.worker import Worker
from vistudio.pipelines.audit import build_audit, error_table_csv, metrics_table
from vistudio.pipelines.report import render_report
from vistudio.pipelines.runner import ItemReport, Runner, resolve_stage
from vistudio.pipelines.saver import OutputSaver
from vistudio.pipelines.spec import PipelineSpec, load_spec
from vistudio.pipelines.stage import Item, StageFn, as_output
from vistudio.services.runs import start_run
from vistudio.studio import Studio, open_studio

LABEL_MODULE = "vistudio_bench_label"
STAGES: list[dict[str, Any]] = [
    {"name": "load", "uses": "load", "params": {}},
    {"name": "resize", "uses": "resize", "params": {"max_side": 128}},
    {"name": "grayscale", "uses": "grayscale", "params": {}},
    {"name": "edges", "uses": "edges", "params": {"threshold": 40}},
]
LABEL_STAGE: dict[str, Any] = {"name": "label", "uses": f"custom:{LABEL_MODULE}:label", "params": {}}
LABEL_SOURCE = '''"""A trivial classifier for the benchmark: a label from the item's number (even/odd)."""

from vistudio.pipelines.stage import StepOutput


def label(item, data):
    number = int(item.key.rsplit("-", 1)[-1])
    return StepOutput(data={"label": "even" if number % 2 == 0 else "odd"},
                      metrics={"edge_pixels": float((data > 0).mean())})
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` photo-like ``size``×``size`` images: even numbers PNG, odd numbers JPEG (quality 90).

    Content: a smooth two-colour gradient, a few soft-edged discs and rectangles, Gaussian noise.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    paths = []
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1))[..., None] / 2
        img = c0 * (1 - t) + c1 * t
        for _ in range(4):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            colour = rng.uniform(0, 255, 3)
            if rng.random() < 0.5:
                d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
                alpha = np.clip((r - d) * size / 3, 0, 1)[..., None]
            else:
                inside = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r / 2)
                alpha = inside[..., None].astype(np.float32)
            img = img * (1 - alpha) + colour * alpha
        img += rng.normal(0, 6, img.shape)
        arr = np.clip(img, 0, 255).astype(np.uint8)
        if i % 2 == 0:
            path = folder / f"img-{i:05d}.png"
            Image.fromarray(arr).save(path, "PNG")
        else:
            path = folder / f"img-{i:05d}.jpg"
            Image.fromarray(arr).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def truth_label(path: Path) -> str:
    """The label stage's answer for ``path``, flipped for every tenth item (so ~10 % disagree)."""
    number = int(path.stem.rsplit("-", 1)[-1])
    right = "even" if number % 2 == 0 else "odd"
    if number % 10 == 3:
        return "even" if right == "odd" else "odd"
    return right


def write_ground_truth(csv_path: Path, paths: list[Path]) -> int:
    """``path,label`` rows relative to the CSV's folder; returns how many disagree with the stage."""
    lines = ["path,label"]
    for p in paths:
        lines.append(f"{p.relative_to(csv_path.parent).as_posix()},{truth_label(p)}")
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sum(int(p.stem.rsplit("-", 1)[-1]) % 10 == 3 for p in paths)


def write_label_module(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{LABEL_MODULE}.py").write_text(LABEL_SOURCE, encoding="utf-8")
    sys.path.insert(0, str(folder))


def pipeline(
    name: str,
    *,
    mode: str = "sample",
    saving: bool,
    max_samples: int = 10,
    workers: int = 1,
    label: bool = False,
) -> dict[str, Any]:
    """The benchmark's pipeline definition (a dict, as parsed from YAML)."""
    return {
        "name": name,
        "stages": STAGES + ([LABEL_STAGE] if label else []),
        "output_mode": mode,
        "save_outputs": {"enabled": saving, "stages": ["all"], "max_samples": max_samples},
        "save_artifacts": saving,
        "workers": workers,
    }


# --- measuring -------------------------------------------------------------------------------


def busy_cpu_s() -> float:
    """System-wide busy CPU seconds (all cores) from ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (f + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@contextmanager
def timed(into: dict[str, float]) -> Iterator[None]:
    """Wall seconds, this process's CPU seconds and the rest of the machine's CPU seconds."""
    busy0, cpu0, t0 = busy_cpu_s(), time.process_time(), time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    into.update(wall_s=wall, cpu_s=cpu, other_cpu_s=max(0.0, busy_cpu_s() - busy0 - cpu))


def baseline_pass(items: list[Item], stages: list[tuple[StageFn, dict[str, Any]]]) -> dict[str, Any]:
    """The plain loop: every stage function on every item, one thread, nothing kept."""
    per_stage = [0.0] * len(stages)
    out: dict[str, Any] = {}
    clock = time.perf_counter
    with timed(out):
        for item in items:
            data: Any = None
            for k, (fn, params) in enumerate(stages):
                t0 = clock()
                data = as_output(fn(item, data, **params)).data
                per_stage[k] += clock() - t0
    out["per_stage_s"] = per_stage
    return out


def runner_pass(runner: Runner, items: list[Item], workers: int) -> tuple[dict[str, Any], list[ItemReport]]:
    out: dict[str, Any] = {}
    with timed(out):
        reports = list(runner.run(items, workers=workers))
    failed = [r.key for r in reports if r.status != "ok"]
    if failed:
        raise SystemExit(f"runner: {len(failed)} items failed, e.g. {failed[0]}")
    return out, reports


def job_pass(
    studio: Studio,
    spec: dict[str, Any],
    *,
    folder: Path,
    mode: str,
    dry_run: bool,
    ground_truth: Path | None = None,
) -> dict[str, Any]:
    """``start_run`` + ``Worker.run_one``; wall time of both, the run's own loop time, outputs."""
    out: dict[str, Any] = {}
    with timed(out):
        job = start_run(
            studio, pipeline=spec, input_dir=folder, mode=mode, ground_truth=ground_truth, dry_run=dry_run
        )
        done = Worker(studio).run_one(job_id=job["id"])
    if done is None or done.status != "succeeded":
        raise SystemExit(f"job {mode}: {done.status if done else 'not run'}: {done.error if done else ''}")
    run = (done.result or {})["run"]
    out["loop_s"] = run["duration_ms"] / 1000
    out["items"] = run["items"]
    out["mistakes"] = run["mistakes"]
    out["bytes_saved"] = run.get("bytes_saved", 0)
    out["files_saved"] = sum(s.get("outputs_saved", 0) for s in run.get("stages", []))
    out["job_result_bytes"] = len(json.dumps(done.result, default=str))
    return out


def record_parts(spec: PipelineSpec, reports: list[ItemReport], home: Path) -> dict[str, float]:
    """Seconds of the job's bookkeeping after the loop, each part on its own (no saving)."""
    parts: dict[str, float] = {}

    def clock(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        parts[name] = time.perf_counter() - t0
        return value

    audit = clock(
        "build_audit",
        lambda: build_audit(
            run_id="bench",
            spec=spec,
            reports=reports,
            started_at=datetime(2026, 1, 1),
            duration_ms=0.0,
            peak_memory_mb=0.0,
            tag=None,
            source={},
            dry_run=False,
        ),
    )
    clock("audit_json", lambda: json.dumps(audit, indent=2, default=str).encode())
    clock("metrics_parquet", lambda: metrics_table("bench", reports))
    clock("error_table_csv", lambda: error_table_csv(reports))
    clock("report_html", lambda: render_report(audit, home=home))
    return parts


# --- summary ---------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "loadavg_start": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=500, help="generated images (default 500)")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--workers", type=int, default=1, help="runner/job workers compared (default 1)")
    ap.add_argument("--threads", type=int, default=4, help="workers of the informative thread pass")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; figures are medians (default 5)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the temporary folder goes")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = ap.parse_args()
    n, nstages = args.items, len(STAGES)
    host = machine()  # before the work: its load average is the starting one

    with tempfile.TemporaryDirectory(prefix="vistudio-bench-pipeline-", dir=args.workdir) as tmp:
        root = Path(tmp)
        folder = root / "images"
        log(f"generating {n} images of {args.size}×{args.size} …")
        paths = make_images(folder, n, args.size)
        for p in paths:  # a warm page cache for every pass
            p.read_bytes()
        gt_csv = root / "truth.csv"
        disagree = write_ground_truth(gt_csv, paths)
        write_label_module(root / "modules")
        studio = open_studio(Settings(home=root / "home"))

        w = args.workers
        specs = {
            "off": pipeline("bench-off", saving=False, workers=w),
            "sample": pipeline("bench-sample", mode="sample", saving=True, max_samples=n, workers=w),
            "production": pipeline("bench-production", mode="production", saving=True, workers=w),
            "validation": pipeline("bench-validation", mode="validation", saving=True, workers=w, label=True),
            "validation_off": pipeline(
                "bench-validation-off", mode="validation", saving=False, workers=w, label=True
            ),
        }
        spec_off = load_spec(specs["off"])
        fns = [(resolve_stage(s), dict(s.params)) for s in spec_off.stages]
        items = [Item(key=p.stem, path=p) for p in paths]
        saver = OutputSaver(spec=spec_off, home=studio.home, run_id="bench", blobs=studio.store, dry_run=True)
        runner = Runner(spec_off, saver)

        log("warm-up …")
        baseline_pass(items[: min(n, 20)], fns)
        runner_pass(runner, items[: min(n, 20)], 1)
        job_pass(studio, specs["off"], folder=folder, mode="sample", dry_run=True)

        passes: dict[str, list[dict[str, Any]]] = {}
        parts: list[dict[str, float]] = []
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")

            def keep(name: str, value: dict[str, Any]) -> None:
                passes.setdefault(name, []).append(value)
                log(
                    f"  {name:<22} {value['wall_s'] * 1000 / n:8.3f} ms/item  "
                    f"(other CPU {value['other_cpu_s']:.1f} s)"
                )

            keep("baseline", baseline_pass(items, fns))
            res, reports = runner_pass(runner, items, w)
            keep("runner", res)
            keep("runner_threads", runner_pass(runner, items, args.threads)[0])
            if r == 0:
                parts.append(record_parts(spec_off, reports, studio.home))
            keep("job_dry", job_pass(studio, specs["off"], folder=folder, mode="sample", dry_run=True))
            keep("job_sample", job_pass(studio, specs["sample"], folder=folder, mode="sample", dry_run=False))
            keep(
                "job_production",
                job_pass(studio, specs["production"], folder=folder, mode="production", dry_run=False),
            )
            keep(
                "job_validation_dry",
                job_pass(
                    studio,
                    specs["validation_off"],
                    folder=folder,
                    mode="validation",
                    dry_run=True,
                    ground_truth=gt_csv,
                ),
            )
            keep(
                "job_validation",
                job_pass(
                    studio,
                    specs["validation"],
                    folder=folder,
                    mode="validation",
                    dry_run=False,
                    ground_truth=gt_csv,
                ),
            )
        studio.close()

    def ms_item(name: str) -> float:
        return round(med([p["wall_s"] for p in passes[name]]) * 1000 / n, 4)

    def cpu_ms_item(name: str) -> float:
        """This process's CPU per item: less disturbed by other work on a shared machine."""
        return round(med([p["cpu_s"] for p in passes[name]]) * 1000 / n, 4)

    def cpu_ratio(a: str, b: str) -> float:
        return round(med([x["cpu_s"] / y["cpu_s"] for x, y in zip(passes[a], passes[b], strict=True)]), 4)

    def ratio(a: str, b: str) -> float:
        """Median of the per-round ratios wall(a) / wall(b)."""
        return round(med([x["wall_s"] / y["wall_s"] for x, y in zip(passes[a], passes[b], strict=True)]), 4)

    base = passes["baseline"]
    per_stage = {
        s["name"]: round(med([p["per_stage_s"][k] for p in base]) * 1000 / n, 4) for k, s in enumerate(STAGES)
    }
    overhead = ratio("runner", "baseline") - 1
    modes = {}
    for mode, ref in (("sample", "job_dry"), ("production", "job_dry"), ("validation", "job_validation_dry")):
        name = f"job_{mode}"
        last = passes[name][-1]
        modes[mode] = {
            "ms_per_item": ms_item(name),
            "items_per_s": round(n / med([p["wall_s"] for p in passes[name]]), 1),
            "reference": ref,
            "reference_ms_per_item": ms_item(ref),
            "extra_ms_per_item": round(ms_item(name) - ms_item(ref), 4),
            "relative_to_reference": ratio(name, ref),
            "relative_to_runner": ratio(name, "runner"),
            "cpu_ms_per_item": cpu_ms_item(name),
            "cpu_relative_to_reference": cpu_ratio(name, ref),
            "files_saved": last["files_saved"],
            "job_result_bytes": last["job_result_bytes"],
            "bytes_saved": last["bytes_saved"],
            "mistakes": last["mistakes"],
        }
    result = {
        "benchmark": "pipeline",
        "machine": host,
        "items": n,
        "size": args.size,
        "workers": w,
        "threads": args.threads,
        "rounds": args.rounds,
        "stages": [s["name"] for s in STAGES],
        "baseline": {
            "ms_per_item": ms_item("baseline"),
            "ms_per_item_per_stage": round(ms_item("baseline") / nstages, 4),
            "cpu_ms_per_item": cpu_ms_item("baseline"),
            "ms_per_item_by_stage": per_stage,
        },
        "runner": {
            "ms_per_item": ms_item("runner"),
            "ms_per_item_per_stage": round(ms_item("runner") / nstages, 4),
            "cpu_ms_per_item": cpu_ms_item("runner"),
            "overhead_ms_per_item_per_stage": round(overhead * ms_item("baseline") / nstages, 4),
            "overhead_pct": round(overhead * 100, 2),
            "overhead_pct_best_of_rounds": round(
                (min(p["wall_s"] for p in passes["runner"]) / min(p["wall_s"] for p in base) - 1) * 100, 2
            ),
            "overhead_pct_cpu": round((cpu_ratio("runner", "baseline") - 1) * 100, 2),
            "target_pct": 10.0,
            "target_met": overhead < 0.10,
        },
        "runner_threads": {
            "workers": args.threads,
            "ms_per_item": ms_item("runner_threads"),
            "speedup_vs_baseline": round(1 / ratio("runner_threads", "baseline"), 3),
        },
        "job_dry_run": {
            "ms_per_item": ms_item("job_dry"),
            "loop_ms_per_item": round(med([p["loop_s"] for p in passes["job_dry"]]) * 1000 / n, 4),
            "relative_to_runner": ratio("job_dry", "runner"),
            "cpu_ms_per_item": cpu_ms_item("job_dry"),
            "overhead_pct_cpu_vs_baseline": round((cpu_ratio("job_dry", "baseline") - 1) * 100, 2),
            "overhead_pct_vs_baseline": round((ratio("job_dry", "baseline") - 1) * 100, 2),
            "job_result_bytes": passes["job_dry"][-1]["job_result_bytes"],
            "bookkeeping_s_no_saving": {k: round(v, 4) for k, v in parts[0].items()},
        },
        "validation_ground_truth_disagreeing": disagree,
        "modes": modes,
        "passes": {
            name: {
                "wall_s": [round(p["wall_s"], 4) for p in ps],
                "cpu_s": [round(p["cpu_s"], 3) for p in ps],
                "other_cpu_s": [round(p["other_cpu_s"], 2) for p in ps],
                **({"loop_s": [round(p["loop_s"], 4) for p in ps]} if "loop_s" in ps[0] else {}),
            }
            for name, ps in passes.items()
        },
        "loadavg_end": os.getloadavg(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
