"""The curation loop as one walk in headless Chromium, against the real app with its embedded worker:
evaluate a trained experiment from the Evaluate page → show the wrong results → tag them in one action
→ open one in the editor → fix its label in the sample detail → make a dataset version → train a second
experiment from the Train page → see that the first one's labels changed since → compare the two.

The user's actions go through the pages' controls; the API only checks what they did. Screenshots of
each step land in /tmp/shots/fixwalk-*.png."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_factories import alpine_ready, htmx_settled, wait_for_job

from eval_factories import digits_project
from vistudio.services import edits, experiments, samples
from vistudio.studio import Studio

SHOTS = Path("/tmp/shots")
PROJECT = "fixwalk"
# the settings both experiments train with (A through the service, B through the Train page's form):
# resnet18 from scratch on 32 px digits, a few optimiser steps — seconds on a CPU
TINY = {
    "model": "resnet18",
    "pretrained": False,
    "image_size": 32,
    "epochs": 4,
    "batch_size": 8,
    "lr": 0.001,
    "seed": 7,
    "device": "cpu",
    "augment": {"crop": False, "flip": False, "rotate": False, "color": False},
}


def _snap(page: Any, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    if full_page:  # from the top: sticky bars are drawn where the page was scrolled to otherwise
        page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / f"fixwalk-{name}.png"), full_page=full_page)


def _api(base: str, path: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{base}/api/v1{path}", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _images_loaded(page: Any, selector: str) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll({selector!r})].every(i => i.complete && i.naturalWidth > 0)"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_fix_retrain_and_compare_walk(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    digits_project(studio, root, name=PROJECT, classes=(0, 1, 2), per_class=16)
    # real mistakes: a few held-out images (val and test: never trained on, so a model that learnt the
    # digits predicts their true digit) get the next digit's label
    flipped: dict[int, str] = {}  # sample id -> its true digit
    rng = random.Random(5)
    for subset in ("val", "test"):
        held = samples.list_samples(studio, project=PROJECT, split="default", subset=subset, limit=100)[
            "items"
        ]
        for item in rng.sample(held, 2):
            true = item["labels"][0]
            other = str((int(true) + 1) % 3)
            edits.edit_labels(studio, project=PROJECT, selection={"sample_ids": [item["id"]]}, set_to=[other])
            flipped[item["id"]] = true
    # experiment A: a real (tiny) training run, so that it has curves and metrics to compare
    started = experiments.start_experiment(studio, project=PROJECT, config=TINY, name="exp-a")
    assert wait_for_job(studio, started["job"]["id"], timeout=180)["status"] == "succeeded"
    version_a = _api(base, f"/experiments/{PROJECT}/exp-a")["experiment"]["version"]
    assert version_a["labels_changed_since"] == 0

    # 1. Evaluate A from the page (val + test, CPU), then the wrong results, tagged in one action
    page.goto(f"{base}/projects/{PROJECT}/evaluate")
    alpine_ready(page)
    expect(page.locator("a.eval-exp[aria-current=page]")).to_have_attribute("data-experiment", "exp-a")
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none")
    expect(page.locator("#ef-labels")).to_have_value("version")  # A's version: the flipped labels
    page.locator("#ef-subset-val").check()
    expect(page.locator("#ef-subset-test")).to_be_checked()
    page.locator("#ef-device").select_option("cpu")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    evaluated = _api(base, f"/evaluations/{PROJECT}/exp-a")["evaluation"]
    held_out = sum(
        samples.list_samples(studio, project=PROJECT, split="default", subset=s, limit=1)["total"]
        for s in ("val", "test")
    )
    expect(page.locator("#grid-total")).to_have_text(str(held_out))
    accuracy = evaluated["metrics"]["accuracy"]
    expect(page.locator("#eval-metrics .stat[data-metric=accuracy]")).to_contain_text(f"{100 * accuracy:.1f}")
    _images_loaded(page, ".eval-tile img")
    _snap(page, "1-evaluated")

    wrong = _api(base, f"/evaluations/{PROJECT}/exp-a/results", correct="false", limit=200)
    mistakes = wrong["total"]
    assert mistakes > 0
    htmx_settled(page)
    page.locator("#gf-correct").select_option("no")
    expect(page.locator("#grid-total")).to_have_text(str(mistakes))
    expect(page.locator(".eval-tile[data-correct=true]")).to_have_count(0)
    htmx_settled(page)
    alpine_ready(page)
    expect(page.locator("label[for=eval-tag-name]")).to_have_text(
        f"Tag these {mistakes} image{'' if mistakes == 1 else 's'}"
    )
    expect(page.locator("#eval-tag-name")).to_have_value("review")
    page.locator("#eval-tag-go").click()
    plural = "image" if mistakes == 1 else "images"
    expect(page.locator("#eval-tag-message")).to_contain_text(f"Tagged {mistakes} {plural} “review”.")
    tagged = _api(base, "/samples", project=PROJECT, tag="review", limit=200)
    assert tagged["total"] == mistakes
    assert {it["id"] for it in tagged["items"]} == {r["sample_id"] for r in wrong["items"]}
    _images_loaded(page, ".eval-tile img")
    _snap(page, "2-wrong-tagged")

    # 2. open a caught mistake in the editor and give it its true digit: one of the validation images,
    # so that the fix shows in the next experiment's validation metrics
    by_id = {r["sample_id"]: r for r in wrong["items"]}
    caught = sorted(sid for sid, r in by_id.items() if sid in flipped and r["subset"] == "val")
    assert caught, f"the evaluation found none of the flipped validation images: {by_id}"
    sid = caught[0]
    result = by_id[sid]
    fixed_label = flipped[sid]
    assert fixed_label != result["true"]
    wrap = page.locator(".eval-tile-wrap").filter(has=page.locator(f".eval-tile[data-sample-id='{sid}']"))
    wrap.hover()
    wrap.locator("a.eval-open").click()
    expect(page).to_have_url(f"{base}/projects/{PROJECT}?sample={sid}")
    detail = page.get_by_test_id("sample-detail")
    expect(page.locator("dialog[open]")).to_have_count(1)
    expect(detail).to_have_attribute("data-detail-id", str(sid))
    expect(page.locator("[data-testid=sample-detail][data-ready]")).to_have_count(1)
    label = detail.get_by_test_id("detail-label")
    expect(label).to_have_value(result["true"])
    history = detail.get_by_test_id("history-item")
    expect(history.first).to_contain_text("tags: +review")
    label.select_option(fixed_label)
    expect(history.first).to_contain_text(f"label: {result['true']} → {fixed_label}")
    expect(history.first).to_contain_text("web")
    expect(label).to_have_value(fixed_label)
    sample = _api(base, f"/samples/{sid}")["sample"]
    assert sample["labels"] == [fixed_label] and "review" in sample["tags"]
    _images_loaded(page, "#detail img")
    _snap(page, "3-detail-fixed", full_page=False)

    # 3. Split tab → Dataset versions: make "fixed", compare it with A's version: one relabelled
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)
    page.locator("nav.tabs a[data-section=split]").click()
    expect(page).to_have_url(f"{base}/projects/{PROJECT}/split")
    page.locator("#versions-link").click()
    expect(page).to_have_url(f"{base}/projects/{PROJECT}/versions")
    alpine_ready(page)
    expect(
        page.locator(f"#versions tr.ver-row[data-version='{version_a['name']}'] [data-testid=edited-since]")
    ).to_be_visible()
    page.locator("#version-name").fill("fixed")
    page.locator("#version-create-go").click()
    expect(page.locator("#version-made")).to_contain_text("Made version fixed")
    expect(page.locator("#versions tr.ver-row")).to_have_count(2)
    htmx_settled(page)
    page.locator("#version-a").select_option(version_a["name"])
    page.locator("#version-b").select_option("fixed")
    page.locator("#version-compare-go").click()
    diff = page.get_by_test_id("version-diff")
    expect(diff).to_have_attribute("data-b", "fixed")
    expect(diff.locator(".stat[data-stat=relabelled] .stat-n")).to_have_text("1")
    expect(diff.locator(".stat[data-stat=added] .stat-n")).to_have_text("0")
    expect(diff.locator(".stat[data-stat=removed] .stat-n")).to_have_text("0")
    expect(diff.locator("a.ver-thumb")).to_have_count(1)
    expect(diff.locator(f"a.ver-thumb[data-sample-id='{sid}'] .ver-thumb-label")).to_have_text(
        f"{result['true']} → {fixed_label}"
    )
    expect(diff.locator(f"#version-classes tr[data-class='{fixed_label}'] td").first).to_have_text("+1")
    api_diff = _api(base, f"/projects/{PROJECT}/versions/diff", a=version_a["name"], b="fixed")
    assert api_diff["labels_changed"] == 1
    _images_loaded(page, ".ver-thumb img")
    _snap(page, "4-versions-diff")

    # 4. experiment B from the Train page, with A's settings
    page.locator("nav.tabs a[data-section=train]").click()
    expect(page).to_have_url(f"{base}/projects/{PROJECT}/train")
    alpine_ready(page)
    page.locator("#tf-name").fill("exp-b")
    page.locator("#tf-model").select_option(TINY["model"])
    page.locator("#tf-epochs").fill(str(TINY["epochs"]))
    page.locator("#tf-batch-size").fill(str(TINY["batch_size"]))
    page.locator("#tf-lr").fill(str(TINY["lr"]))
    page.locator("#tf-image-size").fill(str(TINY["image_size"]))
    page.locator("#tf-seed").fill(str(TINY["seed"]))
    page.locator("#tf-aug-crop").uncheck()
    page.locator("#tf-aug-flip").uncheck()
    expect(page.locator("#tf-pretrained")).not_to_be_checked()
    page.locator("#tf-advanced summary").click()
    page.locator("#tf-device").select_option("cpu")
    page.locator("#start-training").click()
    expect(page.locator("section#experiment-detail")).to_have_attribute(
        "data-experiment", "exp-b", timeout=30_000
    )
    expect(page.locator("#train-status")).to_have_attribute("data-status", "succeeded", timeout=180_000)
    expect(page.get_by_test_id("train-version")).to_have_text("fixed")
    expect(page.get_by_test_id("labels-changed")).to_have_count(0)
    page.wait_for_function("() => +document.querySelector('canvas#loss-chart').dataset.points >= 1")
    _snap(page, "5-b-trained")
    exp_a = _api(base, f"/experiments/{PROJECT}/exp-a")["experiment"]
    exp_b = _api(base, f"/experiments/{PROJECT}/exp-b")["experiment"]
    assert exp_b["status"] == "succeeded" and exp_b["version"]["name"] == "fixed"
    assert exp_a["version"]["name"] == version_a["name"] and exp_a["version"]["id"] == version_a["id"]
    assert exp_a["version"]["labels_changed_since"] == 1
    for key in ("model", "image_size", "epochs", "batch_size", "lr", "seed", "pretrained", "augment"):
        assert exp_b["config"][key] == exp_a["config"][key], key

    # A's page says its labels changed since its version
    expect(page.locator("#experiments-list tr[data-experiment=exp-b]")).to_have_attribute(
        "data-status", "succeeded"
    )
    page.locator("#experiments-list a.exp-link", has_text="exp-a").click()
    expect(page.locator("section#experiment-detail")).to_have_attribute("data-experiment", "exp-a")
    expect(page).to_have_url(f"{base}/projects/{PROJECT}/train?experiment=exp-a")
    notice = page.get_by_test_id("labels-changed")
    expect(notice).to_contain_text(
        f"The labels of 1 sample of its split changed since version {version_a['name']}."
    )
    expect(page.get_by_test_id("train-version")).to_have_text(version_a["name"])
    _snap(page, "6-a-labels-changed")

    # 5. compare A and B: both rows, their best metrics as the API has them, the curves drawn
    page.locator("#experiments-list input[name=exp][value=exp-a]").check()
    page.locator("#experiments-list input[name=exp][value=exp-b]").check()
    page.locator("#compare-experiments").click()
    expect(page).to_have_url(re.compile(rf"/projects/{PROJECT}/train/compare\?exp=exp-\w&exp=exp-\w$"))
    rows = page.locator("#compare-table tbody tr")
    expect(rows).to_have_count(2)
    cmp = _api(base, "/experiments/compare", project=PROJECT, experiments=["exp-a", "exp-b"])
    columns = page.locator("#compare-table thead th[data-metric]").evaluate_all(
        "els => els.map(e => e.dataset.metric)"
    )
    assert "val_accuracy" in columns and "val_loss" in columns
    for row in cmp["table"]:
        cells = page.locator(f"#compare-table tr[data-experiment='{row['experiment']}'] td.num")
        shown = cells.all_inner_texts()[1:]  # after the best epoch
        assert shown == [f"{row['best'][m]:.4f}" if m in row["best"] else "—" for m in columns]
        assert row["best"].get("val_accuracy") is not None and row["best"].get("val_loss") is not None
    # the same training (same images, settings and seed) validated on one label fewer wrong
    best = {row["experiment"]: row["best"] for row in cmp["table"]}
    assert best["exp-b"]["val_accuracy"] > best["exp-a"]["val_accuracy"]
    nth = columns.index("val_accuracy") + 3  # after the name and the best epoch
    bold = re.compile(r"\bbest\b")
    expect(page.locator(f"#compare-table tr[data-experiment=exp-b] td:nth-child({nth})")).to_have_class(bold)
    expect(page.locator(f"#compare-table tr[data-experiment=exp-a] td:nth-child({nth})")).not_to_have_class(
        bold
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('canvas.compare-chart')].every(c => +c.dataset.points >= 2)"
    )
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    _snap(page, "7-compare")
