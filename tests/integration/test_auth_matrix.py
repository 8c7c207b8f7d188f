"""The authorization matrix: every route of the app × every kind of caller, generated from the
route table, so that a new route cannot skip it (docs/security.md).

For each route the rule comes from ``api.access.requirement_for``; a route without one fails
``test_every_route_has_a_rule``. Each caller then gets the class of answer its rule promises:

* anonymous: 401 (API) or a redirect to /login (pages), except public routes;
* outsider (an editor who is no member of the project): 404 for anything about the project, with
  the body of a project that does not exist;
* viewer (a member, read only): 403 for writes;
* editor (a member), owner, admin: allowed — requests that change nothing are sent for real;
  writes are checked through ``access.enforce`` (sending them would delete the fixture).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.params import File, Form
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from factories import make_class_folders
from vistudio.api.access import PUBLIC, Requirement, enforce, requirement_for
from vistudio.api.app import create_app
from vistudio.api.security import SAFE_METHODS
from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.errors import NotFound
from vistudio.jobs.worker import Worker
from vistudio.services import access, ingest, projects, runs, users
from vistudio.studio import Studio, open_studio

PROJECT = "Secret Birds"
CALLERS = ("anonymous", "outsider", "viewer", "editor", "owner", "admin")
HIDDEN = f"project {PROJECT!r} not found"
HIDDEN_HTML = HIDDEN.replace("'", "&#39;")  # as Jinja escapes it
# resources the fixture has rows of; other ids in paths name no row (the route's own 404)
FIXTURE_RESOURCES = ("sample", "job", "run")
# a pipeline run small enough for a fixture: it reads the project's samples and saves little
PIPELINE: dict[str, Any] = {
    "name": "tiny",
    "version": "1",
    "output_mode": "production",
    "stages": [{"name": "load"}, {"name": "small", "uses": "resize", "params": {"max_side": 8}}],
}


def hidden_run(run_id: str) -> str:
    """The message of a run that does not exist — and of one the caller may not see."""
    return f"run {run_id!r} not found"


@dataclass
class World:
    studio: Studio
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]
    principals: dict[str, users.Principal]
    sample_id: int
    job_id: int
    run_id: str  # a pipeline run over the project
    folder_run_id: str  # a pipeline run over a folder: no project


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz")
    settings = Settings(
        home=tmp / "ws",
        offline=True,
        import_roots=[tmp],
        allowed_hosts=["testserver"],
        imports=ImportSettings(workers=1, batch_size=8),
        jobs=JobSettings(lease_seconds=30, heartbeat_seconds=0.2, poll_seconds=0.05),
    )
    studio = open_studio(settings)
    users.add_user(studio, name="root", role="admin")
    for name, role in (("olga", "editor"), ("eddie", "editor"), ("vera", "viewer"), ("otto", "editor")):
        users.add_user(studio, name=name, role=role)
    names = {"admin": "root", "owner": "olga", "editor": "eddie", "viewer": "vera", "outsider": "otto"}
    olga = users.principal_for_token(studio, users.create_token(studio, user="olga")["token"])
    assert olga is not None
    project = projects.create_project(studio, name=PROJECT, task="classification", owner=olga.user_id)
    access.share_project(studio, project=PROJECT, user="eddie", role="editor")
    access.share_project(studio, project=PROJECT, user="vera", role="viewer")
    folders = make_class_folders(tmp / "pets", {"cat": 2, "dog": 2})
    job = ingest.start_import(studio, project=PROJECT, source=folders, fmt="folder")
    Worker(studio).run_one(job_id=job["id"])
    from vistudio.services import samples

    sample_id = samples.list_samples(studio, project=PROJECT, limit=1)["items"][0]["id"]
    made_runs = []
    for source in ({"project": PROJECT}, {"input_dir": folders / "cat"}):
        run_job = runs.start_run(studio, pipeline=PIPELINE, **source)  # type: ignore[arg-type]
        Worker(studio).run_one(job_id=run_job["id"])
        done = studio.queue.get(run_job["id"])
        assert done.status == "succeeded" and done.result, done.error
        made_runs.append(done.result["run"]["id"])
    tokens = {role: users.create_token(studio, user=name)["token"] for role, name in names.items()}
    principals = {role: users.principal_for_token(studio, t) for role, t in tokens.items()}
    assert project["id"] and all(principals.values())
    app = create_app(studio)
    with TestClient(app) as client:
        yield World(studio, app, client, tokens, principals, sample_id, job["id"], *made_runs)  # type: ignore[arg-type]
    studio.close()


def _routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    out = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute) and ctx.path:
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    out.append((method, ctx.path, route))
    return out


def _fill(path: str, w: World) -> str:
    values = {"project": PROJECT, "sample_id": w.sample_id, "job_id": w.job_id, "run_id": w.run_id}
    if path.startswith("/projects/{name}"):
        values["name"] = PROJECT

    def one(m: re.Match[str]) -> str:
        return str(values.get(m.group(1), "1"))

    return re.sub(r"{([^}:]+)(?::[^}]*)?}", one, path)


def _is_form(route: APIRoute) -> bool:
    return any(isinstance(f.field_info, (Form, File)) for f in route.dependant.body_params)


def _expected(caller: str, req: Requirement) -> str:
    """allow | 401 | 403 | 404 for this caller and rule, with the fixture's project filled in
    wherever the route may name one."""
    if req.action == "public":
        return "public"  # whatever the route says (a wrong password is its own 401)
    if caller == "anonymous":
        return "401"
    if caller == "admin":
        return "allow"
    if req.action == "admin":
        return "403"
    if req.resource is not None and req.resource[1] not in FIXTURE_RESOURCES:
        return "403|404" if caller != "outsider" and req.action != "read" else "404|allow"
    about_project = req.project is not None or req.resource is not None
    if about_project:
        if caller == "outsider":
            return "404"
        if req.action == "read":
            return "allow"
        if req.action == "manage":
            return "allow" if caller == "owner" else "403"
        return "403" if caller == "viewer" else "allow"
    if req.action == "read":
        return "allow"
    return "403" if caller == "viewer" else "allow"


def test_every_route_has_a_rule(world: World) -> None:
    """Deny by default: a route that the rules do not cover is a failure here (and refused)."""
    missing = [f"{m} {p}" for m, p, _ in _routes(world.app) if requirement_for(m, p) is None]
    assert not missing, f"routes without an access rule (add one to api/access.py EXPLICIT): {missing}"
    assert len(_routes(world.app)) > 200


def test_routes_that_take_a_project_check_it(world: World) -> None:
    """A route with a ``project`` parameter anywhere (path, query, form, JSON body) must have a
    rule that reads it: else its caller could name someone else's project."""
    unchecked = []
    for method, path, route in _routes(world.app):
        req = requirement_for(method, path)
        assert req is not None
        fields = {p.name for p in route.dependant.query_params + route.dependant.path_params}
        for body in route.dependant.body_params:
            fields.add(body.name)
            model = getattr(body.field_info, "annotation", None) or getattr(body, "type_", None)
            fields.update(getattr(model, "model_fields", {}))
        if "project" in fields and req.project is None and req.action not in ("admin", "public"):
            unchecked.append(f"{method} {path}")
    assert not unchecked, unchecked


