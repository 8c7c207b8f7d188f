"""The Train page: empty states, form validation messages, the experiment list and detail, stop and
delete through the page routes, the comparison page; and in headless Chromium a real training whose
loss curve grows live over SSE until it is stopped, many experiments with long names, and the
comparison charts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready

from training_helpers import TINY, run_job, tiny_project
from vistudio.api.app import create_app
from vistudio.services import experiments, projects
from vistudio.studio import Studio

HX = {"HX-Request": "true"}
LONG = "a-very-long-experiment-name-that-should-be-truncated-in-the-list-and-the-header-" + "x" * 18


@pytest.fixture
def client(web_studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(web_studio)) as c:
        yield c


def test_empty_states_and_validation_messages(client: TestClient, web_studio: Studio, tmp_path: Path) -> None:
    tiny_project(web_studio, tmp_path, split=False, per_class=4)
    html = client.get("/projects/shapes/train").text
    assert (
        'id="go-split"' in html and 'href="/projects/shapes/split"' in html and 'id="train-form"' not in html
    )
    assert 'id="experiments-empty"' in html
    projects.create_project(web_studio, name="photos", task="library")
    hidden = client.get("/projects/photos/train")  # a photo library has no Train section
    assert hidden.status_code == 404 and "Photo library projects have no Train section" in hidden.text
    assert client.get("/projects/nope/train").status_code == 404

    from vistudio.services import splits

    splits.create_split(web_studio, project="shapes", name="s1", ratios=(0.5, 0.25, 0.25), seed=1)
    html = client.get("/projects/shapes/train").text
    for hook in (
        'id="train-form"',
        'id="start-training"',
        'id="tf-model"',
        'id="tf-epochs"',
        'id="tf-aug-flip"',
    ):
        assert hook in html
    r = client.post(
        "/projects/shapes/train/start", data={"epochs": "many", "lr": "0", "name": "x"}, headers=HX
    )
    assert r.status_code == 400 and r.headers["HX-Retarget"] == "#train-errors"
    assert '<li data-key="epochs"><strong>Epochs</strong>: must be a whole number' in r.text
    r = client.post(
        "/projects/shapes/train/start", data={"epochs": "0", "lr": "0", "batch_size": "8"}, headers=HX
    )
    assert r.status_code == 400
    assert 'data-key="epochs"' in r.text and 'data-key="lr"' in r.text and "greater than" in r.text
    r = client.post("/projects/shapes/train/start", data={"epochs": "1", "name": "bad name!"}, headers=HX)
    assert r.status_code == 422 and "experiment name" in r.text


def test_start_detail_stop_delete_and_compare_through_the_page(
    client: TestClient, web_studio: Studio, tmp_path: Path
) -> None:
    tiny_project(web_studio, tmp_path, per_class=4)
    form = {
        "name": "page-1",
        "epochs": "3",
        "batch_size": "8",
        "lr": "0.01",
        "image_size": "16",
        "seed": "2",
        "model": "resnet18",
        "augment_rotate": "on",
        "early_stopping": "on",
        "patience": "2",
    }
    r = client.post("/projects/shapes/train/start", data=form, headers=HX)
    assert r.status_code == 200, r.text
    assert (
        'id="experiment-detail"' in r.text
        and 'data-experiment="page-1"' in r.text
        and 'data-status="queued"' in r.text
    )
    assert 'id="stop-training"' in r.text and 'hx-swap-oob="true"' in r.text  # the list comes along
    exp = experiments.get_experiment(web_studio, project="shapes", experiment="page-1")
    assert exp["config"]["augment"] == {"crop": False, "flip": False, "rotate": True, "color": False}
    assert (
        exp["config"]["early_stopping"] and exp["config"]["patience"] == 2 and not exp["config"]["pretrained"]
    )
    r = client.post("/projects/shapes/train/experiments/page-1/stop", headers=HX)
    assert 'data-status="stopped"' in r.text and 'id="stop-training"' not in r.text

    started = experiments.start_experiment(
        web_studio, project="shapes", config={**TINY, "epochs": 1}, name=LONG
    )
    assert run_job(web_studio, started["job"]["id"])["status"] == "succeeded"
    html = client.get(f"/projects/shapes/train?experiment={LONG}").text
    assert f'data-experiment="{LONG}"' in html and 'id="evaluate-experiment"' in html
    assert 'data-kind="best"' in html and 'data-kind="last"' in html and '"val_accuracy"' in html
    rows = client.get("/projects/shapes/train/list", headers=HX).text
    assert rows.count("<tr data-experiment=") == 2 and 'id="compare-experiments"' in rows
    detail = client.get("/projects/shapes/train/experiments/page-1", headers=HX).text
    assert detail.lstrip().startswith("<section") and 'data-status="stopped"' in detail

    page = client.get(f"/projects/shapes/train/compare?exp={LONG}&exp=page-1").text
    assert page.count("<tr data-experiment=") == 2 and 'class="compare-chart"' in page
    assert 'data-metric="val_accuracy"' in page and 'class="num best"' in page
    assert client.get("/projects/shapes/train/compare?exp=page-1").status_code == 422
    assert client.get("/projects/shapes/train/compare?exp=page-1&exp=ghost").status_code == 404

    r = client.post("/projects/shapes/train/experiments/page-1/delete", headers=HX)
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/projects/shapes/train"
    assert experiments.list_experiments(web_studio, project="shapes")["total"] == 1
    r = client.post("/projects/shapes/train/experiments/page-1/stop", headers=HX)
    assert r.status_code == 404


@pytest.mark.browser
@pytest.mark.slow
def test_live_curves_stop_many_experiments_and_compare(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    tiny_project(studio, tmp_path, name="live")
    page.goto(f"{base}/projects/live/train")
    alpine_ready(page)
    shot(page, "train-01-empty")
    page.locator("#tf-name").fill("live-run")
    page.locator("#tf-epochs").fill("400")
    page.locator("#tf-batch-size").fill("8")
    page.locator("#tf-image-size").fill("16")
    page.locator("#tf-lr").fill("0.01")
    page.locator("#tf-aug-crop").uncheck()
    page.locator("#tf-aug-flip").uncheck()
    page.locator("#tf-advanced summary").click()
    page.locator("#tf-log-every").fill("1")
    page.locator("#start-training").click()
    detail = page.locator("section#experiment-detail")
    expect(detail).to_have_attribute("data-experiment", "live-run", timeout=30_000)
    expect(page.locator("#experiments-list tr[data-experiment=live-run]")).to_be_visible()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=90_000)
    page.wait_for_function(
        "() => +document.querySelector('canvas#loss-chart').dataset.points >= 2", timeout=120_000
    )
    first = int(page.locator("canvas#loss-chart").get_attribute("data-points") or "0")
    page.wait_for_function(
        f"() => +document.querySelector('canvas#loss-chart').dataset.points > {first}", timeout=120_000
    )
    page.wait_for_function(
        "() => +document.querySelector('canvas#metric-chart').dataset.points >= 1", timeout=120_000
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "train-02-live")
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=120_000)
    expect(page.locator("#train-checkpoints li[data-kind=last]")).to_be_visible(timeout=30_000)
    expect(page.locator("#evaluate-experiment")).to_be_visible()
    # the swapped-in panel draws its recorded curves again
    page.wait_for_function("() => +document.querySelector('canvas#loss-chart').dataset.points > 2")
    expect(page.locator("#experiments-list tr[data-experiment=live-run]")).to_have_attribute(
        "data-status", "stopped"
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "train-03-stopped")

    # many experiments, long names: nothing sticks out sideways
    for i in range(12):
        name = LONG if i == 0 else f"exp-{i:02d}"
        experiments.start_experiment(studio, project="live", config={**TINY, "epochs": 1}, name=name)
        experiments.stop_experiment(studio, project="live", experiment=name)
    page.goto(f"{base}/projects/live/train?experiment={LONG}")
    alpine_ready(page)
    expect(page.locator("#experiments-list tbody tr")).to_have_count(13)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    shot(page, "train-04-many-long-names")

    page.locator(f"#experiments-list input[value='{LONG}']").check()
    page.locator("#experiments-list input[value='live-run']").check()
    page.locator("#compare-experiments").click()
    expect(page.locator("#compare-table tbody tr")).to_have_count(2)
    page.wait_for_function(
        "() => +document.querySelector('canvas.compare-chart[data-metric=val_loss]').dataset.points >= 1"
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    shot(page, "train-05-compare")


@pytest.mark.browser
@pytest.mark.slow
def test_live_numbers_first_epoch_points_and_image_size_warning(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    tiny_project(studio, tmp_path, name="speedy")  # 18 training images
    page.goto(f"{base}/projects/speedy/train", timeout=60_000)  # the first page loads the model catalog
    alpine_ready(page)
    warnings = page.locator("#tf-warnings .train-warning")
    expect(warnings).to_have_count(0)
    # the warning shows while the form is filled in, before anything starts
    page.locator("#tf-model").select_option("mobilenet_v3_small")
    page.locator("#tf-image-size").fill("32")
    expect(warnings).to_have_count(1)
    expect(warnings.first).to_have_attribute("data-key", "image_size")
    expect(warnings.first).to_contain_text("96 px")
    shot(page, "train-06-size-warning", full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    warnings.first.scroll_into_view_if_needed()
    shot(page, "train-07-size-warning-narrow", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.locator("#tf-image-size").fill("224")
    expect(warnings).to_have_count(0)

    # batch 2: 9 steps an epoch, fewer than the default "log every 10 steps"
    page.locator("#tf-image-size").fill("32")
    page.locator("#tf-name").fill("speed-run")
    page.locator("#tf-epochs").fill("300")
    page.locator("#tf-batch-size").fill("2")
    page.locator("#tf-aug-crop").uncheck()
    page.locator("#tf-aug-flip").uncheck()
    expect(warnings).to_have_count(1)  # the live warning for 32 px is back: its request is done
    page.locator("#start-training").click()
    # the first start validates the config with the model catalog (torch): slow on a busy machine
    expect(page.locator("section#experiment-detail")).to_have_attribute(
        "data-experiment", "speed-run", timeout=60_000
    )
    expect(page.locator("#experiment-detail .train-warning[data-key=image_size]")).to_be_visible()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=90_000)
    # the live numbers while it runs: steps of the whole run, the epoch, images/s, time left
    expect(page.locator("#train-step")).to_have_text(re.compile(r"^[1-9][\d,]* / 2,700$"), timeout=60_000)
    expect(page.locator("#train-live-epoch")).to_have_text(re.compile(r"^\d+ / 300$"))
    expect(page.locator("#train-speed")).to_have_text(re.compile(r"^[\d,.]+ img/s$"))
    expect(page.locator("#train-eta")).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))
    # points from the first epoch on both charts (9 steps: every 2 steps from step 1)
    first_epoch = """(key) => {
        const canvas = document.querySelector(key === 'train_loss_step' ? 'canvas#loss-chart' : 'canvas#metric-chart');
        const ds = Chart.getChart(canvas).data.datasets.find((d) => d.key === key);
        return ds.data.filter((p) => p.x <= 9).map((p) => p.x);
    }"""
    page.wait_for_function(f"() => ({first_epoch})('train_loss_step').length >= 5", timeout=60_000)
    assert page.evaluate(first_epoch, "train_loss_step")[:5] == [1, 2, 4, 6, 8]
    assert page.evaluate(first_epoch, "train_accuracy_step")[:5] == [1, 2, 4, 6, 8]
    # the step axis reaches the end of the epoch in progress, not the far end of 300 epochs
    end = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas#loss-chart')).options.scales.x.max"
    )
    assert end % 9 == 0 and 9 <= end < 2700
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "train-08-live-numbers")
    page.set_viewport_size({"width": 390, "height": 844})
    # nothing sticks out sideways once the charts have followed the new width
    page.wait_for_function("() => document.documentElement.scrollWidth <= 390")
    page.locator("#train-live").scroll_into_view_if_needed()
    shot(page, "train-09-live-numbers-narrow", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 800})
    # a reload mid-run draws the recorded points and the latest numbers from the server
    page.reload()
    alpine_ready(page)
    expect(page.locator("#train-speed")).to_have_text(re.compile(r"^[\d,.]+ img/s$"))
    page.wait_for_function(f"() => ({first_epoch})('train_loss_step').length >= 5")
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=120_000)
    expect(page.locator("#train-eta")).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))  # how long it took
    # a stopped run's epoch is the epochs it finished, as in the list
    done = page.locator("#train-epoch").inner_text()
    expect(page.locator("#train-live-epoch")).to_have_text(f"{done} / 300")
