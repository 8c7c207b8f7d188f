"""Exports of oriented (rotated-box) detectors: the ONNX file of the small oriented detector (its
decoded candidates; the selection runs in NumPy) checked against eager PyTorch detection by
detection on the split's images; its outputs through the runner equal to the PyTorch model's;
`vistudio predict` and the ``detect_onnx`` stage (a run started through the API) giving rotated
boxes, the evaluation's detections of the same images; the stage matching them to the project's
rotated ground truth (difficult objects included) with the evaluation's matching and counts, an
image without objects and one whose only object is difficult, the objects followed through
resizes and crops; the Export page; clear errors for a damaged file, a model of another task and an
export that disagrees with PyTorch.

The experiment is made by ``oriented_factories.make_oriented_experiment`` (a few training steps
in this process, ``save_checkpoint``, rows), so that these tests do not depend on the training
job: parity needs a model whose scores spread out, not a good one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eval_factories import run_job, workspace_settings
from oriented_factories import (
    CLASSES,
    DETECTIONS_PER_IMAGE,
    MODEL,
    SCORE_THRESHOLD,
    SIZE,
    make_oriented_experiment,
    rotated_project,
)
from vistudio.cli.main import main
from vistudio.services import exports
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow
PROJECT_IMAGES = 8


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("export-oriented")
    studio = open_studio(workspace_settings(root))
    # every third object difficult: the stage and the evaluation ignore them alike
    rotated_project(studio, root, "obb", n=PROJECT_IMAGES, size=SIZE, difficult_every=3)
    yield studio
    studio.close()


@pytest.fixture(scope="module")
def made(ws: Studio) -> dict[str, Any]:
    exp = make_oriented_experiment(ws, project="obb", name="r18")
    started = exports.start_export(ws, project="obb", experiment="r18")
    job = run_job(ws, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return {"exp": exp, "export": exports.get_export(ws, started["export"]["id"])}


def _model(ws: Studio, made: dict[str, Any]) -> Any:
    from vistudio.ml.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ws.store.path("checkpoint", made["exp"]["sha256"], "pt"))
    return model


def _split_images(ws: Studio, subsets: list[str]) -> list[Path]:
    from vistudio.db import Project, Split
    from vistudio.services.experiments import split_items

    with ws.sessions() as s:
        p = s.query(Project).filter_by(name="obb").one()
        sp = s.query(Split).filter_by(project_id=p.id, name="s1").one()
        items = split_items(ws, s, sp.id, subsets, list(CLASSES), task="oriented_detection")
        return [Path(it.path) for it in items]


def _predict(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["--json", "predict", *args])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


def _as_detections(rows: list[dict[str, Any]]) -> Any:
    from vistudio.ml.inference.onnx_oriented import OrientedDetections

    return OrientedDetections(
        np.asarray([r["rbox"] for r in rows], np.float64).reshape(-1, 5),
        np.asarray([r["points"] for r in rows], np.float64).reshape(-1, 4, 2),
        np.asarray([r["class_index"] for r in rows], np.int64),
        np.asarray([r["score"] for r in rows], np.float32),
    )


def _evaluation_side(model: Any, path: Path) -> Any:
    """What evaluation computes for one image file (``services/evaluation/oriented``): the model on
    the image decoded with ``open_rgb(path, draft_size=S)``, in the pixels of the upright image."""
    import torch

    from vistudio.ml.inference.onnx_oriented import OrientedDetections
    from vistudio.ml.oriented_detectors import to_sample_pixels
    from vistudio.ml.preprocess import open_rgb

    img = open_rgb(path, draft_size=SIZE)
    full = open_rgb(path)
    x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)
    with torch.no_grad():
        (out,) = model([x])
    d = to_sample_pixels(out, input_size=img.size, original_size=full.size)
    return OrientedDetections(d["boxes"], d["corners"], d["labels"], d["scores"])


def test_the_export_matches_pytorch_detection_by_detection(ws: Studio, made: dict[str, Any]) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from vistudio.ml.export.oriented import oriented_parity, pytorch_detections
    from vistudio.ml.inference.onnx_oriented import OnnxOrientedDetector, prepare, select_detections

    out = made["export"]
    v = out["validation"]
    assert v["passed"] and v["faults"] == 0 and v["source"] == "split images", v
    assert v["images"] == PROJECT_IMAGES and v["iou"] == "rotated"
    # the trained-a-little model finds things, and nearly every detection has its partner
    assert v["boxes_pytorch"] >= 20 and v["matched"] >= 0.95 * max(v["boxes_pytorch"], v["boxes_exported"])
    assert 2 * v["matched"] + v["borderline"] == v["boxes_pytorch"] + v["boxes_exported"]
    assert v["min_box_iou"] >= 0.99 and v["max_abs_score_diff"] < 1e-3
    print(
        f"\noriented export parity: {v['matched']}/{v['boxes_pytorch']} matched, {v['borderline']} "
        f"borderline, worst rotated IoU {v['min_box_iou']:.6f}, max |Δscore| {v['max_abs_score_diff']:.2e}"
    )
    path = ws.home / out["path"]
    assert out["filename"] == f"r18-best-opset17-{out['id']}.onnx" and path.is_file()
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["task"] == "oriented_detection" and props["model"] == MODEL
    assert json.loads(props["class_names"]) == list(CLASSES) and props["input_size"] == f"{SIZE},{SIZE}"
    assert props["input_name"] == "images" and json.loads(props["output_names"]) == [
        "boxes",
        "scores",
        "levels",
    ]
    assert props["score_threshold"] == props["selection_score_threshold"] == str(SCORE_THRESHOLD)
    assert props["score_threshold_source"] == "training" and props["box_format"] == "cx,cy,w,h,theta"
    assert props["nms_iou"] == "0.3" and props["detections_per_image"] == str(DETECTIONS_PER_IMAGE)
    assert out["options"]["score_threshold"] == SCORE_THRESHOLD
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["validation"] == v and side["sha256"] == out["sha256"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, SIZE, SIZE]

    # the file's outputs are the model's candidates, and one selection makes both detections
    model = _model(ws, made)
    runner = OnnxOrientedDetector(path)
    shown = [Image.open(p).convert("RGB") for p in _split_images(ws, ["test"])]
    # the images as they are, and resized to other sizes and aspect ratios
    shown = shown[:1] + [im.resize(s) for im, s in zip(shown, ((133, 61), (70, 150)), strict=False)]
    for picture in shown:
        img = np.ascontiguousarray(np.asarray(picture, np.float32).transpose(2, 0, 1) / 255)
        x, scales = model._batch([torch.from_numpy(img)])
        prepared, scale = prepare(img, SIZE, model.mean.flatten().tolist(), model.std.flatten().tolist())
        # the same input (bit for bit on one thread; torch's resize rounds differently on others)
        assert scale == scales[0]
        np.testing.assert_allclose(prepared, x[0].numpy(), rtol=0, atol=1e-5)
        with torch.no_grad():
            boxes, scores, levels = (t.numpy() for t in model.candidates(x))
        o_boxes, o_scores, o_levels = runner.raw(prepared[None])
        assert np.array_equal(o_levels, levels) and o_scores.shape == scores.shape
        assert np.abs(o_scores - scores).max() < 1e-4
        np.testing.assert_allclose(o_boxes[..., :4], boxes[..., :4], rtol=1e-4, atol=1e-3)
        turn = (o_boxes[..., 4] - boxes[..., 4] + np.pi / 2) % np.pi - np.pi / 2  # θ and θ ± π: one box
        assert np.abs(turn).max() < 1e-3
        eager = model([torch.from_numpy(img)])[0]
        sel = select_detections(
            boxes[0],
            scores[0],
            levels,
            score_threshold=SCORE_THRESHOLD,
            nms_iou=0.3,
            detections_per_image=DETECTIONS_PER_IMAGE,
            scale=scales[0],
        )
        assert np.array_equal(eager["boxes"].numpy(), sel.boxes.astype(np.float32))
        assert np.array_equal(eager["labels"].numpy(), sel.labels) and len(sel.scores) > 0
        one = oriented_parity(
            [(pytorch_detections(model, img), runner.detect(img))], score_threshold=SCORE_THRESHOLD
        )
        assert one["passed"] and one["matched"] > 0, one


def test_predict_gives_the_evaluations_rotated_boxes(
    ws: Studio, made: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.ml.export.oriented import oriented_parity

    model_file = str(ws.home / made["export"]["path"])
    files = _split_images(ws, ["test"])
    # a bigger JPEG stored sideways (EXIF orientation): decoded drafted and upright
    big = tmp_path / "big.jpg"
    img = Image.open(files[0]).convert("RGB").resize((288, 288)).crop((0, 0, 288, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.transpose(Image.Transpose.ROTATE_90).save(big, "JPEG", quality=95, exif=exif)
    files.append(big)
    overlays = tmp_path / "overlays"
    code, out = _predict(model_file, *map(str, files), "--save-overlays", str(overlays), capsys=capsys)
    assert code == 0 and out["errors"] == [] and len(out["predictions"]) == len(files)
    assert out["model"]["task"] == "oriented_detection" and out["model"]["classes"] == list(CLASSES)
    assert out["model"]["score_threshold"] == SCORE_THRESHOLD
    model = _model(ws, made)
    pairs = []
    for path, pred in zip(files, out["predictions"], strict=True):
        assert pred["path"] == str(path) and Path(pred["overlay"]).is_file()
        assert (pred["width"], pred["height"]) == ((288, 200) if path == big else (SIZE, SIZE))
        for d in pred["detections"]:
            assert set(d) == {"label", "class_index", "score", "points", "rbox", "box"}
            assert d["label"] == CLASSES[d["class_index"]] and len(d["points"]) == 4 and len(d["rbox"]) == 5
            assert -np.pi / 2 <= d["rbox"][4] < np.pi / 2
        pairs.append((_evaluation_side(model, path), _as_detections(pred["detections"])))
    v = oriented_parity(pairs, score_threshold=SCORE_THRESHOLD)
    assert v["passed"] and v["matched"] >= 0.95 * max(v["boxes_pytorch"], v["boxes_exported"]) > 0, v
    with Image.open(out["predictions"][-1]["overlay"]) as drawn:
        assert drawn.size == (288, 200)  # drawn on the full, upright image
    # a score threshold keeps the detections scoring at least it
    best = max(d["score"] for p in out["predictions"] for d in p["detections"])
    high = round(best - 0.01, 4)
    code, some = _predict(model_file, *map(str, files), "--score-threshold", str(high), capsys=capsys)
    for pred, kept in zip(out["predictions"], some["predictions"], strict=True):
        assert kept["detections"] == [d for d in pred["detections"] if d["score"] >= high]
    assert code == 0 and some["model"]["score_threshold"] == high


def test_detect_onnx_stores_rotated_boxes_in_a_run_started_through_the_api(
    ws: Studio, made: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app
    from vistudio.jobs.worker import Worker

    model_file = str(ws.home / made["export"]["path"])
    stage = {"name": "detect_onnx", "params": {"model": model_file}}
    pipeline = {"name": "find-obb", "version": "1", "stages": [stage], "output_mode": "production"}
    with TestClient(create_app(ws)) as client:
        started = client.post(
            "/api/v1/runs", json={"pipeline": pipeline, "project": "obb", "split": "s1", "subset": "test"}
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job"]["id"]
        Worker(ws).run_one(job_id=job_id)
        final = ws.queue.get(job_id)
        assert final.status == "succeeded" and final.result is not None, final.error
        run_id = final.result["run"]["id"]
        got = client.get(f"/api/v1/runs/{run_id}")
        assert got.status_code == 200 and got.json()["run"]["failed"] == 0
    folder = ws.home / "production" / run_id / "final"
    files = _split_images(ws, ["test"])
    code, out = _predict(model_file, *map(str, files), capsys=capsys)
    assert code == 0
    stored = sorted(folder.glob("*_detect_onnx_detections.json"))
    assert len(stored) == len(files) and len(list(folder.glob("*_detect_onnx_overlay.png"))) == len(files)
    by_count = sorted(len(p["detections"]) for p in out["predictions"])
    kept = [json.loads(p.read_text()) for p in stored]
    assert sorted(k["count"] for k in kept) == by_count and sum(by_count) > 0
    predicted = sorted(json.dumps(p["detections"], sort_keys=True) for p in out["predictions"])
    assert sorted(json.dumps(k["detections"], sort_keys=True) for k in kept) == predicted  # predict's boxes
    assert all({"points", "rbox", "box"} <= set(d) for k in kept for d in k["detections"])


def _stage_outputs(ws: Studio, made: dict[str, Any], **params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run of ``detect_onnx`` over every image of the project: the run, and each item's saved
    result by its key."""
    from vistudio.services import runs

    model_file = str(ws.home / made["export"]["path"])
    stage = {"name": "detect_onnx", "params": {"model": model_file, **params}}
    pipeline = {"name": "match-obb", "version": "1", "stages": [stage], "output_mode": "production"}
    job = run_job(ws, runs.start_run(ws, pipeline=pipeline, project="obb")["id"])
    assert job["status"] == "succeeded", job
    run = job["result"]["run"]
    folder = ws.home / "production" / run["id"] / "final"
    suffix = "_detect_onnx_detections.json"
    return run, {p.name.removesuffix(suffix): json.loads(p.read_text()) for p in folder.glob(f"*{suffix}")}


