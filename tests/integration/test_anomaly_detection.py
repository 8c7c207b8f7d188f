"""Anomaly detection end to end on generated parts (smooth gradients; the anomalous ones with a
scratch or a blob drawn on them, MVTec class folders): train a resnet18 through the CLI to a real
validation AUROC, evaluate (AUROC and AP equal scikit-learn's and the Mann–Whitney U on the results
file, the threshold reproduces the reported TPR/FPR, Youden's J and a fixed threshold), export to
ONNX (the threshold in its metadata) and predict with it; the API's evaluation; and the data the
task refuses with a clear message: no normal class, only normal images, a validation subset
without anomalies."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from scipy.stats import mannwhitneyu
from sklearn.metrics import average_precision_score, roc_auc_score

from anomaly_factories import anomaly_project, write_mvtec
from eval_factories import run_job, workspace_settings
from factories import run_import
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.errors import BadRequest
from vistudio.services import experiments, projects, splits
from vistudio.studio import Studio, open_studio

# resnet18 from scratch at 32 px on 72 training images (48 normal, 24 anomalous), 5 epochs: about
# 50 s on a busy 2-core machine, val AUROC 0.99 (measured); the assertions leave a wide margin
TRAIN = ("--model", "resnet18", "--epochs", "5", "--image-size", "32", "--batch-size", "8", "--lr", "0.003")
TRAIN += ("--seed", "0", "--no-early-stopping", "--num-workers", "0")


def _cli(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> dict[str, Any]:
    code = main(["--workspace", str(ws), "--json", *args])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    out = json.loads(lines[0])
    assert code == 0, out
    return dict(out)


@pytest.mark.slow
def test_train_evaluate_export_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    studio = open_studio(workspace_settings(tmp_path))
    anomaly_project(studio, tmp_path)
    ws = studio.home
    studio.close()

    def cli(*args: str) -> dict[str, Any]:
        return _cli(capsys, ws, *args)

    exp = cli("train", "parts", *TRAIN, "--name", "r18")["experiment"]
    assert exp["status"] == "succeeded", exp
    best = exp["best_metrics"]
    assert best["val_auroc"] > 0.9, best  # a real score: the scratches and blobs are seen
    assert best["val_ap"] > 0.8 and best["val_f1"] > 0.75, best
    assert 0.0 < best["threshold"] < 1.0 and best["threshold_by"] == "f1"

    studio = open_studio(workspace_settings(tmp_path))
    from vistudio.db.training import Checkpoint, Experiment
    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.services.experiments import checkpoint_path

    with studio.sessions() as s:
        # the normal class first, then the defect types: the experiment keeps them for breakdowns
        assert s.query(Experiment).one().classes == ["good", "blob", "scratch"]
        sha = s.query(Checkpoint).filter_by(kind="best").one().sha256
    model, meta = load_checkpoint(checkpoint_path(studio, sha))
    assert meta["anomaly"]["normal_class"] == "good" and meta["task"] == "anomaly_detection"
    assert meta["config"]["augment"] == {"crop": False, "flip": True, "rotate": False, "color": False}
    assert meta["details"]["threshold"] == best["threshold"]
    import torch

    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1)  # one logit per image

    # the evaluation of the best checkpoint on val gives the figures training measured for it
    ev_val = cli("evaluate", "parts", "r18", "--subsets", "val")["evaluation"]["metrics"]
    assert ev_val["auroc"] == pytest.approx(best["val_auroc"], abs=1e-6)
    assert ev_val["ap"] == pytest.approx(best["val_ap"], abs=1e-6)
    assert ev_val["f1"] == pytest.approx(best["val_f1"], abs=1e-6)

    ev = cli("evaluate", "parts", "r18", "--subsets", "val,test")["evaluation"]
    m = ev["metrics"]
    assert {"auroc", "ap", "f1", "threshold", "tpr", "fpr", "roc", "pr", "histogram", "per_defect"} <= set(m)
    assert m["auroc"] > 0.85 and m["threshold_source"] == "f1" and set(m["per_defect"]) == {"blob", "scratch"}
    table = pq.read_table(ev["results_path"]).to_pylist()
    assert len(table) == m["samples"] == m["normal"] + m["anomalous"] > 40
    y = np.array([r["true"] == "anomalous" for r in table], dtype=int)
    scores = np.array([r["score"] for r in table])
    assert m["auroc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    u = mannwhitneyu(scores[y == 1], scores[y == 0], alternative="two-sided").statistic
    assert abs(m["auroc"] - u / (y.sum() * (1 - y).sum())) < 1e-6
    assert m["ap"] == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    # the stored threshold reproduces the reported TPR and FPR exactly, and the rows' decisions
    decided = scores >= m["threshold"]
    assert m["tpr"] == decided[y == 1].mean() and m["fpr"] == decided[y == 0].mean()
    assert [r["anomalous"] for r in table] == decided.tolist()
    assert {r["defect"] for r in table if r["true"] == "anomalous"} == {"blob", "scratch"}
    assert all(r["defect"] is None for r in table if r["true"] == "good")

    worst = cli("evaluation", "results", "parts", "r18", "--sort", "-score", "--limit", "5")["items"]
    assert [r["score"] for r in worst] == sorted(scores.tolist(), reverse=True)[:5]
    blobs = cli("evaluation", "results", "parts", "r18", "--true", "blob", "--limit", "500")
    assert blobs["total"] == m["per_defect"]["blob"]["images"]

    youden = cli("evaluate", "parts", "r18", "--subsets", "val,test", "--threshold-by", "youden")
    ym = youden["evaluation"]["metrics"]
    assert ym["threshold_source"] == "youden" and ym["auroc"] == m["auroc"]
    assert ym["tpr"] - ym["fpr"] >= m["tpr"] - m["fpr"] - 1e-12
    fixed = cli("evaluate", "parts", "r18", "--subsets", "val,test", "--score-threshold", "0.5")
    fm = fixed["evaluation"]["metrics"]
    assert fm["threshold"] == 0.5 and fm["threshold_source"] == "given"
    assert fm["tp"] == int(((scores >= 0.5) & (y == 1)).sum())

    # back to the best-F1 evaluation: the export records its threshold
    cli("evaluate", "parts", "r18", "--subsets", "val,test")
    onnx = cli("export", "parts", "r18", "--format", "onnx")["export"]
    v = onnx["validation"]
    assert v["passed"] and v["max_abs_diff"] < 1e-4 and v["images"] > 0, v
    side = json.loads(Path(onnx["metadata_path"]).read_text())["metadata"]
    assert side["threshold"] == m["threshold"] and side["output_name"] == "score"
    assert side["normal_class"] == "good" and side["defect_types"] == ["blob", "scratch"]
    predicted = cli("predict", onnx["path"], *(r["path"] for r in table))
    assert predicted["errors"] == [] and predicted["model"]["threshold"] == m["threshold"]
    for r, p in zip(table, predicted["predictions"], strict=True):
        assert set(p) == {"path", "score", "anomalous"}
        assert p["score"] == pytest.approx(r["score"], abs=1e-4)
        if abs(r["score"] - m["threshold"]) > 1e-4:  # away from the threshold: the same decision
            assert p["anomalous"] == r["anomalous"]

    # the API: the same evaluation with Youden's J, the results sorted by score
    client = TestClient(create_app(studio))
    started = client.post(
        "/api/v1/evaluations",
        json={"project": "parts", "experiment": "r18", "subsets": ["test"], "threshold_by": "youden"},
    )
    assert started.status_code == 202, started.text
    assert run_job(studio, started.json()["job"]["id"])["status"] == "succeeded"
    api_ev = client.get("/api/v1/evaluations/parts/r18").json()["evaluation"]
    assert api_ev["metrics"]["threshold_source"] == "youden"
    items = client.get("/api/v1/evaluations/parts/r18/results", params={"sort": "score", "limit": 500}).json()
    assert [i["score"] for i in items["items"]] == sorted(i["score"] for i in items["items"])
    bad = client.post(
        "/api/v1/evaluations",
        json={"project": "parts", "experiment": "r18", "threshold_by": "f1", "score_threshold": 0.3},
    )
    assert bad.status_code == 400 and "not both" in bad.json()["error"]["message"]

    # the pages: the ROC curve, the score histogram, the defect types; tiles sorted by score
    page = client.get("/projects/parts/evaluate")
    assert page.status_code == 200 and 'id="ef-threshold-by"' in page.text and "AUROC <strong>" in page.text
    assert client.get("/projects/parts/train").status_code == 200
    panel = client.get("/projects/parts/evaluate/r18/panel")
    assert panel.status_code == 200, panel.text[:500]
    for hook in (
        'id="roc-chart"',
        "<polyline",
        'id="score-histogram"',
        'data-metric="auroc"',
        'id="per-defect"',
    ):
        assert hook in panel.text, hook
    grid = client.get("/projects/parts/evaluate/r18/grid", params={"sort": "-confidence"})
    assert grid.status_code == 200
    top = items["items"][-1]  # the highest score of the API's list
    first = re.search(r'class="eval-tile [a-z]+" data-sample-id="(\d+)"', grid.text)
    assert first is not None and int(first.group(1)) == top["sample_id"]
    detail = client.get(f"/projects/parts/evaluate/r18/results/{top['sample_id']}")
    assert detail.status_code == 200 and f"{top['score']:.4f}" in detail.text
    studio.close()


def test_a_project_without_a_normal_class_is_refused(studio: Studio, tmp_path: Path) -> None:
    source = write_mvtec(tmp_path / "src", {"scratch": 6, "blob": 6})
    projects.create_project(studio, name="nogood", task="anomaly_detection")
    assert run_import(studio, "nogood", source, fmt="folder")["status"] == "succeeded"
    splits.create_split(studio, project="nogood", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match=r"named good or normal or ok or 0.*'blob', 'scratch'") as err:
        experiments.start_experiment(studio, project="nogood", config={"epochs": 1})
    assert err.value.details["classes"] == ["blob", "scratch"]


def test_only_normal_images_are_refused_with_the_reason(studio: Studio, tmp_path: Path) -> None:
    source = write_mvtec(tmp_path / "src", {"good": 12})
    projects.create_project(studio, name="onlygood", task="anomaly_detection")
    assert run_import(studio, "onlygood", source, fmt="folder")["status"] == "succeeded"
    splits.create_split(studio, project="onlygood", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    with pytest.raises(BadRequest, match=r"only normal images.*one-class method.*not available yet"):
        experiments.start_experiment(studio, project="onlygood", config={"epochs": 1})


def test_subsets_without_both_kinds_of_images_are_refused(studio: Studio, tmp_path: Path) -> None:
    """The anomalies all in the test subset (MVTec's own layout: defects only at test time) or none
    in validation: the message says which subset lacks what."""
    source = write_mvtec(tmp_path / "src", {"good": 20, "scratch": 2})
    projects.create_project(studio, name="rare", task="anomaly_detection")
    assert run_import(studio, "rare", source, fmt="folder")["status"] == "succeeded"
    # two anomalies, stratified 90/10: both in train, none in val
    splits.create_split(studio, project="rare", name="s1", ratios=(0.9, 0.1, 0.0), seed=1)
    with pytest.raises(BadRequest, match="its validation subset has no anomalous image"):
        experiments.start_experiment(studio, project="rare", config={"epochs": 1, "split": "s1"})
    # MVTec's own layout: every defect in the test subset, the training images all normal
    splits.create_split(studio, project="rare", name="s2", ratios=(0.5, 0.2, 0.3), seed=1)
    from vistudio.db import Sample, Split, SplitMember

    with studio.sessions.begin() as s:  # the split's members moved by hand, as a locked split allows no edit
        split_id = s.query(Split).filter_by(name="s2").one().id
        ids = [x.id for x in s.query(Sample).all() if "scratch" in (x.name or "")]
        assert len(ids) == 2
        for m in s.query(SplitMember).filter(
            SplitMember.split_id == split_id, SplitMember.sample_id.in_(ids)
        ):
            m.subset = "test"
    with pytest.raises(BadRequest, match=r"training images are all normal: .*one-class method"):
        experiments.start_experiment(studio, project="rare", config={"epochs": 1, "split": "s2"})


def test_a_csv_with_a_0_1_label_column_trains_with_0_as_normal(studio: Studio, tmp_path: Path) -> None:
    root = write_mvtec(tmp_path / "src", {"good": 8, "blob": 4})
    rows = [
        f"{kind}/{p.name},{0 if kind == 'good' else 1}"
        for kind in ("good", "blob")
        for p in (root / kind).iterdir()
    ]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    projects.create_project(studio, name="csv01", task="anomaly_detection")
    assert run_import(studio, "csv01", root / "labels.csv", fmt="csv")["status"] == "succeeded"
    splits.create_split(studio, project="csv01", name="s1", ratios=(0.5, 0.5, 0.0), seed=1)
    started = experiments.start_experiment(studio, project="csv01", config={"epochs": 1})
    assert started["experiment"]["classes"] == ["0", "1"]  # 0 normal, 1 anomalous
