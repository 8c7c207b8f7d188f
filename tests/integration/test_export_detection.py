"""Exports of detectors: ONNX files of a Faster R-CNN and a Mask R-CNN checked against PyTorch on
the split's images box by box, `vistudio predict` on them giving PyTorch's detections of the same
images (the evaluation's decode), overlays, and bad input.

The experiments are made here (``build_detector`` + a few training steps + ``save_checkpoint`` +
rows), so that these tests do not depend on the training job; one export per model is shared by
the module."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from detection_factories import CLASSES, shapes_project
from eval_factories import run_job, workspace_settings
from vistudio.cli.main import main
from vistudio.errors import BadRequest
from vistudio.services import exports
from vistudio.studio import Studio, open_studio

BOX_MODEL, BOX_SIZE = "fasterrcnn_mobilenet_v3_large_320_fpn", 128
MASK_MODEL, MASK_SIZE = "maskrcnn_resnet18_fpn64", 96
PROJECT_IMAGES = 12


def _settle(net: Any, images: list[Any]) -> None:
    """Make an untrained detector's scores spread out, as a trained one's are (ties would make the
    comparison meaningless): batch-norm statistics measured on real images, then a classification
    layer with larger random weights. Seeded: the same model every run."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over what it sees
    net.train()
    with torch.no_grad():
        net.backbone(net.transform(images)[0].tensors)
        layer = net.roi_heads.box_predictor.cls_score
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    net.eval()


