"""Web sign-in in a real browser once users exist: the login form, a session cookie, htmx writes
carrying the session's CSRF token, a project the user cannot see, sign-out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_factories import serve, web_settings

from vistudio.api.app import create_app
from vistudio.services import projects, users
from vistudio.studio import open_studio

pytestmark = pytest.mark.browser


@pytest.fixture
def signed_server(tmp_path: Path) -> Iterator[str]:
    studio = open_studio(web_settings(tmp_path))
    users.add_user(studio, name="root", role="admin", password="root password")
    users.add_user(studio, name="edith", role="editor", password="edith password")
    projects.create_project(studio, name="Root Only", task="library")  # created after: root's alone
    app = create_app(studio)
    with serve(app) as base:
        yield base
    studio.close()


def test_sign_in_create_and_sign_out(signed_server: str, page: Any, shot: Callable[[Any, str], Path]) -> None:
    from playwright.sync_api import expect

    base = signed_server
    page.goto(f"{base}/projects")
    assert page.url == f"{base}/login?next=/projects"
    page.locator("#username").fill("edith")
    page.locator("#password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    page.locator("#password").fill("edith password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/projects")
    expect(page.locator("header")).to_contain_text("edith · editor")
    expect(page.get_by_text("Root Only")).to_have_count(0)
    # an htmx form post: it needs the session's CSRF token, which the page sends
    page.get_by_test_id("new-project").click()
    page.locator("#new-name").fill("Edith birds")
    page.locator("#new-task").select_option("library")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("h1")).to_have_text("Edith birds")
    shot(page, "sign-in-editor-project")
    # someone else's project is a plain "not found"
    page.goto(f"{base}/projects/Root%20Only")
    expect(page.get_by_role("alert")).to_contain_text("project 'Root Only' not found")
    page.goto(f"{base}/projects")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/projects")
    assert page.url.startswith(f"{base}/login")
