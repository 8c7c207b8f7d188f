"""``vistudio logs``: read or follow the workspace's structured JSON log."""

from __future__ import annotations

import json
import sys
import threading
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, err_console, state

LEVEL_STYLE = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}


def _line(item: dict[str, Any]) -> str:
    tags = " ".join(f"{k}={item[k]}" for k in ("job_id", "request_id", "project") if item.get(k) is not None)
    level = str(item.get("level", ""))
    style = LEVEL_STYLE.get(level, "")
    head = (
        f"{escape(str(item.get('ts', '')))} [{style}]{level:<7}[/]"
        if style
        else f"{item.get('ts', '')} {level:<7}"
    )
    text = f"{head} {escape(str(item.get('message', '')))}"
    if tags:
        text += f" [dim]{escape(tags)}[/]"
    if item.get("exc"):
        text += "\n" + escape(str(item["exc"]))
    return text


def logs(
    ctx: typer.Context,
    job: Annotated[int | None, typer.Option("--job", help="only this job's lines")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, max=5000, help="newest lines to show")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines until Ctrl-C")
    ] = False,
) -> None:
    """Show the newest lines of the workspace's log (logs/vistudio.log and its rotated files).

    With --json: one document {"items", "total", "skipped"}; with --json --follow, one JSON object
    per line as lines arrive (JSON Lines). Unreadable lines are skipped and counted."""
    from vistudio.services.logs import log_lines
    from vistudio.telemetry.logs import follow as follow_lines

    st = state(ctx)
    studio = st.studio()
    out = log_lines(studio, job_id=job, limit=lines)

    def render(d: dict[str, Any]) -> None:
        for item in d["items"]:
            console.print(_line(item), highlight=False, soft_wrap=True)
        if not d["items"] and not follow:
            console.print("[dim]no log lines[/]" + (f" for job {job}" if job is not None else ""))
        if d["skipped"]:
            err_console.print(f"[yellow]note:[/] skipped {d['skipped']} unreadable log line(s)")

    if follow and st.json:
        for item in out["items"]:
            sys.stdout.write(json.dumps(item, default=str) + "\n")
    else:
        emit(ctx, out, render)
    if not follow:
        return
    stop = threading.Event()
    try:
        for item in follow_lines(
            studio.home,
            job_id=job,
            stop=stop.is_set,
            on_skip=lambda _: err_console.print("[yellow]note:[/] skipped an unreadable log line"),
        ):
            if st.json:
                sys.stdout.write(json.dumps(item, default=str) + "\n")
                sys.stdout.flush()
            else:
                console.print(_line(item), highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        stop.set()


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
