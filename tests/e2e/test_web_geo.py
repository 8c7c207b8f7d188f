"""The Map tab in headless Chromium, with the network cut (every tile request aborted): the vendored
world outline still draws, clusters carry the counts the API gives, a click on a cluster zooms in,
a selected area lists exactly the photos the API finds there, "Show in Dataset" filters the grid to
it, a lone photo's popup links to it; the empty state and the phone layout."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from web_factories import checked_page, serve, web_settings

from factories import insert_photos
from vistudio.api.app import create_app
from vistudio.services import projects
from vistudio.studio import Studio, open_studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = "Travels with the old phone - Lisbon Paris and the Pacific - never sorted"
# (centre, spread in degrees, how many)
CROWDS = [
    ((38.72, -9.14), 0.03, 150),
    ((48.86, 2.35), 0.05, 90),
    ((-17.7, 178.5), 0.8, 6),
    ((-13.8, -171.8), 0.5, 4),
]
ALONE = (64.14, -21.94)  # one photo in Reykjavik
NO_GPS = 5


@pytest.fixture(scope="module")
def online_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Studio]]:
    """The app served by uvicorn with a workspace that is *online* (so the page asks for map tiles,
    which the browser tests then cut off): (base URL, studio)."""
    root = tmp_path_factory.mktemp("geo")
    studio = open_studio(web_settings(root, offline=False))
    app = create_app(studio, workers=0)
    with serve(app) as base:
        yield base, studio
    studio.close()


def _fill(studio: Studio, project: str, *, gps: bool = True) -> None:
    rng = random.Random(11)
    projects.create_project(studio, name=project, task="library")
    points: list[tuple[float | None, float | None]] = []
    if gps:
        for (lat, lon), spread, n in CROWDS:
            for _ in range(n):
                x = lon + rng.uniform(-spread, spread)
                points.append((lat + rng.uniform(-spread, spread), x - 360 if x > 180 else x))
        points.append(ALONE)
    points += [(None, None)] * NO_GPS
    rows = [
        {
            "name": f"DCIM/IMG_{i:04d}.jpg",
            "taken_at": datetime(2018, 1, 1) + timedelta(hours=rng.randrange(3 * 365 * 24)),
            "gps_lat": lat,
            "gps_lon": lon,
        }
        for i, (lat, lon) in enumerate(points)
    ]
    insert_photos(studio, project, rows, thumbnails=True, seed=11)


def _offline(page: Any) -> list[str]:
    """Abort every request that leaves the machine (the tiles); the list of those aborted."""
    aborted: list[str] = []

    def handle(route: Any) -> None:
        aborted.append(route.request.url)
        route.abort("internetdisconnected")

    page.context.route(lambda url: not url.startswith("http://127.0.0.1"), handle)
    return aborted


def _ready(page: Any) -> None:
    page.wait_for_function(
        "(() => { const m = document.getElementById('geo-map');"
        " return m && m.dataset.outline === 'drawn' && m.dataset.zoom !== undefined && !m.dataset.loading; })()"
    )


def _drawn(page: Any) -> dict[str, Any]:
    return page.evaluate(  # type: ignore[no-any-return]
        """() => ({
          clusters: [...document.querySelectorAll('#geo-map .geo-cluster')].map(c => +c.dataset.count),
          photos: [...document.querySelectorAll('#geo-map .geo-photo')].map(p => +p.dataset.sampleId),
          answer: window.vistudioGeo.clusters(),
          zoom: +document.getElementById('geo-map').dataset.zoom,
        })"""
    )


def _api(page: Any, url: str) -> dict[str, Any]:
    resp = page.request.get(url)
    assert resp.ok, resp.text()
    return resp.json()  # type: ignore[no-any-return]


def _point(page: Any, lat: float, lon: float) -> tuple[float, float]:
    """Where a position is on the page, in CSS pixels."""
    return tuple(  # type: ignore[return-value]
        page.evaluate(
            """([lat, lon]) => { const m = window.vistudioGeo.map; const p = m.latLngToContainerPoint([lat, lon]);
               const r = m.getContainer().getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }""",
            [lat, lon],
        )
    )


def test_geo_page(online_server: tuple[str, Studio], browser: Any, shot: Callable[..., Path]) -> None:
    url, studio = online_server
    with checked_page(browser, {"width": 1280, "height": 800}) as page:
        aborted = _offline(page)
        # a library whose photos have no position says so
        _fill(studio, "no gps", gps=False)
        page.goto(f"{url}/projects/{quote('no gps')}/geo")
        empty = page.get_by_test_id("geo-empty")
        assert empty.is_visible() and f"None of the {NO_GPS} photos" in empty.inner_text()
        shot(page, "geo-empty")

        _fill(studio, LONG)
        base = f"{url}/projects/{quote(LONG, safe='')}"
        api = f"{url}/api/v1/projects/{quote(LONG, safe='')}/geo"
        page.goto(base)
        page.get_by_test_id("geo-tab").click()  # next to the grid's tab
        page.wait_for_url(f"{base}/geo")
        assert page.get_by_test_id("geo-tab").get_attribute("aria-current") == "page"
        _ready(page)
        # offline: the tiles were asked for and failed, the outline is there all the same
        assert any("tile.openstreetmap.org" in u for u in aborted)
        page.get_by_test_id("geo-offline").wait_for(state="visible")
        assert page.locator("#geo-map path.geo-outline").count() > 100
        assert "OpenStreetMap" in page.locator(".leaflet-control-attribution").inner_text()
        total = sum(n for _, _, n in CROWDS) + 1
        assert (
            f"{total} photos with a GPS position, {NO_GPS} without"
            in page.get_by_test_id("geo-summary").inner_text()
        )

        # the clusters drawn are the API's for the view, and hold every photo
        drawn = _drawn(page)
        answer = drawn["answer"]
        assert answer["photos"] == total
        assert sorted(drawn["clusters"]) == sorted(c["count"] for c in answer["clusters"] if c["count"] > 1)
        assert sum(drawn["clusters"]) + len(drawn["photos"]) == total
        again = _api(page, f"{api}/clusters?bbox={','.join(map(str, answer['bbox']))}&zoom={answer['zoom']}")
        assert again["clusters"] == answer["clusters"]
        shot(page, "geo-offline-outline", full_page=False)

        # a click on the biggest cluster zooms in to its photos
        before = drawn["zoom"]
        biggest = max(drawn["clusters"])
        page.locator(f"#geo-map .geo-cluster[data-count='{biggest}']").click()
        page.wait_for_function(f"+document.getElementById('geo-map').dataset.zoom > {before}")
        _ready(page)
        after = _drawn(page)
        assert after["zoom"] > before and after["answer"]["photos"] >= biggest
        shot(page, "geo-zoomed", full_page=False)

        # select an area around Lisbon: the photos listed are exactly the API's for that area
        page.evaluate("window.vistudioGeo.map.setView([38.72, -9.14], 11, {animate: false})")
        _ready(page)
        page.get_by_test_id("geo-select").click()
        assert page.get_by_test_id("geo-select").get_attribute("aria-pressed") == "true"
        x0, y0 = _point(page, 38.74, -9.16)
        x1, y1 = _point(page, 38.70, -9.12)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
        page.mouse.move(x1, y1, steps=4)
        page.mouse.up()
        count = page.get_by_test_id("geo-count")
        count.wait_for()
        bbox = page.get_by_test_id("geo-selection-head").get_attribute("data-bbox")
        assert bbox is not None
        w, s, e, n = map(float, bbox.split(","))
        assert w == pytest.approx(-9.16, abs=0.002) and n == pytest.approx(38.74, abs=0.002)
        assert e == pytest.approx(-9.12, abs=0.002) and s == pytest.approx(38.70, abs=0.002)
        inside = _api(page, f"{api}/photos?bbox={bbox}&limit=500")
        assert 20 < inside["total"] < 150  # some of Lisbon's photos, not all
        assert count.get_attribute("data-total") == str(inside["total"])
        assert page.url.endswith("geo?bbox=" + quote(bbox, safe=""))
        tiles = page.locator("#geo-grid a.geo-tile")
        for _ in range(10):  # "Load more" loads the next page as it scrolls into view
            if page.get_by_test_id("geo-more").count() == 0:
                break
            shown = tiles.count()
            page.get_by_test_id("geo-more").scroll_into_view_if_needed()
            page.wait_for_function(f"document.querySelectorAll('#geo-grid a.geo-tile').length > {shown}")
        ids = [int(i) for i in tiles.evaluate_all("ts => ts.map(t => t.dataset.sampleId)")]
        assert ids == [i["id"] for i in inside["items"]]  # the same photos, newest first
        page.evaluate("window.scrollTo(0, 0)")
        shot(page, "geo-selection")

        # "Show in Dataset": the grid filtered to that area
        page.get_by_test_id("geo-dataset-link").click()
        page.wait_for_url(f"{base}?bbox=*")
        assert page.get_by_test_id("bbox-filter").is_visible()
        assert page.locator("#grid").get_attribute("data-total") == str(inside["total"])
        listed = _api(page, f"{url}/api/v1/samples?project={quote(LONG, safe='')}&bbox={bbox}&limit=500")
        assert {i["id"] for i in listed["items"]} == {i["id"] for i in inside["items"]}
        shot(page, "geo-dataset-filtered", full_page=False)
        # unticking the area drops the filter
        page.get_by_test_id("bbox-filter-on").uncheck()
        page.wait_for_function(f"document.querySelector('#grid').dataset.total === '{total + NO_GPS}'")

        # back on the map with that area (the grid's link), and across the antimeridian
        page.goto(f"{base}/geo?bbox={bbox}")
        page.get_by_test_id("geo-count").wait_for()
        assert page.get_by_test_id("geo-count").get_attribute("data-total") == str(inside["total"])
        page.evaluate("window.vistudioGeo.select([170, -25, -170, -10])")
        page.wait_for_function(
            "document.querySelector('[data-testid=geo-selection-head]')?.dataset.bbox === '170,-25,-170,-10'"
        )
        assert page.get_by_test_id("geo-count").get_attribute("data-total") == "10"

        # a lone photo: a marker whose popup shows its thumbnail and opens it
        page.evaluate(f"window.vistudioGeo.map.setView([{ALONE[0]}, {ALONE[1]}], 9, {{animate: false}})")
        _ready(page)
        marker = page.locator("#geo-map .geo-photo")
        assert marker.count() == 1
        marker.click()
        popup = page.get_by_test_id("geo-popup")
        popup.wait_for()
        page.wait_for_function("document.querySelector('[data-testid=geo-popup] img').naturalWidth > 0")
        sid = popup.get_attribute("data-sample-id")
        assert popup.get_attribute("href") == f"/projects/{quote(LONG, safe='')}?sample={sid}"
        page.wait_for_function("getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
        shot(page, "geo-popup", full_page=False)

    # phone: the map and the photos one above the other, nothing wider than the screen
    with checked_page(browser, {"width": 390, "height": 844}) as phone:
        _offline(phone)
        phone.goto(f"{base}/geo?bbox={bbox}")
        _ready(phone)
        phone.get_by_test_id("geo-count").wait_for()
        for part in ("#geo-map", "#geo-grid", "#geo-select"):
            box = phone.locator(part).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, part
        shot(phone, "geo-phone")
