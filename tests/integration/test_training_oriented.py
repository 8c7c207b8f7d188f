"""Oriented detection end to end on generated rotated rectangles: `vistudio train` the small
oriented detector from scratch (a real job, child process and checkpoints), with two degenerate
rotated boxes in the split skipped with a warning; `vistudio evaluate` (DOTA mAP50 equal to
``dota_ap`` on the stored predictions, above the learning threshold; the confusion matrix
consistent with the per-class counts), the per-image results through the CLI and the API, and an
export queued."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from oriented_factories import CLASSES, rotated_project
from training_helpers import run_job
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.config import Settings
from vistudio.db import Annotation, SplitMember
from vistudio.db.training import DetectionResult
from vistudio.ml.inference.dota_metrics import OrientedDetection, OrientedObject, dota_ap
from vistudio.studio import open_studio

pytestmark = pytest.mark.slow

# measured through the training job on two CPU cores shared with other work (CPU training is
# deterministic for a seed): the small oriented detector from scratch at 96 px, 12 epochs, reaches
# a validation mAP50 of 0.43 and a test mAP50 of 0.40 (0.26 on test after 8 epochs); trained
# in-process with other seeds, 0.41–0.99 after 12. Calibrated on 2026-12-07 through the same job:
# lr 0.002 → test 0.39, no 90° turns → 0.37, lr 0.002 without the cosine decay → 0.45 — these
# ≈ 200 steps on 70 images are the limit, not a setting, so the test keeps this configuration and
# asserts a bit under what is measured (an untrained model scores 0.00)
MIN_MAP50 = 0.3
CONFIG = {
    "model": "fcos_obb_resnet18_fpn64",
    "image_size": 96,
    "epochs": 12,
    "batch_size": 4,
    "lr": 0.004,
    "early_stopping": False,
    "num_workers": 0,
    "seed": 0,
    "augment": {"crop": False, "flip": True, "rotate": True, "color": False},
}


def _degenerate(studio: Any) -> None:
    """Two rotated boxes without area (a line, a point) on training/validation images, as older
    data or a hand-made annotation may hold them."""
    with studio.sessions.begin() as s:
        rows = s.execute(
            select(Annotation)
            .join(SplitMember, SplitMember.sample_id == Annotation.sample_id)
            .where(Annotation.kind == "rotated_box", SplitMember.subset.in_(["train", "val"]))
            .order_by(Annotation.id)
            .limit(2)
        ).scalars()
        for a, points in zip(
            list(rows),
            ([[0.1, 0.1], [0.4, 0.1], [0.4, 0.1], [0.1, 0.1]], [[0.5, 0.5]] * 4),
            strict=True,
        ):
            s.add(
                Annotation(
                    sample_id=a.sample_id,
                    kind="rotated_box",
                    class_id=a.class_id,
                    geometry={"points": points},
                )
            )


def test_train_evaluate_and_results_of_an_oriented_detector(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    studio = open_studio(settings)
    rotated_project(studio, tmp_path, "obb", n=100, size=96)
    _degenerate(studio)
    # training through the API: the start answers with the warnings, the job runs here
    with TestClient(create_app(studio)) as client:
        started = client.post("/api/v1/experiments", json={"project": "obb", "name": "r18", "config": CONFIG})
        assert started.status_code == 202, started.text
        body = started.json()
    t0 = time.perf_counter()
    job = run_job(studio, body["job"]["id"])
    seconds = time.perf_counter() - t0
    studio.close()
    assert job["status"] == "succeeded", job
    # the two boxes without area were skipped, and the user was told why
    (warning,) = [w for w in body["warnings"] if w["code"] == "degenerate_rotated_boxes"]
    assert warning["count"] == 2 and "no width or no height" in warning["message"]

    def cli(*args: str, ok: bool = True) -> dict[str, Any]:
        code = main(["--workspace", str(settings.home), "--json", *args])
        lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
        assert len(lines) == 1, lines
        out = json.loads(lines[0])
        assert (code == 0) == ok, out
        return dict(out)

    exp = cli("experiment", "show", "obb", "r18")["experiment"]
    assert exp["status"] == "succeeded" and exp["config"]["monitor"] == "val_map50", exp
    best = next(c for c in exp["checkpoints"] if c["kind"] == "best")
    assert {"val_map50", "val_map50_area", "train_loss_angle"} <= set(best["metrics"])

    ev = cli("evaluate", "obb", "r18", "--subsets", "test")["evaluation"]
    m = ev["metrics"]
    assert ev["status"] == "succeeded" and ev["task"] == "oriented_detection"
    assert {"map50", "map50_area", "per_class"} <= set(m) and set(m["per_class"]) == set(CLASSES)
    print(  # stderr: the CLI's JSON is read from stdout
        f"\noriented detector 96 px {CONFIG['epochs']} epochs: {seconds:.0f} s, val mAP50 "
        f"{best['metrics']['val_map50']:.3f}, test mAP50 {m['map50']:.3f}",
        file=sys.stderr,
    )
    assert m["map50"] >= MIN_MAP50 and best["metrics"]["val_map50"] >= MIN_MAP50

    # map50 is dota_ap (11 points) of the stored predictions; map50_area the area method
    studio = open_studio(settings)
    with studio.sessions() as s:
        rows = s.execute(select(DetectionResult)).scalars().all()
        stored = [(r.sample_id, r.predictions, r.truths, r.tp, r.fp, r.fn) for r in rows]
    studio.close()
    dets = [
        OrientedDetection(sid, p["class_index"], p["points"], p["score"])
        for sid, ps, *_ in stored
        for p in ps
    ]
    truths = [
        OrientedObject(sid, t["class_index"], t["points"], t["iscrowd"])
        for sid, _, ts, *_ in stored
        for t in ts
    ]
    assert m["map50"] == pytest.approx(dota_ap(dets, truths, num_classes=3)["map"], abs=1e-12)
    assert m["map50_area"] == pytest.approx(
        dota_ap(dets, truths, num_classes=3, method="area")["map"], abs=1e-12
    )
    for name, k in zip(sorted(CLASSES), range(3), strict=True):
        assert m["per_class"][name]["ap50"] == pytest.approx(
            dota_ap(dets, truths, num_classes=3)["ap"][k], abs=1e-12
        )
    # per-image counts at the chosen threshold add up to the totals
    assert sum(r[3] for r in stored) == m["tp"] and sum(r[4] for r in stored) == m["fp"]
    assert sum(r[5] for r in stored) == m["fn"] and m["tp"] > 0 and m["images"] == len(stored) == 20
    # the confusion matrix at the threshold: TP on the diagonal, each class's row its objects
    # (TP + FN) and its column its predictions that count (TP + FP); background last
    cm = np.array(ev["confusion_matrix"])
    assert cm.shape == (4, 4) and ev["confusion_labels"] == [*ev["classes"], "background"]
    for k, name in enumerate(ev["classes"]):
        c = m["per_class"][name]
        assert cm[k, k] == c["tp"] and cm[k].sum() == c["tp"] + c["fn"] == c["objects"]
        assert cm[:, k].sum() == c["tp"] + c["fp"]
    assert cm[3, 3] == 0 and (settings.home / ev["confusion_png_path"]).is_file()
    p = stored[0][1][0]
    assert len(p["points"]) == 4 and len(p["rbox"]) == 5 and p["outcome"] in ("tp", "fp", "ignored")

    # the per-image results: the CLI, the API, the files
    listed = cli("evaluation", "results", "obb", "r18", "--sort", "fn", "--limit", "5")
    assert listed["total"] == 20 and len(listed["items"]) == 5
    assert [r["fn"] for r in listed["items"]] == sorted((r["fn"] for r in listed["items"]), reverse=True)
    assert {"predictions", "truths", "tp", "fp", "fn", "ap"} <= set(listed["items"][0])
    assert len(pq.read_table(settings.home / ev["results_path"]).to_pylist()) == 20
    poly = json.loads((settings.home / ev["predictions_path"]).read_text())
    assert poly and len(poly[0]["poly"]) == 8
    studio = open_studio(settings)
    try:
        with TestClient(create_app(studio)) as client:
            got = client.get("/api/v1/evaluations/obb/r18")
            assert got.status_code == 200 and got.json()["evaluation"]["metrics"]["map50"] == m["map50"]
            page = client.get("/api/v1/evaluations/obb/r18/results", params={"outcome": "tp"})
            assert page.status_code == 200, page.text
            assert page.json()["items"] and all(r["tp"] > 0 for r in page.json()["items"])
            one = client.get(f"/api/v1/evaluations/obb/r18/results/{stored[0][0]}")
            assert one.status_code == 200 and one.json()["result"]["sample_id"] == stored[0][0]
            # an oriented detector exports (tests/integration/test_oriented_export.py runs exports)
            export = client.post("/api/v1/exports", json={"project": "obb", "experiment": "r18"})
            assert export.status_code == 202, export.text
            queued = export.json()["export"]
            assert queued["format"] == "onnx" and queued["status"] == "queued"
            assert client.delete(f"/api/v1/exports/{queued['id']}").status_code == 200
            png = client.get("/api/v1/evaluations/obb/r18/confusion.png")
            assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        studio.close()
