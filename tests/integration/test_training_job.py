"""The training job end to end (child process and all): digits to ≥ 90 % test accuracy, a stop
that keeps a usable last checkpoint, crashes and kills that end ``failed``, a retry after a dead
worker that restarts cleanly, and everything that must be refused before a job is queued."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from training_helpers import (
    DIGITS,
    TINY,
    full_digits_project,
    job_events,
    run_job,
    start_job_thread,
    tiny_project,
    wait_until,
)
from vistudio.db import Artifact, Job
from vistudio.db.training import Checkpoint, EpochMetric, Experiment
from vistudio.errors import BadRequest, Conflict, Immutable, InvalidInput, ModelUnavailable, NotFound
from vistudio.ml.checkpoint import load_checkpoint
from vistudio.ml.preprocess import eval_batch
from vistudio.services import experiments, projects, splits
from vistudio.services.experiments import split_items
from vistudio.studio import Studio


def _exp(studio: Studio, project: str, name: str) -> dict[str, Any]:
    return experiments.get_experiment(studio, project=project, experiment=name)


def _metric_rows(studio: Studio, exp_id: int) -> list[tuple[str, int]]:
    with studio.sessions() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(EpochMetric.name, EpochMetric.step).where(EpochMetric.experiment_id == exp_id)
            )
        ]  # type: ignore[misc]


def _checkpoint_refs(studio: Studio) -> dict[str, int]:
    with studio.sessions() as s:
        return {
            a.sha256: a.ref_count for a in s.scalars(select(Artifact).where(Artifact.kind == "checkpoint"))
        }


@pytest.mark.slow
def test_digits_reach_90_percent_test_accuracy(studio: Studio, tmp_path: Path) -> None:
    full_digits_project(studio, tmp_path)
    started = experiments.start_experiment(studio, project="digits", config=DIGITS, name="r18")
    assert started["experiment"]["status"] == "queued" and started["job"]["kind"] == "train"
    t0 = time.perf_counter()
    job = run_job(studio, started["job"]["id"])
    seconds = time.perf_counter() - t0
    print(
        f"\ndigits: resnet18, 32 px, {DIGITS['epochs']} epochs: {seconds:.1f} s (job, child start included)"
    )
    assert job["status"] == "succeeded", job
    exp = _exp(studio, "digits", "r18")
    assert exp["status"] == "succeeded" and exp["epochs_done"] == DIGITS["epochs"] and exp["error"] is None
    assert exp["config"]["split"] == "default" and exp["classes"] == [str(i) for i in range(10)]
    assert {c["kind"] for c in exp["checkpoints"]} == {"best", "last"}
    best = next(c for c in exp["checkpoints"] if c["kind"] == "best")
    assert best["metrics"]["val_accuracy"] == exp["best_metrics"]["val_accuracy"] >= 0.9
    assert best["epoch"] == exp["best_metrics"]["epoch"] and Path(best["path"]).is_file()
    # one row per (metric, step): no duplicates, every epoch recorded
    rows = _metric_rows(studio, exp["id"])
    assert len(rows) == len(set(rows))
    series = experiments.experiment_metrics(studio, project="digits", experiment="r18")["series"]
    assert series["val_accuracy"]["epoch"] == [1, 2, 3, 4] and len(series["train_loss_step"]["value"]) >= 4
    # test accuracy with the best checkpoint through the shared evaluation preprocessing
    model, meta = load_checkpoint(best["path"])
    with studio.sessions() as s:
        test = split_items(studio, s, exp["split_id"], ["test"], meta["classes"])
    with torch.no_grad():
        logits = model(torch.from_numpy(eval_batch([it.path for it in test], meta["preprocess"])))
    accuracy = float((logits.argmax(1).numpy() == np.array([it.target for it in test])).mean())
    print(f"digits test accuracy: {accuracy:.3f} on {len(test)} images")
    assert len(test) >= 170 and accuracy >= 0.9
    # the job's event stream carried the curves
    metrics = job_events(studio, job["id"], "metrics")
    assert [m["epoch"] for m in metrics if m["scope"] == "epoch"] == [1, 2, 3, 4]
    assert any(m["scope"] == "step" for m in metrics) and all(m["attempt"] == 1 for m in metrics)


@pytest.mark.slow
def test_stop_keeps_a_usable_last_checkpoint(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)
    started = experiments.start_experiment(
        studio, project="shapes", config={**TINY, "epochs": 500}, name="long"
    )
    thread = start_job_thread(studio, started["job"]["id"])
    wait_until(lambda: _metric_rows(studio, started["experiment"]["id"]), timeout=120, what="the first step")
    stopping = experiments.stop_experiment(studio, project="shapes", experiment="long")
    assert stopping["status"] in ("running", "stopped") and stopping["job"]["cancel_requested"]
    thread.join(timeout=120)
    exp = _exp(studio, "shapes", "long")
    assert exp["status"] == "stopped" and exp["job"]["status"] == "cancelled"
    assert exp["epochs_done"] < 500
    last = next(c for c in exp["checkpoints"] if c["kind"] == "last")
    model, meta = load_checkpoint(last["path"])
    assert meta["kind"] == "last" and meta["step"] == last["step"] >= 1 and meta["classes"] == exp["classes"]
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(Conflict, match="nothing to stop"):
        experiments.stop_experiment(studio, project="shapes", experiment="long")
    assert not list(studio.tmp.glob("train-*"))  # the work folder is gone


@pytest.mark.slow
def test_crash_and_kill_end_failed_with_the_reason(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)
    # a training image the user damaged after import (reference mode keeps the user's file)
    projects.create_project(studio, name="ref", task="classification")
    from factories import make_class_folders, run_import

    src = make_class_folders(tmp_path / "ref-src", {"a": 6, "b": 6})
    assert run_import(studio, "ref", src, fmt="folder", mode="reference")["status"] == "succeeded"
    splits.create_split(studio, project="ref", name="s", ratios=(0.5, 0.5), seed=1)
    for p in src.rglob("*.png"):
        p.write_bytes(b"garbage")
    crashed = experiments.start_experiment(studio, project="ref", config=TINY, name="broken")
    job = run_job(studio, crashed["job"]["id"])
    exp = _exp(studio, "ref", "broken")
    assert job["status"] == "failed" and job["attempts"] == 1  # a crash is not retried
    assert exp["status"] == "failed" and "cannot read training image" in exp["error"]
    assert 'File "' in exp["error"] and exp["checkpoints"] == []  # the tail of the traceback

    # the training process killed from outside (as the OOM killer would): failed, with the signal
    killed = experiments.start_experiment(
        studio, project="shapes", config={**TINY, "epochs": 500}, name="oom"
    )
    thread = start_job_thread(studio, killed["job"]["id"])
    started = wait_until(
        lambda: [e for e in job_events(studio, killed["job"]["id"], "log") if "pid" in e],
        timeout=120,
        what="the training process",
    )
    os.kill(int(started[0]["pid"]), signal.SIGKILL)
    thread.join(timeout=60)
    exp = _exp(studio, "shapes", "oom")
    assert exp["status"] == "failed" and "killed by signal 9" in exp["error"]
    assert exp["job"]["status"] == "failed"


@pytest.mark.slow
def test_a_retry_after_a_dead_worker_restarts_cleanly(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)
    started = experiments.start_experiment(
        studio, project="shapes", config={**TINY, "epochs": 1}, name="again"
    )
    job_id, exp_id = started["job"]["id"], started["experiment"]["id"]
    assert run_job(studio, job_id)["status"] == "succeeded"
    first = _exp(studio, "shapes", "again")
    rows_first = sorted(_metric_rows(studio, exp_id))
    # the worker "dies" after recording everything (its lease expires): the job is retried
    with studio.sessions.begin() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.worker, job.lease_until, job.finished_at = (
            "running",
            "dead-worker",
            job.created_at,
            None,
        )
    assert studio.queue.reap_expired() == 1 and studio.queue.get(job_id).status == "queued"
    assert run_job(studio, job_id)["status"] == "succeeded"
    again = _exp(studio, "shapes", "again")
    assert again["job"]["attempts"] == 2 and again["status"] == "succeeded"
    assert sorted(_metric_rows(studio, exp_id)) == rows_first  # restarted: each step once
    # same seed, same run: the same metrics and the very same checkpoint bytes
    assert again["best_metrics"] == first["best_metrics"]
    assert {c["sha256"] for c in again["checkpoints"]} == {c["sha256"] for c in first["checkpoints"]}
    refs = _checkpoint_refs(studio)
    assert refs == {c["sha256"]: 1 for c in again["checkpoints"]}
    # stopped, then its worker died before it could stop: the retry ends "stopped" at once and
    # keeps what the experiment had saved, rather than training again from epoch 0
    with studio.sessions.begin() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.worker, job.lease_until, job.finished_at = "running", "gone", job.created_at, None
        job.cancel_requested, job.max_attempts = True, 5
    assert studio.queue.reap_expired() == 1
    assert run_job(studio, job_id)["status"] == "cancelled"
    kept = _exp(studio, "shapes", "again")
    assert kept["status"] == "stopped" and kept["checkpoints"] == again["checkpoints"]
    assert sorted(_metric_rows(studio, exp_id)) == rows_first
    # deleting releases the blobs
    files = [Path(c["path"]) for c in again["checkpoints"]]
    out = experiments.delete_experiment(studio, project="shapes", experiment="again")
    assert out["checkpoints"] == 2 and out["blobs_removed"] == 2
    assert _checkpoint_refs(studio) == {} and not any(f.exists() for f in files)
    with studio.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EpochMetric)) == 0
        assert s.scalar(select(func.count()).select_from(Checkpoint)) == 0


def test_what_is_refused_before_training_starts(
    studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_project(studio, tmp_path, split=False, per_class=4)
    with pytest.raises(BadRequest, match="no split yet: create one first"):
        experiments.start_experiment(studio, project="shapes", config=TINY)
    splits.create_split(studio, project="shapes", name="noval", ratios=(1.0, 0.0), seed=1)
    with pytest.raises(BadRequest, match="no labelled validation images"):
        experiments.start_experiment(studio, project="shapes", config=TINY)
    splits.create_split(studio, project="shapes", name="ok", ratios=(0.5, 0.25, 0.25), seed=1)
    with pytest.raises(NotFound, match="split 'nope' not found"):
        experiments.start_experiment(studio, project="shapes", config={**TINY, "split": "nope"})
    with pytest.raises(BadRequest) as err:
        experiments.start_experiment(studio, project="shapes", config={**TINY, "epochz": 3, "lr": 0})
    assert {e["key"] for e in err.value.details["errors"]} == {"epochz", "lr"}
    with pytest.raises(BadRequest, match="unknown model"):
        experiments.start_experiment(studio, project="shapes", config={**TINY, "model": "resnet9000"})
    if not torch.cuda.is_available():
        with pytest.raises(BadRequest, match="CUDA is not available"):
            experiments.start_experiment(studio, project="shapes", config={**TINY, "device": "cuda"})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(ModelUnavailable, match="--no-pretrained"):
        experiments.start_experiment(studio, project="shapes", config={**TINY, "pretrained": True})
    with pytest.raises(ModelUnavailable, match="weights file not found"):  # not an OSError: too long
        experiments.start_experiment(studio, project="shapes", config={**TINY, "pretrained": "w" * 1000})
    with pytest.raises(InvalidInput, match="class_weights has 5 values but project 'shapes' has"):
        experiments.start_experiment(studio, project="shapes", config={**TINY, "class_weights": [1.0] * 5})
    with pytest.raises(InvalidInput, match="experiment name"):
        experiments.start_experiment(studio, project="shapes", config=TINY, name="../etc")
    # a task whose training module does not exist (yet): whichever that is today
    from vistudio.ml.tasks import get_task, task_names

    untrained = [get_task(n) for n in task_names() if get_task(n).trainable and not get_task(n).can_train]
    if untrained:
        projects.create_project(studio, name="regions", task=untrained[0].name)
        with pytest.raises(BadRequest, match=f"not available for {untrained[0].title.lower()}"):
            experiments.start_experiment(studio, project="regions", config=TINY)
    assert experiments.list_experiments(studio, project="shapes")["total"] == 0

    # queued (no worker): frozen config, stop at once, a duplicate name, delete refused until stopped
    queued = experiments.start_experiment(studio, project="shapes", config=TINY, name="waiting")
    assert queued["experiment"]["config"]["split"] == "ok"  # the newest split
    assert queued["experiment"]["config"]["monitor"] == "val_accuracy"
    with pytest.raises(Immutable, match="frozen"):
        experiments.update_experiment(studio, project="shapes", experiment="waiting", config={"lr": 1})
    with pytest.raises(Conflict, match="already exists"):
        experiments.start_experiment(studio, project="shapes", config=TINY, name="waiting")
    with pytest.raises(Conflict, match="stop it before deleting"):
        experiments.delete_experiment(studio, project="shapes", experiment="waiting")
    with pytest.raises(Conflict, match="queued or running job"):
        projects.delete_project(studio, "shapes")
    stopped = experiments.stop_experiment(studio, project="shapes", experiment="waiting")
    assert stopped["status"] == "stopped" and stopped["job"]["status"] == "cancelled"
    renamed = experiments.update_experiment(studio, project="shapes", experiment="waiting", name="renamed")
    assert renamed["name"] == "renamed"
    auto = experiments.start_experiment(studio, project="shapes", config=TINY)
    assert auto["experiment"]["name"] == "resnet18-2"
    experiments.stop_experiment(studio, project="shapes", experiment=auto["experiment"]["id"])
    cmp = experiments.compare_experiments(studio, project="shapes", experiments=["renamed", "resnet18-2"])
    assert [r["experiment"] for r in cmp["table"]] == ["renamed", "resnet18-2"] and cmp["series"] == {}
    with pytest.raises(InvalidInput, match="2 to 20"):
        experiments.compare_experiments(studio, project="shapes", experiments=["renamed"])
    assert (
        experiments.delete_experiment(studio, project="shapes", experiment="renamed")["deleted"] == "renamed"
    )
    assert projects.delete_project(studio, "shapes")["deleted"] == "shapes"


def test_a_dead_job_marks_its_experiment_failed(studio: Studio, tmp_path: Path) -> None:
    """An experiment whose job ended without it (dead-lettered after lost leases) takes its outcome."""
    tiny_project(studio, tmp_path, per_class=4)
    started = experiments.start_experiment(studio, project="shapes", config=TINY, name="orphan")
    with studio.sessions.begin() as s:
        job = s.get(Job, started["job"]["id"])
        exp = s.get(Experiment, started["experiment"]["id"])
        assert job is not None and exp is not None
        job.status, job.error = "dead", {"message": "worker lost its lease (crashed or stopped)"}
        exp.status = "running"
    listed = experiments.list_experiments(studio, project="shapes")["items"][0]
    assert listed["status"] == "failed" and "lost its lease" in listed["error"]
    assert _exp(studio, "shapes", "orphan")["status"] == "failed"


def test_a_worker_that_lost_its_lease_writes_nothing_more(studio: Studio, tmp_path: Path) -> None:
    """Between a lease expiring and the old worker noticing, the retry may already have restarted
    the experiment: the old worker's recorder refuses to write beside it."""
    from datetime import timedelta

    from vistudio.jobs.queue import LeaseLost
    from vistudio.jobs.worker import JobContext

    tiny_project(studio, tmp_path, per_class=4)
    started = experiments.start_experiment(studio, project="shapes", config=TINY, name="lease")
    job = studio.queue.claim("old-worker", job_id=started["job"]["id"])
    assert job is not None
    recorder = experiments._Recorder(
        JobContext(studio, job, "old-worker"), started["experiment"]["id"], 2, "val_accuracy"
    )
    step = {"type": "step", "epoch": 1, "step": 1, "metrics": {"train_loss_step": 1.5}}
    recorder.handle(step)
    with studio.sessions.begin() as s:
        row = s.get(Job, job.id)
        assert row is not None and row.lease_until is not None
        row.lease_until -= timedelta(hours=1)
    assert studio.queue.reap_expired() == 1 and studio.queue.claim("new-worker", job_id=job.id) is not None
    with pytest.raises(LeaseLost):
        recorder.handle({**step, "step": 2})
    assert recorder.ctx.lease_lost.is_set()
    assert _metric_rows(studio, started["experiment"]["id"]) == [("train_loss_step", 1)]


