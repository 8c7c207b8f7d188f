"""Evaluation service: the job, metrics equal to scikit-learn's, stored results and files, replace,
reset, resume, results queries and hostile requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support
from sqlalchemy import func, select

from eval_factories import digits_project, make_experiment, run_job, workspace_settings
from vistudio.db.training import EvalResult, Evaluation
from vistudio.errors import BadRequest, Conflict, InvalidInput, NotFound
from vistudio.services import evaluation
from vistudio.studio import Studio, open_studio


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A digits project (3 classes × 20, split 60/20/20) with a briefly trained resnet18 ``exp1``,
    an untrained ``raw`` (best only), a running ``busy`` and a checkpoint-less ``empty``."""
    root = tmp_path_factory.mktemp("evaluation")
    studio = open_studio(workspace_settings(root))
    digits_project(studio, root)
    make_experiment(studio, project="digits", name="exp1", train_steps=4)
    make_experiment(studio, project="digits", name="raw", kinds=("best",), seed=3)
    make_experiment(studio, project="digits", name="busy", status="running")
    make_experiment(studio, project="digits", name="empty", kinds=())
    yield studio
    studio.close()


def evaluate(studio: Studio, experiment: str, **kw: Any) -> dict[str, Any]:
    started = evaluation.start_evaluation(studio, project="digits", experiment=experiment, **kw)
    job = run_job(studio, started["job"]["id"])
    assert job["status"] == "succeeded", job
    return evaluation.get_evaluation(studio, project="digits", experiment=experiment)


def results_count(studio: Studio, eval_id: int) -> int:
    with studio.sessions() as s:
        return s.scalar(select(func.count()).where(EvalResult.evaluation_id == eval_id)) or 0


def test_metrics_equal_scikit_learn_on_the_stored_predictions(ws: Studio) -> None:
    ev = evaluate(ws, "exp1", subsets="test,val", batch_size=5)
    assert ev["status"] == "succeeded" and ev["subsets"] == ["val", "test"]
    assert ev["batch_size"] == 5 and ev["device"] == "auto"
    items = evaluation.list_results(ws, project="digits", experiment="exp1", limit=500)["items"]
    assert len(items) == ev["metrics"]["samples"] == 24  # 12 val + 12 test
    assert {r["subset"] for r in items} == {"val", "test"}
    y_true = [r["true_index"] for r in items]
    y_pred = [r["pred_index"] for r in items]
    m = ev["metrics"]
    labels = list(range(len(ev["classes"])))
    assert m["accuracy"] == np.mean(np.array(y_true) == np.array(y_pred))
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == (p, r, f)
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert [c["precision"] for c in m["per_class"]] == list(p)
    assert [c["recall"] for c in m["per_class"]] == list(r)
    assert [c["f1"] for c in m["per_class"]] == list(f)
    assert [c["support"] for c in m["per_class"]] == list(support)
    assert ev["confusion_matrix"] == sk_confusion(y_true, y_pred, labels=labels).tolist()
    # each result is internally consistent: top-1 is the prediction, probabilities sum to ≤ 1
    for r in items:
        assert r["top_k"][0]["label"] == r["predicted"] and r["top_k"][0]["probability"] == r["confidence"]
        assert r["correct"] == (r["true"] == r["predicted"])
        assert len(r["top_k"]) == 3 and sum(t["probability"] for t in r["top_k"]) == pytest.approx(1.0)


def test_readable_files_hold_the_same_results(ws: Studio) -> None:
    ev = evaluate(ws, "exp1")
    folder = ws.home / Path(ev["results_path"]).parent
    assert folder == ws.home / "exports" / "digits" / f"exp1-{ev['experiment_id']}" / "evaluation"
    table = pq.read_table(ws.home / ev["results_path"]).to_pylist()
    assert [r["sample_id"] for r in table] == sorted(r["sample_id"] for r in table)
    assert len(table) == ev["metrics"]["samples"] == 12
    assert {"sample_id", "path", "subset", "true", "predicted", "confidence", "correct", "top_k"} <= set(
        table[0]
    )
    assert all(Path(r["path"]).is_file() for r in table)
    csv_lines = (ws.home / ev["csv_path"]).read_text().splitlines()
    assert csv_lines[0] == "sample_id,name,path,subset,true,predicted,confidence,correct,top_k"
    assert len(csv_lines) == 13
    with Image.open(ws.home / ev["confusion_png_path"]) as im:
        assert im.format == "PNG" and im.width > 150 and im.height > 150
    api = {
        r["sample_id"]: r for r in evaluation.list_results(ws, project="digits", experiment="exp1")["items"]
    }
    for r in table:
        assert api[r["sample_id"]]["predicted"] == r["predicted"]
        assert api[r["sample_id"]]["confidence"] == r["confidence"]


