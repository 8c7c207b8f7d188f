"""The regression pages: the Dataset page's target histograms and the Evaluate page's metrics,
predicted-vs-actual scatter (1,000 points, negative and huge values, a click opens the image's
result), residual histogram and the grid sorted by error — through an in-process client, and in
headless Chromium with screenshots in /tmp/shots/reg-*.png; and a real evaluation started from
the page."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready, htmx_settled

from factories import run_import
from regression_factories import (
    bars_project,
    fake_regression_evaluation,
    regression_experiment,
    write_values,
)
from vistudio.api.app import create_app
from vistudio.jobs.queue import FINISHED, job_dict
from vistudio.services import projects, splits
from vistudio.studio import Studio

SHOTS = Path("/tmp/shots")
HX = {"HX-Request": "true"}


def _imported(studio: Studio, project: str, source: Path) -> None:
    """Import ``source`` and wait for the job, whoever runs it (a live server's worker may)."""
    job = run_import(studio, project, source, fmt="csv")
    deadline = time.monotonic() + 180
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
        job = job_dict(studio.queue.get(job["id"]))
    assert job["status"] == "succeeded", job


def temperatures(studio: Studio, root: Path, *, count: int = 1000, name: str = "temps") -> None:
    """A project of ``count`` images with two targets: one around 0 (negative too), one huge
    (tens of millions, negative too); split, a regressor, and a made-up evaluation of every image."""
    rng = np.random.default_rng(5)
    values = [[float(rng.normal(12, 18)), float(rng.uniform(-2e7, 9e7))] for _ in range(count)]
    source = write_values(root / f"{name}-src", values, header=["celsius", "budget"])
    projects.create_project(studio, name=name, task="regression")
    _imported(studio, name, source)
    splits.create_split(studio, project=name, name="s1", ratios=(0.7, 0.15, 0.15), seed=3)
    regression_experiment(studio, project=name, name="fake")
    fake_regression_evaluation(studio, project=name, experiment="fake")


def _shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"reg-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# --- the pages as HTML --------------------------------------------------------------------------------


def test_regression_pages_show_targets_metrics_points_and_grid(studio: Studio, tmp_path: Path) -> None:
    temperatures(studio, tmp_path, count=60)
    c = TestClient(create_app(studio))
    dataset = c.get("/projects/temps").text
    assert 'id="reg-targets"' in dataset and "/static/regression.css" in dataset
    cards = re.findall(r'class="reg-target-card" data-target="([\w]+)"', dataset)
    assert cards == ["target_1", "target_2"]
    assert dataset.count('data-count="') == 2 * 20  # a 20-bin histogram per target
    assert "60 of 60 images with usable values" in dataset

    html = c.get("/projects/temps/evaluate?experiment=fake").text
    assert "/static/regression.js" in html and "/static/regression.css" in html
    assert "2 targets" in html and "evaluated · R²" in html
    for key in ("mae", "rmse", "mse", "r2"):
        assert f'data-metric="{key}"' in html
    assert 'id="per-target"' in html and 'id="reg-target"' in html and 'id="reg-scatter"' in html
    assert html.count('class="eval-tile eval-reg-tile"') == 60
    assert 'id="confusion"' not in html
    points = re.search(r'<script type="application/json" class="reg-points">(.*?)</script>', html, re.S)
    assert points is not None and points.group(1).count("[") > 60

    grid = c.get("/projects/temps/evaluate/fake/grid?sort=-abs_error", headers=HX)
    assert grid.status_code == 200
    errors = [float(x) for x in re.findall(r'data-abs-error="([^"]+)"', grid.text)]
    assert len(errors) == 60 and errors == sorted(errors, reverse=True)
    assert grid.headers["HX-Push-Url"].endswith("sort=-abs_error&page=1")
    bad = c.get("/projects/temps/evaluate/fake/grid?correct=yes", headers=HX)
    assert bad.status_code == 422 and "do not apply to regression" in bad.text
    sid = re.search(r'data-sample-id="(\d+)"', grid.text).group(1)  # type: ignore[union-attr]
    detail = c.get(f"/projects/temps/evaluate/fake/results/{sid}").text
    assert 'data-target="target_1"' in detail and 'class="mono reg-pred"' in detail
    api = c.get("/api/v1/evaluations/temps/fake/results", params={"sort": "abs_error", "limit": 5}).json()
    assert [i["abs_error"] for i in api["items"]] == sorted(i["abs_error"] for i in api["items"])
    assert c.get("/api/v1/projects/temps/targets").json()["usable"] == 60

    # the Train page's form: the regression keys (a loss, no label smoothing), flip-only augmentation
    train = c.get("/projects/temps/train").text
    assert 'id="tf-loss"' in train and 'value="huber"' in train and 'id="tf-label-smoothing"' not in train
    assert re.search(r'id="tf-aug-flip"[^>]*checked', train) and not re.search(
        r'id="tf-aug-crop"[^>]*checked', train
    )
    form = {
        "split": "s1",
        "model": "resnet18",
        "epochs": "1",
        "batch_size": "8",
        "lr": "0.001",
        "image_size": "16",
        "loss": "huber",
        "augment_flip": "on",
        "name": "from-form",
    }
    started = c.post("/projects/temps/train/start", data=form, headers=HX)
    assert started.status_code == 200, started.text
    from vistudio.services import experiments

    exp = experiments.get_experiment(studio, project="temps", experiment="from-form")
    assert (
        exp["config"]["loss"] == "huber"
        and exp["config"]["augment"]["flip"]
        and not exp["config"]["augment"]["crop"]
    )
    assert exp["classes"] == ["target_1", "target_2"] and exp["config"]["monitor"] == "val_rmse"


# --- in the browser -----------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_scatter_of_a_thousand_points_residuals_detail_and_grid(
    live_server: tuple[str, Studio, Path], page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    temperatures(studio, tmp_path, count=1000)

    page.goto(f"{base}/projects/temps")
    expect(page.locator("#reg-targets .reg-target-card")).to_have_count(2, timeout=20_000)
    _shot(page, "01-dataset", full_page=False)
    page.locator("#reg-targets").screenshot(path=str(SHOTS / "reg-02-dataset-targets.png"))

    page.goto(f"{base}/projects/temps/evaluate?experiment=fake")
    alpine_ready(page)
    scatter = page.locator("#reg-scatter")
    expect(scatter).to_have_attribute("data-ready", "1", timeout=20_000)
    expect(scatter).to_have_attribute("data-points", "1000", timeout=20_000)
    expect(page.locator("#reg-residuals")).to_have_attribute("data-residuals", "1000", timeout=20_000)
    # the canvas is drawn at the device's pixel ratio and fills its box: not a blank
    drawn = page.evaluate(
        "() => { const c = document.querySelector('#reg-scatter'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
        " if (d[i]) n++; return [c.width, c.clientWidth, n]; }"
    )
    assert drawn[0] >= drawn[1] > 300 and drawn[2] > 5_000, drawn
    _shot(page, "03-evaluate")
    page.locator(".reg-charts-card").screenshot(path=str(SHOTS / "reg-04-charts-celsius.png"))

    # the huge target: axes in exponents, the same chart
    page.locator("#reg-target").select_option("1")
    page.wait_for_timeout(200)
    page.locator(".reg-charts-card").screenshot(path=str(SHOTS / "reg-05-charts-budget.png"))

    # a point opens its image's result: the one its tooltip names (the topmost of those under
    # the cursor, where points overlap)
    first = page.evaluate("() => window.vistudioRegression.pointAt(0)")
    page.mouse.move(first["x"], first["y"])
    tip = page.locator(".reg-tip")
    expect(tip).to_be_visible(timeout=5_000)
    expect(tip).to_contain_text("true ")
    hovered = re.match(r"#(\d+) ", tip.inner_text())
    assert hovered is not None
    page.locator(".reg-charts-card").screenshot(path=str(SHOTS / "reg-06-hover.png"))
    page.mouse.click(first["x"], first["y"])
    detail = page.locator("#eval-detail [data-testid=eval-detail]")
    expect(detail).to_have_attribute("data-sample-id", hovered.group(1), timeout=20_000)
    expect(page.locator("#reg-detail-values tbody tr")).to_have_count(2)
    _shot(page, "07-detail", full_page=False)
    page.keyboard.press("Escape")
    expect(page.locator("#eval-detail")).not_to_be_visible(timeout=5_000)

    # the grid, largest error first
    htmx_settled(page)
    page.locator("#gf-sort").select_option("-abs_error")
    expect(page).to_have_url(re.compile(r"sort=-abs_error"), timeout=20_000)
    htmx_settled(page)
    tiles = page.locator(".eval-reg-tile")
    expect(tiles).to_have_count(60, timeout=20_000)
    errors = [float(t.get_attribute("data-abs-error") or "nan") for t in tiles.all()]
    assert errors == sorted(errors, reverse=True)
    page.evaluate(
        "() => document.querySelectorAll('.eval-reg-tile img').forEach(i => { i.loading = 'eager'; })"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.eval-reg-tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.locator("#eval-grid").screenshot(path=str(SHOTS / "reg-08-grid.png"))

    # narrow screens: one column, the charts still drawn at their width
    page.set_viewport_size({"width": 640, "height": 900})
    page.goto(f"{base}/projects/temps/evaluate?experiment=fake")
    expect(page.locator("#reg-scatter")).to_have_attribute("data-ready", "1", timeout=20_000)
    width = page.evaluate("() => document.querySelector('#reg-scatter').clientWidth")
    assert 200 < width <= 640
    _shot(page, "09-narrow")


@pytest.mark.browser
@pytest.mark.slow
def test_evaluate_a_regressor_from_the_page(
    live_server: tuple[str, Studio, Path], page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    bars_project(studio, tmp_path, name="bars", count=40)
    regression_experiment(studio, project="bars", name="untrained")
    page.goto(f"{base}/projects/bars/evaluate?experiment=untrained")
    alpine_ready(page)
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    expect(page.locator(".eval-exp-meta")).to_contain_text("1 target")
    page.locator("#ef-subset-val").check()
    page.locator("#ef-device").select_option("cpu")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=90_000)
    expect(page.locator("#eval-metrics .stat[data-metric=r2]")).to_be_visible(timeout=20_000)
    scatter = page.locator("#reg-scatter")
    expect(scatter).to_have_attribute("data-ready", "1", timeout=20_000)
    total = int(page.locator("#grid-total").inner_text())
    expect(scatter).to_have_attribute("data-points", str(total), timeout=20_000)
    expect(page.locator("a.eval-exp[aria-current=page]")).to_contain_text("evaluated", timeout=20_000)
    _shot(page, "10-evaluated-from-the-page")
