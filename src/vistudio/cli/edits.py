"""`vistudio tag`, `label`, `undo`, `redo`, `changes` and `version`: edit tags and labels with an undoable
history, and snapshot them as dataset versions."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.errors import BadRequest
from vistudio.text import plural


def _selection(
    ctx: typer.Context,
    project: str,
    sample_ids: list[int] | None,
    label: str | None,
    tag: str | None,
    every: bool,
    view: str | None = None,
) -> dict[str, Any]:
    chosen = [bool(sample_ids), label is not None or tag is not None, every, view is not None]
    if sum(chosen) != 1:
        raise BadRequest("name the samples: SAMPLE_ID..., or --label / --with-tag, or --view, or --all")
    if sample_ids:
        return {"sample_ids": sample_ids}
    if every:
        return {"all": True}
    if view is not None:
        from vistudio.services import views

        return {"filter": views.view_filter(state(ctx).studio(), project=project, name=view)}
    return {"filter": {k: v for k, v in (("label", label), ("tag", tag)) if v is not None}}


def _done(project: str) -> Any:
    def render(d: dict[str, Any]) -> None:
        if d.get("change_id") is None:
            console.print(f"nothing changed ({plural(d.get('selected', 0), 'sample')} already as asked)")
            return
        console.print(
            f"change {d['change_id']}: {plural(d['changed'], 'sample')} changed"
            f" — take it back with: vistudio undo {project} {d['change_id']}"
        )

    return render


def tag_command(
    ctx: typer.Context,
    project: str,
    sample_ids: Annotated[list[int] | None, typer.Argument(help="the samples (ids)")] = None,
    add: Annotated[list[str] | None, typer.Option("--add", help="tag to add (repeatable)")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="tag to remove (repeatable)")] = None,
    label: Annotated[str | None, typer.Option(help="every sample with this class")] = None,
    with_tag: Annotated[str | None, typer.Option("--with-tag", help="every sample with this tag")] = None,
    every: Annotated[bool, typer.Option("--all", help="every sample of the project")] = False,
    view: Annotated[str | None, typer.Option(help="every sample of this saved view")] = None,
) -> None:
    """Add or remove tags on samples, as one undoable change → {"changed", "change_id"}."""
    from vistudio.services import edits

    out = edits.edit_tags(
        state(ctx).studio(),
        project=project,
        selection=_selection(ctx, project, sample_ids, label, with_tag, every, view),
        add=add or [],
        remove=remove or [],
        actor=edits.cli_actor(),
    )
    emit(ctx, out, _done(project))


def label_command(
    ctx: typer.Context,
    project: str,
    sample_ids: Annotated[list[int] | None, typer.Argument(help="the samples (ids)")] = None,
    set_to: Annotated[
        list[str] | None, typer.Option("--set", help="the label the samples get (repeat for several)")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove every label")] = False,
    add: Annotated[list[str] | None, typer.Option("--add", help="label to add (repeatable)")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="label to remove (repeatable)")] = None,
    label: Annotated[str | None, typer.Option(help="every sample with this class")] = None,
    with_tag: Annotated[str | None, typer.Option("--with-tag", help="every sample with this tag")] = None,
    every: Annotated[bool, typer.Option("--all", help="every sample of the project")] = False,
    view: Annotated[str | None, typer.Option(help="every sample of this saved view")] = None,
    create_class: Annotated[
        bool, typer.Option("--create-class", help="create a class the project does not have")
    ] = False,
) -> None:
    """Change the ground-truth labels of samples, as one undoable change."""
    from vistudio.services import edits

    if clear and set_to:
        raise BadRequest("--clear and --set exclude each other")
    out = edits.edit_labels(
        state(ctx).studio(),
        project=project,
        selection=_selection(ctx, project, sample_ids, label, with_tag, every, view),
        set_to=[] if clear else set_to,
        add=add or [],
        remove=remove or [],
        create_classes=create_class,
        actor=edits.cli_actor(),
    )
    emit(ctx, out, _done(project))


def undo_command(
    ctx: typer.Context,
    project: str,
    change_id: Annotated[int | None, typer.Argument(help="default: the newest change in effect")] = None,
) -> None:
    """Take back a change (refused when its samples were changed since)."""
    from vistudio.services import edits

    out = edits.undo(state(ctx).studio(), project=project, change_id=change_id, actor=edits.cli_actor())
    emit(
        ctx,
        out,
        lambda d: console.print(f"undone: change {d['reverts']} (recorded as change {d['change_id']})"),
    )


def redo_command(
    ctx: typer.Context,
    project: str,
    change_id: Annotated[
        int | None, typer.Argument(help="the undone change; default: the newest undo")
    ] = None,
) -> None:
    """Take back an undo."""
    from vistudio.services import edits

    out = edits.redo(state(ctx).studio(), project=project, change_id=change_id, actor=edits.cli_actor())
    emit(ctx, out, lambda d: console.print(f"redone (recorded as change {d['change_id']})"))


def changes_command(
    ctx: typer.Context,
    project: str,
    sample: Annotated[int | None, typer.Option(help="only the changes of this sample")] = None,
    offset: int = 0,
    limit: int = 50,
) -> None:
    """The edit history of a project (or of one sample), newest first."""
    from vistudio.services import edits

    out = edits.history(state(ctx).studio(), project=project, sample_id=sample, offset=offset, limit=limit)

    def render(d: dict[str, Any]) -> None:
        t = table(
            key_column("change"),
            "when",
            "who",
            "kind",
            "what",
            "samples",
            "state",
            title=plural(d["total"], "change"),
        )
        for c in d["items"]:
            what = ", ".join(f"{k} {v}" for k, v in c["request"].items() if v not in ([], None))
            if "before" in c:
                what += f" ({', '.join(c['before']) or '—'} → {', '.join(c['after']) or '—'})"
            t.add_row(
                str(c["change_id"]),
                c["created_at"][:19],
                c["actor"],
                c["kind"],
                what,
                str(c["changed"]),
                "undone" if c["undone"] else "",
            )
        console.print(t)

    emit(ctx, out, render)


version_app = typer.Typer(
    help="Dataset versions: immutable snapshots of samples and labels.", no_args_is_help=True
)


def _version_row(v: dict[str, Any]) -> tuple[str, ...]:
    top = ", ".join(f"{k} {n}" for k, n in sorted(v["classes"].items(), key=lambda kv: -kv[1])[:4])
    return (
        str(v["number"]),
        v["name"],
        str(v["samples"]),
        top or "—",
        "auto" if v["auto"] else v["actor"],
        v["created_at"][:19],
        "edited since" if v.get("edited_since") else "",
    )


@version_app.command("create")
def version_create(
    ctx: typer.Context, project: str, name: Annotated[str | None, typer.Option("--name", "-n")] = None
) -> None:
    """Snapshot the project's samples and labels as they are now."""
    from vistudio.services import edits, versions

    out = {
        "version": versions.create_version(
            state(ctx).studio(), project=project, name=name, actor=edits.cli_actor()
        )
    }
    emit(
        ctx,
        out,
        lambda d: console.print(
            f"version {d['version']['name']}: {plural(d['version']['samples'], 'sample')}"
        ),
    )