def test_detect_onnx_matches_the_rotated_ground_truth_as_the_evaluation(
    ws: Studio, made: dict[str, Any]
) -> None:
    from sqlalchemy import select

    from vistudio.db import Sample
    from vistudio.db.training import DetectionResult
    from vistudio.ml.inference.rotated import match_image
    from vistudio.pipelines.saver import safe_name
    from vistudio.services import evaluation

    started = evaluation.start_evaluation(
        ws,
        project="obb",
        experiment="r18",
        subsets=["train", "val", "test"],
        device="cpu",
        iou=0.5,
        score_threshold=SCORE_THRESHOLD,
    )
    assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
    with ws.sessions() as s:
        found = s.execute(
            select(DetectionResult, Sample.name).join(Sample, Sample.id == DetectionResult.sample_id)
        ).all()
        evaluated = {  # by the run's item keys: the sample names without their extension
            safe_name(Path(name).with_suffix("").as_posix(), 80): (
                r.predictions,
                r.truths,
                (r.tp, r.fp, r.fn),
            )
            for r, name in found
        }
    run, got = _stage_outputs(ws, made, score_threshold=SCORE_THRESHOLD, iou=0.5)
    assert sorted(got) == sorted(evaluated) and len(got) == PROJECT_IMAGES
    assert any(t["iscrowd"] for _, ts, _ in evaluated.values() for t in ts)  # difficult objects came in
    for name, out in got.items():
        preds, truths, counts = evaluated[name]
        assert len(out["detections"]) == sum(p["score"] >= SCORE_THRESHOLD for p in preds), name
        # the item's objects are the evaluation's: its truths matched to the stage's detections
        # by the evaluation's matching give the stage's outcomes
        again = [dict(d) for d in out["detections"]]
        objects = [{k: t[k] for k in ("class_index", "points", "iscrowd")} for t in truths]
        match_image(again, objects, 0.5)
        outcomes = [p["outcome"] for p in again]
        fn = sum(t["outcome"] == "fn" for t in objects)
        assert out["outcomes"] == outcomes, name
        assert (out["tp"], out["fp"], out["fn"]) == (outcomes.count("tp"), outcomes.count("fp"), fn)
        assert out["mistaken"] is bool(out["fp"] or out["fn"])
        assert out["truth"] == _summary_of([t["label"] for t in truths if not t["iscrowd"]])
        # and the counts are the evaluation's own, at the same score threshold
        assert (out["tp"], out["fp"], out["fn"]) == counts, name
    assert run["mistakes"] == sum(o["mistaken"] for o in got.values())
    assert sum(o["tp"] for o in got.values()) > 0


