"""Exports of semantic segmentation models: the ONNX file (logits out) checked against PyTorch logit
by logit and label map by label map, `vistudio predict` giving PyTorch's label maps and the
evaluation's PNGs, the `segment_onnx` stage in a run, the CLI and the API, and bad input.

The experiment is trained here in seconds (``segmentation_export_factories``), without the training
job; one ONNX export is shared by the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eval_factories import run_job, workspace_settings
from segmentation_export_factories import CLASSES, INPUT, MODEL, MODEL_CLASSES, segmentation_project
from segmentation_export_factories import make_segmenter_experiment as make_experiment
from vistudio.cli.main import main
from vistudio.services import exports
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow
PROJECT_IMAGES = 16


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("export-segmentation")
    studio = open_studio(workspace_settings(root))
    segmentation_project(studio, root, "regions", n=PROJECT_IMAGES)
    yield studio
    studio.close()


@pytest.fixture(scope="module")
def exp(ws: Studio) -> dict[str, Any]:
    made = make_experiment(ws, project="regions", name="lraspp")
    assert made["train_loss"] < 0.5  # it learnt the shapes: its maps are not all background
    return made


def export(studio: Studio, **kw: Any) -> dict[str, Any]:
    started = exports.start_export(studio, project="regions", experiment="lraspp", **kw)
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return exports.get_export(studio, started["export"]["id"])


@pytest.fixture(scope="module")
def onnx_export(ws: Studio, exp: dict[str, Any]) -> dict[str, Any]:
    return export(ws)


def _images(ws: Studio, subsets: list[str]) -> list[Path]:
    from vistudio.db import Project, Split
    from vistudio.services.experiments import split_items

    with ws.sessions() as s:
        p = s.query(Project).filter_by(name="regions").one()
        sp = s.query(Split).filter_by(project_id=p.id, name="s1").one()
        items = split_items(ws, s, sp.id, subsets, MODEL_CLASSES, task="semantic_segmentation")
        return [Path(it.path) for it in items]


def _pytorch_map(model: Any, meta: dict[str, Any], path: Path) -> np.ndarray:
    """What evaluation computes for one image file: the checkpoint's logits of the image decoded
    and preprocessed as evaluation does, upsampled to the image's upright size, argmax."""
    from vistudio.ml.export.segmentation import pytorch_logits
    from vistudio.ml.inference.onnx_segmentation import segmentation_input
    from vistudio.ml.tasks.semantic_segmentation import predict_label_map

    arr, (width, height) = segmentation_input(path, meta["preprocess"])
    return predict_label_map(pytorch_logits(model, arr[None])[0], width, height)


