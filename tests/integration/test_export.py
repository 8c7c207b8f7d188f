"""Exports of a trained resnet18: ONNX and TorchScript parity with PyTorch on real images, embedded
metadata, files and blobs, `vistudio predict` giving the evaluation's predictions, and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from eval_factories import digits_project, make_experiment, run_job, workspace_settings
from vistudio.cli.main import main
from vistudio.db import Artifact
from vistudio.errors import BadRequest, Conflict, NotFound
from vistudio.services import evaluation, exports
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("export")
    studio = open_studio(workspace_settings(root))
    digits_project(studio, root)
    make_experiment(studio, project="digits", name="exp1", train_steps=4)
    make_experiment(studio, project="digits", name="busy", status="running")
    make_experiment(studio, project="digits", name="empty", kinds=())
    yield studio
    studio.close()


def export(studio: Studio, **kw: Any) -> dict[str, Any]:
    started = exports.start_export(studio, project="digits", experiment="exp1", **kw)
    assert started["export"]["status"] == "queued"
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return exports.get_export(studio, started["export"]["id"])


def blob_refs(studio: Studio, sha: str) -> int | None:
    with studio.sessions() as s:
        row = s.scalar(select(Artifact).where(Artifact.kind == "export", Artifact.sha256 == sha))
        return None if row is None else row.ref_count


def test_onnx_export_matches_pytorch_and_carries_its_metadata(ws: Studio) -> None:
    import onnx
    import onnxruntime as ort

    out = export(ws, format="onnx", checkpoint="best", opset=17)
    v = out["validation"]
    assert v["source"] == "split images" and v["images"] == 60  # 12 test + 12 val + 36 train ≤ 64
    assert v["max_abs_diff"] < 1e-4 and v["max_abs_diff_probs"] < 1e-4 and v["top1_agreement"] == 1.0
    path = ws.home / out["path"]
    assert out["filename"] == f"exp1-best-opset17-{out['id']}.onnx" and path.is_file()
    assert out["path"] == f"exports/digits/exp1-{out['experiment_id']}/{out['filename']}"
    assert out["size"] == path.stat().st_size
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["vistudio"] == "vistudio-model/1" and props["model"] == "resnet18"
    assert json.loads(props["class_names"]) == ["0", "1", "2"] and props["input_size"] == "32,32"
    pre = json.loads(props["preprocess"])
    assert pre["input_size"] == [32, 32] and len(pre["mean"]) == 3 and props["experiment"] == "exp1"
    side = json.loads(path.with_suffix(".json").read_text())
    assert (
        side["validation"] == v and side["sha256"] == out["sha256"] and side["metadata"]["preprocess"] == pre
    )
    # the batch axis is dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        logits = session.run(None, {"input": np.zeros((n, 3, 32, 32), np.float32)})[0]
        assert logits.shape == (n, 3)
    # kept as a blob too, referenced once
    blob = ws.store.path("export", out["sha256"], "onnx")
    assert blob.read_bytes() == path.read_bytes() and blob_refs(ws, out["sha256"]) == 1
    listed = exports.list_exports(ws, project="digits", experiment="exp1")
    assert out["id"] in [e["id"] for e in listed["items"]]


def test_torchscript_export_matches_eager_pytorch(ws: Studio) -> None:
    from vistudio.ml.export.models import load_torchscript

    out = export(ws, format="torchscript", checkpoint="last")
    v = out["validation"]
    assert v["max_abs_diff"] < 1e-4 and v["top1_agreement"] == 1.0 and v["images"] == 60
    assert out["filename"] == f"exp1-last-torchscript-{out['id']}.pt"
    _, props = load_torchscript(ws.home / out["path"])
    assert props["model"] == "resnet18" and json.loads(props["class_names"]) == ["0", "1", "2"]
    assert json.loads((ws.home / out["metadata_path"]).read_text())["validation"] == v


def test_predict_on_the_export_matches_the_evaluation(ws: Studio, capsys: pytest.CaptureFixture[str]) -> None:
    started = evaluation.start_evaluation(ws, project="digits", experiment="exp1", subsets="test,val")
    assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
    ev = evaluation.get_evaluation(ws, project="digits", experiment="exp1")
    table = pq.read_table(ws.home / ev["results_path"]).to_pylist()
    onnx_file = ws.home / export(ws, format="onnx")["path"]
    code = main(["--json", "predict", str(onnx_file), *(r["path"] for r in table), "--top-k", "3"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["errors"] == [] and len(out["predictions"]) == len(table) == 24
    for row, pred in zip(table, out["predictions"], strict=True):
        assert pred["path"] == row["path"]
        assert pred["label"] == row["predicted"]
        assert abs(pred["confidence"] - row["confidence"]) < 1e-4
        assert [t["label"] for t in pred["top_k"]] == [t["label"] for t in row["top_k"]]
        assert all(
            abs(a["probability"] - b["probability"]) < 1e-4
            for a, b in zip(pred["top_k"], row["top_k"], strict=True)
        )


def test_predict_cli_reports_bad_files_and_bad_models(
    ws: Studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx_file = ws.home / exports.list_exports(ws, project="digits")["items"][-1]["path"]
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    src = next((ws.home / "media").rglob("*.png"))
    (folder / "sub" / "one.png").write_bytes(src.read_bytes())
    (folder / "fake.jpg").write_text("no image here")
    (folder / "readme.txt").write_text("ignored: not an image name")

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        code = main(["--json", "predict", *args])
        lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
        assert len(lines) == 1
        return code, json.loads(lines[0])

    code, out = run(str(onnx_file), str(folder))
    assert code == 0 and [Path(p["path"]).name for p in out["predictions"]] == ["one.png"]
    assert [Path(e["path"]).name for e in out["errors"]] == ["fake.jpg"]
    assert out["model"]["classes"] == ["0", "1", "2"]
    code, out = run(str(onnx_file), str(folder / "fake.jpg"))
    assert (
        code == 1
        and out["error"]["code"] == "invalid_input"
        and "no image could be classified" in out["error"]["message"]
    )
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(onnx_file.read_bytes()[:5000])
    code, out = run(str(corrupt), str(folder))
    assert code == 1 and "not a loadable ONNX model" in out["error"]["message"]
    import onnx

    bare = onnx.load(str(onnx_file))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    code, out = run(str(tmp_path / "bare.onnx"), str(folder))
    assert code == 1 and "has no vistudio metadata" in out["error"]["message"]
    code, out = run(str(tmp_path / "missing.onnx"), str(folder))
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = run(str(onnx_file), str(folder), "--top-k", "0")
    assert code == 2 and out["error"]["code"] == "usage"


def test_names_stay_unique_and_delete_removes_files_and_blob(ws: Studio) -> None:
    first = export(ws, format="onnx", opset=13)
    second = export(ws, format="onnx", opset=13)
    assert first["filename"] == f"exp1-best-opset13-{first['id']}.onnx"
    assert second["filename"] == f"exp1-best-opset13-{second['id']}.onnx"
    assert (ws.home / first["path"]).is_file() and (ws.home / second["path"]).is_file()
    assert first["validation"]["top1_agreement"] == 1.0
    out = exports.delete_export(ws, first["id"])
    assert out["deleted"] == first["id"]
    assert not (ws.home / first["path"]).exists() and not (ws.home / first["metadata_path"]).exists()
    if first["sha256"] != second["sha256"]:
        assert blob_refs(ws, first["sha256"]) is None
        assert not ws.store.path("export", first["sha256"], "onnx").exists()
    assert (ws.home / second["path"]).is_file()
    with pytest.raises(NotFound):
        exports.get_export(ws, first["id"])
    with pytest.raises(NotFound):
        exports.delete_export(ws, first["id"])


def test_a_failed_export_leaves_no_file(ws: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    import vistudio.ml.export.models as export_models

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise BadRequest("the comparison broke")  # a permanent failure: no retry

    monkeypatch.setattr(export_models, "parity", broken)  # after the file is written
    started = exports.start_export(ws, project="digits", experiment="exp1", format="torchscript")
    job = run_job(ws, started["job"]["id"])
    assert job["status"] == "failed"
    out = exports.get_export(ws, started["export"]["id"])
    assert out["status"] == "failed" and "comparison broke" in out["error"]
    assert not (ws.home / out["path"]).exists() and not (ws.home / out["metadata_path"]).exists()
    with pytest.raises(Conflict, match="failed"):
        exports.export_file(ws, out["id"])
    exports.delete_export(ws, out["id"])


def test_experiments_whose_names_make_the_same_folder_name_stay_apart(ws: Studio) -> None:
    """Both names make the safe folder name "x": the experiment's id keeps their files apart, and
    a download is the validated file even if the readable copy was changed."""
    outs = []
    for name in ("日本", "中文"):
        make_experiment(ws, project="digits", name=name, kinds=("last",))
        started = exports.start_export(
            ws, project="digits", experiment=name, format="torchscript", checkpoint="last"
        )
        assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
        outs.append(exports.get_export(ws, started["export"]["id"]))
    assert outs[0]["path"] != outs[1]["path"]
    assert Path(outs[0]["path"]).parent.name.startswith("x-") and all(
        (ws.home / o["path"]).is_file() for o in outs
    )
    (ws.home / outs[0]["path"]).write_bytes(b"changed by hand")
    served, name = exports.export_file(ws, outs[0]["id"])
    assert name == outs[0]["filename"] and served.read_bytes() != b"changed by hand"


def test_hostile_export_requests(ws: Studio) -> None:
    start = exports.start_export
    with pytest.raises(Conflict, match="is running"):
        start(ws, project="digits", experiment="busy")
    with pytest.raises(Conflict, match="has no checkpoint"):
        start(ws, project="digits", experiment="empty")
    with pytest.raises(NotFound):
        start(ws, project="digits", experiment="ghost")
    with pytest.raises(BadRequest, match="format"):
        start(ws, project="digits", experiment="exp1", format="tflite")
    with pytest.raises(BadRequest, match="opset"):
        start(ws, project="digits", experiment="exp1", opset=99)
    with pytest.raises(BadRequest, match="'best' or 'last'"):
        start(ws, project="digits", experiment="exp1", checkpoint="worst")
    # a score threshold is for detectors; a classifier has none
    with pytest.raises(BadRequest, match="score threshold is for models that find objects"):
        start(ws, project="digits", experiment="exp1", score_threshold=0.5)
    assert exports.default_score_threshold(ws, project="digits", experiment="exp1") is None
    queued = start(ws, project="digits", experiment="exp1")
    assert "score_threshold" not in queued["export"]["options"]
    with pytest.raises(Conflict, match="no file to download yet"):
        exports.export_file(ws, queued["export"]["id"])
    exports.delete_export(ws, queued["export"]["id"])  # cancels its job
    assert ws.queue.get(queued["job"]["id"]).status == "cancelled"


def test_deleting_the_experiment_removes_its_exports_and_evaluation_files(ws: Studio) -> None:
    from vistudio.services import experiments

    out = export(ws, format="onnx")
    started = evaluation.start_evaluation(ws, project="digits", experiment="exp1")
    assert run_job(ws, started["job"]["id"])["status"] == "succeeded"
    folder = (ws.home / out["path"]).parent
    assert (folder / "evaluation" / "results.csv").is_file() and (ws.home / out["path"]).is_file()
    experiments.delete_experiment(ws, project="digits", experiment="exp1")
    assert not (folder / "evaluation").exists()
    assert not any(folder.glob("*.onnx")) and not any(folder.glob("*.pt")) and not any(folder.glob("*.json"))
    assert blob_refs(ws, out["sha256"]) is None
    assert not ws.store.path("export", out["sha256"], "onnx").exists()
    assert all(x["experiment"] != "exp1" for x in exports.list_exports(ws, project="digits")["items"])
