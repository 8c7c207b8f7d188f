"""Resuming experiments end to end: a training job stopped part-way and resumed ends with the very
weights of an uninterrupted one; a retried job (its worker died) resumes from the last checkpoint
and records each step once; a finished experiment takes more epochs; everything that cannot be
resumed is refused with the reason and loses nothing — through the service, the API, the CLI and
the Train page."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import select

from detection_factories import shapes_project
from training_helpers import TINY, job_events, run_job, start_job_thread, tiny_project, wait_until
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.config import ImportSettings, Settings
from vistudio.db import Job, Split
from vistudio.db.training import EpochMetric, Experiment
from vistudio.errors import BadRequest, Conflict, InvalidInput, NotFound
from vistudio.ml.checkpoint import read_checkpoint
from vistudio.ml.training.callbacks import TrainingCallbacks
from vistudio.ml.training.trainer import TrainResult, TrainSpec, train
from vistudio.services import experiments
from vistudio.services.experiments import split_items
from vistudio.studio import Studio, open_studio

# the learning rate of a step schedule does not depend on the total of epochs: a run resumed with
# more epochs can be compared with one that had that many from the start
STEADY: dict[str, Any] = {
    **TINY,
    "batch_size": 4,
    "scheduler": "step",
    "early_stopping": False,
    "augment": {"crop": True, "flip": True},
}


def _exp(studio: Studio, name: str, project: str = "shapes") -> dict[str, Any]:
    return experiments.get_experiment(studio, project=project, experiment=name)


def _last(exp: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in exp["checkpoints"] if c["kind"] == "last")


def _weights(exp: dict[str, Any]) -> dict[str, torch.Tensor]:
    return read_checkpoint(_last(exp)["path"])["state_dict"]  # type: ignore[no-any-return]


def _assert_same_weights(a: dict[str, Any], b: dict[str, Any]) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []


def _rows(studio: Studio, exp_id: int) -> list[tuple[str, int, float]]:
    with studio.sessions() as s:
        return sorted(
            (r.name, r.step, r.value)
            for r in s.scalars(select(EpochMetric).where(EpochMetric.experiment_id == exp_id))
        )


def _train(studio: Studio, name: str, config: dict[str, Any]) -> dict[str, Any]:
    started = experiments.start_experiment(studio, project="shapes", config=config, name=name)
    assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
    return _exp(studio, name)


@pytest.mark.slow
def test_stopped_part_way_and_resumed_equals_an_uninterrupted_run(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)  # 18 training images in batches of 4: 4 steps an epoch
    started = experiments.start_experiment(
        studio, project="shapes", config={**STEADY, "epochs": 300}, name="paused"
    )
    thread = start_job_thread(studio, started["job"]["id"])
    exp_id = started["experiment"]["id"]
    # asked as soon as the training process is up: the stop lands after one of the first steps
    wait_until(
        lambda: [e for e in job_events(studio, started["job"]["id"], "log") if "pid" in e],
        timeout=120,
        what="the training process",
    )
    experiments.stop_experiment(studio, project="shapes", experiment="paused")
    thread.join(timeout=120)
    stopped = _exp(studio, "paused")
    last = _last(stopped)
    assert stopped["status"] == "stopped" and 1 <= last["step"] < 4 * 300
    assert read_checkpoint(last["path"])["training_state"]["global_step"] == last["step"]
    rows_at_stop = _rows(studio, exp_id)

    # more epochs than the stop had reached, fewer than configured: the new total is frozen
    total = last["epoch"] + 2
    resumed = experiments.resume_experiment(studio, project="shapes", experiment="paused", epochs=total)
    assert resumed["experiment"]["status"] == "queued" and resumed["experiment"]["config"]["epochs"] == total
    assert resumed["job"]["id"] != started["job"]["id"] and resumed["job"]["kind"] == "train"
    with pytest.raises(Conflict, match="training already"):
        experiments.resume_experiment(studio, project="shapes", experiment="paused")
    assert run_job(studio, resumed["job"]["id"])["status"] == "succeeded"
    done = _exp(studio, "paused")
    assert done["status"] == "succeeded" and done["epochs_done"] == total and done["epochs"] == total
    logs = [e for e in job_events(studio, resumed["job"]["id"], "log") if "resumed from" in e["message"]]
    assert logs and logs[0]["step"] == last["step"]

    straight = _train(studio, "straight", {**STEADY, "epochs": total})
    _assert_same_weights(straight, done)
    # the very same curves: every metric at every step, each recorded once, nothing lost at the stop
    rows = _rows(studio, exp_id)
    assert [(n, st) for n, st, _ in rows] == [(n, st) for n, st, _ in _rows(studio, straight["id"])]
    assert rows == _rows(studio, straight["id"])
    assert set(rows_at_stop) <= set(rows)
    assert done["best_metrics"] == straight["best_metrics"]


@pytest.mark.slow
def test_a_retried_job_resumes_from_the_last_checkpoint(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)
    straight = _train(studio, "straight", {**STEADY, "epochs": 3})
    # an attempt that had saved epoch 2 of 3, recorded two more steps and died with its worker
    crashed = _train(studio, "crashed", {**STEADY, "epochs": 2})
    exp_id, job_id = crashed["id"], crashed["job_id"]
    last_step = _last(crashed)["step"]
    with studio.sessions.begin() as s:
        row = s.get(Experiment, exp_id)
        assert row is not None
        row.config = {**row.config, "epochs": 3}
        row.status = "running"
        for step in (last_step + 1, last_step + 2):
            s.add(EpochMetric(experiment_id=exp_id, epoch=3, step=step, name="train_loss_step", value=9.0))
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.worker, job.lease_until, job.finished_at = "running", "dead", job.created_at, None
    assert studio.queue.reap_expired() == 1
    assert run_job(studio, job_id)["status"] == "succeeded"
    again = _exp(studio, "crashed")
    assert again["job"]["attempts"] == 2 and again["status"] == "succeeded" and again["epochs_done"] == 3
    assert _last(again)["step"] == _last(straight)["step"]
    _assert_same_weights(straight, again)
    # the dead attempt's rows after its checkpoint are gone: each step once, as if never interrupted
    assert _rows(studio, exp_id) == _rows(studio, straight["id"])
    logs = [e for e in job_events(studio, job_id, "log") if "resumed from" in e["message"]]
    assert [e["step"] for e in logs] == [last_step]
    # the progress of the resumed attempt starts in the epoch it resumes in (4 steps an epoch)
    progress = job_events(studio, job_id, "progress")
    assert {"done": last_step, "total": 12, "message": "epoch 3/3"} in progress
    assert all(e["done"] <= 4 for e in progress if str(e["message"]).startswith("epoch 1/"))

    # a retry whose last checkpoint file is gone starts over from epoch 0, each step still once
    blob = Path(_last(again)["path"])
    blob.unlink()
    with studio.sessions.begin() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.worker, job.lease_until, job.finished_at = "running", "dead", job.created_at, None
        job.max_attempts = 5
    assert studio.queue.reap_expired() == 1
    assert run_job(studio, job_id)["status"] == "succeeded"
    fresh = _exp(studio, "crashed")
    assert fresh["job"]["attempts"] == 3 and fresh["epochs_done"] == 3
    _assert_same_weights(straight, fresh)
    assert _rows(studio, exp_id) == _rows(studio, straight["id"])


@pytest.mark.slow
def test_what_cannot_be_resumed_is_refused_and_nothing_is_lost(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path, per_class=4)
    done = _train(studio, "done", {**TINY, "epochs": 1})
    with pytest.raises(NotFound):
        experiments.resume_experiment(studio, project="shapes", experiment="nope")
    with pytest.raises(NotFound):
        experiments.resume_experiment(studio, project="nope", experiment="done")
    queued = experiments.start_experiment(studio, project="shapes", config=TINY, name="queued")
    with pytest.raises(Conflict, match="is queued"):
        experiments.resume_experiment(studio, project="shapes", experiment="queued")
    experiments.stop_experiment(studio, project="shapes", experiment="queued")  # before any step
    with pytest.raises(Conflict, match="no last checkpoint"):
        experiments.resume_experiment(studio, project="shapes", experiment="queued")
    assert studio.queue.get(queued["job"]["id"]).status == "cancelled"

    with pytest.raises(Conflict, match="nothing is left to train"):
        experiments.resume_experiment(studio, project="shapes", experiment="done")
    for bad in (1, 0, -3):
        with pytest.raises(InvalidInput, match="more than the 1 epochs"):
            experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=bad)
    with pytest.raises(BadRequest, match="epochs"):
        experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=5000)
    with pytest.raises(BadRequest, match="whole number"):
        experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=True)

    # the last checkpoint's file missing, then damaged: a 409 that says so
    blob = Path(_last(done)["path"])
    kept = tmp_path / "kept.pt"
    shutil.move(blob, kept)
    with pytest.raises(Conflict, match="missing from the workspace"):
        experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=2)
    blob.write_bytes(b"\x00garbage")
    with pytest.raises(Conflict, match="cannot be resumed from: not a loadable checkpoint"):
        experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=2)
    shutil.move(kept, blob)
    after = _exp(studio, "done")
    assert after == {**done, "job": after["job"]} and after["config"]["epochs"] == 1  # nothing changed

    # a resume job whose checkpoint vanished after it was queued fails clearly, keeping the status
    resumed = experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=2)
    shutil.move(blob, kept)
    job = run_job(studio, resumed["job"]["id"])
    shutil.move(kept, blob)
    gone = _exp(studio, "done")
    assert job["status"] == "failed" and gone["status"] == "succeeded" and "cannot resume" in gone["error"]
    assert gone["checkpoints"] == done["checkpoints"] and gone["epochs_done"] == 1
    # with the file back it can be resumed again (the other tests here run such resumes)
    again = experiments.resume_experiment(studio, project="shapes", experiment="done", epochs=2)
    assert again["experiment"]["status"] == "queued" and again["experiment"]["error"] is None


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


@pytest.mark.slow
def test_resume_over_http_and_on_the_train_page(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path, per_class=4)
    done = _train(studio, "done", {**TINY, "epochs": 1})
    api = "/api/v1/experiments/shapes"
    r = client.post(f"{api}/done/resume", json={"epochs": 2})
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job", "experiment"} and body["experiment"]["status"] == "queued"
    assert body["experiment"]["config"]["epochs"] == 2 and body["job"]["kind"] == "train"
    assert client.post(f"{api}/done/resume").status_code == 409  # queued already
    assert run_job(studio, body["job"]["id"])["status"] == "succeeded"
    for payload, status in (
        ({"epochs": 0}, 422),
        ({"epochs": "many"}, 422),
        ({"epochs": 2}, 422),  # not more than the 2 epochs done
        ({}, 409),  # nothing left to train
        (None, 409),
    ):
        r = client.post(f"{api}/done/resume", json=payload)
        assert r.status_code == status, (payload, r.text)
        assert set(r.json()) == {"error"}
    assert client.post(f"{api}/nope/resume", json={}).status_code == 404
    assert client.post("/api/v1/experiments/nope/done/resume", json={}).status_code == 404
    assert _exp(studio, "done")["epochs_done"] == 2 and done["id"] == _exp(studio, "done")["id"]

    # the page: a Resume button with the epochs field on a finished experiment; errors inline
    page = client.get("/projects/shapes/train", params={"experiment": "done"})
    assert page.status_code == 200 and 'id="resume-training"' in page.text and 'name="epochs"' in page.text
    form = "/projects/shapes/train/experiments/done/resume"
    r = client.post(form, data={"epochs": "2"}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and r.headers["HX-Retarget"] == "#resume-errors"
    assert "more than the 2 epochs" in r.text
    r = client.post(form, data={"epochs": "x"}, headers={"HX-Request": "true"})
    assert r.status_code == 400 and "whole number" in r.text
    r = client.post(form, data={"epochs": "3"}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'data-status="queued"' in r.text and 'id="stop-training"' in r.text
    assert 'id="resume-training"' not in r.text
    assert _exp(studio, "done")["config"]["epochs"] == 3


def _cli(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> tuple[int, Any]:
    code = main(["--workspace", str(ws), "--json", *args])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


@pytest.mark.slow
def test_train_resume_on_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    studio = open_studio(Settings(home=ws, imports=ImportSettings(workers=1)))
    tiny_project(studio, tmp_path, per_class=4)
    shapes_project(studio, tmp_path, name="boxes", n=10)
    _train(studio, "first", {**TINY, "epochs": 1})
    studio.close()
    code, out = _cli(capsys, ws, "train", "shapes", "--resume", "first", "--epochs", "2")
    assert code == 0, out
    exp = out["experiment"]
    assert {"id", "name", "status", "best_metrics", "checkpoints"} <= set(exp)
    assert exp["name"] == "first" and exp["status"] == "succeeded" and exp["epochs_done"] == 2
    assert {c["kind"] for c in exp["checkpoints"]} == {"best", "last"}
    assert max(c["epoch"] for c in exp["checkpoints"]) == 2
    code, out = _cli(capsys, ws, "train", "shapes", "--resume", "first")
    assert code == 1 and out["error"]["code"] == "conflict" and "give more epochs" in out["error"]["message"]
    code, out = _cli(capsys, ws, "train", "shapes", "--resume", "first", "--epochs", "2")
    assert code == 1 and out["error"]["code"] == "invalid_input"
    code, out = _cli(capsys, ws, "train", "shapes", "--resume", "nope", "--epochs", "5")
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = _cli(capsys, ws, "train", "shapes", "--resume", "first", "--epochs", "3", "--lr", "0.1")
    assert code == 1 and out["error"]["code"] == "bad_request" and "--lr" in out["error"]["message"]
    code, out = _cli(capsys, ws, "train", "shapes", "--resume", "first", "--epochs", "3", "--no-wait")
    assert code == 0 and out["job"]["status"] == "queued" and out["experiment"]["config"]["epochs"] == 3
    code, out = _cli(capsys, ws, "experiment", "stop", "shapes", "first")
    assert code == 0 and out["experiment"]["status"] == "stopped"
    # the box-task flags are plain config keys, validated by the project's task
    code, out = _cli(capsys, ws, "train", "shapes", "--score-threshold", "0.3", "--no-wait")
    assert code == 1 and out["error"]["details"]["errors"][0] == {
        "key": "score_threshold",
        "message": "unknown key",
    }
    detector = ("--model", "fcos_resnet18_fpn64", "--image-size", "96", "--name", "det", "--no-wait")
    code, out = _cli(
        capsys,
        ws,
        "train",
        "boxes",
        *detector,
        "--score-threshold",
        "0.3",
        "--nms-iou",
        "0.4",
        "--detections-per-image",
        "50",
        "--trainable-backbone-layers",
        "2",
        "--pretrained-weights",
        "none",
    )
    assert code == 0, out
    config = out["experiment"]["config"]
    assert (config["score_threshold"], config["nms_iou"], config["detections_per_image"]) == (0.3, 0.4, 50)
    assert config["trainable_backbone_layers"] == 2 and config["pretrained"] == "none"
    assert _cli(capsys, ws, "experiment", "stop", "boxes", "det")[0] == 0
    code, out = _cli(capsys, ws, "train", "boxes", *detector, "--pretrained-weights", "imagenet")
    assert code == 1 and "none, backbone or coco" in out["error"]["message"]
    code, out = _cli(capsys, ws, "models", "--task", "detection")
    assert code == 0 and "fcos_resnet18_fpn64" in {m["name"] for m in out["items"]}


class _Steps(TrainingCallbacks):
    """Records each step's loss; asks to stop after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.losses: list[tuple[int, float]] = []
        self.stop_after = stop_after

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.losses.append((step, metrics["train_loss_step"]))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.losses) >= self.stop_after