@version_app.command("list")
def version_list(ctx: typer.Context, project: str, offset: int = 0, limit: int = 100) -> None:
    """The project's versions, newest first."""
    from vistudio.services import versions

    out = versions.list_versions(state(ctx).studio(), project=project, offset=offset, limit=limit)

    def render(d: dict[str, Any]) -> None:
        t = table(
            key_column("#"),
            "name",
            "samples",
            "classes",
            "by",
            "created",
            "",
            title=plural(d["total"], "version"),
        )
        for v in d["items"]:
            t.add_row(*_version_row(v))
        console.print(t)

    emit(ctx, out, render)


@version_app.command("diff")
def version_diff(ctx: typer.Context, project: str, a: str, b: str) -> None:
    """What changed from version A to version B (names or numbers)."""
    from vistudio.services import versions

    out = versions.diff_versions(state(ctx).studio(), project=project, a=a, b=b)

    def render(d: dict[str, Any]) -> None:
        console.print(
            f"{d['a']['name']} → {d['b']['name']}: {d['added']} added, {d['removed']} removed, "
            f"{plural(d['labels_changed'], 'sample')} relabelled"
        )
        if d["per_class"]:
            t = table(key_column("class"), "gained", "lost")
            for c, n in d["per_class"].items():
                t.add_row(c, f"+{n['gained']}", f"−{n['lost']}")
            console.print(t)

    emit(ctx, out, render)


