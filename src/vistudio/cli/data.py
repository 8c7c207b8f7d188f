"""``vistudio import`` and ``vistudio samples``."""

from __future__ import annotations

from datetime import datetime
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
from vistudio.errors import BadRequest
from vistudio.text import plural


def _report(d: dict[str, Any]) -> None:
    r = d.get("report") or {}
    job = d["job"]
    if not r:
        console.print(
            f"job {job['id']}: {job['status']}"
            + (f" — {job['error']['message']}" if job.get("error") else "")
        )
        return
    console.print(
        f"[bold]{r['imported']}[/] imported, {r['skipped']} already present, {r['duplicates']} duplicates, "
        f"[red]{r['failed_count']}[/] failed, {r['near_duplicate_groups']} near-duplicate groups"
        # images that came without labels (no mask, no label file), in projects that have classes
        + (
            f", {r['unlabelled']} imported without annotations"
            if r.get("unlabelled") and r.get("classes")
            else ""
        )
    )
    if r.get("label_conflicts"):
        console.print(
            f"[yellow]{plural(r['label_conflicts'], 'copy', 'copies')} of an image labelled otherwise[/]: "
            f"the samples are tagged label-conflict (vistudio samples {d['project']} --tag label-conflict)"
        )
    if r["failed"]:
        t = table(key_column("path"), "reason", title="failed items")
        for f in r["failed"][:50]:
            t.add_row(escape(f["path"]), escape(f["reason"]))
        console.print(t)
        if r["failed_count"] > 50:
            console.print(f"… and {r['failed_count'] - 50} more (use --json for the full list)")
    print_embedding_follow_up(r)


def import_(
    ctx: typer.Context,
    project: str,
    source: Path,
    format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="folder|coco|yolo|voc|dota|masks|csv (guessed if omitted)"),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="copy (into the workspace) or reference (originals stay put)")
    ] = "copy",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print its id")] = False,
) -> None:
    """Import images (a folder, COCO, YOLO, Pascal VOC, DOTA, label masks, CSV, or a .zip of one) into a project."""
    from vistudio.services import ingest

    studio = state(ctx).studio()
    job = ingest.start_import(studio, project=project, source=source, fmt=format, mode=mode)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued import job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "import")
    report = (final.get("result") or {}).get("report")
    emit(ctx, {"job": final, "report": report, "project": project}, _report)


def _render_samples(d: dict[str, Any]) -> None:
    t = table(
        key_column("id"), "name", "size", "format", "labels", "taken", title=plural(d["total"], "sample")
    )
    for s in d["items"]:
        t.add_row(
            str(s["id"]),
            s["name"],
            f"{s['width']}×{s['height']}",
            s["format"],
            ", ".join(s["labels"]),
            (s["taken_at"] or "")[:19],
        )
    console.print(t)


def list_samples(
    ctx: typer.Context,
    project: str,
    label: Annotated[str | None, typer.Option(help="only samples with this class")] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    split: Annotated[str | None, typer.Option(help="split name (default: the newest)")] = None,
    subset: Annotated[str | None, typer.Option(help="train, val or test")] = None,
    annotated: Annotated[
        bool | None, typer.Option("--annotated/--unannotated", help="only samples with / without annotations")
    ] = None,
    taken_from: Annotated[
        datetime | None, typer.Option(help="taken on or after (YYYY-MM-DD[THH:MM:SS])")
    ] = None,
    taken_to: Annotated[datetime | None, typer.Option(help="taken on or before")] = None,
    dup_group: Annotated[int | None, typer.Option(help="one near-duplicate group")] = None,
    duplicates: Annotated[bool, typer.Option("--duplicates", help="only near-duplicate groups")] = False,
    name: Annotated[str | None, typer.Option("--name", help="file name contains")] = None,
    min_objects: Annotated[
        int | None, typer.Option(help="at least this many objects (of class --label, of --object-size)")
    ] = None,
    max_objects: Annotated[int | None, typer.Option(help="at most this many objects")] = None,
    object_size: Annotated[
        str | None, typer.Option(help="only objects of this COCO size: small, medium or large")
    ] = None,
    person: Annotated[
        list[str] | None, typer.Option("--person", help="photos of this person (repeat: people together)")
    ] = None,
    sort: Annotated[str, typer.Option(help="name, taken_at, imported_at, bytes, dup_group")] = "name",
    desc: Annotated[bool, typer.Option("--desc")] = False,
    view: Annotated[
        str | None, typer.Option(help="a saved view's filter and sort (other filters are then refused)")
    ] = None,
    offset: int = 0,
    limit: int = 50,
) -> None:
    """List a project's samples with filters and pagination."""
    from vistudio.services import samples

    if view is not None:
        from vistudio.services import views

        others = (label, tag, split, subset, annotated, taken_from, taken_to, dup_group, name)
        if any(v is not None for v in (*others, min_objects, max_objects, object_size, person)) or duplicates:
            raise BadRequest("--view brings its own filters: give either --view or filters")
        saved = views.get_view(state(ctx).studio(), project=project, name=view)
        out = samples.list_samples(
            state(ctx).studio(),
            project=project,
            offset=offset,
            limit=limit,
            **views.grid_filters(saved["query"]),
        )
        emit(ctx, out, _render_samples)
        return
    out = samples.list_samples(
        state(ctx).studio(),
        project=project,
        label=label,
        tag=tag,
        split=split,
        subset=subset,
        has_annotations=annotated,
        taken_from=taken_from,
        taken_to=taken_to,
        dup_group=dup_group,
        duplicates_only=duplicates,
        q=name,
        min_objects=min_objects,
        max_objects=max_objects,
        object_size=object_size,
        person=person,
        sort=sort,
        order="desc" if desc else "asc",
        offset=offset,
        limit=limit,
    )

    emit(ctx, out, _render_samples)


def show_sample(ctx: typer.Context, sample_id: int) -> None:
    """Show one sample: metadata, EXIF, annotations, tags and split membership."""
    from vistudio.services import samples

    emit(
        ctx,
        {"sample": samples.get_sample(state(ctx).studio(), sample_id)},
        lambda d: console.print_json(data=d),
    )


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("samples")(list_samples)
    app.command("sample")(show_sample)
