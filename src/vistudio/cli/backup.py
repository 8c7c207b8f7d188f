"""``vistudio backup DEST [--verify]`` and ``vistudio restore SRC``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, err_console, state
from vistudio.text import plural

PHASES = {
    "database": "dumping the database",
    "files": "copying files",
    "verify": "verifying",
    "restore": "restoring",
}


@contextlib.contextmanager
def _bar(ctx: typer.Context) -> Iterator[Callable[[str, int, int], None]]:
    """A Rich progress bar on stderr (human mode on a terminal); yields the services' callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    show = not state(ctx).json and sys.stderr.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, disable=not show, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def tick(phase: str, done: int, total: int) -> None:
            bar.update(task, description=PHASES.get(phase, phase), completed=done, total=total or None)

        yield tick


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def _render(d: dict[str, Any]) -> None:
    b = d["backup"]
    if b.get("verified"):
        console.print(
            f"[green]backup verified[/]: {plural(b['snapshots'], 'snapshot')}, "
            f"{plural(b['objects_checked'], 'object')} re-hashed ({_size(b['bytes_checked'])}) in {escape(b['path'])}"
        )
        return
    verb = "restored" if "workspace" in d["backup"] else "backed up"
    console.print(
        f"[bold]{verb}[/] snapshot {b['snapshot']}: {plural(b['samples'], 'sample')}, "
        f"{plural(b['blobs'], 'file')}, {_size(b['bytes'])}"
        + (f" ({b['new_blobs']} new, {_size(b.get('new_bytes', 0))})" if "new_bytes" in b else "")
        + (f" → {escape(b['workspace'])}" if "workspace" in b else f" → {escape(b['path'])}")
    )
    for m in b.get("missing") or []:
        console.print(f"[yellow]not in the backup:[/] {escape(m['path'])} ({escape(str(m['reason']))})")


def backup(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="backup folder (new, empty, or an earlier vistudio backup)")],
    verify: Annotated[
        bool,
        typer.Option("--verify", help="re-hash the backup in DEST against its manifests; writes nothing"),
    ] = False,
) -> None:
    """Back the workspace up into DEST while it runs (incremental: only new files are copied)."""
    from vistudio.services import backup as svc

    with _bar(ctx) as tick:
        if verify:
            out = svc.verify_backup(dest, progress=tick)
        else:
            out = svc.create_backup(state(ctx).studio(), dest, progress=tick)
    emit(ctx, {"backup": out}, _render)


def restore(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(help="a vistudio backup folder")],
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="which snapshot (default: the latest complete one)")
    ] = None,
) -> None:
    """Restore a backup into the --workspace, which must be new or empty."""
    from vistudio.config import Settings
    from vistudio.services import backup as svc

    ws = state(ctx).workspace
    settings = Settings(home=ws) if ws else Settings()
    with _bar(ctx) as tick:
        out = svc.restore_backup(settings, src, snapshot=snapshot, progress=tick)
    emit(ctx, {"backup": out}, _render)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
