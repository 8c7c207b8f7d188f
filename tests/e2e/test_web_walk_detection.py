"""The box-task walk in headless Chromium, for detection and for instance segmentation: create the
project → upload a COCO zip → objects drawn on the grid and in the detail → split → train from the
form → the curve moves → stop → resume → evaluate → TP/FP/FN overlays follow the confidence
slider, PR curves drawn → export with the parity check → download, and the downloaded file detects
on its own."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready

from detection_factories import write_coco
from factories import zip_folder
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODELS = {"detection": "fasterrcnn_resnet18_fpn64", "instance_segmentation": "maskrcnn_resnet18_fpn64"}


@pytest.mark.parametrize("task", ["detection", "instance_segmentation"])
def test_box_task_walk(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path, task: str
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    name = "walk-" + task[:3]
    masks = task == "instance_segmentation"
    archive = zip_folder(
        write_coco(tmp_path / "coco", 30, size=96, seed=3, masks=masks), tmp_path / "coco.zip"
    )

    # create the project from the modal, upload the COCO zip
    page.goto(base + "/")
    alpine_ready(page)
    page.get_by_test_id("new-project").click()
    page.locator("#new-name").fill(name)
    page.get_by_label("Task").select_option(task)
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(f"{base}/projects/{name}")
    alpine_ready(page)
    page.get_by_test_id("toggle-import").click()
    page.get_by_label("Zip file").set_input_files(str(archive))
    page.get_by_role("button", name="Upload and import").click()
    expect(page.get_by_test_id("import-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.get_by_test_id("report-imported")).to_have_text("30")
    page.get_by_test_id("toggle-import").click()

    # the objects are drawn on the tiles and in the detail
    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(30)
    page.wait_for_function("() => [...document.querySelectorAll('.tile canvas')].some(c => c.dataset.drawn)")
    shot(page, f"walk-{task}-01-grid", full_page=False)
    tiles.first.click()
    expect(page.get_by_test_id("sample-detail")).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=sample-detail] canvas')].some(c => +c.dataset.drawn > 0)"
    )
    shot(page, f"walk-{task}-02-detail", full_page=False)
    page.keyboard.press("Escape")

    # split
    page.get_by_role("link", name="Split", exact=True).click()
    alpine_ready(page)
    page.get_by_test_id("save-split").click()
    expect(page.get_by_test_id("split-saved")).to_be_visible()

    # train from the form: the curve moves, then stop
    page.get_by_role("link", name="Train", exact=True).click()
    alpine_ready(page)
    page.locator("#tf-name").fill("w")
    page.locator("#tf-model").select_option(MODELS[task])
    page.locator("#tf-epochs").fill("200")
    page.locator("#tf-batch-size").fill("4")
    page.locator("#tf-image-size").fill("96")
    page.locator("#tf-pretrained").select_option("none")
    page.locator("#tf-advanced").evaluate("d => { d.open = true }")
    page.locator("#tf-early-stopping").uncheck()  # it is stopped by hand below
    page.locator("#start-training").click()
    expect(page.locator("section#experiment-detail")).to_have_attribute(
        "data-experiment", "w", timeout=30_000
    )
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=120_000)
    page.wait_for_function(
        "() => +(document.querySelector('canvas#loss-chart')?.dataset.points || 0) >= 2", timeout=180_000
    )
    first = int(page.locator("canvas#loss-chart").get_attribute("data-points") or "0")
    page.wait_for_function(
        f"() => +document.querySelector('canvas#loss-chart').dataset.points > {first}", timeout=180_000
    )
    shot(page, f"walk-{task}-03-training")
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=180_000)

    # resume: it runs again from where it stopped, the curve goes on; stop it again
    points = int(page.locator("canvas#loss-chart").get_attribute("data-points") or "0")
    expect(page.locator("#resume-training")).to_be_visible(timeout=30_000)
    page.locator("#resume-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=120_000)
    page.wait_for_function(
        f"() => +document.querySelector('canvas#loss-chart').dataset.points > {points}", timeout=180_000
    )
    expect(page.locator("#stop-training")).to_be_visible(timeout=60_000)
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=180_000)
    shot(page, f"walk-{task}-04-resumed-stopped")

    # evaluate: statistics, overlays that follow the slider, PR curves
    page.locator("a#evaluate-experiment").click()
    alpine_ready(page)
    page.locator("#ef-checkpoint").select_option("last")
    page.locator("#ef-subset-val").check()
    page.locator("#ef-batch-size").fill("4")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=180_000)
    expect(page.locator("#eval-metrics .stat[data-metric=map50]")).to_be_visible()
    if masks:
        expect(page.locator("#eval-metrics .stat[data-metric=mask_map50]")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#pr-chart').dataset.ready === '1'")
    canvas = page.locator(".eval-box-tile canvas").first
    canvas.scroll_into_view_if_needed()
    page.locator("#eval-conf").fill("0.00")
    expect(canvas).to_have_attribute("data-drawn", re.compile(r"\d+"))
    everything = int(canvas.get_attribute("data-drawn") or "0")
    page.locator("#eval-conf").fill("1.00")  # only the missed objects are left
    page.wait_for_function(
        f"() => +document.querySelector('.eval-box-tile canvas').dataset.drawn <= {everything}"
    )
    page.locator("#eval-conf-best").click()
    shot(page, f"walk-{task}-05-evaluated")

    # export with the parity check, and download
    page.locator("nav.tabs").get_by_role("link", name="Export").click()
    alpine_ready(page)
    page.locator("#xf-checkpoint").select_option("last")
    page.locator("#export-start").click()
    expect(page.locator("#export-status")).to_have_attribute("data-status", "succeeded", timeout=300_000)
    expect(page.locator("#export-validation .stat[data-metric=matched]")).to_be_visible()
    shot(page, f"walk-{task}-06-exported")
    with page.expect_download() as info:
        page.locator("#export-download").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.suffix == ".onnx" and saved.stat().st_size > 100_000

    # the downloaded file detects on its own, as the evaluation did on the same image
    from vistudio.db import Sample
    from vistudio.ml.inference.onnx import OnnxDetector
    from vistudio.services import evaluation

    detector = OnnxDetector(saved)
    assert detector.classes == ["ellipse", "rectangle", "triangle"] and detector.masks == masks
    result = evaluation.list_results(studio, project=name, experiment="w", limit=1)["items"][0]
    with studio.sessions() as s:
        sample = s.get(Sample, result["sample_id"])
        assert sample is not None
        path = studio.home / sample.path
    (prediction,), errors = detector.predict_files([path], score_threshold=0.0)
    assert errors == []
    found = prediction.detections
    # every prediction the evaluation stored (clear of the threshold) is found again: same class,
    # same box, same score
    for p in result["predictions"]:
        if p["score"] < 0.1:
            continue
        same = [
            k
            for k in range(len(found))
            if int(found.labels[k]) == p["class_index"] and abs(float(found.scores[k]) - p["score"]) < 1e-3
        ]
        assert any(
            max(abs(a - b) for a, b in zip(found.boxes[k].tolist(), p["box"], strict=True)) < 0.5
            for k in same
        ), p
