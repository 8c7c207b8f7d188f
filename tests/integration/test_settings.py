"""Settings: effective values with their source (env > workspace > default), run-time edits saved in
the workspace and applied at once, the environment winning, and errors that link to the setting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.config import Settings
from vistudio.ml.weights import WeightsPolicy
from vistudio.services import projects
from vistudio.studio import Studio, open_studio


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def by_key(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["key"]: i for i in data["items"]}


def test_each_setting_says_where_its_value_comes_from(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTUDIO_EMBED__BATCH_SIZE", "16")  # read per request, as at start
    r = client.get("/api/v1/settings")
    assert r.status_code == 200
    items = by_key(r.json())
    assert items["offline"]["source"] == "env" and items["offline"]["set_by"] == "VISTUDIO_OFFLINE"
    assert items["offline"]["editable"] is False and items["offline"]["value"] is True
    assert items["embed.batch_size"]["source"] == "env" and not items["embed.batch_size"]["editable"]
    assert items["embed.model"] == {
        **items["embed.model"],
        "source": "default",
        "editable": True,
        "value": "ViT-B-32",
    }
    assert items["embedded_workers"]["runtime"] is False and items["embedded_workers"]["editable"] is False
    assert items["api_token"]["value"] is None  # a secret is never shown, only whether it is set
    assert r.json()["weights"]["downloads"] is False


def test_an_edit_is_saved_applied_at_once_and_kept_for_the_next_start(
    client: TestClient, studio: Studio, settings: Settings, tmp_path: Path
) -> None:
    extra = tmp_path / "photos"
    extra.mkdir()
    r = client.patch(
        "/api/v1/settings",
        json={"values": {"imports.near_duplicate_distance": 4, "import_roots": [str(tmp_path), str(extra)]}},
    )
    assert r.status_code == 200, r.text
    items = by_key(r.json())
    assert items["imports.near_duplicate_distance"]["source"] == "workspace"
    assert items["imports.near_duplicate_distance"]["value"] == 4
    # the running Studio uses it now: no restart
    assert studio.settings.imports.near_duplicate_distance == 4
    assert studio.settings.import_roots == [tmp_path.resolve(), extra.resolve()]
    # a new process on the same workspace starts with it (workspace over default)
    again = open_studio(settings)
    try:
        assert again.settings.imports.near_duplicate_distance == 4
    finally:
        again.close()
    # unset: back to the value the Studio started with
    r = client.delete("/api/v1/settings/imports.near_duplicate_distance")
    assert by_key(r.json())["imports.near_duplicate_distance"]["source"] == "default"
    assert studio.settings.imports.near_duplicate_distance == settings.imports.near_duplicate_distance


def test_the_environment_wins_over_the_workspace(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.patch("/api/v1/settings", json={"values": {"imports.workers": 3}}).status_code == 200
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "2")
    r = client.patch("/api/v1/settings", json={"values": {"imports.workers": 5}})
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "conflict" and "VISTUDIO_IMPORTS__WORKERS" in err["message"]
    assert "the environment wins" in err["message"] and err["details"]["setting"] == "imports.workers"
    # a Studio opened with the variable set uses the environment's value, not the saved one
    started = open_studio(
        Settings(**{**settings.model_dump(), "imports": {**settings.imports.model_dump(), "workers": 2}})
    )
    try:
        assert started.settings.imports.workers == 2
    finally:
        started.close()
    item = by_key(client.get("/api/v1/settings").json())["imports.workers"]
    assert item["source"] == "env" and item["workspace_value"] == 3


def test_bad_edits_are_refused_with_the_setting_named(client: TestClient, tmp_path: Path) -> None:
    def patch(values: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        r = client.patch("/api/v1/settings", json={"values": values})
        return r.status_code, r.json().get("error", {})

    code, err = patch({"embed.batch_size": 0})
    assert code == 422 and err["details"]["setting"] == "embed.batch_size"
    code, err = patch({"import_roots": ["relative/path"]})
    assert code == 422 and "not an existing folder" in err["message"]
    code, err = patch({"embed.checkpoint": "/etc/hostname"})  # outside the import roots
    assert code == 422 and "outside the import roots" in err["message"]
    code, err = patch({"embed.device": "tpu"})
    assert code == 422 and err["details"]["setting"] == "embed.device"
    code, err = patch({"embed.model": "no-such-clip"})
    assert code == 422 and "unknown CLIP architecture" in err["message"]
    code, err = patch({"embedded_workers": 4})
    assert code == 409 and "VISTUDIO_EMBEDDED_WORKERS" in err["message"] and "restart" in err["message"]
    code, err = patch({"nope": 1})
    assert code == 422 and "unknown setting" in err["message"]
    # all or nothing: one bad value saves none
    code, _ = patch({"imports.workers": 2, "embed.batch_size": -1})
    assert code == 422
    assert by_key(client.get("/api/v1/settings").json())["imports.workers"]["source"] == "default"


def test_offline_saved_in_the_workspace_turns_downloads_off_and_on(
    client: TestClient, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISTUDIO_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    r = client.patch("/api/v1/settings", json={"values": {"offline": False}})
    assert r.status_code == 200 and r.json()["weights"]["downloads"] is True
    assert WeightsPolicy.from_settings(studio.settings).allow_download  # no network touched here
    r = client.patch("/api/v1/settings", json={"values": {"offline": "true"}})
    assert r.json()["weights"] == {
        **r.json()["weights"],
        "downloads": False,
        "offline_because": "VISTUDIO_OFFLINE=1",
    }


def test_model_unavailable_names_the_setting_and_the_pages_link_to_it(
    client: TestClient, studio: Studio
) -> None:
    projects.create_project(studio, name="pics", task="classification")
    r = client.post("/api/v1/search/embeddings", json={"project": "pics"})
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "model_unavailable" and "VISTUDIO_OFFLINE" in err["message"]
    assert err["details"]["setting"] == "offline" and "embed.checkpoint" in err["details"]["settings"]
    # the web error next to the Start button links to the settings it names
    page = client.post("/projects/pics/search/embed", headers={"HX-Request": "true"})
    assert page.status_code == 503
    assert 'href="/settings#offline"' in page.text and 'href="/settings#embed.checkpoint"' in page.text
    # and the Settings page has the anchors those links point at
    settings_page = client.get("/settings")
    assert settings_page.status_code == 200
    assert 'id="offline"' in settings_page.text and 'id="embed.checkpoint"' in settings_page.text
    assert "the environment wins" in settings_page.text


def test_the_settings_form_saves_one_setting_and_shows_its_error_beside_it(client: TestClient) -> None:
    r = client.post("/settings/embed.batch_size", data={"value": "0"}, headers={"HX-Request": "true"})
    assert (
        r.status_code == 422 and 'id="embed.batch_size"' in r.text and "greater than or equal to 1" in r.text
    )
    r = client.post("/settings/embed.batch_size", data={"value": "32"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Saved" in r.text and 'data-source="workspace"' in r.text
    r = client.post("/settings/embed.batch_size/reset", headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'data-source="default"' in r.text
    r = client.post("/settings/offline", data={"value": "false"}, headers={"HX-Request": "true"})
    assert r.status_code == 409 and "set by VISTUDIO_OFFLINE" in r.text


def test_cli_settings_list_set_and_unset(
    settings: Settings, studio: Studio, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = ["--workspace", str(settings.home), "--json"]

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = main([*ws, "settings", *args])
        out = capsys.readouterr().out
        return code, json.loads(out)

    code, data = run()
    assert code == 0 and by_key(data)["offline"]["source"] == "env"
    code, data = run("set", "embed.batch_size", "12")
    assert code == 0 and data["setting"]["value"] == 12 and data["setting"]["source"] == "workspace"
    code, data = run("set", "offline", "false")
    assert (
        code == 1 and data["error"]["code"] == "conflict" and "VISTUDIO_OFFLINE" in data["error"]["message"]
    )
    code, data = run("unset", "embed.batch_size")
    assert code == 0 and data["setting"]["source"] == "default"


def test_errors_naming_the_import_roots_say_which_setting(client: TestClient, studio: Studio) -> None:
    projects.create_project(studio, name="shots", task="classification")
    r = client.post("/api/v1/imports", json={"project": "shots", "source": "/etc"})
    assert r.status_code == 422 and r.json()["error"]["details"]["setting"] == "import_roots"
    projects.create_project(studio, name="lib", task="library")
    r = client.post("/api/v1/library/lib/roots", json={"paths": ["/etc"]})
    assert r.status_code == 422 and r.json()["error"]["details"]["setting"] == "import_roots"


def test_the_api_can_narrow_the_import_roots_but_never_widen_them(
    client: TestClient, studio: Studio, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = tmp_path / "inside"
    inside.mkdir()
    r = client.patch("/api/v1/settings", json={"values": {"import_roots": [str(inside)]}})
    assert r.status_code == 200, r.text  # narrower: fine
    wider = tmp_path.parent
    for key, value in (("import_roots", [str(wider)]), ("embed.cache_dir", "/etc")):
        r = client.patch("/api/v1/settings", json={"values": {key: value}})
        assert r.status_code == 409, (key, r.text)
        assert r.json()["error"]["details"]["setting"] == key
    assert studio.settings.import_roots == [inside.resolve()]
    assert studio.settings.embed.cache_dir is None
    # the cache may live in the workspace
    r = client.patch("/api/v1/settings", json={"values": {"embed.cache_dir": str(studio.home / "weights")}})
    assert r.status_code == 200, r.text
    # on the machine itself the CLI may widen them
    code = main(["--workspace", str(settings.home), "--json", "settings", "set", "import_roots", str(wider)])
    assert code == 0, capsys.readouterr().out


def test_run_time_settings_have_upper_bounds(client: TestClient) -> None:
    for key, value in (("embed.workers", 100_000), ("embed.device", "cuda:99999999999999999999")):
        r = client.patch("/api/v1/settings", json={"values": {key: value}})
        assert r.status_code == 422, (key, r.text)


def test_query_ids_beyond_the_database_range_are_400s_not_500s(client: TestClient, studio: Studio) -> None:
    projects.create_project(studio, name="p", task="classification")
    for url in ("/jobs?job=9999999999999999999", "/projects/p?sample=9999999999999999999"):
        r = client.get(url)
        assert r.status_code < 500, (url, r.status_code)
        assert "must be a number" in r.text


def test_a_new_clip_architecture_takes_a_tag_it_has(client: TestClient, studio: Studio) -> None:
    r = client.patch("/api/v1/settings", json={"values": {"embed.model": "RN50"}})
    assert r.status_code == 200, r.text
    items = by_key(r.json())
    assert items["embed.model"]["value"] == "RN50"
    assert items["embed.pretrained"]["value"] != "laion2b_s34b_b79k"  # ViT-B-32's tag, not RN50's
    assert items["embed.pretrained"]["source"] == "workspace"
    r = client.patch("/api/v1/settings", json={"values": {"embed.pretrained": "laion2b_s34b_b79k"}})
    assert r.status_code == 422 and "not a pretrained tag of RN50" in r.json()["error"]["message"]
    assert studio.settings.embed.model == "RN50"


def test_a_stored_value_that_no_longer_validates_shows_the_default_and_why(
    client: TestClient, studio: Studio
) -> None:
    from vistudio.db import utcnow
    from vistudio.db.settings import WorkspaceSetting

    with studio.sessions.begin() as s:  # as an older version might have saved it
        s.add(WorkspaceSetting(key="embed.batch_size", value=0, updated_at=utcnow()))
    item = by_key(client.get("/api/v1/settings").json())["embed.batch_size"]
    assert item["source"] == "default" and item["value"] == 64
    assert "invalid stored value" in item["not_applied"]
    assert 'data-testid="not-applied"' in client.get("/settings").text