def make_detector_experiment(
    studio: Studio,
    *,
    project: str,
    name: str,
    model: str,
    task: str,
    image_size: int,
    detections_per_image: int,
    score_threshold: float = 0.05,
) -> dict[str, Any]:
    """A finished experiment whose best and last checkpoints are ``model`` settled by :func:`_settle`
    on the train images."""
    import torch

    from vistudio.db import Project, Split, utcnow
    from vistudio.db.training import Checkpoint, Experiment
    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.detectors import build_detector
    from vistudio.ml.preprocess import open_rgb
    from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items

    torch.manual_seed(0)
    classes = list(CLASSES)
    net, info = build_detector(
        model,
        len(classes),
        image_size=image_size,
        score_threshold=score_threshold,
        detections_per_image=detections_per_image,
        task=task,
    )
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name="s1").one()
        project_id, split_id = p.id, sp.id
        items = split_items(studio, s, split_id, ["train"], classes, task=task)
    images = [
        torch.from_numpy(np.asarray(open_rgb(it.path), np.float32).transpose(2, 0, 1) / 255) for it in items
    ]
    _settle(net, images)
    config = {
        "model": model,
        "image_size": image_size,
        "score_threshold": score_threshold,
        "nms_iou": 0.5,
        "detections_per_image": detections_per_image,
        "split": "s1",
    }
    preprocess = {
        "kind": "detection",
        "input_size": [image_size, image_size],
        "mean": info.mean,
        "std": info.std,
        "scale": 1 / 255,
        "color": "RGB",
    }
    meta = {
        "model": model,
        "task": task,
        "classes": classes,
        "config": config,
        "preprocess": preprocess,
        "epoch": 1,
        "step": 0,
        "metrics": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "ckpt.pt", net, meta)
        sha = studio.store.write_file(CHECKPOINT_KIND, path, ext=CHECKPOINT_EXT)
        size = path.stat().st_size
    with studio.sessions.begin() as s:
        exp = Experiment(
            project_id=project_id,
            split_id=split_id,
            name=name,
            task=task,
            config=config,
            classes=classes,
            status="succeeded",
            epochs_done=1,
            created_at=utcnow(),
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(exp)
        s.flush()
        for kind in ("best", "last"):
            s.add(
                Checkpoint(
                    experiment_id=exp.id, kind=kind, sha256=sha, size=size, epoch=1, step=0, metrics={}
                )
            )
            studio.store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
        return {"id": exp.id, "name": name, "meta": meta, "sha256": sha}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("export-detection")
    studio = open_studio(workspace_settings(root))
    shapes_project(studio, root, "boxes", task="detection", n=PROJECT_IMAGES, size=96)
    shapes_project(studio, root, "masks", task="instance_segmentation", n=PROJECT_IMAGES, size=96)
    yield studio
    studio.close()


def export(studio: Studio, project: str, experiment: str, **kw: Any) -> dict[str, Any]:
    started = exports.start_export(studio, project=project, experiment=experiment, **kw)
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return exports.get_export(studio, started["export"]["id"])


@pytest.fixture(scope="module")
def boxes(ws: Studio) -> dict[str, Any]:
    exp = make_detector_experiment(
        ws,
        project="boxes",
        name="frcnn",
        model=BOX_MODEL,
        task="detection",
        image_size=BOX_SIZE,
        detections_per_image=30,
    )
    return {"exp": exp, "export": export(ws, "boxes", "frcnn")}


@pytest.fixture(scope="module")
def masks(ws: Studio) -> dict[str, Any]:
    exp = make_detector_experiment(
        ws,
        project="masks",
        name="mrcnn",
        model=MASK_MODEL,
        task="instance_segmentation",
        image_size=MASK_SIZE,
        detections_per_image=15,
    )
    return {"exp": exp, "export": export(ws, "masks", "mrcnn")}


def _check_validation(v: dict[str, Any], *, masks: bool) -> None:
    assert v["passed"] and v["faults"] == 0 and v["fault_examples"] == []
    assert v["source"] == "split images" and v["images"] == PROJECT_IMAGES  # every image of the split
    # the models find things, and every box of either side has its partner
    # (a box may lack its partner only at a cut — the score threshold, or the last of a full
    # image — where two nearly tied boxes can fall either side: "borderline", rare)
    assert v["boxes_pytorch"] >= 100 and v["matched"] >= 0.98 * max(v["boxes_pytorch"], v["boxes_exported"])
    assert 2 * v["matched"] + v["borderline"] == v["boxes_pytorch"] + v["boxes_exported"]
    assert v["min_box_iou"] >= 0.99 and v["max_abs_score_diff"] < 1e-3
    if masks:
        assert v["masks_compared"] == v["matched"] and v["min_mask_iou"] >= 0.99
    else:
        assert v["masks_compared"] == 0 and v["min_mask_iou"] is None


def test_faster_rcnn_export_matches_pytorch_box_by_box(ws: Studio, boxes: dict[str, Any]) -> None:
    import onnx
    import onnxruntime as ort

    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.export.detection import detection_parity, pytorch_detections
    from vistudio.ml.inference.onnx import OnnxDetector

    out = boxes["export"]
    _check_validation(out["validation"], masks=False)
    path = ws.home / out["path"]
    assert out["filename"] == f"frcnn-best-opset17-{out['id']}.onnx" and path.is_file()
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["task"] == "detection" and props["model"] == BOX_MODEL
    assert json.loads(props["class_names"]) == list(CLASSES) and props["input_name"] == "image"
    assert json.loads(props["output_names"]) == ["boxes", "labels", "scores"] and props["batch"] == "1"
    assert json.loads(props["preprocess"])["kind"] == "detection" and props["score_threshold"] == "0.05"
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["validation"] == out["validation"] and side["sha256"] == out["sha256"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[3, "height", "width"]]
    # any size, not only the square one it was traced with: the same detections as PyTorch
    model, _ = load_checkpoint(ws.store.path("checkpoint", boxes["exp"]["sha256"], "pt"))
    runner = OnnxDetector(path)
    pairs = []
    images = _test_images(ws, "boxes")
    for i, (w, h) in enumerate(((133, 61), (90, 200), (128, 130), (301, 97))):
        shown = Image.open(images[i % len(images)]).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        img = np.ascontiguousarray(np.asarray(shown, np.float32).transpose(2, 0, 1) / 255)
        pairs.append((pytorch_detections(model, img), runner.detect(img)))
    v = detection_parity(pairs, score_threshold=0.05, detections_per_image=30)
    assert v["passed"] and v["matched"] >= 0.98 * v["boxes_pytorch"] > 0, v


def test_mask_rcnn_export_matches_pytorch_masks_too(ws: Studio, masks: dict[str, Any]) -> None:
    import onnxruntime as ort

    out = masks["export"]
    _check_validation(out["validation"], masks=True)
    path = ws.home / out["path"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "labels", "scores", "masks"]
    outs = session.run(None, {"image": np.zeros((3, 50, 70), np.float32)})
    assert outs[3].shape[1:] == (1, 50, 70) and len(outs[0]) == len(outs[3])
    blob = ws.store.path("export", out["sha256"], "onnx")
    assert blob.read_bytes() == path.read_bytes()


def _pytorch_side(model: Any, meta: dict[str, Any], path: Path) -> Any:
    """What evaluation computes for one image file: the checkpoint's model on the image decoded
    with ``open_rgb(path, draft_size=S)``, in the pixels of the upright image."""
    import torch

    from vistudio.ml.inference.detections import from_torchvision
    from vistudio.ml.preprocess import open_rgb

    size = max(meta["preprocess"]["input_size"])
    img = open_rgb(path, draft_size=size)
    full = open_rgb(path)
    tensor = torch.from_numpy(np.asarray(img, np.float32).transpose(2, 0, 1) * np.float32(1 / 255))
    with torch.inference_mode():
        out = model([tensor.contiguous()])[0]
    return from_torchvision(out, input_size=img.size, original_size=full.size)


def _as_detections(rows: list[dict[str, Any]], masks: bool) -> Any:
    from vistudio.ml.inference.detections import Detections

    return Detections(
        np.asarray([r["box"] for r in rows], np.float64).reshape(-1, 4),
        np.asarray([r["class_index"] for r in rows], np.int64),
        np.asarray([r["score"] for r in rows], np.float32),
        [r["mask"] for r in rows] if masks else None,
    )


def _predict(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["--json", "predict", *args])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1
    return code, json.loads(lines[0])


def _test_images(ws: Studio, project: str) -> list[Path]:
    from vistudio.db import Project, Split
    from vistudio.services.experiments import split_items

    with ws.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name="s1").one()
        task = "instance_segmentation" if project == "masks" else "detection"
        return [Path(it.path) for it in split_items(ws, s, sp.id, ["test"], list(CLASSES), task=task)]


