"""Bulk edits benchmark: relabel and tag every sample of a 100,000-sample project as one change, and
undo it, against a naive row-by-row relabel in the same run.

vistudio turns an edit into per-sample before/after states, then set-wise deletes (chunked id lists)
and one multi-row insert per label or tag, plus one multi-row insert of the history entries, in one
transaction. The baseline is what an ORM loop does: per sample, load its labels, delete them, add the
new one and a history row (one transaction too, so the difference is the per-row round trips).

    .venv/bin/python benchmarks/edits.py [--samples 100000] [--naive-samples 20000]

The naive loop runs on the first ``--naive-samples`` samples (it is slow); the ratio compares
samples per second. Prints one JSON document; peak memory is the process's maximum resident size
after each step.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from browse import build, sig  # the 100,000-sample project of the browse benchmark
from sqlalchemy import select

from vistudio.config import Settings
from vistudio.db import Annotation, LabelClass, Sample
from vistudio.db.changes import Change, ChangeEntry
from vistudio.services import edits
from vistudio.studio import Studio, open_studio


def peak_mib() -> float:
    return sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def naive_relabel(studio: Studio, n: int, name: str) -> None:
    """Row by row through the ORM, in one transaction: what a first implementation does."""
    with studio.sessions.begin() as s:
        project_id = s.scalar(select(Sample.project_id).limit(1))
        new = s.scalar(select(LabelClass.id).where(LabelClass.name == name))
        change = Change(project_id=project_id, kind="labels", request={"set": [name]}, samples=0, actor="bench")
        s.add(change)
        s.flush()
        for sid in s.scalars(select(Sample.id).order_by(Sample.id).limit(n)).all():
            old = s.scalars(
                select(Annotation).where(Annotation.sample_id == sid, Annotation.kind == "label")
            ).all()
            before = sorted(s.get(LabelClass, a.class_id).name for a in old)  # type: ignore[union-attr]
            for a in old:
                s.delete(a)
            s.add(Annotation(sample_id=sid, kind="label", class_id=new))
            s.add(ChangeEntry(change_id=change.id, sample_id=sid, before=before, after=[name]))
            s.flush()


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--naive-samples", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        studio = open_studio(Settings(home=Path(tmp)))
        t = time.perf_counter()
        build(studio, args.samples)
        print(f"built {args.samples} samples in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        steps: dict[str, dict[str, Any]] = {}

        def step(title: str, fn: Any) -> Any:
            seconds, out = timed(fn)
            steps[title] = {"seconds": sig(seconds), "peak_rss_mib": peak_mib()}
            print(f"{title}: {seconds:.2f}s", file=sys.stderr)
            return out

        relabel = step(
            "relabel all (set one class)",
            lambda: edits.edit_labels(studio, project="big", selection={"all": True}, set_to=["class-00"]),
        )
        assert relabel["changed"] > 0.9 * args.samples, relabel
        step("undo the relabel", lambda: edits.undo(studio, project="big"))
        step(
            "tag all",
            lambda: edits.edit_tags(studio, project="big", selection={"all": True}, add=["reviewed"]),
        )
        step(
            "untag one class (filter)",
            lambda: edits.edit_tags(
                studio, project="big", selection={"filter": {"label": "class-03"}}, remove=["reviewed"]
            ),
        )
        step("undo the untag", lambda: edits.undo(studio, project="big"))
        naive_s, _ = timed(lambda: naive_relabel(studio, args.naive_samples, "class-01"))
        print(f"naive relabel of {args.naive_samples}: {naive_s:.2f}s", file=sys.stderr)
        studio.close()
    fast = steps["relabel all (set one class)"]["seconds"]
    rate_fast = relabel["changed"] / fast
    rate_naive = args.naive_samples / naive_s
    print(
        json.dumps(
            {
                "benchmark": "edits",
                "machine": platform.machine(),
                "python": platform.python_version(),
                "samples": args.samples,
                "steps": steps,
                "relabel": {
                    "vistudio_samples_per_s": sig(rate_fast),
                    "naive_samples": args.naive_samples,
                    "naive_seconds": sig(naive_s),
                    "naive_samples_per_s": sig(rate_naive),
                    "ratio": sig(rate_fast / rate_naive),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