def label_errors_command(
    ctx: typer.Context,
    project: str,
    experiment: str,
    limit: int = 50,
    offset: int = 0,
    every: Annotated[
        bool, typer.Option("--all", help="every scored image, not only cleanlab's issues left to decide")
    ] = False,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="search again (after relabelling or retraining)")
    ] = False,
    folds: Annotated[int, typer.Option(help="cross-validation folds")] = 5,
    checkpoint: Annotated[str, typer.Option(help="best | last")] = "best",
) -> None:
    """Images whose label is likely wrong, most likely first, with the label the model suggests
    (confident learning on out-of-sample probabilities; the search runs first when needed)."""
    from vistudio.cli.output import wait_for_success
    from vistudio.services import label_errors

    studio = state(ctx).studio()
    found = label_errors.list_label_errors(studio, project=project, experiment=experiment, limit=1)
    if rerun or not found["scored"]:
        started = label_errors.start_label_errors(
            studio, project=project, experiment=experiment, checkpoint=checkpoint, folds=folds
        )
        wait_for_success(ctx, started["job"]["id"], "the search for label errors")
    out = label_errors.list_label_errors(
        studio,
        project=project,
        experiment=experiment,
        flagged_only=not every,
        undecided_only=not every,
        offset=offset,
        limit=limit,
    )

    def render(d: dict[str, Any]) -> None:
        t = table(
            key_column("sample"),
            "name",
            "given",
            "suggested",
            "score",
            title=f"{plural(d['total'], 'likely label error')} of {d['scored']:,} images",
        )
        for it in d["items"]:
            t.add_row(str(it["sample_id"]), it["name"], it["given"], it["suggested"], f"{it['score']:.3f}")
        console.print(t)
        console.print(
            "relabel one: vistudio label PROJECT SAMPLE_ID --set CLASS (undo: vistudio undo PROJECT)"
        )

    emit(ctx, out, render)


def map_command(
    ctx: typer.Context,
    project: str,
    experiment: Annotated[
        str | None, typer.Option(help="map this experiment's features (default: the CLIP embeddings)")
    ] = None,
    method: Annotated[str, typer.Option(help="auto | umap | pca")] = "auto",
    recompute: Annotated[bool, typer.Option("--recompute", help="compute it again")] = False,
    points: Annotated[bool, typer.Option("--points", help="include every point (ids, x, y, label)")] = False,
) -> None:
    """The project's embedding map (2-D, near images near each other); computed when needed."""
    from vistudio.cli.output import wait_for_success
    from vistudio.errors import NotFound
    from vistudio.services import embedding_map

    studio = state(ctx).studio()
    source = "experiment" if experiment else "embeddings"
    try:
        if recompute:
            raise NotFound("recompute")
        out = embedding_map.get_map(studio, project=project, source=source, experiment=experiment)
    except NotFound:
        started = embedding_map.start_map(
            studio, project=project, source=source, experiment=experiment, method=method
        )
        wait_for_success(ctx, started["job"]["id"], "the embedding map")
        out = embedding_map.get_map(studio, project=project, source=source, experiment=experiment)
    if not points:
        out = {k: v for k, v in out.items() if k not in ("ids", "x", "y", "label")}
    emit(
        ctx,
        {"map": out},
        lambda d: console.print(
            f"{plural(d['map']['points'], 'point')} by {d['map']['method']} of {d['map']['vectors']}"
            f" — see it on the project's Map page"
        ),
    )


view_app = typer.Typer(
    help="Saved views: a named filter and sort of a project's samples.", no_args_is_help=True
)


@view_app.command("save")
def view_save(
    ctx: typer.Context,
    project: str,
    name: str,
    query: Annotated[
        str, typer.Option(help="the Dataset page's query string, e.g. 'label=cat&tag=review&sort=taken_at'")
    ] = "",
    replace: Annotated[bool, typer.Option("--replace", help="replace a view of that name")] = False,
) -> None:
    """Save a filter and sort as a named view (its page: /projects/PROJECT?view=NAME)."""
    from urllib.parse import parse_qsl

    from vistudio.services import views

    params = dict(parse_qsl(query.lstrip("?"), keep_blank_values=False))
    out = {
        "view": views.save_view(
            state(ctx).studio(), project=project, name=name, query=params, replace=replace
        )
    }
    emit(ctx, out, lambda d: console.print(f"view {d['view']['name']} saved: {d['view']['url']}"))


@view_app.command("list")
def view_list(ctx: typer.Context, project: str) -> None:
    """The project's saved views."""
    from urllib.parse import urlencode

    from vistudio.services import views

    out = views.list_views(state(ctx).studio(), project=project)

    def render(d: dict[str, Any]) -> None:
        t = table(key_column("name"), "filter and sort", "page", title=plural(d["total"], "view"))
        for v in d["items"]:
            t.add_row(v["name"], urlencode(v["query"]) or "—", v["url"])
        console.print(t)

    emit(ctx, out, render)


@view_app.command("delete")
def view_delete(ctx: typer.Context, project: str, name: str) -> None:
    """Delete a saved view (the samples are not touched)."""
    from vistudio.services import views

    out = views.delete_view(state(ctx).studio(), project=project, name=name)
    emit(ctx, out, lambda d: console.print(f"view {d['deleted']} deleted"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("tag")(tag_command)
    app.command("label")(label_command)
    app.command("undo")(undo_command)
    app.command("redo")(redo_command)
    app.command("changes")(changes_command)
    app.add_typer(version_app, name="version")
    app.command("label-errors")(label_errors_command)
    app.command("map")(map_command)
    app.add_typer(view_app, name="view")
