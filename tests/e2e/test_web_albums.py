"""The Albums pages in headless Chromium: the empty state, a smart album's query error shown inline
with its column, a smart album of a place, a manual album with a long name filled from the Dataset
page's selection ("Add to album"), reordered with the arrows and by drag and drop, a new cover, a
photo removed, deleted and brought back by the undo banner; "On this day" on the Dataset page;
the phone layout."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready

from factories import insert_photos
from vistudio.services import albums, projects
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = (
    "Our very long album name for the summer at the seaside with everyone, grandparents and the dog included"
)


def _fill(studio: Studio, project: str) -> list[int]:
    """Photos with thumbnails: some in Lisbon, some in Porto, and three taken on today's month and
    day in earlier years (for "On this day")."""
    today = date.today()
    moments = [datetime(2024, 5, 3, 9) + timedelta(hours=3 * i) for i in range(12)]
    for back in (1, 3, 3):
        try:
            moments.append(datetime(today.year - back, today.month, today.day, 12))
        except ValueError:  # 29 February: shown on the 28th
            moments.append(datetime(today.year - back, 2, 28, 12))
    rows = [
        {"taken_at": t, "place_city": "Lisbon" if i < 6 else "Porto" if i < 12 else None}
        for i, t in enumerate(moments)
    ]
    return insert_photos(studio, project, rows, thumbnails=True, seed=5)


def _images_loaded(page: Any, selector: str) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll({selector!r})].every(i => i.complete && i.naturalWidth)"
    )


def test_albums_pages(live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    projects.create_project(studio, name="family", task="library")
    page.goto(f"{base}/projects/family/albums")
    expect(page.locator("#al-empty")).to_contain_text("No albums yet")
    expect(page.locator("nav.tabs [data-section=albums]")).to_have_attribute("aria-current", "page")
    shot(page, "albums-01-empty")

    ids = _fill(studio, "family")
    # a smart album's query error: inline, with a caret under the column
    page.locator("#al-name").fill("Lisbon")
    page.locator("#al-query").fill("place:Lisbon colour:red")
    page.locator("[data-testid=al-create-btn]").click()
    expect(page.locator("#al-error")).to_contain_text("unknown key 'colour'")
    expect(page.locator("#al-error")).to_contain_text("column 14")
    expect(page.locator("#al-query")).to_have_value("place:Lisbon colour:red")  # kept to fix
    shot(page, "albums-02-query-error")
    page.locator("#al-query").fill("place:Lisbon")
    page.locator("[data-testid=al-create-btn]").click()
    expect(page.locator("#al-title")).to_have_text("Lisbon")
    expect(page.locator("#al-photos .al-photo")).to_have_count(6)
    expect(page.locator("#al-photos .al-photo").first).to_have_attribute(
        "data-sample-id", str(ids[5])
    )  # newest
    _images_loaded(page, "#al-photos img")
    shot(page, "albums-03-smart")

    # a manual album, filled from the Dataset page's selection
    page.goto(f"{base}/projects/family/albums")
    page.locator("#al-name").fill(LONG)
    page.locator("[data-testid=al-create-btn]").click()
    expect(page.locator("[data-testid=al-no-photos]")).to_contain_text("No photos yet")
    album_id = int(page.url.rsplit("/", 1)[-1])
    page.goto(f"{base}/projects/family")
    alpine_ready(page)
    expect(page.locator("#otd")).to_be_visible()
    expect(page.locator("#otd .otd-year")).to_have_count(2)  # 1 and 3 years ago
    expect(page.locator("#otd .otd-year h3").first).to_contain_text("1 year ago")
    tiles = page.locator("#grid .tile[data-sample-id]")
    for i in range(4):
        tiles.nth(i).locator(".tile-check").click()
    page.locator("[data-testid=album-select]").select_option(str(album_id))
    page.locator("[data-testid=add-to-album]").click()
    expect(page.locator("[data-testid=edit-message]")).to_contain_text("Added 4 samples")
    _images_loaded(page, "#otd img")
    shot(page, "albums-04-dataset-add", full_page=False)
    chosen = [int(tiles.nth(i).get_attribute("data-sample-id") or 0) for i in range(4)]
    assert albums.album_photo_ids(studio, project="family", album=album_id) == chosen

    page.goto(f"{base}/projects/family/albums/{album_id}")
    photos = page.locator("#al-photos .al-photo")
    expect(photos).to_have_count(4)
    order = lambda: [int(photos.nth(i).get_attribute("data-sample-id") or 0) for i in range(photos.count())]  # noqa: E731
    photos.nth(2).locator("[data-testid=al-left]").click()  # the third goes second
    expect(photos.nth(1)).to_have_attribute("data-sample-id", str(chosen[2]))
    photos.nth(0).locator("[data-testid=al-right]").click()  # the first goes second
    expect(photos.nth(1)).to_have_attribute("data-sample-id", str(chosen[0]))
    assert order() == [chosen[2], chosen[0], chosen[1], chosen[3]]
    photos.nth(3).drag_to(photos.nth(0))  # drag the last before the first
    expect(photos.nth(0)).to_have_attribute("data-sample-id", str(chosen[3]))
    assert order() == albums.album_photo_ids(studio, project="family", album=album_id)
    photos.nth(2).locator("[data-testid=al-set-cover]").click()
    expect(photos.nth(2).locator("[data-testid=al-cover-badge]")).to_be_visible()
    photos.nth(1).locator("[data-testid=al-remove]").click()
    expect(photos).to_have_count(3)
    expect(page.locator("#al-title")).to_have_text(LONG)
    _images_loaded(page, "#al-photos img")
    shot(page, "albums-05-manual")

    page.goto(f"{base}/projects/family/albums")
    cards = page.locator("#al-list .al-card")
    expect(cards).to_have_count(2)
    expect(page.locator(".al-card", has_text="Lisbon").locator(".al-smart")).to_be_visible()
    expect(page.locator(".al-card", has_text="seaside").locator(".al-count")).to_have_text("3 photos")
    _images_loaded(page, ".al-cover img")
    shot(page, "albums-06-list")

    # delete, then undo from the banner
    page.goto(f"{base}/projects/family/albums/{album_id}")
    page.locator("[data-testid=al-delete]").click()
    expect(page.locator("#al-undo")).to_contain_text("Album deleted")
    expect(cards).to_have_count(1)
    shot(page, "albums-07-deleted")
    page.locator("[data-testid=al-restore]").click()
    expect(page.locator("#al-title")).to_have_text(LONG)
    expect(page.locator("#al-photos .al-photo")).to_have_count(3)
    page.goto(f"{base}/projects/family/albums/999999")
    expect(page.locator("body")).to_contain_text("not found")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/projects/family/albums")
    expect(cards.first).to_be_visible()
    for i in range(cards.count()):
        box = cards.nth(i).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    shot(page, "albums-08-phone")
    page.goto(f"{base}/projects/family/albums/{album_id}")
    shot(page, "albums-09-phone-album")
    page.goto(f"{base}/projects/family")
    expect(page.locator("#otd")).to_be_visible()
    shot(page, "albums-10-phone-dataset", full_page=False)
