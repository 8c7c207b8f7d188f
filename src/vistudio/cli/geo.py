"""``vistudio geo``: where a project's photos were taken — counts, or clusters of an area at a zoom."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.text import plural


def _render_summary(d: dict[str, Any]) -> None:
    console.print(
        f"{plural(d['with_gps'], 'photo')} with a GPS position, {d['without_gps']:,} without, "
        f"in {escape(d['project']['name'])}"
    )
    if d["bounds"]:
        w, s, e, n = d["bounds"]
        console.print(f"bounds (west,south,east,north): {w:.5f},{s:.5f},{e:.5f},{n:.5f}")


def _render_clusters(d: dict[str, Any]) -> None:
    t = table(
        key_column("photos"),
        "lat",
        "lon",
        "sample",
        title=f"{plural(d['photos'], 'photo')} in {len(d['clusters']):,} clusters at zoom {d['zoom']}",
    )
    for c in d["clusters"]:
        t.add_row(f"{c['count']:,}", f"{c['lat']:.5f}", f"{c['lon']:.5f}", str(c["sample_id"]))
    console.print(t)


def geo_command(
    ctx: typer.Context,
    project: str,
    bbox: Annotated[
        str | None,
        typer.Option(
            "--bbox",
            help="an area: west,south,east,north in degrees (west > east: across the antimeridian)",
        ),
    ] = None,
    zoom: Annotated[
        int | None, typer.Option("--zoom", help="cluster the photos at this map zoom (0-22)")
    ] = None,
) -> None:
    """Where the photos were taken: how many have a GPS position and their bounds, or with --zoom
    (and --bbox) the clusters of that area at that zoom, as the Map tab draws them."""
    from vistudio.services import geo

    studio = state(ctx).studio()
    if zoom is None and bbox is None:
        emit(ctx, geo.summary(studio, project=project), _render_summary)
        return
    emit(
        ctx,
        geo.clusters(studio, project=project, bbox=bbox, zoom=0 if zoom is None else zoom),
        _render_clusters,
    )


def register(app: typer.Typer) -> None:
    app.command("geo")(geo_command)
