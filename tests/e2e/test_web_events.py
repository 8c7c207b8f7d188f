"""The Events pages in headless Chromium: the empty state, the list being worked out, event cards by
year (cover, name, dates, count; a long name wraps), an event's page: rename, split at a photo,
merge with the previous event (undoing the split), an error shown on the page; the phone layout."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from web_factories import alpine_ready

from factories import insert_photos
from vistudio.jobs.worker import Worker
from vistudio.services import events, projects
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = (
    "A very long name for a weekend with the whole family at the seaside, written by someone who likes words"
)


def _fill(studio: Studio, project: str) -> None:
    """Outings over two years (a burst of photos every few weeks) and a trip to Lisbon, each photo
    with a real thumbnail."""
    rng = random.Random(3)
    when = datetime(2023, 2, 1, 10)
    bursts: list[tuple[datetime, int, tuple[float, float] | None, str | None]] = []
    for _ in range(14):
        bursts.append((when, rng.randrange(3, 8), (52.52, 13.40), "Berlin"))
        when += timedelta(days=rng.randrange(20, 60))
    bursts.append((datetime(2024, 5, 3, 9), 30, (38.72, -9.14), "Lisbon"))
    rows = []
    for start, n, at, city in bursts:
        t = start
        for _ in range(n):
            if start.month == 5 and start.year == 2024:
                t += timedelta(hours=rng.choice([0.2, 0.3, 14]))  # a trip: nights between days
            else:
                t += timedelta(minutes=rng.randrange(1, 10))
            rows.append(
                {
                    "taken_at": t,
                    "gps_lat": at[0] if at else None,
                    "gps_lon": at[1] if at else None,
                    "place_city": city,
                }
            )
    insert_photos(studio, project, rows, thumbnails=True, seed=3)


def test_events_pages(live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    projects.create_project(studio, name="life", task="library")
    page.goto(f"{base}/projects/life/events")
    expect(page.locator("#ev-empty")).to_contain_text("No events yet")
    shot(page, "events-01-empty")

    _fill(studio, "life")
    page.goto(f"{base}/projects/life/events")
    expect(page.locator("#ev-stale")).to_contain_text("worked out again")
    job = events.list_events(studio, project="life")["job"]
    if job is not None:  # else the server's worker is done with it already
        Worker(studio).run_to_end(job["id"])
    page.goto(f"{base}/projects/life/events")
    cards = page.locator("#ev-list .ev-card")
    listed = events.list_events(studio, project="life", limit=500)
    expect(cards).to_have_count(listed["total"])
    assert listed["total"] == 15
    expect(page.locator("#ev-list h2.ev-year")).to_have_text(["2024", "2023"])
    (trip,) = [e for e in listed["items"] if e["place"] == "Lisbon"]
    assert trip["name"].startswith("Lisbon, 3–") and trip["name"].endswith(" May 2024")
    lisbon = page.locator(".ev-card", has_text="Lisbon")
    expect(lisbon.locator(".ev-name")).to_have_text(trip["name"])
    expect(lisbon.locator(".ev-count")).to_have_text("30 photos")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.ev-cover img')].every(i => i.complete && i.naturalWidth)"
    )
    shot(page, "events-02-list")

    # an event's page: rename (a long name), split, merge back
    lisbon.click()
    alpine_ready(page)
    expect(page.locator("#ev-title")).to_have_text(trip["name"])
    photos = page.locator("#ev-photos .ev-photo")
    expect(photos).to_have_count(30)
    expect(photos.first.locator(".ev-split")).to_have_count(0)  # an event starts at its first photo
    page.locator("[data-testid=ev-edit-name]").click()
    page.locator("#ev-name").fill(LONG)
    page.locator("[data-testid=ev-rename]").click()
    expect(page.locator("#ev-title")).to_have_text(LONG)
    expect(page.locator("[data-testid=ev-facts]")).to_contain_text("named by you")
    shot(page, "events-03-event")

    event_id = int(page.url.rsplit("/", 1)[-1])
    tenth = photos.nth(10)
    at = int(tenth.get_attribute("data-sample-id") or 0)
    tenth.locator("[data-testid=ev-split]").click()
    expect(photos).to_have_count(10)
    expect(page.locator("#ev-title")).to_have_text(LONG)
    page.locator("[data-testid=ev-next]").click()
    expect(page.locator("#ev-photos .ev-photo")).to_have_count(20)
    expect(page.locator("#ev-photos .ev-photo").first).to_have_attribute("data-sample-id", str(at))
    page.locator("[data-testid=ev-merge-previous]").click()
    expect(page.locator("#ev-photos .ev-photo")).to_have_count(30)
    assert int(page.url.rsplit("/", 1)[-1]) == event_id
    # the split was undone: a recomputation keeps the event whole
    events.compute(studio, projects.get_project(studio, "life")["id"])
    page.reload()
    expect(page.locator("#ev-photos .ev-photo")).to_have_count(30)

    # an error is shown on the page, the event unchanged (a name with a control character)
    page.goto(
        f"{base}/projects/life/events/{event_id}?error=" + quote("an event name is at most 300 characters")
    )
    expect(page.locator("#ev-error")).to_contain_text("at most 300")
    page.goto(f"{base}/projects/life/events/999999")
    expect(page.locator("body")).to_contain_text("not found")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/projects/life/events")
    expect(cards.first).to_be_visible()
    shot(page, "events-04-phone")
    page.goto(f"{base}/projects/life/events/{event_id}")
    shot(page, "events-05-phone-event")
