"""The Settings page in headless Chromium: sources as badges, the environment's keys read-only, an edit
saved in place with its error beside the control, links from an error to its setting, long paths,
and the page at 1280×800 and 390×844."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vistudio.services import projects
from vistudio.studio import Studio

pytestmark = pytest.mark.browser
LONG = "a-very-long-folder-name-for-the-import-roots-" + "x" * 120


def row(page: Any, key: str) -> Any:
    return page.locator(f'[data-key="{key}"]')


def test_settings_page_shows_sources_and_saves_an_edit_in_place(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    base, studio, root = live_server
    long_root = root / LONG / "photos"
    long_root.mkdir(parents=True, exist_ok=True)
    page.goto(f"{base}/settings")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Settings"
    # the suite runs with VISTUDIO_OFFLINE=1: shown, but not editable here
    offline = row(page, "offline")
    assert offline.locator("[data-testid=source]").inner_text().lower() == "environment"
    assert "the environment wins" in offline.inner_text() and offline.locator("form").count() == 0
    assert row(page, "embedded_workers").locator("form").count() == 0  # read at start

    # a bad value: the error appears inside the row, beside the control that caused it
    batch = row(page, "embed.batch_size")
    batch.locator("input").fill("0")
    batch.get_by_role("button", name="Save").click()
    alert = row(page, "embed.batch_size").locator("[role=alert]")
    alert.wait_for()
    assert "greater than or equal to 1" in alert.inner_text()
    box_input = row(page, "embed.batch_size").locator("input").bounding_box()
    box_alert = alert.bounding_box()
    assert abs(box_alert["y"] - box_input["y"]) < 120

    # a good one: saved, applied to the running server, badge now "workspace"
    batch = row(page, "embed.batch_size")
    batch.locator("input").fill("32")
    batch.get_by_role("button", name="Save").click()
    page.locator('[data-key="embed.batch_size"][data-source="workspace"]').wait_for()
    assert "Saved" in row(page, "embed.batch_size").inner_text()
    assert studio.settings.embed.batch_size == 32

    # a long import root wraps inside its box
    roots = row(page, "import_roots")
    roots.locator("textarea").fill(f"{root}\n{long_root}")
    roots.get_by_role("button", name="Save").click()
    page.locator('[data-key="import_roots"][data-source="workspace"]').wait_for()
    assert long_root.resolve() in studio.settings.import_roots
    page.reload()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "settings-1280")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert row(page, "embed.model").locator("input").bounding_box()["width"] > 150
    assert page.locator(".topbar").bounding_box()["height"] < 60  # the top bar stays one line
    shot(page, "settings-390")

    # reset: back to the default
    page.set_viewport_size({"width": 1280, "height": 800})
    page.reload()
    row(page, "embed.batch_size").get_by_role("button", name="Reset to default").click()
    page.locator('[data-key="embed.batch_size"][data-source="default"]').wait_for()
    assert studio.settings.embed.batch_size == 64


def test_an_error_naming_a_setting_links_to_it(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    base, studio, _ = live_server
    projects.create_project(studio, name="offline-pics", task="classification")
    # the first visit imports open_clip: allow it the time a loaded machine needs
    page.goto(f"{base}/projects/offline-pics/search", timeout=90_000)
    page.evaluate(
        "() => htmx.ajax('POST', '/projects/offline-pics/search/embed', {target: '#embed-error', swap: 'innerHTML'})"
    )
    link = page.locator('#embed-error a[href="/settings#offline"]')
    link.wait_for()
    # a model that cannot be had is a message the user acts on, not a "server error" toast
    assert page.locator("#toast:visible").count() == 0
    shot(page, "settings-error-link-1280", full_page=False)
    link.click()
    page.wait_for_url(f"{base}/settings#offline")
    target = row(page, "offline")
    assert page.evaluate("() => document.querySelector(':target')?.dataset.key") == "offline"
    box = target.bounding_box()
    assert 0 <= box["y"] < 800  # scrolled into view
    shot(page, "settings-target-1280", full_page=False)
