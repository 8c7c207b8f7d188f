"""The Search page through an in-process client: states, fragments and friendly errors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from web_factories import make_shapes_zip, web_settings

from embed_factories import TINY, run_embedding, tiny_embed_settings
from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.services import ingest, projects
from vistudio.studio import Studio, open_studio

HX = {"HX-Request": "true"}


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Studio]:
    torch.set_num_threads(1)
    studio = open_studio(web_settings(tmp_path, embed=tiny_embed_settings()))
    projects.create_project(studio, name="shapes", task="classification")
    job = ingest.start_import(
        studio, project="shapes", source=make_shapes_zip(tmp_path / "s.zip", per_class=3)
    )
    Worker(studio).run_to_end(job["id"])
    yield studio
    studio.close()


@pytest.fixture
def client(tiny: Studio) -> TestClient:
    return TestClient(create_app(tiny))


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (30, 30), (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_empty_state_then_embedding_then_results(client: TestClient, tiny: Studio) -> None:
    r = client.get("/projects/shapes/search")
    assert r.status_code == 200
    assert 'data-testid="no-embeddings"' in r.text and "Start embedding" in r.text and TINY in r.text
    assert 'aria-current="page">Search<' in r.text

    r = client.post("/projects/shapes/search/embed")
    assert r.status_code == 200 and 'aria-label="Embedding progress"' in r.text
    assert 'hx-trigger="every 1s"' in r.text  # it polls while the job runs
    job_id = tiny.queue.list(kind="embed")[0][0].id
    Worker(tiny).run_one(job_id)
    r = client.get(f"/projects/shapes/search/status?was={job_id}", headers=HX)
    assert r.headers.get("HX-Refresh") == "true"  # done: the page reloads itself
    r = client.get("/projects/shapes/search/status", headers=HX)
    assert 'data-testid="embedded-count">9<' in r.text and "every 1s" not in r.text

    r = client.get("/projects/shapes/search", params={"text": "a circle", "label": "circle", "k": "20"})
    assert r.status_code == 200 and r.text.count('data-testid="result"') == 3
    assert "text similarity" in r.text and "filters: label=circle" in r.text
    assert (
        "More like this" in r.text and "/projects/shapes/search?label=circle&amp;k=20&amp;sample=" in r.text
    )
    frag = client.get("/projects/shapes/search", params={"sample": "2"}, headers=HX)
    assert frag.status_code == 200 and frag.text.lstrip().startswith('<section id="results"')
    assert "similar to sample 2" in frag.text and frag.text.count('data-testid="result"') == 8

    r = client.post(
        "/projects/shapes/search/image", files={"file": ("g.png", _png(), "image/png")}, headers=HX
    )
    assert r.status_code == 200 and "uploaded image &#39;g.png&#39;" in r.text


def test_bad_input_shows_inline_errors(client: TestClient, tiny: Studio) -> None:
    run_embedding(tiny, "shapes")
    for params in (
        {"sample": "abc"},
        {"text": "x", "k": "7"},
        {"text": "x", "taken_from": "not-a-date"},
        {"sample": "99999"},
    ):
        r = client.get("/projects/shapes/search", params=params, headers=HX)
        assert r.status_code in (404, 422) and 'data-testid="search-error"' in r.text, params
    r = client.get("/projects/shapes/search", params={"text": "x", "taken_from": "2030-01-01"})
    assert r.status_code == 200 and 'data-testid="no-results"' in r.text
    r = client.post(
        "/projects/shapes/search/image", files={"file": ("x.png", b"junk", "image/png")}, headers=HX
    )
    assert r.status_code == 422 and "not an image" in r.text
    r = client.get("/projects/nope/search")
    assert r.status_code == 404 and "not found" in r.text


def test_unavailable_model_is_explained_where_the_button_would_be(tmp_path: Path) -> None:
    studio = open_studio(web_settings(tmp_path))  # the default model: not cached on this machine
    try:
        projects.create_project(studio, name="p", task="library")
        job = ingest.start_import(
            studio, project="p", source=make_shapes_zip(tmp_path / "s.zip", per_class=1)
        )
        Worker(studio).run_one(job["id"])
        client = TestClient(create_app(studio))
        r = client.get("/projects/p/search")
        assert 'data-testid="model-unavailable"' in r.text and "VISTUDIO_EMBED__MODEL" in r.text
        assert 'data-testid="start-embedding"' not in r.text
        r = client.post("/projects/p/search/embed", headers=HX)
        assert r.status_code == 503 and r.headers["HX-Retarget"] == "#embed-error"
        assert "VISTUDIO_EMBED__CHECKPOINT" in r.text
    finally:
        studio.close()


def test_a_failed_embedding_says_why(client: TestClient, tiny: Studio, tmp_path: Path) -> None:
    from embed_factories import TINY_CONFIG
    from vistudio.services import embeddings

    checkpoint = tmp_path / "model.pt"
    torch.save({"model_cfg": TINY_CONFIG, "state_dict": {}}, checkpoint)
    job = embeddings.start_embedding(tiny, project="shapes", checkpoint=checkpoint)
    checkpoint.unlink()  # gone before a worker got to it
    done = Worker(tiny).run_one(job["id"])
    assert done is not None and done.status == "failed"
    r = client.get("/projects/shapes/search/status", headers=HX)
    assert 'data-testid="embed-last-job"' in r.text and "checkpoint file not found" in r.text
    assert 'data-testid="start-embedding"' in r.text  # and it can be started again