def test_evaluating_again_replaces_the_previous_evaluation(ws: Studio) -> None:
    first = evaluate(ws, "raw", subsets="test")
    second = evaluate(ws, "raw", subsets="train", checkpoint="best")
    assert first["subsets"] == ["test"] and second["subsets"] == ["train"]
    assert second["created_at"] >= first["created_at"]
    # (SQLite may hand the new row the old id: count by the one row left)
    assert results_count(ws, second["id"]) == second["metrics"]["samples"] == 36
    with ws.sessions() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(Evaluation)
                .where(Evaluation.experiment_id == first["experiment_id"])
            )
            == 1
        )


def test_reset_deletes_rows_and_files_at_once(ws: Studio) -> None:
    ev = evaluate(ws, "raw")
    folder = ws.home / Path(ev["results_path"]).parent
    assert folder.is_dir() and results_count(ws, ev["id"]) == 12
    out = evaluation.reset_evaluation(ws, project="digits", experiment="raw")
    assert out["reset"] is True
    assert results_count(ws, ev["id"]) == 0 and not folder.exists()
    with pytest.raises(NotFound, match="not been evaluated"):
        evaluation.get_evaluation(ws, project="digits", experiment="raw")
    assert evaluation.find_evaluation(ws, project="digits", experiment="raw") is None
    with pytest.raises(NotFound):
        evaluation.reset_evaluation(ws, project="digits", experiment="raw")


def test_renaming_the_experiment_keeps_its_evaluation_files_reachable(ws: Studio) -> None:
    from vistudio.services import experiments

    ev = evaluate(ws, "raw")
    folder = ws.home / Path(ev["results_path"]).parent
    experiments.update_experiment(ws, project="digits", experiment="raw", name="renamed")
    try:
        (folder / "confusion_matrix.png").unlink()
        png = evaluation.confusion_png(ws, project="digits", experiment="renamed")
        assert png == folder / "confusion_matrix.png" and png.is_file()  # drawn again in place
        assert evaluation.get_evaluation(ws, project="digits", experiment="renamed")["results_path"] == ev[
            "results_path"
        ]
        evaluation.reset_evaluation(ws, project="digits", experiment="renamed")
        assert not folder.exists()
    finally:
        experiments.update_experiment(ws, project="digits", experiment="renamed", name="raw")


def test_reset_of_a_queued_evaluation_cancels_its_job(ws: Studio) -> None:
    started = evaluation.start_evaluation(ws, project="digits", experiment="raw")
    evaluation.reset_evaluation(ws, project="digits", experiment="raw")
    assert ws.queue.get(started["job"]["id"]).status == "cancelled"
    assert results_count(ws, started["evaluation"]["id"]) == 0


def test_a_rerun_resumes_and_leaves_one_row_per_image(ws: Studio) -> None:
    ev = evaluate(ws, "raw", subsets="train", batch_size=8)
    with ws.sessions.begin() as s:  # as if the worker died after a few batches
        ids = list(s.scalars(select(EvalResult.id).where(EvalResult.evaluation_id == ev["id"]).limit(20)))
        s.execute(EvalResult.__table__.delete().where(EvalResult.id.in_(ids)))
        row = s.get(Evaluation, ev["id"])
        assert row is not None
        row.status = "running"
    with ws.sessions.begin() as s:  # and its job went back to the queue (requeue takes failed jobs only)
        from vistudio.db import Job

        job = s.get(Job, ev["job_id"])
        assert job is not None
        job.status, job.attempts = "queued", 0
    job = run_job(ws, ev["job_id"])
    assert job["status"] == "succeeded"
    again = evaluation.get_evaluation(ws, project="digits", experiment="raw")
    assert again["id"] == ev["id"] and results_count(ws, ev["id"]) == 36
    assert again["confusion_matrix"] == ev["confusion_matrix"]


def test_results_filters_sort_and_pagination(ws: Studio) -> None:
    ev = evaluate(ws, "exp1", subsets="train,val,test")
    everything = evaluation.list_results(ws, project="digits", experiment="exp1", limit=500)
    assert everything["total"] == 60 == len(everything["items"])

    def q(**kw: Any) -> dict[str, Any]:
        return evaluation.list_results(ws, project="digits", experiment="exp1", limit=500, **kw)

    wrong = q(correct=False)
    right = q(correct=True)
    assert wrong["total"] + right["total"] == 60
    assert wrong["total"] == 60 - ev["metrics"]["correct"]
    assert all(not r["correct"] for r in wrong["items"])
    assert {r["subset"] for r in q(subset="val")["items"]} == {"val"} and q(subset="val")["total"] == 12
    for t in ev["classes"]:
        for p in ev["classes"]:
            cell = q(true=t, pred=p)
            assert cell["total"] == ev["confusion_matrix"][ev["classes"].index(t)][ev["classes"].index(p)]
            assert all(r["true"] == t and r["predicted"] == p for r in cell["items"])
    up = [r["confidence"] for r in q(sort="confidence")["items"]]
    down = [r["confidence"] for r in q(sort="-confidence")["items"]]
    assert up == sorted(up) and down == sorted(down, reverse=True) and len(up) == 60
    pages = [
        evaluation.list_results(
            ws, project="digits", experiment="exp1", sort="-confidence", offset=o, limit=25
        )
        for o in (0, 25, 50)
    ]
    assert [len(p["items"]) for p in pages] == [25, 25, 10] and all(p["total"] == 60 for p in pages)
    paged = [r["sample_id"] for p in pages for r in p["items"]]
    assert paged == [r["sample_id"] for r in q(sort="-confidence")["items"]]
    assert evaluation.list_results(ws, project="digits", experiment="exp1", offset=10_000)["items"] == []
    one = everything["items"][0]
    detail = evaluation.get_result(ws, project="digits", experiment="exp1", sample_id=one["sample_id"])
    assert detail == one


