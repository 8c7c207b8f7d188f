"""``vistudio jobs …``, ``vistudio worker`` and ``vistudio doctor``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import typer

from vistudio.cli.output import console, emit, key_column, state, table

app = typer.Typer(help="Inspect, cancel and requeue background jobs.", no_args_is_help=True)


def _table(items: list[dict[str, Any]]) -> None:
    t = table(key_column("id"), "kind", "status", "progress", "attempts", "created", "error")
    for j in items:
        p = j["progress"]
        prog = f"{p['done']}/{p['total']}" if p["total"] else str(p["done"] or "")
        err = (j.get("error") or {}).get("message", "")
        t.add_row(
            str(j["id"]),
            j["kind"],
            j["status"],
            prog,
            f"{j['attempts']}/{j['max_attempts']}",
            (j["created_at"] or "")[:19].replace("T", " "),
            err.splitlines()[0][:60] if err else "",  # the first line; `jobs show ID` has it all
        )
    console.print(t)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="e.g. dead, or failed,dead")] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    offset: int = 0,
    limit: int = 50,
) -> None:
    """List jobs, newest first."""
    from vistudio.jobs.queue import job_dict

    items, total = state(ctx).studio().queue.list(status=status, kind=kind, offset=offset, limit=limit)
    emit(ctx, {"items": [job_dict(j) for j in items], "total": total}, lambda d: _table(d["items"]))


@app.command("show")
def show(ctx: typer.Context, job_id: int) -> None:
    """Show one job with its result or error."""
    from vistudio.jobs.queue import job_dict

    emit(ctx, {"job": job_dict(state(ctx).studio().queue.get(job_id))}, lambda d: console.print_json(data=d))


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: int) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    from vistudio.jobs.queue import job_dict

    emit(
        ctx,
        {"job": job_dict(state(ctx).studio().queue.cancel(job_id))},
        lambda d: console.print(f"job {job_id}: cancel requested"),
    )


@app.command("requeue")
def requeue(ctx: typer.Context, job_id: int) -> None:
    """Put a failed, dead or cancelled job back in the queue."""
    from vistudio.jobs.queue import job_dict

    emit(
        ctx,
        {"job": job_dict(state(ctx).studio().queue.requeue(job_id))},
        lambda d: console.print(f"job {job_id} requeued"),
    )


def worker(
    ctx: typer.Context,
    kinds: Annotated[
        str | None, typer.Option(help="comma-separated job kinds to take (default: all)")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="run at most one job, then exit")] = False,
) -> None:
    """Run a standalone worker that takes jobs from the workspace's queue until stopped."""
    from vistudio.jobs.queue import job_dict
    from vistudio.jobs.worker import Worker
    from vistudio.telemetry.context import prepare_worker_process

    studio = state(ctx).studio()
    # this process's metrics go to files in the workspace that the server's /metrics reads
    # (before anything imports prometheus-client; see docs/operations.md)
    prepare_worker_process(studio.home)
    studio.start_logging()
    try:
        w = Worker(studio, kinds=kinds.split(",") if kinds else None)
        if once:
            job = w.run_one()
            emit(
                ctx,
                {"job": job_dict(job) if job else None},
                lambda d: console.print(f"ran job {d['job']['id']}" if d["job"] else "no job to run"),
            )
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print(f"worker {w.name} waiting for jobs (Ctrl-C to stop)")
        try:
            w.run_forever(stop)
        except KeyboardInterrupt:
            stop.set()
    finally:  # run in-process (tests), the worker's log file must not outlive the command
        studio.stop_logging()


def doctor(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="repair what can be repaired")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="skip re-hashing every blob")] = False,
) -> None:
    """Check database integrity, blob hashes, orphan files and references."""
    from vistudio.services.doctor import run_doctor

    out = run_doctor(state(ctx).studio(), fix=fix, check_hashes=not quick)

    def render(d: dict[str, Any]) -> None:
        if d["ok"]:
            console.print("[green]workspace is healthy[/]")
        for p in d["problems"]:
            console.print(
                f"[yellow]{p['kind']}[/] " + " ".join(f"{k}={v}" for k, v in p.items() if k != "kind")
            )
        for f in d["fixed"]:
            console.print(f"[green]fixed:[/] {f}")

    emit(ctx, out, render)
    if not out["ok"] and not fix:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.command("worker")(worker)
    root.command("doctor")(doctor)
