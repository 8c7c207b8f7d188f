"""Evaluation of semantic segmentation experiments, end to end on small catalog segmenters: the
metrics equal those recomputed independently from the saved predicted PNGs and the source label
images (plain NumPy bincount, and torchmetrics' MulticlassJaccardIndex), the predictions equal the
model's own bilinear-upsampled argmax, a training's last val_miou equals the evaluation of the same
checkpoint on val, resume after a crash, files, filters and sorts, the overlay layers, the CLI and
API contracts, and bad inputs (unknown experiment, empty subset, an image file that vanished)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from torchmetrics.classification import MulticlassJaccardIndex

from eval_factories import run_job, workspace_settings
from segmentation_factories import MODEL_CLASSES, make_segmentation_experiment, segmentation_project
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.db import Job, Project, Sample, Split
from vistudio.db.training import Evaluation, Experiment, SegmentationResult
from vistudio.errors import BadRequest, InvalidInput, NotFound
from vistudio.ml.checkpoint import load_checkpoint
from vistudio.ml.inference.label_images import IGNORED_COLOUR, page_class_index
from vistudio.ml.inference.overlays import FP_COLOUR, class_colour
from vistudio.ml.preprocess import eval_array, open_rgb
from vistudio.ml.tasks.semantic_segmentation import label_map
from vistudio.services import evaluation, experiments, splits
from vistudio.services.experiments import experiment_items
from vistudio.studio import Studio, open_studio

API = "/api/v1"
TOL = 1e-7


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, dict[str, Path]]]:
    """``scenes``: label PNGs (RLE masks, ignored bands), 80×64, experiments ``seg`` (30 steps) and
    ``raw`` (untrained, best only); ``polys``: COCO polygons, 72×56, experiment ``poly``."""
    root = tmp_path_factory.mktemp("eval-segmentation")
    studio = open_studio(workspace_settings(root))
    sources = {
        "scenes": segmentation_project(studio, root, "scenes", n=40),
        "polys": segmentation_project(studio, root, "polys", n=24, fmt="coco", width=72, height=56, seed=5),
    }
    make_segmentation_experiment(studio, project="scenes", name="seg", train_steps=30)
    make_segmentation_experiment(studio, project="scenes", name="raw", kinds=("best",), seed=1)
    make_segmentation_experiment(studio, project="polys", name="poly", train_steps=15)
    yield studio, sources
    studio.close()


def evaluate(studio: Studio, project: str, experiment: str, **kw: Any) -> dict[str, Any]:
    started = evaluation.start_evaluation(studio, project=project, experiment=experiment, **kw)
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return evaluation.get_evaluation(studio, project=project, experiment=experiment)


def all_results(studio: Studio, project: str, experiment: str, **kw: Any) -> list[dict[str, Any]]:
    return evaluation.list_results(studio, project=project, experiment=experiment, limit=500, **kw)["items"]


def png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img, np.uint8)


def reference_scores(pairs: list[tuple[np.ndarray, np.ndarray]], k: int) -> dict[str, Any]:
    """mIoU and friends of (truth, prediction) pairs in plain NumPy: one bincount histogram."""
    hist = np.zeros((k, k), np.int64)
    for truth, pred in pairs:
        keep = truth != 255
        hist += np.bincount(k * truth[keep].astype(np.int64) + pred[keep], minlength=k * k).reshape(k, k)
    tp, gt, pr = np.diag(hist).astype(float), hist.sum(1).astype(float), hist.sum(0).astype(float)
    union = gt + pr - tp
    present, labelled = union > 0, gt > 0
    iou = np.divide(tp, union, out=np.zeros(k), where=present)
    dice = np.divide(2 * tp, gt + pr, out=np.zeros(k), where=present)
    acc = np.divide(tp, gt, out=np.zeros(k), where=labelled)
    return {
        "miou": float(iou[present].mean()),
        "pixel_accuracy": float(tp.sum() / gt.sum()),
        "mean_class_accuracy": float(acc[labelled].mean()),
        "dice": float(dice[present].mean()),
        "per_class_iou": [float(v) if ok else None for v, ok in zip(iou, present, strict=True)],
        "hist": hist,
    }


def torchmetrics_miou(pairs: list[tuple[np.ndarray, np.ndarray]], k: int) -> float:
    metric = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=255)
    for truth, pred in pairs:
        metric.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    return float(metric.compute())


def assert_metrics_match(m: dict[str, Any], ref: dict[str, Any], classes: list[str]) -> None:
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy", "dice"):
        assert m[key] == pytest.approx(ref[key], abs=TOL), key
    for name, v in zip(classes, ref["per_class_iou"], strict=True):
        assert (m["per_class_iou"][name] is None) == (v is None), name
        if v is not None:
            assert m["per_class_iou"][name] == pytest.approx(v, abs=TOL), name


def test_metrics_equal_numpy_and_torchmetrics_on_the_saved_pngs(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, sources = ws
    ev = evaluate(studio, "scenes", "seg", subsets="val,test", batch_size=3)
    assert ev["task"] == "semantic_segmentation" and ev["status"] == "succeeded" and ev["batch_size"] == 3
    assert ev["classes"] == MODEL_CLASSES
    m = ev["metrics"]
    folder = studio.home / ev["predictions_dir"]
    table = pq.read_table(studio.home / ev["results_path"]).to_pylist()
    assert len(table) == m["images"] == len(list(folder.glob("*.png"))) > 10
    pairs = []
    for row in table:
        # the reference ground truth is the source label image itself, not the evaluation's
        truth = png(sources["scenes"] / "masks" / Path(row["name"]).name)
        pred = png(folder.parent / row["prediction"])
        assert pred.shape == truth.shape == (64, 80) and pred.max() < len(MODEL_CLASSES)
        assert np.array_equal(png(folder.parent / row["ground_truth"]), truth)
        pairs.append((truth, pred))
    assert any((t == 255).any() for t, _ in pairs)  # the ignored bands are in
    ref = reference_scores(pairs, len(MODEL_CLASSES))
    assert_metrics_match(m, ref, MODEL_CLASSES)
    assert m["miou"] == pytest.approx(torchmetrics_miou(pairs, len(MODEL_CLASSES)), abs=TOL)
    assert ev["confusion_matrix"] == ref["hist"].tolist()
    assert m["pixels"] == int(ref["hist"].sum()) == sum(r["pixels"] for r in table)
    # a model that learned: better than predicting the background everywhere
    assert 0.5 < m["miou"] <= 1 and all(v is not None for v in m["per_class_iou"].values())
    # each subset's numbers are those of its own histogram
    for subset in ("val", "test"):
        part = [p for p, r in zip(pairs, table, strict=True) if r["subset"] == subset]
        sub = m["by_subset"][subset]
        assert sub["images"] == len(part)
        assert sub["miou"] == pytest.approx(reference_scores(part, 4)["miou"], abs=TOL)
    # per image: its IoU and pixel accuracy from its own histogram
    for row, (truth, pred) in zip(table, pairs, strict=True):
        own = reference_scores([(truth, pred)], 4)
        assert row["iou"] == pytest.approx(own["miou"], abs=TOL)
        assert row["pixel_accuracy"] == pytest.approx(own["pixel_accuracy"], abs=TOL)
    print(
        f"\nscenes val+test ({m['images']} images): mIoU {m['miou']:.4f}, pixel acc. {m['pixel_accuracy']:.4f}, "
        f"torchmetrics {torchmetrics_miou(pairs, 4):.10f}"
    )


def test_predictions_are_the_bilinear_upsampled_argmax(ws: tuple[Studio, dict[str, Path]]) -> None:
    """The saved PNG of each image is the model's logits at its input size, upsampled bilinearly to
    the image's own size, argmax — recomputed here one image at a time with plain torch."""
    studio, _ = ws
    ev = evaluate(studio, "polys", "poly", subsets="test", batch_size=5)
    ckpt = next(
        c for c in experiments.get_experiment(studio, project="polys", experiment="poly")["checkpoints"]
    )
    model, meta = load_checkpoint(ckpt["path"])
    pre = meta["preprocess"]
    with studio.sessions() as s:
        exp = s.scalar(select(Experiment).where(Experiment.name == "poly"))
        assert exp is not None
        items = {it.sample_id: it for it in experiment_items(studio, s, exp, ["test"])}
    results = all_results(studio, "polys", "poly")
    assert len(results) == len(items) == ev["metrics"]["images"]
    pairs = []
    for r in results:
        it = items[r["sample_id"]]
        x = torch.from_numpy(eval_array(open_rgb(it.path), pre))[None]
        with torch.inference_mode():
            logits = model(x)
        assert logits.shape[-2:] == (64, 64)
        expected = F.interpolate(logits, size=(56, 72), mode="bilinear", align_corners=False)[0].argmax(0)
        saved = png(studio.home / r["prediction_path"])
        assert np.array_equal(saved, expected.numpy().astype(np.uint8)), r["name"]
        truth = png(studio.home / r["truth_path"])
        # polygons: the ground truth is the contract's label map of the stored target
        assert np.array_equal(truth, label_map(it.target, 72, 56)) and not (truth == 255).any()
        pairs.append((truth, saved))
    assert_metrics_match(ev["metrics"], reference_scores(pairs, 4), MODEL_CLASSES)