def test_an_undeclared_route_is_refused(world: World, tmp_path: Path) -> None:
    assert requirement_for("GET", "/api/v1/brand-new/{thing}") is None
    app = create_app(world.studio)

    @app.get("/api/v1/brand-new/{thing}")
    def brand_new(thing: str) -> dict[str, str]:
        return {"thing": thing}

    with TestClient(app) as client:
        r = client.get("/api/v1/brand-new/x", headers={"Authorization": f"Bearer {world.tokens['admin']}"})
    assert r.status_code == 403 and "no access rule" in r.json()["error"]["message"]


def _send(w: World, method: str, path: str, route: APIRoute, caller: str) -> Any:
    url = _fill(path, w)
    query = {"project": PROJECT, "job": str(w.job_id)}
    headers = {"Authorization": f"Bearer {w.tokens[caller]}"} if caller != "anonymous" else {}
    kwargs: dict[str, Any] = {"params": query, "headers": headers, "follow_redirects": False}
    if method not in SAFE_METHODS and method != "DELETE":
        if _is_form(route):
            kwargs["data"] = {"project": PROJECT}
        else:
            kwargs["json"] = {"project": PROJECT}
    return w.client.request(method, url, **kwargs)


@pytest.mark.parametrize("caller", CALLERS)
def test_authorization_matrix(world: World, caller: str) -> None:
    failures: list[str] = []
    for method, path, route in _routes(world.app):
        req = requirement_for(method, path)
        assert req is not None
        want = _expected(caller, req)
        if want == "allow" and method not in SAFE_METHODS and caller != "anonymous":
            # a write that is allowed would change the fixture: ask the same check directly
            values = {"project": PROJECT if req.project else None, "resource": None}
            if req.resource:
                by_kind = {"sample": world.sample_id, "run": world.run_id}
                values["resource"] = by_kind.get(req.resource[1], world.job_id)
            try:
                enforce(world.studio, world.principals[caller], req, values)
            except Exception as exc:
                failures.append(f"{method} {path}: {caller} refused: {exc}")
            continue
        r = _send(world, method, path, route, caller)
        got = r.status_code
        page = not path.startswith("/api/") and path not in ("/metrics", "/docs")
        run_hidden = hidden_run(world.run_id)
        hidden = got == 404 and any(
            m in r.text for m in (HIDDEN, HIDDEN_HTML, run_hidden, run_hidden.replace("'", "&#39;"))
        )
        ok = {
            "401": got == 401 or (page and got == 303 and r.headers["location"].startswith("/login")),
            "403": got == 403,
            "404": hidden or (got == 404 and req.resource is not None),
            "allow": got not in (401, 403) and not hidden,
            "403|404": got in (403, 404),
            "404|allow": got not in (401, 403),
            "public": got < 500,
        }[want]
        if not ok:
            failures.append(f"{method} {path}: {caller} wanted {want}, got {got} {r.text[:160]!r}")
    assert not failures, "\n".join(failures)


