"""``vistudio library``: folders of photos indexed in place, and incremental scans of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import (
    console,
    emit,
    key_column,
    print_embedding_follow_up,
    state,
    table,
    wait_for_success,
)
from vistudio.text import plural

app = typer.Typer(
    help="Photo library: register folders (originals stay where they are) and scan them.",
    no_args_is_help=True,
)


def _roots_table(items: list[dict[str, Any]], title: str | None = None) -> None:
    t = table("id", key_column("folder"), "files", "failed", "last scan", title=title)
    for r in items:
        problem = r.get("problem")
        t.add_row(
            str(r["id"]),
            escape(r["path"]) + (f" [red]({escape(problem)})[/]" if problem else ""),
            str(r["files"]),
            str(r["failed"]),
            (r["last_scan_at"] or "never")[:19].replace("T", " "),
        )
    console.print(t)


@app.command("add")
def add(
    ctx: typer.Context,
    project: str,
    paths: Annotated[list[Path], typer.Argument(help="folders of photos (never modified)")],
) -> None:
    """Register folders with a library project; `library scan` indexes them."""
    from vistudio.services import library

    out = library.add_roots(
        state(ctx).studio(), project=project, paths=[str(p) for p in paths], base=Path.cwd()
    )

    def render(d: dict[str, Any]) -> None:
        console.print(
            f"added {plural(len(d['added']), 'folder')}; run [bold]vistudio library scan {escape(project)}[/]"
        )
        _roots_table(d["roots"])

    emit(ctx, out, render)


@app.command("roots")
def roots(ctx: typer.Context, project: str) -> None:
    """List a library project's folders with their file counts."""
    from vistudio.services import library

    emit(
        ctx,
        library.list_roots(state(ctx).studio(), project=project),
        lambda d: _roots_table(d["items"], plural(d["total"], "folder")),
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    project: str,
    path: Annotated[str, typer.Argument(help="the folder (as listed by `library roots`) or its id")],
) -> None:
    """Unregister a folder: its photos leave the project. The folder itself is not touched."""
    from vistudio.services import library

    out = library.remove_root(state(ctx).studio(), project=project, root=path)
    emit(
        ctx,
        out,
        lambda d: console.print(
            f"removed {escape(d['removed']['path'])} ({plural(d['removed']['files'], 'file')}, "
            f"{plural(d['samples_removed'], 'sample')} left the project)"
        ),
    )


def _report(d: dict[str, Any]) -> None:
    r = d.get("report") or {}
    if not r:
        console.print(f"scan job {d['job']['id']}: {d['job']['status']}")
        return
    console.print(
        f"[bold]{r['added']}[/] added, {r['updated']} updated, {r['removed']} removed, "
        f"{r['unchanged']} unchanged, [red]{r['failed_count']}[/] failed "
        f"({plural(r['samples_added'], 'sample')} added, {r['samples_removed']} removed) in {r['seconds']:.1f} s"
    )
    if r["failed"]:
        t = table(key_column("path"), "error", title="failed files")
        for f in r["failed"][:50]:
            t.add_row(escape(f["path"]), escape(f["error"]))
        console.print(t)
        if r["failed_count"] > 50:
            console.print(f"… and {r['failed_count'] - 50} more (use --json for the full list)")
    print_embedding_follow_up(r)


@app.command("scan")
def scan(
    ctx: typer.Context,
    project: str,
    root: Annotated[
        list[str] | None, typer.Option("--root", help="scan only this folder (repeatable; default: all)")
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
) -> None:
    """Index the project's folders: new, changed and removed files (a rescan reads only what changed)."""
    from vistudio.services import library

    studio = state(ctx).studio()
    job = library.start_scan(studio, project=project, roots=list(root) if root else None)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued scan job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "library scan")
    emit(ctx, {"job": final, "report": (final.get("result") or {}).get("report")}, _report)


def register(app_: typer.Typer) -> None:
    """Add the ``library`` command group to the root app."""
    app_.add_typer(app, name="library")