def _checkpoint(ws: Studio, exp: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from vistudio.ml.checkpoint import load_checkpoint

    return load_checkpoint(ws.store.path("checkpoint", exp["sha256"], "pt"))


def _predict(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["--json", "predict", *args])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1
    return code, json.loads(lines[0])


def _rotated_jpeg(src: Path, dest: Path) -> Path:
    """A bigger JPEG stored sideways with an EXIF orientation: decoded drafted and upright, its map
    at the upright size (300×200)."""
    img = Image.open(src).convert("RGB").resize((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90° clockwise
    img.transpose(Image.Transpose.ROTATE_90).save(dest, "JPEG", quality=95, exif=exif)
    return dest


# --- the export and its check -------------------------------------------------------------------------


def test_onnx_export_matches_pytorch_logits_and_label_maps(ws: Studio, onnx_export: dict[str, Any]) -> None:
    import onnx
    import onnxruntime as ort

    out = onnx_export
    v = out["validation"]
    # every image of the split, each compared at its own size (the label maps predict and evaluation give)
    pixels = sum(w * h for w, h in (Image.open(p).size for p in _images(ws, ["train", "val", "test"])))
    assert v["source"] == "split images" and v["images"] == PROJECT_IMAGES and v["pixels"] == pixels
    assert v["passed"] and v["tolerance"] == {"pixel_disagreement": 1e-3}
    assert v["pixels_differing"] == 0 and v["pixel_disagreement"] == 0.0 and v["top1_agreement"] == 1.0
    assert v["images_identical"] == PROJECT_IMAGES and v["worst_image_disagreement"] == 0.0
    assert 0 < v["max_abs_diff"] < 1e-4 and v["max_abs_diff_probs"] < 1e-5  # float rounding only
    assert v["logits_shape"] == [len(MODEL_CLASSES), INPUT, INPUT]
    assert v["against"] == "PyTorch (eager, CPU)" and v["runtime"] == "onnxruntime (CPU)"
    path = ws.home / out["path"]
    assert out["filename"] == f"lraspp-best-opset17-{out['id']}.onnx" and path.is_file()
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["task"] == "semantic_segmentation" and props["model"] == MODEL
    assert json.loads(props["class_names"]) == MODEL_CLASSES and props["num_classes"] == "4"
    pre = json.loads(props["preprocess"])
    assert (
        pre["kind"] == "segmentation"
        and pre["input_size"] == [INPUT, INPUT]
        and props["input_size"] == "64,64"
    )
    assert (props["input_name"], props["output_name"], props["output_layout"]) == ("input", "logits", "NKHW")
    assert props["background_index"] == "0" and props["ignore_index"] == "255"
    assert "predict_label_map" in props["postprocess"]
    colours = json.loads(props["class_colours"])
    assert len(colours) == 4 and colours[0] == [0, 0, 0] and len({tuple(c) for c in colours}) == 4
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["validation"] == v and side["sha256"] == out["sha256"]
    assert ws.store.path("export", out["sha256"], "onnx").read_bytes() == path.read_bytes()
    # a dynamic batch, the other axes fixed and named as what they are
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [["batch", 3, INPUT, INPUT]]
    assert [o.shape for o in session.get_outputs()] == [["batch", 4, INPUT, INPUT]]
    logits = session.run(None, {"input": np.zeros((5, 3, INPUT, INPUT), np.float32)})[0]
    assert logits.shape == (5, 4, INPUT, INPUT)


def test_torchscript_export_is_checked_the_same_way(ws: Studio, exp: dict[str, Any]) -> None:
    from vistudio.ml.export.models import load_torchscript

    out = export(ws, format="torchscript")
    v = out["validation"]
    assert v["runtime"] == "torch.jit (CPU)" and v["passed"] and v["images"] == PROJECT_IMAGES
    assert v["pixels_differing"] == 0 and v["max_abs_diff"] < 1e-4
    _, props = load_torchscript(ws.home / out["path"])
    assert props["task"] == "semantic_segmentation" and json.loads(props["class_names"]) == MODEL_CLASSES
    exports.delete_export(ws, out["id"])


def test_an_export_that_disagrees_with_pytorch_fails_and_leaves_no_file(
    ws: Studio, exp: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vistudio.ml.export.segmentation as seg

    real = seg.pytorch_logits

    def swapped(model: Any, batch: np.ndarray) -> np.ndarray:
        return real(model, batch)[:, ::-1].copy()  # the classes in reverse order: other labels

    monkeypatch.setattr(seg, "pytorch_logits", swapped)
    started = exports.start_export(ws, project="regions", experiment="lraspp")
    assert run_job(ws, started["job"]["id"])["status"] == "failed"
    out = exports.get_export(ws, started["export"]["id"])
    assert out["status"] == "failed" and "labels" in out["error"] and "otherwise than PyTorch" in out["error"]
    assert "tolerance: 0.1% of the pixels" in out["error"]
    assert not (ws.home / out["path"]).exists() and not (ws.home / out["metadata_path"]).exists()
    exports.delete_export(ws, out["id"])


# --- predict ---------------------------------------------------------------------------------------------


def test_predict_gives_pytorchs_label_maps_of_the_same_images(
    ws: Studio,
    exp: dict[str, Any],
    onnx_export: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vistudio.ml.inference.label_images import read_label_png

    model, meta = _checkpoint(ws, exp)
    files = [*_images(ws, ["test", "val"]), _rotated_jpeg(_images(ws, ["test"])[0], tmp_path / "big.jpg")]
    maps = tmp_path / "maps"
    code, out = _predict(
        str(ws.home / onnx_export["path"]), *map(str, files), "--label-maps", str(maps), capsys=capsys
    )
    assert code == 0 and out["errors"] == [] and len(out["predictions"]) == len(files) >= 4
    assert out["model"] == {
        "path": str(ws.home / onnx_export["path"]),
        "name": MODEL,
        "task": "semantic_segmentation",
        "classes": MODEL_CLASSES,
        "input_size": [INPUT, INPUT],
    }
    assert out["label_maps"] == str(maps)
    found: set[str] = set()
    for path, pred in zip(files, out["predictions"], strict=True):
        assert pred["path"] == str(path) and set(pred) == {
            "path",
            "width",
            "height",
            "label_map",
            "class_shares",
            "classes_present",
        }
        width, height = (300, 200) if path.suffix == ".jpg" else Image.open(path).size
        assert (pred["width"], pred["height"]) == (width, height)
        with Image.open(pred["label_map"]) as png:
            assert png.mode == "P" and png.size == (width, height)
        got = read_label_png(pred["label_map"])
        reference = _pytorch_map(model, meta, path)
        assert np.array_equal(got, reference), path.name  # exactly PyTorch's map, every pixel
        counts = np.bincount(got.reshape(-1), minlength=4)
        assert list(pred["class_shares"]) == MODEL_CLASSES
        assert pred["class_shares"] == pytest.approx(
            {c: n / got.size for c, n in zip(MODEL_CLASSES, counts, strict=True)}
        )
        assert pred["classes_present"] == [c for c, n in zip(MODEL_CLASSES, counts, strict=True) if n]
        found |= set(pred["classes_present"])
    assert found >= {"background", *CLASSES}  # a trained model: it finds every class somewhere
    assert Path(out["predictions"][-1]["label_map"]).name == "big.png"


def test_predict_equals_the_evaluations_label_pngs(
    ws: Studio,
    exp: dict[str, Any],
    onnx_export: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vistudio predict` on the exported file writes, for the evaluation's images, the very label
    maps the evaluation of the same checkpoint wrote to its predictions/ folder — the same values,
    and with the colours the export recorded, the same bytes."""
    from vistudio.db import Sample
    from vistudio.db.training import SegmentationResult
    from vistudio.ml.inference.label_images import read_label_png
    from vistudio.services import evaluation

    started = evaluation.start_evaluation(
        ws, project="regions", experiment="lraspp", subsets="test,val", device="cpu"
    )
    assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
    ev = evaluation.get_evaluation(ws, project="regions", experiment="lraspp")
    with ws.sessions() as s:
        rows = (
            s.query(Sample.path, SegmentationResult.prediction_path)
            .join(SegmentationResult, SegmentationResult.sample_id == Sample.id)
            .filter(SegmentationResult.evaluation_id == ev["id"])
            .all()
        )
    evaluated = {str(ws.home / path): ws.home / png for path, png in rows}
    assert len(evaluated) == len(_images(ws, ["test", "val"])) >= 4
    code, out = _predict(
        str(ws.home / onnx_export["path"]), *evaluated, "--label-maps", str(tmp_path / "maps"), capsys=capsys
    )
    assert code == 0 and len(out["predictions"]) == len(evaluated)
    for pred in out["predictions"]:
        theirs = evaluated[pred["path"]]
        assert np.array_equal(read_label_png(pred["label_map"]), read_label_png(theirs)), pred["path"]
        assert Path(pred["label_map"]).read_bytes() == theirs.read_bytes()


def test_predict_bad_input(
    ws: Studio, onnx_export: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx

    model = str(ws.home / onnx_export["path"])
    good = _images(ws, ["test"])[:2]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good[0].read_bytes()[:200])
    fake = tmp_path / "fake.jpg"
    fake.write_text("no image here")
    maps = tmp_path / "maps"
    code, out = _predict(
        model,
        str(good[0]),
        str(corrupt),
        str(tmp_path / "gone.png"),
        str(fake),
        str(good[1]),
        "--label-maps",
        str(maps),
        capsys=capsys,
    )
    assert code == 0 and [p["path"] for p in out["predictions"]] == [str(good[0]), str(good[1])]
    reasons = {Path(e["path"]).name: e["reason"] for e in out["errors"]}
    assert reasons["gone.png"] == "file not found"
    assert reasons["corrupt.png"].startswith("not a readable image") and reasons["fake.jpg"].startswith(
        "not a readable image"
    )
    assert sorted(p.name for p in maps.iterdir()) == sorted(p.name for p in good)  # nothing for the bad ones
    code, out = _predict(model, str(corrupt), "--label-maps", str(maps), capsys=capsys)
    assert (
        code == 1
        and out["error"]["code"] == "invalid_input"
        and "no image could be read" in out["error"]["message"]
    )
    # options of other tasks, and folders that are files
    code, out = _predict(model, str(good[0]), "--score-threshold", "0.5", capsys=capsys)
    assert code == 1 and "is for detection models; this one labels pixels" in out["error"]["message"]
    code, out = _predict(model, str(good[0]), "--label-maps", str(fake), capsys=capsys)
    assert (
        code == 1 and "--label-maps" in out["error"]["message"] and "not a folder" in out["error"]["message"]
    )
    code, out = _predict(
        model, str(good[0]), "--label-maps", str(maps), "--save-overlays", str(maps), capsys=capsys
    )
    assert code == 1 and "another folder" in out["error"]["message"]
    # an ONNX file of another task: the segmenter's own file relabelled as a classifier
    proto = onnx.load(model)
    for entry in proto.metadata_props:
        if entry.key == "task":
            entry.value = "classification"
    other = tmp_path / "classifier.onnx"
    other.write_bytes(proto.SerializeToString())
    code, out = _predict(str(other), str(good[0]), "--label-maps", str(maps), capsys=capsys)
    assert code == 1 and "--label-maps is for semantic segmentation models" in out["error"]["message"]
    from vistudio.errors import InvalidInput
    from vistudio.ml.inference.onnx_segmentation import OnnxSegmenter

    with pytest.raises(InvalidInput, match="is a classification model, not a semantic segmentation model"):
        OnnxSegmenter(other)


def test_predict_overlays_and_the_human_table(
    ws: Studio,
    onnx_export: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vistudio.ml.inference.label_images import read_label_png

    src = _images(ws, ["test"])[:2]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]  # two images, one stem
    for s, d in zip(src, same, strict=True):
        d.write_bytes(s.read_bytes())
    model = str(ws.home / onnx_export["path"])
    monkeypatch.chdir(tmp_path)  # the label maps' default folder: ./label-maps
    code, out = _predict(model, *map(str, same), "--save-overlays", str(tmp_path / "over"), capsys=capsys)
    assert code == 0 and out["label_maps"] == str(tmp_path / "label-maps")
    assert [Path(p["label_map"]).name for p in out["predictions"]] == ["x.png", "x-2.png"]
    for original, pred in zip(same, out["predictions"], strict=True):
        overlay = Path(pred["overlay"])
        assert overlay.parent == tmp_path / "over" and overlay.name == Path(pred["label_map"]).name
        a = np.asarray(Image.open(original).convert("RGB"), np.int16)
        b = np.asarray(Image.open(overlay).convert("RGB"), np.int16)
        drawn = np.abs(a - b).sum(axis=2) > 0
        foreground = read_label_png(pred["label_map"]) != 0
        assert a.shape == b.shape and foreground.any()
        assert drawn[foreground].mean() > 0.95 and not drawn[~foreground].any()  # tinted where not background
    assert main(["predict", model, str(same[0])]) == 0
    text = capsys.readouterr().out
    assert "classes (share of the pixels)" in text and "background" in text and "label maps" in text


# --- the stage, the CLI and the API ---------------------------------------------------------------------


def test_segment_onnx_in_a_run_writes_predicts_label_maps_once_per_content(
    ws: Studio, onnx_export: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.jobs.worker import Worker
    from vistudio.ml.inference.label_images import read_label_png
    from vistudio.pipelines.saver import safe_name
    from vistudio.services import runs

    model = str(ws.home / onnx_export["path"])

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        pipeline = {
            "name": "regions",
            "version": "1",
            "stages": [{"name": "segment_onnx", "params": {"model": model}}],
            "output_mode": "production",
        }
        job = runs.start_run(ws, pipeline=pipeline, project="regions", split="s1", subset="test")
        Worker(ws).run_one(job_id=job["id"])
        final = ws.queue.get(job["id"])
        assert final.status == "succeeded" and final.result is not None, final.error
        r = final.result["run"]
        return r, json.loads((ws.home / "production" / r["id"] / "audit.json").read_text())

    first, audit = run()
    files = _images(ws, ["test"])
    code, out = _predict(model, *map(str, files), "--label-maps", str(tmp_path / "maps"), capsys=capsys)
    assert code == 0 and first["failed"] == 0
    final = ws.home / "production" / first["id"] / "final"
    with ws.sessions() as s:
        from vistudio.db import Sample

        names = dict(s.query(Sample.path, Sample.name).all())
    blobs = set()
    for path, pred in zip(files, out["predictions"], strict=True):
        key = safe_name(Path(names[path.relative_to(ws.home).as_posix()]).with_suffix("").as_posix(), 80)
        saved = read_label_png(final / f"{key}_segment_onnx_label_map.png")
        assert np.array_equal(saved, read_label_png(pred["label_map"]))
        summary = json.loads((final / f"{key}_segment_onnx_segmentation.json").read_text())
        assert summary["class_shares"] == pytest.approx(pred["class_shares"])
        assert summary["classes_present"] == pred["classes_present"]
        (item,) = [i for i in audit["per_item"] if i["item"] == key]
        (blob,) = [o[5:] for o in item["outputs"] if o.startswith("blob:")]
        assert np.array_equal(read_label_png(ws.store.path("pipeline_artifact", blob)), saved)
        blobs.add(blob)
    # a second run of the same images stores no new label-map blob
    second, audit2 = run()
    again = {o[5:] for i in audit2["per_item"] for o in i["outputs"] if o.startswith("blob:")}
    assert again == blobs and second["id"] != first["id"]


def test_cli_export_json_and_table(
    ws: Studio, exp: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(ws.home)
    assert (
        main(["--workspace", home, "--json", "export", "regions", "lraspp", "--format", "torchscript"]) == 0
    )
    out = json.loads(capsys.readouterr().out)["export"]
    assert out["status"] == "succeeded" and out["format"] == "torchscript" and Path(out["path"]).is_absolute()
    assert out["validation"]["pixels_differing"] == 0 and out["validation"]["passed"]
    exports.delete_export(ws, out["id"])
    assert main(["--workspace", home, "export", "regions", "lraspp"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "pixels labelled differently (0.0000%)" in text and "16 identical label maps" in text
    assert (
        main(["--workspace", home, "--json", "export", "regions", "lraspp", "--score-threshold", "0.5"]) == 1
    )
    err = json.loads(capsys.readouterr().out)["error"]
    assert "score threshold is for models that find objects" in err["message"]


def test_api_export_and_the_export_page(ws: Studio, exp: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app

    with TestClient(create_app(ws)) as c:
        r = c.post("/api/v1/exports", json={"project": "regions", "experiment": "lraspp", "format": "onnx"})
        assert r.status_code == 202, r.text
        export_id = r.json()["export"]["id"]
        assert run_job(ws, r.json()["job"]["id"])["status"] == "succeeded"
        got = c.get(f"/api/v1/exports/{export_id}").json()["export"]
        v = got["validation"]
        assert got["status"] == "succeeded" and v["passed"] and v["pixels_differing"] == 0
        assert v["pixels"] > 0 and v["max_abs_diff"] < 1e-4
        download = c.get(f"/api/v1/exports/{export_id}/download")
        assert download.status_code == 200 and download.content == (ws.home / got["path"]).read_bytes()
        page = c.get(f"/projects/regions/export/{export_id}")
        assert page.status_code == 200 and 'data-metric="max_abs_diff"' in page.text
        r = c.post(
            "/api/v1/exports", json={"project": "regions", "experiment": "lraspp", "score_threshold": 0.5}
        )
        assert r.status_code == 400 and "score threshold" in r.json()["error"]["message"]
        assert c.delete(f"/api/v1/exports/{export_id}").status_code == 200