def _summary_of(names: list[str]) -> str:
    from vistudio.pipelines.builtin import _summary

    return _summary(names)


def test_detect_onnx_on_an_image_without_objects_or_with_only_a_difficult_one(
    ws: Studio, made: dict[str, Any]
) -> None:
    from vistudio.pipelines.builtin import detect_onnx
    from vistudio.pipelines.stage import Item

    model_file = str(ws.home / made["export"]["path"])
    # the image with the most detections (at least two)
    plain = [
        (path, detect_onnx(Item(key="a", path=path), None, model=model_file).data)
        for path in _split_images(ws, ["train", "val", "test"])
    ]
    path, seen = max(plain, key=lambda pd: pd[1]["count"])
    dets = seen["detections"]
    assert len(dets) >= 2 and "tp" not in seen  # no ground truth: nothing matched
    meta = {"width": SIZE, "height": SIZE}

    def stage(objects: list[dict[str, Any]], **params: Any) -> Any:
        item = Item(key="b", path=path, meta={**meta, "objects": objects})
        return detect_onnx(item, None, model=model_file, **params)

    # no objects: every detection is a false positive
    out = stage([])
    assert out.data["detections"] == dets and out.data["outcomes"] == ["fp"] * len(dets)
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (0, len(dets), 0)
    assert out.data["mistaken"] is True and out.data["truth"] == "nothing"
    assert {k: out.metrics[k] for k in ("tp", "fp", "fn")} == {"tp": 0.0, "fp": float(len(dets)), "fn": 0.0}
    drawn = out.outputs[0][0].reshape(-1, 3)
    assert (drawn == (230, 40, 40)).all(axis=1).any()  # red
    # the only object difficult, where the best detection is: that detection ignored, nothing missed
    best = dets[0]
    hard = {"class": best["label"], "points": best["points"], "iscrowd": True}
    out = stage([hard])
    assert out.data["outcomes"] == ["ignored"] + ["fp"] * (len(dets) - 1)
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (0, len(dets) - 1, 0)
    assert out.data["truth"] == "nothing"
    assert (out.outputs[0][0].reshape(-1, 3) == (150, 150, 150)).all(axis=1).any()  # grey
    # the same object not difficult is found; an object of a class the model does not know is missed
    # (drawn dashed orange: seen with the best detection alone, so that nothing is drawn over it)
    easy = {**hard, "iscrowd": False}
    cx, cy = np.mean(best["points"], axis=0)
    x0, y0 = (5 if cx > SIZE / 2 else SIZE - 35), (5 if cy > SIZE / 2 else SIZE - 25)  # far from it
    bird = {"class": "bird", "points": [[x0, y0], [x0 + 30, y0], [x0 + 30, y0 + 20], [x0, y0 + 20]]}
    out = stage([easy, bird])
    assert out.data["outcomes"] == ["tp"] + ["fp"] * (len(dets) - 1)
    assert (out.data["tp"], out.data["fp"], out.data["fn"]) == (1, len(dets) - 1, 1)
    assert out.data["truth"] == _summary_of(["bird", best["label"]])
    assert (out.outputs[0][0].reshape(-1, 3) == (40, 200, 70)).all(axis=1).any()  # green, drawn over the rest
    out = stage([easy, bird], score_threshold=best["score"])
    assert out.data["outcomes"] == ["tp"] and (out.data["tp"], out.data["fp"], out.data["fn"]) == (1, 0, 1)
    drawn = out.outputs[0][0].reshape(-1, 3)
    assert (drawn == (40, 200, 70)).all(axis=1).any() and (drawn == (255, 150, 0)).all(axis=1).any()


