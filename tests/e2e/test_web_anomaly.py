"""The Evaluate page of an anomaly detection project in headless Chromium: a tiny model trained on
generated parts (gradients; the anomalous ones with a scratch or a blob, one defect type with a long
name), evaluated; the ROC curve and the score histogram drawn, the threshold and AUROC those of the
stored evaluation, the grid highest score first, its filters and sorts, the detail with the score
and the decision; then an evaluation whose images hold no anomaly (its empty ROC curve), and the
model's export with its check against PyTorch (scores and decisions, not a classifier's logits).
Screenshots go to screenshots/anomaly-*.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_factories import alpine_ready, htmx_settled

from anomaly_factories import defect_image
from factories import run_import
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.services import edits, evaluation, experiments, projects, samples, splits
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT = "housings"
LONG_DEFECT = "scratch-along-the-left-edge-of-the-brushed-aluminium-housing-near-the-connector"
# resnet18 from scratch on 32 px parts, a few optimiser steps: seconds on a CPU
TINY = {
    "model": "resnet18",
    "pretrained": False,
    "image_size": 32,
    "epochs": 3,
    "batch_size": 8,
    "lr": 0.003,
    "seed": 0,
    "device": "cpu",
    "num_workers": 0,
    "split": "s1",
}


def _run(studio: Studio, job_id: int) -> dict[str, Any]:
    """Run a job here, or wait for it when the live server's worker claimed it first."""
    return job_dict(Worker(studio).run_to_end(job_id))


def _parts(studio: Studio, root: Path) -> None:
    """40 normal parts, 10 with a long-named scratch and 10 with a blob, split 60/20/20."""
    source = root / f"{PROJECT}-src"
    n = 0
    for folder, kind, count in (("good", "good", 40), (LONG_DEFECT, "scratch", 10), ("blob", "blob", 10)):
        for i in range(count):
            defect_image(source / folder / f"{kind}-{i:03d}.png", kind=kind, seed=n)
            n += 1
    projects.create_project(studio, name=PROJECT, task="anomaly_detection")
    job = run_import(studio, PROJECT, source, fmt="folder")
    if job["status"] != "succeeded":  # the live server's worker took it: wait for its end
        job = _run(studio, job["id"])
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=PROJECT, name="s1", ratios=(0.6, 0.2, 0.2), seed=3)


def _evaluate(studio: Studio, **kw: Any) -> dict[str, Any]:
    started = evaluation.start_evaluation(studio, project=PROJECT, experiment="tiny", device="cpu", **kw)
    assert _run(studio, started["job"]["id"])["status"] == "succeeded"
    return evaluation.get_evaluation(studio, project=PROJECT, experiment="tiny")


