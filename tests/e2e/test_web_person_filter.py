"""The People filter of the Dataset and Search pages, in headless Chromium: pick people by typing
(10,000 people in the project), chips, ?person= in the address (reload, back, forward), all of the
people together, the empty state with its way out, search text with the filter, a 120-character
name, a phone; and the person page's "See all photos" link.

The people are rows written straight into the database (faces without a face model to run): the
filter reads only who is in which photo."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from web_factories import (
    alpine_ready,
    checked_page,
    htmx_settled,
    make_tiny_folder,
    serve,
    wait_for_job,
    web_settings,
)

from embed_factories import with_embed
from vistudio.api.app import create_app
from vistudio.db.faces import Face, Person
from vistudio.services import embeddings, ingest, projects, samples
from vistudio.studio import Studio, open_studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path("/tmp/shots")
LONG_NAME = ("Anna-Katharina Wilhelmina von Hohenzollern-Sigmaringen und Schaumburg-Lippe " * 3)[:120].strip()
GUESTS = 10_000  # named people without photos: the picker must find the few it needs among them


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Studio, Path]]:
    """The conftest's server, with the tiny embedding model (for the Search page)."""
    root = tmp_path_factory.mktemp("web")
    studio = open_studio(with_embed(web_settings(root)))
    app = create_app(studio, workers=1)
    with serve(app) as base:
        yield base, studio, root
    studio.close()


def add_people(
    studio: Studio, project: str, photos: dict[str | None, list[int]], **flags: Any
) -> dict[str, int]:
    """People (name → the sample ids they are in; None: an unnamed one), one face per photo; the
    ``hidden`` flag hides the people named in it. Their ids by name ("" for the unnamed one)."""
    project_id = projects.get_project(studio, project)["id"]
    hidden = set(flags.get("hidden", ()))
    out: dict[str, int] = {}
    with studio.sessions.begin() as s:
        for k, (name, sample_ids) in enumerate(photos.items()):
            person = Person(project_id=project_id, name=name, hidden=name in hidden)
            s.add(person)
            s.flush()
            out[name or ""] = person.id
            crop = io.BytesIO()
            Image.new("RGB", (48, 48), ((60 * k) % 256, 120, 200)).save(crop, format="WEBP")
            for n, sid in enumerate(sample_ids):
                face = Face(
                    project_id=project_id,
                    sample_id=sid,
                    model="test",
                    x=0.1 + 0.01 * n,
                    y=0.1,
                    w=0.3,
                    h=0.3,
                    score=0.99,
                    embedding=bytes(512),
                    crop=crop.getvalue(),
                    person_id=person.id,
                    assigned="manual",
                )
                s.add(face)
                if n == 0:
                    s.flush()
                    person.cover_face_id = face.id
    return out


@pytest.fixture(scope="module")
def album(live_server: tuple[str, Studio, Path]) -> dict[str, Any]:
    """A library "album" of 12 pictures, embedded, with five people and 10,000 named guests."""
    _, studio, root = live_server
    source = make_tiny_folder(root / "album", count=12)
    projects.create_project(studio, name="album", task="library")
    assert (
        wait_for_job(studio, ingest.start_import(studio, project="album", source=source)["id"])["status"]
        == "succeeded"
    )
    ids = [s["id"] for s in samples.list_samples(studio, project="album", limit=100)["items"]]
    who = add_people(
        studio,
        "album",
        {
            "Alice Martin": ids[0:5],
            "Bob Chen": ids[3:7],
            LONG_NAME: ids[8:9],
            None: ids[9:11],
            "Harry Hidden": ids[0:2],
        },
        hidden=["Harry Hidden"],
    )
    project_id = projects.get_project(studio, "album")["id"]
    with studio.sessions.begin() as s:
        s.add_all(Person(project_id=project_id, name=f"Guest {i:05d}") for i in range(GUESTS))
    job = embeddings.start_embedding(studio, project="album")
    assert wait_for_job(studio, job["id"], timeout=120)["status"] == "succeeded"
    projects.create_project(studio, name="empty-lib", task="library")
    return {"ids": ids, "who": who}


