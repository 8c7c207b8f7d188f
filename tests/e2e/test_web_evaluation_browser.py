"""The Evaluate and Export pages in headless Chromium: run, follow, filter, detail, reset; export,
validate, download, delete; empty states, 30 classes with a long name, and 1,000 results."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready, htmx_settled

from eval_factories import LONG_CLASS, digits_project, fake_evaluation, make_experiment, many_classes_project
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_evaluate_and_export_an_experiment(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    digits_project(studio, tmp_path, name="digits")
    page.goto(f"{base}/projects/digits/evaluate")
    expect(page.locator("#eval-empty")).to_be_visible(timeout=20_000)
    shot(page, "eval-01-evaluate-empty")
    page.goto(f"{base}/projects/digits/export")
    expect(page.locator("#export-empty")).to_be_visible(timeout=20_000)
    expect(page.locator("#export-list")).to_contain_text("No exports yet", timeout=20_000)

    make_experiment(studio, project="digits", name="mnv3-small", model="mobilenet_v3_small", train_steps=2)
    page.goto(f"{base}/projects/digits/evaluate")
    alpine_ready(page)
    expect(page.locator("a.eval-exp[aria-current=page]")).to_have_attribute(
        "data-experiment", "mnv3-small", timeout=20_000
    )
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    expect(page.locator("#ef-checkpoint option")).to_have_count(2, timeout=20_000)
    page.locator("#ef-subset-val").check()
    page.locator("#ef-batch-size").fill("8")
    page.locator("#ef-device").select_option("cpu")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#eval-status")).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(page.locator("#eval-count")).to_have_text("24 / 24", timeout=20_000)
    expect(page.locator("#eval-metrics .stat[data-metric=accuracy]")).to_be_visible(timeout=20_000)
    expect(page.locator("#confusion tbody tr")).to_have_count(3, timeout=20_000)
    page.wait_for_function("() => document.querySelector('#per-class-chart').dataset.ready === '1'")
    tiles = page.locator(".eval-tile")
    expect(tiles).to_have_count(24, timeout=20_000)
    expect(page.locator("#grid-total")).to_have_text("24", timeout=20_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.eval-tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "eval-02-evaluated")

    # a confusion cell filters the grid to its images
    cell = page.locator("#confusion td[role=button]").first
    count = int(cell.inner_text())
    cell.click()
    expect(page.locator("#grid-total")).to_have_text(str(count), timeout=20_000)
    expect(tiles).to_have_count(count, timeout=20_000)
    expect(page.locator("#gf-true")).to_have_value(cell.get_attribute("data-true") or "", timeout=20_000)
    htmx_settled(page)
    # filters and sort (each change swaps the grid in: wait for it before the next one)
    page.locator(".eval-clear").click()
    expect(page.locator("#grid-total")).to_have_text("24", timeout=20_000)
    htmx_settled(page)
    page.locator("#gf-subset").select_option("val")
    expect(page.locator("#grid-total")).to_have_text("12", timeout=20_000)
    htmx_settled(page)
    page.locator("#gf-sort").select_option("-confidence")
    expect(page).to_have_url(re.compile(r"sort=-confidence"), timeout=20_000)
    expect(page.locator("#gf-sort")).to_have_value("-confidence", timeout=20_000)
    confs = [float(t.rstrip("%")) for t in page.locator(".eval-tile-conf").all_inner_texts()]
    assert confs == sorted(confs, reverse=True) and len(confs) == 12
    htmx_settled(page)
    page.locator("#gf-correct").select_option("no")
    wrong = page.locator(".eval-tile[data-correct=false]")
    expect(page.locator(".eval-tile[data-correct=true]")).to_have_count(0, timeout=20_000)
    htmx_settled(page)
    if wrong.count():
        wrong.first.click()
        detail = page.locator("#eval-detail")
        expect(detail).to_be_visible(timeout=20_000)
        expect(detail.locator(".topk li")).to_have_count(3, timeout=20_000)
        expect(detail.locator(".eval-verdict")).to_have_text("✗ wrong", timeout=20_000)
        shot(page, "eval-03-detail")
        detail.get_by_role("button", name="Close detail").click()
        expect(detail).to_be_hidden(timeout=20_000)

    # reset: rows and files go at once, the empty state comes back
    (folder,) = (studio.home / "exports" / "digits").glob("mnv3-small-*/evaluation")
    page.once("dialog", lambda d: d.accept())
    page.locator("#eval-reset").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    assert not folder.exists()

    # export: ONNX, live progress, validation, download, delete
    page.goto(f"{base}/projects/digits/export")
    alpine_ready(page)
    expect(page.locator("#xf-opset")).to_be_visible(timeout=20_000)
    page.locator("#xf-format").select_option("torchscript")
    expect(page.locator("#xf-opset")).to_be_hidden(timeout=20_000)
    page.locator("#xf-format").select_option("onnx")
    page.locator("#xf-checkpoint").select_option("last")
    page.locator("#export-start").click()
    expect(page.locator("#export-status")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#export-validation .stat[data-metric=top1_agreement] .stat-n")).to_have_text(
        "100%", timeout=20_000
    )
    expect(page.locator("#export-list tr[data-status=succeeded]")).to_have_count(1, timeout=20_000)
    shot(page, "eval-04-export-done")
    with page.expect_download() as info:
        page.locator("#export-download").click()
    download = info.value
    assert re.fullmatch(r"mnv3-small-last-opset17-\d+\.onnx", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    import onnx

    props = {p.key: p.value for p in onnx.load(str(saved)).metadata_props}
    assert props["model"] == "mobilenet_v3_small" and props["checkpoint"] == "last"
    page.once("dialog", lambda d: d.accept())
    page.locator("#export-list button.export-delete").first.click()
    expect(page.locator("#export-list")).to_contain_text("No exports yet", timeout=20_000)


def test_many_classes_long_names_and_a_thousand_results(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    many_classes_project(studio, tmp_path, name="many")
    long_exp = "resnet-with-a-long-experiment-name-for-layout-checks-" + "x" * 40
    make_experiment(studio, project="many", name="mnv3", model="mobilenet_v3_small")
    make_experiment(studio, project="many", name=long_exp, model="mobilenet_v3_small", seed=4)
    make_experiment(
        studio, project="many", name="still-training", model="mobilenet_v3_small", status="running"
    )
    fake_evaluation(studio, project="many", experiment="mnv3", accuracy=0.85)
    page.goto(f"{base}/projects/many/evaluate?experiment=mnv3")
    alpine_ready(page)
    expect(page.locator("a.eval-exp")).to_have_count(2, timeout=20_000)  # the running one is not listed
    expect(page.locator("#grid-total")).to_have_text("1,020", timeout=20_000)
    expect(page.locator(".eval-tile")).to_have_count(60, timeout=20_000)
    expect(page.locator("#confusion tbody tr")).to_have_count(30, timeout=20_000)
    expect(page.locator("#confusion tbody th").first).to_have_attribute(
        "title", LONG_CLASS, timeout=20_000
    )  # sorts first
    page.wait_for_function("() => document.querySelector('#per-class-chart').dataset.ready === '1'")
    page.locator(".eval-tile").last.scroll_into_view_if_needed()  # thumbnails load lazily
    page.wait_for_function(
        "() => [...document.querySelectorAll('.eval-tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    # nothing overflows the page sideways (long names are cut, the matrix scrolls in its box)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    shot(page, "eval-05-thirty-classes-1000-results")
    page.locator("#grid-next").click()
    expect(page.locator(".eval-pager")).to_contain_text("page 2 of 17", timeout=20_000)
    expect(page).to_have_url(re.compile(r"page=2"), timeout=20_000)
    page.locator("#gf-true").select_option(LONG_CLASS)
    expect(page.locator(".eval-tile").first).to_be_visible(timeout=20_000)
    shot(page, "eval-06-filtered-long-class", full_page=False)

    page.goto(f"{base}/projects/many/evaluate?experiment={long_exp}")
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    shot(page, "eval-07-long-experiment-name")
    page.goto(f"{base}/projects/many/evaluate?experiment=still-training")
    expect(page.locator("#eval-not-ready")).to_contain_text("is running", timeout=20_000)

    for exp_name in ("mnv3", long_exp):
        page.goto(f"{base}/projects/many/export?experiment={exp_name}")
        alpine_ready(page)
        page.locator("#export-start").click()
        expect(page.locator("#export-status")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#export-list tr[data-export-id]")).to_have_count(2, timeout=20_000)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    shot(page, "eval-08-export-list")
