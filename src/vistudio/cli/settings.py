"""``vistudio settings``: the effective settings and where each comes from; ``set`` and ``unset``
save run-time settings in the workspace (the environment still wins)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table

# services are imported inside each command: `vistudio --help` does not need the database layer

app = typer.Typer(
    help="Show the settings and where each comes from (env, workspace, default); change run-time ones.",
    invoke_without_command=True,
)
SOURCE_STYLE = {"env": "yellow", "workspace": "green", "default": "dim"}


def _value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, list):
        return "\n".join(str(x) for x in v) or "—"
    return str(v).lower() if isinstance(v, bool) else str(v)


def _render(data: dict[str, Any]) -> None:
    t = table(key_column("key"), "value", "source", "note")
    for item in data["items"]:
        if item["set_by"]:
            note = f"{item['set_by']} wins"
        elif not item["runtime"]:
            note = "read at start"
        else:
            note = ""
        style = SOURCE_STYLE.get(item["source"], "")
        t.add_row(item["key"], escape(_value(item["value"])), f"[{style}]{item['source']}[/]", escape(note))
    console.print(t)
    w = data["weights"]
    downloads = "on" if w["downloads"] else f"off ({w['offline_because']})"
    console.print(
        f"model weight downloads: {downloads}; caches: {w['locations']['torch_hub']}, "
        f"{w['locations']['huggingface']}",
        soft_wrap=True,
    )


@app.callback()
def show(ctx: typer.Context) -> None:
    """Without a command: list every setting with its value and source."""
    if ctx.invoked_subcommand is not None:
        return
    from vistudio.services import settings as service

    emit(ctx, service.list_settings(state(ctx).studio()), _render)


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="a setting key, e.g. offline, embed.model, import_roots")],
    values: Annotated[list[str], typer.Argument(help="the value (several for import_roots)")],
) -> None:
    """Save a run-time setting in the workspace (refused when the environment sets it)."""
    from vistudio.services import settings as service

    info = service.BY_KEY.get(key)
    value: Any = values if info is not None and info.kind == "paths" else " ".join(values)
    data = service.update_settings(state(ctx).studio(), values={key: value}, local=True)
    item = next(i for i in data["items"] if i["key"] == key)
    emit(
        ctx,
        {"setting": item},
        lambda d: console.print(f"{key} = {escape(_value(item['value']))} (workspace)"),
    )


@app.command("unset")
def unset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="the setting whose workspace value to remove")],
) -> None:
    """Remove the workspace's value: the environment or the default applies again."""
    from vistudio.services import settings as service

    data = service.unset_setting(state(ctx).studio(), key=key)
    item = next(i for i in data["items"] if i["key"] == key)
    emit(
        ctx,
        {"setting": item},
        lambda d: console.print(f"{key} = {escape(_value(item['value']))} ({item['source']})"),
    )
