"""The Train pages of detection and instance segmentation projects show each task's own metrics:
the experiment detail's headline is val mAP (mask mAP first for instance segmentation), its loss
chart draws the loss components of the model's family and its metric chart the mAP curves; the
experiment list's columns and the comparison page lead with mAP; classification pages are unchanged
(tests/e2e/test_web_training.py). Experiments are made of database rows (tests/experiment_rows.py),
not trained."""

from __future__ import annotations

import html as htmllib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_factories import alpine_ready

from experiment_rows import experiment_with_metrics
from vistudio.api.app import create_app
from vistudio.services import projects
from vistudio.studio import Studio

HX = {"HX-Request": "true"}


@pytest.fixture
def client(web_studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(web_studio)) as c:
        yield c


def _trainlive_opts(page_html: str) -> dict[str, Any]:
    """The options the detail panel hands its script (x-data="trainLive({...})")."""
    found = re.search(r'x-data="trainLive\((.*?)\)"', page_html, re.S)
    assert found, "no trainLive panel"
    opts: dict[str, Any] = json.loads(htmllib.unescape(found.group(1)))
    return opts


def _best(page_html: str) -> dict[str, tuple[str, str]]:
    """The Best figures: metric key → (title, value text)."""
    section = page_html.split('id="train-best"', 1)[1].split("</dl>", 1)[0]
    rows = re.findall(r'data-metric="([^"]+)".*?<dt>([^<]*)</dt>\s*<dd[^>]*>([^<]*)</dd>', section, re.S)
    return {key: (title, value) for key, title, value in rows}


def test_detection_detail_list_and_compare_show_map_and_loss_components(
    client: TestClient, web_studio: Studio
) -> None:
    projects.create_project(web_studio, name="boxes", task="detection")
    good = experiment_with_metrics(web_studio, project="boxes", name="frcnn")
    worse = experiment_with_metrics(
        web_studio, project="boxes", name="fcos", model="fcos_resnet50_fpn", shift=0.4
    )
    page = client.get("/projects/boxes/train?experiment=frcnn")
    assert page.status_code == 200
    text = page.text
    best = _best(text)
    assert list(best) == ["val_map", "val_map50", "val_map75", "train_loss"]
    assert best["val_map"] == ("val mAP", f"{good['best']['val_map']:.3f}")
    assert best["val_map50"] == ("val mAP50", f"{good['best']['val_map50']:.3f}")
    assert best["train_loss"] == ("train loss", f"{good['best']['train_loss']:.4f}")
    assert "val accuracy" not in text and "val_accuracy" not in text and "Accuracy and F1" not in text
    assert ">Loss and its components</figcaption>" in text and ">Validation mAP</figcaption>" in text
    opts = _trainlive_opts(text)
    loss_keys = [k for k, _ in opts["charts"]["loss"]]
    assert loss_keys[:2] == ["train_loss_step", "train_loss"]
    assert {"train_loss_classifier_step", "train_loss_box_reg_step", "train_loss_objectness_step"} <= set(
        loss_keys
    )
    assert [k for k, _ in opts["charts"]["metric"]] == ["val_map", "val_map50", "val_map75"]
    assert opts["formats"]["val_map"] == "decimal" and opts["formats"]["train_loss"] == "loss"
    assert set(opts["best"]) == {"val_map", "val_map50", "val_map75", "train_loss", "epoch"}
    # the recorded series the charts start from hold the components the run reported
    series = json.loads(text.split('class="train-series">', 1)[1].split("</script>", 1)[0])
    assert (
        len(series["train_loss_rpn_box_reg_step"]["step"]) > 3 and "train_loss_centerness_step" not in series
    )

    # the list: mAP columns, values written as the detail writes them
    listing = client.get("/projects/boxes/train/list", headers=HX).text
    assert re.findall(r'<th scope="col" class="num" data-metric="([^"]+)">', listing) == [
        "val_map",
        "val_map50",
        "train_loss",
    ]
    row = listing.split('<tr data-experiment="fcos"', 1)[1].split("</tr>", 1)[0]
    assert f'data-metric="val_map">{worse["best"]["val_map"]:.3f}</td>' in row
    assert "Val acc." not in listing

    # the comparison: the task's summary first and charted, the better of each column marked
    cmp = client.get("/projects/boxes/train/compare?exp=frcnn&exp=fcos").text
    headers = re.findall(r'<th scope="col" class="num" data-metric="([^"]+)">([^<]*)</th>', cmp)
    assert [k for k, _ in headers][:4] == ["val_map", "val_map50", "val_map75", "train_loss"]
    titles = dict(headers)
    assert titles["val_map"] == "val mAP" and titles["train_loss_box_reg"] == "train loss: box regression"
    charted = re.findall(r'class="compare-chart" data-metric="([^"]+)"', cmp)
    assert charted == ["val_map", "val_map50", "val_map75", "train_loss"]
    specs = {
        m: json.loads(htmllib.unescape(v))
        for m, v in re.findall(r'data-metric="([^"]+)" data-points="0"\s+data-compare="([^"]+)"', cmp)
    }
    assert specs["val_map"]["unit"] is True and specs["train_loss"]["unit"] is False
    rows = {
        name: dict(
            zip([k for k, _ in headers], re.findall(r'<td class="num( best)?">', body)[1:], strict=False)
        )
        for name, body in re.findall(r'<tr data-experiment="([^"]+)">(.*?)</tr>', cmp, re.S)
    }
    # the better run has the higher mAP and the lower losses (a component too: lower is better)
    assert rows["frcnn"]["val_map"] == " best" and rows["fcos"]["val_map"] == ""
    assert rows["frcnn"]["train_loss"] == " best" and rows["frcnn"]["train_loss_box_reg"] == " best"
    assert rows["fcos"]["train_loss_box_reg"] == ""


