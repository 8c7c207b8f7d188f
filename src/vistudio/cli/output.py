"""Output for every command: one JSON document with --json, Rich tables and bars without."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vistudio.config import Settings
from vistudio.db import utcnow
from vistudio.errors import Conflict, JobFailed, ModelUnavailable, VistudioError
from vistudio.jobs.queue import FINISHED, job_dict
from vistudio.studio import Studio, open_studio

console = Console()
err_console = Console(stderr=True)


@dataclass
class State:
    workspace: Path | None = None
    json: bool = False
    _studio: Studio | None = field(default=None, repr=False)

    def studio(self) -> Studio:
        if self._studio is None:
            settings = Settings(home=self.workspace) if self.workspace else Settings()
            self._studio = open_studio(settings)
        return self._studio


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def emit(
    ctx: typer.Context, data: dict[str, Any], render: Callable[[dict[str, Any]], None] | None = None
) -> None:
    if state(ctx).json or render is None:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        render(data)


def fail(ctx: typer.Context | None, error: VistudioError, *, code: int = 1) -> NoReturn:
    as_json = ctx is not None and state(ctx).json
    if as_json:
        sys.stdout.write(json.dumps(error.to_dict()) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {escape(error.message)}")
    raise typer.Exit(code)


def wait_for_job(ctx: typer.Context, job_id: int) -> dict[str, Any]:
    """Run the job here if no other worker has taken it, showing progress; return the final job."""
    from vistudio.jobs.worker import Worker

    studio = state(ctx).studio()
    worker = Worker(studio)
    runner = threading.Thread(target=worker.run_one, kwargs={"job_id": job_id}, daemon=True)
    runner.start()
    show = not state(ctx).json and sys.stderr.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err_console, disable=not show, transient=True) as bar:
            task = bar.add_task("queued", total=None)
            while True:
                job = studio.queue.get(job_id)
                bar.update(
                    task,
                    completed=job.progress_done,
                    total=job.progress_total,
                    description=(job.progress_message or job.status)[:40],
                )
                if job.status in FINISHED:
                    break
                if not runner.is_alive() and job.status == "queued" and job.run_after <= utcnow():
                    # a transient failure was requeued with backoff: take the retry ourselves
                    runner = threading.Thread(target=worker.run_one, kwargs={"job_id": job_id}, daemon=True)
                    runner.start()
                runner.join(timeout=0.2)
    except KeyboardInterrupt:
        with contextlib.suppress(Conflict):  # it finished just now
            studio.queue.cancel(job_id)
        err_console.print("cancelling… (press Ctrl-C again to leave it running)")
        # the job may run in this process or on another worker: wait for its outcome either way
        while studio.queue.get(job_id).status not in FINISHED:
            runner.join(timeout=0.2)
    runner.join(timeout=5)
    return job_dict(studio.queue.get(job_id))


def wait_for_success(ctx: typer.Context, job_id: int, what: str) -> dict[str, Any]:
    """``wait_for_job``, then the final job if it succeeded; otherwise a ``JobFailed`` (or the
    job's ``ModelUnavailable``) saying ``what`` ended how, with the job and its traceback."""
    final = wait_for_job(ctx, job_id)
    if final["status"] == "succeeded":
        return final
    err = final.get("error") or {"message": final["status"]}
    details = {"job": {k: v for k, v in final.items() if k != "error"}, "traceback": err.get("traceback")}
    if err.get("type") == "ModelUnavailable":
        raise ModelUnavailable(err.get("message", "model unavailable"), details=details)
    raise JobFailed(f"{what} {final['status']}: {err.get('message')}", details=details)


def print_embedding_follow_up(report: dict[str, Any]) -> None:
    """The line an import or scan prints when it queued embedding of its new images."""
    follow_up = report.get("embedding") or {}
    if "job" in follow_up:
        console.print(
            f"new images queued for embedding: job {follow_up['job']} (runs on a server's workers or `vistudio embed`)"
        )
    elif "error" in follow_up:
        console.print(f"[yellow]new images not queued for embedding:[/] {escape(follow_up['error'])}")
