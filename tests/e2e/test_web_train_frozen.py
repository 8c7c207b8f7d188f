"""The Train form's "frozen backbone" box starts as the CLI and the API would: ticked for a DINOv3
model (trained as a linear probe by default), not for the others, unless the user set it by hand."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready

from training_helpers import tiny_project
from vistudio.api.app import create_app
from vistudio.studio import Studio

FROZEN = "document.getElementById('tf-freeze').checked"
SENT = "new FormData(document.getElementById('train-form')).get('freeze_backbone')"


@pytest.fixture
def client(web_studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(web_studio)) as c:
        yield c


def test_the_form_knows_each_models_default(client: TestClient, web_studio: Studio, tmp_path: Path) -> None:
    tiny_project(web_studio, tmp_path, per_class=4)
    html = client.get("/projects/shapes/train").text
    options = dict(re.findall(r'<option value="([\w.-]+)"[^>]*data-frozen="(yes|no)"', html))
    assert options["resnet18"] == "no" and options["dinov3_vit_small"] == "yes"
    assert {m for m, frozen in options.items() if frozen == "yes"} == {
        m for m in options if m.startswith("dinov3_")
    }
    # the first model is not a DINOv3 one: the box starts unticked, as its config would be
    assert not next(iter(options)).startswith("dinov3_")
    box = re.search(r'<input id="tf-freeze"[^>]*>', html)
    assert box and "checked" not in box.group(0)


@pytest.mark.browser
@pytest.mark.slow
def test_the_box_follows_the_model_until_set_by_hand(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    base, studio, _ = live_server
    tiny_project(studio, tmp_path, name="frozen")
    page.goto(f"{base}/projects/frozen/train", timeout=60_000)  # the first page loads the model catalog
    alpine_ready(page)
    model = page.locator("#tf-model")
    assert page.evaluate(FROZEN) is False and page.evaluate(SENT) is None
    model.select_option("dinov3_vit_small")
    assert page.evaluate(FROZEN) is True and page.evaluate(SENT) == "on"  # what Start training sends
    page.locator("#tf-advanced summary").click()
    page.locator("#tf-freeze").scroll_into_view_if_needed()
    shot(page, "train-dinov3-frozen", full_page=False)
    model.select_option("resnet18")
    assert page.evaluate(FROZEN) is False
    model.select_option("dinov3_convnext_small")
    assert page.evaluate(FROZEN) is True

    # unticked by hand: the user's choice stays, whichever model comes next
    page.locator("#tf-freeze").uncheck()
    model.select_option("resnet18")
    model.select_option("dinov3_vit_base")
    assert page.evaluate(FROZEN) is False and page.evaluate(SENT) is None