def test_instance_segmentation_detail_shows_mask_map_first(client: TestClient, web_studio: Studio) -> None:
    projects.create_project(web_studio, name="masks", task="instance_segmentation")
    exp = experiment_with_metrics(
        web_studio, project="masks", name="mrcnn", task="instance_segmentation", model="maskrcnn_resnet50_fpn"
    )
    text = client.get("/projects/masks/train/experiments/mrcnn", headers=HX).text
    best = _best(text)
    assert list(best) == ["val_mask_map", "val_mask_map50", "val_map", "val_map50", "train_loss"]
    assert best["val_mask_map"] == ("val mask mAP", f"{exp['best']['val_mask_map']:.3f}")
    assert best["val_map"][0] == "val box mAP"
    opts = _trainlive_opts(text)
    assert "train_loss_mask_step" in [k for k, _ in opts["charts"]["loss"]]
    assert [k for k, _ in opts["charts"]["metric"]][:2] == ["val_mask_map", "val_mask_map50"]
    listing = client.get("/projects/masks/train/list", headers=HX).text
    assert ">Mask mAP</th>" in listing and ">Box mAP</th>" in listing
    # the form says which metric early stopping watches, in words (shown once a split exists)
    from vistudio.web.pages.training import form_fields

    assert form_fields("instance_segmentation")["monitor_title"] == "val mask mAP"
    assert form_fields("detection")["monitor_title"] == "val mAP"
    assert form_fields("classification")["monitor_title"] == "val accuracy"
    # a detection project without experiments says which curves will appear
    projects.create_project(web_studio, name="empty-boxes", task="detection")
    assert "its loss and mAP curves appear here" in client.get("/projects/empty-boxes/train").text


