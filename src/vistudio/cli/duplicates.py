"""``vistudio duplicates``: list duplicate groups at one level, decide on a group, undo a decision."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vistudio.cli.output import console, emit, print_embedding_follow_up, state, wait_for_job
from vistudio.errors import BadRequest
from vistudio.text import plural


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _render_groups(d: dict[str, Any]) -> None:
    if d.get("message"):
        console.print(escape(d["message"]))
    shown = "" if d["threshold"] is None else f" at threshold {d['threshold']:g}"
    counts = d["counts"]
    console.print(
        f"[bold]{plural(d['total'], d['level'] + ' duplicate group')}[/]{shown} "
        f"({counts['open']:,} to review, {counts['reviewed']:,} reviewed, "
        f"{plural(counts['duplicates'], 'extra copy')})"
    )
    exact = d["level"] == "exact"
    for g in d["groups"]:
        state_ = (
            f"[green]{g['decision']['action']}[/] (decision {g['decision']['id']})"
            if g["decision"]
            else "to review"
        )
        console.print(
            f"\n[bold]{g['id']}[/]  {plural(g['size'], 'file' if exact else 'sample')}  "
            f"distance {g['distance']:g}  {state_}"
        )
        for s in g["samples"]:
            mark = "[bold green]keep[/]" if s["keeper"] else "    "
            label = s["path"] if exact else s["name"]
            extra = " [dim](hidden)[/]" if s["hidden"] and not exact else ""
            console.print(
                f"  {mark} {s['id']:>7}  {escape(label)}  {s['width']}×{s['height']}  {_size(s['bytes'])}"
                f"  {(s.get('taken_at') or s.get('mtime') or '')[:10]}{extra}"
            )
    imported = d.get("import_duplicates")
    if imported and imported["count"]:
        console.print(
            f"the imports skipped {plural(imported['count'], 'file')} identical to one already imported"
        )
    if d.get("hashing", {}).get("job"):
        console.print(
            f"rotations and mirrors of {plural(d['hashing']['pending'], 'sample')} are being hashed "
            f"(job {d['hashing']['job']['id']}): the groups are approximate until it finishes"
        )


def duplicates_command(
    ctx: typer.Context,
    project: str,
    level: Annotated[str | None, typer.Option(help="exact | perceptual (default) | semantic")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="bits for perceptual (0-16, default 6); cosine similarity for semantic (0.8-1, default 0.95)"
        ),
    ] = None,
    status: Annotated[str, typer.Option(help="all | open | reviewed")] = "all",
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="groups to show (default: all)")] = None,
    resolve: Annotated[str | None, typer.Option("--resolve", help="a group id to decide on")] = None,
    action: Annotated[
        str | None,
        typer.Option(help="with --resolve: keep (mark reviewed) | hide (the others) | remove (the others)"),
    ] = None,
    keeper: Annotated[
        int | None, typer.Option(help="with --resolve: the sample to keep (default: the suggested one)")
    ] = None,
    undo: Annotated[int | None, typer.Option("--undo", help="a decision id to take back")] = None,
    decisions: Annotated[bool, typer.Option("--decisions", help="list the decisions taken")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="confirm --action remove")] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="do not wait for the hashing of rotations and mirrors")
    ] = False,
) -> None:
    """Find duplicates in three layers and review them.

    Levels: exact (files with identical bytes), perceptual (the same picture resized, re-encoded,
    turned by 90° or mirrored), semantic (embeddings with cosine >= threshold). Each group names a
    suggested keeper: the largest resolution, then the earliest. Decide with --resolve GROUP
    --action keep|hide|remove; take a decision back with --undo ID. Originals are never touched.
    """
    from vistudio.services import duplicates

    studio = state(ctx).studio()
    if sum(x is not None for x in (resolve, undo)) + decisions > 1:
        raise typer.BadParameter("use one of --resolve, --undo and --decisions at a time")
    if (action is not None or keeper is not None) and resolve is None:
        raise typer.BadParameter("--action and --keeper go with --resolve GROUP", param_hint="--action")
    if resolve is not None:
        if action is None:
            raise typer.BadParameter("say what to do with --action keep|hide|remove", param_hint="--action")
        if action == "remove" and not yes:
            question = (
                f"Remove the other samples of group {resolve} from project {project!r}? Your original files "
                "are not touched; the removal can be undone (--undo): imported copies until the workspace "
                "is cleaned up, library photos while their files are unchanged."
            )
            if state(ctx).json or not typer.confirm(question):
                raise BadRequest("not removed: confirm with --yes")
        out = duplicates.decide(
            studio,
            project=project,
            group=resolve,
            action=action,
            threshold=threshold,
            keeper=keeper,
            level=level,
        )
        emit(
            ctx,
            out,
            lambda d: console.print(
                f"group {d['decision']['group']}: {d['decision']['action']} (decision {d['decision']['id']}, "
                f"{plural(len(d['decision']['affected']), 'sample')} affected; undo with --undo {d['decision']['id']})"
            ),
        )
        return
    if undo is not None:
        out = duplicates.undo(studio, project=project, decision=undo)

        def render(d: dict[str, Any]) -> None:
            console.print(
                f"decision {d['undone']['id']} ({d['undone']['action']}) undone"
                + (f"; {plural(len(d['restored']), 'sample')} restored" if d["restored"] else "")
                + (f"; {len(d['not_restored'])} could not be restored" if d["not_restored"] else "")
            )
            print_embedding_follow_up(d)

        emit(ctx, out, render)
        return
    if decisions:
        listed = duplicates.list_decisions(studio, project=project, offset=offset, limit=limit or 50)

        def render(d: dict[str, Any]) -> None:
            t = Table(
                "id",
                "group",
                "level",
                "action",
                "keeper",
                "affected",
                "decided",
                title=plural(d["total"], "decision"),
            )
            for x in d["items"]:
                t.add_row(
                    str(x["id"]),
                    x["group"],
                    x["level"],
                    x["action"],
                    str(x["keeper"]),
                    str(len(x["affected"])),
                    x["decided_at"][:19],
                )
            console.print(t)

        emit(ctx, listed, render)
        return
    kw: dict[str, Any] = {
        "project": project,
        "level": level or "perceptual",
        "threshold": threshold,
        "status": status,
    }
    from vistudio.jobs.queue import FINISHED

    found = duplicates.list_groups(studio, offset=offset, limit=limit, **kw)
    job = found.get("hashing", {}).get("job")
    if job and not no_wait and job["status"] not in FINISHED:
        final = wait_for_job(ctx, job["id"])
        if final["status"] == "succeeded":
            found = duplicates.list_groups(studio, offset=offset, limit=limit, **kw)
    out = {"groups": found.pop("items"), **found}
    emit(ctx, out, _render_groups)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("duplicates")(duplicates_command)
