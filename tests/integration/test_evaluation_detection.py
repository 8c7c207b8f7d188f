"""Evaluation of detection and instance segmentation experiments, end to end on small catalog
detectors: the COCO numbers equal pycocotools' on the written files (boxes and masks, ground
truth read from the source COCO file, crowd regions included), the confusion-matrix identities,
per-image counts summing to the totals, refiltering at any confidence from the stored matching,
files, resume, reset, results filters, and bad requests through the service, the CLI and the API."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sqlalchemy import func, select

from detection_eval_factories import make_detection_experiment
from detection_factories import write_coco
from eval_factories import run_job, workspace_settings
from factories import run_import
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.db import Sample
from vistudio.db.training import DetectionResult, Evaluation
from vistudio.errors import BadRequest, NotFound
from vistudio.services import evaluation, projects, splits
from vistudio.studio import Studio, open_studio

API = "/api/v1"
STATS = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


def coco_project(studio: Studio, root: Path, name: str, task: str, n: int) -> Path:
    """A shapes project imported from COCO with crowd regions on every fifth image; returns the
    source folder (its ``annotations.json`` is the reference ground truth)."""
    src = write_coco(root / f"{name}-coco", n, size=96, seed=3, masks=task == "instance_segmentation")
    data = json.loads((src / "annotations.json").read_text())
    for image in data["images"][::5]:
        ann: dict[str, Any] = {
            "id": len(data["annotations"]) + 1,
            "image_id": image["id"],
            "category_id": 2,
            "bbox": [48.0, 48.0, 40.0, 40.0],
            "area": 1600.0,
            "iscrowd": 1,
        }
        if task == "instance_segmentation":
            ann["segmentation"] = [[48.0, 48.0, 88.0, 48.0, 88.0, 88.0, 48.0, 88.0]]
        data["annotations"].append(ann)
    (src / "annotations.json").write_text(json.dumps(data))
    projects.create_project(studio, name=name, task=task)
    job = run_import(studio, name, src, fmt="coco")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=(0.6, 0.2, 0.2), seed=7)
    return src


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, dict[str, Path]]]:
    """``shapes`` (detection): ``det`` (FCOS-R18, a few training steps), ``raw`` (untrained, best
    only); ``blobs`` (instance segmentation): ``seg`` (Mask R-CNN-R18, a few steps)."""
    root = tmp_path_factory.mktemp("eval-detection")
    studio = open_studio(workspace_settings(root))
    sources = {
        "shapes": coco_project(studio, root, "shapes", "detection", 40),
        "blobs": coco_project(studio, root, "blobs", "instance_segmentation", 30),
    }
    make_detection_experiment(studio, project="shapes", name="det", train_steps=3)
    make_detection_experiment(studio, project="shapes", name="raw", kinds=("best",), seed=1)
    make_detection_experiment(
        studio, project="blobs", name="seg", task="instance_segmentation", train_steps=2
    )
    yield studio, sources
    studio.close()


def subset_size(studio: Studio, project: str, *subsets: str) -> int:
    from vistudio.db import Project, Split, SplitMember

    with studio.sessions() as s:
        split_id = s.scalar(
            select(Split.id).join(Project, Project.id == Split.project_id).where(Project.name == project)
        )
        return (
            s.scalar(
                select(func.count()).where(SplitMember.split_id == split_id, SplitMember.subset.in_(subsets))
            )
            or 0
        )


def evaluate(studio: Studio, project: str, experiment: str, **kw: Any) -> dict[str, Any]:
    started = evaluation.start_evaluation(studio, project=project, experiment=experiment, **kw)
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return evaluation.get_evaluation(studio, project=project, experiment=experiment)


def all_results(studio: Studio, project: str, experiment: str, **kw: Any) -> list[dict[str, Any]]:
    return evaluation.list_results(studio, project=project, experiment=experiment, limit=500, **kw)["items"]


def reference(
    studio: Studio, ev: dict[str, Any], source: Path, iou_type: str, *, mask_area: bool | None = None
) -> COCOeval:
    """pycocotools on the evaluation's predictions.json against the source COCO annotations of the
    same images (matched by file name through images.json). ``mask_area`` (default: for masks):
    each annotation's ``area`` is its mask's, as in a real COCO file, which pycocotools uses for
    the small / medium / large ranges of box evaluation too."""
    if mask_area is None:
        mask_area = iou_type == "segm"
    folder = studio.home / Path(ev["predictions_path"]).parent
    results = json.loads((folder / "predictions.json").read_text())
    if iou_type == "segm":
        # with a "bbox" beside the mask, pycocotools' loadRes takes the box area as the
        # detection's area (small/medium/large by box); masks are measured by mask area, as
        # Detectron2 does by dropping the boxes before evaluating masks
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    sidecar = json.loads((folder / "images.json").read_text())
    src = json.loads((source / "annotations.json").read_text())
    by_name = {im["file_name"]: im for im in src["images"]}
    ids = {by_name[Path(im["file_name"]).name]["id"]: im["id"] for im in sidecar["images"]}
    classes = ev["classes"]
    category = {c["id"]: classes.index(c["name"]) + 1 for c in src["categories"]}
    anns = []
    for a in src["annotations"]:
        if a["image_id"] in ids:
            a = {**a, "image_id": ids[a["image_id"]], "category_id": category[a["category_id"]]}
            if mask_area:  # COCO's convention: the area of the mask
                rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 96, 96))
                a["area"] = float(mask_utils.area(rle))
            anns.append(a)
    dataset = {
        "images": [
            {"id": im["id"], "width": im["width"], "height": im["height"]} for im in sidecar["images"]
        ],
        "annotations": anns,
        "categories": sidecar["categories"],
    }
    assert any(a["iscrowd"] for a in anns)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        e = COCOeval(gt, dt, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def assert_equal_to_reference(metrics: dict[str, Any], e: COCOeval, prefix: str = "") -> None:
    for name, ref in zip(STATS, e.stats, strict=True):
        ours = metrics[prefix + name]
        assert (ours if ours is not None else -1.0) == pytest.approx(float(ref), abs=1e-6), name
    for k, cat in enumerate(e.params.catIds):
        name = e.cocoGt.cats[cat]["name"]
        p = e.eval["precision"][:, :, k, 0, 2]
        ap = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
        ours = metrics["per_class"][name][prefix + "ap"]
        assert (ours if ours is not None else -1.0) == pytest.approx(ap, abs=1e-6)


def test_box_metrics_equal_pycocotools_on_the_written_files(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, sources = ws
    ev = evaluate(studio, "shapes", "det", subsets="val,test", batch_size=4)
    assert ev["batch_size"] == 4
    assert ev["task"] == "detection" and ev["status"] == "succeeded"
    m = ev["metrics"]
    assert set(STATS) <= set(m) and "mask_map" not in m
    assert set(m["per_class"]) == set(ev["classes"]) == {"rectangle", "ellipse", "triangle"}
    assert {"ap", "ap50", "precision", "recall", "f1", "objects", "tp", "fp", "fn"} <= set(
        m["per_class"]["ellipse"]
    )
    assert (
        m["images"] == subset_size(studio, "shapes", "val", "test") > 0
        and m["predictions"] > 0
        and m["iou"] == ev["iou"] == 0.5
    )
    assert m["score_threshold_source"] == "best_f1" and ev["score_threshold"] == m["best_f1_threshold"]
    assert ev["best_f1_threshold"] == ev["f1_curve"]["best"]["threshold"]
    assert len(ev["confusion_matrix"]) == 4 and ev["confusion_labels"][-1] == "background"
    assert len(ev["pr_curves"]) == 3 and all(len(c["precision"]) == 101 for c in ev["pr_curves"])
    assert_equal_to_reference(m, reference(studio, ev, sources["shapes"], "bbox"))
    # the PR curve at IoU 0.5 is pycocotools' per-class AP50
    for c in ev["pr_curves"]:
        assert c["ap"] == pytest.approx(m["per_class"][c["class"]]["ap50"], abs=1e-6)


def test_confusion_identities_and_per_image_counts(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    ev = evaluate(studio, "shapes", "det", subsets="train,val,test", score_threshold=0.1)
    m, cm, thr = ev["metrics"], np.array(ev["confusion_matrix"]), ev["score_threshold"]
    assert thr == 0.1 and m["score_threshold_source"] == "given"
    assert ev["batch_size"] == 8  # a detector's default, not a classifier's 64
    items = all_results(studio, "shapes", "det")
    assert len(items) == m["images"] == 40
    n = len(ev["classes"])
    objects, kept = np.zeros(n, int), np.zeros(n, int)
    for it in items:
        preds = [p for p in it["predictions"] if p["score"] >= thr]
        for t in it["truths"]:
            objects[t["class_index"]] += not t["iscrowd"]
            assert t["outcome"] == ("ignored" if t["iscrowd"] else t["outcome"])
        for p in preds:
            kept[p["class_index"]] += p["outcome"] != "ignored"
        assert it["tp"] == sum(p["outcome"] == "tp" for p in preds)
        assert it["fp"] == sum(p["outcome"] == "fp" for p in preds)
        assert it["fn"] == sum(
            1 for t in it["truths"] if not t["iscrowd"] and not (t["matched_score"] or -1) >= thr
        )
    assert cm[-1, -1] == 0
    assert (cm[:n].sum(axis=1) == objects).all()  # TP + FN = objects
    assert (cm[:, :n].sum(axis=0) == kept).all()  # TP + FP = predictions above the threshold
    for key in ("tp", "fp", "fn"):
        assert sum(it[key] for it in items) == m[key]
    assert m["tp"] == int(np.trace(cm[:n, :n])) and m["objects"] == objects.sum()
    for k, name in enumerate(ev["classes"]):
        pc = m["per_class"][name]
        assert pc["tp"] + pc["fn"] == pc["objects"] == objects[k] and pc["tp"] + pc["fp"] == kept[k]
    # crowd regions are never missed objects
    crowd = [t for it in items for t in it["truths"] if t["iscrowd"]]
    assert len(crowd) == 8 and all(t["outcome"] == "ignored" for t in crowd)
    assert {p["reason"] for it in items for p in it["predictions"] if p["outcome"] == "fp"} <= {
        "duplicate",
        "wrong_class",
        "localisation",
        "background",
    }


def test_refiltering_at_another_confidence_gives_that_evaluation(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    evaluate(studio, "shapes", "det", subsets="test", score_threshold=0.0)
    low = {it["sample_id"]: it for it in all_results(studio, "shapes", "det")}
    high = evaluate(studio, "shapes", "det", subsets="test", score_threshold=0.3)
    for it in all_results(studio, "shapes", "det"):
        before = low[it["sample_id"]]
        kept = [p for p in before["predictions"] if p["score"] >= 0.3]
        assert [p["outcome"] for p in kept] == [p["outcome"] for p in it["predictions"] if p["score"] >= 0.3]
        tp = sum(p["outcome"] == "tp" for p in kept)
        found = sum(
            1 for t in before["truths"] if t["matched_score"] is not None and t["matched_score"] >= 0.3
        )
        assert it["tp"] == tp == found and it["fp"] == sum(p["outcome"] == "fp" for p in kept)
    assert high["metrics"]["score_threshold"] == 0.3


def test_iou_changes_the_matching_not_the_coco_numbers(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    loose = evaluate(studio, "shapes", "det", subsets="val", iou=0.1, score_threshold=0.05)
    strict = evaluate(studio, "shapes", "det", subsets="val", iou=0.9, score_threshold=0.05)
    assert loose["iou"] == 0.1 and strict["iou"] == 0.9
    assert all(loose["metrics"][k] == strict["metrics"][k] for k in STATS)
    assert loose["metrics"]["tp"] >= strict["metrics"]["tp"]
    assert (
        loose["metrics"]["tp"] + loose["metrics"]["fn"] == strict["metrics"]["tp"] + strict["metrics"]["fn"]
    )


def test_readable_files(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    ev = evaluate(studio, "shapes", "raw", subsets="test")
    folder = studio.home / Path(ev["predictions_path"]).parent
    names = {p.name for p in folder.iterdir()}
    assert {
        "predictions.json",
        "images.json",
        "results.parquet",
        "results.csv",
        "metrics.json",
        "confusion_matrix.png",
        "pr_curves.png",
        "f1_curve.png",
    } <= names
    for png in ("confusion_matrix.png", "pr_curves.png", "f1_curve.png"):
        assert Image.open(folder / png).size[0] > 100
    results = json.loads((folder / "predictions.json").read_text())
    sidecar = json.loads((folder / "images.json").read_text())
    assert results and all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
    assert {r["category_id"] for r in results} <= {c["id"] for c in sidecar["categories"]}
    with studio.sessions() as s:
        samples = {
            sid: (name, sha) for sid, name, sha in s.execute(select(Sample.id, Sample.name, Sample.sha256))
        }
    n = subset_size(studio, "shapes", "test")
    assert len(sidecar["images"]) == ev["metrics"]["images"] == n
    for im in sidecar["images"]:
        assert (im["file_name"], im["sha256"]) == samples[im["id"]] and (im["width"], im["height"]) == (
            96,
            96,
        )
    assert {r["image_id"] for r in results} <= {im["id"] for im in sidecar["images"]}
    table = pq.read_table(folder / "results.parquet").to_pylist()
    items = {it["sample_id"]: it for it in all_results(studio, "shapes", "raw")}
    assert len(table) == n
    for row in table:
        it = items[row["sample_id"]]
        assert (row["tp"], row["fp"], row["fn"], row["ap"]) == (it["tp"], it["fp"], it["fn"], it["ap"])
        assert json.loads(row["predictions"]) == it["predictions"] and Path(row["path"]).is_file()
    stored = json.loads((folder / "metrics.json").read_text())
    assert stored["metrics"] == ev["metrics"] and stored["confusion_matrix"] == ev["confusion_matrix"]
    assert (folder / "results.csv").read_text().count("\n") == n + 1


def test_a_rerun_resumes_and_reset_deletes_the_rows(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    ev = evaluate(studio, "shapes", "raw", subsets="train", batch_size=4)

    def rows() -> int:
        with studio.sessions() as s:
            return s.scalar(select(func.count()).where(DetectionResult.evaluation_id == ev["id"])) or 0

    n = subset_size(studio, "shapes", "train")
    assert rows() == n > 12
    with studio.sessions.begin() as s:  # as if the worker died after a few batches
        ids = list(
            s.scalars(select(DetectionResult.id).where(DetectionResult.evaluation_id == ev["id"]).limit(12))
        )
        s.execute(DetectionResult.__table__.delete().where(DetectionResult.id.in_(ids)))
        row = s.get(Evaluation, ev["id"])
        assert row is not None
        row.status = "running"
        from vistudio.db import Job

        job = s.get(Job, ev["job_id"])
        assert job is not None
        job.status, job.attempts = "queued", 0
    assert run_job(studio, ev["job_id"])["status"] == "succeeded"
    again = evaluation.get_evaluation(studio, project="shapes", experiment="raw")
    assert again["id"] == ev["id"] and rows() == n
    assert again["metrics"] == ev["metrics"] and again["confusion_matrix"] == ev["confusion_matrix"]
    evaluation.reset_evaluation(studio, project="shapes", experiment="raw")
    assert rows() == 0 and not (studio.home / Path(ev["predictions_path"])).exists()
    assert evaluation.evaluation_summaries(studio, [ev["experiment_id"]]) == {}


def test_results_filters_and_sorts(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    evaluate(studio, "shapes", "det", subsets="train,val,test", score_threshold=0.2)
    everything = all_results(studio, "shapes", "det")
    for outcome in ("tp", "fp", "fn"):
        got = all_results(studio, "shapes", "det", outcome=outcome)
        assert len(got) == sum(1 for it in everything if it[outcome] > 0)
        assert all(it[outcome] > 0 for it in got)
    fn = [it["fn"] for it in all_results(studio, "shapes", "det", sort="fn")]
    fp = [it["fp"] for it in all_results(studio, "shapes", "det", sort="fp")]
    assert fn == sorted(fn, reverse=True) and fp == sorted(fp, reverse=True)
    ap = [it["ap"] for it in all_results(studio, "shapes", "det", sort="ap")]
    defined = [a for a in ap if a is not None]
    assert ap[: len(defined)] == sorted(defined)  # lowest AP first, images without objects last
    val = evaluation.list_results(studio, project="shapes", experiment="det", subset="val", outcome="fn")
    assert all(it["subset"] == "val" and it["fn"] for it in val["items"])
    one = everything[0]
    assert (
        evaluation.get_result(studio, project="shapes", experiment="det", sample_id=one["sample_id"]) == one
    )
    assert set(one) >= {
        "sample_id",
        "name",
        "subset",
        "width",
        "height",
        "tp",
        "fp",
        "fn",
        "ap",
        "thumbnail_url",
    }
    p = next(p for it in everything for p in it["predictions"])
    assert {"class_index", "label", "score", "box", "outcome", "reason", "match", "iou"} <= set(p)
    t = next(t for it in everything for t in it["truths"])
    assert {"class_index", "label", "box", "iscrowd", "outcome", "matched_score"} <= set(t)
    summary = evaluation.evaluation_summaries(
        studio, [evaluation.get_evaluation(studio, project="shapes", experiment="det")["experiment_id"]]
    )
    assert set(next(iter(summary.values()))) >= {"status", "map", "map50", "task"}


def test_bad_requests(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    start = evaluation.start_evaluation
    for bad in (0.0, 1.0, 1.5, -0.2, float("nan")):
        with pytest.raises(BadRequest, match="IoU threshold"):
            start(studio, project="shapes", experiment="det", iou=bad)
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(BadRequest, match="score threshold"):
            start(studio, project="shapes", experiment="det", score_threshold=bad)
    evaluate(studio, "shapes", "det", subsets="val")
    q = evaluation.list_results
    with pytest.raises(BadRequest, match="outcome"):
        q(studio, project="shapes", experiment="det", outcome="maybe")
    with pytest.raises(BadRequest, match="sort"):
        q(studio, project="shapes", experiment="det", sort="confidence")
    with pytest.raises(BadRequest, match="do not apply"):
        q(studio, project="shapes", experiment="det", correct=True)
    with pytest.raises(NotFound):
        evaluation.get_result(studio, project="shapes", experiment="det", sample_id=10**12)


def test_instance_segmentation_box_and_mask_metrics_equal_pycocotools(
    ws: tuple[Studio, dict[str, Path]],
) -> None:
    studio, sources = ws
    ev = evaluate(studio, "blobs", "seg", subsets="val,test")
    m = ev["metrics"]
    assert ev["task"] == "instance_segmentation" and {"mask_" + k for k in STATS} <= set(m)
    assert {"mask_ap", "mask_ap50"} <= set(m["per_class"]["triangle"])
    folder = studio.home / Path(ev["predictions_path"]).parent
    results = json.loads((folder / "predictions.json").read_text())
    assert results and all(set(r["segmentation"]) == {"size", "counts"} for r in results)
    assert_equal_to_reference(m, reference(studio, ev, sources["blobs"], "segm"), prefix="mask_")
    assert_equal_to_reference(m, reference(studio, ev, sources["blobs"], "bbox", mask_area=True))
    items = all_results(studio, "blobs", "seg")
    assert all("mask" in p for it in items for p in it["predictions"])
    assert all("mask" in t for it in items for t in it["truths"])
    assert sum(it["tp"] + it["fn"] for it in items) == m["objects"]


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
    code, out = cli(
        "evaluate",
        "shapes",
        "det",
        "--subsets",
        "test",
        "--iou",
        "0.5",
        "--score-threshold",
        "0.25",
        "--device",
        "cpu",
    )
    assert code == 0, out
    ev = out["evaluation"]
    assert {"metrics", "confusion_matrix", "classes", "predictions_path"} <= set(ev)
    assert set(STATS) | {"per_class"} <= set(ev["metrics"])
    assert ev["metrics"]["per_class"]["rectangle"].keys() >= {"ap", "ap50"}
    assert Path(ev["predictions_path"]).is_absolute() and Path(ev["predictions_path"]).is_file()
    assert len(ev["confusion_matrix"]) == len(ev["classes"]) + 1 and ev["score_threshold"] == 0.25
    code, res = cli("evaluation", "results", "shapes", "det", "--outcome", "fn", "--sort", "fn")
    assert code == 0 and all(it["fn"] > 0 for it in res["items"])
    code, err = cli("evaluation", "results", "shapes", "det", "--outcome", "nope")
    assert code == 1 and err["error"]["code"] == "bad_request"
    code, err = cli("evaluation", "results", "shapes", "det", "--sort", "confidence")
    assert code == 1 and "sort must be one of fn, fp, ap" in err["error"]["message"]
    code, err = cli("evaluate", "shapes", "det", "--iou", "1.5")
    assert code == 1 and "IoU threshold" in err["error"]["message"]
    code, err = cli("evaluate", "shapes", "det", "--score-threshold", "-1")
    assert code == 1 and "score threshold" in err["error"]["message"]
    # the human-readable output of a detection evaluation
    assert main(["--workspace", str(ws[0].home), "evaluation", "show", "shapes", "det"]) == 0
    text = capsys.readouterr().out
    assert "map50" in text and "background" in text and "per class" in text
    assert (
        main(["--workspace", str(ws[0].home), "evaluation", "results", "shapes", "det", "--limit", "3"]) == 0
    )
    assert "FN" in capsys.readouterr().out


def test_api(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    with TestClient(create_app(studio)) as c:
        body = {
            "project": "shapes",
            "experiment": "det",
            "subsets": ["val"],
            "iou": 0.6,
            "score_threshold": 0.2,
        }
        r = c.post(f"{API}/evaluations", json=body)
        assert r.status_code == 202, r.text
        assert run_job(studio, r.json()["job"]["id"])["status"] == "succeeded"
        ev = c.get(f"{API}/evaluations/shapes/det").json()["evaluation"]
        assert ev["iou"] == 0.6 and ev["score_threshold"] == 0.2 and ev["pr_curves"] and ev["f1_curve"]
        assert not Path(ev["predictions_path"]).is_absolute()
        r = c.get(f"{API}/evaluations/shapes/det/results", params={"outcome": "fp", "sort": "ap"})
        assert r.status_code == 200 and all(it["fp"] > 0 for it in r.json()["items"])
        for bad in ({"iou": 1.0}, {"iou": 0}, {"score_threshold": 1.5}, {"score_threshold": -0.1}):
            r = c.post(f"{API}/evaluations", json={"project": "shapes", "experiment": "det", **bad})
            assert r.status_code == 422, r.text
        r = c.get(f"{API}/evaluations/shapes/det/results", params={"outcome": "xx"})
        assert r.status_code == 422
        r = c.get(f"{API}/evaluations/shapes/det/results", params={"sort": "confidence"})
        assert r.status_code == 400 and "sort must be one of" in r.json()["error"]["message"]
        r = c.get(f"{API}/evaluations/shapes/det/confusion.png")
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size[0] > 100


def test_unreadable_images_are_skipped_and_counted(ws: tuple[Studio, dict[str, Path]]) -> None:
    studio, _ = ws
    first = evaluate(studio, "shapes", "det", subsets="val")
    table = pq.read_table(studio.home / first["results_path"]).to_pylist()
    victim = Path(table[0]["path"])
    saved = victim.read_bytes()
    victim.write_bytes(b"not a png any more")
    try:
        ev = evaluate(studio, "shapes", "det", subsets="val")
    finally:
        victim.write_bytes(saved)
    m = ev["metrics"]
    assert m["images"] == first["metrics"]["images"] - 1 and m["skipped"] == 1
    assert m["skipped_items"][0]["sample_id"] == table[0]["sample_id"]
    assert "not a readable image" in m["skipped_items"][0]["reason"]
    ids = {it["sample_id"] for it in all_results(studio, "shapes", "det")}
    assert table[0]["sample_id"] not in ids and len(ids) == m["images"]
