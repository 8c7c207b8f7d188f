"""``vistudio albums``: a project's albums (manual and smart); ``vistudio on-this-day``: photos
taken on this day in earlier years."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.errors import BadRequest
from vistudio.text import plural


def _render_list(d: dict[str, Any]) -> None:
    t = table(key_column("id"), "name", "kind", "photos", "query")
    for a in d["items"]:
        t.add_row(
            str(a["id"]),
            escape(a["name"]),
            a["kind"],
            str(a["photos"]),
            escape(a["query"] or "") + (f" [red]({escape(a['problem'])})[/]" if a["problem"] else ""),
        )
    console.print(t)
    if not d["items"]:
        console.print("no albums yet: --create NAME (add --query Q for a smart album)")
    shown = len(d["items"])
    if d["total"] > d["offset"] + shown:
        console.print(
            f"{d['offset'] + 1}–{d['offset'] + shown} of {d['total']}: --offset {d['offset'] + shown}"
        )


def _render_album(d: dict[str, Any]) -> None:
    a = d["album"]
    kind = f"smart: {escape(a['query'])}" if a["kind"] == "smart" else "manual"
    console.print(f"album {a['id']}: [bold]{escape(a['name'])}[/] · {kind} · {plural(a['photos'], 'photo')}")
    for key, text in (("added", "added"), ("already", "already in it"), ("removed", "removed")):
        if key in d:
            console.print(f"{plural(d[key], 'photo')} {text}")
    if d.get("undo"):
        console.print(f"deleted: undo with --restore {d['undo']['restore']}")
    if d.get("renamed"):
        console.print("its name was taken meanwhile: restored under a new name")
    if "items" in d:
        t = table(key_column("id"), "date", "name")
        for item in d["items"]:
            t.add_row(
                str(item["id"]), (item["time"] or "no date").replace("T", " ")[:19], escape(item["name"])
            )
        console.print(t)
        if d.get("next_cursor"):
            console.print(f"more: --cursor {d['next_cursor']}")
    for n in d.get("notices", []):
        console.print(f"[yellow]{escape(n['message'])}[/]")


def _ids(text: str | None, option: str) -> list[int]:
    if not text:
        raise BadRequest(f"{option} needs --photos ID,ID,…")
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadRequest(f"--photos takes photo ids separated by commas, got {text[:50]!r}") from None


def albums_command(
    ctx: typer.Context,
    project: str,
    create: Annotated[str | None, typer.Option("--create", help="create an album with this name")] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="with --create or --rename: a smart album's query")
    ] = None,
    show: Annotated[int | None, typer.Option("--show", help="an album and a page of its photos")] = None,
    add: Annotated[int | None, typer.Option("--add", help="add --photos to this manual album")] = None,
    remove: Annotated[int | None, typer.Option("--remove", help="take --photos out of this album")] = None,
    photos: Annotated[str | None, typer.Option("--photos", help="photo ids: ID,ID,…")] = None,
    move: Annotated[int | None, typer.Option("--move", help="move --photo of this album (--before)")] = None,
    photo: Annotated[int | None, typer.Option("--photo", help="the photo to move, or the new cover")] = None,
    before: Annotated[
        int | None, typer.Option("--before", help="the photo it goes before (default: end)")
    ] = None,
    cover: Annotated[int | None, typer.Option("--cover", help="set this album's cover to --photo")] = None,
    rename: Annotated[
        int | None, typer.Option("--rename", help="rename this album (--name) or change its --query")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="the new name")] = None,
    delete: Annotated[
        int | None, typer.Option("--delete", help="delete this album (undo: --restore)")
    ] = None,
    restore: Annotated[int | None, typer.Option("--restore", help="restore a deleted album")] = None,
    cursor: Annotated[str | None, typer.Option("--cursor", help="with --show: the next page")] = None,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    limit: Annotated[int, typer.Option("--limit")] = 100,
) -> None:
    """Albums: manual ones (photos chosen by hand, in your order) and smart ones (a search query,
    e.g. 'tag:trip after:2023': photos join as they arrive). Without an action: the list."""
    from vistudio.services import albums

    studio = state(ctx).studio()
    actions = [create, show, add, remove, move, cover, rename, delete, restore]
    if sum(a is not None for a in actions) > 1:
        raise BadRequest(
            "one action at a time: --create, --show, --add, --remove, --move, --cover, --rename, --delete or --restore"
        )
    out: dict[str, Any]
    if create is not None:
        kind = "smart" if query is not None else "manual"
        out = albums.create_album(studio, project=project, name=create, kind=kind, query=query)
    elif show is not None:
        out = albums.get_album(studio, project=project, album=show, cursor=cursor, limit=limit)
    elif add is not None:
        out = albums.add_photos(studio, project=project, album=add, sample_ids=_ids(photos, "--add"))
    elif remove is not None:
        out = albums.remove_photos(studio, project=project, album=remove, sample_ids=_ids(photos, "--remove"))
    elif move is not None:
        if photo is None:
            raise BadRequest("--move needs --photo (and --before, else it goes to the end)")
        out = albums.move_photo(studio, project=project, album=move, sample_id=photo, before=before)
    elif cover is not None:
        if photo is None:
            raise BadRequest("--cover needs --photo: one of the album's photos")
        out = albums.update_album(studio, project=project, album=cover, cover_sample_id=photo)
    elif rename is not None:
        if name is None and query is None:
            raise BadRequest("--rename needs --name or --query")
        out = albums.update_album(studio, project=project, album=rename, name=name, query=query)
    elif delete is not None:
        out = albums.delete_album(studio, project=project, album=delete)
    elif restore is not None:
        out = albums.restore_album(studio, project=project, album=restore)
    else:
        emit(ctx, albums.list_albums(studio, project=project, offset=offset, limit=limit), _render_list)
        return
    emit(ctx, out, _render_album)


def _render_day(d: dict[str, Any]) -> None:
    if not d["years"]:
        console.print(f"no photos taken on {d['date'][5:]} in earlier years")
        return
    for y in d["years"]:
        console.print(f"[bold]{y['label']}[/] · {y['date']} · {plural(y['count'], 'photo')}")
        for p in y["photos"]:
            console.print(f"  {p['id']}  {(p['time'] or '')[11:16]}  {escape(p['name'])}")
        if y["count"] > len(y["photos"]):
            console.print(f"  … {y['count'] - len(y['photos'])} more")


def on_this_day_command(
    ctx: typer.Context,
    project: str,
    date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default: today)")] = None,
    per_year: Annotated[int, typer.Option("--per-year", help="photos shown per year")] = 24,
) -> None:
    """Photos taken on this day (or --date's month and day) in earlier years, by year."""
    from vistudio.services import albums

    studio = state(ctx).studio()
    emit(ctx, albums.on_this_day(studio, project=project, day=date, per_year=per_year), _render_day)


def register(app: typer.Typer) -> None:
    app.command("albums")(albums_command)
    app.command("on-this-day")(on_this_day_command)
