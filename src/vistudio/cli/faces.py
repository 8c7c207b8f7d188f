"""``vistudio faces``: find and describe the faces of a project's photos."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table, wait_for_success
from vistudio.text import plural


def _report(d: dict[str, Any]) -> None:
    r = d.get("report") or {}
    console.print(
        f"{plural(r.get('photos', 0), 'photo')} read, [bold]{plural(r.get('faces', 0), 'face')}[/] found, "
        f"[red]{r.get('failed_count', 0)}[/] failed ({r.get('model')})"
    )
    if r.get("failed"):
        t = table(key_column("path"), "reason", title="failed photos")
        for f in r["failed"][:50]:
            t.add_row(escape(f["path"]), escape(f["reason"]))
        console.print(t)


def faces_command(
    ctx: typer.Context,
    project: str,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
) -> None:
    """Find the faces in the project's photos not yet read with the current face model."""
    from vistudio.services import faces

    studio = state(ctx).studio()
    job = faces.start_faces(studio, project=project)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued face job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "face job")
    emit(ctx, {"job": final, "report": (final.get("result") or {}).get("report")}, _report)


def register(app: typer.Typer) -> None:
    app.command("faces")(faces_command)
