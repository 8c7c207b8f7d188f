"""The Export page of a semantic segmentation project in headless Chromium: a small trained
segmenter exported to ONNX from the form, its check against PyTorch shown as a segmenter's (pixels
labelled otherwise, identical label maps, the worst image), not as a classifier's logits and top-1
agreement, in the result and in the list of exports. Screenshot: screenshots/export-segmentation.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_factories import alpine_ready

from segmentation_export_factories import make_segmenter_experiment, segmentation_project
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _share(x: float) -> str:
    return "0%" if x == 0 else f"{100 * x:.3g}%"


def test_a_segmenter_export_shows_a_pixel_check(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    page.set_default_timeout(60_000)
    segmentation_project(studio, root, "seg-export", n=12)
    make_segmenter_experiment(studio, project="seg-export", name="lraspp", steps=10)

    page.goto(f"{base}/projects/seg-export/export")
    alpine_ready(page)
    page.locator("#xf-format").select_option("onnx")
    page.locator("#export-start").click()
    expect(page.locator("#export-result .export-done")).to_be_visible(timeout=180_000)
    r = httpx.get(f"{base}/api/v1/exports", params={"project": "seg-export"})
    export = r.json()["items"][0]
    v = export["validation"]
    assert export["status"] == "succeeded" and v["passed"] and v["images"] > 0, export

    result = page.locator("#export-result")
    expect(result.locator(".alert-ok")).to_contain_text(f"pixel by pixel on {v['images']} split images")
    metrics = result.locator("#export-validation .stat").evaluate_all("els => els.map(e => e.dataset.metric)")
    assert metrics == ["pixel_disagreement", "images_identical", "worst_image_disagreement", "max_abs_diff"]
    stat = "#export-validation .stat[data-metric={}] .stat-n"
    expect(result.locator(stat.format("pixel_disagreement"))).to_have_text(_share(v["pixel_disagreement"]))
    expect(result.locator(stat.format("images_identical"))).to_have_text(
        f"{v['images_identical']} / {v['images']}"
    )
    expect(result.locator(stat.format("worst_image_disagreement"))).to_have_text(
        _share(v["worst_image_disagreement"])
    )
    expect(result.locator(stat.format("max_abs_diff"))).to_have_text(f"{v['max_abs_diff']:.1e}")
    # nothing of a classifier's check
    expect(result).not_to_contain_text("top-1")
    expect(result).not_to_contain_text("probabilities")
    # the list says the same: the share of the pixels, in the colour of a passed check
    cell = page.locator(f"#export-list tr[data-export-id='{export['id']}'] td.num").first
    expect(cell).to_contain_text("% px")
    expect(cell.locator(".delta-up")).to_have_count(1)
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "export-segmentation")
