"""``vistudio serve`` and ``vistudio demo``."""

from __future__ import annotations

from typing import Annotated

import typer

from vistudio.cli.output import console, emit, state
from vistudio.errors import BadRequest

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="address to bind; anything but loopback needs users or VISTUDIO_API_TOKEN")
    ] = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[
        int | None, typer.Option(help="embedded job workers (default: setting embedded_workers)")
    ] = None,
) -> None:
    """Serve the REST API and the web GUI, with embedded job workers."""
    import uvicorn

    from vistudio.api.app import create_app

    studio = state(ctx).studio()
    from vistudio.services.users import users_exist

    # with users every request needs a user's token or session (docs/security.md)
    if host not in LOOPBACK and not studio.settings.api_token and not users_exist(studio):
        raise BadRequest(
            f"binding {host} exposes the workspace: add a user (vistudio users add NAME --role admin) "
            "or set VISTUDIO_API_TOKEN first"
        )
    app = create_app(studio, workers=studio.settings.embedded_workers if workers is None else workers)
    console.print(f"vistudio serving {studio.home} on http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def demo(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if the demo projects exist")] = False,
) -> None:
    """Create the demo projects: scikit-learn's digits (classification) and a photo library of
    scikit-image's sample photos, a folder in the workspace scanned in place. Offline; a second
    run changes nothing."""
    from vistudio.services.demo import create_demo

    out = create_demo(state(ctx).studio(), force=force)
    emit(
        ctx,
        out,
        lambda d: console.print(
            f"demo ready: {', '.join(d['projects'])}"
            + (" (already there)" if not d["created"] else "")
            + f"\nthe photo library's folder: {d['folder']}"
        ),
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("demo")(demo)
