"""Batch enrichment on Ray (``vistudio enrich --ray``) with a local Ray instance on CPU: the same
vectors, faces and captions as the local jobs (a tiny untrained CLIP checkpoint, dlib on real
portraits, the tests' tiny BLIP), search after it, reruns that write nothing, a cancel that keeps
what was written without duplicates, an unreachable cluster that fails the job at once, and an
unreadable photo reported while the rest is done."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from caption_model import COLOURS, SHAPES, draw, tiny_blip
from embed_factories import TINY_CONFIG
from face_photos import face_photos
from factories import run_import
from vistudio.cli.main import main
from vistudio.config import CaptionSettings, EmbedSettings, FaceSettings, Settings
from vistudio.db import Sample
from vistudio.db.captions import Caption
from vistudio.db.embeddings import Embedding
from vistudio.db.faces import Face
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.services import captions, enrich, faces, projects, search
from vistudio.services.embeddings import store_vectors
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny CLIP saved with its architecture: every process (Ray's actors too)
    builds the same model from the file alone."""
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**json.loads(json.dumps(TINY_CONFIG)))
    path = tmp_path_factory.mktemp("clip") / "tiny-untrained.pt"
    torch.save(
        {"model_name": "tiny-untrained", "model_cfg": TINY_CONFIG, "state_dict": model.state_dict()}, path
    )
    return path


@pytest.fixture
def ws_settings(settings: Settings, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return settings.model_copy(
        update={
            "embed": EmbedSettings(
                model="tiny-untrained", checkpoint=str(tiny_checkpoint), workers=0, batch_size=4, device="cpu"
            ),
            "faces": FaceSettings(workers=1, max_side=800),
            "captions": CaptionSettings(model=str(tiny_blip()), num_beams=1, batch_size=4, device="cpu"),
        }
    )


def _album(root: Path, *, shapes: int, portraits: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if portraits:
        for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
            shutil.copy(face_photos() / name, root / name)
    rng = random.Random(5)
    for i in range(shapes):
        draw(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng).save(root / f"shape{i:02d}.png")
    return root


def _run(studio: Studio, job_id: int) -> dict[str, Any]:
    return job_dict(Worker(studio).run_to_end(job_id))


def _by_name(studio: Studio, project: str) -> dict[str, Any]:
    """Per photo name: its vector, face boxes and caption."""
    pid = projects.get_project(studio, project)["id"]
    out: dict[str, Any] = {}
    with studio.sessions() as s:
        names = dict(s.execute(select(Sample.id, Sample.name).where(Sample.project_id == pid)).all())
        for sid, blob in s.execute(
            select(Embedding.sample_id, Embedding.vector).where(Embedding.project_id == pid)
        ):
            out.setdefault(names[sid], {})["vector"] = np.frombuffer(blob, dtype="<f4")
        for f in s.scalars(select(Face).where(Face.project_id == pid).order_by(Face.x)):
            out.setdefault(names[f.sample_id], {}).setdefault("boxes", []).append((f.x, f.y, f.w, f.h))
        for c in s.scalars(select(Caption).where(Caption.project_id == pid)):
            out.setdefault(names[c.sample_id], {})["caption"] = c.text
    return out


def _counts(studio: Studio) -> tuple[int, int, int]:
    with studio.sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Embedding)) or 0,
            s.scalar(select(func.count()).select_from(Face)) or 0,
            s.scalar(select(func.count()).select_from(Caption)) or 0,
        )


def test_ray_enrichment_equals_the_local_jobs(local_ray: None, ws_settings: Settings, tmp_path: Path) -> None:
    album = _album(tmp_path / "album", shapes=8)
    studio = open_studio(ws_settings)
    try:
        for name in ("on-ray", "local"):
            projects.create_project(studio, name=name, task="library")
            assert run_import(studio, name, album, mode="reference")["status"] == "succeeded"
        (album / "shape07.png").write_bytes(b"not a picture any more")  # broken after the import

        local = enrich.start_enrich(studio, project="local")
        assert local["mode"] == "local" and [j["kind"] for j in local["jobs"]] == [
            "embed",
            "faces",
            "captions",
        ]
        for job in local["jobs"]:
            assert _run(studio, job["id"])["status"] == "succeeded"

        started = enrich.start_enrich(studio, project="on-ray", ray="local")
        assert started["mode"] == "ray" and [j["kind"] for j in started["jobs"]] == ["enrich"]
        done = _run(studio, started["jobs"][0]["id"])
        assert done["status"] == "succeeded", done["error"]
        report = done["result"]["report"]
        steps = report["steps"]
        assert report["ray"]["resources"]["CPU"] == 2
        # the broken photo is reported by each step, the others are done
        assert steps["embed"]["embedded"] == 10 and steps["embed"]["failed_count"] == 1
        assert steps["embed"]["failed_items"][0]["reason"].startswith("unreadable image")
        assert (
            steps["faces"]["photos"] == 11
            and steps["faces"]["faces"] == 3
            and steps["faces"]["failed_count"] == 1
        )
        assert steps["faces"]["failed"][0]["path"].endswith("shape07.png")
        assert steps["captions"]["captioned"] == 10 and steps["captions"]["failed_count"] == 1
        assert report["failed"] == 3

        on_ray, here = _by_name(studio, "on-ray"), _by_name(studio, "local")
        assert sorted(on_ray) == sorted(here) and "shape07.png" not in on_ray and len(on_ray) == 10
        for name, got in on_ray.items():
            want = here[name]
            np.testing.assert_allclose(got["vector"], want["vector"], atol=1e-5, err_msg=name)
            assert got.get("boxes") == want.get("boxes"), name
            assert got["caption"] == want["caption"] and got["caption"], name
        assert sum(len(v.get("boxes", [])) for v in on_ray.values()) == 3

        # the set is complete and active: search works on the Ray-made vectors
        found = search.search(studio, project="on-ray", sample_id=_sid(studio, "on-ray", "obama.jpg"), k=3)
        assert found["complete"] and found["items"] and len(found["items"]) == 3
        assert faces.face_counts(studio, project="on-ray")["faces"] == 3
        assert captions.caption_status(studio, project="on-ray")["captioned"] == 10

        # a rerun (of one step: each step's rerun is the same code path) has only the broken
        # photo left, and writes nothing new
        before = _counts(studio)
        again = _run(
            studio, enrich.start_enrich(studio, project="on-ray", steps="embed", ray="local")["jobs"][0]["id"]
        )
        assert again["status"] == "succeeded", again["error"]
        s2 = again["result"]["report"]["steps"]
        assert (s2["embed"]["embedded"], s2["embed"]["failed_count"]) == (0, 1)
        assert _counts(studio) == before

        # the shared writers are idempotent: the same batch written twice leaves one result
        pid, sid = projects.get_project(studio, "on-ray")["id"], _sid(studio, "on-ray", "obama.jpg")
        with studio.sessions() as s:
            mid = s.scalar(select(Embedding.model_id).where(Embedding.sample_id == sid))
        store_vectors(
            studio, project_id=pid, model_id=mid, ids=np.array([sid]), vectors=np.ones((1, 32), np.float32)
        )
        text = on_ray["obama.jpg"]["caption"]
        cap = captions.store_captions(
            studio,
            project_id=pid,
            model=steps["captions"]["model"],
            version=steps["captions"]["version"],
            captions=[(sid, text)],
        )
        assert cap == 0 and _counts(studio) == before
        np.testing.assert_allclose(
            _by_name(studio, "on-ray")["obama.jpg"]["vector"], on_ray["obama.jpg"]["vector"]
        )
    finally:
        studio.close()


