"""The Evaluate page of an oriented detection project in headless Chromium: an evaluation started
from the form; the DOTA metrics as the evaluation stored them; the confusion matrix; per-class AP50
(11-point and area); the precision–recall and F1 curves; tiles drawing each image's rotated
predictions and objects with TP/FP/missed counts that follow the confidence slider; the detail.
Screenshots go to /tmp/shots/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready

from oriented_factories import make_oriented_experiment, rotated_project
from vistudio.services import evaluation
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_evaluate_an_oriented_detector(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    page.set_default_timeout(60_000)  # the model runs in the server beside the browser, on 2 cores
    rotated_project(studio, tmp_path, "obb", n=16, size=96)
    make_oriented_experiment(studio, project="obb", name="r18")

    page.goto(f"{base}/projects/obb/evaluate")
    alpine_ready(page)
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    page.locator("#ef-subset-val").check()
    page.locator("#ef-subset-test").check()
    page.locator("#ef-device").select_option("cpu")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    ev = evaluation.get_evaluation(studio, project="obb", experiment="r18")
    m = ev["metrics"]
    for key in ("map50", "map50_area", "precision", "recall", "f1"):
        expect(page.locator(f"#eval-metrics .stat[data-metric={key}] .stat-n")).to_have_text(
            f"{100 * m[key]:.1f}"
        )
    n = len(ev["classes"])
    cells = page.locator("#confusion td[data-true][data-pred]")
    expect(cells).to_have_count((n + 1) ** 2)
    for i, t in enumerate(ev["confusion_labels"]):
        for j, p in enumerate(ev["confusion_labels"]):
            want = ev["confusion_matrix"][i][j]
            cell = page.locator(f'#confusion td[data-true="{t}"][data-pred="{p}"]')
            expect(cell).to_have_text(str(want) if want else "")
    expect(page.locator(".eval-coco-table")).to_have_count(0)
    rows = page.locator("#per-class tbody tr")
    expect(rows).to_have_count(len(ev["classes"]))
    for name in ev["classes"]:
        cells = page.locator(f'#per-class tr[data-class="{name}"] td')
        c = m["per_class"][name]
        expect(cells.nth(1)).to_have_text(f"{c['ap50']:.3f}")
        expect(cells.nth(2)).to_have_text(f"{c['ap50_area']:.3f}")
    for chart in ("#ap-chart", "#pr-chart", "#f1-chart"):
        page.wait_for_function(f"() => document.querySelector('{chart}').dataset.ready === '1'")
    assert len(ev["pr_curves"]) == len(ev["classes"]) and ev["f1_curve"]["best"][
        "threshold"
    ] == pytest.approx(ev["best_f1_threshold"])

    results = evaluation.list_results(studio, project="obb", experiment="r18", limit=500)
    tiles = page.locator(".eval-box-tile")
    expect(tiles).to_have_count(results["total"])
    shot(page, "eval-oriented-01-panel", full_page=True)
    page.locator("#eval-grid").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.eval-box-tile canvas')].some(c => c.dataset.drawn)"
    )
    shot(page, "eval-oriented-02-grid", full_page=False)

    # a tile draws its predictions at the confidence and its missed objects, as rotated polygons
    first = results["items"][0]
    sid = first["sample_id"]
    assert first["predictions"] and all(len(p["points"]) == 4 for p in first["predictions"])
    for c in (0.0, 0.5, 1.0):
        page.locator("#eval-conf").fill(f"{c:.2f}")
        found = sum(t["matched_score"] is not None and t["matched_score"] >= c for t in first["truths"])
        missed = sum(t["outcome"] != "ignored" for t in first["truths"]) - found
        want = sum(p["score"] >= c for p in first["predictions"]) + missed
        want += sum(t["outcome"] == "ignored" for t in first["truths"])
        tile = page.locator(f".eval-box-tile[data-sample-id='{sid}']")
        tile.scroll_into_view_if_needed()
        expect(tile.locator("canvas")).to_have_attribute("data-drawn", str(want))
        expect(tile.locator("[data-count=fn]")).to_have_text(str(missed))
    # the drawings are the rotated corners (four points each), not axis-aligned rectangles
    drawing = page.evaluate(
        "(sid) => JSON.parse(document.querySelector('.eval-drawings').textContent).images[String(sid)]", sid
    )
    assert all(len(p["r"]) == 4 for p in drawing["p"]) and all(len(t["r"]) == 4 for t in drawing["t"])

    page.locator(f".eval-box-tile[data-sample-id='{sid}']").click()
    detail = page.locator("#eval-detail .eval-box-detail")
    expect(detail).to_be_visible()
    page.locator("#eval-conf-detail").fill("0.00")
    expect(detail.locator("tr[data-pred]:not([hidden])")).to_have_count(len(first["predictions"]))
    page.wait_for_function(
        "() => document.querySelector('#eval-detail canvas[data-eval]').dataset.drawn !== undefined"
    )
    shot(page, "eval-oriented-03-detail", full_page=False)