def test_rotated_ground_truth_follows_resizes_and_crops() -> None:
    from vistudio.pipelines.builtin import CROPS_KEY
    from vistudio.pipelines.oriented import rotated_truths
    from vistudio.pipelines.stage import Item

    def square(x: float, y: float, side: float) -> list[list[float]]:
        return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]

    # objects of a 100×100 picture, given at the file's size (200×200); the picture shown at
    # 100×100, cut to x 10..70, y 0..60 and that shown at 30×30
    shown = [
        ("red", square(20, 10, 20), False),  # inside the crop
        ("blue", square(60, 10, 20), False),  # half of it inside: difficult
        ("green", square(75, 70, 20), False),  # outside: left out
        ("green", square(55, 35, 20), False),  # 3/4 of it inside: kept whole
        ("red", square(30, 40, 10), True),  # difficult, inside
    ]
    objects: list[Any] = [
        {"class": k, "points": (2 * np.array(pts)).tolist(), "iscrowd": d} for k, pts, d in shown
    ]
    objects += [
        {"class": "bird", "box": [24, 4, 44, 24]},  # a box: its rectangle; a class the model lacks
        {"class": "red", "points": [[0, 0], [1, 1]]},  # malformed: skipped
        {"class": "red", "points": square(20, 20, 0)},  # no area: skipped
        "junk",
    ]
    item = Item(key="a", meta={"objects": objects, "width": 200, "height": 200})
    item.meta[CROPS_KEY] = [{"box": [10, 0, 70, 60], "size": [100, 100]}]
    got = rotated_truths(item, list(CLASSES), (30, 30))
    assert got is not None
    want = [shown[0], shown[1], shown[3], shown[4], ("bird", square(12, 2, 10), False)]
    assert [t["label"] for t in got] == [k for k, _, _ in want]
    assert [t["class_index"] for t in got] == [2, 0, 1, 2, -1]
    assert [t["iscrowd"] for t in got] == [False, True, False, True, False]
    for t, (_, pts, _) in zip(got, want, strict=True):
        np.testing.assert_allclose(t["points"], (np.array(pts) - [10, 0]) * 0.5, atol=1e-9)
    # without a crop nothing is cut: an object over the image's edge is as the evaluation has it
    edge = {"class": "blue", "points": square(180, 180, 40), "iscrowd": False}  # half outside
    whole = rotated_truths(
        Item(key="b", meta={"objects": [edge], "width": 200, "height": 200}), list(CLASSES), (50, 50)
    )
    assert whole is not None and whole[0]["iscrowd"] is False and whole[0]["class_index"] == 0
    np.testing.assert_allclose(whole[0]["points"], square(45, 45, 10))
    assert rotated_truths(Item(key="c"), list(CLASSES), (30, 30)) is None  # no ground truth


