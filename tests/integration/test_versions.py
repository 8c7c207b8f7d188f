"""Dataset versions: snapshots, their labels after later edits, diffs, and experiments that train
and evaluate on their version whatever is edited afterwards."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eval_factories import digits_project, make_experiment, run_job
from factories import cli, make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.db.versions import DatasetVersion
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services import edits, evaluation, experiments, projects, samples, versions
from vistudio.services.versions import decode_members, encode_members, version_labels
from vistudio.studio import Studio


def current(studio: Studio, project: str) -> dict[int, list[str]]:
    return {i["id"]: i["labels"] for i in samples.list_samples(studio, project=project, limit=500)["items"]}


def labels_of(studio: Studio, project: str, ref: str) -> dict[int, list[str]]:
    with studio.sessions() as s:
        p = projects.find_project(s, project)
        v = s.query(DatasetVersion).filter_by(project_id=p.id, name=ref).one()
        return version_labels(s, v)


def test_members_encoding_round_trips() -> None:
    for ids in ([], [1], [5, 3, 2**40, 7], list(range(1, 100_000, 3))):
        assert decode_members(encode_members(ids)) == sorted(ids)
    assert len(encode_members(range(1, 100_001))) < 2_000  # 100,000 consecutive ids: a few hundred bytes


def test_versions_keep_their_labels_through_random_edits(studio: Studio, tmp_path: Path) -> None:
    """After each random edit (set, add, remove, undo, redo) a version is made and the labels of
    that moment recorded; at the end every version still has exactly its labels."""
    projects.create_project(studio, name="pets", task="classification")
    assert run_import(studio, "pets", make_class_folders(tmp_path / "src", {"cat": 5, "dog": 5, "fox": 5}))[
        "status"
    ] == "succeeded"
    ids = sorted(current(studio, "pets"))
    rng = random.Random(7)
    expected: dict[str, dict[int, list[str]]] = {}
    v0 = versions.create_version(studio, project="pets", name="start")
    expected["start"] = current(studio, "pets")
    for step in range(14):
        action = rng.choice(["set", "add", "remove", "undo", "redo"])
        chosen = rng.sample(ids, rng.randint(1, 6))
        cls = rng.choice(["cat", "dog", "fox", "owl"])
        try:
            if action == "set":
                edits.edit_labels(
                    studio, project="pets", selection={"sample_ids": chosen}, set_to=[cls], create_classes=True
                )
            elif action == "add":
                edits.edit_labels(
                    studio, project="pets", selection={"sample_ids": chosen}, add=[cls], create_classes=True
                )
            elif action == "remove":
                edits.edit_labels(studio, project="pets", selection={"sample_ids": chosen}, remove=[cls])
            elif action == "undo":
                edits.undo(studio, project="pets")
            else:
                edits.redo(studio, project="pets")
        except Conflict:
            pass  # nothing to undo or redo, or changed since: the state is unchanged
        name = f"s{step}"
        versions.create_version(studio, project="pets", name=name)
        expected[name] = current(studio, "pets")
    assert edits.history(studio, project="pets")["total"] >= 8  # most steps did change something
    assert len({tuple(sorted((k, tuple(v)) for k, v in e.items())) for e in expected.values()}) >= 6
    for name, labels in expected.items():
        assert labels_of(studio, "pets", name) == labels, name
    listed = versions.list_versions(studio, project="pets")
    assert listed["total"] == 15 and listed["items"][0]["name"] == "s13"
    assert listed["items"][-1]["id"] == v0["id"] and listed["items"][-1]["number"] == 1
    # the diff counts what changed between two versions, per class
    d = versions.diff_versions(studio, project="pets", a="start", b="s13")
    a, b = expected["start"], expected["s13"]
    changed = [i for i in ids if a[i] != b[i]]
    assert d["labels_changed"] == len(changed) and d["changed_ids"] == changed
    assert d["changed_labels"] == [{"sample_id": i, "a": a[i], "b": b[i]} for i in changed]
    for c, n in d["per_class"].items():
        assert n["gained"] == sum(c in b[i] and c not in a[i] for i in ids)
        assert n["lost"] == sum(c in a[i] and c not in b[i] for i in ids)
    assert d["added"] == d["removed"] == 0


def test_version_errors_and_interfaces(
    studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "src", {"cat": 3, "dog": 3}))
    versions.create_version(studio, project="pets", name="first")
    with pytest.raises(Conflict, match="already exists"):
        versions.create_version(studio, project="pets", name="first")
    for bad in ("../x", " ", "a" * 101, "-lead"):
        if bad.strip():
            with pytest.raises(InvalidInput):
                versions.create_version(studio, project="pets", name=bad)
    with pytest.raises(NotFound):
        versions.get_version(studio, project="pets", version="nope")
    assert versions.get_version(studio, project="pets", version="v1")["name"] == "first"
    assert versions.get_version(studio, project="pets", version="1")["edited_since"] is False
    # new samples imported after a version are "added" in the diff
    run_import(studio, "pets", make_class_folders(tmp_path / "more", {"cat": 2}, start_seed=50))
    code, out = cli(capsys, studio.home, "version", "create", "pets", "--name", "second")
    assert code == 0 and out["version"]["samples"] == 8
    code, out = cli(capsys, studio.home, "version", "diff", "pets", "first", "second")
    assert code == 0 and out["added"] == 2 and out["removed"] == 0
    code, out = cli(capsys, studio.home, "version", "list", "pets")
    assert code == 0 and [v["name"] for v in out["items"]] == ["second", "first"]
    with TestClient(create_app(studio)) as client:
        r = client.post("/api/v1/projects/pets/versions", json={"name": "third"})
        assert r.status_code == 201 and r.json()["version"]["number"] == 3
        r = client.get("/api/v1/projects/pets/versions/diff", params={"a": "v1", "b": "third"})
        assert r.status_code == 200 and r.json()["added"] == 2
        assert client.get("/api/v1/projects/pets/versions/v9").status_code == 404
        assert client.post("/api/v1/projects/pets/versions", json={"name": "third"}).status_code == 409
        assert client.post("/api/v1/projects/pets/versions", json={"name": "a/b"}).status_code == 422
        assert client.post("/api/v1/projects/pets/versions", json={"other": 1}).status_code == 422


def test_an_experiment_evaluates_on_its_version_whatever_is_edited_after(studio: Studio, tmp_path: Path) -> None:
    digits_project(studio, tmp_path)
    exp = make_experiment(studio, project="digits", name="exp1", train_steps=3)

    def evaluate(**kw: Any) -> dict[str, Any]:
        started = evaluation.start_evaluation(studio, project="digits", experiment="exp1", subsets="val,test", **kw)
        assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
        ev = evaluation.get_evaluation(studio, project="digits", experiment="exp1")
        results = evaluation.list_results(studio, project="digits", experiment="exp1", limit=500)["items"]
        return {"metrics": ev["metrics"], "labels": ev["labels"], "results": results}

    before = evaluate()
    assert before["labels"] == "version"
    detail = experiments.get_experiment(studio, project="digits", experiment="exp1")
    assert detail["version"]["labels_changed_since"] == 0 and detail["version"]["name"] == "v1"
    # relabel a third of the evaluated images to another digit
    evaluated = [r["sample_id"] for r in before["results"]]
    flips = evaluated[::3]
    for sid in flips:
        given = current(studio, "digits")[sid][0]
        other = next(c for c in exp["classes"] if c != given)
        edits.edit_labels(studio, project="digits", selection={"sample_ids": [sid]}, set_to=[other])
    detail = experiments.get_experiment(studio, project="digits", experiment="exp1")
    assert detail["version"]["labels_changed_since"] == len(flips)
    with TestClient(create_app(studio)) as client:  # the experiment page says so, and how to evaluate now
        page = client.get("/projects/digits/train/experiments/exp1", headers={"HX-Request": "true"}).text
        assert 'data-testid="labels-changed"' in page and f"The labels of {len(flips)} samples" in page
        assert 'data-testid="train-version">v1<' in page
        assert 'id="ef-labels"' in client.get("/projects/digits/evaluate", params={"experiment": "exp1"}).text
    # on its version: bit for bit the same evaluation
    again = evaluate()
    assert again["metrics"] == before["metrics"]
    assert [(r["sample_id"], r["true_index"], r["pred_index"], r["confidence"]) for r in again["results"]] == [
        (r["sample_id"], r["true_index"], r["pred_index"], r["confidence"]) for r in before["results"]
    ]
    # against the current labels: the flipped images have their new truth
    now = evaluate(labels="current")
    assert now["labels"] == "current"
    truths = {r["sample_id"]: r["true_index"] for r in now["results"]}
    old = {r["sample_id"]: r["true_index"] for r in before["results"]}
    assert {sid for sid in truths if truths[sid] != old[sid]} == set(flips)
    with pytest.raises(Exception, match="labels must be"):
        evaluation.start_evaluation(studio, project="digits", experiment="exp1", labels="tomorrow")


def test_starting_an_experiment_records_a_version(studio: Studio, tmp_path: Path) -> None:
    digits_project(studio, tmp_path)
    config = {"model": "resnet18", "pretrained": False, "image_size": 32, "epochs": 1, "batch_size": 8}
    first = experiments.start_experiment(studio, project="digits", config=config, name="a")["experiment"]
    second = experiments.start_experiment(studio, project="digits", config=config, name="b")["experiment"]
    assert first["version_id"] is not None and second["version_id"] == first["version_id"]  # nothing changed
    sid = next(iter(current(studio, "digits")))
    edits.edit_tags(studio, project="digits", selection={"sample_ids": [sid]}, add=["seen"])
    third = experiments.start_experiment(studio, project="digits", config=config, name="c")["experiment"]
    assert third["version_id"] != first["version_id"]  # the history moved on: a new automatic version
    listed = versions.list_versions(studio, project="digits")["items"]
    assert [v["auto"] for v in listed] == [True, True] and listed[0]["actor"] == "experiment c"
