"""The Access page in a real browser: an admin makes and revokes a token, adds and removes users
(long names, a refused one), on a desktop and a phone; 1,000 users; the first admin from local mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_factories import checked_page, serve, web_settings

from vistudio.api.app import create_app
from vistudio.db.users import User
from vistudio.services import users
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.browser
LONG = "maria.fernanda.de.los.santos-" + "x" * 59 + "@example.org"  # 100 characters: the most


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    s = open_studio(web_settings(tmp_path))
    yield s
    s.close()


def _sign_in(page: Any, base: str, name: str, password: str, then: str = "/access") -> None:
    page.goto(f"{base}/login?next={then}")
    page.locator("#username").fill(name)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}{then}")


def test_an_admin_manages_tokens_and_users(
    studio: Studio, page: Any, browser: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    users.add_user(studio, name="root", role="admin", password="root password")
    users.add_user(studio, name="edith", role="editor", password="edith password")
    with serve(create_app(studio)) as base:
        _sign_in(page, base, "root", "root password", then="/projects")
        page.get_by_role("link", name="root · admin").click()  # the top bar leads here
        page.wait_for_url(f"{base}/access")
        expect(page.locator("h1")).to_have_text("Access")
        expect(page.get_by_test_id("no-tokens")).to_be_visible()
        # a token for 30 days: its secret shown once, working as a bearer token
        page.locator("#t-days").fill("30")
        page.get_by_role("button", name="Make a token").click()
        secret = page.locator("#new-token [data-secret]").inner_text()
        assert secret.startswith("vst_")
        me = page.request.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.json()["user"]["name"] == "root"
        shot(page, "access-01-new-token")
        # revoke it (after the confirmation)
        page.once("dialog", lambda d: d.accept())
        page.locator("#tokens tr[data-token-id] form.revoke button").click()
        expect(page.locator("#access-done")).to_contain_text("revoked")
        expect(page.locator("#tokens .token-state")).to_have_text(["revoked"])
        assert (
            page.request.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"}).status
            == 401
        )
        # a name the product refuses: the error by the form, what was typed kept
        page.locator("#u-name").fill("no spaces please")
        page.get_by_role("button", name="Add user").click()
        expect(page.locator("#user-form .alert-error")).to_contain_text("a user name is 1-100 letters")
        expect(page.locator("#u-name")).to_have_value("no spaces please")
        # a long name, as an editor with a password
        page.locator("#u-name").fill(LONG)
        page.locator("#u-role").select_option("editor")
        page.locator("#u-password").fill("a long password")
        page.get_by_role("button", name="Add user").click()
        expect(page.locator("#access-done")).to_contain_text(f"User {LONG} added.")
        expect(page.locator(f'#users tr[data-user="{LONG}"]')).to_be_visible()
        # edith becomes a viewer from her row
        page.locator('#users tr[data-user="edith"] form.role-form select').select_option("viewer")
        page.locator('#users tr[data-user="edith"] form.role-form button').click()
        expect(page.locator("#access-done")).to_contain_text("User edith's role changed.")
        expect(page.locator('#users tr[data-user="edith"] select')).to_have_value("viewer")
        # the page stays within the window however long the name
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "access-02-admin")
        with checked_page(browser, {"width": 375, "height": 740}) as phone:
            # the new user on a phone: the top bar holds a 100-character name
            _sign_in(phone, base, LONG, "a long password")
            expect(phone.locator("#tokens, [data-testid=no-tokens]")).to_have_count(1)
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            shot(phone, "access-03-phone")
        # remove edith: her row goes, she is signed out
        page.once("dialog", lambda d: d.accept())
        page.locator('#users tr[data-user="edith"] form.remove-user button').click()
        expect(page.locator("#access-done")).to_contain_text("User edith removed")
        expect(page.locator('#users tr[data-user="edith"]')).to_have_count(0)
        # root and edith added, the token made and revoked, the long name added, edith's role, her removal
        expect(page.locator("#audit tbody tr")).to_have_count(7)
        assert [u["name"] for u in users.list_users(studio)["items"]] == sorted([LONG, "root"])


def test_a_thousand_users(studio: Studio, page: Any, shot: Callable[..., Path]) -> None:
    from playwright.sync_api import expect

    users.add_user(studio, name="root", role="admin", password="root password")
    with studio.sessions.begin() as s:
        s.add_all(User(name=f"member-{i:04d}", role=("viewer", "editor")[i % 2]) for i in range(1000))
    with serve(create_app(studio)) as base:
        _sign_in(page, base, "root", "root password")
        expect(page.locator("#users tbody tr")).to_have_count(1001)
        expect(page.locator("#users-title")).to_contain_text("1001")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "access-04-thousand-users", full_page=False)


def test_the_first_admin_from_local_mode(studio: Studio, page: Any, shot: Callable[..., Path]) -> None:
    from playwright.sync_api import expect

    with serve(create_app(studio)) as base:
        page.goto(f"{base}/settings")
        page.get_by_role("link", name="Access").click()
        page.wait_for_url(f"{base}/access")
        expect(page.locator("#first-admin")).to_be_visible()
        shot(page, "access-05-local-mode")
        page.locator("#u-name").fill("root")
        page.locator("#u-password").fill("root password")
        page.get_by_role("button", name="Create the admin and sign in").click()
        page.wait_for_url(f"{base}/login?next=/access")
        page.locator("#username").fill("root")
        page.locator("#password").fill("root password")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/access")
        expect(page.locator('#users tr[data-user="root"]')).to_contain_text("admin")