def _api(base: str, path: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{base}/api/v1{path}", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _images_loaded(page: Any, selector: str) -> None:
    page.wait_for_function(
        "(sel) => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector,
    )


def _scores(page: Any) -> list[float]:
    return [float(s) for s in page.locator(".eval-tile").evaluate_all("els => els.map(e => e.dataset.score)")]


def test_anomaly_evaluation_page(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    page.set_default_timeout(60_000)  # the server shares 2 cores with the training beside it
    _parts(studio, root)
    started = experiments.start_experiment(studio, project=PROJECT, config=TINY, name="tiny")
    assert _run(studio, started["job"]["id"])["status"] == "succeeded"
    ev = _evaluate(studio, subsets=["val", "test"])
    m = ev["metrics"]
    assert m["anomalous"] > 0 and m["normal"] > 0 and m["auroc"] is not None

    page.goto(f"{base}/projects/{PROJECT}/evaluate?experiment=tiny")
    alpine_ready(page)
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded")
    # the figures are the stored evaluation's
    expect(page.locator("#eval-metrics .stat[data-metric=auroc] .stat-n")).to_have_text(f"{m['auroc']:.3f}")
    expect(page.locator("#eval-metrics .stat[data-metric=threshold] .stat-n")).to_have_text(
        f"{m['threshold']:.3f}"
    )
    expect(page.locator("a.eval-exp[aria-current=page]")).to_contain_text(f"AUROC {m['auroc']:.3f}")
    # the ROC curve: one point per ROC point, and the threshold's dot
    points = page.locator("#roc-chart polyline").get_attribute("points")
    assert points is not None and len(points.split()) == len(m["roc"]["fpr"]) >= 2
    expect(page.locator("#roc-chart circle")).to_have_count(1)
    # the histogram: one bar per non-empty bin of each kind, their counts summing to the images
    hist = m["histogram"]
    bars = [c for c in (*hist["normal"], *hist["anomalous"]) if c]
    expect(page.locator("#score-histogram rect[data-kind]")).to_have_count(len(bars))
    drawn = page.locator("#score-histogram rect[data-kind]").evaluate_all(
        "els => els.map(e => [e.dataset.kind, +e.dataset.count])"
    )
    assert sum(c for k, c in drawn if k == "normal") == m["normal"]
    assert sum(c for k, c in drawn if k == "anomalous") == m["anomalous"]
    expect(page.locator("#per-defect tbody tr")).to_have_count(2)
    expect(page.locator(f"#per-defect th[title='{LONG_DEFECT}']")).to_have_count(1)

    # the grid: every image, the highest anomaly score first, by default
    expect(page.locator("#grid-total")).to_have_text(str(m["samples"]))
    expect(page.locator("#gf-sort")).to_have_value("")
    expect(page.locator("#gf-sort option:checked")).to_have_text("highest score")
    scores = _scores(page)
    assert len(scores) == m["samples"] and scores == sorted(scores, reverse=True)
    top = _api(base, f"/evaluations/{PROJECT}/tiny/results", sort="-score", limit=1)["items"][0]
    expect(page.locator(".eval-tile").first).to_have_attribute("data-sample-id", str(top["sample_id"]))
    assert scores[0] == pytest.approx(max(r["score"] for r in _all_results(base)))
    _images_loaded(page, ".eval-tile img")
    shot(page, "anomaly-1-evaluated")
    # a phone's width: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.locator("#per-defect").scroll_into_view_if_needed()
    shot(page, "anomaly-1-narrow", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})

    # filters narrow the grid: anomalous images only, then the wrong results only
    htmx_settled(page)
    page.locator("#gf-true").select_option("anomalous")
    expect(page.locator("#grid-total")).to_have_text(str(m["anomalous"]))
    expect(page.locator(".eval-tile")).to_have_count(m["anomalous"])
    scores = _scores(page)
    assert scores == sorted(scores, reverse=True)
    htmx_settled(page)
    page.locator("#gf-true").select_option(LONG_DEFECT)
    long_count = m["per_defect"][LONG_DEFECT]["images"]
    expect(page.locator("#grid-total")).to_have_text(str(long_count))
    htmx_settled(page)
    page.locator("#gf-true").select_option("")
    page.locator("#gf-correct").select_option("no")
    wrong = m["fp"] + m["fn"]
    expect(page.locator("#grid-total")).to_have_text(str(wrong))
    expect(page.locator(".eval-tile[data-correct=true]")).to_have_count(0)
    htmx_settled(page)
    page.locator("#gf-correct").select_option("")
    page.locator("#gf-pred").select_option("anomalous")
    expect(page.locator("#grid-total")).to_have_text(str(m["tp"] + m["fp"]))
    expect(page.locator(".eval-tile[data-decision=normal]")).to_have_count(0)
    # the other sorts stay selectable
    htmx_settled(page)
    page.locator("#gf-pred").select_option("")
    page.locator("#gf-sort").select_option("score")
    expect(page.locator("#grid-total")).to_have_text(str(m["samples"]))
    expect(page.locator("#gf-sort")).to_have_value("score")
    page.wait_for_url("**sort=score**")
    scores = _scores(page)
    assert scores == sorted(scores)
    htmx_settled(page)
    page.locator("#gf-sort").select_option("image")
    page.wait_for_url("**sort=image**")
    ids = [int(i) for i in page.locator(".eval-tile").evaluate_all("els => els.map(e => e.dataset.sampleId)")]
    assert ids == sorted(ids)
    htmx_settled(page)
    page.locator("#gf-sort").select_option("")
    expect(page.locator(".eval-tile").first).to_have_attribute("data-sample-id", str(top["sample_id"]))

    # the first tile's detail: its score and the decision at the threshold
    htmx_settled(page)
    page.locator(".eval-tile").first.click()
    detail = page.locator("#eval-detail [data-testid=eval-detail]")
    expect(detail).to_have_attribute("data-sample-id", str(top["sample_id"]))
    expect(detail.locator("[data-testid=anomaly-score]")).to_have_text(f"{top['score']:.4f}")
    decision = "anomalous" if top["score"] >= m["threshold"] else "good"
    assert top["predicted"] == decision
    expect(detail.locator("tr", has_text="Decision")).to_contain_text(decision)
    expect(detail.locator("[data-testid=anomaly-threshold]")).to_contain_text(f"{m['threshold']:.4f}")
    _images_loaded(page, "#eval-detail img")
    shot(page, "anomaly-2-detail", full_page=False)
    page.keyboard.press("Escape")

    # an evaluation whose images hold no anomaly: the test subset's defects relabelled as normal
    test_ids = [
        s["id"]
        for s in samples.list_samples(studio, project=PROJECT, split="s1", subset="test", limit=500)["items"]
        if s["labels"] != ["good"]
    ]
    assert test_ids
    edits.edit_labels(studio, project=PROJECT, selection={"sample_ids": test_ids}, set_to=["good"])
    none = _evaluate(studio, subsets=["test"], labels="current")["metrics"]
    assert none["anomalous"] == 0 and none["auroc"] is None
    page.goto(f"{base}/projects/{PROJECT}/evaluate?experiment=tiny")
    alpine_ready(page)
    expect(page.locator("#eval-metrics .stat[data-metric=auroc] .stat-n")).to_have_text("—")
    expect(page.locator("#roc-empty")).to_be_visible()
    expect(page.locator("#roc-chart")).to_have_count(0)
    expect(page.locator("#score-histogram rect[data-kind=anomalous]")).to_have_count(0)
    expect(page.locator("#grid-total")).to_have_text(str(none["samples"]))
    _images_loaded(page, ".eval-tile img")
    shot(page, "anomaly-3-no-anomalies")

    # the Export page: the file checked against PyTorch as an anomaly model (scores and decisions)
    page.goto(f"{base}/projects/{PROJECT}/export")
    alpine_ready(page)
    page.locator("#xf-format").select_option("onnx")
    page.locator("#export-start").click()
    expect(page.locator("#export-result .export-done")).to_be_visible(timeout=120_000)
    export = _api(base, "/exports", project=PROJECT)["items"][0]
    v = export["validation"]
    assert export["status"] == "succeeded" and v["passed"], export
    checks = page.locator("#export-validation .stat")
    expect(checks).to_have_count(2)
    expect(page.locator("#export-validation .stat[data-metric=max_abs_diff]")).to_contain_text(
        "max |Δ score|"
    )
    expect(page.locator("#export-validation .stat[data-metric=max_abs_diff] .stat-n")).to_have_text(
        f"{v['max_abs_diff']:.1e}"
    )
    expect(page.locator("#export-validation .stat[data-metric=decision_agreement] .stat-n")).to_have_text(
        f"{100 * v['decision_agreement']:.1f}%"
    )
    expect(page.locator("#export-result .alert-ok")).to_contain_text(f"on {v['images']} split images")
    row = page.locator(f"#export-list tr[data-export-id='{export['id']}'] td.num").first
    expect(row).to_contain_text(f"{100 * v['decision_agreement']:.0f}%")
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "anomaly-4-export")


def _all_results(base: str) -> list[dict[str, Any]]:
    return list(_api(base, f"/evaluations/{PROJECT}/tiny/results", limit=500)["items"])
