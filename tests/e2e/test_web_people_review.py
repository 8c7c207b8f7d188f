"""The review of unplaced faces ("Is this Barack Obama?"), from real portraits plus two "twins"
photos (one face twice: the second face of each stays unplaced and is suggested as its person):
in-process (empty, yes, no, skip, undo, bad input) and in Chromium, answered with the keyboard."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import ImageOps
from test_web_people import FACES, HX, LONG_NAME, _portrait, _side_by_side, make_album
from web_factories import alpine_ready, checked_page, htmx_settled, serve, wait_for_job, web_settings

from face_photos import face_photos
from vistudio.api.app import create_app
from vistudio.config import Settings
from vistudio.jobs.worker import Worker
from vistudio.services import faces, ingest, people, projects
from vistudio.studio import Studio, open_studio

REVIEW = "/projects/family/people/review"


def make_twins_album(root: Path) -> Path:
    """The People pages' album plus "twins" photos of Obama and of Biden (one face twice; the
    second face of each stays unplaced: one person per photo)."""
    make_album(root)
    src = face_photos()
    obama, biden = _portrait(src / "obama.jpg"), _portrait(src / "biden.jpg")
    # the album has a mirrored Biden already: his twin is grey, so that no two faces are the same
    _side_by_side(obama, ImageOps.mirror(obama)).save(root / "twins.jpg", quality=90)
    _side_by_side(biden, ImageOps.grayscale(biden).convert("RGB")).save(root / "twins-biden.jpg", quality=90)
    return root


def _settings(root: Path) -> Settings:
    return web_settings(root, faces=FACES)


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_twins_album(tmp_path_factory.mktemp("album") / "photos")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, album: Path) -> Path:
    """A workspace whose library "family" has the album's faces grouped; each test copies it."""
    root = tmp_path_factory.mktemp("template")
    shutil.copytree(album, root / "photos")
    studio = open_studio(_settings(root))
    try:
        projects.create_project(studio, name="family", task="library")
        job = ingest.start_import(studio, project="family", source=root / "photos", fmt="folder")
        done = Worker(studio).run_to_end(job["id"])
        assert done is not None and done.status == "succeeded", done and done.error
        job = faces.start_faces(studio, project="family")
        done = Worker(studio).run_to_end(job["id"])
        assert done is not None and done.status == "succeeded", done and done.error
    finally:
        studio.close()
    return root / "ws"


@pytest.fixture
def family(template: Path, tmp_path: Path) -> Iterator[Studio]:
    shutil.copytree(template, tmp_path / "ws")
    studio = open_studio(_settings(tmp_path))
    yield studio
    studio.close()


@pytest.fixture
def client(family: Studio) -> TestClient:
    return TestClient(create_app(family))


def _queue(studio: Studio) -> list[dict[str, Any]]:
    return list(people.review_queue(studio, project="family")["items"])


def _shown(html: str) -> tuple[int, int] | None:
    """(face, person) of the suggestion a review body shows; None for the empty state."""
    m = re.search(r'data-testid="review-body" data-left="\d+" data-face="(\d+)" data-person="(\d+)"', html)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _assigned(studio: Studio, person: int) -> dict[int, str]:
    faces_of = people.get_person(studio, project="family", person=person)["person"]["faces"]
    return {f["id"]: f["assigned"] for f in faces_of}


# --- in-process ---------------------------------------------------------------------------------


def test_nothing_to_review(web_studio: Studio, album: Path) -> None:
    client = TestClient(create_app(web_studio))
    projects.create_project(web_studio, name="empty", task="library")
    r = client.get("/projects/empty/people/review")
    assert r.status_code == 200 and "<title>empty · Review faces · vistudio</title>" in r.text
    assert 'data-testid="review-empty"' in r.text and "Nothing to review" in r.text
    assert 'data-testid="review-yes"' not in r.text and 'href="/projects/empty/people"' in r.text
    assert 'data-testid="review-link"' not in client.get("/projects/empty/people").text
    # the review is a library's, like the People tab; unknown projects are not found
    projects.create_project(web_studio, name="shapes", task="classification")
    assert client.get("/projects/shapes/people/review").status_code == 404
    assert client.get("/projects/nope/people/review").status_code == 404
    assert client.get("/projects/empty/people/review?offset=-1").status_code == 422


