"""Editing tags and labels — one sample, a selection, a filter, all — with undo, redo and history,
through the service, the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from factories import cli, make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.db import Sample
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services import edits, projects, samples
from vistudio.services.experiments.lookup import split_items
from vistudio.studio import Studio


@pytest.fixture
def pets(studio: Studio, tmp_path: Path) -> dict[str, list[int]]:
    """A classification project ``pets`` (cat 6, dog 5, fox 4): the sample ids of each class."""
    projects.create_project(studio, name="pets", task="classification")
    job = run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 5, "fox": 4}))
    assert job["status"] == "succeeded"
    out: dict[str, list[int]] = {}
    for item in samples.list_samples(studio, project="pets", limit=500)["items"]:
        out.setdefault(item["labels"][0], []).append(item["id"])
    return out


def tags(studio: Studio, tag: str) -> set[int]:
    return {i["id"] for i in samples.list_samples(studio, project="pets", tag=tag, limit=500)["items"]}


def labels(studio: Studio) -> dict[int, list[str]]:
    return {i["id"]: i["labels"] for i in samples.list_samples(studio, project="pets", limit=500)["items"]}


def test_tags_undo_redo_and_history(studio: Studio, pets: dict[str, list[int]]) -> None:
    cats, dogs = pets["cat"], pets["dog"]
    first = edits.edit_tags(studio, project="pets", selection={"filter": {"label": "cat"}}, add=["blurry"])
    assert first["changed"] == 6 and first["selected"] == 6 and first["change_id"]
    assert tags(studio, "blurry") == set(cats)
    # already tagged samples are not counted; nothing changed records nothing
    again = edits.edit_tags(studio, project="pets", selection={"sample_ids": cats[:2]}, add=["blurry"])
    assert again["changed"] == 0 and again["change_id"] is None
    second = edits.edit_tags(
        studio, project="pets", selection={"sample_ids": [cats[0], dogs[0]]}, add=["review"], remove=["blurry"]
    )
    assert second["changed"] == 2
    assert tags(studio, "blurry") == set(cats[1:]) and tags(studio, "review") == {cats[0], dogs[0]}
    # the first change cannot be undone while a later one changed one of its samples
    with pytest.raises(Conflict) as exc:
        edits.undo(studio, project="pets", change_id=first["change_id"])
    assert exc.value.details["later_change"] == second["change_id"] and exc.value.details["sample_ids"] == [cats[0]]
    # undo without an id takes back the newest change, then the first can go
    undone = edits.undo(studio, project="pets")
    assert undone["reverts"] == second["change_id"] and undone["changed"] == 2
    assert tags(studio, "review") == set() and tags(studio, "blurry") == set(cats)
    edits.undo(studio, project="pets")
    assert tags(studio, "blurry") == set()
    with pytest.raises(Conflict, match="nothing to undo"):
        edits.undo(studio, project="pets")
    with pytest.raises(Conflict, match="already undone"):
        edits.undo(studio, project="pets", change_id=first["change_id"])
    # redo in reverse order of the undos: the first change comes back, then the second
    edits.redo(studio, project="pets")
    assert tags(studio, "blurry") == set(cats)
    edits.redo(studio, project="pets")
    assert tags(studio, "blurry") == set(cats[1:]) and tags(studio, "review") == {cats[0], dogs[0]}
    with pytest.raises(Conflict, match="nothing to redo"):
        edits.redo(studio, project="pets")
    # and undo again after a redo
    assert edits.undo(studio, project="pets")["reverts"] == second["change_id"]
    assert tags(studio, "review") == set()
    # the history: newest first, with each change's state; per sample with its before and after
    h = edits.history(studio, project="pets")
    assert h["total"] == 7
    assert [c["undone"] for c in h["items"]] == [False, False, False, True, True, True, False]
    assert h["items"][-1]["request"] == {"add": ["blurry"], "remove": []}
    one = edits.history(studio, project="pets", sample_id=cats[0])
    assert [(c["before"], c["after"]) for c in one["items"]][-2:] == [([], ["blurry"]), (["blurry"], ["review"])][::-1]
    assert all({"actor", "created_at", "kind"} <= set(c) for c in one["items"])
    with pytest.raises(NotFound):
        edits.history(studio, project="pets", sample_id=10**9)


def test_labels_set_add_remove_and_training_sees_them(studio: Studio, pets: dict[str, list[int]]) -> None:
    fox = pets["fox"]
    out = edits.edit_labels(studio, project="pets", selection={"sample_ids": fox[:2]}, set_to=["cat"])
    assert out["changed"] == 2 and out["created_classes"] == []
    assert labels(studio)[fox[0]] == ["cat"]
    # an unknown class is refused, never silently created; created on purpose when asked
    with pytest.raises(InvalidInput, match="no class 'owl'") as exc:
        edits.edit_labels(studio, project="pets", selection={"sample_ids": fox[2:]}, set_to=["owl"])
    assert exc.value.details["unknown_classes"] == ["owl"]
    made = edits.edit_labels(
        studio, project="pets", selection={"sample_ids": fox[2:]}, set_to=["owl"], create_classes=True
    )
    assert made["created_classes"] == ["owl"] and labels(studio)[fox[2]] == ["owl"]
    assert "owl" in samples.class_counts(studio, project="pets")
    # add / remove on a whole class, clear
    edits.edit_labels(studio, project="pets", selection={"filter": {"label": "dog"}}, add=["fox"])
    assert labels(studio)[pets["dog"][0]] == ["dog", "fox"]
    edits.edit_labels(studio, project="pets", selection={"filter": {"label": "dog"}}, remove=["dog"])
    assert labels(studio)[pets["dog"][0]] == ["fox"]
    edits.edit_labels(studio, project="pets", selection={"sample_ids": [pets["cat"][0]]}, set_to=[])
    assert labels(studio)[pets["cat"][0]] == []
    # a stale client: the labels it saw are not the labels now → 409 with the current ones
    with pytest.raises(Conflict) as stale:
        edits.edit_labels(
            studio, project="pets", selection={"sample_ids": [fox[0]]}, set_to=["dog"], expected=["fox"]
        )
    assert stale.value.details["current"] == {str(fox[0]): ["cat"]}
    # the next experiment trains on the labels as they are now: a sample labelled twice is left out
    from vistudio.services import splits

    split = splits.create_split(studio, project="pets", name="s", ratios=(0.6, 0.2, 0.2))
    with studio.sessions() as s:
        items = split_items(studio, s, split["id"], ["train", "val", "test"], ["cat", "dog", "fox", "owl"])
    targets = {i.sample_id: i.target for i in items}
    assert targets[fox[0]] == 0 and targets[fox[2]] == 3 and pets["cat"][0] not in targets
    assert pets["dog"][0] in targets and targets[pets["dog"][0]] == 2  # "dog" removed, "fox" kept
    # undo everything, newest first: the labels are back as imported
    while True:
        try:
            edits.undo(studio, project="pets")
        except Conflict:
            break
    restored = labels(studio)
    assert all(restored[i] == [name] for name, ids in pets.items() for i in ids)


def test_bad_edits_change_nothing(studio: Studio, pets: dict[str, list[int]]) -> None:
    projects.create_project(studio, name="other", task="classification")
    projects.create_project(studio, name="boxes", task="detection")
    before = labels(studio)
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"selection": {}, "add": ["x"]}, InvalidInput, "exactly one"),
        ({"selection": {"sample_ids": [1], "all": True}, "add": ["x"]}, InvalidInput, "exactly one"),
        ({"selection": {"sample_ids": []}, "add": ["x"]}, InvalidInput, "sample ids"),
        ({"selection": {"sample_ids": [10**9]}, "add": ["x"]}, NotFound, "not found"),
        ({"selection": {"all": True}}, InvalidInput, "give a tag"),
        ({"selection": {"all": True}, "add": ["x"], "remove": ["x"]}, InvalidInput, "both added and removed"),
        ({"selection": {"all": True}, "add": [" "]}, InvalidInput, "non-empty"),
        ({"selection": {"all": True}, "add": ["a\nb"]}, InvalidInput, "control characters"),
        ({"selection": {"all": True}, "add": ["x" * 101]}, InvalidInput, "longer than"),
        ({"selection": {"filter": {"colour": "red"}}, "add": ["x"]}, InvalidInput, "unknown filter"),
        ({"selection": {"filter": {"label": "unicorn"}}, "add": ["x"]}, NotFound, "unicorn"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            edits.edit_tags(studio, project="pets", **kwargs)
    # samples of another project, by id: refused as a whole
    with pytest.raises(InvalidInput, match="belong to another project"):
        edits.edit_tags(studio, project="other", selection={"sample_ids": pets["cat"][:2]}, add=["x"])
    with pytest.raises(InvalidInput, match="no image labels"):
        edits.edit_labels(studio, project="boxes", selection={"all": True}, set_to=["car"])
    with pytest.raises(InvalidInput, match="not both"):
        edits.edit_labels(studio, project="pets", selection={"all": True}, set_to=["cat"], add=["dog"])
    with pytest.raises(InvalidInput, match="redo or undo the original"):
        first = edits.edit_tags(studio, project="pets", selection={"all": True}, add=["t"])
        undo = edits.undo(studio, project="pets")
        assert undo["reverts"] == first["change_id"]
        edits.undo(studio, project="pets", change_id=undo["change_id"])
    with pytest.raises(NotFound):
        edits.undo(studio, project="other", change_id=first["change_id"])  # another project's change
    assert labels(studio) == before and tags(studio, "x") == set()


def test_bulk_edit_of_every_sample_is_one_change(studio: Studio) -> None:
    """3,000 samples tagged and relabelled by a filter, each as one change, undone in one step."""
    p = projects.create_project(studio, name="big", task="classification")
    with studio.sessions.begin() as s:
        s.execute(
            insert(Sample),
            [
                {
                    "project_id": p["id"],
                    "sha256": f"{i:064x}",
                    "name": f"{i:05d}.jpg",
                    "storage": "reference",
                    "path": f"/nowhere/{i}.jpg",
                    "width": 10,
                    "height": 10,
                    "format": "JPEG",
                    "bytes": 1,
                    "phash": "0" * 16,
                    "exif": {},
                }
                for i in range(3000)
            ],
        )
    tagged = edits.edit_tags(studio, project="big", selection={"all": True}, add=["new"])
    assert tagged["changed"] == 3000
    relabel = edits.edit_labels(
        studio, project="big", selection={"filter": {"tag": "new"}}, set_to=["thing"], create_classes=True
    )
    assert relabel["changed"] == 3000
    assert samples.class_counts(studio, project="big") == {"thing": 3000}
    edits.undo(studio, project="big")
    assert samples.class_counts(studio, project="big") in ({}, {"thing": 0})
    with studio.sessions() as s:
        assert len(s.scalars(select(Sample.id).where(Sample.project_id == p["id"])).all()) == 3000


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def test_api(client: TestClient, studio: Studio, pets: dict[str, list[int]]) -> None:
    cat = pets["cat"][0]
    r = client.post("/api/v1/projects/pets/tags", json={"filter": {"label": "dog"}, "add": ["review"]})
    assert r.status_code == 200 and r.json()["changed"] == 5
    r = client.patch(
        f"/api/v1/samples/{cat}",
        json={"labels": ["dog"], "expected_labels": ["cat"], "add_tags": ["fixed"]},
        headers={"x-vistudio-client": "web"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sample"]["labels"] == ["dog"] and body["sample"]["tags"] == ["fixed"]
    assert [c["kind"] for c in body["changes"]] == ["labels", "tags"]
    # the same edit again from a client that still thinks it is a cat: 409 with the current labels
    r = client.patch(f"/api/v1/samples/{cat}", json={"labels": ["fox"], "expected_labels": ["cat"]})
    assert r.status_code == 409 and r.json()["error"]["details"]["current"] == {str(cat): ["dog"]}
    r = client.get("/api/v1/projects/pets/changes", params={"sample_id": cat})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(c["kind"], c["actor"]) for c in items] == [("tags", "web"), ("labels", "web")]
    assert items[1]["before"] == ["cat"] and items[1]["after"] == ["dog"]
    r = client.post("/api/v1/projects/pets/undo", json={})
    assert r.status_code == 200 and r.json()["reverts"] == items[0]["change_id"]
    r = client.post("/api/v1/projects/pets/redo", json={"change_id": items[0]["change_id"]})
    assert r.status_code == 200
    r = client.post("/api/v1/projects/pets/labels", json={"all": True, "set": ["owl"]})
    assert r.status_code == 422 and r.json()["error"]["details"]["unknown_classes"] == ["owl"]
    for path, body, status in [
        ("/api/v1/projects/pets/tags", {"all": True, "add": ["x"], "colour": 1}, 422),
        ("/api/v1/projects/pets/tags", {"filter": {"colour": "red"}, "add": ["x"]}, 422),
        ("/api/v1/projects/pets/tags", {"sample_ids": ["a"], "add": ["x"]}, 422),
        ("/api/v1/projects/pets/tags", {"sample_ids": [1] * 100_001, "add": ["x"]}, 422),
        ("/api/v1/projects/pets/tags", {"all": True, "add": ["x" * 201]}, 422),
        ("/api/v1/projects/nope/tags", {"all": True, "add": ["x"]}, 404),
        ("/api/v1/projects/pets/undo", {"change_id": 0}, 422),
        ("/api/v1/projects/pets/undo", {"change_id": 10**9}, 404),
    ]:
        r = client.post(path, json=body)
        assert r.status_code == status, (path, body, r.text)
    assert client.patch("/api/v1/samples/999999", json={"add_tags": ["x"]}).status_code == 404
    assert client.patch(f"/api/v1/samples/{cat}", json={}).status_code == 422
    assert client.patch(f"/api/v1/samples/{cat}", json={"labels": "cat"}).status_code == 422


def test_cli(studio: Studio, pets: dict[str, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    ws = studio.home
    code, out = cli(capsys, ws, "tag", "pets", "--add", "night", "--label", "fox")
    assert code == 0 and out["changed"] == 4 and out["change_id"]
    code, out = cli(capsys, ws, "label", "pets", str(pets["cat"][0]), "--set", "dog")
    assert code == 0 and out["changed"] == 1
    assert out["actor"].startswith("cli")
    code, out = cli(capsys, ws, "label", "pets", str(pets["cat"][0]), "--set", "owl")
    assert code != 0 and "--create-class" in out["error"]["message"]
    code, out = cli(capsys, ws, "changes", "pets", "--sample", str(pets["cat"][0]))
    assert code == 0 and out["items"][0]["after"] == ["dog"]
    code, out = cli(capsys, ws, "undo", "pets")
    assert code == 0 and out["changed"] == 1
    assert labels(studio)[pets["cat"][0]] == ["cat"]
    code, out = cli(capsys, ws, "tag", "pets", "--add", "x")
    assert code != 0 and "SAMPLE_ID" in out["error"]["message"]
    code, out = cli(capsys, ws, "redo", "pets")
    assert code == 0 and labels(studio)[pets["cat"][0]] == ["dog"]