def test_hidden_project_answers_like_a_missing_one(world: World) -> None:
    h = {"Authorization": f"Bearer {world.tokens['outsider']}"}
    hidden = world.client.get(f"/api/v1/projects/{PROJECT}", headers=h)
    missing = world.client.get("/api/v1/projects/No Such Project", headers=h)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert hidden.json() == {"error": {"code": "not_found", "message": HIDDEN, "details": {}}}
    # its samples and jobs too: the body of a missing one
    for kind, rid in (("samples", world.sample_id), ("jobs", world.job_id)):
        hidden = world.client.get(f"/api/v1/{kind}/{rid}", headers=h)
        missing = world.client.get(f"/api/v1/{kind}/{10**9}", headers=h)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == {
            "error": {
                **missing.json()["error"],
                "message": missing.json()["error"]["message"].replace(str(10**9), str(rid)),
            }
        }
    # and the lists leave it out
    assert world.client.get("/api/v1/projects", headers=h).json()["total"] == 0
    jobs = world.client.get("/api/v1/jobs", headers=h).json()
    assert all(j["project_id"] is None for j in jobs["items"])
    page = world.client.get("/projects", headers=h)
    assert page.status_code == 200 and PROJECT not in page.text


def test_sse_stream_of_a_hidden_job_is_404(world: World) -> None:
    h = {"Authorization": f"Bearer {world.tokens['outsider']}"}
    r = world.client.get(f"/api/v1/jobs/{world.job_id}/events", headers=h)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    own = {"Authorization": f"Bearer {world.tokens['viewer']}"}
    with world.client.stream("GET", f"/api/v1/jobs/{world.job_id}/events", headers=own) as stream:
        assert stream.status_code == 200
        assert "event: end" in "".join(stream.iter_text())


def test_public_routes_are_few(world: World) -> None:
    public = sorted(f"{m} {p}" for m, p, _ in _routes(world.app) if requirement_for(m, p) == PUBLIC)
    assert public == ["GET /health", "GET /login", "POST /login", "POST /logout"]


def test_edits_record_the_user(world: World) -> None:
    """The edit history names the user once users exist (``api:eddie``); a viewer's edit is refused."""
    body = {"sample_ids": [world.sample_id], "add": ["checked"]}
    url = f"/api/v1/projects/{PROJECT}/tags"
    assert (
        world.client.post(
            url, json=body, headers={"Authorization": f"Bearer {world.tokens['viewer']}"}
        ).status_code
        == 403
    )
    r = world.client.post(url, json=body, headers={"Authorization": f"Bearer {world.tokens['editor']}"})
    assert r.status_code == 200, r.text
    assert r.json()["actor"] == "api:eddie"


