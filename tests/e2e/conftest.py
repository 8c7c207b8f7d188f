"""Fixtures for the web GUI tests: a temp workspace, the real app under uvicorn, headless Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_factories import (
    CHROMIUM,
    SCREENSHOTS,
    checked_page,
    serve,
    web_settings,
)

from vistudio.api.app import create_app
from vistudio.studio import Studio, open_studio


@pytest.fixture
def web_studio(tmp_path: Path) -> Iterator[Studio]:
    studio = open_studio(web_settings(tmp_path))
    yield studio
    studio.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Studio, Path]]:
    """The real app with one embedded worker, served by uvicorn on a free port: (base URL, studio, root)."""
    root = tmp_path_factory.mktemp("web")
    studio = open_studio(web_settings(root))
    app = create_app(studio, workers=1)
    with serve(app) as base:
        yield base, studio, root
    studio.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with checked_page(browser, {"width": 1280, "height": 800}) as p:
        yield p


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """Save a full-page screenshot to screenshots/<name>.png at the repo root."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page: Any, name: str, *, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