def _shot(page: Any, name: str, *, full_page: bool = False) -> None:
    """A screenshot with the filters at the top of the window (below the sticky top bar)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate(
        "() => { const a = document.querySelector('aside.filters');"
        " if (a) window.scrollTo(0, a.getBoundingClientRect().top + window.scrollY - 70); }"
    )
    page.screenshot(path=str(SHOTS / f"person_filter_{name}.png"), full_page=full_page)


def _api_ids(page: Any, base: str, *people: int) -> set[str]:
    """The sample ids the REST API gives for photos of all these people."""
    query = "&".join(f"person={p}" for p in people)
    r = page.request.get(f"{base}/api/v1/samples?project=album&limit=500&{query}")
    assert r.ok, r.text()
    return {str(s["id"]) for s in r.json()["items"]}


def _grid_ids(page: Any) -> set[str]:
    return set(page.locator("#grid [data-sample-id]").evaluate_all("els => els.map(e => e.dataset.sampleId)"))


def _url_people(page: Any) -> list[str]:
    return parse_qs(urlsplit(page.url).query).get("person", [])


def _wait_people(page: Any, *people: int) -> None:
    """Wait until the address names these people (the filter's request pushed it)."""
    page.wait_for_function(
        "want => JSON.stringify(new URLSearchParams(location.search).getAll('person')) === want",
        arg=str([str(p) for p in people]).replace("'", '"').replace(", ", ","),
    )


def _pick(page: Any, typed: str, person: int) -> None:
    """Type in the People box, then click that person's option; wait for the new grid."""
    box = page.get_by_test_id("person-input")
    box.fill(typed)
    option = page.locator(f'[data-testid="person-option"][data-person="{person}"]')
    option.wait_for()
    option.click()
    htmx_settled(page)


def _no_overflow(page: Any) -> None:
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
        ".slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
    control = page.get_by_test_id("person-filter").bounding_box()
    aside = page.locator("aside.filters").bounding_box()
    assert control and aside and control["x"] + control["width"] <= aside["x"] + aside["width"] + 1
    for chip in page.get_by_test_id("person-chip").all():
        box = chip.bounding_box()
        assert box and box["x"] + box["width"] <= aside["x"] + aside["width"] + 1


def test_person_filter_on_the_dataset_page(
    live_server: tuple[str, Studio, Path], album: dict[str, Any], page: Any
) -> None:
    from playwright.sync_api import expect

    base, _, _ = live_server
    who, ids = album["who"], album["ids"]
    alice, bob, long_one = who["Alice Martin"], who["Bob Chen"], who[LONG_NAME]
    url = f"{base}/projects/album"

    # the control, empty: all 12 pictures
    page.goto(url)
    alpine_ready(page)
    expect(page.locator("#grid [data-sample-id]")).to_have_count(12)
    expect(page.get_by_test_id("person-summary")).to_contain_text("photos with all of them")
    _shot(page, "empty")

    # typing narrows the 10,005 people to the names that contain it (any case); hidden ones never
    page.get_by_test_id("person-input").click()
    expect(page.get_by_test_id("person-option")).to_have_count(20)  # the first 20, named first
    expect(page.get_by_test_id("person-options")).to_contain_text("type to narrow")
    page.get_by_test_id("person-input").fill("HARRY")
    expect(page.get_by_test_id("person-options-none")).to_contain_text("No one’s name contains “HARRY”")
    page.get_by_test_id("person-input").fill("guest 0999")
    expect(page.get_by_test_id("person-option")).to_have_count(10)  # Guest 09990 … 09999
    page.get_by_test_id("person-input").fill("in")
    expect(page.get_by_test_id("person-option")).to_have_count(2)  # Alice Martin, Anna-Katharina …
    _shot(page, "options")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("person-options")).to_be_hidden()

    # one person: the grid is exactly that person's photos, as the API says; the address says who
    _pick(page, "alice", alice)
    expect(page.get_by_test_id("person-chip")).to_have_count(1)
    expect(page.get_by_test_id("person-summary")).to_have_text("Photos with Alice Martin")
    expect(page.locator("#grid [data-sample-id]")).to_have_count(5)
    assert _grid_ids(page) == _api_ids(page, base, alice) == {str(i) for i in ids[0:5]}
    assert _url_people(page) == [str(alice)]

    # two people: photos with both of them (AND), written out; picked by keyboard this time
    page.get_by_test_id("person-input").fill("bob c")
    expect(page.locator(f'[data-testid="person-option"][data-person="{bob}"]')).to_be_visible()
    page.get_by_test_id("person-input").press("Enter")
    htmx_settled(page)
    expect(page.get_by_test_id("person-chip")).to_have_count(2)
    expect(page.get_by_test_id("person-summary")).to_have_text("Photos with all of: Alice Martin, Bob Chen")
    expect(page.locator("#grid [data-sample-id]")).to_have_count(2)
    assert _grid_ids(page) == _api_ids(page, base, alice, bob) == {str(i) for i in ids[3:5]}
    assert _url_people(page) == [str(alice), str(bob)]
    expect(page.get_by_test_id("grid-summary")).to_contain_text("match the filters")
    _no_overflow(page)
    _shot(page, "two_chips")

    # a saved view keeps the other filters only (views.GRID_KEYS): saving refuses rather than drop them
    page.fill("#view-name", "both of them")
    page.get_by_role("button", name="Save view").click()
    expect(page.locator(".saved-views .alert-error")).to_contain_text("cannot keep the People filter")

    # a reload keeps it; back and forward walk through the filters
    page.reload()
    alpine_ready(page)
    expect(page.get_by_test_id("person-chip")).to_have_count(2)
    assert _grid_ids(page) == {str(i) for i in ids[3:5]}
    page.go_back()
    expect(page.get_by_test_id("person-chip")).to_have_count(1)
    expect(page.locator("#grid [data-sample-id]")).to_have_count(5)
    assert _url_people(page) == [str(alice)]
    page.go_forward()
    expect(page.get_by_test_id("person-chip")).to_have_count(2)
    expect(page.locator("#grid [data-sample-id]")).to_have_count(2)
    alpine_ready(page)

    # the other filters combine with it
    page.fill("#f-q", "tiny_0004")
    expect(page.locator("#grid [data-sample-id]")).to_have_count(1)
    assert set(parse_qs(urlsplit(page.url).query)) >= {"q", "person"}
    page.fill("#f-q", "")
    expect(page.locator("#grid [data-sample-id]")).to_have_count(2)
    htmx_settled(page)

    # nobody's photos together: the empty state says why, with a way out; the long name stays in
    _pick(page, "hohenzollern", long_one)
    expect(page.get_by_test_id("person-chip")).to_have_count(3)
    expect(page.get_by_test_id("grid-total")).to_have_text("0")
    empty = page.get_by_test_id("person-filter-empty")
    expect(empty).to_contain_text("No photo shows all of: Alice Martin, Bob Chen, Anna-Katharina")
    _no_overflow(page)
    chip_label = page.locator(f'[data-testid="person-chip"][data-person="{long_one}"] .person-chip-label')
    assert chip_label.evaluate("el => el.scrollWidth > el.clientWidth")  # cut with an ellipsis
    _shot(page, "no_match")

    # removing a chip takes that person out; clearing restores everything
    page.locator(
        f'[data-testid="person-chip"][data-person="{bob}"] [data-testid="person-chip-remove"]'
    ).click()
    _wait_people(page, alice, long_one)
    expect(page.get_by_test_id("person-filter-empty")).to_contain_text("No photo shows all of")
    page.get_by_test_id("person-filter-clear-empty").click()
    _wait_people(page)
    expect(page.get_by_test_id("person-chip")).to_have_count(0)
    expect(page.locator("#grid [data-sample-id]")).to_have_count(12)

    # an unnamed person is called as the People pages call them
    unnamed = who[""]
    page.goto(f"{url}?person={unnamed}")
    alpine_ready(page)
    expect(page.get_by_test_id("person-chip")).to_have_text(f"Unnamed person #{unnamed}")
    assert _grid_ids(page) == _api_ids(page, base, unnamed) == {str(i) for i in ids[9:11]}

    # the person page links to their photos here
    page.goto(f"{url}/people/{bob}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "person_filter_person_page.png"))
    page.get_by_test_id("person-see-all").click()
    expect(page).to_have_url(re.compile(rf"/projects/album\?person={bob}$"))
    alpine_ready(page)
    expect(page.get_by_test_id("person-chip")).to_have_text("Bob Chen")
    assert _grid_ids(page) == _api_ids(page, base, bob) == {str(i) for i in ids[3:7]}


def test_person_filter_on_the_search_page(
    live_server: tuple[str, Studio, Path], album: dict[str, Any], page: Any
) -> None:
    from playwright.sync_api import expect

    base, _, _ = live_server
    who, ids = album["who"], album["ids"]
    alice, bob = who["Alice Martin"], who["Bob Chen"]

    page.goto(f"{base}/projects/album/search?text=a+photo")
    alpine_ready(page)
    expect(page.get_by_test_id("result")).to_have_count(12)
    _pick(page, "martin", alice)
    expect(page.get_by_test_id("result")).to_have_count(5)
    found = set(page.get_by_test_id("result").evaluate_all("els => els.map(e => e.dataset.sampleId)"))
    assert found == {str(i) for i in ids[0:5]}
    assert _url_people(page) == [str(alice)]
    assert parse_qs(urlsplit(page.url).query)["text"] == ["a photo"]
    expect(page.get_by_test_id("results-summary")).to_contain_text("filtered")
    # "More like this" keeps the people
    assert f"person={alice}" in (page.get_by_test_id("more-like-this").first.get_attribute("href") or "")
    _pick(page, "bob", bob)
    expect(page.get_by_test_id("result")).to_have_count(2)
    found = set(page.get_by_test_id("result").evaluate_all("els => els.map(e => e.dataset.sampleId)"))
    assert found == {str(i) for i in ids[3:5]}
    _shot(page, "search")

    # a new text keeps the filter; a reload too
    page.get_by_test_id("search-text").fill("something else")
    page.get_by_test_id("search-text").press("Enter")
    htmx_settled(page)
    expect(page.get_by_test_id("result")).to_have_count(2)
    assert _url_people(page) == [str(alice), str(bob)]
    page.reload()
    alpine_ready(page)
    expect(page.get_by_test_id("person-chip")).to_have_count(2)
    expect(page.get_by_test_id("result")).to_have_count(2)

    # nobody together: the empty results say why and clear it
    _pick(page, "hohenzollern", who[LONG_NAME])
    expect(page.get_by_test_id("no-results")).to_be_visible()
    expect(page.get_by_test_id("person-filter-empty")).to_contain_text("No photo shows all of")
    page.get_by_test_id("person-filter-clear-empty").click()
    _wait_people(page)
    expect(page.get_by_test_id("result")).to_have_count(12)


def test_person_filter_without_people_and_on_a_phone(
    live_server: tuple[str, Studio, Path], album: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    base, _, _ = live_server
    who = album["who"]
    with checked_page(browser, {"width": 1280, "height": 800}) as page:
        # a library without people: the control says where people come from
        page.goto(f"{base}/projects/empty-lib")
        expect(page.get_by_test_id("person-input")).to_be_disabled()
        expect(page.get_by_test_id("person-filter-hint")).to_contain_text("Find faces on the People page")
        expect(page.get_by_test_id("person-filter-hint").locator("a")).to_have_attribute(
            "href", "/projects/empty-lib/people"
        )
        _shot(page, "no_people")
    with checked_page(browser, {"width": 390, "height": 844}) as phone:
        people = "&".join(f"person={p}" for p in (who["Alice Martin"], who["Bob Chen"], who[LONG_NAME]))
        phone.goto(f"{base}/projects/album?{people}")
        alpine_ready(phone)
        expect(phone.get_by_test_id("person-chip")).to_have_count(3)
        expect(phone.get_by_test_id("person-filter-empty")).to_be_visible()
        _no_overflow(phone)
        phone.get_by_test_id("person-filter").scroll_into_view_if_needed()
        phone.get_by_test_id("person-input").fill("guest")
        expect(phone.get_by_test_id("person-option")).to_have_count(20)
        options = phone.get_by_test_id("person-options").bounding_box()
        assert options and options["x"] >= 0 and options["x"] + options["width"] <= 390
        _shot(phone, "phone")
        phone.keyboard.press("Escape")
        phone.get_by_test_id("person-clear").click()
        expect(phone.get_by_test_id("person-chip")).to_have_count(0)
        expect(phone.locator("#grid [data-sample-id]")).to_have_count(12)
        _wait_people(phone)
        phone.goto(f"{base}/projects/album/search?text=a+photo&person={who['Alice Martin']}")
        alpine_ready(phone)
        expect(phone.get_by_test_id("result")).to_have_count(5)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        _shot(phone, "search_phone")


def test_search_by_image_and_pages_without_people(
    live_server: tuple[str, Studio, Path], album: dict[str, Any]
) -> None:
    """The image search takes the people from its form too; a project whose task has no People
    section and no people shows no control."""
    import httpx

    base, studio, root = live_server
    alice = album["who"]["Alice Martin"]
    picture = next((root / "album").glob("*.png")).read_bytes()
    r = httpx.post(
        f"{base}/projects/album/search/image",
        files={"file": ("query.png", picture, "image/png")},
        data={"person": [str(alice)], "k": "40"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200, r.text
    found = {int(i) for i in re.findall(r'data-testid="result" data-sample-id="(\d+)"', r.text)}
    assert found == set(album["ids"][0:5])
    assert f"person={alice}" in r.text  # "More like this" keeps the people
    r = httpx.post(
        f"{base}/projects/album/search/image",
        files={"file": ("query.png", picture, "image/png")},
        data={"person": ["999999"]},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 404 and "person &#39;999999&#39; not found" in r.text

    projects.create_project(studio, name="shapes", task="classification")
    page = httpx.get(f"{base}/projects/shapes").text
    assert 'data-testid="person-filter"' not in page and "person-filter.js" not in page
    # the infinite scroll's next page keeps the people
    more = httpx.get(f"{base}/projects/album/samples", params={"person": [str(alice)], "offset": "2"})
    assert more.status_code == 200 and more.text.count("data-sample-id=") == 3
