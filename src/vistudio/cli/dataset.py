"""``vistudio dataset export`` / ``dataset exports``: a project's samples and ground truth written as
COCO, YOLO, Pascal VOC, DOTA, CSV or class folders, which ``vistudio import`` reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table, wait_for_success
from vistudio.errors import BadRequest
from vistudio.text import plural

app = typer.Typer(help="Datasets: export a project to standard formats.", no_args_is_help=True)

FORMATS = "coco|yolo|voc|dota|csv|folders"


def _render(d: dict[str, Any]) -> None:
    e = d["export"]
    if e.get("dry_run"):
        where = f" to {escape(e['path'])}" if e.get("path") else ""
        console.print(
            f"dry run: {plural(e['samples'], 'sample')} and {plural(e['annotations'], 'annotation')} "
            f"would be exported as {e['format']}{where}; nothing was written"
        )
    else:
        console.print(
            f"[bold]{plural(e['samples'], 'sample')}[/], {plural(e['annotations'], 'annotation')} "
            f"exported as {e['format']} to {escape(e['path'])}"
        )
    if e.get("version"):
        gone = f" ({plural(e['missing'], 'member')} deleted since, not exported)" if e.get("missing") else ""
        console.print(f"the samples and labels of version {escape(str(e['version']))}{gone}")
    for title, key in (("dropped (the format cannot hold them)", "dropped"), ("converted", "converted")):
        if e.get(key):
            t = table(key_column("what"), "count", title=title)
            for what, n in e[key].items():
                t.add_row(escape(what), f"{n:,}")
            console.print(t)
    if not e.get("dropped") and not e.get("dry_run"):
        console.print("nothing was dropped")
    if e.get("failed_count"):
        t = table(key_column("sample"), "reason", title=f"{plural(e['failed_count'], 'sample')} not exported")
        for f in e["failed"][:50]:
            t.add_row(escape(f["name"]), escape(f["reason"]))
        console.print(t)


def export(
    ctx: typer.Context,
    project: str,
    format: Annotated[str, typer.Option("--format", "-f", help=FORMATS)],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="a folder that does not exist or is empty; with --zip a .zip file"),
    ] = None,
    zip_: Annotated[bool, typer.Option("--zip", help="write one .zip file")] = False,
    link: Annotated[
        bool,
        typer.Option("--link", help="hard-link images instead of copying them (same file system; else copy)"),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only say what would be exported and dropped")
    ] = False,
    label: Annotated[str | None, typer.Option(help="only samples with this class")] = None,
    tag: Annotated[str | None, typer.Option(help="only samples with this tag")] = None,
    view: Annotated[str | None, typer.Option(help="the samples of this saved view")] = None,
    version: Annotated[
        str | None,
        typer.Option(help="a dataset version (name or number): its samples with the labels it had"),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="only samples of this split (with --subset: of one subset)")
    ] = None,
    subset: Annotated[
        str | None, typer.Option(help="train, val or test (of --split, default the newest)")
    ] = None,
    by_split: Annotated[
        str | None,
        typer.Option(
            "--by-split",
            help="one set per subset of this split (YOLO train/val/test, COCO/CSV/DOTA/folders one folder each)",
        ),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
) -> None:
    """Export a project's images and ground truth (predictions are never exported).

    What the format cannot express is counted and printed; --dry-run prints only that.

    The export imports back with `vistudio import`.
    """
    from vistudio.services import dataset_export

    studio = state(ctx).studio()
    filters = {k: v for k, v in {"label": label, "tag": tag, "split": split, "subset": subset}.items() if v}
    if view is not None:
        from vistudio.services import views

        if filters:
            raise BadRequest("give either --view or filters (--label, --tag, --split, --subset)")
        filters = views.view_filter(studio, project=project, name=view)
    if version is not None and filters:
        raise BadRequest("give either --version or --view / filters: a version is exported whole")
    if dry_run:
        preview = dataset_export.preview_export(
            studio,
            project=project,
            format=format,
            filters=filters,
            by_split=by_split,
            out=out,
            zip=zip_,
            version=version,
        )
        emit(ctx, {"export": preview}, _render)
        return
    if out is None:
        raise BadRequest("say where the export goes with --out PATH (or use --dry-run)")
    job = dataset_export.start_dataset_export(
        studio,
        project=project,
        format=format,
        out=out,
        zip=zip_,
        link=link,
        filters=filters,
        by_split=by_split,
        version=version,
    )
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued dataset export job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "dataset export")
    emit(ctx, {"export": (final.get("result") or {}).get("export"), "job": {"id": final["id"]}}, _render)


def exports(
    ctx: typer.Context,
    project: str,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """The project's dataset exports, newest first."""
    from vistudio.services import dataset_export

    out = dataset_export.list_dataset_exports(
        state(ctx).studio(), project=project, offset=offset, limit=limit
    )

    def render(d: dict[str, Any]) -> None:
        t = table(
            key_column("path"),
            "job",
            "format",
            "status",
            "samples",
            "dropped",
            title=plural(d["total"], "export"),
        )
        for e in d["items"]:
            dropped = sum((e.get("dropped") or {}).values())
            t.add_row(
                escape(e["path"] or ""),
                str(e["job_id"]),
                e["format"] or "",
                e["status"],
                "" if e["samples"] is None else f"{e['samples']:,}",
                f"{dropped:,}" if e.get("dropped") is not None else "",
            )
        console.print(t)

    emit(ctx, out, render)


app.command("export")(export)
app.command("exports")(exports)
