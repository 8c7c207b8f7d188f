"""The People pages of a photo library, from real portraits: in-process (the grid, its empty states,
a person's page and every action with its errors, face boxes on the photo detail, 1,000 people)
and in Chromium (find faces → people → rename → merge → split → "not this person" → re-group)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance, ImageOps
from web_factories import alpine_ready, checked_page, htmx_settled, serve, wait_for_job, web_settings

from face_photos import face_photos
from vistudio.api.app import create_app
from vistudio.config import FaceSettings, Settings
from vistudio.db.faces import Person
from vistudio.jobs.worker import Worker
from vistudio.services import faces, ingest, people, projects, samples
from vistudio.services import settings as settings_service
from vistudio.studio import Studio, open_studio

HX = {"HX-Request": "true"}
LONG_NAME = ("Maria Josefina Antonia de los Santos Fernández-Villanueva y Rodríguez " * 4)[:200].strip()
FACES = FaceSettings(workers=1, max_side=800)


def _portrait(path: Path) -> Image.Image:
    with Image.open(path) as im:
        out = ImageOps.exif_transpose(im).convert("RGB")
    out.thumbnail((500, 500))
    return out


def _side_by_side(a: Image.Image, b: Image.Image) -> Image.Image:
    out = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), (255, 255, 255))
    out.paste(a, (0, 0))
    out.paste(b, (a.width, 0))
    return out


def make_album(root: Path) -> Path:
    """Eight photos: Obama ×4 (one grey), Biden ×3 (one mirrored, one darker) and one of both."""
    src = face_photos()
    root.mkdir(parents=True, exist_ok=True)
    obama, biden = _portrait(src / "obama.jpg"), _portrait(src / "biden.jpg")
    photos = {
        "obama.jpg": obama,
        "obama2.jpg": _portrait(src / "obama2.jpg"),
        "obama3.jpg": _portrait(src / "obama3.jpg"),
        "obama-grey.jpg": ImageOps.grayscale(obama).convert("RGB"),
        "biden.jpg": biden,
        "biden-flipped.jpg": ImageOps.mirror(biden),
        "biden-dark.jpg": ImageEnhance.Brightness(biden).enhance(0.6),
        "together.jpg": _side_by_side(biden, obama),
    }
    for name, image in photos.items():
        image.save(root / name, quality=90)
    return root


def _settings(root: Path, **extra: Any) -> Settings:
    return web_settings(root, faces=extra.pop("faces", FACES), **extra)


def _import(studio: Studio, project: str, src: Path) -> None:
    job = ingest.start_import(studio, project=project, source=src, fmt="folder")
    done = Worker(studio).run_to_end(job["id"])
    assert done is not None and done.status == "succeeded", done and done.error


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_album(tmp_path_factory.mktemp("album") / "photos")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, album: Path) -> Path:
    """A workspace whose library "family" has the album's photos and their faces grouped into two
    people; each test works on its own copy."""
    root = tmp_path_factory.mktemp("template")
    shutil.copytree(album, root / "photos")
    studio = open_studio(_settings(root))
    try:
        projects.create_project(studio, name="family", task="library")
        _import(studio, "family", root / "photos")
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


def _people(studio: Studio) -> list[dict[str, Any]]:
    return list(people.list_people(studio, project="family", hidden=True)["items"])


def _person(studio: Studio, pid: int) -> dict[str, Any]:
    return dict(people.get_person(studio, project="family", person=pid)["person"])


def _photo_names(studio: Studio, pid: int) -> set[str]:
    return {p["name"].rsplit("/", 1)[-1] for p in _person(studio, pid)["photos"]}


def _who(studio: Studio) -> tuple[int, int]:
    """(Obama's id, Biden's id): the person holding obama2.jpg, and the one holding biden-dark.jpg."""
    ids = [p["id"] for p in _people(studio)]
    obama = next(i for i in ids if "obama2.jpg" in _photo_names(studio, i))
    biden = next(i for i in ids if "biden-dark.jpg" in _photo_names(studio, i))
    return obama, biden


def _faces_of(studio: Studio, pid: int, *photos: str) -> list[int]:
    """The ids of ``pid``'s faces in the named photos."""
    p = _person(studio, pid)
    names = {ph["sample_id"]: ph["name"].rsplit("/", 1)[-1] for ph in p["photos"]}
    return [f["id"] for f in p["faces"] if names[f["sample_id"]] in photos]


