"""Regression without a workspace: the metrics equal NumPy's formulas and scikit-learn's, the mean
predictor scores R² 0, the z-score (std 0 included), histograms of any range, the training task's
model, loss, metrics and checkpoint, the CSV reader's bad rows, and the ``regress_onnx`` stage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score, root_mean_squared_error

from vistudio.errors import BadRequest
from vistudio.ingest.readers.csv import parse_csv_text
from vistudio.ml.inference.regression import (
    describe,
    histogram,
    is_regression_task,
    normalisation,
    regression_metrics,
    target_names,
    value_parity,
    value_vector,
)
from vistudio.ml.tasks import get_task, lower_is_better
from vistudio.ml.training.config import validate_config

TOL = 1e-6


def _close(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= TOL * max(1.0, abs(b))


# --- metrics ----------------------------------------------------------------------------------------


def check_against_sklearn(y: np.ndarray, p: np.ndarray) -> None:
    names = target_names(y.shape[1])
    m = regression_metrics(y, p, names)
    assert m["samples"] == y.shape[0]
    # averaged over the targets, equal weights (scikit-learn's uniform_average)
    assert _close(m["mae"], mean_absolute_error(y, p))
    assert _close(m["mse"], mean_squared_error(y, p))
    assert _close(m["rmse"], root_mean_squared_error(y, p))
    assert _close(m["r2"], r2_score(y, p))
    # per target, and NumPy's own formulas
    for t, name in enumerate(names):
        row = m["per_target"][name]
        err = p[:, t] - y[:, t]
        assert _close(row["mae"], float(np.mean(np.abs(err))))
        assert _close(row["mse"], float(np.mean(err**2)))
        assert _close(row["rmse"], float(np.sqrt(np.mean(err**2))))
        r2 = 1 - np.sum(err**2) / np.sum((y[:, t] - y[:, t].mean()) ** 2)
        assert _close(row["r2"], float(r2))
        assert _close(row["r2"], r2_score(y[:, t], p[:, t]))


@pytest.mark.parametrize(
    ("n", "t", "scale", "offset"), [(50, 1, 1.0, 0.0), (200, 3, 1e4, -5e5), (7, 2, 1e-3, 0.0)]
)
def test_metrics_equal_numpy_and_sklearn(n: int, t: int, scale: float, offset: float) -> None:
    rng = np.random.default_rng(n + t)
    y = rng.normal(offset, scale, (n, t))
    p = y + rng.normal(0, scale / 3, (n, t))
    check_against_sklearn(y, p)


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(1, 3)), elements=st.floats(-1e6, 1e6)),
    st.floats(-10, 10),
)
def test_metrics_equal_sklearn_on_any_values(y: np.ndarray, shift: float) -> None:
    if np.any(np.ptp(y, axis=0) < 1e-3):  # a constant target's R² is undefined: tested below
        return
    p = y * 0.8 + shift
    check_against_sklearn(y, p)


def test_the_mean_predictor_scores_zero_and_a_perfect_one_one() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(-300, 50, (500, 2))
    mean = np.broadcast_to(y.mean(axis=0), y.shape)
    m = regression_metrics(y, mean, ["a", "b"])
    assert abs(m["r2"]) < 1e-12
    assert all(abs(r["r2"]) < 1e-12 for r in m["per_target"].values())
    assert _close(m["rmse"], float(np.mean(y.std(axis=0))))  # its RMSE is the targets' std
    perfect = regression_metrics(y, y, ["a", "b"])
    assert perfect["r2"] == 1.0 and perfect["mae"] == 0.0
    worse = regression_metrics(y, y[::-1], ["a", "b"])
    assert worse["r2"] < 0  # worse than the mean


def test_undefined_and_overflowing_metrics_are_none_not_nan() -> None:
    y = np.array([[5.0, 1.0], [5.0, 2.0], [5.0, 3.0]])
    p = np.array([[4.0, 1.0], [6.0, 2.0], [5.0, 3.0]])
    m = regression_metrics(y, p, ["flat", "ok"])
    assert m["per_target"]["flat"]["r2"] is None  # all true values equal: R² is undefined
    assert m["per_target"]["flat"]["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == 1.0  # the mean over the targets where it is defined
    huge = regression_metrics([[1e200], [-1e200]], [[-1e200], [1e200]], ["x"])
    assert huge["mse"] is None and huge["rmse"] is None and huge["mae"] == pytest.approx(2e200)
    assert regression_metrics(np.zeros((0, 1)), np.zeros((0, 1)), ["x"])["mae"] is None
    with pytest.raises(ValueError):
        regression_metrics([[1.0]], [[1.0, 2.0]], ["x"])


# --- values, names, z-score, histograms ----------------------------------------------------------------


def test_target_names_and_value_vectors() -> None:
    assert target_names(1) == ["target"]
    assert target_names(3) == ["target_1", "target_2", "target_3"]
    with pytest.raises(ValueError):
        target_names(0)
    assert value_vector({"values": [1, -2.5]}) == [1.0, -2.5]
    for bad in ({"values": []}, {"values": [float("nan")]}, {"values": [float("inf")]}, {"values": [True]}):
        assert value_vector(bad) is None
    assert (
        value_vector({"values": ["3"]}) is None and value_vector(None) is None and value_vector([1.0]) is None
    )
    assert is_regression_task("regression") and not is_regression_task("classification")
    assert not is_regression_task("no-such-task")


def test_normalisation_is_the_training_mean_and_std_and_never_zero() -> None:
    values = [[10.0, 7.0], [20.0, 7.0], [30.0, 7.0]]
    mean, std = normalisation(values)
    assert mean == [20.0, 7.0]
    assert std[0] == pytest.approx(np.std([10, 20, 30]))  # population std
    assert std[1] == 1.0  # all equal: std 1, nothing divided by zero
    mean, std = normalisation([[1e9], [1e9 + 1e-9]])  # a spread too small to divide by
    assert std == [1.0]
    with pytest.raises(ValueError):
        normalisation(np.zeros((0, 2)))


@pytest.mark.parametrize(
    "values",
    [
        [-5.0, -1.0, 0.0, 2.5, 10.0],
        [1e12, 3e12, -7e12],
        [1e-9, 2e-9, 5e-9],
        [-1e308, 1e308, 0.0],  # a range wider than a float's difference
        [4.0] * 6,
    ],
)
def test_histograms_of_any_range(values: list[float]) -> None:
    h = histogram([*values, float("nan"), float("inf")], bins=10)
    assert sum(h["counts"]) == len(values)  # NaN and infinity are not values
    assert len(h["edges"]) == len(h["counts"]) + 1
    assert all(math.isfinite(e) for e in h["edges"])
    assert h["edges"] == sorted(h["edges"]) and h["edges"][0] <= min(values) and h["edges"][-1] >= max(values)
    d = describe(values)
    assert d["count"] == len(values) and d["min"] == min(values) and d["max"] == max(values)
    assert histogram([])["counts"] == [] and describe([])["mean"] is None


def test_value_parity_fails_beyond_the_tolerance() -> None:
    ref = np.array([[100.0, 1.0], [200.0, 2.0]], dtype=np.float32)
    ok = value_parity(ref, ref + np.float32(1e-4), [50.0, 0.5])
    assert ok["passed"] and ok["max_abs_diff"] == pytest.approx(1e-4, rel=0.2)
    bad = value_parity(ref, ref + np.array([[0.0, 0.01]], dtype=np.float32), [50.0, 0.5])
    assert not bad["passed"] and bad["max_std_diff"] == pytest.approx(0.02, rel=1e-3)


# --- the training task -------------------------------------------------------------------------------


def _task(targets: int = 2, **config: object):  # type: ignore[no-untyped-def]
    from vistudio.ml.tasks import get_training

    cls = get_training("regression")
    cfg = validate_config(cls.config_model, {"model": "resnet18", "image_size": 32, **config})
    return cls(classes=target_names(targets), config=cfg)


def test_config_loss_keys_and_light_default_augmentation() -> None:
    from vistudio.ml.tasks.regression import RegressionConfig

    cfg = validate_config(RegressionConfig, {})
    assert cfg.loss == "mse" and cfg.augment.flip and not cfg.augment.crop
    assert not cfg.augment.color and not cfg.augment.rotate
    assert validate_config(RegressionConfig, {"loss": "huber", "huber_delta": 0.5}).loss == "huber"
    with pytest.raises(BadRequest, match="loss"):
        validate_config(RegressionConfig, {"loss": "hinge"})
    with pytest.raises(BadRequest, match="huber_delta"):
        validate_config(RegressionConfig, {"huber_delta": 0})


def test_errors_are_minimised_and_shown_lower_is_better() -> None:
    from vistudio.ml.tasks import get_training

    cls = get_training("regression")
    assert cls.default_monitor == "val_rmse" and cls.min_classes == 0
    for m in ("val_mae", "val_mse", "val_rmse", "val_loss", "train_mae"):
        assert cls.monitor_mode(m) == "min" and lower_is_better(m)
    assert cls.monitor_mode("val_r2") == "max" and not lower_is_better("val_r2")
    display = get_task("regression").display
    shown = {k.removesuffix("_step") for k in display.keys()}  # noqa: SIM118 - a method, not a dict
    assert shown <= set(cls.metric_names())
    assert display.formats()["val_r2"] == "decimal" and display.formats()["val_rmse"] == "loss"


def test_model_loss_and_z_score() -> None:
    task = _task(2)
    model, info = task.build_model()
    assert info.num_classes == 2
    targets = [[100.0, -1.0], [300.0, -3.0], [200.0, -2.0]]
    loss = task.build_loss(targets)
    assert isinstance(loss, torch.nn.MSELoss)
    assert task.mean == [200.0, -2.0] and task.std[0] == pytest.approx(np.std([100, 300, 200]))
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        z = model.normalised(x)
        out = model(x)
    assert out.shape == (4, 2)
    # the graph undoes the z-score: values = z × std + mean, in the targets' units
    expected = z * torch.tensor(task.std, dtype=torch.float32) + torch.tensor(task.mean, dtype=torch.float32)
    assert torch.allclose(out, expected)
    meta = task.checkpoint_meta()
    assert meta["target_mean"] == task.mean and meta["target_std"] == task.std
    assert isinstance(_task(1, loss="l1").build_loss([[1.0], [2.0]]), torch.nn.L1Loss)
    huber = _task(1, loss="huber", huber_delta=0.25).build_loss([[1.0], [2.0]])
    assert isinstance(huber, torch.nn.HuberLoss) and huber.delta == 0.25


def test_targets_are_encoded_or_refused() -> None:
    task = _task(2)
    assert task.encode_target([1, 2.5]).tolist() == [1.0, 2.5]
    for bad in ([1.0], [1.0, float("nan")], "12", [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError):
            task.encode_target(bad)
    from vistudio.ml.tasks.regression import RegressionConfig, RegressionTask

    with pytest.raises(BadRequest, match="at least one target"):
        RegressionTask(classes=[], config=RegressionConfig())


def test_training_metrics_equal_the_evaluation_formulas() -> None:
    """The epoch metrics (sums of z-scores, turned back into the targets' units) equal
    ``regression_metrics`` of the same predictions, and the loss is on z-scores."""
    task = _task(2)
    model, _ = task.build_model()
    rng = np.random.default_rng(3)
    y = rng.normal([500.0, -2.0], [80.0, 0.3], (40, 2))
    loss = task.build_loss(y.tolist())
    metrics = task.build_metrics("val")
    batch = (torch.randn(40, 3, 32, 32), torch.tensor(y, dtype=torch.float32))
    model.eval()
    with torch.no_grad():
        value, preds, target = task.forward(model, batch, loss)
        values = model(batch[0]).double().numpy()
    assert float(value) == pytest.approx(float(torch.mean((preds - target) ** 2)), rel=1e-5)
    for i in range(0, 40, 16):  # several batches accumulate
        metrics.update(preds[i : i + 16], target[i : i + 16])
    scalars, details = task.summarise("val", metrics.compute())
    expected = regression_metrics(y, values, task.classes)
    for key in ("mae", "mse", "rmse", "r2"):
        assert scalars[f"val_{key}"] == pytest.approx(expected[key], rel=1e-4), key
    assert set(details["per_target"]) == {"target_1", "target_2"}


def test_a_checkpoint_rebuilds_the_same_regressor(tmp_path: Path) -> None:
    from vistudio.ml.checkpoint import load_checkpoint, save_checkpoint
    from vistudio.ml.preprocess import preprocess_meta

    task = _task(1)
    model, info = task.build_model()
    task.build_loss([[-50.0], [150.0]])
    meta = {
        **task.checkpoint_meta(),
        "model": "resnet18",
        "task": "regression",
        "classes": task.classes,
        "preprocess": preprocess_meta(32, info.mean, info.std),
    }
    path = save_checkpoint(tmp_path / "c.pt", model, meta)
    loaded, got = load_checkpoint(path)
    assert got["target_mean"] == [50.0] and got["target_std"] == [100.0]
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-5)
    assert loaded.target_mean.tolist() == [50.0]  # the z-score travels in the weights too


# --- the CSV reader's bad rows ----------------------------------------------------------------------------


def test_csv_bad_values_are_reported_per_row_and_the_rest_imported(tmp_path: Path) -> None:
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / f"{i}.png")
    text = (
        "path,width,height\n"
        "0.png,1.5,-2\n"  # row 2: fine
        "1.png,abc,3\n"  # row 3: not a number
        "2.png,nan,3\n"  # row 4: NaN is not a value
        "3.png,4,inf\n"  # row 5: nor is infinity
        "4.png,5\n"  # row 6: a target missing
        "5.png,,7\n"  # row 7: empty cell
        "6.png,1e6,-1e-6\n"  # row 8: fine, huge and tiny
        "7.png,1,2,3\n"  # row 9: one value too many
    )
    parsed = parse_csv_text(text, root=tmp_path)
    assert parsed.targets == ["width", "height"]
    assert [i.path.name for i in parsed.items] == ["0.png", "6.png"]
    assert [i.annotations[0].geometry for i in parsed.items] == [
        {"values": [1.5, -2.0]},
        {"values": [1e6, -1e-6]},
    ]
    reasons = sorted(e.reason for e in parsed.errors)
    assert len(reasons) == 6
    for row, fragment in (
        (3, "'width' is not a number: 'abc'"),
        (4, "'width'"),
        (5, "'height'"),
        (6, "columns"),
        (7, "'width'"),
        (9, "columns"),
    ):
        assert any(r.startswith(f"row {row}:") and fragment in r for r in reasons), (row, reasons)


# --- the pipeline stage ----------------------------------------------------------------------------------


def test_regress_onnx_stage_gives_the_models_values(tmp_path: Path) -> None:
    from vistudio.ml.export.models import export_onnx
    from vistudio.ml.inference.onnx import metadata_props
    from vistudio.ml.inference.regression import OnnxRegressor, regression_props
    from vistudio.ml.preprocess import eval_array, preprocess_meta
    from vistudio.pipelines.builtin import BUILTIN_STAGES, OnnxSessionCache
    from vistudio.pipelines.regression import regress_onnx
    from vistudio.pipelines.stage import STAGE_IO, Item, StageError

    task = _task(2)
    model, info = task.build_model()
    task.build_loss([[0.0, 1000.0], [10.0, 3000.0]])
    pre = preprocess_meta(32, info.mean, info.std)
    meta = {**task.checkpoint_meta(), "classes": task.classes, "config": {"loss": "mse"}}
    props = metadata_props(
        model="resnet18",
        classes=task.classes,
        preprocess=pre,
        task="regression",
        extra=regression_props(meta),
    )
    path = export_onnx(
        model.eval(), tmp_path / "r.onnx", input_size=(32, 32), props=props, opset=17, output_name="values"
    )
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 30, 90)).save(image)
    assert "regress_onnx" in BUILTIN_STAGES
    assert (STAGE_IO.get("regress_onnx").takes, STAGE_IO.get("regress_onnx").gives) == (
        ("image", "file"),
        "label",
    )
    out = regress_onnx(Item(key="x", path=image, meta={"values": [5.0, 2000.0]}), None, model=str(path))
    with torch.no_grad():
        expected = model(torch.from_numpy(eval_array(Image.open(image).convert("RGB"), pre))[None])[
            0
        ].tolist()
    assert out.data["values"] == pytest.approx(expected, rel=1e-4, abs=1e-3)
    assert set(out.data["targets"]) == {"target_1", "target_2"} and "target_1=" in out.data["label"]
    assert set(out.metrics) == {"value_target_1", "value_target_2", "abs_error"}
    runner = OnnxRegressor(path)
    assert runner.target_mean == [5.0, 2000.0] and runner.targets == ["target_1", "target_2"]
    with pytest.raises(StageError, match="model"):
        regress_onnx(Item(key="x", path=image), None, model="")
    OnnxSessionCache.clear()
