"""Regression end to end on pictures whose target is the length of a drawn bar (in units far from
the network's: 10 × length + 100): import a CSV, split, train a resnet18 through the CLI to a real
R², evaluate (the metrics equal scikit-learn's on the results file and the training's own
validation figures), export to ONNX and TorchScript (the z-score inside the graph), predict with
the ONNX file (the evaluation's values, in the targets' units); the same loop's evaluation and
export through the API; and the data the task must survive: bad CSV rows, images with another
number of values, targets that never vary."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score, root_mean_squared_error

from eval_factories import run_job, workspace_settings
from factories import run_import
from regression_factories import OFFSET, SCALE, bar_image, bars_project, write_bars
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.errors import BadRequest
from vistudio.services import experiments, projects, splits, targets
from vistudio.studio import Studio, open_studio

# resnet18 from scratch at 32 px on 112 training pictures: ~30 s on one CPU core, R² ≈ 0.97 on
# the validation subset (measured); the assertions leave a wide margin
TRAIN = ("--model", "resnet18", "--epochs", "10", "--image-size", "32", "--batch-size", "8", "--lr", "0.003")
TRAIN += ("--seed", "0", "--no-early-stopping")


def _cli(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> dict[str, Any]:
    code = main(["--workspace", str(ws), "--json", *args])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    out = json.loads(lines[0])
    assert code == 0, out
    return dict(out)


@pytest.mark.slow
def test_train_evaluate_export_predict_through_the_cli_and_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    studio = open_studio(workspace_settings(tmp_path))
    bars_project(studio, tmp_path, count=160)
    stats = targets.target_statistics(studio, project="bars")
    assert stats["usable"] == 160 and [t["name"] for t in stats["targets"]] == ["target"]
    assert (
        OFFSET + 3 * SCALE <= stats["targets"][0]["min"] < stats["targets"][0]["max"] <= OFFSET + 26 * SCALE
    )
    ws = studio.home
    studio.close()

    def cli(*args: str) -> dict[str, Any]:
        return _cli(capsys, ws, *args)

    exp = cli("train", "bars", *TRAIN, "--name", "r18")["experiment"]
    assert exp["status"] == "succeeded", exp
    best = exp["best_metrics"]
    assert best["val_r2"] > 0.9, best  # a real score: the bar's length is read off the picture

    # the checkpoint holds the training subset's z-score, and the experiment names its target
    studio = open_studio(workspace_settings(tmp_path))
    from vistudio.db.training import Checkpoint, Experiment
    from vistudio.ml.checkpoint import read_checkpoint
    from vistudio.services.experiments import checkpoint_path, experiment_items

    with studio.sessions() as s:
        row = s.query(Experiment).one()
        assert row.classes == ["target"]
        train_values = [it.target[0] for it in experiment_items(studio, s, row, ["train"])]
        ckpt = s.query(Checkpoint).filter_by(kind="best").one()
        recorded = dict(ckpt.metrics)
        meta = read_checkpoint(checkpoint_path(studio, ckpt.sha256))["meta"]
    assert meta["target_mean"] == pytest.approx([np.mean(train_values)], rel=1e-6)
    assert meta["target_std"] == pytest.approx([np.std(train_values)], rel=1e-6)  # of float32 targets
    client = TestClient(create_app(studio))

    # the evaluation of the best checkpoint on val gives the figures training measured for it
    ev_val = cli("evaluate", "bars", "r18", "--subsets", "val")["evaluation"]
    for key in ("mae", "mse", "rmse", "r2"):
        assert ev_val["metrics"][key] == pytest.approx(recorded[f"val_{key}"], rel=1e-4), key

    ev = cli("evaluate", "bars", "r18", "--subsets", "val,test", "--batch-size", "7")["evaluation"]
    m = ev["metrics"]
    assert set(m) >= {"mae", "mse", "rmse", "r2", "per_target"} and m["per_target"]["target"]["r2"] == m["r2"]
    assert m["r2"] > 0.85 and ev["confusion_png_path"] is None
    table = pq.read_table(ev["results_path"]).to_pylist()
    assert len(table) == m["samples"] > 30
    y = [r["truth"][0] for r in table]
    p = [r["prediction"][0] for r in table]
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-9)
    assert m["mse"] == pytest.approx(mean_squared_error(y, p), rel=1e-9)
    assert m["rmse"] == pytest.approx(root_mean_squared_error(y, p), rel=1e-9)
    assert m["r2"] == pytest.approx(r2_score(y, p), rel=1e-9)
    assert all(r["abs_error"] == pytest.approx(abs(r["prediction"][0] - r["truth"][0])) for r in table)
    with open(Path(ev["csv_path"]), newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["sample_id", "name", "path", "subset", "true_target", "predicted_target", "abs_error"]

    worst = cli("evaluation", "results", "bars", "r18", "--sort", "-abs_error", "--limit", "5")
    errors = [r["abs_error"] for r in worst["items"]]
    assert errors == sorted(errors, reverse=True) and errors[0] == max(r["abs_error"] for r in table)
    shown = cli("evaluation", "show", "bars", "r18")["evaluation"]
    assert shown["metrics"]["r2"] == m["r2"] and shown["classes"] == ["target"]

    onnx = cli("export", "bars", "r18", "--format", "onnx")["export"]
    script = cli("export", "bars", "r18", "--format", "torchscript")["export"]
    for e in (onnx, script):
        v = e["validation"]
        assert v["source"] == "split images" and v["images"] == 64 and v["passed"], v
        assert v["max_std_diff"] < 1e-4, v
    side = json.loads(Path(onnx["metadata_path"]).read_text())["metadata"]
    assert side["target_mean"] == meta["target_mean"] and side["target_std"] == meta["target_std"]
    assert side["output_name"] == "values" and side["task"] == "regression"

    # predict: the evaluation's values, in the targets' units (no z-score left to undo)
    predicted = cli("predict", onnx["path"], *(r["path"] for r in table))
    assert predicted["errors"] == [] and predicted["model"]["targets"] == ["target"]
    for r, pred in zip(table, predicted["predictions"], strict=True):
        assert pred["values"][0] == pytest.approx(r["prediction"][0], rel=1e-4, abs=1e-3)
        assert pred["targets"] == {"target": pred["values"][0]}
    assert float(np.mean([pr["values"][0] for pr in predicted["predictions"]])) > OFFSET  # original units

    # the API: the same evaluation and export, the results sorted by error
    started = client.post(
        "/api/v1/evaluations", json={"project": "bars", "experiment": "r18", "subsets": ["test"]}
    )
    assert started.status_code == 202, started.text
    assert run_job(studio, started.json()["job"]["id"])["status"] == "succeeded"
    api_ev = client.get("/api/v1/evaluations/bars/r18").json()["evaluation"]
    assert api_ev["metrics"]["samples"] == len([r for r in table if r["subset"] == "test"])
    results = client.get("/api/v1/evaluations/bars/r18/results", params={"sort": "-abs_error", "limit": 500})
    items = results.json()["items"]
    assert [i["abs_error"] for i in items] == sorted((i["abs_error"] for i in items), reverse=True)
    assert client.get("/api/v1/evaluations/bars/r18/results", params={"correct": True}).status_code == 400
    exported = client.post("/api/v1/exports", json={"project": "bars", "experiment": "r18", "format": "onnx"})
    assert exported.status_code == 202
    assert run_job(studio, exported.json()["job"]["id"])["status"] == "succeeded"
    download = client.get(f"/api/v1/exports/{exported.json()['export']['id']}/download")
    assert download.status_code == 200
    (tmp_path / "api.onnx").write_bytes(download.content)  # the same graph (its metadata's time differs)
    from vistudio.ml.inference.regression import OnnxRegressor

    a, _ = OnnxRegressor(tmp_path / "api.onnx").predict_files([Path(r["path"]) for r in table[:8]])
    assert [x.values for x in a] == [x["values"] for x in predicted["predictions"][:8]]
    assert client.get("/api/v1/projects/bars/targets").json()["targets"][0]["count"] == 160
    # the Export page shows a regressor's check in its own terms
    result_page = client.get(f"/projects/bars/export/{exported.json()['export']['id']}").text
    assert 'data-metric="max_std_diff"' in result_page and "top-1" not in result_page
    assert " σ</span>" in client.get("/projects/bars/export").text
    studio.close()


def test_bad_csv_rows_are_reported_and_the_rest_imported(studio: Studio, tmp_path: Path) -> None:
    source = write_bars(
        tmp_path / "src",
        count=6,
        extra_rows=[
            "images/bar-0000.png,",  # listed again, with no value
            "images/missing.png,150",
            "images/bar-0001.png,abc",
            "images/bar-0002.png,nan",
            "images/bar-0003.png,-inf",
            "images/bar-0004.png,1,2",
        ],
    )
    projects.create_project(studio, name="bad", task="regression")
    job = run_import(studio, "bad", source, fmt="csv")
    report = job["result"]["report"]
    assert report["imported"] == 6 and report["failed_count"] == 6, report
    reasons = " | ".join(f["reason"] for f in report["failed"])
    for fragment in (
        "row 8: column 'target' is not a number: ''",
        "row 9: file not found",
        "'abc'",
        "'nan'",
        "'-inf'",
        "row 13: expected 2 columns, got 3",
    ):
        assert fragment in reasons, (fragment, reasons)
    stats = targets.target_statistics(studio, project="bad")
    assert stats["usable"] == 6 and stats["targets"][0]["count"] == 6


def test_images_with_another_number_of_values_are_left_out(studio: Studio, tmp_path: Path) -> None:
    """A second import with two values per image: the project's targets stay the most common
    count; the others are left out of the split's examples, the statistics and training, and
    the messages say why."""
    projects.create_project(studio, name="mixed", task="regression")
    assert (
        run_import(studio, "mixed", write_bars(tmp_path / "one", count=12), fmt="csv")["status"]
        == "succeeded"
    )
    two = tmp_path / "two"
    for i in range(4):
        bar_image(two / f"p{i}.png", 5 + i, row=8, mark=500 + i)
    (two / "pairs.csv").write_text("path,a,b\n" + "".join(f"p{i}.png,{i},{2 * i}\n" for i in range(4)))
    assert run_import(studio, "mixed", two / "pairs.csv", fmt="csv")["status"] == "succeeded"
    stats = targets.target_statistics(studio, project="mixed")
    assert stats["usable"] == 12 and stats["left_out"]["wrong_count"] == 4
    split = splits.create_split(studio, project="mixed", name="s", ratios=(0.6, 0.4, 0.0), seed=1)
    from vistudio.services.experiments import split_items
    from vistudio.services.experiments.values import census_text, split_target_names, value_census

    with studio.sessions() as s:
        assert split_target_names(s, split["id"]) == ["target"]
        items = split_items(studio, s, split["id"], ["train", "val"], ["target"], task="regression")
        census = value_census(s, split["id"], ["train", "val"], 1)
        # an experiment of two targets would read the pairs instead
        pairs = split_items(
            studio, s, split["id"], ["train", "val"], ["target_1", "target_2"], task="regression"
        )
    assert len(items) == 12 and all(len(it.target) == 1 for it in items)
    assert census == {"usable": 12, "no_value": 0, "several_values": 0, "wrong_count": 4, "not_finite": 0}
    assert census_text(census) == "4 images left out: 4 with another number of values than the targets"
    assert sorted(it.target for it in pairs) == [[float(i), 2.0 * i] for i in range(4)]


def test_a_project_without_values_cannot_train(studio: Studio, tmp_path: Path) -> None:
    from factories import make_class_folders

    projects.create_project(studio, name="empty", task="regression")
    run_import(studio, "empty", make_class_folders(tmp_path / "f", {"x": 4}), fmt="folder")
    splits.create_split(studio, project="empty", name="s", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match="no labelled training images"):
        experiments.start_experiment(studio, project="empty", config={"model": "resnet18"})


@pytest.mark.slow
def test_targets_that_never_vary_train_without_dividing_by_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every image's value is 42: the z-score's std is 1 (not 0), training and evaluation run,
    every prediction is a finite number, and R² — undefined — is null, not NaN."""
    studio = open_studio(workspace_settings(tmp_path))
    src = tmp_path / "flat"
    for i in range(16):
        bar_image(src / f"b{i}.png", 4 + i, row=10, mark=i)
    (src / "t.csv").write_text("path,target\n" + "".join(f"b{i}.png,42\n" for i in range(16)))
    projects.create_project(studio, name="flat", task="regression")
    assert run_import(studio, "flat", src / "t.csv", fmt="csv")["status"] == "succeeded"
    splits.create_split(studio, project="flat", name="s", ratios=(0.5, 0.25, 0.25), seed=1)
    ws = studio.home
    studio.close()
    exp = _cli(
        capsys,
        ws,
        "train",
        "flat",
        "--model",
        "resnet18",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--batch-size",
        "4",
        "--loss",
        "l1",
        "--name",
        "f",
    )["experiment"]
    assert exp["status"] == "succeeded"
    ev = _cli(capsys, ws, "evaluate", "flat", "f", "--subsets", "val,test")["evaluation"]
    m = ev["metrics"]
    assert m["r2"] is None and m["per_target"]["target"]["r2"] is None
    assert m["mae"] is not None and np.isfinite(m["mae"]) and m["samples"] == 8
    table = pq.read_table(ev["results_path"]).to_pylist()
    assert all(np.isfinite(r["prediction"][0]) for r in table)
    studio = open_studio(workspace_settings(tmp_path))
    from vistudio.db.training import Checkpoint
    from vistudio.ml.checkpoint import read_checkpoint
    from vistudio.services.experiments import checkpoint_path

    with studio.sessions() as s:
        ckpt = s.query(Checkpoint).filter_by(kind="best").one()
        meta = read_checkpoint(checkpoint_path(studio, ckpt.sha256))["meta"]
    assert experiments.get_experiment(studio, project="flat", experiment="f")["config"]["loss"] == "l1"
    studio.close()
    assert meta["target_mean"] == [42.0] and meta["target_std"] == [1.0]
