"""End to end through the CLI with a real training job: `vistudio train` a resnet18 on digits, then
`evaluate` (metrics equal scikit-learn's, and the training's own validation accuracy), `export` to
ONNX and TorchScript (parity < 1e-4, top-1 agreement 100 % on real images) and `predict` with the
ONNX file (the evaluation's labels, confidences within 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sklearn.metrics import precision_recall_fscore_support

from eval_factories import digits_project, workspace_settings
from vistudio.cli.main import main
from vistudio.studio import open_studio

pytestmark = pytest.mark.slow


def test_train_evaluate_export_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    studio = open_studio(workspace_settings(tmp_path))
    digits_project(studio, tmp_path)
    ws = studio.home
    studio.close()

    def cli(*args: str) -> dict[str, Any]:
        code = main(["--workspace", str(ws), "--json", *args])
        lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
        assert len(lines) == 1, lines
        out = json.loads(lines[0])
        assert code == 0, out
        return dict(out)

    trained = cli(
        "train",
        "digits",
        "--model",
        "resnet18",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--name",
        "r18",
        "--seed",
        "0",
        "--no-augment",
    )["experiment"]
    assert trained["status"] == "succeeded"

    # the best checkpoint on the val subset gives the accuracy the training measured for it
    ev_val = cli("evaluate", "digits", "r18", "--subsets", "val")["evaluation"]
    studio = open_studio(workspace_settings(tmp_path))
    from vistudio.db.training import Checkpoint

    with studio.sessions() as s:
        best = s.query(Checkpoint).filter_by(kind="best").one()
        recorded = dict(best.metrics)
    studio.close()
    assert "val_accuracy" in recorded, recorded
    assert ev_val["metrics"]["accuracy"] == pytest.approx(recorded["val_accuracy"], abs=1e-6)
    if "val_f1_macro" in recorded:
        assert ev_val["metrics"]["macro_f1"] == pytest.approx(recorded["val_f1_macro"], abs=1e-6)

    ev = cli("evaluate", "digits", "r18", "--subsets", "test,val", "--batch-size", "7")["evaluation"]
    table = pq.read_table(ev["results_path"]).to_pylist()
    assert len(table) == ev["metrics"]["samples"] == 24
    labels = ev["classes"]
    p, r, f, _ = precision_recall_fscore_support(
        [x["true"] for x in table],
        [x["predicted"] for x in table],
        labels=labels,
        average="macro",
        zero_division=0,
    )
    assert (ev["metrics"]["macro_precision"], ev["metrics"]["macro_recall"], ev["metrics"]["macro_f1"]) == (
        p,
        r,
        f,
    )

    onnx_export = cli("export", "digits", "r18", "--format", "onnx")["export"]
    ts_export = cli("export", "digits", "r18", "--format", "torchscript")["export"]
    for e in (onnx_export, ts_export):
        v = e["validation"]
        assert v["source"] == "split images" and v["images"] == 60
        assert v["max_abs_diff"] < 1e-4 and v["top1_agreement"] == 1.0, e

    predicted = cli("predict", onnx_export["path"], *(x["path"] for x in table))
    assert predicted["errors"] == []
    for row, pred in zip(table, predicted["predictions"], strict=True):
        assert pred["label"] == row["predicted"], (row, pred)
        assert abs(pred["confidence"] - row["confidence"]) < 1e-4
    # and a folder of them works the same way (recursively, images only)
    folder = tmp_path / "batch" / "nested"
    folder.mkdir(parents=True)
    for x in table[:3]:
        (folder / Path(x["path"]).name).write_bytes(Path(x["path"]).read_bytes())
    (tmp_path / "batch" / "notes.txt").write_text("not an image")
    by_folder = cli("predict", onnx_export["path"], str(tmp_path / "batch"), "--top-k", "2")
    assert len(by_folder["predictions"]) == 3 and all(len(p["top_k"]) == 2 for p in by_folder["predictions"])
