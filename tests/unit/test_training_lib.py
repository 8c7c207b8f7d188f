"""The training library alone (no database): config validation, the classification task's parts,
the data path, and ``train`` in-process on a few tiny images — callbacks, checkpoints, stop,
early stopping, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from factories import draw_image
from vistudio.errors import BadRequest
from vistudio.ml.checkpoint import load_checkpoint
from vistudio.ml.preprocess import eval_array, open_rgb, preprocess_meta
from vistudio.ml.tasks import get_training
from vistudio.ml.tasks.classification import ClassificationConfig, ClassificationTask
from vistudio.ml.training.callbacks import Throughput, TrainingCallbacks, report_every
from vistudio.ml.training.config import TrainConfig, config_warnings, validate_config
from vistudio.ml.training.data import ImageDataModule, ImageDataset
from vistudio.ml.training.trainer import (
    TrainSpec,
    resolve_accelerator,
    resolve_monitor,
    resolve_precision,
    train,
)

CLASSES = ["circle", "square", "stripes"]


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pictures(root: Path, per_class: int = 6) -> list[tuple[str, int]]:
    """Three visually distinct classes of 20×20 pictures."""
    items = []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            img = Image.new("RGB", (20, 20), (30 + 10 * i, 30, 30))
            px = img.load()
            assert px is not None
            for y in range(20):
                for x in range(20):
                    on = (
                        (x - 10) ** 2 + (y - 10) ** 2 < 40
                        if c == 0
                        else (5 <= x < 15 and 5 <= y < 15)
                        if c == 1
                        else (x // 3) % 2 == 0
                    )
                    if on:
                        px[x, y] = (240, 240 - 20 * i, 200)
            path = root / name / f"{name}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)
            items.append((str(path), c))
    return items


def _spec(tmp_path: Path, items: list[tuple[str, int]], **config: Any) -> TrainSpec:
    base = {
        "model": "resnet18",
        "image_size": 16,
        "epochs": 2,
        "batch_size": 6,
        "lr": 0.005,
        "augment": {"crop": False, "flip": False},
        "log_every_n_steps": 1,
        "seed": 3,
    }
    return TrainSpec(
        task="classification",
        config={**base, **config},
        classes=CLASSES,
        train=items,
        val=items[::2],
        workdir=str(tmp_path / "work"),
        meta={"experiment": "unit"},
    )


class Recorder(TrainingCallbacks):
    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.stop_after = stop_after

    def on_start(self, info: dict[str, Any]) -> None:
        self.calls.append(("start", info))

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.calls.append(("step", {"epoch": epoch, "step": step, **metrics}))

    def on_progress(self, live: dict[str, Any]) -> None:
        self.calls.append(("progress", live))

    def on_epoch(
        self, *, epoch: int, step: int, metrics: dict[str, float], details: dict[str, Any], best: bool
    ) -> None:
        self.calls.append(
            ("epoch", {"epoch": epoch, "step": step, "best": best, "metrics": metrics, "details": details})
        )

    def on_checkpoint(
        self, *, kind: str, path: Path, epoch: int, step: int, metrics: dict[str, float]
    ) -> None:
        self.calls.append(("checkpoint", {"kind": kind, "path": path, "epoch": epoch, "step": step}))

    def should_stop(self) -> bool:
        steps = sum(1 for k, _ in self.calls if k == "step")
        return self.stop_after is not None and steps >= self.stop_after

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.calls if k == kind]


# --- config ---------------------------------------------------------------------------------------


def test_config_defaults_and_clear_400s_for_unknown_keys_and_ranges() -> None:
    cfg = validate_config(ClassificationConfig, {})
    assert (cfg.model, cfg.epochs, cfg.optimizer, cfg.scheduler, cfg.precision) == (
        "resnet18",
        10,
        "adamw",
        "cosine",
        "auto",
    )
    assert cfg.augment.crop and cfg.augment.flip and not cfg.augment.rotate
    with pytest.raises(BadRequest) as err:
        validate_config(
            ClassificationConfig, {"epochz": 3, "lr": -1, "augment": {"blur": True}, "optimizer": "adam"}
        )
    keys = {e["key"]: e["message"] for e in err.value.details["errors"]}
    assert keys["epochz"] == "unknown key" and keys["augment.blur"] == "unknown key"
    assert "greater than 0" in keys["lr"] and "adamw" in keys["optimizer"]
    assert err.value.status == 400 and "(and 3 more)" in err.value.message
    for bad in (
        {"batch_size": 0},
        {"image_size": 4096},
        {"label_smoothing": 0.9},
        {"class_weights": [1.0]},
        {"class_weights": "weird"},
        {"pretrained": "  "},
        {"seed": -1},
    ):
        with pytest.raises(BadRequest):
            validate_config(ClassificationConfig, bad)
    with pytest.raises(BadRequest, match="JSON object"):
        validate_config(ClassificationConfig, [1, 2])  # type: ignore[arg-type]


def test_task_registry_resolves_trainable_tasks_only() -> None:
    assert get_training("classification") is ClassificationTask
    assert get_training("detection").name == "detection"
    assert get_training("oriented_detection").name == "oriented_detection"
    with pytest.raises(BadRequest, match="not available"):
        get_training("library")
    with pytest.raises(BadRequest, match="unknown task"):
        get_training("painting")


def test_device_precision_and_monitor_resolution() -> None:
    assert resolve_accelerator("cpu") == "cpu"
    assert resolve_precision("auto", "cpu") == "32-true" and resolve_precision("bf16", "cpu") == "bf16-mixed"
    with pytest.raises(BadRequest, match="needs a GPU"):
        resolve_precision("16", "cpu")
    if not torch.cuda.is_available():
        assert resolve_accelerator("auto") == "cpu"
        with pytest.raises(BadRequest, match="CUDA is not available"):
            resolve_accelerator("cuda")
    cfg = validate_config(ClassificationConfig, {"monitor": "val_loss"})
    assert resolve_monitor(ClassificationTask, cfg) == ("val_loss", "min")
    assert resolve_monitor(ClassificationTask, validate_config(ClassificationConfig, {})) == (
        "val_accuracy",
        "max",
    )
    with pytest.raises(BadRequest, match="not a metric"):
        resolve_monitor(ClassificationTask, validate_config(ClassificationConfig, {"monitor": "val_bogus"}))


# --- the classification task ----------------------------------------------------------------------


def test_loss_weights_smoothing_and_metric_summary() -> None:
    task = ClassificationTask(
        classes=["a", "b"], config=ClassificationConfig(class_weights="balanced", label_smoothing=0.1)
    )
    loss = task.build_loss([0, 0, 0, 1])  # 3:1 → the rare class weighs 3× as much
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and loss.label_smoothing == pytest.approx(0.1)
    assert loss.weight is not None and loss.weight.tolist() == pytest.approx([4 / 6, 2.0])
    explicit = ClassificationTask(classes=["a", "b"], config=ClassificationConfig(class_weights=[1.0, 5.0]))
    assert explicit.build_loss([0, 1]).weight.tolist() == [1.0, 5.0]  # type: ignore[union-attr]
    wrong = ClassificationTask(classes=["a", "b", "c"], config=ClassificationConfig(class_weights=[1.0, 5.0]))
    with pytest.raises(BadRequest, match="2 values for 3 classes"):
        wrong.build_loss([0])
    metrics = task.build_metrics("val")
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    metrics.update(logits, torch.tensor([0, 0, 1, 1]))
    scalars, details = task.summarise("val", metrics.compute())
    assert scalars["val_accuracy"] == pytest.approx(0.75) and scalars["val_recall_macro"] == pytest.approx(
        0.75
    )
    assert scalars["val_f1_micro"] == pytest.approx(0.75)
    assert details["confusion"] == [[2, 0], [1, 1]]
    assert details["per_class"]["b"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3, abs=1e-6),
    }
    assert set(scalars) <= set(ClassificationTask.metric_names())
    with pytest.raises(ValueError, match="outside"):
        task.encode_target(2)
    with pytest.raises(BadRequest, match="above 0"):
        validate_config(ClassificationConfig, {"class_weights": [0.0, 0.0]})


def test_validation_metrics_use_the_evaluation_definitions_for_an_absent_class() -> None:
    """A class with no validation image that is never predicted counts as 0 in the macro
    averages, as in the evaluation (scikit-learn, zero_division=0) — not left out."""
    from sklearn.metrics import precision_recall_fscore_support

    task = ClassificationTask(classes=["a", "b", "c"], config=ClassificationConfig())
    metrics = task.build_metrics("val")
    y_true, y_pred = [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(y_pred), 3).float()
    metrics.update(logits, torch.tensor(y_true))
    scalars, details = task.summarise("val", metrics.compute())
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1, 2], average="macro", zero_division=0
    )
    assert scalars["val_precision_macro"] == pytest.approx(p)
    assert scalars["val_recall_macro"] == pytest.approx(r)
    assert scalars["val_f1_macro"] == pytest.approx(f) and f < 0.6  # (2/3 + 2/3 + 0) / 3
    assert details["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_eval_transform_is_exactly_the_shared_preprocessing(tmp_path: Path) -> None:
    path = draw_image(tmp_path / "x.jpg", seed=4, size=(90, 60), fmt="JPEG")
    meta = preprocess_meta(24, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    task = ClassificationTask(
        classes=CLASSES, config=ClassificationConfig(augment={"crop": False, "flip": False})
    )
    data = ImageDataset([(str(path), 1)], task.eval_transform(meta), draft_size=24)
    x, y = data[0]
    expected = eval_array(open_rgb(path, draft_size=24), meta)
    assert y == 1 and x.dtype == torch.float32 and np.array_equal(x.numpy(), expected)
    # augmentation off → training input == evaluation input; on → same shape, different pixels
    plain = ImageDataset([(str(path), 1)], task.train_transform(meta), draft_size=24)[0][0]
    assert torch.equal(plain, x)
    every = ClassificationTask(
        classes=CLASSES,
        config=ClassificationConfig(augment={"crop": True, "flip": True, "rotate": True, "color": True}),
    )
    torch.manual_seed(0)
    augmented = ImageDataset([(str(path), 1)], every.train_transform(meta), draft_size=24)[0][0]
    assert augmented.shape == (3, 24, 24) and not torch.equal(augmented, x)


def test_unreadable_image_names_its_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    task = ClassificationTask(classes=CLASSES, config=ClassificationConfig())
    data = ImageDataset([(str(bad), 0)], task.eval_transform(preprocess_meta(8, [0, 0, 0], [1, 1, 1])))
    with pytest.raises(RuntimeError, match=r"cannot read training image .*broken\.png"):
        data[0]


def test_datamodule_shuffles_deterministically_and_drops_a_partial_last_batch(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=3)
    task = ClassificationTask(classes=CLASSES, config=ClassificationConfig())
    meta = preprocess_meta(8, [0, 0, 0], [1, 1, 1])

    def order(seed: int) -> list[int]:
        dm = ImageDataModule(task=task, preprocess=meta, train=items, val=items, batch_size=4, seed=seed)
        return [int(t) for _, y in dm.train_dataloader() for t in y]

    assert order(1) == order(1) != order(2)
    assert len(order(1)) == 8  # 9 images, batches of 4: the last image of 1 is dropped in training
    dm = ImageDataModule(task=task, preprocess=meta, train=items, val=items, batch_size=4)
    assert sum(len(y) for _, y in dm.val_dataloader()) == 9  # validation sees every image


# --- train() --------------------------------------------------------------------------------------


def test_train_reports_steps_epochs_and_writes_loadable_checkpoints(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img")
    rec = Recorder()
    result = train(_spec(tmp_path, items), rec)
    assert result.status == "completed" and result.epochs == 2 and result.step == 6
    (start,) = rec.of("start")
    assert start["steps_per_epoch"] == 3 and start["total_steps"] == 6 and start["accelerator"] == "cpu"
    assert [s["step"] for s in rec.of("step")] == [1, 2, 3, 4, 5, 6]
    assert all(s["train_loss_step"] > 0 for s in rec.of("step"))
    lrs = [s["lr"] for s in rec.of("step")]  # cosine over every step: down to 0 at the last one
    assert lrs[0] > 0 and lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0)
    epochs = rec.of("epoch")
    assert [(e["epoch"], e["step"]) for e in epochs] == [(1, 3), (2, 6)] and epochs[0]["best"]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1_macro"} <= set(
        epochs[-1]["metrics"]
    )
    assert len(epochs[-1]["details"]["confusion"]) == 3 and set(epochs[-1]["details"]["per_class"]) == set(
        CLASSES
    )
    kinds = [(c["kind"], c["epoch"]) for c in rec.of("checkpoint")]
    assert ("last", 1) in kinds and ("last", 2) in kinds and ("best", 1) in kinds
    model, meta = load_checkpoint(rec.of("checkpoint")[-1]["path"])
    assert meta["classes"] == CLASSES and meta["task"] == "classification" and meta["experiment"] == "unit"
    assert meta["preprocess"]["input_size"] == [16, 16] and meta["config"]["epochs"] == 2
    assert (meta["kind"], meta["epoch"], meta["step"]) == ("last", 2, 6) and "val_accuracy" in meta["metrics"]
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3)
    # nothing but checkpoints in the work folder: no Lightning logs, no checkpoints of its own
    assert {p.suffix for p in Path(tmp_path / "work").rglob("*") if p.is_file()} == {".pt"}
    assert not (Path.cwd() / "lightning_logs").exists()


def test_same_seed_same_run(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=4)
    a = train(_spec(tmp_path / "a", items, epochs=1), Recorder())
    b = train(_spec(tmp_path / "b", items, epochs=1), Recorder())
    assert a.final_metrics == b.final_metrics


def test_stop_request_ends_gracefully_with_a_last_checkpoint(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img")
    rec = Recorder(stop_after=1)
    result = train(_spec(tmp_path, items, epochs=50), rec)
    assert result.status == "stopped" and result.step == 1
    assert result.last is not None and result.last["step"] == 1
    _, meta = load_checkpoint(result.last["path"])
    assert meta["kind"] == "last" and meta["step"] == 1


def test_early_stopping_stops_when_the_monitored_metric_stalls(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img", per_class=3)
    # validation images are training images: val accuracy soon reaches 100 % and cannot improve
    rec = Recorder()
    result = train(_spec(tmp_path, items, epochs=12, lr=0.01, patience=2, batch_size=4), rec)
    assert result.status == "early_stopped" and result.epochs < 12
    assert result.best is not None and result.best["epoch"] == result.epochs - 2
    assert [e["best"] for e in rec.of("epoch")][-2:] == [False, False]


# --- live view: step points from the first epoch, images/s, ETA, image-size warnings -------------


def test_short_epochs_still_get_step_points_from_the_first_step(tmp_path: Path) -> None:
    items = _pictures(tmp_path / "img")  # 18 images, batch 2: 9 steps an epoch, fewer than 10
    rec = Recorder()
    train(_spec(tmp_path, items, batch_size=2, log_every_n_steps=10, epochs=2), rec)
    (start,) = rec.of("start")
    assert start["steps_per_epoch"] == 9 and start["log_every_n_steps"] == 2
    kinds = [k for k, _ in rec.calls]
    first_epoch_end = kinds.index("epoch")
    before = [d for k, d in rec.calls[:first_epoch_end] if k == "step"]
    # points from step 1 on, every 2 steps: the chart moves during the first epoch
    assert [d["step"] for d in before] == [1, 2, 4, 6, 8] and all(d["epoch"] == 1 for d in before)
    assert all(0 <= d["train_accuracy_step"] <= 1 and d["train_loss_step"] > 0 for d in before)
    progress = [d for k, d in rec.calls[:first_epoch_end] if k == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 4, 6, 8]
    for p in progress:
        assert p["epoch"] == 1 and p["epochs"] == 2 and p["total_steps"] == 18 and p["steps_per_epoch"] == 9
        assert p["images_per_s"] > 0 and p["eta_s"] > 0 and p["elapsed_s"] >= 0
    last = rec.of("progress")[-1]  # after the last epoch: nothing left
    assert (last["step"], last["epoch"], last["eta_s"]) == (18, 2, 0)


def test_report_interval_and_throughput_estimates() -> None:
    assert report_every(10, 1000) == 10 and report_every(10, 9) == 2 and report_every(10, 3) == 1
    clock = Throughput(steps_per_epoch=10, epochs=2, val_steps=3)
    assert clock.live(epoch=1, step=0, validated=0)["images_per_s"] is None
    clock.first = (4.0, 8)  # an epoch's first batch, slowed by the loader's start: used only alone
    assert clock.live(epoch=1, step=1, validated=0)["images_per_s"] == 2.0
    clock.batches.extend([(0.5, 8)] * 4)  # 4 batches of 8 images, half a second each
    live = clock.live(epoch=1, step=4, validated=0)
    assert live["images_per_s"] == 16.0
    # 16 training steps left at 0.5 s, and 2 validations of 3 batches estimated at a third of that
    assert live["eta_s"] == pytest.approx(16 * 0.5 + 2 * 3 * 0.5 / 3)
    clock.val_seconds = 2.0  # once measured, the validation's own time counts
    assert clock.live(epoch=2, step=10, validated=1)["eta_s"] == pytest.approx(10 * 0.5 + 2.0)


def test_image_size_below_the_models_minimum_is_a_warning() -> None:
    (warning,) = config_warnings(TrainConfig(model="mobilenet_v3_small", image_size=32))
    assert warning["key"] == "image_size" and warning["code"] == "image_size_too_small"
    assert warning["minimum"] == 96 and "mobilenet_v3_small" in warning["message"]
    assert "resnet18" in warning["message"]  # a model that does learn at 32 px
    assert config_warnings(TrainConfig(model="mobilenet_v3_small", image_size=224)) == []
    assert config_warnings(TrainConfig(model="resnet18", image_size=32)) == []
