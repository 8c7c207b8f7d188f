"""``vistudio run`` and ``vistudio runs …``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, fail, fits, key_column, state, table, wait_for_success
from vistudio.errors import InvalidInput
from vistudio.text import plural

app = typer.Typer(help="Pipeline run history: list, show, compare, clean.", no_args_is_help=True)
STATUS_STYLE = {"succeeded": "green", "partial": "yellow", "failed": "bold red", "cancelled": "yellow"}


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "status",
        "items",
        "failed",
        "mistakes",
        "audit_path",
        "report_path",
        "outputs_dir",
        "duration_ms",
        "mode",
        "tag",
    )
    return {k: run.get(k) for k in keys}


def run(
    ctx: typer.Context,
    pipeline: Annotated[Path, typer.Argument(help="the pipeline YAML")],
    input_dir: Annotated[Path | None, typer.Option("--input", help="a folder of images")] = None,
    files: Annotated[list[Path] | None, typer.Option("--file", help="an image (repeatable)")] = None,
    project: Annotated[str | None, typer.Option(help="a project's images")] = None,
    split: Annotated[str | None, typer.Option(help="with --project: a split (default: newest)")] = None,
    subset: Annotated[str | None, typer.Option(help="with --project: train, val or test")] = None,
    mode: Annotated[
        str | None, typer.Option(help="sample | validation | production (default: the YAML's)")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="a version tag, e.g. v1.1")] = None,
    ground_truth: Annotated[Path | None, typer.Option("--ground-truth", help="CSV of path,label")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="run the stages, save nothing")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit 1 when any item failed (not only when all did)")
    ] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait")] = False,
) -> None:
    """Run a pipeline over a folder, files or a project subset.

    Exits 1 when every item failed (the run is ``failed``), and with ``--strict`` also when some
    did (``partial``); exits 2 when the pipeline or the request is refused before running.
    """
    from vistudio.pipelines.audit import outcome
    from vistudio.services import runs

    studio = state(ctx).studio()
    try:
        job = runs.start_run(
            studio,
            pipeline=pipeline,
            input_dir=input_dir,
            files=files or None,
            project=project,
            split=split,
            subset=subset,
            mode=mode,
            tag=tag,
            ground_truth=ground_truth,
            dry_run=dry_run,
        )
    except InvalidInput as exc:  # a chain that cannot work or a bad request: a usage error
        fail(ctx, exc, code=2)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued run job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "run")
    result = final["result"]["run"]
    out = {"run": result if dry_run else _summary(result)}

    def render(d: dict[str, Any]) -> None:
        r = d["run"]
        console.print(
            f"run [bold]{r['id']}[/] [{STATUS_STYLE.get(r['status'], 'bold')}]{r['status']}[/]: {outcome(r)}"
        )
        if r.get("report_path"):
            console.print(f"report: {escape(str(studio.home / r['report_path']))}")

    emit(ctx, out, render)
    if result["status"] == "failed" or (strict and result["status"] == "partial"):
        raise typer.Exit(1)


def _duration(ms: float | None) -> str:
    ms = ms or 0
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def _table(items: list[dict[str, Any]]) -> None:
    """Every column when they fit (or with --wide); at 80 columns the ones that tell runs apart,
    the run id whole on one line (its start time is in it: YYYYMMDD-HHMMSS-…), the tag under the
    pipeline's name."""
    full = table(
        key_column("id"), "pipeline", "version", "tag", "mode", "status", "items", "failed", "time", "started"
    )
    compact = table(key_column("id"), "pipeline · tag", "status", "items", "time")
    for r in items:
        status = f"[{STATUS_STYLE.get(r['status'], 'bold')}]{r['status']}[/]"
        n, failed = r["items"], r["failed"]
        full.add_row(
            r["id"],
            escape(r["pipeline"]),
            r["version_hash"],
            escape(r["tag"] or ""),
            r["mode"],
            status,
            str(n),
            str(failed),
            _duration(r["duration_ms"]),
            r["started_at"][:19].replace("T", " "),
        )
        compact.add_row(
            r["id"],
            escape(r["pipeline"]) + (f"\n[dim]{escape(r['tag'])}[/]" if r["tag"] else ""),
            status,
            f"{n} ([red]{failed}[/] failed)" if failed else str(n),
            _duration(r["duration_ms"]),
        )
    console.print(full if fits(full) else compact)


