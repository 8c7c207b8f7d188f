"""The library panel of the Dataset page: through the in-process client, then in Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready, draw_shape

from vistudio.api.app import create_app
from vistudio.services import library, projects
from vistudio.studio import Studio

HX = {"HX-Request": "true"}
LONG_FOLDER = "holiday-photos-from-a-very-long-trip-" + "x" * 110 + "-end"


def _photos(folder: Path, count: int, *, start: int = 0) -> Path:
    for i in range(start, start + count):
        draw_shape(folder / f"photo_{i:03d}.png", shape=("circle", "square", "triangle")[i % 3], index=i)
    return folder


def _remove_a_smaller_copy(studio: Studio, photo: Path) -> None:
    """Put a smaller copy of ``photo`` beside it, scan, and remove the copy in the duplicates review."""
    from PIL import Image

    from vistudio.jobs.worker import Worker
    from vistudio.services import duplicates

    with Image.open(photo) as im:
        im.resize((40, 40)).save(photo.with_name(photo.stem + "-small.png"))
    job = library.start_scan(studio, project="album")
    Worker(studio).run_to_end(job["id"])
    (group,) = duplicates.list_groups(studio, project="album", level="perceptual")["items"]
    duplicates.decide(studio, project="album", group=group["id"], action="remove")


def test_panel_only_on_library_projects_and_its_fragment(web_studio: Studio, tmp_path: Path) -> None:
    client = TestClient(create_app(web_studio))
    projects.create_project(web_studio, name="album", task="library")
    projects.create_project(web_studio, name="pets", task="classification")
    assert 'data-testid="library-panel"' not in client.get("/projects/pets").text
    assert "/static/library.js" not in client.get("/projects/pets").text

    page = client.get("/projects/album")
    assert page.status_code == 200
    assert 'data-testid="library-panel"' in page.text and "No folders yet" in page.text
    assert client.get("/static/library.js").status_code == 200

    photos = _photos(tmp_path / "photos", 3)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    library.add_roots(web_studio, project="album", paths=[str(photos)])
    from vistudio.jobs.worker import Worker

    job = library.start_scan(web_studio, project="album")
    Worker(web_studio).run_one(job_id=job["id"])
    body = client.get("/projects/album/library", headers=HX)
    assert body.status_code == 200
    assert str(photos) in body.text and 'data-testid="scan-report"' in body.text
    assert 'data-testid="scan-added">3<' in body.text and 'data-testid="scan-failed-count">1<' in body.text
    assert "broken.jpg" in body.text
    # the page itself shows the same panel and the three photos in the grid
    page = client.get("/projects/album")
    assert 'data-testid="grid-total">3<' in page.text and 'data-testid="library-root"' in page.text
    assert 'data-testid="scan-excluded"' not in body.text  # nothing left out: no such figure

    # a smaller copy, removed in the duplicates review: the next scan leaves it out and says so
    _remove_a_smaller_copy(web_studio, photos / "photo_000.png")
    job = library.start_scan(web_studio, project="album")
    Worker(web_studio).run_one(job_id=job["id"])
    body = client.get("/projects/album/library", headers=HX)
    assert 'data-testid="scan-excluded">1<' in body.text and "left out" in body.text

    missing = client.get("/projects/nope/library", headers=HX)
    assert missing.status_code == 404 and "alert-error" in missing.text
    wrong_task = client.get("/projects/pets/library", headers=HX)
    assert wrong_task.status_code == 409 and "library" in wrong_task.text


@pytest.mark.browser
@pytest.mark.slow
def test_add_scan_rescan_and_remove_a_folder_in_chromium(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    projects.create_project(studio, name="album", task="library")
    photos = _photos(root / LONG_FOLDER / "2024", 6)
    (photos / "notes.jpg").write_text("this is not a photo")

    page.goto(base + "/projects/album")
    alpine_ready(page)
    panel = page.get_by_test_id("library-panel")
    expect(panel.get_by_test_id("library-empty")).to_be_visible()
    shot(page, "library-01-empty", full_page=False)

    # a relative path is refused inline; a good one is listed (long paths wrap inside the card)
    page.get_by_label("Add a folder").fill("photos/2024")
    page.get_by_role("button", name="Add folder").click()
    expect(page.get_by_test_id("library-error")).to_contain_text("absolute path")
    page.get_by_label("Add a folder").fill(str(photos))
    page.get_by_role("button", name="Add folder").click()
    rows = page.get_by_test_id("library-root")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(LONG_FOLDER)
    expect(page.get_by_test_id("library-error")).to_be_hidden()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

    # scan: live progress to the end, the report, and the photos in the grid
    page.get_by_test_id("scan-now").click()
    expect(page.get_by_test_id("scan-status")).to_have_text("succeeded", timeout=30_000)
    report = page.get_by_test_id("scan-report")
    expect(report.get_by_test_id("scan-added")).to_have_text("6")
    expect(report.get_by_test_id("scan-failed-count")).to_have_text("1")
    expect(report).to_contain_text("notes.jpg")
    expect(rows.first.get_by_test_id("root-files")).to_have_text("7")
    expect(page.get_by_test_id("tile")).to_have_count(6)
    expect(page.get_by_test_id("project-samples")).to_have_text("6")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    # the path cell keeps to the table: nothing spills out of the card
    card = panel.bounding_box()
    cell = rows.first.locator(".lib-path .mono").bounding_box()
    assert card is not None and cell is not None and cell["x"] + cell["width"] <= card["x"] + card["width"]
    shot(page, "library-02-scanned")

    # a rescan after changes: one photo gone, one new
    (photos / "photo_000.png").unlink()
    _photos(photos, 1, start=50)
    page.get_by_test_id("scan-now").click()
    expect(page.get_by_test_id("scan-status")).to_have_text("succeeded", timeout=30_000)
    expect(report.get_by_test_id("scan-added")).to_have_text("1")
    expect(report.get_by_test_id("scan-removed")).to_have_text("1")
    expect(report.get_by_test_id("scan-unchanged")).to_have_text("5")
    expect(page.get_by_test_id("tile")).to_have_count(6)

    # a photo removed in the duplicates review is left out of the next scans, and the report says so
    _remove_a_smaller_copy(studio, photos / "photo_001.png")
    page.get_by_test_id("scan-now").click()
    expect(page.get_by_test_id("scan-status")).to_have_text("succeeded", timeout=30_000)
    expect(report.get_by_test_id("scan-excluded")).to_have_text("1")
    expect(page.get_by_test_id("tile")).to_have_count(6)
    shot(page, "library-03-left-out", full_page=False)

    # the folder disappears (an unplugged drive): the scan stops with a clear error, nothing removed
    moved = root / "unplugged"
    shutil.move(str(root / LONG_FOLDER), moved)
    page.reload()
    alpine_ready(page)
    expect(rows.first.get_by_test_id("root-problem")).to_have_text("missing")
    page.get_by_test_id("scan-now").click()
    expect(page.get_by_test_id("scan-status")).to_have_text("failed", timeout=30_000)
    expect(page.get_by_test_id("scan-failed")).to_contain_text("nothing was removed")
    expect(page.get_by_test_id("tile")).to_have_count(6)
    shot(page, "library-04-missing-root", full_page=False)
    shutil.move(str(moved), root / LONG_FOLDER)

    # removing the folder takes its photos out of the project (after a confirmation)
    page.once("dialog", lambda dialog: dialog.accept())
    rows.first.get_by_test_id("remove-root").click()
    expect(panel.get_by_test_id("library-empty")).to_be_visible()
    expect(page.get_by_test_id("tile")).to_have_count(0)
    expect(page.get_by_test_id("project-samples")).to_have_text("0")
    assert (photos / "photo_001.png").is_file()  # originals are never touched

    # narrow screens: one column, no sideways scrolling
    page.set_viewport_size({"width": 600, "height": 900})
    page.goto(base + "/projects/album")
    alpine_ready(page)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "library-05-narrow", full_page=False)
