"""``vistudio events``: a project's photos grouped into events; merge, split and rename them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table, wait_for_success
from vistudio.errors import BadRequest


def _render(d: dict[str, Any]) -> None:
    t = table(key_column("id"), "name", "from", "to", "photos")
    for e in d["items"]:
        name = escape(e["name"]) + (" [dim](yours)[/]" if e["named"] else "")
        t.add_row(
            str(e["id"]),
            name,
            e["start"][:16].replace("T", " "),
            e["end"][:16].replace("T", " "),
            str(e["photos"]),
        )
    console.print(t)
    shown = len(d["items"])
    if d["total"] > d["offset"] + shown:
        console.print(
            f"{d['offset'] + 1}–{d['offset'] + shown} of {d['total']}: --offset {d['offset'] + shown}"
        )
    if d.get("job"):
        console.print(f"the photos changed: the events are being worked out again (job {d['job']['id']})")


def _render_one(d: dict[str, Any]) -> None:
    for key in ("event", "new_event"):
        if d.get(key):
            e = d[key]
            console.print(f"event {e['id']}: {escape(e['name'])} · {e['photos']} photos")


def events_command(
    ctx: typer.Context,
    project: str,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="work the events out again first (waits)")
    ] = False,
    merge: Annotated[str | None, typer.Option("--merge", help="merge these events: ID,ID,…")] = None,
    split: Annotated[int | None, typer.Option("--split", help="split this event (with --at)")] = None,
    at: Annotated[
        int | None, typer.Option("--at", help="the photo (sample id) the new event starts at")
    ] = None,
    rename: Annotated[int | None, typer.Option("--rename", help="rename this event (with --name)")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="the new name; empty: the worked-out one")
    ] = None,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    limit: Annotated[int, typer.Option("--limit")] = 100,
) -> None:
    """Events, newest first: photos grouped by when and where they were taken, named from place
    and dates. --merge, --split/--at and --rename/--name change them (kept by every recomputation)."""
    from vistudio.services import events

    studio = state(ctx).studio()
    if merge is not None:
        try:
            ids = [int(x) for x in merge.split(",") if x.strip()]
        except ValueError:
            raise BadRequest(f"--merge takes event ids separated by commas, got {merge[:50]!r}") from None
        emit(ctx, events.merge_events(studio, project=project, events=ids), _render_one)
        return
    if split is not None:
        if at is None:
            raise BadRequest("--split needs --at: the photo the new event starts at")
        emit(ctx, events.split_event(studio, project=project, event=split, at=at), _render_one)
        return
    if rename is not None:
        emit(ctx, events.rename_event(studio, project=project, event=rename, name=name), _render_one)
        return
    if refresh:
        job = events.refresh(studio, project=project)["job"]
        wait_for_success(ctx, job["id"], "events job")
    emit(ctx, events.list_events(studio, project=project, offset=offset, limit=limit), _render)


def register(app: typer.Typer) -> None:
    app.command("events")(events_command)
