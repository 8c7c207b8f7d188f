from __future__ import annotations

from typing import Annotated, Any

import typer

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.errors import BadRequest

app = typer.Typer(help="Stratified, immutable train/val/test splits.", no_args_is_help=True)


def _render(d: dict[str, Any]) -> None:
    sp = d["split"]
    badge = "🔒 locked" if sp["locked"] else "preview (not saved)"
    classes = sorted({c for sub in sp["subsets"].values() for c in sub["per_class"]})
    t = table(
        key_column("class"), *sp["subsets"].keys(), title=f"split {sp['name']} — {badge} — seed {sp['seed']}"
    )
    for c in classes:
        t.add_row(c, *(str(sub["per_class"].get(c, 0)) for sub in sp["subsets"].values()))
    t.add_row("[bold]total", *(f"[bold]{sub['total']}" for sub in sp["subsets"].values()))
    console.print(t)


@app.command("create")
def create(
    ctx: typer.Context,
    project: str,
    name: Annotated[str, typer.Option("--name", "-n")] = "default",
    ratios: Annotated[str, typer.Option(help="train,val[,test]")] = "0.8,0.1,0.1",
    seed: int = 42,
    preview: Annotated[
        bool, typer.Option("--preview", help="show the class distribution without saving")
    ] = False,
) -> None:
    """Create a split (or preview it). Saved splits never change."""
    from vistudio.services import splits

    studio = state(ctx).studio()
    fn = splits.preview_split if preview else splits.create_split
    emit(ctx, {"split": fn(studio, project=project, name=name, ratios=ratios, seed=seed)}, _render)


@app.command("list")
def list_(ctx: typer.Context, project: str) -> None:
    """List a project's splits."""
    from vistudio.services import splits

    def render(d: dict[str, Any]) -> None:
        t = table(key_column("name"), "ratios", "seed", "total", "locked", "created")
        for sp in d["items"]:
            t.add_row(
                sp["name"],
                ",".join(f"{v:g}" for v in sp["ratios"].values()),
                str(sp["seed"]),
                str(sp["total"]),
                "🔒",
                sp["created_at"][:19],
            )
        console.print(t)

    emit(ctx, splits.list_splits(state(ctx).studio(), project=project), render)


@app.command("show")
def show(ctx: typer.Context, project: str, name: str) -> None:
    """Show a split's per-class counts."""
    from vistudio.services import splits

    emit(ctx, {"split": splits.get_split(state(ctx).studio(), project=project, name=name)}, _render)


@app.command("delete")
def delete(
    ctx: typer.Context, project: str, name: str, yes: Annotated[bool, typer.Option("--yes", "-y")] = False
) -> None:
    """Delete a split (its samples stay)."""
    from vistudio.services import splits

    if not yes and (state(ctx).json or not typer.confirm(f"Delete split {name!r}?")):
        raise BadRequest("not deleted: confirm with --yes")
    emit(
        ctx,
        splits.delete_split(state(ctx).studio(), project=project, name=name),
        lambda d: console.print(f"deleted split {d['deleted']}"),
    )
