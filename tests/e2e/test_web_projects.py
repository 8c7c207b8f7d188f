"""Project pages per task: the create dialog (what each task can do, then the new project opens),
the tabs each task offers, the page for a section a task does not offer, and the demo library."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready, htmx_settled

from vistudio.api.app import create_app
from vistudio.ml.tasks import SECTIONS, get_task, task_names
from vistudio.services import demo, projects
from vistudio.studio import Studio

HX = {"HX-Request": "true"}
SIZES = {"wide": (1280, 800), "phone": (390, 844)}


@pytest.fixture
def client(web_studio: Studio) -> TestClient:
    return TestClient(create_app(web_studio))


@pytest.fixture
def untrained(monkeypatch: pytest.MonkeyPatch) -> str:
    """A task registered without a training module (every task of the product trains today):
    how a task reads before its training lands."""
    from vistudio.ml.tasks import TASKS, TaskSpec

    monkeypatch.setitem(TASKS.entries, "keypoints", TaskSpec("keypoints", "Keypoints", ("label",)))
    return "keypoints"


def _tabs(html: str) -> list[str]:
    nav = html.split('aria-label="Project sections"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'data-section="([a-z]+)"', nav)


def test_each_task_says_what_its_projects_offer(untrained: str) -> None:
    assert get_task("classification").can_train
    assert get_task("classification").sections == tuple(
        s for s in SECTIONS if s not in ("people", "events", "albums")
    )
    assert get_task("library").sections == ("dataset", "search", "duplicates", "people", "events", "albums")
    assert get_task("detection").can_train and get_task("detection").label == "Detection"
    assert get_task("oriented_detection").can_train  # every section of a detection project
    assert get_task("oriented_detection").sections == (
        "dataset",
        "split",
        "train",
        "evaluate",
        "export",
        "search",
        "duplicates",
    )
    assert not get_task(untrained).can_train  # no training module
    assert get_task(untrained).sections == ("dataset", "split", "search", "duplicates")
    assert get_task(untrained).label == "Keypoints (training not yet available)"
    assert get_task(untrained).summary == (
        "Keypoints — browse, split, search and find duplicates; training not yet available"
    )
    assert get_task("library").summary == (
        "Photo library — browse, search, find duplicates, find people, revisit events and make albums; no training"
    )
    for name in task_names():  # every task browses and searches; only trainable ones train
        spec = get_task(name)
        assert {"dataset", "search", "duplicates"} <= set(spec.sections)
        assert ("train" in spec.sections) == spec.can_train
        assert ("people" in spec.sections) == (name == "library")  # people live in photo libraries


def test_create_opens_the_new_project(client: TestClient, web_studio: Studio) -> None:
    r = client.post("/projects", data={"name": "street signs", "task": "detection"}, headers=HX)
    assert r.status_code == 204
    assert r.headers["HX-Redirect"] == "/projects/street%20signs"
    assert projects.get_project(web_studio, "street signs")["task"] == "detection"
    assert client.get(r.headers["HX-Redirect"]).status_code == 200
    # an error stays in the dialog, next to the form
    dup = client.post("/projects", data={"name": "street signs", "task": "detection"}, headers=HX)
    assert dup.status_code == 409 and "HX-Redirect" not in dup.headers and "already exists" in dup.text


def test_the_task_select_says_which_tasks_cannot_be_trained_yet(client: TestClient, untrained: str) -> None:
    html = client.get("/projects").text
    assert (
        '<option value="keypoints" data-can-train="no">Keypoints (training not yet available)</option>'
        in html
    )
    assert '<option value="oriented_detection" data-can-train="yes">Oriented detection</option>' in html
    assert '<option value="detection" data-can-train="yes">Detection</option>' in html
    assert '<option value="classification" data-can-train="yes">Classification</option>' in html
    assert '<option value="library" data-can-train="yes">' not in html  # a library is never trained
    # under the select, what the chosen task's projects can do
    hint = html.split('id="new-task-hint"', 1)[1].split("</p>", 1)[0]
    assert (
        "Keypoints — browse, split, search and find duplicates; training not yet available." in hint
        and "Photo library — browse, search, find duplicates, find people, revisit events and make albums; no training."
        in hint
    )


def test_tabs_follow_the_task(client: TestClient, web_studio: Studio, untrained: str) -> None:
    for name, task in (
        ("cls", "classification"),
        ("det", "detection"),
        ("seg", untrained),
        ("obb", "oriented_detection"),
        ("lib", "library"),
    ):
        projects.create_project(web_studio, name=name, task=task)
    trained = [s for s in SECTIONS if s not in ("people", "events", "albums")]  # photo libraries' own
    assert _tabs(client.get("/projects/cls").text) == trained
    assert _tabs(client.get("/projects/det").text) == trained
    assert _tabs(client.get("/projects/seg/search").text) == ["dataset", "split", "search", "duplicates"]
    assert _tabs(client.get("/projects/obb").text) == trained
    assert _tabs(client.get("/projects/lib/duplicates").text) == [
        "dataset",
        "search",
        "duplicates",
        "people",
        "events",
        "albums",
    ]
    lib = client.get("/projects/lib").text
    assert 'href="/projects/lib/split"' not in lib
    assert 'id="f-subset"' not in lib  # no split, no "Split subset" filter


@pytest.mark.parametrize(
    ("project", "task", "section", "title"),
    [
        ("lib", "library", "split", "Split"),
        ("lib", "library", "train", "Train"),
        ("lib", "library", "evaluate", "Evaluate"),
        ("lib", "library", "export", "Export"),
        ("seg", "keypoints", "train", "Train"),
    ],
)
def test_a_section_the_task_does_not_offer_is_a_friendly_404(
    client: TestClient, web_studio: Studio, untrained: str, project: str, task: str, section: str, title: str
) -> None:
    projects.create_project(web_studio, name=project, task=task)
    r = client.get(f"/projects/{project}/{section}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert 'data-testid="section-missing"' in r.text
    assert f"{get_task(task).title} projects have no {title} section" in r.text
    assert _tabs(r.text) == list(get_task(task).sections)  # the way on is right there
    assert client.get("/projects/ghost/train").status_code == 404  # an unknown project stays 404


@pytest.mark.browser
def test_create_dialog_then_the_project_opens(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], untrained: str
) -> None:
    from playwright.sync_api import expect

    base, _, _ = live_server
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        page.goto(base + "/projects")
        alpine_ready(page)
        page.get_by_test_id("new-project").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        page.locator("#new-name").fill(f"signs {size}")
        page.locator("#new-task").select_option(untrained)
        expect(page.locator(f"#new-task option[value={untrained}]")).to_contain_text(
            "training not yet available"
        )
        # the hint under the select follows the choice
        expect(page.locator(f"[data-task-hint={untrained}]")).to_be_visible()
        expect(page.locator(f"[data-task-hint={untrained}]")).to_contain_text("training not yet available")
        expect(page.locator("[data-task-hint=classification]")).to_be_hidden()
        box = dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= w  # nothing cut off
        shot(page, f"projects-create-dialog-{size}")
        page.get_by_role("button", name="Create project").click()
        expect(page).to_have_url(f"{base}/projects/signs%20{size}")
        expect(page.locator("h1")).to_have_text(f"signs {size}")
        tabs = page.get_by_role("navigation", name="Project sections").get_by_role("link")
        expect(tabs).to_have_text(["Dataset", "Timeline", "Map", "Split", "Search", "Duplicates"])


@pytest.mark.browser
def test_demo_library_and_classification_tabs(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    # the digits project exists (empty), so the demo only builds its photo library
    projects.create_project(studio, name=demo.DIGITS, task="classification")
    demo.create_demo(studio)
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        page.goto(f"{base}/projects/{demo.PHOTOS}")
        alpine_ready(page)
        nav = page.get_by_role("navigation", name="Project sections")
        expect(nav.get_by_role("link")).to_have_text(
            ["Dataset", "Timeline", "Map", "Search", "Duplicates", "People", "Events", "Albums"]
        )
        expect(page.get_by_text("No folders yet")).to_have_count(0)
        expect(page.get_by_text(demo.PHOTO_FOLDER).first).to_be_visible()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        shot(page, f"demo-library-dataset-{size}")

        page.goto(f"{base}/projects/{demo.PHOTOS}/duplicates")
        htmx_settled(page)
        expect(page.get_by_text("coffee-small.jpg").first).to_be_visible()
        shot(page, f"demo-library-duplicates-{size}")

        page.goto(f"{base}/projects/{demo.DIGITS}")
        alpine_ready(page)
        tabs = page.get_by_role("navigation", name="Project sections").get_by_role("link")
        # the sections, and the Timeline and the Map (every project's photos by date and place)
        expect(tabs).to_have_text(
            [
                "Dataset",
                "Timeline",
                "Map",
                *[t for s, t in SECTIONS.items() if s not in ("dataset", "people", "events", "albums")],
            ]
        )
        for i in range(tabs.count()):  # all nine in view, on a phone too
            box = tabs.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= w, (size, i)
        shot(page, f"classification-tabs-{size}", full_page=False)

        page.goto(f"{base}/projects/{demo.PHOTOS}/split")
        expect(page.get_by_test_id("section-missing")).to_contain_text("Photo library projects have no Split")
        shot(page, f"library-no-split-{size}", full_page=False)
