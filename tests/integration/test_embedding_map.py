"""The embedding map: an experiment's features projected to 2-D (UMAP, PCA), served with the
colouring data, through the service, the API and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from eval_factories import digits_project, make_experiment, run_job
from factories import cli
from vistudio.api.app import create_app
from vistudio.errors import BadRequest, Conflict, NotFound
from vistudio.services import edits, embedding_map, evaluation, samples
from vistudio.services.embedding_map import project_2d
from vistudio.studio import Studio


def test_projection_scales_to_the_unit_square() -> None:
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.1, size=(40, 8)) for c in (0.0, 5.0)]).astype(np.float32)
    xy, used = project_2d(blobs, "pca")
    assert used == "pca" and xy.shape == (80, 2) and xy.min() >= 0 and xy.max() <= 1 + 1e-6
    assert np.isclose(max(xy[:, 0].max(), xy[:, 1].max()), 1.0)  # the longer side spans 0..1
    # the two blobs stay apart: each point's nearest neighbour is of its own blob
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(80) * 9
    assert (d.argmin(1) // 40 == np.arange(80) // 40).all()
    assert project_2d(blobs[:2], "auto")[0].shape == (2, 2) and project_2d(blobs[:0], "auto")[0].shape == (
        0,
        2,
    )


def test_map_of_an_experiment(studio: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digits_project(studio, tmp_path)  # digits 0, 1, 2 × 20
    make_experiment(studio, project="digits", name="exp1", train_steps=4)
    with pytest.raises(NotFound, match="not been computed"):
        embedding_map.get_map(studio, project="digits", source="experiment", experiment="exp1")
    with pytest.raises(Conflict, match="no complete set of embeddings"):
        embedding_map.start_map(studio, project="digits")
    with pytest.raises(BadRequest):
        embedding_map.start_map(
            studio, project="digits", source="experiment", experiment="exp1", method="tsne"
        )
    started = embedding_map.start_map(
        studio, project="digits", source="experiment", experiment="exp1", method="umap"
    )
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded" and job["result"]["method"] == "umap", job
    m = embedding_map.get_map(studio, project="digits", source="experiment", experiment="exp1")
    assert m["points"] == 60 == len(m["ids"]) == len(m["x"]) == len(m["label"])
    assert m["classes"] == ["0", "1", "2"] and set(m["label"]) == {0, 1, 2}
    xy = np.array([m["x"], m["y"]]).T
    assert xy.min() >= 0 and xy.max() <= 1
    # near images are alike: most points' nearest neighbour on the map has their digit
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(60) * 9
    labels = np.array(m["label"])
    assert (labels[d.argmin(1)] == labels).mean() >= 0.8
    # colouring: a tag, and the outcome of an evaluation
    first = m["ids"][:5]
    edits.edit_tags(studio, project="digits", selection={"sample_ids": first}, add=["picked"])
    tagged = embedding_map.get_map(
        studio, project="digits", source="experiment", experiment="exp1", tag="picked"
    )
    assert [i for i, t in zip(tagged["ids"], tagged["tagged"], strict=True) if t] == first
    with pytest.raises(Conflict, match="no finished evaluation"):
        embedding_map.get_map(
            studio, project="digits", source="experiment", experiment="exp1", outcome="exp1"
        )
    ev = evaluation.start_evaluation(studio, project="digits", experiment="exp1", subsets="test")
    assert run_job(studio, ev["job"]["id"])["status"] == "succeeded"
    coloured = embedding_map.get_map(
        studio, project="digits", source="experiment", experiment="exp1", outcome="exp1"
    )
    results = evaluation.list_results(studio, project="digits", experiment="exp1", limit=500)["items"]
    right = {r["sample_id"]: int(r["correct"]) for r in results}
    assert dict(zip(coloured["ids"], coloured["outcome"], strict=True)) == {
        i: right.get(i, -1) for i in coloured["ids"]
    }
    # the API and the CLI
    with TestClient(create_app(studio)) as client:
        r = client.get("/api/v1/projects/digits/map", params={"source": "experiment", "experiment": "exp1"})
        assert r.status_code == 200 and r.json()["points"] == 60
        assert client.get("/api/v1/projects/digits/map").status_code == 404
        r = client.post(
            "/api/v1/projects/digits/map",
            json={"source": "experiment", "experiment": "exp1", "method": "pca"},
        )
        assert r.status_code == 202
        assert run_job(studio, r.json()["job"]["id"])["result"]["method"] == "pca"
        assert client.post("/api/v1/projects/digits/map", json={"method": "tsne"}).status_code == 422
        assert client.post("/api/v1/projects/digits/map", json={}).status_code == 409
    code, out = cli(capsys, studio.home, "map", "digits", "--experiment", "exp1")
    assert code == 0 and out["map"]["points"] == 60 and "ids" not in out["map"]
    # a sample deleted since is not drawn
    sid = m["ids"][0]
    with studio.sessions.begin() as s:
        from vistudio.db import Sample

        s.delete(s.get(Sample, sid))
    assert (
        sid
        not in embedding_map.get_map(studio, project="digits", source="experiment", experiment="exp1")["ids"]
    )
    assert samples.list_samples(studio, project="digits")["total"] == 59
