"""The Access page (web/pages/access.py): tokens, users and the audit log through plain HTML forms
signed with the session's CSRF token; the first admin from local mode; bad input kept on the page."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from factories import web_sign_in
from vistudio.api.app import create_app
from vistudio.services import users
from vistudio.studio import Studio


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


@pytest.fixture
def signed(studio: Studio) -> Iterator[tuple[TestClient, TestClient, str, str]]:
    """(root's client, edith's client, root's CSRF token, edith's): an admin and an editor, signed in."""
    users.add_user(studio, name="root", role="admin", password="root password")
    users.add_user(studio, name="edith", role="editor", password="edith password")
    app = create_app(studio)
    with TestClient(app) as root, TestClient(app) as edith:
        yield (
            root,
            edith,
            web_sign_in(root, "root", "root password"),
            web_sign_in(edith, "edith", "edith password"),
        )


def _secret(page: str) -> str:
    found = re.search(r"<code[^>]*data-secret>(vst_[A-Za-z0-9_\-]+)</code>", page)
    assert found, "the new token's secret is on the page"
    return found.group(1)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_local_mode_offers_the_first_admin_then_asks_everyone_to_sign_in(
    client: TestClient, studio: Studio
) -> None:
    page = client.get("/access")
    assert page.status_code == 200 and 'id="first-admin"' in page.text and 'id="tokens"' not in page.text
    # a token needs a user: said plainly, nothing made
    r = client.post("/access/tokens", data={"expires_days": "3"})
    assert r.status_code == 422 and "no users exist yet" in r.text and users.list_tokens(studio)["total"] == 0
    # a bad name is refused, what was typed kept (the password never echoed)
    r = client.post("/access/users", data={"name": "../root", "password": "long enough pw"})
    assert r.status_code == 422 and "a user name is 1-100 letters" in r.text
    assert 'value="../root"' in r.text and "long enough pw" not in r.text
    r = client.post("/access/users", data={"name": "root"})
    assert r.status_code == 422 and "the first admin needs a password" in r.text
    r = client.post("/access/users", data={"name": "root", "password": "short"})
    assert r.status_code == 422 and "at least 8 characters" in r.text and not users.users_exist(studio)
    # the first user is an admin whatever the form says, and the browser goes to sign in
    r = client.post(
        "/access/users",
        data={"name": "root", "role": "viewer", "password": "root password"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/access"
    assert [(u["name"], u["role"]) for u in users.list_users(studio)["items"]] == [("root", "admin")]
    r = client.get("/access", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/access"


def test_a_token_made_on_the_page_works_until_it_is_revoked(
    signed: tuple[TestClient, TestClient, str, str], studio: Studio
) -> None:
    _, edith, _, csrf = signed
    page = edith.get("/access")
    assert page.status_code == 200 and "No tokens yet." in page.text
    assert 'id="users"' not in page.text and 'id="audit"' not in page.text  # admins only
    # a cookie-signed form without the CSRF token is refused, nothing made
    r = edith.post("/access/tokens", data={"expires_days": "30"})
    assert r.status_code == 403 and users.list_tokens(studio)["total"] == 0
    r = edith.post("/access/tokens", data={"expires_days": "30", "csrf_token": csrf})
    assert r.status_code == 201 and "Copy it now" in r.text
    secret = _secret(r.text)
    assert edith.get("/api/v1/users/me", headers=_bearer(secret)).json()["user"]["name"] == "edith"
    (token,) = users.list_tokens(studio, user="edith")["items"]
    assert token["state"] == "active" and token["expires_at"] is not None
    # shown once: the page does not show it again
    assert secret not in edith.get("/access").text and f"{token['prefix']}…" in edith.get("/access").text
    r = edith.post(f"/access/tokens/{token['id']}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert f"Token {token['id']} revoked." in edith.get(r.headers["location"]).text
    # the message is a fixed sentence: a crafted link cannot make the page say something else
    crafted = edith.get("/access", params={"done": "revoked", "what": "1. Call +1 555 0100 now"}).text
    assert "Call" not in crafted and 'id="access-done"' not in crafted
    assert 'id="access-done"' not in edith.get("/access", params={"done": "Your account is locked"}).text
    assert edith.get("/api/v1/users/me", headers=_bearer(secret)).status_code == 401


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("abc", "a number of days"),
        ("0", "1 to 3650"),
        ("-5", "1 to 3650"),
        ("99999", "1 to 3650"),
        ("nan", "1 to 3650"),
        ("1" * 21, ""),  # longer than the form allows: refused before the route
    ],
)
def test_bad_expiries_are_refused_on_the_page(
    signed: tuple[TestClient, TestClient, str, str], studio: Studio, days: str, message: str
) -> None:
    _, edith, _, csrf = signed
    r = edith.post("/access/tokens", data={"expires_days": days, "csrf_token": csrf})
    assert r.status_code == 422 and message in r.text
    assert users.list_tokens(studio)["total"] == 0


def test_an_editor_manages_its_own_tokens_only(
    signed: tuple[TestClient, TestClient, str, str], studio: Studio
) -> None:
    _, edith, _, csrf = signed
    theirs = users.create_token(studio, user="root")
    r = edith.post("/access/tokens", data={"user": "root", "csrf_token": csrf})
    assert r.status_code == 422 and "only an admin" in r.text
    assert users.list_tokens(studio, user="root")["total"] == 1
    page = edith.get("/access").text
    assert theirs["prefix"] not in page  # another user's tokens are not listed
    r = edith.post(f"/access/tokens/{theirs['id']}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 404 and f"token {theirs['id']} not found" in r.text
    assert users.list_tokens(studio, user="root")["items"][0]["state"] == "active"
    assert edith.post("/access/users", data={"name": "x", "csrf_token": csrf}).status_code == 403
    assert edith.post("/access/users/root/remove", data={"csrf_token": csrf}).status_code == 403
    assert [u["name"] for u in users.list_users(studio)["items"]] == ["edith", "root"]


def test_an_admin_adds_and_removes_users_and_reads_the_audit_log(
    signed: tuple[TestClient, TestClient, str, str], studio: Studio
) -> None:
    root, edith, csrf, _ = signed
    page = root.get("/access").text
    assert 'data-user="edith"' in page and 'data-user="root"' in page and 'id="audit"' in page
    # a token for another user
    r = root.post("/access/tokens", data={"user": "edith", "csrf_token": csrf})
    assert r.status_code == 201 and "never expires" in r.text
    assert root.get("/api/v1/users/me", headers=_bearer(_secret(r.text))).json()["user"]["name"] == "edith"
    long_name = "v" * 100
    r = root.post(
        "/access/users",
        data={"name": long_name, "role": "viewer", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert f'data-user="{long_name}"' in root.get("/access").text
    r = root.post("/access/users", data={"name": "edith", "role": "viewer", "csrf_token": csrf})
    assert r.status_code == 409 and "already exists" in html.unescape(r.text)
    r = root.post("/access/users", data={"name": "vic", "role": "owner", "csrf_token": csrf})
    assert r.status_code == 422 and 'value="vic"' in r.text
    assert root.post("/access/users", data={"name": "v" * 101, "csrf_token": csrf}).status_code == 422
    # a role changes in place and applies at edith's next request; the last admin stays one
    assert edith.get("/access").text.count('id="users"') == 0
    r = root.post(
        "/access/users/edith/role", data={"role": "admin", "csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and "User edith&#39;s role changed." in root.get(r.headers["location"]).text
    assert 'id="users"' in edith.get("/access").text  # an admin now, without signing in again
    r = root.post(
        "/access/users/edith/role", data={"role": "viewer", "csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and users.list_users(studio)["items"][0]["role"] == "viewer"
    r = root.post("/access/users/edith/role", data={"role": "king", "csrf_token": csrf})
    assert r.status_code == 422 and "use one of: admin, editor, viewer" in r.text
    r = root.post("/access/users/root/role", data={"role": "viewer", "csrf_token": csrf})
    assert r.status_code == 409 and "the last admin" in r.text
    # removing: not oneself, an unknown user is a 404, edith's session and tokens end with her
    r = root.post("/access/users/root/remove", data={"csrf_token": csrf})
    assert r.status_code == 422 and "cannot remove yourself" in r.text
    r = root.post("/access/users/nobody/remove", data={"csrf_token": csrf})
    assert r.status_code == 404
    r = root.post("/access/users/edith/remove", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert edith.get("/access", follow_redirects=False).status_code == 303  # signed out
    assert users.list_tokens(studio, user="edith")["total"] == 0
    audit = root.get("/access").text
    for action in ("user.add", "token.create", "user.role", "user.remove"):
        assert f"<code>{action}</code>" in audit


def test_a_role_changed_over_the_api_applies_at_the_next_request(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    users.add_user(studio, name="vera", role="viewer")
    root, vera = (users.create_token(studio, user=n)["token"] for n in ("root", "vera"))
    body = {"name": "birds", "task": "library"}
    assert client.post("/api/v1/projects", json=body, headers=_bearer(vera)).status_code == 403
    r = client.patch("/api/v1/users/vera", json={"role": "editor"}, headers=_bearer(vera))
    assert r.status_code == 403  # admins only
    r = client.patch("/api/v1/users/vera", json={"role": "editor"}, headers=_bearer(root))
    assert r.status_code == 200 and r.json()["user"]["role"] == "editor"
    assert client.post("/api/v1/projects", json=body, headers=_bearer(vera)).status_code == 201
    r = client.patch("/api/v1/users/root", json={"role": "viewer"}, headers=_bearer(root))
    assert r.status_code == 409
    r = client.patch("/api/v1/users/nobody", json={"role": "viewer"}, headers=_bearer(root))
    assert r.status_code == 404
    r = client.patch("/api/v1/users/vera", json={"role": "x" * 17}, headers=_bearer(root))
    assert r.status_code == 422
