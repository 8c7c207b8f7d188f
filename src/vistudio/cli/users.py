"""``vistudio users``, ``vistudio tokens`` and ``vistudio audit``: who may use the server.

The CLI works on the workspace directly (whoever can read its database is its owner): it needs
no token, and its actions are recorded in the audit log as "cli".
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from vistudio.cli.output import console, emit, key_column, state, table
from vistudio.errors import InvalidInput

users_app = typer.Typer(help="Users of the server (admin, editor, viewer).", no_args_is_help=True)
tokens_app = typer.Typer(help="Per-user API tokens: create (shown once), list, revoke.", no_args_is_help=True)


def _password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidInput("--password-stdin: no password on standard input")
    return password


def _users_table(items: list[dict[str, Any]]) -> None:
    if not items:
        console.print(
            "no users: the server runs in local mode (add one with [bold]vistudio users add NAME --role admin[/])"
        )
        return
    t = table(key_column("name"), "role", "password", "created")
    for u in items:
        t.add_row(
            escape(u["name"]), u["role"], "yes" if u["has_password"] else "no", (u["created_at"] or "")[:19]
        )
    console.print(t)


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    role: Annotated[str, typer.Option(help="admin | editor | viewer")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read a password for web sign-in from standard input")
    ] = False,
) -> None:
    """Add a user. The first one must be an admin; it becomes the owner of the existing projects."""
    from vistudio.services import users

    out = {
        "user": users.add_user(state(ctx).studio(), name=name, role=role, password=_password(password_stdin))
    }

    def show(d: dict[str, Any]) -> None:
        u = d["user"]
        console.print(f"added user [bold]{escape(u['name'])}[/] ({u['role']})")
        if u["owns"]:
            console.print(f"{escape(u['name'])} now owns the {len(u['owns'])} existing project(s)")

    emit(ctx, out, show)


@users_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List users."""
    from vistudio.services import users

    emit(ctx, users.list_users(state(ctx).studio()), lambda d: _users_table(d["items"]))


@users_app.command("passwd")
def passwd(ctx: typer.Context, name: str) -> None:
    """Set a user's web sign-in password, read from standard input (ends their web sessions)."""
    from vistudio.services import users

    password = _password(True) or ""
    out = {"user": users.set_password(state(ctx).studio(), name=name, password=password)}
    emit(ctx, out, lambda d: console.print(f"password set for [bold]{escape(d['user']['name'])}[/]"))


@users_app.command("role")
def role(
    ctx: typer.Context, name: str, new_role: Annotated[str, typer.Argument(help="admin | editor | viewer")]
) -> None:
    """Change a user's role (from their next request on; the last admin stays one)."""
    from vistudio.services import users

    out = {"user": users.set_role(state(ctx).studio(), name=name, role=new_role)}
    emit(
        ctx, out, lambda d: console.print(f"[bold]{escape(d['user']['name'])}[/] is now {d['user']['role']}")
    )


@users_app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Remove a user, with their tokens, sessions and memberships."""
    from vistudio.services import users

    emit(
        ctx,
        users.remove_user(state(ctx).studio(), name=name),
        lambda d: console.print(f"removed {escape(d['removed'])}"),
    )


@tokens_app.command("create")
def create_token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the user the token acts as")],
    expires: Annotated[float | None, typer.Option("--expires", help="days until it expires")] = None,
) -> None:
    """Create an API token for a user: printed once, stored only as its sha256."""
    from vistudio.services import users

    out = users.create_token(state(ctx).studio(), user=name, expires_days=expires)

    def show(d: dict[str, Any]) -> None:
        console.print(d["token"], markup=False, highlight=False)
        console.print(
            f"token {d['id']} for {escape(d['user'])}; it is not shown again "
            f"(revoke with [bold]vistudio tokens revoke {d['id']}[/])",
            style="dim",
        )

    emit(ctx, out, show)


@tokens_app.command("list")
def list_tokens(
    ctx: typer.Context, user: Annotated[str | None, typer.Option(help="only this user's")] = None
) -> None:
    """List tokens (never their secrets)."""
    from vistudio.services import users

    def show(d: dict[str, Any]) -> None:
        t = table(key_column("id"), "user", "prefix", "state", "expires", "last used")
        for tok in d["items"]:
            t.add_row(
                str(tok["id"]),
                escape(tok["user"]),
                tok["prefix"] + "…",
                tok["state"],
                (tok["expires_at"] or "never")[:19],
                (tok["last_used_at"] or "never")[:19],
            )
        console.print(t)

    emit(ctx, users.list_tokens(state(ctx).studio(), user=user), show)


@tokens_app.command("revoke")
def revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke a token: refused from the next request on."""
    from vistudio.services import users

    out = {"token": users.revoke_token(state(ctx).studio(), token_id=token_id)}
    emit(
        ctx, out, lambda d: console.print(f"revoked token {d['token']['id']} of {escape(d['token']['user'])}")
    )


def audit(
    ctx: typer.Context,
    offset: int = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
) -> None:
    """The audit log of admin actions (users, tokens, shares), newest first."""
    from vistudio.services import users

    def show(d: dict[str, Any]) -> None:
        t = table(key_column("at"), "actor", "action", "target", "details")
        for e in d["items"]:
            details = ", ".join(f"{k}={v}" for k, v in e["details"].items())
            t.add_row(e["at"][:19], escape(e["actor"]), e["action"], escape(e["target"]), escape(details))
        console.print(t)

    emit(ctx, users.list_audit(state(ctx).studio(), offset=offset, limit=limit), show)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    app.command("audit")(audit)