def test_runs_of_a_hidden_project_answer_like_missing_ones(world: World) -> None:
    """A pipeline run over a private project is that project's: an outsider (or a viewer who is no
    member) gets the body of a missing run from the API and the pages, and the lists leave it
    out; runs over a folder stay everyone's."""
    users.add_user(world.studio, name="vic", role="viewer")  # a viewer who is no member
    own = {"Authorization": f"Bearer {world.tokens['viewer']}"}
    rid, missing = world.run_id, "20990101-000000-abcdef"
    for caller in ("outsider", users.create_token(world.studio, user="vic")["token"]):
        token = world.tokens.get(caller, caller)
        h = {"Authorization": f"Bearer {token}"}
        hidden = world.client.get(f"/api/v1/runs/{rid}", headers=h)
        gone = world.client.get(f"/api/v1/runs/{missing}", headers=h)
        assert hidden.status_code == gone.status_code == 404
        assert hidden.json() == {"error": {**gone.json()["error"], "message": hidden_run(rid)}}
        assert gone.json()["error"]["message"] == hidden_run(missing)
        for page in ("", "/report", "/files/report.html"):
            r = world.client.get(f"/runs/{rid}{page}", headers=h)
            assert r.status_code == 404 and hidden_run(rid).replace("'", "&#39;") in r.text, page
            assert world.client.get(f"/runs/{missing}{page}", headers=h).status_code == 404
        # deleting it: hidden too (a viewer's write to a missing run is refused by its role first)
        r = world.client.post(f"/runs/{rid}/delete", headers=h, follow_redirects=False)
        assert r.status_code == (404 if caller == "outsider" else 403)
        # the lists, the disk usage and a comparison
        listed = world.client.get("/api/v1/runs", headers=h).json()
        assert [x["id"] for x in listed["items"]] == [world.folder_run_id] and listed["total"] == 1
        usage = world.client.get("/api/v1/runs/usage", headers=h).json()
        assert rid not in {x["id"] for x in usage["largest_runs"]}
        page = world.client.get("/runs", headers=h)
        assert page.status_code == 200 and rid not in page.text and world.folder_run_id in page.text
        table = world.client.get("/runs", headers={**h, "HX-Request": "true"})
        assert table.status_code == 200 and rid not in table.text and world.folder_run_id in table.text
        cmp = world.client.get("/api/v1/runs/compare", params={"a": world.folder_run_id, "b": rid}, headers=h)
        assert cmp.status_code == 404 and cmp.json()["error"]["message"] == hidden_run(rid)
        r = world.client.get("/runs/compare", params={"a": rid, "b": world.folder_run_id}, headers=h)
        assert r.status_code == 404 and rid not in r.text.replace(hidden_run(rid).replace("'", "&#39;"), "")
        assert world.client.get(f"/api/v1/runs/{world.folder_run_id}", headers=h).status_code == 200
    # a member sees it, in the lists too
    assert world.client.get(f"/api/v1/runs/{rid}", headers=own).json()["run"]["input"]["kind"] == "project"
    listed = world.client.get("/api/v1/runs", headers=own).json()
    assert {x["id"] for x in listed["items"]} == {rid, world.folder_run_id} and listed["total"] == 2
    assert rid in world.client.get("/runs", headers=own).text
    assert world.client.get("/api/v1/runs/compare", params={"a": world.folder_run_id, "b": rid}, headers=own)
    assert world.client.get(f"/runs/{rid}/report", headers=own).status_code == 200
    # paging counts only the visible runs
    outsider = {"Authorization": f"Bearer {world.tokens['outsider']}"}
    paged = world.client.get("/api/v1/runs", params={"offset": 1}, headers=outsider).json()
    assert paged == {"items": [], "total": 1}


def test_deleting_a_run_needs_write_on_its_project(world: World) -> None:
    """Deleting a project's run needs write access to that project (its owner or editors, admins);
    a run over a folder: any editor or admin (no creator is recorded), never a viewer."""
    req = requirement_for("POST", "/runs/{run_id}/delete")
    assert req == Requirement("write", resource=("run_id", "run"))
    assert requirement_for("GET", "/api/v1/runs/{run_id}") == Requirement("read", resource=("run_id", "run"))
    for caller, project_run, folder_run in (
        ("owner", None, None),
        ("editor", None, None),
        ("admin", None, None),
        ("viewer", access.Forbidden, access.Forbidden),
        ("outsider", NotFound, None),
    ):
        for rid, want in ((world.run_id, project_run), (world.folder_run_id, folder_run)):
            principal = world.principals[caller]
            if want is None:
                enforce(world.studio, principal, req, {"resource": rid})
            else:
                with pytest.raises(want):
                    enforce(world.studio, principal, req, {"resource": rid})
    # a non-member editor's delete through the page: the hidden run's 404, nothing deleted
    h = {"Authorization": f"Bearer {world.tokens['outsider']}"}
    r = world.client.post(f"/runs/{world.run_id}/delete", headers=h, follow_redirects=False)
    assert r.status_code == 404
    assert runs.get_run(world.studio, world.run_id)["id"] == world.run_id


def test_a_run_outlives_its_deleted_project_for_admins_only(world: World) -> None:
    """A run over a project that was deleted since is not everyone's (its outputs are that
    project's images), nor a later project's that reuses the id: admins only."""
    assert access.run_project_id({"kind": "folder"}, None) is None
    assert access.run_project_id({"kind": "project", "project_id": 3}, (3,)) == 3
    assert access.run_project_id({"kind": "project", "project_id": 3}, None) == 3  # its job is gone
    # its job's project_id was set to NULL by the project's deletion
    assert access.run_project_id({"kind": "project", "project_id": 3}, (None,)) == access.DELETED_PROJECT
    assert access.run_project_id({}, (5,)) == 5  # the job's project when the input names none
    access.check_project_id(
        world.studio, world.principals["admin"], access.DELETED_PROJECT, "run 'x'", action="read"
    )
    for caller in ("owner", "editor", "viewer"):
        with pytest.raises(NotFound, match="run 'x' not found"):
            access.check_project_id(
                world.studio, world.principals[caller], access.DELETED_PROJECT, "run 'x'", action="read"
            )