def test_hostile_requests_get_clear_errors(ws: Studio) -> None:
    start = evaluation.start_evaluation
    with pytest.raises(NotFound, match="experiment 'nope' not found"):
        start(ws, project="digits", experiment="nope")
    with pytest.raises(NotFound, match="project"):
        start(ws, project="no-such-project", experiment="exp1")
    with pytest.raises(NotFound):
        start(ws, project="digits", experiment="99999999999999999999999")
    with pytest.raises(NotFound):
        start(ws, project="digits", experiment="²")
    with pytest.raises(BadRequest, match="'best' or 'last'"):
        start(ws, project="digits", experiment="exp1", checkpoint="middle")
    with pytest.raises(Conflict, match="is running: wait until its training has finished"):
        start(ws, project="digits", experiment="busy")
    with pytest.raises(Conflict, match="has no checkpoint"):
        start(ws, project="digits", experiment="empty")
    with pytest.raises(Conflict, match="has no last checkpoint; it has: best"):
        start(ws, project="digits", experiment="raw", checkpoint="last")
    with pytest.raises(BadRequest, match="subsets"):
        start(ws, project="digits", experiment="exp1", subsets="test,holdout")
    with pytest.raises(BadRequest, match="batch size"):
        start(ws, project="digits", experiment="exp1", batch_size=10**9)
    with pytest.raises(BadRequest, match="device"):
        start(ws, project="digits", experiment="exp1", device="tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BadRequest, match="no CUDA GPU"):
            start(ws, project="digits", experiment="exp1", device="cuda")
    with pytest.raises(NotFound, match="not been evaluated"):
        evaluation.list_results(ws, project="digits", experiment="busy")
    evaluate(ws, "exp1")
    with pytest.raises(InvalidInput, match="unknown true class"):
        evaluation.list_results(ws, project="digits", experiment="exp1", true="7")
    with pytest.raises(BadRequest, match="limit"):
        evaluation.list_results(ws, project="digits", experiment="exp1", limit=10**6)
    with pytest.raises(BadRequest, match="sort"):
        evaluation.list_results(ws, project="digits", experiment="exp1", sort="name")
    with pytest.raises(NotFound):
        evaluation.get_result(ws, project="digits", experiment="exp1", sample_id=10**12)


def test_a_second_start_while_one_is_queued_is_a_conflict(ws: Studio) -> None:
    first = evaluation.start_evaluation(ws, project="digits", experiment="raw")
    with pytest.raises(Conflict, match="being evaluated now"):
        evaluation.start_evaluation(ws, project="digits", experiment="raw")
    assert run_job(ws, first["job"]["id"])["status"] == "succeeded"


def test_unreadable_images_are_skipped_and_counted(ws: Studio, tmp_path: Path) -> None:
    table = pq.read_table(ws.home / evaluate(ws, "raw")["results_path"]).to_pylist()
    victim = Path(table[0]["path"])
    saved = victim.read_bytes()
    victim.write_bytes(b"not a png any more")
    try:
        ev = evaluate(ws, "raw")
    finally:
        victim.write_bytes(saved)
    assert ev["metrics"]["samples"] == 11 and ev["metrics"]["skipped"] == 1
    assert ev["metrics"]["skipped_items"][0]["sample_id"] == table[0]["sample_id"]
    assert "not a readable image" in ev["metrics"]["skipped_items"][0]["reason"]


@pytest.mark.gpu
def test_cuda_evaluation_agrees_with_cpu(ws: Studio) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cpu = evaluate(ws, "exp1", device="cpu")
    cpu_items = evaluation.list_results(ws, project="digits", experiment="exp1", limit=500)["items"]
    gpu = evaluate(ws, "exp1", device="cuda")
    gpu_items = evaluation.list_results(ws, project="digits", experiment="exp1", limit=500)["items"]
    assert gpu["device"] == "cuda" and gpu["confusion_matrix"] == cpu["confusion_matrix"]
    for a, b in zip(cpu_items, gpu_items, strict=True):
        assert a["predicted"] == b["predicted"] and abs(a["confidence"] - b["confidence"]) < 1e-4