@app.command("list")
def list_(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option()] = None,
    since: Annotated[datetime | None, typer.Option(help="started on or after")] = None,
    until: Annotated[datetime | None, typer.Option(help="started on or before")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    slower_than: Annotated[float | None, typer.Option("--slower-than", help="milliseconds")] = None,
    metric: Annotated[str | None, typer.Option(help="stage.metric, e.g. edges.edge_fraction")] = None,
    above: Annotated[float | None, typer.Option(help="with --metric")] = None,
    below: Annotated[float | None, typer.Option(help="with --metric")] = None,
    offset: int = 0,
    limit: int = 50,
) -> None:
    """Query the run history."""
    from vistudio.services import runs

    out = runs.list_runs(
        state(ctx).studio(),
        pipeline=pipeline,
        since=since,
        until=until,
        status=status,
        tag=tag,
        slower_than_ms=slower_than,
        metric=metric,
        metric_above=above,
        metric_below=below,
        offset=offset,
        limit=limit,
    )
    emit(ctx, out, lambda d: _table(d["items"]))


@app.command("show")
def show(ctx: typer.Context, run_id: str) -> None:
    """One run with its stages."""
    from vistudio.services import runs

    emit(ctx, {"run": runs.get_run(state(ctx).studio(), run_id)}, lambda d: console.print_json(data=d))


@app.command("compare")
def compare(ctx: typer.Context, a: str, b: str, threshold: float = 0.05) -> None:
    """Metric deltas, stage timings and changed items between two runs; flags regressions."""
    from vistudio.services import runs

    out = runs.compare_runs(state(ctx).studio(), a, b, threshold=threshold)

    def render(d: dict[str, Any]) -> None:
        t = table("metric", "a", "b", "delta", "change", title=f"{a} → {b}")
        for k, v in d["metrics"].items():
            rel = "" if v["relative"] is None else f"{v['relative']:+.1%}"
            # the same mark as the page: a change past the threshold is highlighted
            t.add_row(
                k,
                f"{v['a']}",
                f"{v['b']}",
                "" if v["delta"] is None else f"{v['delta']:+.4g}",
                f"[bold]{rel or 'from 0'}[/] *" if v.get("changed") else rel,
            )
        console.print(t)
        console.print(f"* changed by more than {d['threshold']:.0%}")
        for r in d["regressions"]:
            console.print(f"[red]regression:[/] {r}")
        if not d["regressions"]:
            console.print("[green]no regression[/]")

    emit(ctx, out, render)


@app.command("clean")
def clean(
    ctx: typer.Context,
    run_ids: Annotated[list[str] | None, typer.Argument(help="runs to delete")] = None,
    older_than: Annotated[float | None, typer.Option("--older-than", help="days")] = None,
    keep_errors: Annotated[
        bool, typer.Option("--keep-errors", help="keep runs with failures or mistakes")
    ] = False,
    include_tagged: Annotated[
        bool, typer.Option("--include-tagged", help="tagged runs are kept unless this is set")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Delete old runs and their outputs; blobs another run still references stay."""
    from vistudio.services import runs

    out = runs.clean_runs(
        state(ctx).studio(),
        older_than_days=older_than,
        run_ids=run_ids or None,
        keep_errors=keep_errors,
        keep_tagged=not include_tagged,
        dry_run=dry_run,
    )
    emit(
        ctx,
        out,
        lambda d: console.print(
            ("would delete" if d["dry_run"] else "deleted")
            + f" {plural(len(d['runs']), 'run')}, {plural(d['bytes'], 'byte')}"
        ),
    )


@app.command("usage")
def usage(ctx: typer.Context) -> None:
    """Disk used by saved outputs, per mode and per run."""
    from vistudio.services import runs

    emit(ctx, runs.disk_usage(state(ctx).studio()), lambda d: console.print_json(data=d))


def register(root: typer.Typer) -> None:
    root.command("run")(run)
