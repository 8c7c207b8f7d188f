"""Resume on the Train page, in headless Chromium: a running experiment is stopped, *Resume*
continues it (the curves go on from the step it stopped at, following the new job live), and a
finished experiment asks for the new total of epochs before it resumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready

from training_helpers import TINY, run_job, tiny_project
from vistudio.services import experiments
from vistudio.studio import Studio

FIRST_STEP = (
    "() => Math.min(...Chart.getChart(document.querySelector('canvas#loss-chart'))"
    ".data.datasets.flatMap((d) => d.data.map((p) => p.x)))"
)


@pytest.mark.browser
@pytest.mark.slow
def test_stop_then_resume_then_more_epochs_in_the_browser(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    tiny_project(studio, tmp_path, name="again")
    experiments.start_experiment(
        studio, project="again", config={**TINY, "epochs": 300}, name="paused"
    )  # the server's worker takes it
    page.goto(f"{base}/projects/again/train?experiment=paused")
    alpine_ready(page)
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=120_000)
    page.wait_for_function(
        "() => +document.querySelector('canvas#loss-chart').dataset.points >= 2", timeout=120_000
    )
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=120_000)
    expect(page.locator("#resume-training")).to_be_visible(timeout=30_000)
    expect(page.locator("#resume-epochs")).to_have_value("300")
    stopped_at = experiments.get_experiment(studio, project="again", experiment="paused")
    last_step = next(c["step"] for c in stopped_at["checkpoints"] if c["kind"] == "last")
    points = int(page.locator("canvas#loss-chart").get_attribute("data-points") or "0")
    shot(page, "train-resume-01-stopped")

    page.locator("#resume-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "running", timeout=120_000)
    expect(page.locator("#stop-training")).to_be_visible()
    # the live stream of the new job adds points after the ones recorded before the stop
    page.wait_for_function(
        f"() => +document.querySelector('canvas#loss-chart').dataset.points > {points}", timeout=120_000
    )
    # ... and keeps those: the curves start at step 1, not where the resumed job did
    assert page.evaluate(FIRST_STEP) == 1
    shot(page, "train-resume-02-running-again")
    page.locator("#stop-training").click()
    expect(page.locator("#train-status")).to_have_attribute("data-status", "stopped", timeout=120_000)
    again = experiments.get_experiment(studio, project="again", experiment="paused")
    assert next(c["step"] for c in again["checkpoints"] if c["kind"] == "last") > last_step
    assert again["job"]["attempts"] == 1 and again["job_id"] != stopped_at["job_id"]

    # a finished experiment: the field asks for the new total, above the epochs done
    done = experiments.start_experiment(studio, project="again", config={**TINY, "epochs": 1}, name="done")
    run_job(studio, done["job"]["id"])
    page.goto(f"{base}/projects/again/train?experiment=done")
    alpine_ready(page)
    expect(page.locator("#train-status")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    field = page.locator("#resume-epochs")
    expect(field).to_have_attribute("min", "2")
    field.fill("1")
    page.locator("#resume-training").click()  # the browser refuses a value under min
    assert page.evaluate("() => document.querySelector('#resume-epochs').validity.rangeUnderflow")
    points = int(page.locator("canvas#loss-chart").get_attribute("data-points") or "0")
    assert points >= 3  # epoch 1: steps and its validation
    field.fill("3")
    page.locator("#resume-training").click()
    expect(page.locator("#stop-training")).to_be_visible(timeout=30_000)  # the resumed run's panel
    expect(page.locator("#train-status")).to_have_attribute("data-status", "succeeded", timeout=180_000)
    expect(page.locator("#train-epoch")).to_have_text("3", timeout=30_000)
    expect(page.locator("#resume-epochs")).to_have_attribute("min", "4")
    # the curves go on from epoch 1's points: none of them was dropped when the new job started
    page.wait_for_function(
        f"() => +document.querySelector('canvas#loss-chart').dataset.points > {points}", timeout=30_000
    )
    assert page.evaluate(FIRST_STEP) == 1
    shot(page, "train-resume-03-more-epochs")
    assert experiments.get_experiment(studio, project="again", experiment="done")["epochs_done"] == 3