# --- in-process ---------------------------------------------------------------------------------


def test_empty_states_and_the_tab(web_studio: Studio, tmp_path: Path, album: Path) -> None:
    client = TestClient(create_app(web_studio))
    projects.create_project(web_studio, name="empty", task="library")
    r = client.get("/projects/empty/people")
    assert r.status_code == 200 and "<title>empty · People · vistudio</title>" in r.text
    assert 'aria-current="page">People</a>' in r.text
    assert 'data-testid="people-no-photos"' in r.text and 'data-testid="find-faces"' not in r.text

    projects.create_project(web_studio, name="album", task="library")
    _import(web_studio, "album", album)
    r = client.get("/projects/album/people")
    assert r.status_code == 200 and 'data-testid="people-empty"' in r.text
    assert "Find the people in your photos" in r.text and "8 photos" in r.text
    assert 'data-testid="find-faces"' in r.text and 'data-testid="people-grid"' not in r.text
    assert 'data-testid="regroup"' not in r.text  # nothing to group yet

    # the tab is a library's only; other projects answer 404, as does an unknown project
    projects.create_project(web_studio, name="shapes", task="classification")
    assert 'data-section="people"' not in client.get("/projects/shapes").text
    assert client.get("/projects/shapes/people").status_code == 404
    assert client.get("/projects/nope/people").status_code == 404
    assert client.get("/projects/album/people?offset=-1").status_code == 422


def test_face_recognition_turned_off(tmp_path: Path, album: Path) -> None:
    studio = open_studio(_settings(tmp_path, faces=FaceSettings(enabled=False, workers=1)))
    try:
        client = TestClient(create_app(studio))
        projects.create_project(studio, name="album", task="library")
        _import(studio, "album", album)
        r = client.get("/projects/album/people")
        assert r.status_code == 200 and 'data-testid="faces-disabled"' in r.text
        assert 'href="/settings#faces.enabled"' in r.text and 'data-testid="find-faces"' not in r.text
        r = client.post("/projects/album/people/find", headers=HX)
        assert r.status_code == 409 and "turned off" in r.text
        assert r.headers["HX-Retarget"] == "#people-error" and "/settings#faces.enabled" in r.text
    finally:
        studio.close()


