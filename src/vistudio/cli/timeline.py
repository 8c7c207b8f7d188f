"""``vistudio timeline``: a project's photos by date; ``vistudio places``: fill place names."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table, wait_for_success
from vistudio.text import plural


def _render_buckets(d: dict[str, Any]) -> None:
    t = table(
        key_column(d["by"]),
        "photos",
        title=f"{plural(d['total'], 'photo')} in {escape(d['project']['name'])}",
    )
    for g in d["groups"]:
        t.add_row(escape(g["label"]), str(g["count"]))
    if d["no_date"]:
        t.add_row("[italic]No date[/]", str(d["no_date"]))
    console.print(t)
    if d.get("backfill"):
        console.print(
            f"file dates and places of earlier photos are being filled: job {d['backfill']['id']} "
            "(runs on a server's workers or `vistudio places`)"
        )


def _render_page(d: dict[str, Any]) -> None:
    t = table(key_column("id"), "date", "name", "place")
    for item in d["items"]:
        when = (item["time"] or "no date").replace("T", " ")[:19]
        if item["time_source"] == "file":
            when += " [yellow](file)[/]"
        place = item["place"] or {}
        t.add_row(
            str(item["id"]),
            when,
            escape(item["name"]),
            escape(", ".join(dict.fromkeys(v for v in (place.get("city"), place.get("country")) if v))),
        )
    console.print(t)
    if d["next_cursor"]:
        console.print(f"next page: --cursor {escape(d['next_cursor'])}")


def timeline_command(
    ctx: typer.Context,
    project: str,
    by: Annotated[str, typer.Option("--by", help="group by year, month or day")] = "month",
    at: Annotated[
        str | None,
        typer.Option("--at", help="list photos from this date back: 2019, 2019-06, 2019-06-15 or nodate"),
    ] = None,
    cursor: Annotated[str | None, typer.Option("--cursor", help="the next page (as printed)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="photos per page")] = 50,
) -> None:
    """Photos by date: counts per year/month/day, or with --at/--cursor a page of photos (newest
    first; "(file)" marks a date taken from the file, not from EXIF)."""
    from vistudio.services import timeline

    studio = state(ctx).studio()
    if at is None and cursor is None:
        emit(ctx, timeline.buckets(studio, project=project, by=by), _render_buckets)
        return
    emit(ctx, timeline.photos(studio, project=project, at=at, cursor=cursor, limit=limit), _render_page)


def places_command(
    ctx: typer.Context,
    project: str,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
) -> None:
    """Look up place names (city, region, country) of the project's photos with a GPS position not
    yet looked up, and fill the file dates of photos imported before those were recorded."""
    from vistudio.services import places

    job = places.start_places(state(ctx).studio(), project=project)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued places job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "places job")
    report = (final.get("result") or {}).get("report") or {}

    def render(d: dict[str, Any]) -> None:
        r = d["report"]
        console.print(
            f"{plural(r.get('looked_up', 0), 'photo')} looked up, {r.get('named', 0)} with a place; "
            f"{plural(r.get('file_dates', 0), 'file date')} filled ({r.get('gazetteer')})"
        )

    emit(ctx, {"job": final, "report": report}, render)


def register(app: typer.Typer) -> None:
    app.command("timeline")(timeline_command)
    app.command("places")(places_command)
