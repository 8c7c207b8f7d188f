"""Captions through the product's code with a real (tiny, self-trained) BLIP loaded from a folder
with the Hub offline: the job captions a project's photos with the colour and shape they show
(≥ 0.9 on images the model never saw), the words are found by the full-text search, a user's
caption wins and survives a re-run, the CLI and the API, and the clear errors: a model not on this
machine while offline, a folder that is not a model, bad captions."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from caption_model import COLOURS, SHAPES, draw, tiny_blip
from factories import run_import
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.config import CaptionSettings, Settings
from vistudio.errors import ModelUnavailable
from vistudio.jobs.worker import Worker
from vistudio.services import captions, projects, samples, search
from vistudio.studio import open_studio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return tiny_blip()


@pytest.fixture
def cap_settings(settings: Settings, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return settings.model_copy(
        update={"captions": CaptionSettings(model=str(model_dir), num_beams=1, batch_size=8)}
    )


def _photos(folder: Path, n: int, seed: int) -> dict[str, tuple[str, str]]:
    """``n`` PNGs of a coloured shape each (fresh: a seed the model was not trained with) → name:
    (colour, shape)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        name = f"img{i:03d}.png"
        draw(colour, shape, rng).save(folder / name)
        truth[name] = (colour, shape)
    return truth


def test_captions_job_search_and_the_users_own(cap_settings: Settings, tmp_path: Path) -> None:
    studio = open_studio(cap_settings)
    try:
        projects.create_project(studio, name="shapes", task="library")
        truth = _photos(tmp_path / "shapes", 40, seed=987)
        assert run_import(studio, "shapes", tmp_path / "shapes")["status"] == "succeeded"
        job = captions.start_captions(studio, project="shapes")
        Worker(studio).run_to_end(job["id"])
        done = studio.queue.get(job["id"])
        assert done is not None and done.status == "succeeded", done.error
        assert done.result["captioned"] == 40 and done.result["skipped"] == []
        items = samples.list_samples(studio, project="shapes", limit=100)["items"]
        right_colour = right_shape = 0
        for it in items:
            caption = captions.captions_of(studio, it["id"])
            colour, shape = truth[it["name"]]
            words = caption["caption"].split()
            right_colour += colour in words
            right_shape += shape in words
            assert caption["source"] == str(cap_settings.captions.model)
        assert right_colour / len(items) >= 0.9 and right_shape / len(items) >= 0.9, (
            right_colour,
            right_shape,
        )
        # the words of the captions are found by the full-text search
        reds = {
            it["id"] for it in items if captions.captions_of(studio, it["id"])["caption"].split()[1] == "red"
        }
        found = {i["sample_id"] for i in search.search(studio, project="shapes", query="red", k=100)["items"]}
        assert reds and found == reds
        # the user's caption wins, is searchable, and a re-run neither overwrites nor repeats
        first = items[0]["id"]
        mine = captions.set_caption(studio, first, "  my   favourite\tkite ")
        assert mine["caption"] == "my favourite kite" and mine["source"] == "user"
        assert {i["sample_id"] for i in search.search(studio, project="shapes", query="kite")["items"]} == {
            first
        }
        again = captions.start_captions(studio, project="shapes")
        Worker(studio).run_to_end(again["id"])
        rerun = studio.queue.get(again["id"])
        assert rerun is not None and rerun.result["captioned"] == 0
        assert captions.captions_of(studio, first)["caption"] == "my favourite kite"
        assert samples.get_sample(studio, first)["caption"] == "my favourite kite"
        back = captions.set_caption(studio, first, "")
        assert back["source"] != "user" and back["caption"]
        assert captions.caption_status(studio, project="shapes") == {
            "model": str(cap_settings.captions.model),
            "photos": 40,
            "captioned": 40,
        }
        with pytest.raises(Exception, match="at most"):
            captions.set_caption(studio, first, "x" * 2001)
        with pytest.raises(Exception, match="control"):
            captions.set_caption(studio, first, "a\x00b")
        with pytest.raises(Exception, match="not found"):
            captions.set_caption(studio, 10**9, "x")
    finally:
        studio.close()


def test_api_and_cli(
    cap_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = open_studio(cap_settings)
    try:
        projects.create_project(studio, name="few", task="library")
        _photos(tmp_path / "few", 3, seed=5)
        run_import(studio, "few", tmp_path / "few")
        sid = samples.list_samples(studio, project="few")["items"][0]["id"]
        with TestClient(create_app(studio)) as client:
            started = client.post("/api/v1/projects/few/captions")
            assert started.status_code == 202, started.text
            Worker(studio).run_to_end(started.json()["job"]["id"])
            got = client.get(f"/api/v1/samples/{sid}/captions")
            assert got.status_code == 200 and got.json()["caption"]
            put = client.put(f"/api/v1/samples/{sid}/caption", json={"text": "mine"})
            assert put.status_code == 200 and put.json()["source"] == "user"
            assert client.put(f"/api/v1/samples/{sid}/caption", json={"text": "x" * 3000}).status_code == 422
            assert client.put(f"/api/v1/samples/{sid}/caption", json={"text": 5}).status_code == 422
            assert client.put("/api/v1/samples/999999/caption", json={"text": "x"}).status_code == 404
            assert client.post("/api/v1/projects/nope/captions").status_code == 404
            status = client.get("/api/v1/projects/few/captions").json()
            assert status["photos"] == 3 and status["captioned"] == 3
    finally:
        studio.close()
    ws = str(cap_settings.home)

    def cli(*args: str) -> tuple[int, Any]:
        code = main(["--workspace", ws, "--json", *args])
        return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    # the CLI reads the model from the environment (VISTUDIO_CAPTIONS__MODEL): a folder
    monkeypatch.setenv("VISTUDIO_CAPTIONS__MODEL", str(cap_settings.captions.model))
    code, out = cli("captions", "few", "--sample", str(sid))
    assert code == 0 and out["caption"] == "mine"
    code, out = cli("captions", "few", "--sample", str(sid), "--set", "")
    assert code == 0 and out["source"] != "user"
    code, out = cli("captions", "few")
    assert code == 0 and out["result"]["captioned"] == 0  # every photo has one already


def test_clear_errors_for_models_that_cannot_be_had(settings: Settings, tmp_path: Path) -> None:
    from vistudio.ml.captions import load_captioner
    from vistudio.ml.weights import WeightsPolicy

    offline = WeightsPolicy.from_settings(settings)
    assert offline.offline  # the suite is offline
    with pytest.raises(ModelUnavailable, match="not in the local cache"):
        load_captioner("owner/not-cached-captioner", policy=offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match=r"no config\.json"):
        load_captioner(str(empty), policy=offline)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="cannot load the captioning model"):
        load_captioner(str(broken), policy=offline)
    with pytest.raises(ModelUnavailable, match="neither a folder"):
        load_captioner("/no/such/folder", policy=offline)
    # the start of the job says it at once, offline, with a 503 through the API
    studio = open_studio(settings.model_copy(update={"captions": CaptionSettings(model="owner/not-cached")}))
    try:
        projects.create_project(studio, name="p", task="library")
        with TestClient(create_app(studio)) as client:
            r = client.post("/api/v1/projects/p/captions")
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
            assert "captions.model" in r.json()["error"]["details"]["settings"]
    finally:
        studio.close()