def test_the_review_and_a_yes(client: TestClient, family: Studio) -> None:
    first, second = _queue(family)
    obama = first["person"]["id"]
    page = client.get("/projects/family/people").text
    assert 'data-testid="review-link"' in page and "Review 2 unplaced faces" in page
    assert f'href="{REVIEW}"' in page

    r = client.get(REVIEW)
    assert r.status_code == 200 and "<title>family · Review faces · vistudio</title>" in r.text
    assert _shown(r.text) == (first["face"]["id"], obama)
    assert "2 faces to review" in r.text and "Is this the same person?" in r.text  # unnamed yet
    assert f'src="/api/v1/faces/{first["face"]["id"]}/crop"' in r.text
    assert re.search(r'class="review-img review-cover" src="/api/v1/faces/\d+/crop"', r.text)
    assert f'href="/projects/family?sample={first["face"]["sample_id"]}"' in r.text
    assert 'data-key="y"' in r.text and 'data-key="n"' in r.text and 'data-key="ArrowRight"' in r.text

    people.rename(family, project="family", person=obama, name="Barack Obama")
    assert 'data-testid="review-question">Is this Barack Obama?</h3>' in client.get(REVIEW).text
    r = client.post(
        f"{REVIEW}/answer",
        data={"face": first["face"]["id"], "person": obama, "answer": "yes", "offset": 0},
        headers=HX,
    )
    # htmx gets the next suggestion and what was done, with its undo
    assert r.status_code == 200 and "<html" not in r.text
    assert _shown(r.text) == (second["face"]["id"], second["person"]["id"])
    assert "Placed in Barack Obama." in r.text and 'data-testid="review-undo"' in r.text
    assert "1 face to review" in r.text and 'data-testid="review-skip"' not in r.text  # none to skip to
    assert _assigned(family, obama)[first["face"]["id"]] == "manual"
    assert "Review 1 unplaced face<" in client.get("/projects/family/people").text

    # a plain form post: a redirect back to the review, which is then empty
    r = client.post(
        f"{REVIEW}/answer",
        data={"face": second["face"]["id"], "person": second["person"]["id"], "answer": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == REVIEW
    assert 'data-testid="review-empty"' in client.get(REVIEW).text
    assert 'data-testid="review-link"' not in client.get("/projects/family/people").text


def test_a_no_is_remembered_and_undone(client: TestClient, family: Studio) -> None:
    first, second = _queue(family)
    face, obama = first["face"]["id"], first["person"]["id"]
    r = client.post(f"{REVIEW}/answer", data={"face": face, "person": obama, "answer": "no"}, headers=HX)
    assert r.status_code == 200 and f"Not Unnamed person #{obama}" in r.text
    assert "will not be suggested there again" in r.text
    assert _shown(r.text) == (second["face"]["id"], second["person"]["id"])
    assert [x["face"]["id"] for x in _queue(family)] == [second["face"]["id"]]
    assert face not in _assigned(family, obama)

    # undo: the face is asked about again, then redo says no again
    r = client.post(f"{REVIEW}/undo", data={"what": "undo", "face": face}, headers=HX)
    assert r.status_code == 200 and re.search(rf"Undone: face {face} is not person {obama}\.", r.text)
    assert _shown(r.text) == (face, obama) and 'data-testid="review-redo"' in r.text
    assert "2 faces to review" in r.text
    r = client.post(f"{REVIEW}/undo", data={"what": "redo"}, headers=HX)
    assert (
        r.status_code == 200
        and "Redone:" in r.text
        and _shown(r.text) == (second["face"]["id"], second["person"]["id"])
    )
    # the People page offers the same undo
    assert "Last change: face" in client.get("/projects/family/people").text


def test_skipping_wraps_around(client: TestClient, family: Studio) -> None:
    first, second = _queue(family)
    r = client.get(f"{REVIEW}?offset=1", headers=HX)
    assert r.status_code == 200 and "<html" not in r.text
    assert _shown(r.text) == (second["face"]["id"], second["person"]["id"])
    assert f'hx-get="{REVIEW}?offset=2"' in r.text and 'name="offset" value="1"' in r.text
    # past the end: back to the first
    wrapped = client.get(f"{REVIEW}?offset=2", headers=HX).text
    assert _shown(wrapped) == (first["face"]["id"], first["person"]["id"])
    # answering the second leaves the first at that place's turn, wrapping round
    r = client.post(
        f"{REVIEW}/answer",
        data={"face": second["face"]["id"], "person": second["person"]["id"], "answer": "yes", "offset": 1},
        headers=HX,
    )
    assert (
        _shown(r.text) == (first["face"]["id"], first["person"]["id"]) and 'name="offset" value="0"' in r.text
    )


def test_bad_answers_are_said(client: TestClient, family: Studio) -> None:
    first, _ = _queue(family)
    face, obama = first["face"]["id"], first["person"]["id"]

    def post(**data: Any) -> Any:
        return client.post(
            f"{REVIEW}/answer", data={"face": face, "person": obama, "answer": "yes", **data}, headers=HX
        )

    unknown_face = post(face=987654)
    assert unknown_face.status_code == 404 and unknown_face.headers["HX-Retarget"] == "#review-error"
    assert "not in this project" in unknown_face.text and "987654" in unknown_face.text
    unknown_person = post(person=987654)
    assert unknown_person.status_code == 404 and "person 987654 not found" in unknown_person.text
    assert post(answer="maybe").status_code == 422 and "answer is yes or no" in post(answer="maybe").text
    assert post(face="x").status_code == 422 and "the face must be a number" in post(face="x").text
    assert post(person="").status_code == 422
    assert client.post(f"{REVIEW}/answer", data={"face": face}, headers=HX).status_code == 422
    assert _queue(family)[0]["face"]["id"] == face  # nothing was answered
    # nothing to undo yet; an unknown step
    nothing = client.post(f"{REVIEW}/undo", data={"what": "undo"}, headers=HX)
    assert nothing.status_code == 409 and "nothing to undo" in nothing.text
    assert client.post(f"{REVIEW}/undo", data={"what": "again"}, headers=HX).status_code == 422
    # without htmx, an error is a page
    page = client.post(f"{REVIEW}/answer", data={"face": 987654, "person": obama, "answer": "no"})
    assert page.status_code == 404 and "<html" in page.text and "not in this project" in page.text
    assert (
        client.post(
            "/projects/nope/people/review/answer", data={"face": 1, "person": 1, "answer": "no"}
        ).status_code
        == 404
    )


# --- in Chromium --------------------------------------------------------------------------------


def _press(page: Any, key: str) -> None:
    """Press a review key once the suggestion shown has settled in (keys before that do nothing)."""
    htmx_settled(page)
    page.wait_for_function("() => !document.querySelector('#review-body.htmx-added')")
    page.keyboard.press(key)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Studio, Path]]:
    """The conftest's server, with faces read in this process (no pool to start)."""
    root = tmp_path_factory.mktemp("web")
    studio = open_studio(_settings(root))
    app = create_app(studio, workers=1)
    with serve(app) as base:
        yield base, studio, root
    studio.close()