def _sid(studio: Studio, project: str, name: str) -> int:
    pid = projects.get_project(studio, project)["id"]
    with studio.sessions() as s:
        return int(s.scalar(select(Sample.id).where(Sample.project_id == pid, Sample.name == name)) or 0)


def test_cancel_keeps_what_was_written_and_a_rerun_finishes(
    local_ray: None, ws_settings: Settings, tmp_path: Path
) -> None:
    album = _album(tmp_path / "shapes", shapes=24, portraits=False)
    studio = open_studio(ws_settings)
    try:
        projects.create_project(studio, name="shapes", task="library")
        assert run_import(studio, "shapes", album, mode="reference")["status"] == "succeeded"
        job = enrich.start_enrich(studio, project="shapes", steps="embed", ray="local")["jobs"][0]
        runner = threading.Thread(target=Worker(studio).run_one, kwargs={"job_id": job["id"]})
        runner.start()
        # cancelled while the actors load: the first batch that arrives is written, then it stops
        deadline = time.monotonic() + 30
        while studio.queue.get(job["id"]).status != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        studio.queue.cancel(job["id"])
        runner.join(timeout=120)
        final = studio.queue.get(job["id"])
        assert final.status == "cancelled" and final.attempts == 1
        with studio.sessions() as s:
            stored = s.scalar(select(func.count()).select_from(Embedding)) or 0
            distinct = s.scalar(select(func.count(func.distinct(Embedding.sample_id)))) or 0
        assert 0 < stored < 24 and stored == distinct
        # the pipeline was shut down: its actor and readers gave their cores back
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2

        rest = _run(
            studio, enrich.start_enrich(studio, project="shapes", steps="embed", ray="local")["jobs"][0]["id"]
        )
        assert rest["status"] == "succeeded", rest["error"]
        assert rest["result"]["report"]["steps"]["embed"]["embedded"] == 24 - stored
        with studio.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Embedding)) == 24
            assert s.scalar(select(func.count(func.distinct(Embedding.sample_id)))) == 24
    finally:
        studio.close()


def test_an_unreachable_cluster_fails_the_job_at_once(
    local_ray: None,
    ws_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    album = _album(tmp_path / "few", shapes=2, portraits=False)
    studio = open_studio(ws_settings)
    try:
        projects.create_project(studio, name="few", task="library")
        assert run_import(studio, "few", album, mode="reference")["status"] == "succeeded"
        job = enrich.start_enrich(studio, project="few", steps="embed", ray="127.0.0.1:9")["jobs"][0]
        started = time.monotonic()
        final = _run(studio, job["id"])
        assert time.monotonic() - started < 30
        assert final["status"] == "failed" and final["attempts"] == 1  # permanent: not retried
        assert "127.0.0.1:9" in final["error"]["message"] and "cannot reach" in final["error"]["message"]
        with pytest.raises(Exception, match="unknown enrichment step"):
            enrich.start_enrich(studio, project="few", steps="embed,colour", ray="local")
    finally:
        studio.close()
    # the CLI reads the model from the environment
    monkeypatch.setenv("VISTUDIO_EMBED__MODEL", ws_settings.embed.model)
    monkeypatch.setenv("VISTUDIO_EMBED__CHECKPOINT", str(ws_settings.embed.checkpoint))
    code = main(
        [
            "--workspace",
            str(ws_settings.home),
            "--json",
            "enrich",
            "few",
            "--steps",
            "embed",
            "--ray",
            "127.0.0.1:9",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in out["error"]["message"]
