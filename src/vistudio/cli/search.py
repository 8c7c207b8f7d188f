"""``vistudio embed``, ``vistudio embeddings`` and ``vistudio search``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, err_console, key_column, state, table, wait_for_success
from vistudio.errors import InvalidInput, NotFound, TooLarge
from vistudio.text import plural


def _model_line(m: dict[str, Any] | None) -> str:
    if not m:
        return "no model"
    weights = m.get("pretrained") or (Path(m["checkpoint"]).name if m.get("checkpoint") else "?")
    return f"{m['name']} / {weights} ({m['dim']}-d, {m['device']})"


def _warn_untrained(m: dict[str, Any] | None) -> None:
    if m and m.get("untrained"):
        err_console.print(f"[bold yellow]warning:[/] {m['warning']}")


def embed(
    ctx: typer.Context,
    project: str,
    model: Annotated[
        str | None, typer.Option("--model", help="open_clip architecture (default: VISTUDIO_EMBED__MODEL)")
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained", help="open_clip pretrained tag; 'none' = untrained weights (benchmarks)"
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="a local weights file (torch.load weights_only)")
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
) -> None:
    """Embed a project's images with a CLIP model (only those not embedded with it yet)."""
    from vistudio.services import embeddings

    if pretrained and checkpoint:
        raise typer.BadParameter("give --pretrained or --checkpoint, not both")
    studio = state(ctx).studio()
    job = embeddings.start_embedding(
        studio, project=project, model=model, pretrained=pretrained, checkpoint=checkpoint
    )
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued embedding job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "embedding")
    report = (final.get("result") or {}).get("report") or {}

    def render(d: dict[str, Any]) -> None:
        r = d["report"]
        console.print(
            f"[bold]{r['embedded']}[/] embedded, {r['skipped']} already embedded, [red]{r['failed']}[/] failed"
            f" — {_model_line(r['model'])}; {r['pending']} pending"
        )
        for f in r.get("failed_items", [])[:20]:
            console.print(f"  sample {f['sample_id']}: {f['reason']}")
        if r.get("replaced"):
            console.print(f"searches now use {r['model']['name']} (replacing {r['replaced']['name']})")
        _warn_untrained(r["model"])

    emit(ctx, {"job": final, "report": report}, render)


def status(ctx: typer.Context, project: str) -> None:
    """A project's embedding sets, the model its searches use, and the configured model."""
    from vistudio.services import embeddings

    out = embeddings.embedding_status(state(ctx).studio(), project=project)

    def render(d: dict[str, Any]) -> None:
        t = table(
            "model", "status", "embedded", "pending", "failed", "active", title=plural(d["samples"], "sample")
        )
        for x in d["sets"]:
            t.add_row(
                _model_line(x["model"]),
                x["status"],
                str(x["embedded"]),
                str(x["pending"]),
                str(x["failed"]),
                "yes" if x["active"] else "",
            )
        console.print(t)
        c = d["configured"]
        line = f"configured: {c.get('name')} / {c.get('checkpoint') or c.get('pretrained')}"
        console.print(line + ("" if c["available"] else f" — [red]unavailable[/]: {c['error']['message']}"))

    emit(ctx, out, render)


def search_cmd(
    ctx: typer.Context,
    project: str,
    text: Annotated[str | None, typer.Option("--text", help="find images matching this text")] = None,
    query: Annotated[
        str | None,
        typer.Option(
            "--query",
            "-q",
            help='the search box syntax: words, "phrases" and key:value filters (person, tag, label, '
            "camera, lens, place, name, after, before, on; -key:value excludes), e.g. "
            "'beach person:\"Alice\" after:2023-05 -tag:hidden'; full text and CLIP fused",
        ),
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", help="find images similar to this file")] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", help="find images similar to this sample id")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="how many results")] = 20,
    offset: Annotated[int, typer.Option("--offset", help="skip the first N results")] = 0,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="KEY=VALUE, repeatable: label, tag, from, to, year, name, person"),
    ] = None,
    person: Annotated[
        list[str] | None,
        typer.Option(
            "--person", help="only photos of this person (an id or a name; repeat: people together)"
        ),
    ] = None,
) -> None:
    """Search a project: --query in the search box syntax (full text and CLIP fused, with
    filters), or by text, an image file or a sample (CLIP); --person alone lists the photos of that
    person (or of those people together)."""
    from vistudio.services import search

    studio = state(ctx).studio()
    if person and text is None and image is None and sample is None and query is None:
        from vistudio.services import samples

        found = samples.list_samples(
            studio, project=project, person=person, offset=offset, limit=k, sort="taken_at"
        )
        items = [
            {"sample_id": x["id"], "name": x["name"], "score": None, "why": f"shows {' and '.join(person)}"}
            for x in found["items"]
        ]
        emit(
            ctx,
            {"items": items, "total": found["total"], "offset": offset},
            lambda d: console.print(
                "\n".join(f"{i['sample_id']:>8}  {escape(i['name'])}" for i in d["items"]) or "no photos"
            ),
        )
        return
    if query is not None:
        if text is not None:
            raise typer.BadParameter("give --query or --text, not both (--query takes words too)")
        if image is not None and sample is not None:
            raise typer.BadParameter("give --image or --sample, not both")
    elif sum(x is not None for x in (text, image, sample)) != 1:
        raise typer.BadParameter("give exactly one of --query, --text, --image, --sample (or --person alone)")
    data = None
    if image is not None:
        limit = studio.settings.embed.max_upload_bytes
        try:
            size = image.stat().st_size
            if size > limit:
                raise TooLarge(
                    f"{image} is larger than {limit} bytes (setting VISTUDIO_EMBED__MAX_UPLOAD_BYTES)"
                )
            data = image.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"image not found: {image}") from None
        except IsADirectoryError:
            raise InvalidInput(f"{image} is a folder, not an image") from None
    out = search.search(
        studio,
        project=project,
        query=query,
        text=text,
        sample_id=sample,
        image=data,
        image_name=image.name if image else None,
        k=k,
        offset=offset,
        filters={**search.parse_filter_args(filters), **({"person": person} if person else {})},
    )

    def render(d: dict[str, Any]) -> None:
        title = _model_line(d["model"]) if "mode" not in d else f"{d['mode']} — {_model_line(d['model'])}"
        t = table("#", key_column("sample"), "score", "name", "why", title=title)
        for i, item in enumerate(d["items"], start=d["offset"] + 1):
            t.add_row(
                str(i),
                str(item["sample_id"]),
                "" if item["score"] is None else f"{item['score']:.3f}",
                escape(item["name"]),
                escape(item["why"]),
            )
        console.print(t)
        if d.get("matched") is not None:
            console.print(f"{d['matched']} matching")
        console.print(f"{d['embedded']} embedded, {d['pending']} pending")
        for n in d["notices"]:
            err_console.print(f"[yellow]note:[/] {escape(n['message'])}")
        _warn_untrained(d["model"])

    emit(ctx, out, render)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("embed")(embed)
    app.command("embeddings")(status)
    app.command("search")(search_cmd)
