"""Likely label errors: with 10 % of the labels flipped on purpose, confident learning on
out-of-sample probabilities ranks at least 80 % of the flipped images in its top 15 %."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eval_factories import digits_project, make_experiment, run_job, workspace_settings
from factories import cli
from vistudio.api.app import create_app
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services import edits, label_errors, samples
from vistudio.studio import Studio, open_studio


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, set[int]]]:
    """Digits 0–4 × 40 with 10 % of the labels moved to another digit, and an experiment whose
    model learned from them (its features only: the probabilities are cross-validated)."""
    root = tmp_path_factory.mktemp("label-errors")
    studio = open_studio(workspace_settings(root))
    digits_project(studio, root, classes=(0, 1, 2, 3, 4), per_class=40)
    items = samples.list_samples(studio, project="digits", limit=500)["items"]
    rng = random.Random(1)
    flipped = set()
    for item in rng.sample(items, len(items) // 10):
        other = rng.choice([c for c in "01234" if c != item["labels"][0]])
        edits.edit_labels(studio, project="digits", selection={"sample_ids": [item["id"]]}, set_to=[other])
        flipped.add(item["id"])
    make_experiment(studio, project="digits", name="exp1", train_steps=6)
    started = label_errors.start_label_errors(studio, project="digits", experiment="exp1")
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    yield studio, flipped
    studio.close()


def test_flipped_labels_rank_first(noisy: tuple[Studio, set[int]]) -> None:
    studio, flipped = noisy
    ranked = label_errors.list_label_errors(
        studio, project="digits", experiment="exp1", flagged_only=False, limit=500
    )
    assert ranked["total"] == ranked["scored"] == 200
    scores = [it["score"] for it in ranked["items"]]
    assert scores == sorted(scores, reverse=True)
    top = {it["sample_id"] for it in ranked["items"][: int(0.15 * len(ranked["items"]))]}
    recall = len(top & flipped) / len(flipped)
    assert recall >= 0.8, recall
    # the suggestion of a flipped image is mostly its true digit (its name's folder)
    by_id = {it["sample_id"]: it for it in ranked["items"]}
    right = sum(by_id[i]["suggested"] == by_id[i]["name"].split("/")[0] for i in flipped)
    assert right >= 0.7 * len(flipped)


def test_accept_reject_and_interfaces(
    noisy: tuple[Studio, set[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    studio, _ = noisy
    listed = label_errors.list_label_errors(studio, project="digits", experiment="exp1")
    issues = listed["items"]
    assert issues and all(it["decision"] is None and it["flagged"] for it in issues)
    first, second = issues[0], issues[1]
    accepted = label_errors.decide(
        studio, project="digits", experiment="exp1", sample_id=first["sample_id"], accept=True
    )
    assert accepted["decision"] == "accepted" and accepted["change_id"]
    assert samples.get_sample(studio, first["sample_id"])["labels"] == [first["suggested"]]
    label_errors.decide(
        studio, project="digits", experiment="exp1", sample_id=second["sample_id"], accept=False
    )
    assert samples.get_sample(studio, second["sample_id"])["labels"] == [second["given"]]
    left = label_errors.list_label_errors(studio, project="digits", experiment="exp1")
    assert left["total"] == listed["total"] - 2
    with pytest.raises(Conflict, match="already accepted"):
        label_errors.decide(
            studio, project="digits", experiment="exp1", sample_id=first["sample_id"], accept=False
        )
    with pytest.raises(NotFound):
        label_errors.decide(studio, project="digits", experiment="exp1", sample_id=10**9, accept=True)
    edits.undo(studio, project="digits")  # the accept is an ordinary change: undoable
    assert samples.get_sample(studio, first["sample_id"])["labels"] == [first["given"]]
    # … and its suggestion is open again; a rejection can be taken back
    reopened = label_errors.list_label_errors(studio, project="digits", experiment="exp1")
    assert reopened["total"] == listed["total"] - 1 and reopened["items"][0]["decision"] is None
    back = label_errors.decide(
        studio, project="digits", experiment="exp1", sample_id=second["sample_id"], accept=None
    )
    assert back["decision"] is None
    assert (
        label_errors.list_label_errors(studio, project="digits", experiment="exp1")["total"]
        == listed["total"]
    )
    with pytest.raises(Conflict, match="nothing to take back"):
        label_errors.decide(
            studio, project="digits", experiment="exp1", sample_id=second["sample_id"], accept=None
        )
    code, out = cli(capsys, studio.home, "label-errors", "digits", "exp1", "--limit", "3")
    assert code == 0 and len(out["items"]) == 3
    assert set(out["items"][0]) >= {"sample_id", "name", "given", "suggested", "score"}
    with TestClient(create_app(studio)) as client:
        r = client.get("/api/v1/projects/digits/experiments/exp1/label-errors", params={"limit": 2})
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        sid = r.json()["items"][0]["sample_id"]
        r = client.post(
            f"/api/v1/projects/digits/experiments/exp1/label-errors/{sid}", json={"accept": False}
        )
        assert r.status_code == 200 and r.json()["decision"] == "rejected"
        assert (
            client.post("/api/v1/projects/digits/experiments/nope/label-errors", json={}).status_code == 404
        )
        r = client.post("/api/v1/projects/digits/experiments/exp1/label-errors", json={"folds": 1})
        assert r.status_code == 422


def test_refused_for_other_tasks_and_tiny_sets(tmp_path: Path, studio: Studio) -> None:
    from vistudio.services import projects

    projects.create_project(studio, name="boxes", task="detection")
    with pytest.raises((InvalidInput, NotFound)):
        label_errors.start_label_errors(studio, project="boxes", experiment="none")
    digits_project(studio, tmp_path, name="few", per_class=3)
    make_experiment(studio, project="few", name="e")
    started = label_errors.start_label_errors(studio, project="few", experiment="e")
    job: dict[str, Any] = run_job(studio, started["job"]["id"])
    assert job["status"] in ("failed", "dead") and "too few" in str(job["error"])


def test_tag_the_mistakes_of_an_evaluation(
    noisy: tuple[Studio, set[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.services import evaluation

    studio, _ = noisy
    started = evaluation.start_evaluation(studio, project="digits", experiment="exp1", subsets="val,test")
    assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
    wrong = evaluation.list_results(studio, project="digits", experiment="exp1", correct=False, limit=500)
    wrong_ids = {r["sample_id"] for r in wrong["items"]}
    assert wrong_ids  # a briefly trained model on noisy labels makes mistakes
    code, out = cli(capsys, studio.home, "evaluation", "tag", "digits", "exp1", "--add", "mistake", "--wrong")
    assert code == 0 and out["changed"] == len(wrong_ids)
    assert out["request"]["results"] == {"experiment": "exp1", "correct": False}
    tagged = samples.list_samples(studio, project="digits", tag="mistake", limit=500)["items"]
    assert {t["id"] for t in tagged} == wrong_ids
    with TestClient(create_app(studio)) as client:
        r = client.post(
            "/api/v1/evaluations/digits/exp1/tag",
            json={"remove": ["mistake"], "subset": "val", "correct": False},
        )
        assert r.status_code == 200
        val_wrong = {x["sample_id"] for x in wrong["items"] if x["subset"] == "val"}
        assert r.json()["changed"] == len(val_wrong)
        assert (
            client.post(
                "/api/v1/evaluations/digits/exp1/tag", json={"add": ["x"], "outcome": "fp"}
            ).status_code
            == 400
        )
        assert (
            client.post("/api/v1/evaluations/digits/exp1/tag", json={"add": ["x"], "bogus": 1}).status_code
            == 422
        )
    edits.undo(studio, project="digits")
    assert len(samples.list_samples(studio, project="digits", tag="mistake", limit=500)["items"]) == len(
        wrong_ids
    )
