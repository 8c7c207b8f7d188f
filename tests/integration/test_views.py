"""Saved views: a named filter and sort, checked when saved, followed by the data, usable to select
samples for bulk edits, through the service, the API and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from factories import cli, make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services import edits, projects, samples, views
from vistudio.studio import Studio


@pytest.fixture
def pets(studio: Studio, tmp_path: Path) -> Studio:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "src", {"cat": 4, "dog": 3}))
    return studio


def test_views_save_list_use_delete(pets: Studio, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    v = views.save_view(
        pets, project="pets", name="cats by size", query={"label": "cat", "sort": "bytes", "order": "desc"}
    )
    assert v["url"] == "/projects/pets?view=cats%20by%20size" and v["query"]["label"] == "cat"
    with pytest.raises(Conflict, match="already exists"):
        views.save_view(pets, project="pets", name="cats by size", query={})
    views.save_view(pets, project="pets", name="cats by size", query={"label": "cat"}, replace=True)
    for name, query, message in [
        ("x", {"colour": "red"}, "unknown filter"),
        ("x", {"label": "unicorn"}, "unicorn"),
        ("x", {"taken_from": "yesterday"}, "date like"),
        ("x", {"sort": "colour"}, "sort is one of"),
        ("x", {"min_objects": "-1"}, "whole number"),
        ("x", {"label": "c" * 201}, "at most 200"),
        ("../x", {}, "a view name"),
        (" ", {}, "a view name"),
    ]:
        with pytest.raises((InvalidInput, NotFound), match=message):
            views.save_view(pets, project="pets", name=name, query=query)
    # a view follows the data: a dog relabelled to cat appears in it; a bulk edit can select it
    dog = samples.list_samples(pets, project="pets", label="dog")["items"][0]["id"]
    edits.edit_labels(pets, project="pets", selection={"sample_ids": [dog]}, set_to=["cat"])
    selected = views.view_filter(pets, project="pets", name="cats by size")
    assert selected == {"label": "cat"}
    tagged = edits.edit_tags(pets, project="pets", selection={"filter": selected}, add=["cat-ish"])
    assert tagged["changed"] == 5
    code, out = cli(capsys, pets.home, "tag", "pets", "--add", "seen", "--view", "cats by size")
    assert code == 0 and out["changed"] == 5
    code, out = cli(capsys, pets.home, "samples", "pets", "--view", "cats by size")
    assert code == 0 and out["total"] == 5
    code, out = cli(capsys, pets.home, "samples", "pets", "--view", "cats by size", "--label", "dog")
    assert code != 0 and "either --view or filters" in out["error"]["message"]
    code, out = cli(
        capsys, pets.home, "view", "save", "pets", "newest", "--query", "sort=imported_at&order=desc"
    )
    assert code == 0 and out["view"]["query"] == {"sort": "imported_at", "order": "desc"}
    code, out = cli(capsys, pets.home, "view", "list", "pets")
    assert code == 0 and [v["name"] for v in out["items"]] == ["cats by size", "newest"]
    code, out = cli(capsys, pets.home, "tag", "pets", "--add", "x", "--view", "nope")
    assert code != 0 and "not found" in out["error"]["message"]
    with TestClient(create_app(pets)) as client:
        r = client.post("/api/v1/projects/pets/views", json={"name": "dogs", "query": {"label": "dog"}})
        assert r.status_code == 201 and r.json()["view"]["name"] == "dogs"
        assert (
            client.post("/api/v1/projects/pets/views", json={"name": "dogs", "query": {}}).status_code == 409
        )
        assert (
            client.post("/api/v1/projects/pets/views", json={"name": "d", "query": {"x": "1"}}).status_code
            == 422
        )
        assert client.get("/api/v1/projects/pets/views").json()["total"] == 3
        assert client.get("/api/v1/projects/pets/views/dogs").json()["view"]["query"] == {"label": "dog"}
        assert client.delete("/api/v1/projects/pets/views/dogs").status_code == 200
        assert client.get("/api/v1/projects/pets/views/dogs").status_code == 404
    views.delete_view(pets, project="pets", name="newest")
    with pytest.raises(NotFound):
        views.delete_view(pets, project="pets", name="newest")


def test_export_a_view(pets: Studio, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    views.save_view(pets, project="pets", name="dogs", query={"label": "dog", "sort": "bytes"})
    out = tmp_path / "dogs-export"
    code, body = cli(
        capsys,
        pets.home,
        "dataset",
        "export",
        "pets",
        "--format",
        "folders",
        "--out",
        str(out),
        "--view",
        "dogs",
    )
    assert code == 0 and body["export"]["samples"] == 3, body
    assert sorted(p.parent.name for p in out.rglob("*.png")) == ["dog"] * 3
    code, body = cli(
        capsys,
        pets.home,
        "dataset",
        "export",
        "pets",
        "--format",
        "folders",
        "--dry-run",
        "--view",
        "dogs",
        "--label",
        "cat",
    )
    assert code != 0 and "either --view or filters" in body["error"]["message"]
    with TestClient(create_app(pets)) as client:
        r = client.post(
            "/api/v1/datasets/pets/export", json={"format": "folders", "view": "dogs", "dry_run": True}
        )
        assert r.status_code == 200 and r.json()["samples"] == 3, r.text
        r = client.post(
            "/api/v1/datasets/pets/export", json={"format": "folders", "view": "nope", "dry_run": True}
        )
        assert r.status_code == 404