def test_bad_files_and_models_of_other_tasks_are_clear_errors(
    ws: Studio, made: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    from vistudio.errors import InvalidInput
    from vistudio.ml.inference.onnx import OnnxDetector
    from vistudio.ml.inference.onnx_oriented import OnnxOrientedDetector
    from vistudio.pipelines.builtin import OnnxSessionCache, detect_onnx
    from vistudio.pipelines.stage import Item, StageError

    model_file = ws.home / made["export"]["path"]
    image = str(_split_images(ws, ["test"])[0])
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model_file.read_bytes()[:5000])
    code, out = _predict(str(truncated), image, capsys=capsys)
    assert code == 1 and "not a loadable ONNX model" in out["error"]["message"]
    with pytest.raises(InvalidInput, match="not a loadable ONNX model"):
        OnnxOrientedDetector(truncated)
    with pytest.raises(StageError, match="detect_onnx: not a loadable ONNX model"):
        detect_onnx(Item(key="a", path=Path(image)), None, model=str(truncated))
    # the same file said to be of another task: refused by the runner of each task
    proto = onnx.load(str(model_file))
    for entry in proto.metadata_props:
        if entry.key == "task":
            entry.value = "detection"
    other = tmp_path / "detection.onnx"
    other.write_bytes(proto.SerializeToString())
    with pytest.raises(InvalidInput, match="is a detection model, not an oriented detector"):
        OnnxOrientedDetector(other)
    with pytest.raises(InvalidInput, match="expected one"):
        OnnxDetector(model_file)  # an oriented file is not run as a box detector
    OnnxSessionCache.clear()
    with pytest.raises(StageError, match=r"detect_onnx: .*expected one"):
        detect_onnx(Item(key="a", path=Path(image)), None, model=str(other))
    OnnxSessionCache.clear()


