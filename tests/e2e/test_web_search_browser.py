"""The Search page in headless Chromium: empty state → embedding with progress → text, image and
"more like this" searches over 1,001 images, keyboard only where it can be, filters, long names."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready, draw_shape, make_tiny_folder, wait_for_job

from embed_factories import TINY, register_tiny
from vistudio.services import embeddings, ingest, projects
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LONG_NAME = "a-very-long-file-name-for-search-" + "y" * 160 + "-end.png"
ENV = {
    "VISTUDIO_EMBED__MODEL": TINY,
    "VISTUDIO_EMBED__PRETRAINED": "none",
    "VISTUDIO_EMBED__WORKERS": "0",
    "VISTUDIO_EMBED__BATCH_SIZE": "128",
}


@pytest.fixture(scope="module", autouse=True)
def _tiny_model_configured() -> Iterator[None]:
    """The module's live server reads its settings from the environment: point it at the tiny model."""
    register_tiny()
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def photos(live_server: tuple[str, Studio, Path]) -> Path:
    """A library project of 1,001 small pictures (one with a 200-character name); not embedded."""
    _, studio, root = live_server
    assert studio.settings.embed.model == TINY
    source = make_tiny_folder(root / "tiny", count=1000, long_name=LONG_NAME)
    projects.create_project(studio, name="photos", task="library")
    done = wait_for_job(
        studio, ingest.start_import(studio, project="photos", source=source)["id"], timeout=120
    )
    assert done["status"] == "succeeded" and done["result"]["report"]["imported"] == 1001
    return source


def _embedded(studio: Studio) -> None:
    if embeddings.embedding_status(studio, project="photos")["pending"]:
        job = embeddings.start_embedding(studio, project="photos")
        assert wait_for_job(studio, job["id"], timeout=120)["status"] == "succeeded"


def test_search_page_from_empty_to_results(
    live_server: tuple[str, Studio, Path], photos: Path, page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, _, root = live_server

    # no embeddings yet: the empty state offers to start, with the model it will use
    page.goto(base + "/projects/photos/search")
    alpine_ready(page)
    expect(page.get_by_role("link", name="Search", exact=True)).to_have_attribute("aria-current", "page")
    empty = page.get_by_test_id("no-embeddings")
    expect(empty).to_contain_text("No embeddings yet")
    expect(empty).to_contain_text("1,001 images")
    expect(empty).to_contain_text(TINY)
    shot(page, "search-01-no-embeddings", full_page=False)

    # start it: live progress, then the page reloads in its searchable state
    page.get_by_test_id("start-embedding").click()
    expect(page.get_by_role("progressbar", name="Embedding progress")).to_be_visible()
    shot(page, "search-01b-embedding-progress", full_page=False)
    expect(page.get_by_test_id("embedded-count")).to_have_text("1,001", timeout=90_000)
    expect(page.get_by_test_id("untrained-warning")).to_be_visible()
    expect(page.get_by_test_id("pending-count")).to_have_count(0)

    # "/" focuses the box, Enter searches
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("/")
    expect(page.get_by_test_id("search-text")).to_be_focused()
    page.keyboard.type("a red circle")
    page.keyboard.press("Enter")
    results = page.get_by_test_id("result")
    expect(results).to_have_count(40)
    expect(page).to_have_url(re.compile(r"/search\?text=a(\+|%20)red(\+|%20)circle&k=40$"))  # no empty fields
    expect(page.get_by_test_id("results-summary")).to_contain_text("40 results for")
    first_why = page.get_by_test_id("why").first.inner_text()
    assert first_why.startswith("text similarity") and "'a red circle'" in first_why
    scores = [float(s) for s in page.get_by_test_id("score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.result img')].slice(0, 12).every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "search-02-text-results", full_page=False)

    # arrows move through the grid, Enter opens a result, Escape closes it
    page.keyboard.press("ArrowDown")
    opened = page.locator(".result-open")
    expect(opened.nth(0)).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(opened.nth(1)).to_be_focused()
    columns = page.evaluate(
        "() => { const t = [...document.querySelectorAll('.result-open')]; return t.findIndex(e => e.offsetTop !== t[0].offsetTop) }"
    )
    assert columns >= 3
    page.keyboard.press("ArrowDown")
    expect(opened.nth(1 + columns)).to_be_focused()
    second_id = results.nth(1 + columns).get_attribute("data-sample-id")
    page.keyboard.press("Enter")
    detail = page.get_by_test_id("sample-detail")
    expect(detail).to_be_visible()
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()
    expect(opened.nth(1 + columns)).to_be_focused()  # back where we were

    # more like this, from any result
    results.nth(1 + columns).get_by_test_id("more-like-this").click()
    expect(page).to_have_url(re.compile(rf"sample={second_id}"))
    expect(page.get_by_test_id("results-summary")).to_contain_text(f"similar to sample {second_id}")
    expect(results).to_have_count(40)
    assert second_id not in results.evaluate_all("els => els.map(e => e.dataset.sampleId)")
    assert page.get_by_test_id("why").first.inner_text().startswith(f"similar to sample {second_id} (")

    # an uploaded image
    picture = draw_shape(root / "query.png", shape="circle", index=3, size=64)
    page.get_by_test_id("image-file").set_input_files(str(picture))
    expect(page.get_by_test_id("results-summary")).to_contain_text("similar to query.png")
    assert "uploaded image 'query.png'" in page.get_by_test_id("why").first.inner_text()

    # filters that leave nothing: a clear empty state
    page.get_by_test_id("search-text").fill("a blue square")
    page.get_by_label("From").fill("2031-01-01")
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("no-results")).to_contain_text("No embedded image matches these filters")
    shot(page, "search-03-no-results", full_page=False)


def test_long_names_stay_in_their_tile_and_narrow_screens_get_one_column(
    live_server: tuple[str, Studio, Path], photos: Path, page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    _embedded(studio)
    from sqlalchemy import select

    from vistudio.db import Sample

    with studio.sessions() as s:
        long_id = s.scalar(select(Sample.id).where(Sample.name == LONG_NAME))
    assert long_id is not None
    # searching with the long-named picture itself ranks it first (score 1.00)
    page.goto(f"{base}/projects/photos/search?k=20")
    alpine_ready(page)
    page.get_by_test_id("image-file").set_input_files(str(photos / LONG_NAME))
    results = page.get_by_test_id("result")
    expect(results).to_have_count(20)
    long_tile = results.first
    expect(long_tile).to_have_attribute("data-sample-id", str(long_id))
    expect(long_tile.get_by_test_id("score")).to_have_text("1.00")
    widths = results.evaluate_all(
        "els => els.slice(0, 6).map(e => Math.round(e.getBoundingClientRect().width))"
    )
    assert len(set(widths)) == 1
    box = long_tile.bounding_box()
    assert box is not None and abs(box["width"] - widths[0]) <= 1
    name = long_tile.locator(".result-name")
    assert name.evaluate(
        "e => e.scrollWidth > e.clientWidth && getComputedStyle(e).textOverflow === 'ellipsis'"
    )
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    long_tile.scroll_into_view_if_needed()
    shot(page, "search-04-long-name", full_page=False)

    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{base}/projects/photos/search?text=circle&k=20")
    alpine_ready(page)
    expect(results).to_have_count(20)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "search-05-narrow", full_page=False)