@pytest.mark.slow
def test_last_val_miou_of_training_equals_the_evaluation_on_val(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    config = {
        "model": "lraspp_mobilenet_v3_small",
        "image_size": 64,
        "epochs": 5,
        "batch_size": 4,
        "lr": 0.01,
        "augment": {"crop": False, "flip": False},
        "seed": 0,
        "split": "s1",
    }
    started = experiments.start_experiment(studio, project="scenes", config=config, name="trained")
    assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
    series = experiments.experiment_metrics(studio, project="scenes", experiment="trained")["series"]
    exp = experiments.get_experiment(studio, project="scenes", experiment="trained")
    last = next(c for c in exp["checkpoints"] if c["kind"] == "last")
    assert last["epoch"] == config["epochs"]
    ev = evaluate(studio, "scenes", "trained", subsets="val", checkpoint="last", device="cpu")
    m = ev["metrics"]
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy", "dice"):
        assert m[key] == pytest.approx(series[f"val_{key}"]["value"][-1], abs=TOL), key
        assert m[key] == pytest.approx(last["metrics"][f"val_{key}"], abs=TOL), key
    print(f"\ntrained 5 epochs: last val_miou {series['val_miou']['value'][-1]!r}, evaluation {m['miou']!r}")
    assert m["miou"] > 0.3  # it learned something: not the background everywhere (0.25 at most)


def test_a_rerun_resumes_and_reset_deletes_rows_and_files(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    ev = evaluate(studio, "scenes", "raw", subsets="train", batch_size=4)

    def rows() -> int:
        with studio.sessions() as s:
            return s.scalar(select(func.count()).where(SegmentationResult.evaluation_id == ev["id"])) or 0

    n = rows()
    assert n == ev["metrics"]["images"] > 12
    with studio.sessions.begin() as s:  # as if the worker died after a few batches
        gone = list(
            s.scalars(select(SegmentationResult).where(SegmentationResult.evaluation_id == ev["id"]).limit(9))
        )
        lost = studio.home / gone[0].prediction_path
        s.execute(
            SegmentationResult.__table__.delete().where(SegmentationResult.id.in_([r.id for r in gone]))
        )
        row = s.get(Evaluation, ev["id"])
        assert row is not None
        row.status, row.metrics = "running", {}
        job = s.get(Job, ev["job_id"])
        assert job is not None
        job.status, job.attempts = "queued", 0
    lost.unlink()
    assert run_job(studio, ev["job_id"])["status"] == "succeeded"
    again = evaluation.get_evaluation(studio, project="scenes", experiment="raw")
    assert again["id"] == ev["id"] and rows() == n and lost.is_file()
    assert again["metrics"] == ev["metrics"] and again["confusion_matrix"] == ev["confusion_matrix"]
    folder = studio.home / ev["predictions_dir"]
    evaluation.reset_evaluation(studio, project="scenes", experiment="raw")
    assert rows() == 0 and not folder.exists()
    assert evaluation.evaluation_summaries(studio, [ev["experiment_id"]]) == {}


def test_readable_files(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    ev = evaluate(studio, "scenes", "seg", subsets="test")
    folder = studio.home / ev["results_path"]
    folder = folder.parent
    assert {p.name for p in folder.iterdir()} >= {
        "predictions",
        "ground_truth",
        "results.parquet",
        "results.csv",
        "metrics.json",
        "confusion_matrix.png",
    }
    table = pq.read_table(folder / "results.parquet")
    assert table.column_names == [
        "sample_id",
        "name",
        "path",
        "subset",
        "width",
        "height",
        "iou",
        "pixel_accuracy",
        "pixels",
        "classes",
        "prediction",
        "ground_truth",
    ]
    first = table.to_pylist()[0]
    assert first["prediction"].startswith("predictions/") and Path(first["path"]).is_file()
    assert first["prediction"].endswith(Path(first["name"]).stem + ".png")
    with Image.open(folder / first["prediction"]) as img:  # viewable: a palette PNG in class colours
        assert img.mode == "P"
        palette = img.getpalette()
        assert palette is not None and tuple(palette[3:6]) == class_colour(
            page_class_index("ellipse", ["background", "ellipse", "rectangle", "triangle"])
        )
    csv_lines = (folder / "results.csv").read_text().splitlines()
    assert (
        csv_lines[0].startswith("sample_id,name,path,subset,width,height,iou")
        and len(csv_lines) == len(table) + 1
    )
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["metrics"]["miou"] == ev["metrics"]["miou"] and saved["classes"] == MODEL_CLASSES
    assert saved["confusion_matrix"] == ev["confusion_matrix"]
    with Image.open(folder / "confusion_matrix.png") as img:
        assert img.size[0] > 200
    assert (
        evaluation.evaluation_summaries(studio, [ev["experiment_id"]])[ev["experiment_id"]]["miou"]
        == ev["metrics"]["miou"]
    )


def test_results_filters_and_sorts(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    ev = evaluate(studio, "scenes", "seg", subsets="val,test")
    items = all_results(studio, "scenes", "seg")
    assert len(items) == ev["metrics"]["images"]
    ious = [it["iou"] for it in items]
    assert ious == sorted(ious)  # worst first by default
    assert [it["iou"] for it in all_results(studio, "scenes", "seg", sort="-iou")] == sorted(
        ious, reverse=True
    )
    accs = [it["pixel_accuracy"] for it in all_results(studio, "scenes", "seg", sort="pixel_accuracy")]
    assert accs == sorted(accs)
    val = all_results(studio, "scenes", "seg", subset="val")
    assert val and all(it["subset"] == "val" for it in val)
    tri = all_results(studio, "scenes", "seg", present="triangle")
    assert 0 < len(tri) < len(items) and all("triangle" in it["classes"] for it in tri)
    assert {it["sample_id"] for it in items if "triangle" in it["classes"]} == {it["sample_id"] for it in tri}
    one = items[0]
    # an image's IoU is the mean of the IoU of the classes it holds or is predicted to hold
    assert one["iou"] == pytest.approx(np.mean([c["iou"] for c in one["per_class"]]), abs=TOL)
    assert sum(c["truth_pixels"] for c in one["per_class"]) == one["pixels"]
    detail = evaluation.get_result(studio, project="scenes", experiment="seg", sample_id=one["sample_id"])
    assert detail == one
    with pytest.raises(InvalidInput, match="unknown class"):
        evaluation.list_results(studio, project="scenes", experiment="seg", present="hexagon")
    with pytest.raises(BadRequest, match="sort must be one of iou"):
        evaluation.list_results(studio, project="scenes", experiment="seg", sort="confidence")
    with pytest.raises(BadRequest, match="do not apply to semantic segmentation"):
        evaluation.list_results(studio, project="scenes", experiment="seg", correct=True)
    with pytest.raises(NotFound):
        evaluation.get_result(studio, project="scenes", experiment="seg", sample_id=10**9)


def test_overlay_layers(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    evaluate(studio, "scenes", "seg", subsets="val")
    # the image with an ignored band and the most mistakes
    items = [it for it in all_results(studio, "scenes", "seg") if it["pixels"] < it["width"] * it["height"]]
    it = items[0]
    pred, truth = png(studio.home / it["prediction_path"]), png(studio.home / it["truth_path"])
    page_classes = ["background", "ellipse", "rectangle", "triangle"]  # the project's, in its order
    with TestClient(create_app(studio)) as c:
        layers = {}
        for name, url in it["layers"].items():
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            layers[name] = np.array(Image.open(io.BytesIO(r.content)))
            assert layers[name].shape == (64, 80, 4)
        p = layers["prediction"]
        assert (p[pred == 0][:, 3] == 0).all()  # the background is transparent
        for k, name in enumerate(MODEL_CLASSES[1:], start=1):
            if (pred == k).any():
                colour = class_colour(page_class_index(name, page_classes))
                assert (p[pred == k][:, :3] == colour).all() and (p[pred == k][:, 3] == 255).all()
        e = layers["error"]
        wrong = (pred != truth) & (truth != 255)
        assert wrong.any() and (e[wrong][:, :3] == FP_COLOUR).all() and (e[wrong][:, 3] == 255).all()
        assert (e[(pred == truth)][:, 3] == 0).all()
        hatched = layers["truth"][truth == 255]
        assert (hatched[:, 3] == 255).any() and (hatched[hatched[:, 3] == 255][:, :3] == IGNORED_COLOUR).all()
        small = c.get(it["layers"]["prediction"] + "&size=32")
        assert Image.open(io.BytesIO(small.content)).size == (32, 26)
        base = f"{API}/evaluations/scenes/seg/results/{it['sample_id']}"
        assert c.get(f"{base}/mask.png").status_code == 422
        assert c.get(f"{base}/error.png", params={"size": 4}).status_code == 422
        assert c.get(f"{API}/evaluations/scenes/seg/results/999999/error.png").status_code == 404
        assert c.get(f"{API}/evaluations/scenes/raw/results/{it['sample_id']}/error.png").status_code == 404
        (studio.home / it["truth_path"]).rename(studio.home / (it["truth_path"] + ".away"))
        try:
            r = c.get(f"{base}/truth.png")
            assert r.status_code == 404 and "evaluate again" in r.json()["error"]["message"]
        finally:
            (studio.home / (it["truth_path"] + ".away")).rename(studio.home / it["truth_path"])


@pytest.fixture
def cli(ws: tuple[Studio, dict[str, Path]], capsys: pytest.CaptureFixture[str]) -> Any:
    studio, _ = ws

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = main(["--workspace", str(studio.home), "--json", *args])
        lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
        assert len(lines) == 1, lines
        return code, json.loads(lines[0])

    return run


def test_cli_contract(
    cli: Any, capsys: pytest.CaptureFixture[str], ws: tuple[Studio, dict[str, Path]]
) -> None:
    code, out = cli("evaluate", "scenes", "seg", "--subsets", "val", "--device", "cpu")
    assert code == 0, out
    ev = out["evaluation"]
    m = ev["metrics"]
    assert {"miou", "pixel_accuracy", "per_class_iou", "mean_class_accuracy", "dice"} <= set(m)
    assert set(m["per_class_iou"]) == set(MODEL_CLASSES) and ev["task"] == "semantic_segmentation"
    assert Path(ev["predictions_dir"]).is_absolute() and Path(ev["predictions_dir"]).is_dir()
    assert Path(ev["results_path"]).is_absolute() and ev["batch_size"] == 8
    code, res = cli("evaluation", "results", "scenes", "seg", "--present", "ellipse", "--sort", "-iou")
    assert code == 0 and res["items"] and all("ellipse" in it["classes"] for it in res["items"])
    ious = [it["iou"] for it in res["items"]]
    assert ious == sorted(ious, reverse=True)
    code, err = cli("evaluation", "results", "scenes", "seg", "--sort", "fn")
    assert code == 1 and "sort must be one of iou" in err["error"]["message"]
    code, err = cli("evaluation", "results", "scenes", "seg", "--present", "hexagon")
    assert code == 1 and err["error"]["code"] == "invalid_input"
    code, err = cli("evaluate", "scenes", "seg", "--iou", "0.5")
    assert code == 1 and "do not apply to semantic_segmentation" in err["error"]["message"]
    code, err = cli("evaluate", "scenes", "nope")
    assert code == 1 and err["error"]["code"] == "not_found"
    code, tagged = cli("evaluation", "tag", "scenes", "seg", "--add", "has-ellipse", "--present", "ellipse")
    assert code == 0 and tagged["changed"] == res["total"]
    # the human-readable output
    home = str(ws[0].home)
    assert main(["--workspace", home, "evaluation", "show", "scenes", "seg"]) == 0
    text = capsys.readouterr().out
    assert "miou" in text and "per class" in text and "triangle" in text and "labelled pixels" in text
    assert main(["--workspace", home, "evaluation", "results", "scenes", "seg", "--limit", "3"]) == 0
    assert "IoU" in capsys.readouterr().out


def test_api(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    with TestClient(create_app(studio)) as c:
        r = c.post(f"{API}/evaluations", json={"project": "scenes", "experiment": "seg", "subsets": ["test"]})
        assert r.status_code == 202, r.text
        assert run_job(studio, r.json()["job"]["id"])["status"] == "succeeded"
        ev = c.get(f"{API}/evaluations/scenes/seg").json()["evaluation"]
        assert (
            ev["status"] == "succeeded"
            and ev["metrics"]["miou"] > 0
            and ev["confusion_labels"] == MODEL_CLASSES
        )
        assert not Path(ev["predictions_dir"]).is_absolute() and len(ev["class_colours"]) == 4
        r = c.get(
            f"{API}/evaluations/scenes/seg/results",
            params={"present": "rectangle", "sort": "-pixel_accuracy"},
        )
        assert r.status_code == 200
        accs = [it["pixel_accuracy"] for it in r.json()["items"]]
        assert accs and accs == sorted(accs, reverse=True)
        one = r.json()["items"][0]
        got = c.get(f"{API}/evaluations/scenes/seg/results/{one['sample_id']}").json()["result"]
        assert got == one
        r = c.get(f"{API}/evaluations/scenes/seg/results", params={"sort": "ap"})
        assert r.status_code == 400 and "sort must be one of iou" in r.json()["error"]["message"]
        r = c.get(f"{API}/evaluations/scenes/seg/results", params={"present": "hexagon"})
        assert r.status_code == 422
        r = c.post(f"{API}/evaluations", json={"project": "scenes", "experiment": "seg", "iou": 0.5})
        assert r.status_code == 400
        assert (
            c.post(f"{API}/evaluations", json={"project": "scenes", "experiment": "ghost"}).status_code == 404
        )
        r = c.get(f"{API}/evaluations/scenes/seg/confusion.png")
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size[0] > 100


def test_bad_inputs(ws: tuple[Studio, dict[str, Path]], tmp_path: Path) -> None:
    studio, _ = ws
    with pytest.raises(NotFound):
        evaluation.start_evaluation(studio, project="scenes", experiment="ghost")
    with pytest.raises(BadRequest, match="thresholds do not apply"):
        evaluation.start_evaluation(studio, project="scenes", experiment="seg", score_threshold=0.3)
    # an image file that vanished: its reason, the others evaluated
    first = evaluate(studio, "scenes", "seg", subsets="val")
    victim = all_results(studio, "scenes", "seg")[0]
    with studio.sessions() as s:
        sample = s.get(Sample, victim["sample_id"])
        assert sample is not None and sample.storage == "copy"
        path = studio.home / sample.path
    away = tmp_path / "away"
    path.rename(away)
    try:
        ev = evaluate(studio, "scenes", "seg", subsets="val")
    finally:
        away.rename(path)
    m = ev["metrics"]
    assert m["images"] == first["metrics"]["images"] - 1 and m["skipped"] == 1
    assert m["skipped_items"] == [{"sample_id": victim["sample_id"], "reason": "file not found"}]
    assert victim["sample_id"] not in {it["sample_id"] for it in all_results(studio, "scenes", "seg")}
    # a subset without images: the job fails, saying so
    splits.create_split(studio, project="polys", name="no-test", ratios=(0.8, 0.2, 0.0), seed=1)
    with studio.sessions.begin() as s:  # the experiment's split has no test images now
        exp = s.scalar(
            select(Experiment)
            .join(Project, Project.id == Experiment.project_id)
            .where(Experiment.name == "poly")
        )
        assert exp is not None
        exp.split_id = s.scalar(
            select(Split.id).where(Split.name == "no-test", Split.project_id == exp.project_id)
        )
    try:
        started = evaluation.start_evaluation(studio, project="polys", experiment="poly", subsets="test")
        job = run_job(studio, started["job"]["id"])
        assert job["status"] in ("failed", "dead")
        ev = evaluation.get_evaluation(studio, project="polys", experiment="poly")
        assert ev["status"] == "failed" and "hold no images" in ev["error"]
    finally:
        with studio.sessions.begin() as s:
            exp = s.scalar(select(Experiment).where(Experiment.name == "poly"))
            assert exp is not None
            exp.split_id = s.scalar(
                select(Split.id).where(Split.name == "s1", Split.project_id == exp.project_id)
            )


def test_the_ground_truth_is_the_versions_unless_current_labels_are_asked_for(
    ws: tuple[Studio, dict[str, Path]],
) -> None:
    from vistudio.services import annotations

    studio, _ = ws
    before = evaluate(studio, "polys", "poly", subsets="val")
    victim = all_results(studio, "polys", "poly")[0]
    sid = victim["sample_id"]
    with studio.sessions() as s:
        original = annotations.object_state(s, [sid], ("polygon", "mask_rle"))[sid]
    truth_before = png(studio.home / victim["truth_path"])
    whole = {"polygons": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}
    annotations.set_objects(
        studio, sid, [{"kind": "polygon", "class": "triangle", "geometry": whole}], expected_revision=None
    )
    try:
        again = evaluate(studio, "polys", "poly", subsets="val")  # on its version: nothing changed
        assert again["labels"] == "version" and again["metrics"] == before["metrics"]
        same = evaluation.get_result(studio, project="polys", experiment="poly", sample_id=sid)
        assert np.array_equal(png(studio.home / same["truth_path"]), truth_before)
        assert not (truth_before == MODEL_CLASSES.index("triangle")).all()
        now = evaluate(studio, "polys", "poly", subsets="val", labels="current")
        assert now["labels"] == "current" and now["metrics"] != before["metrics"]
        edited = evaluation.get_result(studio, project="polys", experiment="poly", sample_id=sid)
        assert (png(studio.home / edited["truth_path"]) == MODEL_CLASSES.index("triangle")).all()
        assert "triangle" in edited["classes"] and edited["per_class"][-1]["truth_pixels"] == edited["pixels"]
    finally:
        annotations.set_objects(studio, sid, original, expected_revision=None)
