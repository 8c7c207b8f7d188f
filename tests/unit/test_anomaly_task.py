"""The training parts of anomaly detection (``ml/tasks/anomaly_detection``) without training: the
model's classes (normal first; clear refusals), the target encoding, the weighted loss, one logit
per image, the epoch's metrics equal to the evaluation's, the light default augmentation, and a
checkpoint that rebuilds as a scorer; the ONNX export's sigmoid and threshold (parity, metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from vistudio.errors import BadRequest
from vistudio.ml.checkpoint import load_checkpoint, save_checkpoint
from vistudio.ml.inference.anomaly import sigmoid
from vistudio.ml.inference.onnx import metadata_props
from vistudio.ml.inference.onnx_anomaly import OnnxAnomalyScorer, anomaly_props
from vistudio.ml.tasks import get_training
from vistudio.ml.tasks.anomaly_detection import AnomalyConfig, AnomalyDetectionTask, build_scorer


def _task(**config: object) -> AnomalyDetectionTask:
    return AnomalyDetectionTask(classes=["good", "blob", "scratch"], config=AnomalyConfig(**config))  # type: ignore[arg-type]


def test_the_model_classes_put_the_normal_class_first_or_say_why_not() -> None:
    assert get_training("anomaly_detection") is AnomalyDetectionTask
    assert AnomalyDetectionTask.model_classes(["blob", "good", "scratch"]) == ["good", "blob", "scratch"]
    assert AnomalyDetectionTask.model_classes(["Crack", "OK"]) == ["OK", "Crack"]
    with pytest.raises(BadRequest, match=r"named good or normal or ok or 0.*'a', 'b'"):
        AnomalyDetectionTask.model_classes(["a", "b"])
    with pytest.raises(BadRequest, match=r"only normal images.*one-class method"):
        AnomalyDetectionTask.model_classes(["normal"])
    assert AnomalyDetectionTask.targets_problem([0, 0, 0]) is not None
    assert "normal images" in str(AnomalyDetectionTask.targets_problem([1, 2]))
    assert AnomalyDetectionTask.targets_problem([0, 2, 1]) is None
    assert "no anomalous image" in str(AnomalyDetectionTask.val_targets_problem([0, 0]))
    assert "no normal image" in str(AnomalyDetectionTask.val_targets_problem([2]))


def test_targets_loss_and_the_default_augmentation() -> None:
    task = _task()
    assert [float(task.encode_target(i)) for i in (0, 1, 2)] == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="outside"):
        task.encode_target(3)
    targets = [task.encode_target(i) for i in (0, 0, 0, 0, 0, 0, 1, 2)]
    loss = task.build_loss(targets)
    assert isinstance(loss, torch.nn.BCEWithLogitsLoss) and float(loss.pos_weight) == 3.0  # type: ignore[arg-type]
    assert float(_task(pos_weight="none").build_loss(targets).pos_weight) == 1.0  # type: ignore[arg-type]
    assert float(_task(pos_weight=5.0).build_loss(targets).pos_weight) == 5.0  # type: ignore[arg-type]
    a = task.config.augment
    assert (a.crop, a.flip, a.rotate, a.color) == (False, True, False, False)
    assert task.default_monitor in task.metric_names() and task.monitor_mode("val_auroc") == "max"


def test_one_logit_per_image_and_the_epoch_metrics_are_the_evaluations() -> None:
    task = _task(model="resnet18", image_size=32)
    torch.manual_seed(0)
    model, info = task.build_model()
    assert info.num_classes == 1
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    loss = task.build_loss(list(y))
    model.eval()
    value, logits, targets = task.forward(model, (x, y), loss)
    assert logits.shape == (6,) and value.ndim == 0
    metrics = task.build_metrics("val")
    metrics.update(logits, targets)
    logits2 = torch.tensor([2.0, -1.0, 0.5])
    metrics.update(logits2, torch.tensor([1.0, 0.0, 1.0]))
    scalars, details = task.summarise("val", metrics.compute())
    scores = sigmoid(np.r_[logits.numpy(), logits2.numpy()])
    truth = np.r_[y.numpy(), [1, 0, 1]]
    assert scalars["val_auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
    assert scalars["val_ap"] == pytest.approx(average_precision_score(truth, scores), abs=1e-9)
    assert 0 < details["threshold"] <= 1 and details["threshold_by"] == "f1"


def test_a_checkpoint_rebuilds_as_a_scorer_and_exports_with_its_threshold(tmp_path: Path) -> None:
    from vistudio.ml.export.anomaly import export_scorer
    from vistudio.ml.preprocess import preprocess_meta

    torch.manual_seed(1)
    model, info = build_scorer("resnet18")
    pre = preprocess_meta(32, info.mean, info.std)
    meta = {
        "model": "resnet18",
        "task": "anomaly_detection",
        "classes": ["good", "blob"],
        "preprocess": pre,
        "anomaly": {"normal_class": "good", "output": "logit"},
    }
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "c.pt", model, meta))
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    props = metadata_props(
        model="resnet18",
        classes=meta["classes"],  # type: ignore[arg-type]
        preprocess=pre,
        task="anomaly_detection",
        extra=anomaly_props(meta, threshold=0.25, source="validation"),
    )
    images = list(np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32))
    v = export_scorer(
        model,
        tmp_path / "m.onnx",
        format="onnx",
        input_size=(32, 32),
        props=props,
        opset=17,
        images=images,
        threshold=0.25,
    )
    assert v["passed"] and v["images"] == 5 and v["max_abs_diff"] < 1e-4
    scorer = OnnxAnomalyScorer(tmp_path / "m.onnx")
    assert scorer.threshold == 0.25 and scorer.classes == ["good", "blob"]
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(np.stack(images)))).numpy()[:, 0]
    np.testing.assert_allclose(scorer.scores(np.stack(images)), expected, atol=1e-5)
    assert json.loads(props["defect_types"]) == ["blob"] and props["output_name"] == "score"
    ts = export_scorer(
        model,
        tmp_path / "m.pt",
        format="torchscript",
        input_size=(32, 32),
        props=props,
        opset=17,
        images=images,
        threshold=0.25,
    )
    assert ts["passed"]
