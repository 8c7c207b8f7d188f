"""The Dataset page's edits: tick tiles (Shift-click for a range, "select all matching"), tag and
label them, undo and redo; the sample detail's tags, label and history, and a stale label edit
refused with a message. In headless Chromium against the real app, plus a few pages rendered by
TestClient (the detail's history, a detection project that offers tags but no label editing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready, htmx_settled, wait_for_job, web_settings

from factories import make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.services import edits, ingest, projects
from vistudio.studio import Studio, open_studio

SHOTS = Path("/tmp/shots")
LONG_TAG = "a-very-long-tag-" + "x" * 84  # 100 characters, the most a tag may have
WEB = {"x-vistudio-client": "web"}


def _snap(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _total(base: str, project: str, **filters: str) -> int:
    r = httpx.get(f"{base}/api/v1/samples", params={"project": project, "limit": 1, **filters})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _labels(base: str, sample_id: str) -> list[str]:
    r = httpx.get(f"{base}/api/v1/samples/{sample_id}")
    assert r.status_code == 200, r.text
    return list(r.json()["sample"]["labels"])


def _no_overflow(page: Any) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.browser
def test_select_tag_label_undo_and_the_detail(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    projects.create_project(studio, name="edits", task="classification")
    source = make_class_folders(root / "edits-src", {"cat": 22, "dog": 22, "fox": 22})
    job = ingest.start_import(studio, project="edits", source=source)
    assert wait_for_job(studio, job["id"], timeout=90)["status"] == "succeeded"

    page.goto(base + "/projects/edits")
    alpine_ready(page)
    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(60)
    ids = tiles.evaluate_all("els => els.map(e => e.dataset.sampleId)")
    count = page.get_by_test_id("selected-count")
    bar = page.get_by_test_id("edit-bar")
    expect(count).to_be_hidden()
    _snap(page, "edits-idle")

    # a box ticks one tile, Shift-click the range from it (in grid order); the tile itself still opens
    first_box = tiles.nth(0).locator(".tile-check")
    expect(first_box).to_have_attribute("aria-label", re.compile(r"^Select .+\.png$"))
    first_box.click()
    expect(count).to_have_text("1 selected")
    tiles.nth(49).locator(".tile-check").click(modifiers=["Shift"])
    expect(count).to_have_text("50 selected")
    expect(page.locator(".tile.is-selected")).to_have_count(50)
    assert (
        page.locator(".tile.is-selected").evaluate_all("els => els.map(e => e.dataset.sampleId)") == ids[:50]
    )
    # Shift-click unticks a range as well
    tiles.nth(45).locator(".tile-check").click()
    tiles.nth(47).locator(".tile-check").click(modifiers=["Shift"])
    expect(count).to_have_text("47 selected")
    tiles.nth(45).locator(".tile-check").click()
    tiles.nth(47).locator(".tile-check").click(modifiers=["Shift"])
    expect(count).to_have_text("50 selected")
    expect(bar).to_have_class(re.compile(r"\bis-active\b"))
    page.mouse.move(5, 5)
    _snap(page, "edits-grid-selection")

    # the selection survives "Load more" (tiles appended by htmx)
    page.get_by_test_id("load-more").click()
    expect(tiles).to_have_count(66)
    expect(page.locator(".tile.is-selected")).to_have_count(50)
    assert not tiles.nth(60).locator(".tile-check").is_checked()
    expect(count).to_have_text("50 selected")

    # tag the 50: the message offers Undo; the tag filter appears and shows the 50
    page.get_by_test_id("tag-input").fill("review")
    page.get_by_test_id("add-tag").click()
    message = page.get_by_test_id("edit-message")
    expect(message).to_contain_text("Tagged 50 samples “review”.")
    assert _total(base, "edits", tag="review") == 50
    expect(page.locator("#f-tag option[value='review']")).to_have_text("review (50)")
    expect(page.locator("#edit-tag-list option[value='review']")).to_have_count(1)
    htmx_settled(page)
    page.locator("#f-tag").select_option("review")
    expect(page.get_by_test_id("grid-total")).to_have_text("50")
    expect(page).to_have_url(re.compile(r"tag=review"))
    expect(count).to_be_hidden()  # new filters, a new selection
    expect(message).to_be_visible()  # the message (and its Undo) stays
    _snap(page, "edits-message")

    # Undo in the message takes the change back; the grid (still filtered by the tag) empties
    page.get_by_test_id("message-undo").click()
    expect(message).to_contain_text(re.compile(r"Change \d+ undone \(50 samples\)\."))
    assert _total(base, "edits", tag="review") == 0
    expect(page.get_by_test_id("grid-total")).to_have_text("0")
    # and Redo in the message does it again
    page.get_by_test_id("message-redo").click()
    expect(message).to_contain_text(re.compile(r"Change \d+ redone \(50 samples\)\."))
    expect(page.get_by_test_id("grid-total")).to_have_text("50")
    assert _total(base, "edits", tag="review") == 50

    # "select all matching" with a class filter, then set the label: the counts change
    page.goto(base + "/projects/edits?label=cat")
    alpine_ready(page)
    expect(page.get_by_test_id("grid-total")).to_have_text("22")
    tiles.nth(0).locator(".tile-check").click()
    page.get_by_test_id("select-all").click()
    expect(count).to_have_text("All 22 matching samples selected")
    expect(page.locator(".tile.is-selected")).to_have_count(22)
    page.get_by_test_id("label-select").select_option("dog")
    page.mouse.move(5, 5)
    _snap(page, "edits-bar-all")
    page.get_by_test_id("set-label").click()
    expect(message).to_contain_text("Labelled 22 samples “dog”.")
    expect(page.get_by_test_id("grid-total")).to_have_text("0")
    assert _total(base, "edits", label="dog") == 44
    expect(page.locator("#f-label option[value='dog']")).to_have_text("dog (44)")
    expect(count).to_be_hidden()

    # the bar's Undo and Redo: the project's last edit; a second Redo has nothing to redo
    page.get_by_test_id("undo-last").click()
    expect(message).to_contain_text(re.compile(r"Change \d+ undone \(22 samples\)\."))
    expect(page.get_by_test_id("grid-total")).to_have_text("22")
    assert _total(base, "edits", label="cat") == 22
    page.get_by_test_id("redo-last").click()
    expect(message).to_contain_text(re.compile(r"Change \d+ redone \(22 samples\)\."))
    expect(page.get_by_test_id("grid-total")).to_have_text("0")
    page.get_by_test_id("redo-last").click()
    expect(page.get_by_test_id("edit-error")).to_have_text("Nothing to redo")

    # an error from the API is shown: an empty tag is refused before asking, a tag too long by it
    page.goto(base + "/projects/edits")
    alpine_ready(page)
    tiles.nth(0).locator(".tile-check").click()
    page.get_by_test_id("add-tag").click()
    expect(page.get_by_test_id("edit-error")).to_have_text("Type a tag first.")
    page.get_by_test_id("tag-input").evaluate("(e) => e.removeAttribute('maxlength')")
    page.get_by_test_id("tag-input").fill("y" * 101)
    page.get_by_test_id("add-tag").click()
    expect(page.get_by_test_id("edit-error")).to_contain_text("longer than 100")
    page.keyboard.press("Escape")  # Escape (not in a box) clears the selection
    expect(count).to_be_hidden()

    # the detail: add a tag (Enter), remove it, change the label; the history lists each
    sample = ids[0]
    assert httpx.patch(f"{base}/api/v1/samples/{sample}", json={"add_tags": [LONG_TAG]}).status_code == 200
    before = _labels(base, sample)
    page.goto(base + "/projects/edits")
    alpine_ready(page)
    tiles.nth(0).click()
    detail = page.get_by_test_id("sample-detail")
    expect(detail).to_have_attribute("data-detail-id", sample)
    history = detail.get_by_test_id("history-item")
    expect(history.first).to_contain_text("tags: +" + LONG_TAG)
    expect(history.first).to_contain_text("api")
    box = detail.get_by_test_id("detail-tag-input")
    box.fill("blurry")
    box.press("ArrowLeft")  # typing: the arrow keys stay in the box, the detail does not move on
    box.press("Enter")
    expect(detail.get_by_test_id("detail-tag").filter(has_text="blurry")).to_have_count(1)
    expect(history.first).to_contain_text("tags: +blurry")
    expect(history.first).to_contain_text("web")
    expect(detail).to_have_attribute("data-detail-id", sample)
    expect(detail.get_by_test_id("detail-tag-input")).to_be_focused()
    detail.get_by_role("button", name="Remove tag blurry").click()
    expect(detail.get_by_test_id("detail-tag").filter(has_text="blurry")).to_have_count(0)
    expect(history.first).to_contain_text("tags: −blurry")
    # the detail was swapped in again: use it once Alpine has bound its handlers
    expect(page.locator("[data-testid=sample-detail][data-ready]")).to_have_count(1)
    detail.get_by_test_id("detail-label").select_option("fox")
    expect(history.first).to_contain_text(f"label: {', '.join(before)} → fox")
    expect(detail.get_by_test_id("detail-label")).to_have_value("fox")
    assert _labels(base, sample) == ["fox"]
    # +review, its undo and redo; cat → dog, its undo and redo; the long tag, +blurry, −blurry, fox
    expect(history).to_have_count(10)
    expect(tiles.nth(0).locator(".tile-labels")).to_have_text("fox")  # the grid behind followed
    # the user's caption: written in the detail, kept, shown as theirs
    expect(page.locator("[data-testid=sample-detail][data-ready]")).to_have_count(1)
    detail.get_by_test_id("detail-caption-input").fill("a fox in the snow")
    detail.get_by_role("button", name="Save caption").click()
    expect(detail.get_by_test_id("caption-source")).to_have_text("yours")
    expect(detail.get_by_test_id("detail-caption-input")).to_have_value("a fox in the snow")
    assert httpx.get(f"{base}/api/v1/samples/{sample}/captions").json()["caption"] == "a fox in the snow"
    page.wait_for_function("() => [...document.querySelectorAll('#detail img')].every(i => i.complete)")
    _snap(page, "edits-detail")
    assert page.evaluate(
        "() => { const d = document.querySelector('dialog'); return d.scrollWidth <= d.clientWidth + 1; }"
    )
    # ←/→ still walk the grid when not typing
    page.locator("#detail h2").click()
    page.keyboard.press("ArrowRight")
    expect(detail).to_have_attribute("data-detail-id", ids[1])
    page.keyboard.press("ArrowLeft")
    expect(detail).to_have_attribute("data-detail-id", sample)

    # a stale label edit: changed behind the page's back, then here: refused with a message
    r = httpx.patch(f"{base}/api/v1/samples/{sample}", json={"labels": ["cat"]})
    assert r.status_code == 200, r.text
    expect(page.locator("[data-testid=sample-detail][data-ready]")).to_have_count(1)
    detail.get_by_test_id("detail-label").select_option("dog")
    error = detail.get_by_test_id("detail-edit-error")
    expect(error).to_contain_text("changed since they were loaded")
    expect(error).to_contain_text("they are now “cat”.")
    assert _labels(base, sample) == ["cat"]
    expect(detail.get_by_test_id("detail-label")).to_have_value("fox")  # back to what the page shows
    _snap(page, "edits-detail-conflict")
    detail.get_by_test_id("detail-reload").click()
    expect(detail.get_by_test_id("detail-label")).to_have_value("cat")
    expect(detail.get_by_test_id("detail-edit-error")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page).not_to_have_url(re.compile(r"sample="))  # closing goes back in the history: let it

    # a sample never edited says so
    untouched = ids[-1]
    page.goto(f"{base}/projects/edits?sample={untouched}")
    alpine_ready(page)
    expect(detail).to_have_attribute("data-detail-id", untouched)
    expect(detail.get_by_test_id("history-empty")).to_have_text("No edits yet.")
    page.wait_for_function("() => [...document.querySelectorAll('#detail img')].every(i => i.complete)")
    _snap(page, "edits-empty-history")
    page.keyboard.press("Escape")
    expect(page).not_to_have_url(re.compile(r"sample="))

    # the bar on a narrow (800 px) window wraps inside its column
    page.set_viewport_size({"width": 800, "height": 800})
    page.goto(base + "/projects/edits")
    alpine_ready(page)
    tiles.nth(0).locator(".tile-check").click()
    tiles.nth(2).locator(".tile-check").click(modifiers=["Shift"])
    expect(count).to_have_text("3 selected")
    page.mouse.move(5, 5)
    _snap(page, "edits-bar-narrow")
    assert _no_overflow(page)
    grid_box = page.locator("#grid").bounding_box()
    bar_box = bar.bounding_box()
    assert grid_box and bar_box and bar_box["x"] + bar_box["width"] <= grid_box["x"] + grid_box["width"] + 1

    # a filter, then Back (htmx restores the page): selecting works as before, once
    htmx_settled(page)
    page.locator("#f-label").select_option("fox")
    expect(page).to_have_url(re.compile(r"label=fox"))
    expect(count).to_be_hidden()
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"label="))
    expect(page.get_by_test_id("grid-total")).to_have_text("66")
    alpine_ready(page)
    tiles.nth(3).locator(".tile-check").click()
    expect(count).to_have_text("1 selected")
    page.get_by_test_id("load-more").click()
    expect(tiles).to_have_count(66)
    expect(page.locator(".tile.is-selected")).to_have_count(1)


# ---------------------------------------------------------------------------- pages (no browser)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    studio = open_studio(web_settings(tmp_path))
    yield TestClient(create_app(studio)), studio
    studio.close()


def test_detail_lists_the_history_and_classification_offers_labels(client: Any, tmp_path: Path) -> None:
    http, studio = client
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 2, "dog": 2}))
    page = http.get("/projects/pets")
    assert page.status_code == 200
    assert 'data-testid="tag-form"' in page.text and 'data-testid="label-form"' in page.text
    sid = int(re.findall(r'data-sample-id="(\d+)"', page.text)[0])

    empty = http.get(f"/projects/pets/samples/{sid}")
    assert "No edits yet." in empty.text and 'id="detail-label"' in empty.text

    tag = '<b>"odd" & tag</b>'
    r = http.patch(f"/api/v1/samples/{sid}", json={"add_tags": [tag]}, headers=WEB)
    assert r.status_code == 200, r.text
    r = http.patch(
        f"/api/v1/samples/{sid}", json={"labels": ["dog"], "expected_labels": ["cat"]}, headers=WEB
    )
    assert r.status_code == 200, r.text
    edits.undo(studio, project="pets")
    html = http.get(f"/projects/pets/samples/{sid}").text
    items = re.findall(r'<li class="history-item[^"]*".*?</li>', html, flags=re.S)
    assert len(items) == 3
    assert "undo of change 2" in items[0] and "label: dog → cat" in items[0]
    assert "label: cat → dog" in items[1] and "undone" in items[1]
    assert "tags: +&lt;b&gt;&#34;odd&#34; &amp; tag&lt;/b&gt;" in items[2] and " · web" in items[2]
    assert "<b>" not in html  # user text is escaped everywhere
    # the page opened on the sample's address carries the same detail, history included
    full = http.get("/projects/pets", params={"sample": sid}).text
    assert full.count('data-testid="history-item"') == 3

    # the grid carries its filters as the edit API's selection, dates as ISO text
    grid = http.get(
        "/projects/pets",
        params={"label": "cat", "annotated": "yes", "taken_from": "2020-01-02", "sort": "bytes"},
        headers={"HX-Request": "true"},
    ).text
    found = re.search(r'<section id="grid"[^>]*data-filter="([^"]*)"', grid)
    assert found is not None
    import html as html_lib
    import json

    assert json.loads(html_lib.unescape(found.group(1))) == {
        "has_annotations": True,
        "label": "cat",
        "taken_from": "2020-01-02T00:00:00",
    }


def test_detection_offers_tags_but_no_label_editing(client: Any, tmp_path: Path) -> None:
    from detection_factories import write_coco

    http, studio = client
    projects.create_project(studio, name="boxes", task="detection")
    job = run_import(studio, "boxes", write_coco(tmp_path / "coco", 3, size=64, masks=False), fmt="coco")
    assert job["status"] == "succeeded", job["error"]
    page = http.get("/projects/boxes").text
    assert 'data-testid="tag-form"' in page and 'data-testid="label-form"' not in page
    assert 'id="edit-label"' not in page
    sid = int(re.findall(r'data-sample-id="(\d+)"', page)[0])
    detail = http.get(f"/projects/boxes/samples/{sid}").text
    assert 'data-testid="detail-tag-input"' in detail
    assert 'id="detail-label"' not in detail and "<h3>Labels</h3>" in detail
    # and the API agrees: tags yes, labels no
    assert http.post("/api/v1/projects/boxes/tags", json={"all": True, "add": ["t"]}).status_code == 200
    refused = http.post("/api/v1/projects/boxes/labels", json={"all": True, "set": ["x"]})
    assert refused.status_code in (400, 422), refused.text


@pytest.mark.browser
def test_save_a_view_and_open_it(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    projects.create_project(studio, name="viewed", task="classification")
    source = make_class_folders(root / "viewed-src", {"cat": 3, "dog": 2})
    job = ingest.start_import(studio, project="viewed", source=source)
    assert wait_for_job(studio, job["id"], timeout=90)["status"] == "succeeded"
    page.goto(base + "/projects/viewed?label=dog&sort=bytes&order=desc")
    alpine_ready(page)
    expect(page.get_by_test_id("saved-views")).to_contain_text("None yet")
    page.fill("#view-name", '<b>"big"</b>')  # not a name: refused with the rule
    page.get_by_role("button", name="Save view").click()
    expect(page.locator(".saved-views .alert-error")).to_contain_text("a view name is")
    page.fill("#view-name", "dogs (big) first")
    page.get_by_role("button", name="Save view").click()
    page.wait_for_url(re.compile(r"view=dogs"))
    expect(page.get_by_test_id("grid-total")).to_have_text("2")
    expect(page.get_by_test_id("view-link")).to_have_text("dogs (big) first")
    assert page.locator("#f-label").input_value() == "dog" and page.locator("#f-order").input_value() == "desc"
    # the name is taken: said so, nothing replaced
    page.fill("#view-name", "dogs (big) first")
    page.get_by_role("button", name="Save view").click()
    expect(page.locator(".saved-views .alert-error")).to_contain_text("already exists")
    _snap(page, "views-saved")
    assert httpx.get(f"{base}/projects/viewed?view=nope").status_code == 404
