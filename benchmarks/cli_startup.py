"""CLI start-up benchmark: wall time of `vistudio --help` and `vistudio project list`.

Each command runs as a fresh process (as a user types it) N times; the median is reported. The
baselines in the same run are the Python interpreter alone (`python -c pass`, the floor) and a
process that imports every service module and job handler, as every command did when the CLI
imported its services at start-up (`eager`). `ratio` is eager / command: how many times faster
the lazy start-up is. The heavy libraries each command loaded are listed (they should be none).
CPU milliseconds (user + system of the child) are reported beside wall time: on a busy machine
wall time waits for a core, CPU time does not.

    .venv/bin/python benchmarks/cli_startup.py [--runs 10] [--out FILE]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HEAVY = ("torch", "open_clip", "faiss", "sklearn", "lightning", "torchvision", "onnxruntime", "pyarrow")
HEAVY += ("pandas", "scipy", "alembic")
CLI = "import sys; from vistudio.cli.main import main; sys.exit(main())"
EAGER = "import vistudio.cli.main, vistudio.studio; from vistudio.jobs.registry import load_handlers; load_handlers()"


def timed(argv: list[str], runs: int) -> dict[str, float]:
    """Median and minimum wall milliseconds, and median CPU milliseconds, of ``runs`` fresh
    processes running ``argv``."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append((time.perf_counter() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return {
        "median_ms": round(statistics.median(wall), 1),
        "min_ms": round(min(wall), 1),
        "cpu_median_ms": round(statistics.median(cpu), 1),
    }


def heavy_modules(args: list[str]) -> list[str]:
    """The heavy libraries a CLI invocation imports (run once, in a wrapper that lists them)."""
    code = (
        "import sys, json, contextlib, io\n"
        "from vistudio.cli.main import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): main({args!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="processes per command (default 10)")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as ws:
        commands = {"--help": ["--help"], "project list": ["--workspace", ws, "project", "list"]}
        # the first run creates the workspace and its schema: a one-time cost, not start-up
        subprocess.run(
            [sys.executable, "-c", CLI, *commands["project list"]], check=True, capture_output=True
        )
        results: dict[str, Any] = {}
        eager = timed([sys.executable, "-c", EAGER], args.runs)
        for name, argv in commands.items():
            r = timed([sys.executable, "-c", CLI, *argv], args.runs)
            r["heavy_modules"] = heavy_modules(argv)
            r["ratio"] = round(eager["median_ms"] / r["median_ms"], 2)
            results[name] = r
            print(
                f"{name}: {r['median_ms']} ms, {r['cpu_median_ms']} ms CPU "
                f"(eager imports: {eager['median_ms']} ms, {eager['cpu_median_ms']} ms CPU)",
                file=sys.stderr,
            )
        floor = timed([sys.executable, "-c", "pass"], args.runs)
    doc = {
        "benchmark": "cli_startup",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "runs": args.runs,
        "commands": results,
        "baselines": {"python -c pass": floor, "eager (every service imported)": eager},
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