def test_find_faces_shows_progress_then_reloads(web_studio: Studio, album: Path) -> None:
    client = TestClient(create_app(web_studio))
    projects.create_project(web_studio, name="album", task="library")
    _import(web_studio, "album", album)
    r = client.post("/projects/album/people/find", headers=HX)
    assert r.status_code == 200 and 'data-testid="people-job"' in r.text and "Finding faces" in r.text
    job = re.search(r"status\?was=(\d+)", r.text)
    assert job and 'hx-trigger="every 1s"' in r.text
    # asking again while it is queued gives the same job, not a second one
    assert f"was={job.group(1)}" in client.post("/projects/album/people/find", headers=HX).text
    Worker(web_studio).run_to_end(int(job.group(1)))
    done = client.get(f"/projects/album/people/status?was={job.group(1)}", headers=HX)
    assert done.status_code == 200 and done.headers["HX-Refresh"] == "true"
    assert client.get("/projects/album/people/status", headers=HX).status_code == 200
    page = client.get("/projects/album/people").text
    assert page.count('data-testid="person-card"') == 2 and 'data-testid="regroup"' in page
    # a plain form post (no htmx) is answered with a redirect back to the page
    r = client.post("/projects/album/people/regroup", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/projects/album/people"
    assert "Grouping faces into people" in client.get("/projects/album/people").text


def test_the_grid_of_people(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    r = client.get("/projects/family/people")
    assert r.status_code == 200
    cards = re.findall(r'data-testid="person-card" data-person="(\d+)"', r.text)
    assert sorted(map(int, cards)) == sorted([obama, biden])
    assert r.text.count('data-testid="name-it"') == 2 and "2</strong> people" in r.text
    assert re.search(r'<img class="person-cover" src="/api/v1/faces/\d+/crop"', r.text)
    assert "5 photos" in r.text and "4 photos" in r.text  # Obama ×4 + both; Biden ×3 + both
    assert 'data-testid="people-line"' in r.text and "9 faces in 8 photos" in r.text

    # name one from the grid: the card comes back named, and named people come first
    r = client.post(
        f"/projects/family/people/{biden}/rename", data={"name": "Joe Biden", "where": "card"}, headers=HX
    )
    assert r.status_code == 200 and 'data-testid="person-name"' in r.text and "Joe Biden" in r.text
    page = client.get("/projects/family/people").text
    assert re.findall(r'data-person="(\d+)"', page)[0] == str(biden)
    # a taken name: the 409's message, said in the card, with "Merge into them"
    r = client.post(
        f"/projects/family/people/{obama}/rename", data={"name": "Joe Biden", "where": "card"}, headers=HX
    )
    assert r.status_code == 409 and r.headers["HX-Retarget"] == f"#person-err-{obama}"
    assert "already person" in r.text and 'data-testid="merge-into-them"' in r.text
    assert f'name="into" value="{biden}"' in r.text
    bad = client.post(
        f"/projects/family/people/{obama}/rename", data={"name": "x\u0001y", "where": "card"}, headers=HX
    )
    assert bad.status_code == 422 and "printable" in bad.text
    assert (
        client.post("/projects/family/people/999999/rename", data={"name": "A"}, headers=HX).status_code
        == 404
    )


def test_hidden_people_behind_a_toggle(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    r = client.post(f"/projects/family/people/{obama}/hide", data={"hidden": "1"}, headers=HX)
    assert r.status_code == 200 and "Show again" in r.text and 'data-testid="person-message"' in r.text
    page = client.get("/projects/family/people").text
    assert re.findall(r'data-person="(\d+)"', page) == [str(biden)]
    assert "Show hidden people (1)" in page
    shown = client.get("/projects/family/people?hidden=1").text
    assert sorted(re.findall(r'data-testid="person-card" data-person="(\d+)"', shown)) == sorted(
        [str(obama), str(biden)]
    )
    assert "is-hidden" in shown and "Hide hidden people" in shown
    r = client.post(f"/projects/family/people/{obama}/hide", data={"hidden": "0"}, headers=HX)
    assert r.status_code == 200 and 'data-testid="person-hide"' in r.text and ">Hide</button>" in r.text
    assert (
        client.post(f"/projects/family/people/{obama}/hide", data={"hidden": "x"}, headers=HX).status_code
        == 422
    )
    # without htmx: a redirect back to the person
    r = client.post(f"/projects/family/people/{obama}/hide", data={"hidden": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/projects/family/people/{obama}"


def test_the_person_page(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    r = client.get(f"/projects/family/people/{obama}")
    assert r.status_code == 200 and "<title>family · Unnamed person · vistudio</title>" in r.text
    assert r.text.count('data-testid="face-tile"') == 5 and r.text.count('data-testid="person-photo"') == 5
    assert 'data-testid="face-cover"' in r.text and 'href="/projects/family?sample=' in r.text
    assert re.search(r'src="/api/v1/samples/\d+/thumbnail"', r.text)
    assert 'aria-current="page">People</a>' in r.text

    r = client.post(f"/projects/family/people/{obama}/rename", data={"name": "  Barack   Obama "}, headers=HX)
    assert r.status_code == 200 and "Barack Obama</h1>" in r.text and "Name saved." in r.text
    client.post(f"/projects/family/people/{biden}/rename", data={"name": "Joe Biden"}, headers=HX)
    # the "Move to…" type-ahead offers the other people's names
    assert '<option value="Joe Biden">' in client.get(f"/projects/family/people/{obama}").text
    taken = client.post(f"/projects/family/people/{obama}/rename", data={"name": "Joe Biden"}, headers=HX)
    assert taken.status_code == 409 and taken.headers["HX-Retarget"] == "#rename-error"
    assert 'data-testid="merge-into-them"' in taken.text
    assert (
        client.post(
            f"/projects/family/people/{obama}/rename", data={"name": "x" * 201}, headers=HX
        ).status_code
        == 422
    )
    long = client.post(f"/projects/family/people/{obama}/rename", data={"name": LONG_NAME}, headers=HX)
    assert long.status_code == 200 and LONG_NAME in long.text

    assert client.get("/projects/family/people/999999").status_code == 404
    assert "not found" in client.get("/projects/family/people/999999").text
    assert client.get("/projects/family/people/abc").status_code == 422
    assert client.get("/projects/nope/people/1").status_code == 404


def test_face_actions(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    url = f"/projects/family/people/{obama}/faces"
    grey = _faces_of(family, obama, "obama-grey.jpg")
    r = client.post(url, data={"action": "cover", "faces": grey}, headers=HX)
    assert r.status_code == 200 and "Cover face changed." in r.text
    assert _person(family, obama)["cover_face_id"] == grey[0]

    # split: the faces become a new person, and the message links to them
    split = _faces_of(family, obama, "obama3.jpg")
    r = client.post(url, data={"action": "split", "faces": split}, headers=HX)
    assert r.status_code == 200 and "Moved 1 face to a new person." in r.text
    new = re.search(r'href="/projects/family/people/(\d+)" data-testid="person-message-link"', r.text)
    assert new and int(new.group(1)) not in (obama, biden)
    assert _photo_names(family, int(new.group(1))) == {"obama3.jpg"}

    # move (by name) back; unknown names and empty targets are said
    client.post(f"/projects/family/people/{obama}/rename", data={"name": "Barack"}, headers=HX)
    r = client.post(
        f"/projects/family/people/{new.group(1)}/faces",
        data={"action": "move", "faces": split, "to": "Barack"},
        headers=HX,
    )
    assert r.status_code == 200 and r.headers["HX-Redirect"] == f"/projects/family/people/{obama}"
    assert "obama3.jpg" in _photo_names(family, obama)
    r = client.post(url, data={"action": "move", "faces": split, "to": "Nobody at all"}, headers=HX)
    assert r.status_code == 404 and r.headers["HX-Retarget"] == "#faces-error"
    assert client.post(url, data={"action": "move", "faces": split, "to": " "}, headers=HX).status_code == 422
    r = client.post(url, data={"action": "move", "faces": split, "to": f"#{biden}"}, headers=HX)
    assert r.status_code == 200 and f"Moved 1 face to person #{biden}." in r.text
    assert "obama3.jpg" in _photo_names(family, biden)

    # "not this person": the face leaves for good
    grey_gone = client.post(url, data={"action": "not", "faces": grey}, headers=HX)
    assert grey_gone.status_code == 200 and "will not be put back" in grey_gone.text
    assert "obama-grey.jpg" not in _photo_names(family, obama)

    # bad input: nothing selected, a face of nobody, an unknown action, several covers
    assert client.post(url, data={"action": "split"}, headers=HX).status_code == 422
    assert client.post(url, data={"action": "split", "faces": ["x"]}, headers=HX).status_code == 422
    assert client.post(url, data={"action": "split", "faces": ["987654"]}, headers=HX).status_code == 404
    assert client.post(url, data={"action": "explode", "faces": grey}, headers=HX).status_code == 422
    two = _faces_of(family, obama, "obama.jpg", "obama2.jpg")
    assert client.post(url, data={"action": "cover", "faces": two}, headers=HX).status_code == 422
    assert (
        client.post(url, data={"action": "not", "faces": grey}, headers=HX).status_code == 422
    )  # not theirs


def test_merge_and_delete(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    client.post(f"/projects/family/people/{obama}/rename", data={"name": "Barack"}, headers=HX)
    one = client.post(
        "/projects/family/people/merge", data={"people": [str(obama)], "into": str(obama)}, headers=HX
    )
    assert one.status_code == 422 and one.headers["HX-Retarget"] == "#people-error"
    assert (
        client.post(
            "/projects/family/people/merge", data={"people": ["1", "x"], "into": "1"}, headers=HX
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/projects/family/people/merge",
            data={"people": [str(obama), "999999"], "into": str(obama)},
            headers=HX,
        ).status_code
        == 404
    )
    # the plain form (the grid's merge bar): a redirect to the person kept
    r = client.post(
        "/projects/family/people/merge",
        data={"people": [str(obama), str(biden)], "into": str(biden)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/projects/family/people/{biden}?merged=1"
    page = client.get(r.headers["location"]).text
    assert "Merged 1 person into this one." in page and "Barack</h1>" in page  # the name came along
    # said once: the page drops ?merged= from its address, and the plain address says nothing
    assert 'data-said-once="merged"' in page
    assert 'data-testid="person-message"' not in client.get(f"/projects/family/people/{biden}").text
    assert page.count('data-testid="face-tile"') == 9
    assert [p["id"] for p in _people(family)] == [biden]

    r = client.post(f"/projects/family/people/{biden}/delete", headers=HX)
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/projects/family/people"
    assert _people(family) == []
    assert client.post(f"/projects/family/people/{biden}/delete", headers=HX).status_code == 404
    r = client.get("/projects/family/people")
    assert 'data-testid="people-none"' in r.text and "no person yet" in r.text


def test_undo_and_redo(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    assert client.post("/projects/family/people/undo", headers=HX).status_code == 409  # nothing yet
    assert 'data-testid="people-last-change"' not in client.get("/projects/family/people").text
    split = _faces_of(family, obama, "obama3.jpg")
    r = client.post(
        f"/projects/family/people/{obama}/faces", data={"action": "split", "faces": split}, headers=HX
    )
    assert 'data-testid="person-undo"' in r.text
    r = client.post("/projects/family/people/undo", data={"person": str(obama)}, headers=HX)
    assert r.status_code == 200 and re.search(r"Undone: 1 faces? → a new person\.", r.text)
    assert 'data-testid="person-redo"' in r.text and "obama3.jpg" in _photo_names(family, obama)
    r = client.post("/projects/family/people/undo", data={"what": "redo", "person": str(obama)}, headers=HX)
    assert r.status_code == 200 and "Redone" in r.text and "obama3.jpg" not in _photo_names(family, obama)
    # the grid offers the latest decision's undo; a plain form post comes back to it
    page = client.get("/projects/family/people").text
    assert 'data-testid="people-last-change"' in page and re.search(
        r"Last change: 1 faces? → a new person", page
    )
    r = client.post("/projects/family/people/undo", data={"what": "undo"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/projects/family/people"
    assert re.search(r"Undone: 1 faces? → a new person", client.get("/projects/family/people").text)
    assert 'data-testid="people-redo"' in client.get("/projects/family/people").text
    bad = client.post("/projects/family/people/undo", data={"what": "again"}, headers=HX)
    assert bad.status_code == 422 and bad.headers["HX-Retarget"] == "#people-error"
    client.post("/projects/family/people/undo", data={"what": "redo"}, headers=HX)
    gone = client.post(
        "/projects/family/people/undo", data={"what": "redo", "person": str(biden)}, headers=HX
    )
    assert gone.status_code == 409 and gone.headers["HX-Retarget"] == "#person-error"


def test_photo_detail_draws_faces(client: TestClient, family: Studio) -> None:
    obama, biden = _who(family)
    client.post(f"/projects/family/people/{biden}/rename", data={"name": "Joe Biden"}, headers=HX)
    items = samples.list_samples(family, project="family", limit=100)["items"]
    together = next(s["id"] for s in items if s["name"].endswith("together.jpg"))
    r = client.get(f"/projects/family/samples/{together}")
    assert r.status_code == 200 and r.text.count('data-testid="face-box"') == 2
    assert (
        f'href="/projects/family/people/{biden}"' in r.text
        and f'href="/projects/family/people/{obama}"' in r.text
    )
    assert ">Joe Biden</span>" in r.text and f"Unnamed person #{obama}" in r.text
    assert re.search(r'style="left: [\d.]+%; top: [\d.]+%; width: [\d.]+%; height: [\d.]+%;"', r.text)
    assert 'data-testid="detail-people"' in r.text
    # the detail's own address (the dataset page opened on the photo) draws them too
    assert client.get(f"/projects/family?sample={together}").text.count('data-testid="face-box"') == 2
    # a face in nobody is drawn, named "unknown", and links nowhere
    face = _faces_of(family, obama, "together.jpg")
    people.not_this_person(family, project="family", person=obama, faces=face)
    r = client.get(f"/projects/family/samples/{together}")
    assert (
        r.text.count('data-testid="face-box"') == 2
        and "face-box face-unknown" in r.text
        and ">unknown</span>" in r.text
    )


def test_a_thousand_people_are_paged(client: TestClient, family: Studio) -> None:
    project_id = projects.get_project(family, "family")["id"]
    with family.sessions.begin() as s:
        s.add_all(Person(project_id=project_id, name=f"Person {i:04d}") for i in range(998))
    r = client.get("/projects/family/people")
    assert r.status_code == 200 and r.text.count('data-testid="person-card"') == 60
    assert "1,000</strong> people" in r.text and "Page 1 of 17" in r.text
    assert 'data-testid="people-next"' in r.text and 'data-testid="people-prev"' not in r.text
    last = client.get("/projects/family/people?offset=960")
    assert last.text.count('data-testid="person-card"') == 40 and "Page 17 of 17" in last.text
    assert (
        'data-testid="people-next"' not in last.text
        and 'href="/projects/family/people?offset=900"' in last.text
    )
    past = client.get("/projects/family/people?offset=5000")
    assert past.status_code == 200 and 'data-testid="people-past-end"' in past.text


# --- in Chromium --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Studio, Path]]:
    """The conftest's server, with faces read in this process (no pool to start)."""
    root = tmp_path_factory.mktemp("web")
    studio = open_studio(_settings(root))
    app = create_app(studio, workers=1)
    with serve(app) as base:
        yield base, studio, root
    studio.close()


def _select(page: Any, *face_ids: int) -> None:
    for f in face_ids:
        page.click(f'[data-face="{f}"]')


@pytest.mark.browser
@pytest.mark.slow
def test_people_in_the_browser(
    live_server: tuple[str, Studio, Path], page: Any, browser: Any, shot: Callable[..., Path], album: Path
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    base_url, studio, root = live_server
    shutil.copytree(album, root / "photos")
    projects.create_project(studio, name="family", task="library")
    job = ingest.start_import(studio, project="family", source=root / "photos", fmt="folder")
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    url = f"{base_url}/projects/family/people"

    # find faces: the empty state, its button, the progress, then the people
    page.goto(url)
    alpine_ready(page)
    expect(page.locator('[data-testid="people-empty"]')).to_be_visible()
    shot(page, "people-empty", full_page=False)
    page.click('[data-testid="find-faces"]')
    expect(page.locator('[data-testid="person-card"]')).to_have_count(2, timeout=60_000)
    alpine_ready(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "people-grid", full_page=False)

    # rename both from the grid
    obama, biden = _who(studio)
    for pid, name in ((obama, "Barack Obama"), (biden, "Joe Biden")):
        card = page.locator(f'[data-testid="person-card"][data-person="{pid}"]')
        card.locator('[data-testid="name-it"]').fill(name)
        card.locator('[data-testid="name-it"]').press("Enter")
        expect(page.locator(f'[data-person="{pid}"] [data-testid="person-name"]')).to_have_text(name)
    htmx_settled(page)

    # merge the two: select both, choose who keeps the name, merge
    page.reload()
    alpine_ready(page)
    for pid in (obama, biden):
        page.locator(f'[data-person="{pid}"] [data-testid="person-pick"]').check()
    expect(page.locator('[data-testid="merge-bar"]')).to_be_visible()
    page.select_option('[data-testid="merge-into"]', str(obama))
    shot(page, "people-merge-bar", full_page=False)
    page.click('[data-testid="merge"]')
    expect(page.locator('[data-testid="person-title"]')).to_have_text("Barack Obama")
    expect(page.locator('[data-testid="person-message"]')).to_contain_text("Merged 1 person")
    # the message is said once: the address drops ?merged=, so a reload does not say it again
    expect(page).to_have_url(f"{url}/{obama}")
    page.reload()
    expect(page.locator('[data-testid="person-title"]')).to_have_text("Barack Obama")
    expect(page.locator('[data-testid="person-message"]')).to_have_count(0)
    assert page.locator('[data-testid="face-tile"]').count() == 9
    alpine_ready(page)

    # split Biden's faces out: click one, shift-click through the range, then fix the selection
    wanted = [
        *_faces_of(studio, obama, "biden.jpg", "biden-flipped.jpg", "biden-dark.jpg"),
        _left_face(studio),
    ]
    _select(page, *wanted)
    expect(page.locator('[data-testid="faces-selected"]')).to_have_text(f"{len(wanted)} selected")
    shot(page, "person-selected", full_page=False)
    page.click('[data-testid="faces-split"]')
    expect(page.locator('[data-testid="person-message"]')).to_contain_text(
        f"Moved {len(wanted)} faces to a new person"
    )
    assert page.locator('[data-testid="face-tile"]').count() == 9 - len(wanted)
    page.click('[data-testid="person-message-link"]')
    expect(page.locator('[data-testid="person-title"]')).to_have_text("Unnamed person")
    # a taken name is said, with the way out: merge into them
    page.fill('[data-testid="person-name-input"]', "Barack Obama")
    page.click('[data-testid="person-rename"]')
    expect(page.locator('[data-testid="rename-error"]')).to_contain_text("merge the two people instead")
    expect(page.locator('[data-testid="merge-into-them"]')).to_be_visible()
    shot(page, "person-name-taken", full_page=False)
    page.fill('[data-testid="person-name-input"]', "Joe Biden")
    page.click('[data-testid="person-rename"]')
    expect(page.locator('[data-testid="person-title"]')).to_contain_text("Joe Biden")
    new_biden = int(page.locator('[data-testid="person-body"]').get_attribute("data-person"))
    assert _photo_names(studio, new_biden) == {
        "biden.jpg",
        "biden-flipped.jpg",
        "biden-dark.jpg",
        "together.jpg",
    }

    # "not this person" on Obama's grey copy; shift-click selects a range first
    page.goto(f"{url}/{obama}")
    alpine_ready(page)
    tiles = page.locator('[data-testid="face-tile"]')
    tiles.nth(0).click()
    tiles.nth(2).click(modifiers=["Shift"])
    expect(page.locator('[data-testid="faces-selected"]')).to_have_text("3 selected")
    page.click('[data-testid="faces-all"]')
    expect(page.locator('[data-testid="faces-selected"]')).to_have_text(f"{tiles.count()} selected")
    page.locator("button", has_text="Clear").click()
    grey = _faces_of(studio, obama, "obama-grey.jpg")
    _select(page, *grey)
    page.click('[data-testid="faces-not"]')
    expect(page.locator('[data-testid="person-message"]')).to_contain_text("will not be put back")
    assert "obama-grey.jpg" not in _photo_names(studio, obama)
    page.click('[data-testid="person-undo"]')  # …taken back, then done again
    expect(page.locator('[data-testid="person-message"]')).to_contain_text("Undone:")
    assert "obama-grey.jpg" in _photo_names(studio, obama)
    page.click('[data-testid="person-redo"]')
    expect(page.locator('[data-testid="person-message"]')).to_contain_text("Redone:")
    assert "obama-grey.jpg" not in _photo_names(studio, obama)
    shot(page, "person-redone", full_page=False)

    # re-group: names and decisions stay
    page.goto(url)
    alpine_ready(page)
    page.click('[data-testid="regroup"]')
    expect(page.locator('[data-testid="people-job"]')).to_be_visible()
    expect(page.locator('[data-testid="people-line"]')).to_be_visible(timeout=60_000)
    expect(page.locator('[data-testid="person-name"]')).to_have_text(["Barack Obama", "Joe Biden"])
    assert "obama-grey.jpg" not in _photo_names(studio, obama)
    assert _photo_names(studio, new_biden) >= {"biden.jpg", "biden-flipped.jpg", "biden-dark.jpg"}
    shot(page, "people-after-regroup", full_page=False)

    # the photo detail draws both faces with their names, linking to their pages
    page.goto(f"{base_url}/projects/family?sample={_sample(studio, 'together.jpg')}")
    boxes = page.locator('[data-testid="face-box"]')
    expect(boxes).to_have_count(2)
    expect(page.locator(".face-box", has_text="Joe Biden")).to_have_attribute(
        "href", f"/projects/family/people/{new_biden}"
    )
    shot(page, "people-photo-detail", full_page=False)
    page.locator(".face-box", has_text="Joe Biden").click()
    expect(page.locator('[data-testid="person-title"]')).to_contain_text("Joe Biden")
    shot(page, "person-page", full_page=True)

    _long_names_many_people_and_a_phone(base_url, studio, page, browser, shot, obama)


def _sample(studio: Studio, name: str) -> int:
    items = samples.list_samples(studio, project="family", limit=100)["items"]
    return int(next(s["id"] for s in items if s["name"].endswith(name)))


def _left_face(studio: Studio) -> int:
    """The left face of together.jpg (Biden's)."""
    found = faces.photo_faces(studio, project="family", sample_id=_sample(studio, "together.jpg"))
    return int(min(found, key=lambda f: f["box"]["x"])["id"])


def _long_names_many_people_and_a_phone(
    base_url: str, studio: Studio, page: Any, browser: Any, shot: Callable[..., Path], obama: int
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    url = f"{base_url}/projects/family/people"
    people.rename(studio, project="family", person=obama, name=LONG_NAME)
    project_id = projects.get_project(studio, "family")["id"]
    with studio.sessions.begin() as s:
        s.add_all(Person(project_id=project_id, name=f"Zoe Guest {i:04d}") for i in range(1000))
    page.goto(url)
    alpine_ready(page)
    assert page.locator('[data-testid="person-card"]').count() == 60
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    long_card = page.locator(f'[data-person="{obama}"]')
    name_box, card_box = long_card.locator(".person-name").bounding_box(), long_card.bounding_box()
    assert (
        name_box and card_box and name_box["x"] + name_box["width"] <= card_box["x"] + card_box["width"] + 1
    )
    shot(page, "people-many", full_page=False)
    page.click('[data-testid="people-next"]')
    expect(page.locator(".people-pager")).to_contain_text("Page 2 of 17")

    page.goto(f"{url}/{obama}")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "person-long-name", full_page=False)
    alpine_ready(page)
    page.click('[data-testid="person-delete"]')
    expect(page.locator('[data-testid="person-delete-confirm"]')).to_be_visible()
    shot(page, "person-delete-confirm", full_page=False)
    page.locator('[data-testid="person-delete-confirm"] button', has_text="Cancel").click()
    expect(page.locator('[data-testid="person-delete-confirm"]')).to_be_hidden()

    # face recognition turned off: the page says so and where to turn it on; the people stay
    settings_service.update_settings(studio, values={"faces.enabled": False})
    page.goto(url)
    expect(page.locator('[data-testid="faces-disabled"]')).to_be_visible()
    expect(page.locator('[data-testid="faces-disabled"] a')).to_have_attribute(
        "href", "/settings#faces.enabled"
    )
    assert page.locator('[data-testid="person-card"]').count() == 60
    shot(page, "people-disabled", full_page=False)
    settings_service.update_settings(studio, values={"faces.enabled": True})

    with checked_page(browser, {"width": 390, "height": 844}) as phone:
        phone.goto(url)
        alpine_ready(phone)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(phone, "people-phone", full_page=False)
        phone.goto(f"{url}/{obama}")
        alpine_ready(phone)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        phone.locator('[data-testid="face-tile"]').first.click()
        expect(phone.locator('[data-testid="faces-actions"]')).to_be_visible()
        shot(phone, "person-phone", full_page=True)
