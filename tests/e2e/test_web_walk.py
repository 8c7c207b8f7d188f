"""The training studio walk in headless Chromium: configure → start → see the curve move → stop →
evaluate → see the confusion matrix → export → download. Drives the Train page through the element
ids its template documents (train.html), then the Evaluate and Export pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready

from eval_factories import digits_project
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_configure_train_stop_evaluate_export_download(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    digits_project(studio, tmp_path, name="walk", per_class=16)

    # configure and start
    page.goto(f"{base}/projects/walk/train")
    alpine_ready(page)
    form = page.locator("#train-form")
    expect(form).to_be_visible()
    page.locator("#tf-name").fill("walk-mnv3")
    page.locator("#tf-model").select_option("mobilenet_v3_small")
    page.locator("#tf-epochs").fill("40")
    page.locator("#tf-batch-size").fill("8")
    page.locator("#tf-image-size").fill("32")
    page.locator("#tf-pretrained").uncheck()
    page.locator("#start-training").click()
    detail = page.locator("section#experiment-detail")
    expect(detail).to_have_attribute("data-experiment", "walk-mnv3", timeout=30_000)

    # the curve moves while it trains
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=60_000)
    page.wait_for_function(
        "() => parseInt(document.querySelector('canvas#loss-chart')?.dataset.points || '0') >= 2",
        timeout=120_000,
    )
    first = int(page.locator("canvas#loss-chart").get_attribute("data-points") or "0")
    page.wait_for_function(
        f"() => parseInt(document.querySelector('canvas#loss-chart').dataset.points || '0') > {first}",
        timeout=120_000,
    )
    shot(page, "walk-01-training")

    # stop: the last checkpoint is kept
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=120_000)
    expect(page.locator("#train-checkpoints li[data-kind=last]")).to_be_visible(timeout=30_000)
    shot(page, "walk-02-stopped")

    # evaluate it: the confusion matrix appears
    page.locator("a#evaluate-experiment").click()
    expect(page).to_have_url(f"{base}/projects/walk/evaluate?experiment=walk-mnv3")
    alpine_ready(page)
    page.locator("#ef-checkpoint").select_option("last")
    page.locator("#ef-subset-val").check()
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(page.locator("#confusion tbody tr")).to_have_count(3)
    cells = page.locator("#confusion td").all_inner_texts()
    assert sum(int(c) for c in cells if c.strip()) == int(page.locator("#grid-total").inner_text())
    expect(page.locator("a.eval-exp[aria-current=page] .eval-exp-acc")).to_contain_text("accuracy")
    shot(page, "walk-03-evaluated")

    # export to ONNX, validated, and download it
    page.locator("nav.tabs").get_by_role("link", name="Export").click()
    alpine_ready(page)
    expect(page.locator("#xf-experiment")).to_have_value("walk-mnv3")  # the only one, preselected
    expect(page.locator("#xf-checkpoint option[value=last]")).to_have_count(1)
    page.locator("#xf-checkpoint").select_option("last")
    page.locator("#export-start").click()
    expect(page.locator("#export-status")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(page.locator("#export-validation .stat[data-metric=top1_agreement] .stat-n")).to_have_text("100%")
    shot(page, "walk-04-exported")
    with page.expect_download() as info:
        page.locator("#export-download").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert re.fullmatch(r"walk-mnv3-last-opset17-\d+\.onnx", saved.name) and saved.stat().st_size > 100_000

    # the downloaded file classifies on its own, like the evaluation did
    from vistudio.ml.inference.onnx import OnnxClassifier
    from vistudio.services import evaluation

    results = evaluation.list_results(studio, project="walk", experiment="walk-mnv3", limit=5)["items"]
    with studio.sessions() as s:
        from vistudio.db import Sample

        paths = [studio.home / s.get(Sample, r["sample_id"]).path for r in results]  # type: ignore[union-attr]
    preds, errors = OnnxClassifier(saved).predict_files(paths)
    assert errors == [] and [p.label for p in preds] == [r["predicted"] for r in results]
    assert all(abs(p.confidence - r["confidence"]) < 1e-4 for p, r in zip(preds, results, strict=True))
