"""``vistudio captions``: caption a project's photos; show or write one photo's caption."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, state, wait_for_success
from vistudio.text import plural


def _render_one(d: dict[str, Any]) -> None:
    if d["caption"] is None:
        console.print("no caption")
        return
    source = "yours" if d["source"] == "user" else d["source"]
    console.print(f"{escape(d['caption'])} [dim]({escape(str(source))})[/]")


def captions_command(
    ctx: typer.Context,
    project: str,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
    sample: Annotated[int | None, typer.Option("--sample", help="show this photo's caption")] = None,
    set_text: Annotated[
        str | None, typer.Option("--set", help="with --sample: write your caption ('' removes it)")
    ] = None,
) -> None:
    """Caption the project's photos that have no caption of the configured model (captions.model:
    BLIP base by default, downloaded on first use unless offline), or with --sample show one
    photo's caption and with --set write your own (kept over every model's)."""
    from vistudio.services import captions

    studio = state(ctx).studio()
    if sample is not None:
        d = (
            captions.set_caption(studio, sample, set_text)
            if set_text is not None
            else captions.captions_of(studio, sample)
        )
        emit(ctx, d, _render_one)
        return
    job = captions.start_captions(studio, project=project)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued captions job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "captions job")
    result = final.get("result") or {}

    def render(d: dict[str, Any]) -> None:
        r = d["result"]
        console.print(
            f"{plural(r.get('captioned', 0), 'photo')} captioned with {escape(str(r.get('model')))}"
            + (f"; {plural(len(r['skipped']), 'photo')} could not be read" if r.get("skipped") else "")
        )

    emit(ctx, {"job": final, "result": result}, render)


def register(app: typer.Typer) -> None:
    app.command("captions")(captions_command)
