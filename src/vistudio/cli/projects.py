from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from vistudio.cli.output import console, emit, state
from vistudio.errors import BadRequest
from vistudio.ml.tasks import task_names
from vistudio.services import projects

app = typer.Typer(help="Create, list, rename and delete projects.", no_args_is_help=True)


def _table(items: list[dict[str, Any]]) -> None:
    t = Table("id", "name", "task", "samples", "classes", "created")
    for p in items:
        t.add_row(
            str(p["id"]),
            p["name"],
            p["task"],
            str(p.get("samples", "")),
            str(p.get("classes", "")),
            p["created_at"][:19],
        )
    console.print(t)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    task: Annotated[str, typer.Option(help=f"one of: {', '.join(task_names())}")] = "classification",
) -> None:
    """Create a project with a task."""
    out = {"project": projects.create_project(state(ctx).studio(), name=name, task=task)}
    emit(
        ctx,
        out,
        lambda d: console.print(f"created project [bold]{d['project']['name']}[/] ({d['project']['task']})"),
    )


@app.command("list")
def list_(ctx: typer.Context, offset: int = 0, limit: int = 100) -> None:
    """List projects."""
    emit(
        ctx,
        projects.list_projects(state(ctx).studio(), offset=offset, limit=limit),
        lambda d: _table(d["items"]),
    )


@app.command("show")
def show(ctx: typer.Context, name: str) -> None:
    """Show a project with its classes and splits."""
    emit(
        ctx,
        {"project": projects.get_project(state(ctx).studio(), name)},
        lambda d: console.print_json(data=d),
    )


@app.command("rename")
def rename(ctx: typer.Context, old: str, new: str) -> None:
    """Rename a project."""
    out = {"project": projects.rename_project(state(ctx).studio(), old, new)}
    emit(ctx, out, lambda d: console.print(f"renamed to [bold]{d['project']['name']}[/]"))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="confirm without asking")] = False,
) -> None:
    """Delete a project and its samples. Originals imported by reference are never touched."""
    if not yes and (state(ctx).json or not typer.confirm(f"Delete project {name!r} and all its samples?")):
        raise BadRequest("not deleted: confirm with --yes")
    out = projects.delete_project(state(ctx).studio(), name)
    emit(
        ctx,
        out,
        lambda d: console.print(
            f"deleted {d['deleted']} ({d['samples']} samples, {d['blobs_removed']} blobs freed)"
        ),
    )