@pytest.mark.browser
@pytest.mark.slow
def test_review_with_the_keyboard(
    live_server: tuple[str, Studio, Path], page: Any, browser: Any, shot: Callable[..., Path], album: Path
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    base_url, studio, root = live_server
    shutil.copytree(album, root / "photos")
    projects.create_project(studio, name="family", task="library")
    job = ingest.start_import(studio, project="family", source=root / "photos", fmt="folder")
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    job = faces.start_faces(studio, project="family")
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    first, second = _queue(studio)
    obama, biden = first["person"]["id"], second["person"]["id"]
    people.rename(studio, project="family", person=obama, name="Barack Obama")
    people.rename(studio, project="family", person=biden, name="Joe Biden")

    # the People page offers the review
    page.goto(f"{base_url}/projects/family/people")
    alpine_ready(page)
    expect(page.locator('[data-testid="review-link"]')).to_have_text("Review 2 unplaced faces")
    shot(page, "people-review-link", full_page=False)
    page.click('[data-testid="review-link"]')
    body = page.locator('[data-testid="review-body"]')
    expect(body).to_have_attribute("data-face", str(first["face"]["id"]))
    expect(page.locator('[data-testid="review-question"]')).to_have_text("Is this Barack Obama?")
    expect(page.locator('[data-testid="review-left"]')).to_have_text("2 faces to review")
    assert page.evaluate("document.querySelector('[data-testid=review-face]').naturalWidth") > 0
    assert page.evaluate("document.querySelector('[data-testid=review-cover]').naturalWidth") > 0
    shot(page, "people-review", full_page=False)

    # → skips to the next one (no page load: the marker set on the window survives), N says no
    page.evaluate("window.__stayed = true")
    _press(page, "ArrowRight")
    expect(body).to_have_attribute("data-face", str(second["face"]["id"]))
    expect(page.locator('[data-testid="review-question"]')).to_have_text("Is this Joe Biden?")
    _press(page, "n")
    expect(page.locator('[data-testid="review-message"]')).to_contain_text("Not Joe Biden")
    expect(body).to_have_attribute("data-face", str(first["face"]["id"]))
    expect(page.locator('[data-testid="review-left"]')).to_have_text("1 face to review")
    assert [x["face"]["id"] for x in _queue(studio)] == [first["face"]["id"]]
    shot(page, "people-review-answered", full_page=False)

    # U takes the no back: Biden's twin is asked about again; Y answers yes to it
    _press(page, "u")
    expect(page.locator('[data-testid="review-message"]')).to_contain_text("Undone:")
    expect(body).to_have_attribute("data-face", str(second["face"]["id"]))
    _press(page, "y")
    expect(page.locator('[data-testid="review-message"]')).to_contain_text("Placed in Joe Biden.")
    assert _assigned(studio, biden)[second["face"]["id"]] == "manual"
    assert page.evaluate("window.__stayed === true")

    # a very long name: the question wraps inside the card
    people.rename(studio, project="family", person=obama, name=LONG_NAME)
    page.reload()
    alpine_ready(page)
    page.evaluate("window.__stayed = true")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    card, question = (
        page.locator(s).bounding_box()
        for s in ('[data-testid="review-card"]', '[data-testid="review-question"]')
    )
    assert card and question and question["x"] + question["width"] <= card["x"] + card["width"]
    shot(page, "people-review-long-name", full_page=False)
    with checked_page(browser, {"width": 390, "height": 844}) as phone:
        phone.goto(f"{base_url}/projects/family/people")
        expect(phone.locator('[data-testid="review-link"]')).to_have_text("Review 1 unplaced face")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(phone, "people-review-link-phone", full_page=False)
        phone.goto(f"{base_url}{REVIEW}")
        alpine_ready(phone)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(phone, "people-review-phone", full_page=True)

    # Y on the last one: the empty state, still without a page load
    _press(page, "y")
    expect(page.locator('[data-testid="review-empty"]')).to_be_visible()
    assert _assigned(studio, obama)[first["face"]["id"]] == "manual"
    htmx_settled(page)
    shot(page, "people-review-empty", full_page=False)
    _press(page, "y")  # nothing left to answer: nothing happens
    assert page.evaluate("window.__stayed === true")
