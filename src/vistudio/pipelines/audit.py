"""The run's audit (JSON, and the same figures for the database) and its per-item metrics table."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vistudio.text import plural

# `outcome` is imported by the CLI at start-up: pyarrow and the runner load where they are used
if TYPE_CHECKING:
    from vistudio.pipelines.runner import ItemReport
    from vistudio.pipelines.spec import PipelineSpec


def outcome(run: dict[str, Any]) -> str:
    """What happened to a run's items, in words: ``"all 60 items failed"``, ``"3 of 60 items
    failed, 1 mistake"``, ``"no items: the input holds no images"`` (``run``: an audit or a run)."""
    n, failed, mistakes = int(run["items"]), int(run["failed"]), int(run.get("mistakes") or 0)
    if not n:
        return "no items: the input holds no images"
    if failed == n:
        text = "the only item failed" if n == 1 else f"all {plural(n, 'item')} failed"
    elif failed:
        text = f"{failed:,} of {plural(n, 'item')} failed"
    else:
        text = f"{plural(n, 'item')}, none failed"
    # mistakes count failed items too: worth a word only when some items ran and were wrong
    if mistakes > failed:
        text += f", {plural(mistakes, 'mistake')}" + (" (failures included)" if failed else "")
    return text


def stage_summary(spec: PipelineSpec, reports: list[ItemReport]) -> list[dict[str, Any]]:
    out = []
    for position, st in enumerate(spec.stages):
        recs = [r for rep in reports for r in rep.stages if r.name == st.name]
        total = sum(r.duration_ms for r in recs)
        saved = sum(1 for rep in reports for s in rep.saved if s.stage == st.name)
        out.append(
            {
                "stage": st.name,
                "uses": st.function,
                "position": position,
                "ok": sum(r.status == "ok" for r in recs),
                "failed": sum(r.status == "failed" for r in recs),
                "skipped": len(reports) - len(recs),
                "duration_ms": round(total, 3),
                "mean_ms": round(total / len(recs), 3) if recs else 0.0,
                "outputs_saved": saved,
            }
        )
    return out


def error_analysis(reports: list[ItemReport]) -> dict[str, Any]:
    """Errors per class and per stage, and the confusion of the mistakes (truth → prediction)."""
    by_class: Counter[str] = Counter()
    by_stage: Counter[str] = Counter()
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for rep in reports:
        if not rep.mistaken:
            continue
        by_class[rep.ground_truth or "(none)"] += 1
        failed = next((s.name for s in rep.stages if s.status == "failed"), None)
        by_stage[failed or "(final)"] += 1
        confusion[rep.ground_truth or "(none)"][rep.prediction or "(error)"] += 1
    return {
        "by_class": dict(sorted(by_class.items())),
        "by_stage": dict(sorted(by_stage.items())),
        "confusion": {t: dict(sorted(p.items())) for t, p in sorted(confusion.items())},
    }


def build_audit(
    *,
    run_id: str,
    spec: PipelineSpec,
    reports: list[ItemReport],
    started_at: datetime,
    duration_ms: float,
    peak_memory_mb: float,
    tag: str | None,
    source: dict[str, Any],
    dry_run: bool,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "timestamp": started_at.isoformat() + "Z",
        "pipeline": {"name": spec.name, "version": spec.version, "version_hash": spec.version_hash()},
        "mode": spec.output_mode,
        "tag": tag,
        "dry_run": dry_run,
        "input": source,
        "items": len(reports),
        "failed": sum(r.status == "failed" for r in reports),
        "mistakes": sum(r.mistaken for r in reports),
        "duration_ms": round(duration_ms, 3),
        "peak_memory_mb": round(peak_memory_mb, 1),
        "stages": stage_summary(spec, reports),
        "errors": error_analysis(reports),
        "per_item": [
            {
                "item": r.key,
                "status": r.status,
                "ground_truth": r.ground_truth,
                "prediction": r.prediction,
                "stages": [
                    {
                        "stage": s.name,
                        "status": s.status,
                        "duration_ms": s.duration_ms,
                        "error": s.error,
                        "metrics": s.metrics,
                    }
                    for s in r.stages
                ],
                "outputs": [s.path or f"blob:{s.sha256}" for s in r.saved],
            }
            for r in reports
        ],
    }


def metrics_table(run_id: str, reports: list[ItemReport]) -> bytes:
    """Per item and stage: status, duration and every metric, as Parquet (long format)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list[Any]] = {
        k: [] for k in ("run_id", "item", "stage", "status", "duration_ms", "metric", "value")
    }

    def add(item: str, stage: str, status: str, ms: float, metric: str | None, value: float | None) -> None:
        for k, v in zip(rows, (run_id, item, stage, status, ms, metric, value), strict=True):
            rows[k].append(v)

    for rep in reports:
        for s in rep.stages:
            if not s.metrics:
                add(rep.key, s.name, s.status, s.duration_ms, None, None)
            for m, v in s.metrics.items():
                add(rep.key, s.name, s.status, s.duration_ms, m, v)
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("item", pa.string()),
            ("stage", pa.string()),
            ("status", pa.string()),
            ("duration_ms", pa.float64()),
            ("metric", pa.string()),
            ("value", pa.float64()),
        ]
    )
    buf = io.BytesIO()
    pq.write_table(pa.table(rows, schema=schema), buf)
    return buf.getvalue()


def error_table_csv(reports: list[ItemReport]) -> bytes:
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["item", "stage", "kind", "ground_truth", "prediction", "message"])
    for r in reports:
        if not r.mistaken:
            continue
        failed = next((s for s in r.stages if s.status == "failed"), None)
        w.writerow(
            [
                r.key,
                failed.name if failed else "(final)",
                "error" if failed else "mismatch",
                r.ground_truth or "",
                r.prediction or "",
                failed.error if failed else "",
            ]
        )
    return buf.getvalue().encode()
