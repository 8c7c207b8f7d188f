"""``vistudio people``: the people of a project and every decision about them.

``vistudio people PROJECT`` lists them (the ``list`` command is implied); PERSON is an id or a name.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from vistudio.cli.output import console, emit, key_column, state, table, wait_for_success


class _ListByDefault(TyperGroup):
    """``people PROJECT`` means ``people list PROJECT``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_ListByDefault, no_args_is_help=True, help="People: faces grouped by who they are.")

Faces = Annotated[list[int], typer.Option("--face", "-f", help="a face id (repeatable)")]


def _name(p: dict[str, Any]) -> str:
    return p["name"] or f"(unnamed {p['id']})"


def _people(d: dict[str, Any]) -> None:
    t = table(key_column("id"), "name", "photos", "faces", title=f"{d['total']} people")
    for p in d["items"]:
        t.add_row(
            str(p["id"]),
            escape(_name(p)) + (" [dim](hidden)[/]" if p["hidden"] else ""),
            str(p["photos"]),
            str(p["faces"]),
        )
    console.print(t)


def _person(d: dict[str, Any]) -> None:
    p = d.get("person")
    if p is None:
        console.print("the person has no faces left")
        return
    console.print(
        f"[bold]{escape(_name(p))}[/] (id {p['id']}): {len(p['photos'])} photos, {len(p['faces'])} faces"
    )
    for photo in p["photos"][:50]:
        console.print(f"  {photo['sample_id']:>8}  {escape(photo['name'])}")


@app.command("list")
def list_people(
    ctx: typer.Context,
    project: str,
    hidden: Annotated[bool, typer.Option("--hidden", help="include hidden people")] = False,
    offset: int = 0,
    limit: int = 100,
) -> None:
    """The project's people: named first, then unnamed (most photos first)."""
    from vistudio.services import people

    emit(
        ctx,
        people.list_people(state(ctx).studio(), project=project, hidden=hidden, offset=offset, limit=limit),
        _people,
    )


@app.command("show")
def show(ctx: typer.Context, project: str, person: str) -> None:
    """One person: photos and faces."""
    from vistudio.services import people

    emit(ctx, people.get_person(state(ctx).studio(), project=project, person=person), _person)


@app.command("rename")
def rename(ctx: typer.Context, project: str, person: str, name: str) -> None:
    """Name a person ("" makes them unnamed again)."""
    from vistudio.services import people

    emit(ctx, people.rename(state(ctx).studio(), project=project, person=person, name=name), _person)


@app.command("merge")
def merge(ctx: typer.Context, project: str, into: str, others: list[str]) -> None:
    """Merge OTHERS into INTO (their faces move, they are deleted)."""
    from vistudio.services import people

    emit(ctx, people.merge(state(ctx).studio(), project=project, into=into, others=list(others)), _person)


@app.command("split")
def split(
    ctx: typer.Context,
    project: str,
    face: Faces,
    to: Annotated[str | None, typer.Option("--to", help="an existing person (default: a new one)")] = None,
) -> None:
    """Move faces into a new person (or --to another): they stay there through re-clusters."""
    from vistudio.services import people

    emit(ctx, people.move_faces(state(ctx).studio(), project=project, faces=face, to=to), _person)


@app.command("move")
def move(ctx: typer.Context, project: str, to: str, face: Faces) -> None:
    """Move faces to person TO by hand."""
    from vistudio.services import people

    emit(ctx, people.move_faces(state(ctx).studio(), project=project, faces=face, to=to), _person)


@app.command("not")
def not_person(ctx: typer.Context, project: str, person: str, face: Faces) -> None:
    """ "Not this person": take faces out of PERSON for good."""
    from vistudio.services import people

    emit(
        ctx, people.not_this_person(state(ctx).studio(), project=project, person=person, faces=face), _person
    )


@app.command("hide")
def hide(ctx: typer.Context, project: str, person: str) -> None:
    """Hide a person from the people list (their faces stay theirs)."""
    from vistudio.services import people

    emit(ctx, people.set_hidden(state(ctx).studio(), project=project, person=person, hidden=True), _person)


@app.command("unhide")
def unhide(ctx: typer.Context, project: str, person: str) -> None:
    """Show a hidden person again."""
    from vistudio.services import people

    emit(ctx, people.set_hidden(state(ctx).studio(), project=project, person=person, hidden=False), _person)


@app.command("cover")
def cover(ctx: typer.Context, project: str, person: str, face: int) -> None:
    """Choose the face shown for a person."""
    from vistudio.services import people

    emit(ctx, people.set_cover(state(ctx).studio(), project=project, person=person, face=face), _person)


