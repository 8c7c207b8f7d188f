"""``vistudio users``, ``tokens``, ``project share`` / ``projects share`` and ``audit``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from factories import cli
from vistudio.config import Settings
from vistudio.services import users
from vistudio.studio import open_studio


def test_users_tokens_share_and_audit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    assert cli(capsys, ws, "project", "create", "Birds", "--task", "library")[0] == 0
    code, out = cli(capsys, ws, "users", "add", "ed", "--role", "editor")
    assert code == 1 and "first user must be an admin" in out["error"]["message"]
    code, out = cli(capsys, ws, "users", "add", "root", "--role", "admin")
    assert code == 0 and out["user"]["owns"] == ["Birds"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    code, out = cli(capsys, ws, "users", "add", "ed", "--role", "editor", "--password-stdin")
    assert code == 0 and out["user"]["has_password"] is True
    code, out = cli(capsys, ws, "users", "add", "ed", "--role", "viewer")
    assert code == 1 and out["error"]["code"] == "conflict"
    code, out = cli(capsys, ws, "users", "add", "x", "--role", "king")
    assert code == 1 and out["error"]["code"] == "invalid_input"
    # roles change in place; the last admin stays one
    code, out = cli(capsys, ws, "users", "role", "root", "editor")
    assert code == 1 and out["error"]["code"] == "conflict" and "last admin" in out["error"]["message"]
    assert cli(capsys, ws, "users", "role", "ed", "admin")[1]["user"]["role"] == "admin"
    assert cli(capsys, ws, "users", "role", "ed", "king")[1]["error"]["code"] == "invalid_input"
    assert cli(capsys, ws, "users", "role", "nobody", "viewer")[1]["error"]["code"] == "not_found"
    assert cli(capsys, ws, "users", "role", "ed", "editor")[1]["user"]["role"] == "editor"

    code, made = cli(capsys, ws, "tokens", "create", "ed", "--expires", "30")
    assert code == 0 and made["token"].startswith("vst_") and made["expires_at"]
    # the CLI makes tokens with any expiry, or none (only a token-signed API request is bound)
    code, forever = cli(capsys, ws, "tokens", "create", "ed")
    assert code == 0 and forever["expires_at"] is None and forever["expiry_capped"] is False
    assert made["expiry_capped"] is False
    studio = open_studio(Settings(home=ws))
    try:
        assert users.principal_for_token(studio, made["token"]) is not None
        code, out = cli(capsys, ws, "tokens", "list")
        assert code == 0 and out["items"][0]["state"] == "active" and "token" not in out["items"][0]
        assert cli(capsys, ws, "tokens", "revoke", str(made["id"]))[1]["token"]["state"] == "revoked"
        assert users.principal_for_token(studio, made["token"]) is None
    finally:
        studio.close()

    code, out = cli(capsys, ws, "projects", "share", "Birds", "ed", "--role", "editor")
    assert code == 0 and out == {"project": "Birds", "user": "ed", "role": "editor"}
    code, out = cli(capsys, ws, "project", "members", "Birds")
    assert out["items"] == [{"user": "ed", "role": "editor"}, {"user": "root", "role": "owner"}]
    code, out = cli(capsys, ws, "project", "share", "Nope", "ed")
    assert code == 1 and out["error"]["code"] == "not_found"

    code, out = cli(capsys, ws, "project", "create", "Eds", "--task", "library", "--owner", "ed")
    assert code == 0
    assert cli(capsys, ws, "project", "members", "Eds")[1]["items"] == [{"user": "ed", "role": "owner"}]
    code, out = cli(capsys, ws, "project", "create", "X", "--owner", "nobody")
    assert code == 1 and out["error"]["code"] == "not_found"

    code, out = cli(capsys, ws, "users", "remove", "root")
    assert code == 1 and "last admin" in out["error"]["message"]
    monkeypatch.setattr("sys.stdin", io.StringIO("another password\n"))
    assert cli(capsys, ws, "users", "passwd", "ed")[0] == 0

    code, out = cli(capsys, ws, "audit")
    actions = [(e["action"], e["target"]) for e in reversed(out["items"])]
    assert actions == [
        ("user.add", "root"),
        ("user.add", "ed"),
        ("user.role", "ed"),
        ("user.role", "ed"),
        ("token.create", "ed"),
        ("token.create", "ed"),
        ("token.revoke", "ed"),
        ("project.share", "Birds"),
        ("user.password", "ed"),
    ]
    assert all(e["actor"] == "cli" for e in out["items"])
    assert made["token"] not in str(out)  # no secret in the log
