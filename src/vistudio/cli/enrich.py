"""``vistudio enrich``: embeddings, faces and captions of a project's photos, locally or on Ray."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, state, wait_for_success
from vistudio.text import plural


def _render(d: dict[str, Any]) -> None:
    for job in d["jobs"]:
        report = (job.get("result") or {}).get("report") or job.get("result") or {}
        steps = report.get("steps") if d["mode"] == "ray" else {job["kind"]: report}
        for step, r in (steps or {}).items():
            done = r.get("embedded", r.get("faces", r.get("captioned", 0)))
            what = {"embed": "embedded", "faces": "faces found", "captions": "captioned"}.get(step, step)
            failed = r.get("failed_count", r.get("failed", len(r.get("skipped") or [])))
            failed = failed if isinstance(failed, int) else len(failed)
            speed = f", {r['photos_per_second']} photos/s" if r.get("photos_per_second") else ""
            console.print(f"{escape(step)}: [bold]{done}[/] {what}, [red]{failed}[/] failed{speed}")
    if d["mode"] == "ray" and d["jobs"]:
        ray = ((d["jobs"][0].get("result") or {}).get("report") or {}).get("ray") or {}
        console.print(f"[dim]on Ray at {escape(str(ray.get('address')))} ({ray.get('resources')})[/]")


def enrich_command(
    ctx: typer.Context,
    project: str,
    steps: Annotated[
        str, typer.Option("--steps", help="comma-separated, of embed, faces, captions")
    ] = "embed,faces,captions",
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="run on the Ray cluster at ADDRESS (host:port, auto, ray://host:port; 'local' starts "
            "one here); without it the local jobs are queued",
            metavar="ADDRESS",
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option("--actors", help="with --ray: model actors per step (default: per GPU or CPU)"),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job(s) and print them")] = False,
) -> None:
    """Embed, find faces in and caption the project's photos that lack them: as the local jobs
    (embed, faces, captions), or with --ray as one job whose model work runs on a Ray cluster."""
    from vistudio.services import enrich

    studio = state(ctx).studio()
    started = enrich.start_enrich(studio, project=project, steps=steps, ray=ray, actors=actors)
    if no_wait:
        emit(
            ctx,
            started,
            lambda d: console.print(
                f"queued {plural(len(d['jobs']), 'job')}: "
                + ", ".join(f"{j['kind']} {j['id']}" for j in d["jobs"])
            ),
        )
        return
    finals = [wait_for_success(ctx, job["id"], f"{job['kind']} job") for job in started["jobs"]]
    emit(ctx, {"mode": started["mode"], "jobs": finals}, _render)


def register(app: typer.Typer) -> None:
    app.command("enrich")(enrich_command)
