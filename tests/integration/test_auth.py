"""Users, tokens, sessions, CSRF, sharing and the audit log (docs/security.md). The route-by-route
authorization matrix is in test_auth_matrix.py."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from factories import web_sign_in
from vistudio.api.app import create_app
from vistudio.db import utcnow
from vistudio.db.users import ApiToken, WebSession
from vistudio.errors import InvalidInput
from vistudio.services import access, projects, users
from vistudio.studio import Studio


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_local_mode_needs_no_token(client: TestClient, studio: Studio) -> None:
    """No user in the database: today's zero-setup behaviour, every route open on loopback."""
    assert client.post("/api/v1/projects", json={"name": "p", "task": "classification"}).status_code == 201
    assert client.get("/api/v1/projects").json()["total"] == 1
    assert client.get("/projects").status_code == 200
    assert client.get("/api/v1/users/me").json()["user"] == {"name": "local", "role": "admin", "via": "local"}
    # the Host check of local mode stays
    assert client.get("/api/v1/projects", headers={"host": "evil.example"}).status_code == 403


def test_first_user_is_an_admin_and_owns_existing_projects(studio: Studio) -> None:
    projects.create_project(studio, name="before", task="library")
    with pytest.raises(InvalidInput):
        users.add_user(studio, name="ed", role="editor")
    admin = users.add_user(studio, name="root", role="admin")
    assert admin["owns"] == ["before"]
    assert access.project_members(studio, "before")["items"] == [{"user": "root", "role": "owner"}]