def test_classification_detail_keeps_its_headline_and_charts(client: TestClient, web_studio: Studio) -> None:
    projects.create_project(web_studio, name="labels", task="classification")
    exp = experiment_with_metrics(
        web_studio, project="labels", name="clf", task="classification", model="resnet18"
    )
    text = client.get("/projects/labels/train?experiment=clf").text
    best = _best(text)
    assert list(best) == ["val_accuracy", "val_f1_macro", "val_loss", "train_accuracy"]
    assert best["val_accuracy"] == ("val accuracy", f"{exp['best']['val_accuracy'] * 100:.1f}%")
    assert best["val_f1_macro"] == ("val F1 macro", f"{exp['best']['val_f1_macro'] * 100:.1f}%")
    assert (
        ">Accuracy and F1</figcaption>" in text
        and 'aria-label="Training and validation loss by step"' in text
    )
    assert "early stopping on val accuracy" not in text  # no split: no form
    assert "its loss and accuracy curves" not in text  # an experiment is shown
    listing = client.get("/projects/labels/train/list", headers=HX).text
    row = listing.split('<tr data-experiment="clf"', 1)[1].split("</tr>", 1)[0]
    assert f">{exp['best']['val_f1_macro']:.3f}</td>" in row  # F1 in the list as 0.xxx, as before
    assert ">Val acc.</th>" in listing and ">Val F1</th>" in listing and ">Val loss</th>" in listing


@pytest.mark.browser
def test_detection_detail_charts_in_the_browser(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    projects.create_project(studio, name="det-charts", task="detection")
    exp = experiment_with_metrics(studio, project="det-charts", name="frcnn-run")
    experiment_with_metrics(
        studio, project="det-charts", name="fcos-run", model="fcos_resnet50_fpn", shift=0.3
    )
    page.goto(f"{base}/projects/det-charts/train?experiment=frcnn-run")
    alpine_ready(page)
    page.wait_for_function("() => +document.querySelector('canvas#metric-chart').dataset.points >= 9")
    legends = page.evaluate(
        """() => ['loss-chart', 'metric-chart'].map((id) => Chart.getChart(document.getElementById(id))
             .legend.legendItems.map((i) => i.text))"""
    )
    # Faster R-CNN's four components; the centerness of an FCOS has no points: no legend entry
    assert legends[0] == [
        "train loss (per step)",
        "train loss (epoch)",
        "classification",
        "box regression",
        "objectness",
        "RPN box regression",
    ]
    assert legends[1] == ["mAP", "mAP50", "mAP75"]
    # each component its own colour, the batch loss pale behind them
    colours = page.evaluate(
        "() => Chart.getChart(document.getElementById('loss-chart')).data.datasets.map((d) => d.borderColor)"
    )
    assert colours[0] == "#a5b4fc" and len(set(colours[:6])) == 6
    expect(page.locator("#train-best [data-metric=val_map] dd")).to_have_text(f"{exp['best']['val_map']:.3f}")
    expect(page.locator("#train-best [data-metric=train_loss] dd")).to_have_text(
        f"{exp['best']['train_loss']:.4f}"
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "train-detection-detail")

    # the FCOS run: its three components, no objectness
    page.locator("#experiments-list a.exp-link", has_text="fcos-run").click()
    expect(page.locator("section#experiment-detail")).to_have_attribute("data-experiment", "fcos-run")
    page.wait_for_function("() => +document.querySelector('canvas#loss-chart').dataset.points > 10")
    fcos = page.evaluate(
        "() => Chart.getChart(document.getElementById('loss-chart')).legend.legendItems.map((i) => i.text)"
    )
    assert fcos[2:] == ["classification", "box regression", "centerness"]

    page.locator("#experiments-list input[value='frcnn-run']").check()
    page.locator("#experiments-list input[value='fcos-run']").check()
    page.locator("#compare-experiments").click()
    expect(page.locator("#compare-table tbody tr")).to_have_count(2)
    page.wait_for_function(
        "() => +document.querySelector('canvas.compare-chart[data-metric=val_map]').dataset.points >= 6"
    )
    # mAP on the 0-100 % axis, the loss on a log one
    scales = page.evaluate(
        """() => ['val_map', 'train_loss'].map((m) => Chart.getChart(
             document.querySelector(`canvas.compare-chart[data-metric=${m}]`)).options.scales.y.type || 'linear')"""
    )
    assert scales == ["linear", "logarithmic"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    shot(page, "train-detection-compare")
