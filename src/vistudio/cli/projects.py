from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.errors import BadRequest
from vistudio.ml.tasks import task_names
from vistudio.text import plural

# services are imported inside each command: importing them loads the database layer, which
# `vistudio --help` does not need (see docs/benchmarks.md, "CLI start-up")

app = typer.Typer(help="Create, list, rename and delete projects.", no_args_is_help=True)


def _when(iso: str | None) -> str:
    return (iso or "")[:19].replace("T", " ")


def _table(items: list[dict[str, Any]]) -> None:
    if not items:
        console.print("no projects yet: create one with [bold]vistudio project create NAME --task TASK[/]")
        return
    t = table(key_column("id"), "name", "task", "samples", "classes", "created")
    for p in items:
        t.add_row(
            str(p["id"]),
            escape(p["name"]),
            p["task"],
            str(p.get("samples", "")),
            str(p.get("classes", "")),
            _when(p["created_at"]),
        )
    console.print(t)


def _show(project: dict[str, Any]) -> None:
    """One project as a two-column table: a field per row, lists joined (a project can have many
    classes: they wrap inside the value column)."""
    t = table(key_column("field"), "value", title=f"project {escape(project['name'])}")
    for key, value in project.items():
        if key in ("created_at", "updated_at"):
            text = _when(value)
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) if value else "none"
        elif isinstance(value, dict):
            text = ", ".join(f"{k}: {v}" for k, v in value.items())
        else:
            text = "" if value is None else str(value)
        t.add_row(key.replace("_", " "), escape(text))
    console.print(t)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    task: Annotated[str, typer.Option(help=f"one of: {', '.join(task_names())}")] = "classification",
    owner: Annotated[
        str | None, typer.Option(help="the user who owns it (once users exist; else only admins see it)")
    ] = None,
) -> None:
    """Create a project with a task."""
    from vistudio.services import projects, users

    studio = state(ctx).studio()
    owner_id = users.user_id(studio, owner) if owner else None
    out = {"project": projects.create_project(studio, name=name, task=task, owner=owner_id)}
    emit(
        ctx,
        out,
        lambda d: console.print(f"created project [bold]{d['project']['name']}[/] ({d['project']['task']})"),
    )


@app.command("list")
def list_(ctx: typer.Context, offset: int = 0, limit: int = 100) -> None:
    """List projects."""
    from vistudio.services import projects

    emit(
        ctx,
        projects.list_projects(state(ctx).studio(), offset=offset, limit=limit),
        lambda d: _table(d["items"]),
    )


@app.command("show")
def show(ctx: typer.Context, name: str) -> None:
    """Show a project with its classes and splits."""
    from vistudio.services import projects

    emit(ctx, {"project": projects.get_project(state(ctx).studio(), name)}, lambda d: _show(d["project"]))


@app.command("rename")
def rename(ctx: typer.Context, old: str, new: str) -> None:
    """Rename a project."""
    from vistudio.services import projects

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
    from vistudio.services import projects

    out = projects.delete_project(state(ctx).studio(), name)
    emit(
        ctx,
        out,
        lambda d: console.print(
            f"deleted {d['deleted']} ({plural(d['samples'], 'sample')}, {plural(d['blobs_removed'], 'blob')} freed)"
        ),
    )


@app.command("share")
def share(
    ctx: typer.Context,
    project: str,
    user: str,
    role: Annotated[str, typer.Option(help="owner | editor | viewer | none (removes the member)")] = "viewer",
) -> None:
    """Share a project with a user (recorded in the audit log)."""
    from vistudio.services import access

    out = access.share_project(state(ctx).studio(), project=project, user=user, role=role)
    emit(ctx, out, lambda d: console.print(f"{escape(d['user'])} is now {d['role']} of {escape(d['project'])}"))


@app.command("members")
def members(ctx: typer.Context, project: str) -> None:
    """The project's owner and members."""
    from vistudio.services import access

    def show(d: dict[str, Any]) -> None:
        t = table(key_column("user"), "role", title=f"members of {escape(d['project'])}")
        for m in d["items"]:
            t.add_row(escape(m["user"]), m["role"])
        console.print(t)

    emit(ctx, access.project_members(state(ctx).studio(), project), show)