def _rotated_jpeg(src: Path, dest: Path) -> Path:
    """A bigger JPEG that is stored sideways with an EXIF orientation (decoded drafted, upright)."""
    img = Image.open(src).convert("RGB").resize((288, 288)).crop((0, 0, 288, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90°
    img.transpose(Image.Transpose.ROTATE_90).save(dest, "JPEG", quality=95, exif=exif)
    return dest


@pytest.mark.parametrize("which", ["boxes", "masks"])
def test_predict_gives_pytorchs_detections_of_the_same_images(
    ws: Studio, which: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.export.detection import detection_parity

    made = request.getfixturevalue(which)
    model, meta = load_checkpoint(ws.store.path("checkpoint", made["exp"]["sha256"], "pt"))
    is_masks = which == "masks"
    files = [*_test_images(ws, which), _rotated_jpeg(_test_images(ws, which)[0], tmp_path / "big.jpg")]
    code, out = _predict(str(ws.home / made["export"]["path"]), *map(str, files), capsys=capsys)
    assert code == 0 and out["errors"] == [] and len(out["predictions"]) == len(files) >= 3
    assert out["model"]["task"] == made["exp"]["meta"]["task"] and out["model"]["classes"] == list(CLASSES)
    pairs = []
    for path, pred in zip(files, out["predictions"], strict=True):
        assert pred["path"] == str(path)
        for d in pred["detections"]:
            assert set(d) == {"label", "class_index", "score", "box"} | ({"mask"} if is_masks else set())
            assert d["label"] == CLASSES[d["class_index"]]
        reference = _pytorch_side(model, meta, path)
        assert (pred["width"], pred["height"]) == ((288, 200) if path.suffix == ".jpg" else (96, 96))
        pairs.append((reference, _as_detections(pred["detections"], is_masks)))
    cfg = made["exp"]["meta"]["config"]
    for path, pair in zip(files, pairs, strict=True):
        one = detection_parity([pair], score_threshold=0.05, detections_per_image=cfg["detections_per_image"])
        assert one["passed"], (path.name, one)
    v = detection_parity(pairs, score_threshold=0.05, detections_per_image=cfg["detections_per_image"])
    assert v["passed"] and v["matched"] >= 0.98 * max(v["boxes_pytorch"], v["boxes_exported"]) > 0, v
    if is_masks:
        assert v["masks_compared"] == v["matched"] and v["min_mask_iou"] >= 0.99
        big = out["predictions"][-1]["detections"][0]["mask"]
        assert big["size"] == [200, 288]  # masks at the image's own size, not the decoded one
    # a score threshold keeps the detections scoring at least it
    code, high = _predict(
        str(ws.home / made["export"]["path"]), str(files[0]), "--score-threshold", "0.5", capsys=capsys
    )
    kept = [d for d in out["predictions"][0]["detections"] if d["score"] >= 0.5]
    assert (
        code == 0 and high["predictions"][0]["detections"] == kept and high["model"]["score_threshold"] == 0.5
    )


def test_predict_writes_overlays(
    ws: Studio, masks: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _test_images(ws, "masks")[:2]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]  # two images, one stem
    for s, d in zip(src, same, strict=True):
        d.write_bytes(s.read_bytes())
    dest = tmp_path / "overlays"
    code, out = _predict(
        str(ws.home / masks["export"]["path"]), *map(str, same), "--save-overlays", str(dest), capsys=capsys
    )
    assert code == 0
    written = [Path(p["overlay"]) for p in out["predictions"]]
    assert [p.name for p in written] == ["x.png", "x-2.png"] and all(p.parent == dest for p in written)
    for original, overlay, pred in zip(same, written, out["predictions"], strict=True):
        a = np.asarray(Image.open(original).convert("RGB"), np.int16)
        b = np.asarray(Image.open(overlay).convert("RGB"), np.int16)
        assert a.shape == b.shape
        changed = np.abs(a - b).sum(axis=2) > 0
        assert pred["detections"] and changed.mean() > 0.05  # masks and boxes drawn over it
        x1, y1, x2, y2 = (int(v) for v in pred["detections"][0]["box"])
        assert changed[y1 : y2 + 1, x1 : x2 + 1].any()


def test_predict_bad_input(
    ws: Studio, boxes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(ws.home / boxes["export"]["path"])
    good = _test_images(ws, "boxes")[:2]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good[0].read_bytes()[:200])
    fake = tmp_path / "fake.jpg"
    fake.write_text("no image here")
    code, out = _predict(
        model, str(good[0]), str(corrupt), str(tmp_path / "gone.png"), str(fake), str(good[1]), capsys=capsys
    )
    assert code == 0 and [p["path"] for p in out["predictions"]] == [str(good[0]), str(good[1])]
    reasons = {Path(e["path"]).name: e["reason"] for e in out["errors"]}
    assert reasons["gone.png"] == "file not found"
    assert reasons["corrupt.png"].startswith("not a readable image") and reasons["fake.jpg"].startswith(
        "not a readable image"
    )
    code, out = _predict(model, str(corrupt), capsys=capsys)
    assert (
        code == 1
        and out["error"]["code"] == "invalid_input"
        and "no image could be read" in out["error"]["message"]
    )
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    code, out = _predict(str(not_onnx), str(good[0]), capsys=capsys)
    assert code == 1 and "not a loadable ONNX model" in out["error"]["message"]
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(Path(model).read_bytes()[:5000])
    code, out = _predict(str(truncated), str(good[0]), capsys=capsys)
    assert code == 1 and "not a loadable ONNX model" in out["error"]["message"]
    code, out = _predict(str(tmp_path / "missing.onnx"), str(good[0]), capsys=capsys)
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = _predict(model, str(good[0]), "--score-threshold", "1.5", capsys=capsys)
    assert code == 2 and out["error"]["code"] == "usage"
    code, out = _predict(model, str(good[0]), "--save-overlays", str(fake), capsys=capsys)
    assert code == 1 and "not a folder" in out["error"]["message"]


def test_detectors_export_to_onnx_only(ws: Studio, boxes: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="export to onnx only"):
        exports.start_export(ws, project="boxes", experiment="frcnn", format="torchscript")


def test_an_export_that_disagrees_with_pytorch_fails_and_leaves_no_file(
    ws: Studio, boxes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vistudio.ml.export.detection as det

    real = det.pytorch_detections

    def shifted(model: Any, image: np.ndarray) -> Any:
        out = real(model, image)
        out.boxes = out.boxes + 1.5  # PyTorch's boxes moved by 1.5 px: IoU below 0.99
        return out

    monkeypatch.setattr(det, "pytorch_detections", shifted)
    few = exports._parity_items
    monkeypatch.setattr(exports, "_parity_items", lambda studio, exp: few(studio, exp)[:2])
    started = exports.start_export(ws, project="boxes", experiment="frcnn")
    job = run_job(ws, started["job"]["id"])
    assert job["status"] == "failed"
    out = exports.get_export(ws, started["export"]["id"])
    assert (
        out["status"] == "failed" and "disagrees with PyTorch" in out["error"] and "box IoU" in out["error"]
    )
    assert not (ws.home / out["path"]).exists() and not (ws.home / out["metadata_path"]).exists()
    exports.delete_export(ws, out["id"])


def test_detect_onnx_in_runs_gives_predicts_detections_and_draws_the_mistakes(
    ws: Studio, boxes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A validation run of the project's test images: each image's detections matched to its
    objects (TP + FN = its objects, TP + FP = its detections), exactly the images with a false
    positive or a missed object saved with their errors drawn; a production run keeps every image's
    detections, equal to `vistudio predict`'s."""
    from vistudio.jobs.worker import Worker
    from vistudio.pipelines.saver import safe_name
    from vistudio.services import runs

    model = str(ws.home / boxes["export"]["path"])

    def key(name: str) -> str:  # a run's name for a project's image
        return safe_name(Path(name).with_suffix("").as_posix(), 80)

    def run(mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
        stage = {"name": "detect_onnx", "params": {"model": model, "score_threshold": 0.6}}
        pipeline = {"name": "find", "version": "1", "stages": [stage], "output_mode": mode}
        job = runs.start_run(ws, pipeline=pipeline, project="boxes", split="s1", subset="test")
        Worker(ws).run_one(job_id=job["id"])
        final = ws.queue.get(job["id"])
        assert final.status == "succeeded" and final.result is not None, final.error
        r = final.result["run"]
        folder = ws.home / ("validation" if mode == "validation" else "production") / r["id"]
        return r, json.loads((folder / "audit.json").read_text())

    r, audit = run("validation")
    items = {i["item"]: i for i in audit["per_item"]}
    assert r["failed"] == 0 and len(items) == len(_test_images(ws, "boxes"))
    with ws.sessions() as s:
        from vistudio.db import Annotation, Project, Sample

        pid = s.query(Project).filter_by(name="boxes").one().id
        samples = s.query(Sample.id, Sample.name, Sample.path).filter_by(project_id=pid).all()
        objects = {
            key(name): s.query(Annotation).filter_by(sample_id=sid, kind="box").count()
            for sid, name, _ in samples
        }
        keys = {Path(path).name: key(name) for _, name, path in samples}
    mistaken = set()
    for key, item in items.items():
        m = item["stages"][0]["metrics"]
        assert m["tp"] + m["fn"] == objects[key] and m["tp"] + m["fp"] == m["detections"]
        if m["fp"] or m["fn"]:
            mistaken.add(key)
    assert r["mistakes"] == len(mistaken) > 0  # an untrained model: it makes mistakes
    errors = ws.home / "validation" / r["id"] / "errors"
    saved = {p.name for p in errors.iterdir()}
    assert saved == {f"{k}_detect_onnx_{n}" for k in mistaken for n in ("overlay.png", "detections.json")}
    for key in mistaken:
        with Image.open(errors / f"{key}_detect_onnx_overlay.png") as im:
            drawn = np.asarray(im.convert("RGB"))
        assert (
            drawn.shape == (96, 96, 3)
            and ((drawn == (230, 40, 40)).all(axis=2) | (drawn == (255, 150, 0)).all(axis=2)).any()
        )
    # production: every image, the same detections as `vistudio predict` gives
    r, audit = run("production")
    final = ws.home / "production" / r["id"] / "final"
    files = _test_images(ws, "boxes")
    code, out = _predict(model, *map(str, files), "--score-threshold", "0.6", capsys=capsys)
    assert code == 0
    for path, pred in zip(files, out["predictions"], strict=True):
        kept = json.loads((final / f"{keys[path.name]}_detect_onnx_detections.json").read_text())
        assert kept["detections"] == pred["detections"] and kept["count"] == len(pred["detections"])


def test_the_export_page_shows_a_detectors_check(ws: Studio, masks: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app

    with TestClient(create_app(ws)) as c:
        page = c.get("/projects/masks/export")
        assert page.status_code == 200
        assert '<option value="onnx">ONNX</option>' in page.text and 'value="torchscript"' not in page.text
        result = c.get(f"/projects/masks/export/{masks['export']['id']}")
        assert result.status_code == 200 and 'data-metric="min_mask_iou"' in result.text
        v = masks["export"]["validation"]
        assert f"{v['matched']} / {v['boxes_pytorch']}" in result.text and "boxes matched" in result.text
        listed = c.get("/projects/masks/export/list").text
        assert f"{v['matched']}/{v['boxes_pytorch']} boxes" in listed


def test_predict_equals_the_evaluations_predictions_json(
    ws: Studio, masks: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """`vistudio predict` on the exported file gives the detections (boxes, scores, classes and
    masks) that the evaluation of the same checkpoint wrote to predictions.json for those images."""
    from vistudio.db import Sample
    from vistudio.ml.export.detection import detection_parity
    from vistudio.ml.inference.detections import Detections
    from vistudio.services import evaluation

    started = evaluation.start_evaluation(
        ws, project="masks", experiment="mrcnn", subsets="test", device="cpu"
    )
    assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
    ev = evaluation.get_evaluation(ws, project="masks", experiment="mrcnn")
    results = json.loads((ws.home / ev["predictions_path"]).read_text())
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    with ws.sessions() as s:
        ids = sorted({r["image_id"] for r in results})
        paths = {sid: ws.home / p for sid, p in s.query(Sample.id, Sample.path).filter(Sample.id.in_(ids))}
    assert len(paths) >= 2
    code, out = _predict(str(ws.home / masks["export"]["path"]), *(str(paths[i]) for i in ids), capsys=capsys)
    assert code == 0
    pairs = []
    for sid, pred in zip(ids, out["predictions"], strict=True):
        rows = by_image[sid]
        evaluated = Detections(
            np.asarray(
                [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rows)], np.float64
            ).reshape(-1, 4),
            np.asarray([r["category_id"] - 1 for r in rows], np.int64),
            np.asarray([r["score"] for r in rows], np.float32),
            [r["segmentation"] for r in rows],
        )
        pairs.append((evaluated, _as_detections(pred["detections"], masks=True)))
    v = detection_parity(pairs, score_threshold=0.05, detections_per_image=15)
    assert v["passed"] and v["matched"] == v["boxes_pytorch"] == v["boxes_exported"] > 0, v
    assert v["masks_compared"] == v["matched"] and v["min_mask_iou"] >= 0.99


# --- the score threshold an export records -------------------------------------------------------------


def test_the_export_records_the_evaluations_best_f1_threshold_unless_told(
    ws: Studio, masks: dict[str, Any]
) -> None:
    """No evaluation: the training's threshold; a finished evaluation of the same checkpoint: the
    confidence that maximises F1 in it; a threshold asked for wins; bad ones are refused (400)."""
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app
    from vistudio.services import evaluation

    # the shared export was made before any evaluation: the training's threshold, in the file too
    assert masks["export"]["options"]["score_threshold"] == 0.05
    assert masks["export"]["options"]["score_threshold_source"] == "training"
    ev = evaluation.find_evaluation(ws, project="masks", experiment="mrcnn")
    if ev is None or ev["status"] != "succeeded":
        started = evaluation.start_evaluation(
            ws, project="masks", experiment="mrcnn", subsets="test", device="cpu"
        )
        assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
        ev = evaluation.get_evaluation(ws, project="masks", experiment="mrcnn")
    best = ev["best_f1_threshold"]
    assert isinstance(best, float) and 0 <= best <= 1
    assert exports.default_score_threshold(ws, project="masks", experiment="mrcnn") == {
        "value": best,
        "source": "evaluation",
    }

    def queued(**kw: Any) -> dict[str, Any]:
        out = exports.start_export(ws, project="masks", experiment="mrcnn", **kw)["export"]
        exports.delete_export(ws, out["id"])  # only what it would record matters here
        return out["options"]

    assert queued() == {"opset": 17, "score_threshold": best, "score_threshold_source": "evaluation"}
    assert queued(score_threshold=0.3)["score_threshold"] == 0.3
    assert queued(score_threshold=0)["score_threshold_source"] == "given"
    for bad in (-0.01, 1.01, float("nan"), float("inf"), "x", True):
        with pytest.raises(BadRequest, match="score_threshold must be a number between 0 and 1"):
            exports.start_export(ws, project="masks", experiment="mrcnn", score_threshold=bad)  # type: ignore[arg-type]
    with TestClient(create_app(ws)) as c:
        body = {"project": "masks", "experiment": "mrcnn"}
        for bad in (1.5, -1):
            r = c.post("/api/v1/exports", json={**body, "score_threshold": bad})
            assert r.status_code == 400 and "score_threshold" in r.json()["error"]["message"], r.text
        r = c.post("/api/v1/exports", json={**body, "score_threshold": 0.25})
        assert r.status_code == 202 and r.json()["export"]["options"]["score_threshold"] == 0.25
        exports.delete_export(ws, r.json()["export"]["id"])
        page = c.get("/projects/masks/export").text
        assert 'id="xf-threshold"' in page and 'data-source="evaluation"' in page and f"{best:.3f}" in page
        # the evaluate page of an instance segmentation experiment shows masks' numbers beside boxes'
        panel = c.get("/projects/masks/evaluate", params={"experiment": "mrcnn"}).text
        assert "COCO, boxes and masks" in panel and "mask AP50" in panel


def test_an_exported_threshold_is_predicts_default_and_the_graph_keeps_lower_scores(
    ws: Studio, boxes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    made = export(ws, "boxes", "frcnn", score_threshold=0.3)
    assert made["validation"]["passed"]
    props = {e.key: e.value for e in onnx.load(str(ws.home / made["path"])).metadata_props}
    assert (props["score_threshold"], props["score_threshold_source"]) == ("0.3", "given")
    assert props["graph_score_threshold"] == "0.05"  # the training's, lower: kept by the graph
    model = str(ws.home / made["path"])
    files = [str(p) for p in _test_images(ws, "boxes")]
    code, out = _predict(model, *files, capsys=capsys)
    assert code == 0 and out["model"]["score_threshold"] == 0.3
    kept = [d["score"] for p in out["predictions"] for d in p["detections"]]
    code, low = _predict(model, *files, "--score-threshold", "0.05", capsys=capsys)
    assert code == 0 and low["model"]["score_threshold_source"] == "given"
    everything = [d["score"] for p in low["predictions"] for d in p["detections"]]
    assert (
        min(kept) >= 0.3
        and min(everything) < 0.3
        and sorted(kept) == sorted(s for s in everything if s >= 0.3)
    )
    # the page says which threshold the file records and why
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app

    with TestClient(create_app(ws)) as c:
        text = c.get(f"/projects/boxes/export/{made['id']}").text
    assert 'id="export-threshold"' in text and 'data-source="given"' in text and "0.300" in text
    exports.delete_export(ws, made["id"])