@pytest.mark.slow
def test_live_view_gets_step_points_and_speed_from_the_first_epoch(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)  # 18 training images: 9 steps an epoch at batch 2
    config = {
        **TINY,
        "batch_size": 2,
        "log_every_n_steps": 10,
        "model": "mobilenet_v3_small",
        "image_size": 32,
    }
    started = experiments.start_experiment(studio, project="shapes", config=config, name="live")
    # a size the model cannot learn from is said at once, and does not stop the training
    (warning,) = started["warnings"]
    assert warning["key"] == "image_size" and "mobilenet_v3_small" in warning["message"]
    assert started["experiment"]["warnings"] == started["warnings"]
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    metrics = job_events(studio, job["id"], "metrics")
    first_epoch = next(i for i, m in enumerate(metrics) if m["scope"] == "epoch")
    before = metrics[:first_epoch]
    steps = [m for m in before if m["scope"] == "step"]
    # every 2 steps from step 1 (10 would leave the first epoch without a point)
    assert [m["step"] for m in steps] == [1, 2, 4, 6, 8] and all(m["epoch"] == 1 for m in steps)
    assert all({"train_loss_step", "train_accuracy_step", "lr"} <= set(m["metrics"]) for m in steps)
    live = [m["live"] for m in before if m["scope"] == "progress"]
    assert [x["step"] for x in live] == [1, 2, 4, 6, 8]
    assert all(x["images_per_s"] > 0 and x["eta_s"] > 0 and x["total_steps"] == 18 for x in live)
    start = next(m for m in metrics if m["scope"] == "start")
    assert start["steps_per_epoch"] == 9 and start["total_steps"] == 18
    # the job's progress message carries the same numbers (the CLI's bar shows it)
    messages = [e["message"] or "" for e in job_events(studio, job["id"], "progress")]
    # the job's progress line carries the speed and ETA (which epoch's line survives the progress
    # throttle depends on the machine's load; the live points above are the first epoch's)
    assert any("img/s" in m and "ETA" in m and m.startswith("epoch ") for m in messages), messages
    # the recorded series: points of epoch 1 before its end, as the page draws them after a reload
    rows = _metric_rows(studio, started["experiment"]["id"])
    assert sorted(s for n, s in rows if n == "train_loss_step" and s < 9) == [1, 2, 4, 6, 8]
    exp = _exp(studio, "shapes", "live")
    assert exp["live"]["step"] == 18 and exp["live"]["eta_s"] == 0 and exp["live"]["images_per_s"] > 0
    assert exp["warnings"] == started["warnings"] and job["result"]["live"] == exp["live"]
    plain = experiments.start_experiment(studio, project="shapes", config={**TINY, "image_size": 32})
    assert plain["warnings"] == [] and "warnings" in plain
