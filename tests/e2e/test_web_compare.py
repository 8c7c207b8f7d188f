"""The experiments' comparison page in headless Chromium: one curve per experiment in every chart,
each in its own colour, named in the legend; two experiments with the same history (the same
training data, settings and seed) stay told apart, the later one dashed and named as the same
curve; the table's metric titles written alike. Screenshot: screenshots/compare-curves.png."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from experiment_rows import experiment_with_metrics
from vistudio.api.app import create_app
from vistudio.services import projects
from vistudio.studio import Studio

CHARTS = """() => [...document.querySelectorAll('canvas.compare-chart')].map(c => ({
  metric: c.dataset.metric,
  sets: c._chart.data.datasets.map((d, i) => ({
    label: d.label, colour: d.borderColor, dash: (d.borderDash || []).join(','),
    drawn: !c._chart.getDatasetMeta(i).hidden && c._chart.isDatasetVisible(i),
    path: c._chart.getDatasetMeta(i).data.map(p => Math.round(p.x) + ',' + Math.round(p.y)).join(' '),
  })),
  legend: c._chart.legend.legendItems.map(l => l.text),
}))"""


def _runs(studio: Studio, project: str) -> None:
    """run-a and run-b with different histories; run-c the same history as run-a; each with a
    ``val_f1_micro`` (a metric no display titles) beside the ``val_f1_macro`` the display titles."""
    from vistudio.db.training import EpochMetric, Experiment

    projects.create_project(studio, name=project, task="classification")
    for name, shift in (("run-a", 0.0), ("run-b", 0.35), ("run-c", 0.0)):
        exp = experiment_with_metrics(studio, project=project, name=name, task="classification", shift=shift)
        with studio.sessions.begin() as s:
            row = s.get(Experiment, exp["id"])
            s.add(EpochMetric(experiment_id=exp["id"], epoch=3, step=24, name="val_f1_micro", value=0.5))
            row.best_metrics = {**row.best_metrics, "val_f1_micro": 0.5}


@pytest.mark.browser
def test_compare_draws_one_distinct_curve_per_experiment(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    _runs(studio, "cmp")
    page.goto(f"{base}/projects/cmp/train/compare?exp=run-a&exp=run-b&exp=run-c")
    expect(page.locator("#compare-table tbody tr")).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('canvas.compare-chart')].every(c => c._chart && +c.dataset.points > 0)"
    )
    charts = page.evaluate(CHARTS)
    assert [c["metric"] for c in charts] == ["val_accuracy", "val_f1_macro", "val_loss", "train_loss"]
    assert page.locator("#compare-table thead th[data-metric=val_f1_micro]").inner_text() == "val F1 micro"
    for chart in charts:
        sets = {s["label"].split(" ")[0]: s for s in chart["sets"]}
        assert list(sets) == ["run-a", "run-b", "run-c"], chart
        assert all(s["drawn"] and s["path"] for s in sets.values()), chart
        # every experiment its own colour, named in the legend
        assert len({s["colour"] for s in sets.values()}) == 3, chart
        assert [t.split(" ")[0] for t in chart["legend"]] == ["run-a", "run-b", "run-c"], chart
        # different histories: different paths on the canvas
        assert sets["run-a"]["path"] != sets["run-b"]["path"], chart
        # the same history: the same path, drawn dashed over the first so both show, and said so
        assert sets["run-c"]["path"] == sets["run-a"]["path"], chart
        assert sets["run-c"]["dash"] and sets["run-c"]["dash"] != sets["run-a"]["dash"], chart
        assert chart["legend"][2] == "run-c (same curve as run-a)", chart
        assert chart["legend"][:2] == ["run-a", "run-b"], chart
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "compare-curves")


def test_compare_table_titles_metrics_alike(studio: Studio) -> None:
    _runs(studio, "titles")
    client = TestClient(create_app(studio))
    page = client.get("/projects/titles/train/compare?exp=run-a&exp=run-b")
    assert page.status_code == 200
    titles = dict(re.findall(r'<th scope="col" class="num" data-metric="(\w+)">([^<]*)</th>', page.text))
    assert titles["val_f1_macro"] == "val F1 macro"  # the display's title
    assert titles["val_f1_micro"] == "val F1 micro"  # its key in words, written alike
    assert titles["val_loss"] == "val loss" and titles["train_accuracy"] == "train accuracy"
