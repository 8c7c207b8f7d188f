"""The web GUI driven through headless Chromium: the whole walk from an empty studio to a locked split."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready, make_shapes_zip, make_tiny_folder, make_yolo_obb, wait_for_job

from vistudio.services import ingest, projects
from vistudio.studio import Studio

pytestmark = pytest.mark.browser
LONG_NAME = "a-very-long-file-name-" + "x" * 170 + "-end.png"  # 196 + 4 = 200 characters


def test_walk_from_empty_studio_to_locked_split(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, _, _ = live_server
    archive = make_shapes_zip(tmp_path / "shapes.zip")

    # projects, empty
    page.goto(base + "/")
    alpine_ready(page)
    expect(page).to_have_title(re.compile("Projects"))
    expect(page.get_by_text("No projects yet")).to_be_visible()
    shot(page, "01-projects-empty")

    # the modal refuses a bad name inline, then creates the project
    page.get_by_test_id("new-project").click()
    page.get_by_label("Name").fill("bad/name!")
    page.get_by_label("Task").select_option("classification")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("#create-errors .alert-error")).to_contain_text("project name")
    page.get_by_label("Name").fill("shapes")
    page.get_by_role("button", name="Create project").click()

    # the new project opens on its dataset page: upload the zip and follow the progress to the end
    expect(page).to_have_url(f"{base}/projects/shapes")
    expect(page.locator(".project-head .badge")).to_have_text("classification")
    alpine_ready(page)
    expect(page.get_by_text("No images yet")).to_be_visible()
    page.get_by_test_id("toggle-import").click()
    page.get_by_label("Zip file").set_input_files(str(archive))
    page.get_by_role("button", name="Upload and import").click()
    expect(page.get_by_test_id("import-status")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("import-count")).to_have_text("24 / 24")
    bar = page.get_by_role("progressbar", name="Import progress")
    expect(bar).to_have_attribute("aria-valuenow", "24")
    expect(page.get_by_test_id("report-imported")).to_have_text("24")
    expect(page.get_by_test_id("report-failed")).to_have_text("0")
    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(24)
    expect(page.get_by_test_id("project-samples")).to_have_text("24")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "03-import-report")
    page.get_by_test_id("toggle-import").click()
    shot(page, "04-dataset-grid")

    # filter by one class: the grid and the URL follow
    page.get_by_label("Class").select_option("circle")
    expect(tiles).to_have_count(8)
    expect(page).to_have_url(re.compile(r"label=circle"))
    expect(page.get_by_test_id("grid-total")).to_have_text("8")
    page.get_by_label("Search names").fill("circle_0")
    expect(tiles).to_have_count(8)
    page.get_by_label("Search names").fill("circle_03")
    expect(tiles).to_have_count(1)

    # the detail view shows metadata, labels and the original
    tiles.first.click()
    detail = page.get_by_test_id("sample-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("circle_03.png")
    expect(detail).to_contain_text("48 × 48 px")
    expect(detail.get_by_test_id("detail-label")).to_have_value("circle")  # the label, editable
    page.wait_for_function(
        "() => { const i = document.querySelector('.stage img'); return i && i.complete && i.naturalWidth > 0 }"
    )
    shot(page, "05-sample-detail", full_page=False)
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"[?&]sample="))  # the history step back is done

    # split: sliders keep their sum at 1, preview draws the chart, save locks it
    page.get_by_role("link", name="Split", exact=True).click()
    expect(page).to_have_url(f"{base}/projects/shapes/split")
    alpine_ready(page)
    page.get_by_label("Train").fill("0.71")
    expect(page.locator("#r-train-out")).to_have_text("0.71")
    page.get_by_label("Train").focus()
    page.keyboard.press("ArrowLeft")  # the sliders are keyboard-usable
    expect(page.locator("#r-train-out")).to_have_text("0.70")
    values = [float(page.locator(f"#r-{k}-out").inner_text()) for k in ("train", "val", "test")]
    assert values[0] == pytest.approx(0.7)
    assert sum(values) == pytest.approx(1.0)
    page.get_by_test_id("preview").click()
    preview = page.get_by_test_id("split-preview")
    expect(preview).to_be_visible()
    expect(preview.locator("canvas")).to_be_visible()
    page.wait_for_function(
        "() => { const c = document.querySelector('canvas[data-chart]'); return c && c._chart }"
    )
    totals = [int(preview.get_by_test_id(f"total-{k}").inner_text()) for k in ("train", "val", "test")]
    assert sum(totals) == 24
    page.get_by_test_id("save-split").click()
    expect(page.get_by_test_id("split-saved")).to_be_visible()
    expect(page.get_by_test_id("split-list")).to_contain_text("Locked")
    expect(page.get_by_test_id("split-list")).to_contain_text("default")
    expect(page.get_by_test_id("project-splits")).to_have_text("1")
    shot(page, "06-split")
    page.get_by_test_id("save-split").click()  # the same name again: a 409, shown inline
    expect(page.locator("#split-result .alert-error")).to_contain_text("immutable")

    # jobs: the finished import with its result
    page.get_by_role("link", name="Jobs").click()
    row = page.locator("tr[data-job-id]").first
    expect(row.get_by_test_id("job-status")).to_have_text("succeeded")
    expect(page.locator("#jobs-table")).to_have_attribute("data-polling", "off")
    shot(page, "07-jobs")
    row.get_by_role("button", name=re.compile("Details of job")).click()
    expect(page.get_by_test_id("job-result")).to_contain_text('"imported": 24')
    shot(page, "07-job-detail", full_page=False)
    page.keyboard.press("Escape")
    # closing the detail goes back to the list's address (history.back): let that finish before
    # navigating on, or the two navigations race
    expect(page).not_to_have_url(re.compile(r"[?&]job="))

    page.goto(base + "/")
    alpine_ready(page)
    expect(page.locator("article[data-project='shapes'] [data-testid=sample-count]")).to_have_text("24")
    shot(page, "02-projects")

    # narrow screens get one column
    page.set_viewport_size({"width": 600, "height": 900})
    page.goto(base + "/projects/shapes")
    alpine_ready(page)
    layout = page.locator(".dataset-layout").evaluate(
        "e => getComputedStyle(e).gridTemplateColumns.split(' ').length"
    )
    assert layout == 1
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "08-dataset-narrow")


def test_thousand_samples_paginate_and_long_names_stay_in_their_tile(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    source = make_tiny_folder(root / "tiny", count=1000, long_name=LONG_NAME)
    projects.create_project(studio, name="big", task="library")
    job = ingest.start_import(studio, project="big", source=source)
    done = wait_for_job(studio, job["id"], timeout=90)
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["report"]["imported"] == 1001

    page.goto(base + "/projects/big")
    alpine_ready(page)
    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(60)
    expect(page.get_by_test_id("grid-total")).to_have_text("1,001")
    page.get_by_test_id("load-more").click()
    expect(tiles).to_have_count(120)
    ids = tiles.evaluate_all("els => els.map(e => e.dataset.sampleId)")
    assert len(set(ids)) == 120  # pages neither overlap nor repeat
    page.get_by_test_id("load-more").scroll_into_view_if_needed()  # infinite scroll: revealing loads more
    expect(tiles).to_have_count(180)

    # the 200-character name is cut with an ellipsis inside a tile as wide as its neighbours
    page.goto(base + "/projects/big?sort=name&order=asc")
    alpine_ready(page)
    long_tile = page.locator(".tile", has_text="a-very-long-file-name")
    expect(long_tile).to_have_count(1)
    widths = tiles.evaluate_all(
        "els => els.slice(0, 5).map(e => Math.round(e.getBoundingClientRect().width))"
    )
    assert len(set(widths)) == 1
    box = long_tile.bounding_box()
    assert box is not None and abs(box["width"] - widths[0]) <= 1
    name = long_tile.locator(".tile-name")
    assert name.evaluate(
        "e => e.scrollWidth > e.clientWidth && getComputedStyle(e).textOverflow === 'ellipsis'"
    )
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "09-big-grid-long-name", full_page=False)
    long_tile.click()
    expect(page.get_by_test_id("sample-detail")).to_be_visible()
    assert page.evaluate(
        "() => document.querySelector('dialog').scrollWidth <= document.querySelector('dialog').clientWidth + 1"
    )
    shot(page, "10-long-name-detail", full_page=False)


def test_annotations_are_drawn_over_the_image(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    projects.create_project(studio, name="boats", task="oriented_detection")
    job = ingest.start_import(studio, project="boats", source=make_yolo_obb(root / "yolo"), fmt="yolo")
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    page.goto(base + "/projects/boats")
    alpine_ready(page)
    page.get_by_test_id("tile").first.click()
    # drawn by overlay.js on a canvas over the image: a box and two polygons
    expect(page.locator("#detail .ov-canvas")).to_have_attribute("data-drawn", "3")
    stage = page.locator(".stage").bounding_box()
    assert stage is not None
    # the box starts at x = 0.1 of the image: the overlay scales with the displayed image
    edge, outside = page.evaluate(
        """() => {
          const c = document.querySelector('#detail .ov-canvas'), r = c.getBoundingClientRect();
          const ctx = c.getContext('2d'), k = c.width / r.width, y = Math.round(c.height * 0.3);
          const alpha = (u) => Math.max(...[-1, 0, 1].map((d) => ctx.getImageData(Math.round(u * c.width) + d, y, 1, 1).data[3]));
          return [alpha(0.1), alpha(0.05)];
        }"""
    )
    assert edge > 150 and outside == 0, (edge, outside)
    shot(page, "11-annotation-overlay", full_page=False)