def test_an_export_that_disagrees_with_pytorch_fails_and_leaves_no_file(
    ws: Studio, made: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import vistudio.ml.export.oriented as obb

    real = obb.pytorch_detections
    exported = ws.home / made["export"]["path"]  # the same checkpoint's file: no second tracing
    monkeypatch.setattr(
        obb, "export_oriented_onnx", lambda model, dest, **kw: shutil.copyfile(exported, dest)
    )

    def turned(model: Any, image: np.ndarray) -> Any:
        out = real(model, image)
        out.corners = out.corners + 2.0  # PyTorch's boxes moved by 2 px: IoU below 0.99
        return out

    monkeypatch.setattr(obb, "pytorch_detections", turned)
    few = exports._parity_items
    monkeypatch.setattr(exports, "_parity_items", lambda studio, exp: few(studio, exp)[:2])
    started = exports.start_export(ws, project="obb", experiment="r18")
    job = run_job(ws, started["job"]["id"])
    assert job["status"] == "failed"
    out = exports.get_export(ws, started["export"]["id"])
    assert out["status"] == "failed" and "oriented detector disagrees with PyTorch" in out["error"]
    assert "rotated box IoU" in out["error"]
    assert not (ws.home / out["path"]).exists() and not (ws.home / out["metadata_path"]).exists()
    exports.delete_export(ws, out["id"])


def test_the_export_page_offers_and_shows_an_oriented_export(ws: Studio, made: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app
    from vistudio.ml.tasks import get_task

    assert "export" in get_task("oriented_detection").sections
    with TestClient(create_app(ws)) as c:
        page = c.get("/projects/obb/export")
        assert page.status_code == 200, page.text
        assert '<option value="onnx">ONNX</option>' in page.text and 'value="torchscript"' not in page.text
        assert 'id="xf-threshold"' in page.text
        result = c.get(f"/projects/obb/export/{made['export']['id']}")
        assert result.status_code == 200 and 'data-metric="matched"' in result.text
        assert 'data-metric="min_box_iou"' in result.text
        listed = c.get("/projects/obb/export/list")
        assert listed.status_code == 200 and "boxes" in listed.text
