"""The duplicates review page: in-process (content, empty states, decisions, errors) and in Chromium
(level switcher, side-by-side groups, hide / remove with its confirm step / undo, long names,
many groups, a narrow screen)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data as skdata
from web_factories import alpine_ready, wait_for_job

from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.services import duplicates, ingest, library, projects, samples, splits
from vistudio.studio import Studio

HX = {"HX-Request": "true"}
T = Image.Transpose
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "camera",
    "rocket",
    "immunohistochemistry",
    "coins",
    "moon",
    "hubble_deep_field",
    "horse",
    "page",
    "clock",
    "text",
    "colorwheel",
    "retina",
    "logo",
    "brick",
    "grass",
    "gravel",
    "cell",
    "microaneurysms",
    "checkerboard",
)
LONG = "a-very-long-file-name-from-the-summer-holiday-in-the-mountains-with-the-whole-family-IMG_20240801_183015.jpg"


def _photo(name: str, side: int) -> Image.Image:
    a = getattr(skdata, name)()
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    im = Image.fromarray(a).convert("RGB")
    im.thumbnail((side, side))
    return im


def make_library(root: Path, *, groups: int) -> Path:
    """``groups`` photos, each with one to three turned, mirrored or shrunk copies, one of them
    with a very long name deep in folders, and one photo without copies."""
    copies = (
        lambda im: im.transpose(T.ROTATE_90),
        lambda im: im.transpose(T.FLIP_LEFT_RIGHT),
        lambda im: im.resize((im.width // 2, im.height // 2)),
    )
    (root / "originals").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(PHOTOS[:groups]):
        im = _photo(name, 200)
        im.save(root / "originals" / f"{name}.png")
        for k in range(1 + i % 3):
            folder = root / "copies" / f"set-{k}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / (LONG if i == 0 and k == 0 else f"{name}-copy{k}.jpg")
            copies[k](im).save(target, quality=70)
    _photo(PHOTOS[groups], 160).save(root / "originals" / "alone.png")
    return root


def make_burst(root: Path, *, copies: int) -> Path:
    """One photo and ``copies`` near copies of it (smaller, re-encoded at other qualities, a
    little brighter or darker): one perceptual group of ``copies + 1`` photos, the original its
    keeper (the largest)."""
    root.mkdir(parents=True, exist_ok=True)
    im = _photo("chelsea", 240)
    im.save(root / "chelsea-original.png")
    small = im.resize((im.width * 5 // 6, im.height * 5 // 6))
    for k in range(copies):
        shade = small.point(lambda v, k=k: min(255, max(0, v + (k % 7) - 3)))
        shade.save(root / f"chelsea-burst-{k:03d}.jpg", quality=40 + (k * 7) % 55)
    return root


def _import(studio: Studio, project: str, src: Path) -> None:
    job = ingest.start_import(studio, project=project, source=src, fmt="folder")
    done = Worker(studio).run_to_end(job["id"])
    assert done is not None and done.status == "succeeded", done and done.error


@pytest.fixture
def client(web_studio: Studio) -> TestClient:
    return TestClient(create_app(web_studio))


@pytest.fixture
def trip(web_studio: Studio, tmp_path: Path) -> str:
    projects.create_project(web_studio, name="trip", task="library")
    _import(web_studio, "trip", make_library(tmp_path / "lib", groups=3))
    return "trip"


def test_page_lists_groups_side_by_side(client: TestClient, trip: str) -> None:
    r = client.get(f"/projects/{trip}/duplicates")
    assert r.status_code == 200 and "<title>trip · Duplicates · vistudio</title>" in r.text
    assert 'aria-current="page">Duplicates</a>' in r.text  # the project tab
    groups = re.findall(r'data-testid="dup-group" data-group="(p-[0-9a-f]{12})"', r.text)
    assert len(groups) == 3
    assert r.text.count('data-testid="dup-keeper"') == 3 and "Suggested keeper" in r.text
    assert r.text.count('data-testid="dup-member"') == 3 + 1 + 2 + 3  # originals + copies
    assert re.search(r'<img src="/api/v1/samples/\d+/thumbnail"', r.text)
    assert LONG[:40] in r.text and 'title="copies/set-0/' + LONG + '"' in r.text
    for testid in ("level-exact", "level-perceptual", "level-semantic", "dup-keep", "dup-hide", "dup-remove"):
        assert f'data-testid="{testid}"' in r.text
    assert "3</strong> groups" in r.text and "3 to review" in r.text


def test_empty_states(client: TestClient, web_studio: Studio, trip: str) -> None:
    projects.create_project(web_studio, name="empty", task="classification")
    r = client.get("/projects/empty/duplicates")
    assert r.status_code == 200 and "No images yet" in r.text
    r = client.get(f"/projects/{trip}/duplicates?level=semantic")
    assert r.status_code == 200 and 'data-testid="dup-no-embeddings"' in r.text
    assert "vistudio embed trip" in r.text
    r = client.get(f"/projects/{trip}/duplicates?level=exact")
    assert r.status_code == 200 and "No files with identical bytes" in r.text
    r = client.get(f"/projects/{trip}/duplicates?threshold=0&status=reviewed")
    assert "0</strong> groups" not in r.text or "dup-empty" in r.text
    r = client.get(f"/projects/{trip}/duplicates?threshold=99")
    assert r.status_code == 200 and 'data-testid="dup-problem"' in r.text and "between 0 and 16" in r.text
    r = client.get(f"/projects/{trip}/duplicates?threshold=abc&level=nonsense&status=zzz&offset=5")
    assert r.status_code == 200 and "must be a number" in r.text
    assert client.get("/projects/nope/duplicates").status_code == 404
    assert client.get(f"/projects/{trip}/duplicates?offset=-1").status_code == 422


def test_decisions_over_htmx(client: TestClient, web_studio: Studio, trip: str) -> None:
    page = client.get(f"/projects/{trip}/duplicates").text
    first, second = re.findall(r'data-group="(p-[0-9a-f]{12})"', page)[:2]
    base = f"/projects/{trip}/duplicates"
    r = client.post(f"{base}/{first}/decide", data={"action": "hide", "threshold": "6"}, headers=HX)
    assert r.status_code == 200 and "Others hidden" in r.text and 'data-testid="dup-undo"' in r.text
    assert "hidden from browsing" in r.text and "is-hidden" in r.text
    visible = samples.list_samples(web_studio, project=trip)["total"]
    assert visible == samples.list_samples(web_studio, project=trip, include_hidden=True)["total"] - 3
    again = client.post(f"{base}/{first}/decide", data={"action": "keep"}, headers=HX)
    assert again.status_code == 409 and again.headers["HX-Retarget"] == f"#err-{first}"
    decision = re.search(r"decisions/(\d+)/undo", r.text)
    assert decision
    undone = client.post(
        f"{base}/decisions/{decision.group(1)}/undo", data={"group": first, "threshold": "6"}, headers=HX
    )
    assert undone.status_code == 200 and "Undone" in undone.text and 'data-testid="dup-hide"' in undone.text

    removed = client.post(f"{base}/{second}/decide", data={"action": "remove"}, headers=HX)
    assert removed.status_code == 200 and "Others removed" in removed.text
    assert "Your original files were not touched" in removed.text and "badge-red" in removed.text
    # after a reload the removed group is gone, and the removal is listed with its undo
    page = client.get(base).text
    assert second not in re.findall(r'data-group="(p-[0-9a-f]{12})"', page)
    listed = re.search(r'id="removal-(\d+)"', page)
    assert listed and 'data-testid="dup-removals"' in page and "removed —" in page
    restored = client.post(f"{base}/decisions/{listed.group(1)}/undo", data={"where": "removals"}, headers=HX)
    assert restored.status_code == 200 and "Restored" in restored.text
    assert second in client.get(base).text
    gone = client.post(f"{base}/decisions/{listed.group(1)}/undo", data={"where": "removals"}, headers=HX)
    assert gone.status_code == 404 and gone.headers["HX-Retarget"] == f"#removal-{listed.group(1)}-error"

    bad = client.post(f"{base}/p-000000000000/decide", data={"action": "keep"}, headers=HX)
    assert bad.status_code == 404 and "alert-error" in bad.text
    hostile = client.post(f"{base}/<script>/decide", data={"action": "keep"}, headers=HX)
    assert hostile.status_code == 404 and hostile.headers["HX-Retarget"] == "#dup-page-error"
    assert "<script>" not in hostile.text
    assert client.post(f"{base}/{first}/decide", data={"action": "explode"}, headers=HX).status_code == 422
    assert (
        client.post(f"{base}/{first}/decide", data={"action": "hide", "keeper": "x1"}, headers=HX).status_code
        == 422
    )
    assert client.post(f"{base}/decisions/999999/undo", data={}, headers=HX).status_code == 404


def test_the_import_report_and_the_page_count_the_same_groups(
    client: TestClient, web_studio: Studio, tmp_path: Path
) -> None:
    projects.create_project(web_studio, name="trip", task="library")
    job = ingest.start_import(
        web_studio, project="trip", source=make_library(tmp_path / "lib", groups=5), fmt="folder"
    )
    assert Worker(web_studio).run_one(job["id"]) is not None
    report = client.get(f"/projects/trip/imports/{job['id']}", headers=HX).text
    counted = re.search(r'data-testid="report-near-groups">(\d+)<', report)
    page = client.get("/projects/trip/duplicates").text
    shown = re.search(r'data-testid="dup-summary">\s*<strong>(\d+)</strong>', page)
    # turned and mirrored copies count in both (the report once counted resized copies only)
    assert counted and shown and counted.group(1) == shown.group(1) == "5"
    assert 'href="/projects/trip/duplicates"' in report and "Review the 5 near-duplicate groups" in report


def test_show_more_pages_through_every_member(client: TestClient, web_studio: Studio, tmp_path: Path) -> None:
    projects.create_project(web_studio, name="burst", task="library")
    _import(web_studio, "burst", make_burst(tmp_path / "burst", copies=69))
    page = client.get("/projects/burst/duplicates").text
    (gid,) = re.findall(r'data-group="(p-[0-9a-f]{12})"', page)
    assert page.count('data-testid="dup-member"') == 12 and "70 photos" in page
    assert "58 more photos in this group" in page and "the CLI and the API list every one" not in page
    seen = re.findall(r'data-testid="dup-member" data-sample-id="(\d+)"', page)
    url = re.search(r'hx-get="([^"]+/members\?[^"]+)"', page)
    while url:
        r = client.get(url.group(1).replace("&amp;", "&"), headers=HX)
        assert r.status_code == 200 and 'name="keeper"' in r.text  # still a pick for the keeper
        seen += re.findall(r'data-testid="dup-member" data-sample-id="(\d+)"', r.text)
        url = re.search(r'hx-get="([^"]+/members\?[^"]+)"', r.text)
    assert len(seen) == len(set(seen)) == 70  # 12, then 48, then the last 10: each once
    # the API pages through members too
    body = client.get(f"/api/v1/duplicates/burst/groups/{gid}?offset=60&limit=48").json()
    assert body["size"] == 70 and len(body["samples"]) == 10 and body["samples_offset"] == 60
    assert [s["id"] for s in body["samples"]] == [int(x) for x in seen[60:]]
    assert client.get("/projects/burst/duplicates/p-000000000000/members?offset=12").status_code == 404


def test_remove_is_explained_up_front_when_a_saved_split_holds_the_photos(
    client: TestClient, web_studio: Studio, trip: str
) -> None:
    page = client.get(f"/projects/{trip}/duplicates").text
    assert 'data-testid="dup-remove-blocked"' not in page
    splits.create_split(web_studio, project=trip, name="main", ratios="0.5,0.5", seed=1)
    page = html.unescape(client.get(f"/projects/{trip}/duplicates").text)
    reasons = re.findall(r'data-testid="dup-remove-blocked">([^<]+)<', page)
    assert len(reasons) == 3 and all("in the saved split 'main', which never changes" in r for r in reasons)
    assert "The other photo is in" in page and "All 3 other photos are in" in page
    assert (
        page.count('disabled aria-describedby="why-') == 3 and 'data-testid="dup-remove-confirm"' not in page
    )
    # the service says the same when asked to remove anyway
    group = re.findall(r'data-group="(p-[0-9a-f]{12})"', page)[0]
    r = client.post(f"/projects/{trip}/duplicates/{group}/decide", data={"action": "remove"}, headers=HX)
    assert (
        r.status_code == 409
        and "saved split 'main'" in html.unescape(r.text)
        and r.headers["HX-Retarget"] == f"#err-{group}"
    )
    # the error box sits inside the card, after its members, just above its buttons
    card = page[page.index(f'id="group-{group}"') :]
    card = card[: card.index("</article>")]
    assert (
        card.rindex('data-testid="dup-member"')
        < card.index(f'id="err-{group}"')
        < card.index('data-testid="dup-keep"')
    )


def test_api_routes(client: TestClient, trip: str) -> None:
    r = client.get(f"/api/v1/duplicates/{trip}?level=perceptual&limit=2")
    body = r.json()
    assert r.status_code == 200 and body["total"] == 3 and len(body["items"]) == 2
    assert {"id", "level", "samples", "keeper", "distance", "size", "decision"} <= set(body["items"][0])
    group = body["items"][0]["id"]
    r = client.post(f"/api/v1/duplicates/{trip}/groups/{group}/decision", json={"action": "keep"})
    assert r.status_code == 201 and r.json()["decision"]["action"] == "keep"
    assert (
        client.post(f"/api/v1/duplicates/{trip}/groups/{group}/decision", json={"action": "keep"}).status_code
        == 409
    )
    decisions = client.get(f"/api/v1/duplicates/{trip}/decisions").json()
    assert decisions["total"] == 1
    did = decisions["items"][0]["id"]
    assert client.post(f"/api/v1/duplicates/{trip}/decisions/{did}/undo").status_code == 200
    for url, status in (
        (f"/api/v1/duplicates/{trip}?level=bogus", 422),
        (f"/api/v1/duplicates/{trip}?threshold=1e9", 422),
        (f"/api/v1/duplicates/{trip}?level=semantic&threshold=0.2", 422),
        (f"/api/v1/duplicates/{trip}?limit=1000", 422),
        ("/api/v1/duplicates/nope", 404),
    ):
        resp = client.get(url)
        assert resp.status_code == status, (url, resp.text)
        assert set(resp.json()["error"]) == {"code", "message", "details"}
    r = client.post(f"/api/v1/duplicates/{trip}/groups/e-000000000000/decision", json={"action": "remove"})
    assert r.status_code == 404
    r = client.post(
        f"/api/v1/duplicates/{trip}/groups/{group}/decision", json={"action": "keep", "keeper": 0}
    )
    assert r.status_code == 422
    removed = client.post(f"/api/v1/duplicates/{trip}/groups/{group}/decision", json={"action": "remove"})
    assert removed.status_code == 201
    listed = client.get(f"/api/v1/duplicates/{trip}/decisions?action=remove").json()
    assert listed["total"] == 1 and len(listed["items"][0]["removed"]) == body["items"][0]["size"] - 1
    assert client.get(f"/api/v1/duplicates/{trip}/decisions?action=nuke").status_code == 422
    job = client.post(f"/api/v1/duplicates/{trip}/hashes")
    assert job.status_code == 202 and job.json()["job"]["kind"] == duplicates.HASH_JOB


# --- in Chromium --------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_review_in_the_browser(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    base_url, studio, root = live_server
    projects.create_project(studio, name="summer trip", task="library")
    job = ingest.start_import(
        studio, project="summer trip", source=make_library(root / "trip", groups=21), fmt="folder"
    )
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    url = f"{base_url}/projects/{quote('summer trip')}/duplicates"

    page.goto(url)
    alpine_ready(page)
    groups = page.locator('[data-testid="dup-group"]')
    assert groups.count() == 20  # one page; the 21st is on the next
    assert page.locator('[data-testid="dup-summary"]').inner_text().startswith("21 groups")
    assert page.locator('[data-testid="dup-next"]').is_visible()
    # nothing sticks out sideways, long names included
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    overflow = page.evaluate(
        """() => [...document.querySelectorAll('.dup-member')].filter(m => {
              const g = m.closest('.dup-group').getBoundingClientRect(), r = m.getBoundingClientRect();
              return r.left < g.left - 1 || r.right > g.right + 1; }).length"""
    )
    assert overflow == 0
    long_name = page.locator(".dup-name", has_text=LONG[:30])
    box = long_name.bounding_box()
    member = page.locator(".dup-member", has=long_name).bounding_box()
    assert box and member and box["width"] <= member["width"]
    shot(page, "duplicates-perceptual", full_page=False)

    expect = pytest.importorskip("playwright.sync_api").expect
    first = groups.nth(0)
    first.locator('[data-testid="dup-hide"]').click()
    first = page.locator('[data-testid="dup-group"]').nth(0)
    expect(first.locator('[data-testid="dup-state"]')).to_have_text("Others hidden")
    assert first.locator(".dup-member.is-hidden").count() >= 1

    second = page.locator('[data-testid="dup-group"]').nth(1)
    gid = second.get_attribute("data-group")
    second.locator('[data-testid="dup-remove"]').click()
    confirm = second.locator('[data-testid="dup-remove-confirm"]')
    expect(confirm).to_be_visible()
    expect(second.locator(".dup-confirm")).to_contain_text("Your original files are never touched")
    shot(page, "duplicates-confirm", full_page=False)
    confirm.click()
    removed = page.locator(f'[data-group="{gid}"]')
    expect(removed.locator('[data-testid="dup-state"]')).to_have_text("Others removed")
    shot(page, "duplicates-decided", full_page=False)
    removed.locator('[data-testid="dup-undo"]').click()
    expect(page.locator(f'[data-group="{gid}"] [data-testid="dup-flash"]')).to_contain_text("restored")
    expect(page.locator(f'[data-group="{gid}"] [data-testid="dup-remove"]')).to_be_visible()

    third = page.locator('[data-testid="dup-group"]').nth(2)
    third.locator('[data-testid="dup-remove"]').click()
    third.locator('[data-testid="dup-remove-confirm"]').click()
    expect(page.locator('[data-testid="dup-state"]', has_text="Others removed")).to_have_count(1)
    page.reload()
    removals = page.locator('[data-testid="dup-removals"]')
    expect(removals.locator('[data-testid="dup-removal"]')).to_have_count(1)
    removals.scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.images].filter(i => { const r = i.getBoundingClientRect();"
        " return r.bottom > 0 && r.top < innerHeight; }).every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "duplicates-removals", full_page=False)
    removals.locator('[data-testid="dup-removal-undo"]').click()
    expect(removals).to_contain_text("Restored")

    page.locator('[data-testid="level-semantic"]').click()
    page.wait_for_selector('[data-testid="dup-no-embeddings"]')
    assert "vistudio embed summer trip" in page.inner_text("main")
    page.locator('[data-testid="level-exact"]').click()
    page.wait_for_selector('[data-testid="dup-empty"]')
    shot(page, "duplicates-exact-empty", full_page=False)

    # a photo library with the same file in several folders: exact groups of paths
    lib = root / "family"
    (lib / "2023").mkdir(parents=True, exist_ok=True)
    for name in ("coffee", "rocket"):
        _photo(name, 180).save(lib / "2023" / f"{name}.jpg", quality=90)
    for rel in ("backup/old phone/DCIM/Camera/coffee.jpg", f"exports/{LONG}"):
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_bytes((lib / "2023" / "coffee.jpg").read_bytes())
    projects.create_project(studio, name="family", task="library")
    library.add_roots(studio, project="family", paths=[lib])
    scan = library.start_scan(studio, project="family")
    assert wait_for_job(studio, scan["id"])["status"] == "succeeded"
    page.goto(f"{base_url}/projects/family/duplicates?level=exact")
    exact = page.locator('[data-testid="dup-group"]')
    assert exact.count() == 1 and exact.locator('[data-testid="dup-member"]').count() == 3
    assert exact.locator('[data-testid="dup-hide"]').count() == 0  # files are never deleted or hidden
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "duplicates-exact", full_page=False)
    exact.locator('[data-testid="dup-keep"]').click()
    expect(page.locator('[data-testid="dup-state"]')).to_have_text("Reviewed: all kept")

    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(url + "?status=all")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "duplicates-narrow", full_page=False)


@pytest.mark.browser
@pytest.mark.slow
def test_a_big_group_pages_through_its_members_and_errors_show_by_the_button(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    base_url, studio, root = live_server
    expect = pytest.importorskip("playwright.sync_api").expect
    projects.create_project(studio, name="cat burst", task="library")
    job = ingest.start_import(
        studio, project="cat burst", source=make_burst(root / "burst", copies=69), fmt="folder"
    )
    assert wait_for_job(studio, job["id"])["status"] == "succeeded"
    url = f"{base_url}/projects/{quote('cat burst')}/duplicates"
    page.goto(url)
    alpine_ready(page)
    card = page.locator('[data-testid="dup-group"]')
    assert card.count() == 1
    members = card.locator('[data-testid="dup-member"]')
    assert members.count() == 12
    expect(card.locator('[data-testid="dup-more"]')).to_contain_text("58 more photos in this group")
    card.locator('[data-testid="dup-show-more"]').click()
    expect(members).to_have_count(60)
    card.locator('[data-testid="dup-show-more"]').click()
    expect(members).to_have_count(70)
    expect(card.locator('[data-testid="dup-more"]')).to_have_count(0)
    ids = [members.nth(k).get_attribute("data-sample-id") for k in range(70)]
    assert len(set(ids)) == 70
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    card.locator('[data-testid="dup-hide"]').scroll_into_view_if_needed()
    shot(page, "duplicates-big-group", full_page=False)

    # the page is stale: a saved split now holds the photos, and "remove others" can only fail.
    # Its 409 must show next to the button that caused it, on screen, inside the group's card.
    splits.create_split(studio, project="cat burst", name="main", ratios="0.5,0.5", seed=1)
    card.locator('[data-testid="dup-remove"]').click()
    confirm = card.locator('[data-testid="dup-remove-confirm"]')
    confirm.click()
    error = card.locator('[data-testid="dup-error"] .alert-error')
    expect(error).to_contain_text("saved split 'main'")
    expect(confirm).to_be_hidden()  # the refused confirm step closes: the buttons are back under the error
    remove = card.locator('[data-testid="dup-remove"]')
    expect(remove).to_be_visible()
    box, button, frame = error.bounding_box(), remove.bounding_box(), card.bounding_box()
    assert box and button and frame
    viewport = page.viewport_size
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]  # on screen, no scrolling
    assert frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"]
    assert 0 <= button["y"] - (box["y"] + box["height"]) <= 200  # just above the button
    shot(page, "duplicates-error-by-button", full_page=False)

    # reloaded, the page says why up front instead of offering the removal
    page.reload()
    alpine_ready(page)
    blocked = page.locator('[data-testid="dup-remove-blocked"]')
    expect(blocked).to_contain_text("All 69 other photos are in the saved split 'main'")
    assert page.locator('[data-testid="dup-remove"]').is_disabled()
    blocked.scroll_into_view_if_needed()
    shot(page, "duplicates-remove-blocked", full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    alpine_ready(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "duplicates-big-group-narrow", full_page=False)
    page.locator('[data-testid="dup-show-more"]').scroll_into_view_if_needed()
    shot(page, "duplicates-show-more-narrow", full_page=False)
    page.locator('[data-testid="dup-remove-blocked"]').scroll_into_view_if_needed()
    shot(page, "duplicates-remove-blocked-narrow", full_page=False)