def test_users_make_every_route_need_a_token(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    assert client.get("/health").status_code == 200
    r = client.get("/api/v1/projects")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert client.get("/openapi.json").status_code == 401
    r = client.get("/projects", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/projects"
    r = client.get("/jobs/table", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/login?next=/jobs/table"
    assert client.get("/api/v1/projects", headers=bearer("vst_not-a-token")).status_code == 401
    token = users.create_token(studio, user="root")["token"]
    assert client.get("/api/v1/projects", headers=bearer(token)).status_code == 200
    assert client.get("/openapi.json", headers=bearer(token)).status_code == 200
    me = client.get("/api/v1/users/me", headers=bearer(token)).json()["user"]
    assert me == {"name": "root", "role": "admin", "via": "token"}


def test_the_shared_token_no_longer_opens_the_server_once_users_exist(studio: Studio) -> None:
    studio.settings.api_token = "shared-secret"
    with TestClient(create_app(studio)) as client:
        assert client.get("/api/v1/projects", headers=bearer("shared-secret")).status_code == 200
        users.add_user(studio, name="root", role="admin")
        assert client.get("/api/v1/projects", headers=bearer("shared-secret")).status_code == 401


def test_token_revocation_takes_effect_at_once(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    made = users.create_token(studio, user="root")
    h = bearer(made["token"])
    assert client.get("/api/v1/projects", headers=h).status_code == 200
    users.revoke_token(studio, token_id=made["id"])
    assert client.get("/api/v1/projects", headers=h).status_code == 401  # the very next request
    listed = users.list_tokens(studio)["items"]
    assert listed[0]["state"] == "revoked" and "token" not in listed[0]


def test_revoking_through_the_api(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    users.add_user(studio, name="vi", role="viewer")
    vi = users.create_token(studio, user="vi")["token"]
    own = client.post("/api/v1/tokens", json={"expires_days": 1}, headers=bearer(vi))
    assert own.status_code == 201 and own.json()["token"].startswith("vst_")
    root = users.create_token(studio, user="root")
    # a user cannot see or revoke another user's token (404, like a missing one)
    assert client.delete(f"/api/v1/tokens/{root['id']}", headers=bearer(vi)).status_code == 404
    assert client.get("/api/v1/tokens", headers=bearer(vi)).json()["total"] == 2
    r = client.delete(f"/api/v1/tokens/{own.json()['id']}", headers=bearer(vi))
    assert r.status_code == 200 and r.json()["token"]["state"] == "revoked"
    assert client.get("/api/v1/projects", headers=bearer(own.json()["token"])).status_code == 401


def test_an_expired_token_is_refused(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    made = users.create_token(studio, user="root", expires_days=1)
    assert client.get("/api/v1/projects", headers=bearer(made["token"])).status_code == 200
    with studio.sessions.begin() as s:
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == made["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert client.get("/api/v1/projects", headers=bearer(made["token"])).status_code == 401
    assert users.list_tokens(studio)["items"][0]["state"] == "expired"


def test_tokens_are_stored_hashed_and_found_by_their_whole_hash(studio: Studio) -> None:
    """No timing leak: the secret is never compared in Python; the database finds the row by the
    sha256 of the whole token (an index lookup), so a guess that shares a prefix with a real
    token is exactly as far from it as any other guess."""
    users.add_user(studio, name="root", role="admin")
    made = users.create_token(studio, user="root")
    secret = made["token"]
    with studio.sessions() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.id == made["id"]))
        assert row is not None
        stored = [str(getattr(row, c.name)) for c in ApiToken.__table__.columns]
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in value for value in stored)  # only a 12-character prefix is kept
    assert users.principal_for_token(studio, secret) is not None
    near = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert users.principal_for_token(studio, near) is None
    assert users.principal_for_token(studio, secret[:12]) is None
    assert ApiToken.__table__.c.token_hash.unique  # the unique index the lookup goes through


def test_web_sign_in_session_and_csrf(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin", password="correct horse")
    r = client.post("/login", data={"username": "root", "password": "wrong!!!!"}, follow_redirects=False)
    assert r.status_code == 401 and "not right" in r.text
    r = client.post("/login", data={"username": "nobody", "password": "wrong!!!!"}, follow_redirects=False)
    assert r.status_code == 401
    csrf = web_sign_in(client, "root", "correct horse")
    cookie = client.cookies.get("vistudio_session")
    assert cookie
    with studio.sessions() as s:
        hashes = list(s.scalars(select(WebSession.session_hash)))
    assert hashes == [hashlib.sha256(cookie.encode()).hexdigest()]  # only the hash is stored
    # a form post on the session cookie without the CSRF token: refused
    r = client.post("/projects", data={"name": "web", "task": "library"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = client.post("/api/v1/projects", json={"name": "web", "task": "library"})
    assert r.status_code == 403
    # with it, as a form field or as htmx's header: done
    r = client.post("/projects", data={"name": "web", "task": "library", "csrf_token": csrf})
    assert r.status_code == 204
    r = client.post(
        "/api/v1/projects", json={"name": "web2", "task": "library"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 201
    # a wrong token is refused too
    r = client.post(
        "/api/v1/projects", json={"name": "web3", "task": "library"}, headers={"X-CSRF-Token": "0" * 64}
    )
    assert r.status_code == 403
    # bearer requests carry no cookie authority: no CSRF token needed
    token = users.create_token(studio, user="root")["token"]
    fresh = TestClient(client.app)
    assert (
        fresh.post(
            "/api/v1/projects", json={"name": "api", "task": "library"}, headers=bearer(token)
        ).status_code
        == 201
    )
    # sign out: the session row is gone, the old cookie opens nothing
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False).status_code == 303
    fresh.cookies.set("vistudio_session", cookie)
    assert fresh.get("/api/v1/projects").status_code == 401


def test_roles_sharing_and_the_audit_log(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    users.add_user(studio, name="olga", role="editor")
    users.add_user(studio, name="vera", role="viewer")
    users.add_user(studio, name="otto", role="editor")
    t = {n: users.create_token(studio, user=n)["token"] for n in ("root", "olga", "vera", "otto")}
    # a viewer creates nothing; an editor's new project is its own
    assert (
        client.post(
            "/api/v1/projects", json={"name": "v", "task": "library"}, headers=bearer(t["vera"])
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/v1/projects", json={"name": "mine", "task": "library"}, headers=bearer(t["olga"])
        ).status_code
        == 201
    )
    assert client.get("/api/v1/projects/mine", headers=bearer(t["vera"])).status_code == 404
    # a viewer starts no pipeline run, with or without a project
    assert client.post("/api/v1/runs", json={"pipeline": "x"}, headers=bearer(t["vera"])).status_code == 403
    # the owner shares it; others cannot (an outsider cannot even see it)
    r = client.put("/api/v1/projects/mine/members/vera", json={"role": "viewer"}, headers=bearer(t["olga"]))
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/projects/mine", headers=bearer(t["vera"])).status_code == 200
    assert (
        client.patch("/api/v1/projects/mine", json={"name": "x"}, headers=bearer(t["vera"])).status_code
        == 403
    )
    assert (
        client.put(
            "/api/v1/projects/mine/members/otto", json={"role": "editor"}, headers=bearer(t["vera"])
        ).status_code
        == 403
    )
    assert (
        client.put(
            "/api/v1/projects/mine/members/otto", json={"role": "editor"}, headers=bearer(t["otto"])
        ).status_code
        == 404
    )
    members = client.get("/api/v1/projects/mine/members", headers=bearer(t["vera"])).json()["items"]
    assert members == [{"user": "olga", "role": "owner"}, {"user": "vera", "role": "viewer"}]
    # admin-only routes
    assert client.get("/api/v1/audit", headers=bearer(t["olga"])).status_code == 403
    assert (
        client.post(
            "/api/v1/users", json={"name": "new", "role": "viewer"}, headers=bearer(t["olga"])
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/v1/users", json={"name": "new", "role": "viewer"}, headers=bearer(t["root"])
        ).status_code
        == 201
    )
    revoked = users.list_tokens(studio, user="otto")["items"][0]["id"]
    assert client.delete(f"/api/v1/tokens/{revoked}", headers=bearer(t["root"])).status_code == 200
    log = client.get("/api/v1/audit", headers=bearer(t["root"])).json()["items"]
    seen = [(e["actor"], e["action"], e["target"]) for e in reversed(log)]
    assert ("cli", "user.add", "olga") in seen
    assert ("cli", "token.create", "vera") in seen
    assert ("olga", "project.share", "mine") in seen
    assert ("root", "user.add", "new") in seen
    assert seen[-1] == ("root", "token.revoke", "otto")
    assert log[0]["details"] == {"token_id": revoked}


def test_cross_site_posts_stay_refused_with_users(client: TestClient, studio: Studio) -> None:
    users.add_user(studio, name="root", role="admin")
    token = users.create_token(studio, user="root")["token"]
    r = client.post(
        "/api/v1/projects",
        json={"name": "x", "task": "library"},
        headers={**bearer(token), "Origin": "https://evil.example"},
    )
    assert r.status_code == 403


def _expiry(d: dict[str, object]) -> datetime | None:
    value = d["expires_at"]
    return datetime.fromisoformat(str(value).removesuffix("Z")) if value else None


def test_a_token_cannot_make_a_token_that_outlives_it(client: TestClient, studio: Studio) -> None:
    """POST /api/v1/tokens with Bearer auth: the new token expires no later than the one that asked
    (else a token expiring tomorrow could make one that never expires). Sessions and the CLI make
    tokens with any expiry."""
    users.add_user(studio, name="root", role="admin", password="correct horse")
    users.add_user(studio, name="vi", role="viewer")
    parent = users.create_token(studio, user="vi", expires_days=1)
    limit = _expiry(parent)
    assert limit is not None
    for body in ({}, {"expires_days": 30}, {"expires_days": 3650}):
        r = client.post("/api/v1/tokens", json=body, headers=bearer(parent["token"]))
        assert r.status_code == 201, r.text
        assert _expiry(r.json()) == limit and r.json()["expiry_capped"] is True
    # an expiry before the parent's is kept as asked
    r = client.post("/api/v1/tokens", json={"expires_days": 0.5}, headers=bearer(parent["token"]))
    shorter = _expiry(r.json())
    assert r.json()["expiry_capped"] is False and shorter is not None and shorter < limit
    # a child's child is bound too: the chain never outlives its first token
    child = client.post("/api/v1/tokens", json={}, headers=bearer(parent["token"])).json()
    r = client.post("/api/v1/tokens", json={}, headers=bearer(child["token"]))
    assert _expiry(r.json()) == limit
    # an admin making another user's token with an expiring token: bound the same way
    root = users.create_token(studio, user="root", expires_days=2)
    r = client.post("/api/v1/tokens", json={"user": "vi"}, headers=bearer(root["token"]))
    assert r.status_code == 201 and _expiry(r.json()) == _expiry(root)
    # a token that never expires makes tokens that never expire
    forever = users.create_token(studio, user="vi")
    r = client.post("/api/v1/tokens", json={}, headers=bearer(forever["token"]))
    assert r.json()["expires_at"] is None and r.json()["expiry_capped"] is False
    # a web session (signed in with a password) and the CLI's service call make tokens freely
    csrf = web_sign_in(client, "root", "correct horse")
    r = client.post("/api/v1/tokens", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["expires_at"] is None and r.json()["expiry_capped"] is False
    made = users.create_token(studio, user="vi", expires_days=3650)
    assert made["expiry_capped"] is False and (_expiry(made) or limit) > limit + timedelta(days=3000)
    log = users.list_audit(studio)["items"]
    assert sum(1 for e in log if e["details"].get("expiry_capped")) == 6


def test_a_viewer_write_naming_a_missing_project_is_refused_by_its_role(
    client: TestClient, studio: Studio
) -> None:
    """A write that names a project that does not exist still gets the global role check: a viewer
    gets 403, as for any write (whether the project exists, is hidden or is missing: no oracle);
    an editor gets the route's own 404."""
    users.add_user(studio, name="root", role="admin")
    users.add_user(studio, name="vera", role="viewer")
    users.add_user(studio, name="ed", role="editor")
    projects.create_project(studio, name="hidden", task="library", owner=users.user_id(studio, "root"))
    vera, ed = (bearer(users.create_token(studio, user=n)["token"]) for n in ("vera", "ed"))
    tags = {"sample_ids": [1], "add": ["x"]}
    for name in ("Nope", "hidden"):
        assert client.post(f"/api/v1/projects/{name}/tags", json=tags, headers=vera).status_code == 403
        assert client.patch(f"/api/v1/projects/{name}", json={"name": "y"}, headers=vera).status_code == 403
        r = client.post("/api/v1/splits", json={"project": name, "name": "s"}, headers=vera)
        assert r.status_code == 403
        r = client.post(f"/api/v1/projects/{name}/tags", json=tags, headers=ed)
        assert r.status_code == 404 and r.json()["error"]["message"] == f"project {name!r} not found"
    # reading a missing project stays the route's 404 for a viewer
    assert client.get("/api/v1/projects/Nope", headers=vera).status_code == 404


def test_an_event_stream_ends_when_its_token_is_revoked(
    client: TestClient, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open SSE stream checks its token again (every RECHECK_SECONDS): once revoked, the stream
    sends a ``denied`` event and ends, though its job is still running."""
    from vistudio.api.routes import jobs

    monkeypatch.setattr(jobs, "RECHECK_SECONDS", 0.2, raising=False)
    users.add_user(studio, name="root", role="admin")
    made = users.create_token(studio, user="root")
    job = studio.queue.enqueue("pipeline_run", {})  # queued for ever: no worker in this app
    revoke = threading.Timer(1.0, lambda: users.revoke_token(studio, token_id=made["id"]))
    # should the stream not end by itself, the job's end ends it (and the test fails, not hangs)
    finish = threading.Timer(20.0, lambda: studio.queue.cancel(job.id))
    revoke.start()
    finish.start()
    try:
        with client.stream("GET", f"/api/v1/jobs/{job.id}/events", headers=bearer(made["token"])) as r:
            assert r.status_code == 200
            text = "".join(r.iter_text())
    finally:
        revoke.cancel()
        finish.cancel()
    assert "event: denied" in text and "event: end" not in text
    assert '"code": "unauthorized"' in text
    assert studio.queue.get(job.id).status == "queued"
    # and the stream cannot be opened again
    assert client.get(f"/api/v1/jobs/{job.id}/events", headers=bearer(made["token"])).status_code == 401
