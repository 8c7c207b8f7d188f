"""Exact resume of ``train`` in-process: N steps stopped after some and resumed end with the very
same weights, metrics and learning rates as N uninterrupted steps (mid-epoch or at an epoch's end,
with augmentation, with loader processes), more epochs for a finished run, early stopping kept or
restarted, and the parts: the epoch sampler, seeded items, RNG states, what is refused."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_training_lib import CLASSES, Recorder, _pictures, _spec

from vistudio.errors import BadRequest, InvalidInput
from vistudio.ml.checkpoint import load_checkpoint, read_checkpoint
from vistudio.ml.training.resume import (
    STATE_KEY,
    EpochBatchSampler,
    SeededDataset,
    check_training_state,
    read_training_state,
    rng_state,
    set_rng_state,
)
from vistudio.ml.training.trainer import TrainResult, train

AUGMENTED = {"augment": {"crop": True, "flip": True, "color": True}, "early_stopping": False}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weights(result: TrainResult) -> dict[str, torch.Tensor]:
    assert result.last is not None
    return read_checkpoint(result.last["path"])["state_dict"]  # type: ignore[no-any-return]


def _assert_same_weights(a: TrainResult, b: TrainResult) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def _resumed(
    tmp_path: Path, items: list[tuple[str, int]], stop_after: int, **config: Any
) -> tuple[TrainResult, TrainResult, Recorder, Recorder]:
    """Train until ``stop_after`` steps, then resume the same config from the last checkpoint."""
    first = Recorder(stop_after=stop_after)
    stopped = train(_spec(tmp_path / "stopped", items, **config), first)
    assert stopped.status == "stopped" and stopped.last is not None
    spec = _spec(tmp_path / "resumed", items, **config)
    spec.resume_from = stopped.last["path"]
    second = Recorder()
    return stopped, train(spec, second), first, second


@pytest.mark.parametrize(
    ("stop_after", "config"),
    [
        # 15 images in batches of 4: 3 steps an epoch; step 4 is part-way through epoch 2
        (4, {**AUGMENTED, "epochs": 3, "batch_size": 4}),
        # step 6 ends epoch 2: the epoch's validation and checkpoints, then the stop
        (6, {"epochs": 3, "batch_size": 4, "optimizer": "sgd", "scheduler": "step", "step_size": 1}),
    ],
    ids=["mid-epoch-cosine-augmented", "epoch-end-sgd-step-schedule"],
)
def test_stopped_and_resumed_equals_uninterrupted(
    tmp_path: Path, stop_after: int, config: dict[str, Any]
) -> None:
    items = _pictures(tmp_path / "img", per_class=5)
    straight_rec = Recorder()
    straight = train(_spec(tmp_path / "straight", items, **config), straight_rec)
    stopped, resumed, first, second = _resumed(tmp_path, items, stop_after, **config)
    assert stopped.step == stop_after and resumed.status == "completed" and resumed.step == straight.step == 9
    _assert_same_weights(straight, resumed)
    # the same batches in the same order: every step's loss and learning rate, each step once
    steps = [(s["step"], s["train_loss_step"], s["lr"]) for s in first.of("step") + second.of("step")]
    assert steps == [(s["step"], s["train_loss_step"], s["lr"]) for s in straight_rec.of("step")]
    # the resumed epoch's training metrics count the batches before the stop too
    assert resumed.final_metrics == straight.final_metrics
    epochs = [(e["epoch"], e["step"], e["best"]) for e in first.of("epoch") + second.of("epoch")]
    assert epochs == [(e["epoch"], e["step"], e["best"]) for e in straight_rec.of("epoch")]
    assert resumed.epochs == 3 and (resumed.best or {}).get("epoch") == (straight.best or {}).get("epoch")
    (start,) = second.of("start")
    assert start["resumed_from_step"] == stop_after
    # the resumed run's last checkpoint is an ordinary one too
    model, meta = load_checkpoint(resumed.last["path"])  # type: ignore[index]
    assert (meta["kind"], meta["epoch"], meta["step"]) == ("last", 3, 9) and meta["classes"] == CLASSES
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3)


def test_a_stop_part_way_through_an_epoch_is_not_an_epoch(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=5)
    rec = Recorder(stop_after=4)
    result = train(_spec(tmp_path, items, epochs=3, batch_size=4), rec)
    # epoch 1 was validated; the stop in epoch 2 was not (no validation, no epoch report)
    assert [e["epoch"] for e in rec.of("epoch")] == [1] and result.epochs == 1
    last = rec.of("checkpoint")[-1]
    assert (last["kind"], last["epoch"], last["step"]) == ("last", 1, 4)
    saved = read_training_state(last["path"])  # loads with weights_only=True
    assert saved[STATE_KEY]["global_step"] == 4 and saved["meta"]["step"] == 4


def test_loader_processes_do_not_change_the_run(tmp_path: Path) -> None:
    """Augmentations are seeded per image: a run resumed with two loader processes equals an
    uninterrupted one without any."""
    items = _pictures(tmp_path / "img", per_class=4)
    config = {**AUGMENTED, "epochs": 2, "batch_size": 4}
    straight = train(_spec(tmp_path / "straight", items, **config, num_workers=0), Recorder())
    _, resumed, _, _ = _resumed(tmp_path, items, 2, **config, num_workers=2)
    _assert_same_weights(straight, resumed)


def test_more_epochs_continue_a_finished_run_and_none_left_changes_nothing(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=4)  # 12 images, batches of 4: 3 steps an epoch
    config = {"epochs": 2, "batch_size": 4, "early_stopping": False}
    done = train(_spec(tmp_path / "two", items, **config), Recorder())
    assert done.last is not None and done.step == 6
    # resumed as it was: nothing left to train, nothing written
    spec = _spec(tmp_path / "again", items, **config)
    spec.resume_from = done.last["path"]
    again_rec = Recorder()
    again = train(spec, again_rec)
    assert again.status == "completed" and again.step == 6 and again.epochs == 2
    assert again_rec.of("checkpoint") == [] and again_rec.of("step") == []
    # two more epochs: steps 7-12, the cosine schedule stretched over 12 steps from step 6 on (lr after step 7)
    spec = _spec(tmp_path / "four", items, **{**config, "epochs": 4})
    spec.resume_from, spec.resume_mode = done.last["path"], "extend"
    rec = Recorder()
    more = train(spec, rec)
    assert more.status == "completed" and more.step == 12 and more.epochs == 4
    lrs = [s["lr"] for s in rec.of("step")]
    assert [s["step"] for s in rec.of("step")] == [7, 8, 9, 10, 11, 12]
    assert lrs[0] == pytest.approx(0.005 * (1 + np.cos(np.pi * 7 / 12)) / 2) and lrs[-1] == pytest.approx(0)
    _, meta = load_checkpoint(more.last["path"])  # type: ignore[index]
    assert meta["config"]["epochs"] == 4 and meta["epoch"] == 4


def test_an_early_stop_stands_on_a_retry_and_patience_restarts_when_extended(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=3)
    # validation images are training images: val accuracy soon reaches 100 % and cannot improve
    config = {"epochs": 12, "lr": 0.01, "patience": 2, "batch_size": 4}
    stopped = train(_spec(tmp_path / "first", items, **config), Recorder())
    assert stopped.status == "early_stopped" and stopped.last is not None
    spec = _spec(tmp_path / "retry", items, **config)
    spec.resume_from = stopped.last["path"]
    rec = Recorder()
    retry = train(spec, rec)
    assert retry.status == "early_stopped" and retry.step == stopped.step and rec.of("step") == []
    spec = _spec(tmp_path / "extend", items, **config)
    spec.resume_from, spec.resume_mode = stopped.last["path"], "extend"
    rec = Recorder()
    extended = train(spec, rec)
    # patience counts afresh: at least two more epochs unless the metric improves
    assert extended.step > stopped.step and len(rec.of("epoch")) >= 2
    assert extended.status in ("early_stopped", "completed")


def test_what_cannot_be_resumed_is_refused(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=3)
    result = train(_spec(tmp_path / "one", items, epochs=1, batch_size=4), Recorder())
    assert result.best is not None and result.last is not None
    with pytest.raises(InvalidInput, match="no training state"):
        read_training_state(result.best["path"])  # a best checkpoint has weights only
    spec = _spec(tmp_path / "best", items, epochs=2, batch_size=4)
    spec.resume_from = result.best["path"]
    with pytest.raises(InvalidInput, match="no training state"):
        train(spec, Recorder())
    spec = _spec(tmp_path / "other", items, epochs=2, batch_size=4)
    spec.classes, spec.resume_from = ["a", "b", "c"], result.last["path"]
    with pytest.raises(BadRequest, match="other classes"):
        train(spec, Recorder())
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    spec.classes, spec.resume_from = CLASSES, str(junk)
    with pytest.raises(InvalidInput, match="not a loadable checkpoint"):
        train(spec, Recorder())


def test_the_resume_check_maps_the_file_and_refuses_what_training_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check made before a resume is queued memory-maps the checkpoint (its tensors are not
    read) and refuses what the training's own full read refuses (and a file in torch's old
    format, which is never written here)."""
    items = _pictures(tmp_path / "img", per_class=3)
    result = train(_spec(tmp_path / "one", items, epochs=1, batch_size=4), Recorder())
    assert result.best is not None and result.last is not None
    calls: list[dict[str, Any]] = []
    load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    check_training_state(result.last["path"])
    assert calls == [{"map_location": "cpu", "mmap": True, "weights_only": True}]
    monkeypatch.setattr(torch, "load", load)

    last = Path(result.last["path"]).read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    legacy = bad / "legacy.pt"  # the old non-zip format cannot be mapped: refused, not read whole
    torch.save(read_checkpoint(result.last["path"]), legacy, _use_new_zipfile_serialization=False)
    foreign = bad / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, word in [
        (result.best["path"], "no training state"),
        (bad / "missing.pt", "not a loadable checkpoint"),
        (bad / "junk.pt", "not a loadable checkpoint"),
        (bad / "half.pt", "not a loadable checkpoint"),
        (bad / "empty.pt", "not a loadable checkpoint"),
        (legacy, "not a loadable checkpoint"),
        (foreign, "not a vistudio checkpoint"),
    ]:
        if Path(path).name == "junk.pt":
            Path(path).write_bytes(b"\x00garbage" * 100)
        elif Path(path).name == "half.pt":
            Path(path).write_bytes(last[: len(last) // 2])
        elif Path(path).name == "empty.pt":
            Path(path).write_bytes(b"")
        with pytest.raises(InvalidInput, match=word):
            check_training_state(path)
        if path != legacy:
            with pytest.raises(InvalidInput, match=word):
                read_training_state(path)  # what the training reads agrees


def test_a_resumed_job_reports_the_epoch_it_resumes_in() -> None:
    from vistudio.services.experiments.job import starting_epoch

    assert starting_epoch(None, 4, 10) == 1 and starting_epoch(0, 4, 10) == 1
    assert starting_epoch(3, 4, 10) == 1  # stopped part-way through epoch 1
    assert starting_epoch(4, 4, 10) == 2  # at the end of epoch 1: epoch 2 comes next
    assert starting_epoch(9, 4, 10) == 3
    assert starting_epoch(40, 4, 10) == 10  # never past the last epoch
    assert starting_epoch(5, 0, 10) == 1


# --- the parts --------------------------------------------------------------------------------------


def test_epoch_sampler_orders_by_seed_and_epoch_and_skips_what_was_trained() -> None:
    sampler = EpochBatchSampler(10, 3, seed=5, drop_last=True)
    assert len(sampler) == 3 and sampler.sampler is sampler  # Lightning's set_epoch finds it
    epoch0 = list(sampler)
    assert (
        len({i for b in epoch0 for i, _ in b}) == 9
    )  # 9 of 10 images: the partial batch is dropped and all(len(b) == 3 for b in epoch0)
    assert list(sampler) == epoch0  # a function of (seed, epoch) only
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    assert list(EpochBatchSampler(10, 3, seed=6, drop_last=True)) != epoch0
    # every image has its own seed per epoch
    seeds = {s for b in epoch0 + epoch1 for _, s in b}
    assert len(seeds) == 18
    # resumed after one batch of epoch 1: its two other batches, then epoch 2 whole
    resumed = EpochBatchSampler(10, 3, seed=5, drop_last=True)
    resumed.resume_at(1, 1)
    assert list(resumed) == epoch1[1:]
    resumed.set_epoch(2)
    assert len(list(resumed)) == 3
    # an epoch that had ended moves on to the next one
    ended = EpochBatchSampler(10, 3, seed=5, drop_last=True)
    ended.resume_at(0, 3)
    assert ended.epoch == 1 and list(ended) == epoch1
    assert len(EpochBatchSampler(10, 3, seed=5, drop_last=False)) == 4


def test_seeded_items_are_reproducible_and_leave_the_step_rngs_alone() -> None:
    class Noisy(torch.utils.data.Dataset[Any]):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[float, float, float]:
            return torch.rand(1).item(), float(np.random.rand()), random.random()

    data = SeededDataset(Noisy())
    torch.manual_seed(0)
    random.seed(0)
    before = (torch.get_rng_state(), random.getstate())
    a, b, c = data[(0, 11)], data[(0, 11)], data[(1, 12)]
    assert a == b and a != c
    # torch's and random's states are put back (a training step draws from them); numpy's is the
    # last image's seed: a function of the data order, the same in a resumed run
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    np.random.seed(12)
    np.random.rand()  # what the item drew
    expected = np.random.get_state()[1].copy()
    data[(1, 12)]
    assert np.array_equal(np.random.get_state()[1], expected)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # a cached Gaussian is part of numpy's state
    saved = rng_state()
    path = tmp_path / "rng.pt"
    torch.save(saved, path)
    expected = (torch.rand(3), np.random.randn(3), random.random())
    set_rng_state(torch.load(path, weights_only=True))
    again = (torch.rand(3), np.random.randn(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