@app.command("delete")
def delete(ctx: typer.Context, project: str, person: str) -> None:
    """Delete a person; their faces stay, unassigned."""
    from vistudio.services import people

    emit(
        ctx,
        people.delete_person(state(ctx).studio(), project=project, person=person),
        lambda d: console.print(f"deleted person {d['deleted']} ({d['faces_unassigned']} faces unassigned)"),
    )


@app.command("purge")
def purge(
    ctx: typer.Context,
    project: str,
    person: Annotated[
        str | None, typer.Argument(help="one person (default: every face of the project)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="confirm: this cannot be undone")] = False,
) -> None:
    """Remove a person and their faces, descriptors and crops — or, without PERSON, everything face
    recognition made in the project. Cannot be undone: needs --yes."""
    from vistudio.errors import InvalidInput
    from vistudio.services import people

    if not yes:
        raise InvalidInput("purging cannot be undone: add --yes")
    studio = state(ctx).studio()
    if person is None:
        emit(
            ctx,
            people.purge_project_faces(studio, project=project),
            lambda d: console.print(f"purged {d['faces']} faces and {d['people']} people"),
        )
    else:
        emit(
            ctx,
            people.purge_person(studio, project=project, person=person),
            lambda d: console.print(f"purged person {d['purged']} and {d['faces']} faces"),
        )


@app.command("review")
def review(ctx: typer.Context, project: str, limit: int = 50) -> None:
    """Unplaced faces with the person each most likely is (answer with `people answer`)."""
    from vistudio.services import people

    def render(d: dict[str, Any]) -> None:
        t = table(key_column("face"), "photo", "is it…", "distance", title=f"{d['total']} suggestions")
        for item in d["items"]:
            who = item["person"]["name"] or f"(unnamed {item['person']['id']})"
            t.add_row(
                str(item["face"]["id"]),
                str(item["face"]["sample_id"]),
                escape(who),
                f"{item['distance']:.3f}",
            )
        console.print(t)

    emit(ctx, people.review_queue(state(ctx).studio(), project=project, limit=limit), render)


@app.command("answer")
def answer(
    ctx: typer.Context,
    project: str,
    face: int,
    person: str,
    yes: Annotated[bool, typer.Option("--yes/--no", help="the face is (or is not) PERSON")],
) -> None:
    """Answer a suggestion: --yes places the face in PERSON, --no remembers it is not them."""
    from vistudio.services import people

    emit(
        ctx,
        people.answer(state(ctx).studio(), project=project, face=face, person=person, yes=yes),
        lambda d: console.print("done"),
    )


@app.command("undo")
def undo(ctx: typer.Context, project: str) -> None:
    """Undo the latest decision about people."""
    from vistudio.services import people

    emit(
        ctx,
        people.undo(state(ctx).studio(), project=project),
        lambda d: console.print(f"undone: {escape(d['undone']['summary'])}"),
    )


@app.command("redo")
def redo(ctx: typer.Context, project: str) -> None:
    """Redo the decision undone last."""
    from vistudio.services import people

    emit(
        ctx,
        people.redo(state(ctx).studio(), project=project),
        lambda d: console.print(f"redone: {escape(d['redone']['summary'])}"),
    )


@app.command("history")
def history(ctx: typer.Context, project: str, limit: int = 50) -> None:
    """The decisions about people, newest first."""
    from vistudio.services import people

    def render(d: dict[str, Any]) -> None:
        t = table(key_column("id"), "decision", "when", title=f"{d['total']} decisions")
        for c in d["items"]:
            t.add_row(
                str(c["id"]),
                escape(c["summary"]) + (" [dim](undone)[/]" if c["undone"] else ""),
                str(c["created_at"])[:19],
            )
        console.print(t)

    emit(ctx, people.list_changes(state(ctx).studio(), project=project, limit=limit), render)


@app.command("recluster")
def recluster(
    ctx: typer.Context,
    project: str,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="queue the job and print it")] = False,
) -> None:
    """Group the faces nobody decided about afresh; names and decisions stay."""
    from vistudio.services import people

    studio = state(ctx).studio()
    job = people.start_recluster(studio, project=project)
    if no_wait:
        emit(ctx, {"job": job}, lambda d: console.print(f"queued job {d['job']['id']}"))
        return
    final = wait_for_success(ctx, job["id"], "re-cluster")
    report = (final.get("result") or {}).get("report") or {}
    emit(
        ctx,
        {"job": final, "report": report},
        lambda d: console.print(
            f"{d['report'].get('new_people', 0)} new people, {d['report'].get('assigned', 0)} faces placed"
        ),
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="people")
