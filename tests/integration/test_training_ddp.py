"""Training on several devices with Lightning DDP, run here as 2 CPU processes (gloo backend).

What is checked: the batches of a step are split between the processes and together are the
single-process batch; 2 processes train the same steps as one (same per-epoch losses and
accuracies, same final weights, up to the order of float sums) and validate on the whole
validation subset once; only rank 0 reports (one metric series) and writes checkpoints (one set of
files); a stop asked for mid-training reaches both ranks and ends the job ``stopped`` with a
usable last checkpoint; bad ``devices`` / ``strategy`` values are clear 400s.

Not run here (no GPU on this machine): DDP on GPUs with NCCL and SyncBatchNorm.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import func, select

from ddp_helpers import catalog_test_model, rank_main, rank_main_deaf
from factories import make_class_folders
from training_helpers import TINY, start_job_thread, tiny_project, wait_until
from vistudio.db.training import Checkpoint, EpochMetric
from vistudio.errors import BadRequest
from vistudio.ml.checkpoint import load_checkpoint, read_checkpoint
from vistudio.ml.training.callbacks import TrainingCallbacks
from vistudio.ml.training.process import TrainingProcess
from vistudio.ml.training.resume import EpochBatchSampler
from vistudio.ml.training.trainer import TrainSpec, train
from vistudio.services import experiments
from vistudio.services.experiments.config import validate_experiment_config
from vistudio.studio import Studio

# float sums in another order (two half-batch gradients averaged by an all-reduce instead of one
# batch's; loss sums over two processes): differences of ~1e-7 relative per step, which a few
# dozen steps grow to 1e-6..1e-5; anything from a wrong split (other batches, doubled or missing
# validation images, rank 1's gradients lost) is 1e-2 or more.
RTOL = 1e-4


def test_the_processes_split_each_step_batch_between_them() -> None:
    single = EpochBatchSampler(30, 8, seed=5, drop_last=True)
    ranks = [EpochBatchSampler(30, 8, seed=5, drop_last=True, rank=r, world=2) for r in (0, 1)]
    for epoch in (0, 3):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        one, zero_, one_ = list(single), *(list(r) for r in ranks)
        assert len(one) == len(zero_) == len(one_) == len(single) == 3
        for batch, a, b in zip(one, zero_, one_, strict=True):
            assert len(a) == len(b) == 4 and sorted(a + b) == sorted(batch)  # same keys: index and seed


class _Record(TrainingCallbacks):
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.messages.append({"type": "step", "step": step, "metrics": metrics})

    def on_epoch(
        self, *, epoch: int, step: int, metrics: dict[str, float], details: dict[str, Any], best: bool
    ) -> None:
        self.messages.append({"type": "epoch", "epoch": epoch, "metrics": metrics})


def _spec(tmp_path: Path, name: str, config: dict[str, Any]) -> TrainSpec:
    classes = ["a", "b", "c"]
    src = tmp_path / "src"
    if not src.exists():
        make_class_folders(src, dict.fromkeys(classes, 12))
    items = [(str(p), classes.index(p.parent.name)) for p in sorted(src.rglob("*.png"))]
    return TrainSpec(
        task="classification",
        config=config,
        classes=classes,
        train=[it for i, it in enumerate(items) if i % 3],  # 24 images: 3 steps of 8
        val=[it for i, it in enumerate(items) if not i % 3],  # 12 images: 6 per process
        workdir=str(tmp_path / name),
    )


def _run_processes(spec: TrainSpec, *, timeout: float = 180) -> list[dict[str, Any]]:
    proc = TrainingProcess(spec, target=rank_main)
    proc.start()
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not proc.finished():
            assert time.monotonic() < deadline, "the DDP processes did not finish in time"
            messages += proc.poll(0.2)
    finally:
        proc.kill()
    assert [p.exitcode for p in proc.processes] == [0, 0]
    return messages


@pytest.mark.slow
def test_two_processes_train_the_same_steps_as_one(tmp_path: Path) -> None:
    with catalog_test_model() as model:
        config = {
            "model": model,
            "image_size": 32,
            "epochs": 3,
            "batch_size": 8,
            "lr": 0.01,
            "augment": {"crop": False, "flip": False},
            "log_every_n_steps": 1,
            "seed": 3,
            "device": "cpu",
        }
        record = _Record()
        one = train(_spec(tmp_path, "one", config), record)
        two = _run_processes(_spec(tmp_path, "two", {**config, "devices": 2}))

    errors = [m for m in two if m["type"] == "error"]
    assert not errors, errors
    done = [m["result"] for m in two if m["type"] == "done"]
    assert len(done) == 1 and done[0]["status"] == one.status == "completed"
    # one metric series: each epoch and each step reported once (rank 0 only)
    epochs = [m for m in two if m["type"] == "epoch"]
    steps = [m["step"] for m in two if m["type"] == "step"]
    assert [m["epoch"] for m in epochs] == [1, 2, 3] and steps == list(range(1, 10))
    start = next(m for m in two if m["type"] == "start")["info"]
    assert start["devices"] == 2 and start["steps_per_epoch"] == 3 and start["val_images"] == 12

    single = [m for m in record.messages if m["type"] == "epoch"]
    for a, b in zip(single, epochs, strict=True):
        ma, mb = a["metrics"], b["metrics"]
        assert ma.keys() == mb.keys()
        for key in ("train_loss", "val_loss"):
            assert mb[key] == pytest.approx(ma[key], rel=RTOL), (a["epoch"], key)
        for key in ("train_accuracy", "val_accuracy", "val_f1_macro"):
            assert mb[key] == pytest.approx(ma[key], abs=1e-6), (a["epoch"], key)
    # the weights at the end too
    assert one.last is not None and done[0]["last"] is not None
    wa = read_checkpoint(one.last["path"])["state_dict"]
    wb = read_checkpoint(done[0]["last"]["path"])["state_dict"]
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
    # one set of checkpoint files, written by rank 0: the same names as one process writes
    names = sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".pt")
    assert names == sorted(p.name for p in (tmp_path / "one").iterdir() if p.suffix == ".pt")
    assert not list((tmp_path / "two").glob("resume-*"))


@pytest.mark.slow
def test_a_stop_seen_by_rank_0_alone_stops_every_rank(tmp_path: Path) -> None:
    with catalog_test_model() as model:
        config = {"model": model, "image_size": 32, "epochs": 500, "batch_size": 8, "seed": 3}
        spec = _spec(tmp_path, "deaf", {**config, "log_every_n_steps": 1, "device": "cpu", "devices": 2})
    proc = TrainingProcess(spec, target=rank_main_deaf)
    proc.start()
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 180
    try:
        while not any(m["type"] == "step" and m["step"] >= 5 for m in messages):
            assert time.monotonic() < deadline and not proc.finished(), messages[-3:]
            messages += proc.poll(0.2)
        proc.request_stop()
        stop_deadline = time.monotonic() + 60  # rank 1 left training alone would hang or crash
        while not proc.finished():
            assert time.monotonic() < stop_deadline, "a rank did not stop"
            messages += proc.poll(0.2)
    finally:
        proc.kill()
    assert [p.exitcode for p in proc.processes] == [0, 0]
    assert not [m for m in messages if m["type"] == "error"]
    result = next(m["result"] for m in messages if m["type"] == "done")
    assert result["status"] == "stopped" and result["last"]["step"] == result["step"] >= 5


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_run_with_its_reason(tmp_path: Path) -> None:
    with catalog_test_model() as model:
        config = {"model": model, "image_size": 32, "epochs": 500, "batch_size": 8, "seed": 3}
        spec = _spec(tmp_path, "dies", {**config, "log_every_n_steps": 1, "device": "cpu", "devices": 2})
    proc = TrainingProcess(spec, target=rank_main)
    proc.start()
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 180
    try:
        while not any(m["type"] == "step" for m in messages):
            assert time.monotonic() < deadline and not proc.finished(), messages[-3:]
            messages += proc.poll(0.2)
        proc.processes[1].kill()  # as the OOM killer would: rank 0 is left alone in a collective
        end_deadline = time.monotonic() + 60
        while not proc.finished():
            assert time.monotonic() < end_deadline, "rank 0 was left waiting"
            messages += proc.poll(0.2)
    finally:
        proc.kill()
    # one error, the cause: not rank 0's broken connection to rank 1 (gloo notices the dead peer)
    errors = [m["error"]["message"] for m in messages if m["type"] == "error"]
    assert errors == ["the training process of rank 1 of 2 died (killed by signal 9)"]
    assert not [m for m in messages if m["type"] == "done"]


@pytest.mark.slow
def test_a_rank_that_crashes_gives_its_own_error(tmp_path: Path) -> None:
    with catalog_test_model() as model:
        config = {"model": model, "image_size": 32, "epochs": 2, "batch_size": 8, "seed": 3}
        spec = _spec(tmp_path, "crash", {**config, "device": "cpu", "devices": 2})
    Path(spec.train[5][0]).write_bytes(b"garbage")  # one image: in one rank's part of a batch
    proc = TrainingProcess(spec, target=rank_main)
    proc.start()
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 180
    try:
        while not proc.finished():
            assert time.monotonic() < deadline, "the run did not end"
            messages += proc.poll(0.2)
    finally:
        proc.kill()
    errors = [m["error"]["message"] for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and "cannot read training image" in errors[0], errors


@pytest.mark.slow
def test_a_stop_reaches_every_process_and_ends_the_job_stopped(studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)  # 18 training images, 6 validation ones
    config = {**TINY, "epochs": 500, "devices": 2, "strategy": "ddp", "device": "cpu"}
    started = experiments.start_experiment(studio, project="shapes", config=config, name="ddp")
    exp_id = started["experiment"]["id"]

    def steps() -> int:
        with studio.sessions() as s:
            return int(s.scalar(select(func.count()).where(EpochMetric.experiment_id == exp_id)) or 0)

    thread = start_job_thread(studio, started["job"]["id"])
    wait_until(steps, timeout=180, what="the first step")
    experiments.stop_experiment(studio, project="shapes", experiment="ddp")
    thread.join(timeout=120)  # a rank left in a collective would hang here
    assert not thread.is_alive()
    exp = experiments.get_experiment(studio, project="shapes", experiment="ddp")
    assert exp["status"] == "stopped" and exp["job"]["status"] == "cancelled" and exp["epochs_done"] < 500
    assert exp["error"] is None  # stopped gracefully, not killed after the grace period
    with studio.sessions() as s:
        kinds = list(s.scalars(select(Checkpoint.kind).where(Checkpoint.experiment_id == exp_id)))
        rows = list(
            s.execute(select(EpochMetric.name, EpochMetric.step).where(EpochMetric.experiment_id == exp_id))
        )
    assert kinds.count("last") == 1  # rank 0's
    assert len(rows) == len(set(rows))  # one series: no step reported twice
    last = next(c for c in exp["checkpoints"] if c["kind"] == "last")
    model, meta = load_checkpoint(last["path"])
    assert meta["step"] == last["step"] >= 1 and meta["config"]["devices"] == 2
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    assert not list(studio.tmp.glob("train-*"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"devices": 0}, "devices: Input should be greater than or equal to 1"),
        ({"devices": -2}, "devices: Input should be greater than or equal to 1"),
        ({"devices": 2, "strategy": "ddp_spawn"}, "strategy: Input should be 'auto' or 'ddp'"),
        ({"devices": 2, "strategy": "fsdp"}, "strategy: Input should be 'auto' or 'ddp'"),
        ({"devices": 2, "batch_size": 9}, "batch_size 9 does not split evenly over 2 devices"),
    ],
)
def test_bad_devices_or_strategy_is_a_clear_400(config: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        validate_experiment_config("classification", {"device": "cpu", **config})
    assert info.value.status == 400


def test_more_devices_than_gpus_is_a_clear_400(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BadRequest, match=r"devices 2 asked for, but this machine has 1 GPU\(s\)"):
        validate_experiment_config("classification", {"device": "cuda", "precision": "32", "devices": 2})


def test_several_devices_need_the_training_process(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "direct", {**TINY, "devices": 2, "device": "cpu"})
    with pytest.raises(BadRequest, match="starts one process per device"):
        train(spec)
    small = _spec(tmp_path, "small", {**TINY, "devices": 2, "device": "cpu"})
    small.val = small.val[:1]
    with pytest.raises(BadRequest, match="validation subset has 1 image"):
        train(small)


def test_cli_api_and_web_take_devices_and_strategy(
    capsys: pytest.CaptureFixture[str], studio: Studio, tmp_path: Path
) -> None:
    import json

    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app
    from vistudio.cli.main import main
    from vistudio.services import projects

    projects.create_project(studio, name="p", task="classification")  # no images: refused before
    ws = str(studio.settings.home)
    for args, key in (
        (["--devices", "0"], "devices"),
        (["--devices", "2", "--strategy", "ddp_spawn"], "strategy"),
    ):
        assert main(["--workspace", ws, "--json", "train", "p", "--device", "cpu", *args]) == 1
        error = json.loads(capsys.readouterr().out)["error"]
        assert error["code"] == "bad_request" and error["details"]["errors"][0]["key"] == key
    assert main(["--workspace", ws, "--json", "train", "p", "--devices", "2", "--batch-size", "7"]) == 1
    assert "does not split evenly over 2 devices" in json.loads(capsys.readouterr().out)["error"]["message"]
    with TestClient(create_app(studio)) as client:
        resp = client.post(
            "/api/v1/experiments", json={"project": "p", "config": {"devices": 2, "strategy": "horovod"}}
        )
        form = client.post("/projects/p/train/start", data={"devices": "0", "device": "cpu"})
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["errors"][0]["key"] == "strategy"
    assert form.status_code == 400 and "Devices" in form.text