def test_a_detector_stopped_part_way_resumes_to_the_same_weights(studio: Studio, tmp_path: Path) -> None:
    """FCOS (a small ResNet-18 configuration of the catalog's architecture) with the default box
    augmentation (random zoom-in crops, flips): 6 steps stopped after 4, part-way through epoch 2,
    and resumed, equal 6 uninterrupted steps, tensor for tensor."""
    shapes_project(studio, tmp_path, n=20)  # 12 training images: 3 steps an epoch in batches of 4
    classes = ["ellipse", "rectangle", "triangle"]
    with studio.sessions() as s:
        split = s.scalar(select(Split).where(Split.name == "s1"))
        assert split is not None
        items = split_items(studio, s, split.id, ["train", "val"], classes, task="detection")
    config = {
        "model": "fcos_resnet18_fpn64",
        "image_size": 96,
        "epochs": 2,
        "batch_size": 4,
        "lr": 0.005,
        "log_every_n_steps": 1,
        "seed": 1,
        "early_stopping": False,
    }

    def spec(folder: str, resume_from: str | None = None) -> TrainSpec:
        return TrainSpec(
            task="detection",
            config=config,
            classes=classes,
            train=[(it.path, it.target) for it in items if it.subset == "train"],
            val=[(it.path, it.target) for it in items if it.subset == "val"],
            workdir=str(tmp_path / folder),
            resume_from=resume_from,
        )

    straight_steps, first, second = _Steps(), _Steps(stop_after=4), _Steps()
    straight = train(spec("straight"), straight_steps)
    stopped = train(spec("stopped"), first)
    assert stopped.status == "stopped" and stopped.step == 4 and stopped.last is not None
    resumed: TrainResult = train(spec("resumed", stopped.last["path"]), second)
    assert resumed.status == "completed" and resumed.step == straight.step == 6
    assert first.losses + second.losses == straight_steps.losses
    a = read_checkpoint(str((straight.last or {})["path"]))["state_dict"]
    b = read_checkpoint(str((resumed.last or {})["path"]))["state_dict"]
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert resumed.final_metrics == straight.final_metrics and "val_map50" in resumed.final_metrics
