"""``vistudio videos``: the videos found in a library project's folders."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.text import plural


def _clock(seconds: float | None) -> str:
    from vistudio.ingest.video import format_time

    return format_time(seconds or 0.0).rsplit(".", 1)[0]


def _render(d: dict[str, Any]) -> None:
    t = table(
        key_column("id"),
        "path",
        "duration",
        "size",
        "created",
        "keyframes",
        title=plural(d["total"], "video"),
    )
    for v in d["items"]:
        if v["error"]:
            t.add_row(str(v["id"]), escape(v["path"]), "", "", "", f"[red]{escape(v['error'])}[/]")
            continue
        created = (v["created_at"] or "")[:19].replace("T", " ")
        if v["created_source"] == "file":
            created += " [yellow](file)[/]"
        t.add_row(
            str(v["id"]),
            escape(v["path"]),
            _clock(v["duration"]),
            f"{v['width']}×{v['height']} @ {v['fps']:g} fps",
            created,
            str(v["keyframes"]),
        )
    console.print(t)
    shown = d["offset"] + len(d["items"])
    if shown < d["total"]:
        console.print(f"{shown} of {d['total']} shown; next page: --offset {shown}")


def videos_command(
    ctx: typer.Context,
    project: str,
    failed: Annotated[bool, typer.Option("--failed", help="only videos that could not be read")] = False,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
) -> None:
    """The videos of a library project: duration, size, creation date ("(file)": the file's date,
    the container had none) and keyframes — found by `vistudio library scan`."""
    from vistudio.services import videos

    studio = state(ctx).studio()
    data = videos.list_videos(
        studio, project=project, offset=offset, limit=limit, failed=True if failed else None
    )
    emit(ctx, data, _render)


def register(app: typer.Typer) -> None:
    app.command("videos")(videos_command)
