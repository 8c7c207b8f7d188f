"""The Evaluate page of a semantic segmentation project in headless Chromium: the empty states, an
evaluation started from the form, the metrics and per-class IoU bars, the grid worst IoU first with
each predicted mask over its image, the filters, the detail with its prediction / ground truth /
error layers and their opacity; 20 classes with a long name. Screenshots go to /tmp/shots/."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready, htmx_settled

from eval_factories import LONG_CLASS
from segmentation_factories import make_segmentation_experiment, segmentation_project
from vistudio.ml.inference.label_images import page_class_index
from vistudio.services import evaluation
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = Path("/tmp/shots")


@pytest.fixture
def seg_shot() -> Callable[..., Path]:
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str, *, full_page: bool = True, element: Any = None) -> Path:
        path = SHOTS / f"seg-eval-{name}.png"
        if full_page or element is not None:  # from the top: sticky bars stay at the top
            page.evaluate("window.scrollTo(0, 0)")
        if element is not None:
            page.screenshot(path=str(path), full_page=True, clip=element.bounding_box())
        else:
            page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


def images_loaded(page: Any, selector: str) -> None:
    """Wait until every image of ``selector`` is decoded (the lazy ones scrolled to first)."""
    page.locator(selector).last.scroll_into_view_if_needed()
    page.wait_for_function(
        "(sel) => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=selector,
    )


def test_evaluate_a_segmentation_experiment(
    live_server: tuple[str, Studio, Path], page: Any, seg_shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    page.set_default_timeout(60_000)  # the model runs in the server beside the browser, on 2 cores
    segmentation_project(studio, tmp_path, "regions", n=30)
    page.goto(f"{base}/projects/regions/evaluate")
    expect(page.locator("#eval-empty")).to_be_visible(timeout=20_000)
    seg_shot(page, "01-no-experiment")

    make_segmentation_experiment(studio, project="regions", name="lraspp", train_steps=30)
    page.goto(f"{base}/projects/regions/evaluate")
    alpine_ready(page)
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    expect(page.locator("#ef-batch-size")).to_have_value("8")
    seg_shot(page, "02-not-evaluated")
    page.locator("#ef-subset-val").check()
    page.locator("#ef-device").select_option("cpu")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=90_000)
    ev = evaluation.get_evaluation(studio, project="regions", experiment="lraspp")
    m = ev["metrics"]
    expect(page.locator("#eval-metrics .stat[data-metric=miou] .stat-n")).to_have_text(
        f"{100 * m['miou']:.1f}%", timeout=20_000
    )
    for key in ("pixel_accuracy", "mean_class_accuracy", "dice"):
        expect(page.locator(f"#eval-metrics .stat[data-metric={key}]")).to_be_visible()
    bars = page.locator("#seg-iou-bars .seg-bar")
    expect(bars).to_have_count(4)
    for name in ("background", "ellipse", "rectangle", "triangle"):
        value = m["per_class_iou"][name]
        bar = page.locator(f'#seg-iou-bars .seg-bar[data-class="{name}"] .seg-bar-value')
        expect(bar).to_have_text("absent" if value is None else f"{100 * value:.1f}%")
    # the bar of a class is drawn in its dataset overlay colour
    colour = page.locator('#seg-iou-bars .seg-bar[data-class="ellipse"] .seg-bar-fill').evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    r, g, b = (int(ev["class_colours"][1][i : i + 2], 16) for i in (1, 3, 5))
    assert colour == f"rgb({r}, {g}, {b})"
    tiles = page.locator(".eval-seg-tile")
    expect(tiles).to_have_count(m["images"], timeout=20_000)
    images_loaded(page, ".eval-seg-tile img")
    ious = [float(t.get_attribute("data-iou") or "nan") for t in tiles.all()]
    assert ious == sorted(ious)  # worst first
    seg_shot(page, "03-evaluated")
    seg_shot(page, "04-grid", element=page.locator("#eval-grid"))

    # the tiles' mask opacity
    page.locator("#seg-tile-opacity").fill("0.9")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.eval-seg-tile img.seg-layer')).opacity === '0.9'"
    )
    # filters: a class present, the best first
    htmx_settled(page)
    page.locator("#gf-present").select_option("triangle")
    expect(page.locator("#gf-present")).to_have_value("triangle", timeout=20_000)
    total = evaluation.list_results(studio, project="regions", experiment="lraspp", present="triangle")[
        "total"
    ]
    expect(page.locator("#grid-total")).to_have_text(str(total), timeout=20_000)
    htmx_settled(page)
    page.locator("#gf-sort").select_option("-iou")
    expect(page.locator("#gf-sort")).to_have_value("-iou", timeout=20_000)
    htmx_settled(page)
    ious = [float(t.get_attribute("data-iou") or "nan") for t in tiles.all()]
    assert len(ious) == total and ious == sorted(ious, reverse=True)
    # the opacity chosen holds on the new tiles
    assert page.locator("#seg-tile-opacity").input_value() == "0.9"

    # the detail: prediction, ground truth, error map; the opacity
    tiles.last.click()
    detail = page.locator("#eval-detail")
    expect(detail).to_be_visible(timeout=20_000)
    expect(detail.locator("[data-image-iou]")).not_to_have_text("", timeout=20_000)
    images_loaded(page, "#eval-detail .seg-stage img:not([hidden])")
    layer = {k: detail.locator(f'img.seg-layer[data-layer="{k}"]') for k in ("prediction", "truth", "error")}
    expect(layer["prediction"]).to_be_visible()
    expect(layer["truth"]).to_be_hidden()
    expect(layer["error"]).to_be_hidden()
    page.locator("#seg-opacity").fill("0.7")
    seg_shot(page, "05-detail-prediction", full_page=False)
    detail.locator('button[data-seg-layer="prediction"]').click()
    detail.locator('button[data-seg-layer="truth"]').click()
    expect(layer["prediction"]).to_be_hidden()
    expect(layer["truth"]).to_be_visible()
    expect(detail.locator('button[data-seg-layer="truth"]')).to_have_attribute("aria-pressed", "true")
    images_loaded(page, "#eval-detail .seg-stage img:not([hidden])")
    seg_shot(page, "06-detail-truth", full_page=False)
    detail.locator('button[data-seg-layer="truth"]').click()
    detail.locator('button[data-seg-layer="error"]').click()
    expect(layer["error"]).to_be_visible()
    images_loaded(page, "#eval-detail .seg-stage img:not([hidden])")
    page.locator("#seg-opacity").fill("1")
    seg_shot(page, "07-detail-error", full_page=False)
    rows = detail.locator("table.seg-image-classes tbody tr")
    assert rows.count() >= 2
    detail.get_by_role("button", name="Close detail").click()
    expect(detail).to_be_hidden(timeout=20_000)
    # the experiment list shows the mIoU
    expect(page.locator("a.eval-exp[aria-current=page] .eval-exp-acc")).to_contain_text(
        "mIoU", timeout=20_000
    )

    # the masks' colours are the dataset overlays' (overlay.js on the Dataset page, the same project)
    page.goto(f"{base}/projects/regions")
    page.wait_for_function("() => typeof Overlay !== 'undefined' && Overlay.classIndex('triangle') === 3")
    shapes = ["ellipse", "rectangle", "triangle"]
    drawn = page.evaluate(
        """(names) => names.map((n) => {
          const el = document.createElement('div');
          el.style.color = Overlay.colour(Overlay.classIndex(n), 0);
          document.body.appendChild(el);
          const c = getComputedStyle(el).color;
          el.remove();
          return c;
        })""",
        shapes,
    )
    expected = []
    for name in shapes:
        hexed = ev["class_colours"][ev["classes"].index(name)]
        expected.append("rgb({}, {}, {})".format(*(int(hexed[i : i + 2], 16) for i in (1, 3, 5))))
    assert drawn == expected
    # a class the page does not list: the same stable number on both sides
    odd = "zebra-crossing-ü-😀"
    assert page.evaluate("(n) => Overlay.classIndex(n)", odd) == page_class_index(
        odd, ["background", *shapes]
    )


def test_iou_bars_with_twenty_classes_and_a_long_name(
    live_server: tuple[str, Studio, Path], page: Any, seg_shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    page.set_default_timeout(60_000)
    names = ("background", LONG_CLASS, *(f"class-{k:02d}" for k in range(18)))
    assert len(names) == 20
    segmentation_project(studio, tmp_path, "many", n=30, classes=names, seed=2)
    make_segmentation_experiment(studio, project="many", name="few-steps", train_steps=30)
    started = evaluation.start_evaluation(studio, project="many", experiment="few-steps", subsets="val,test")
    deadline = time.monotonic() + 120  # the live server's worker runs it
    while time.monotonic() < deadline:
        ev = evaluation.get_evaluation(studio, project="many", experiment="few-steps")
        if ev["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert ev["status"] == "succeeded", (ev, started["job"]["id"])
    page.goto(f"{base}/projects/many/evaluate?experiment=few-steps")
    alpine_ready(page)
    bars = page.locator("#seg-iou-bars .seg-bar")
    expect(bars).to_have_count(20, timeout=20_000)
    absent = [n for n, v in ev["metrics"]["per_class_iou"].items() if v is None]
    assert absent, "some of 20 classes are neither labelled nor predicted in 12 images"
    expect(page.locator("#seg-iou-bars .seg-bar.absent")).to_have_count(len(absent))
    expect(page.locator(f'#seg-iou-bars .seg-bar[data-class="{absent[0]}"] .seg-bar-value')).to_have_text(
        "absent"
    )
    # the long name is cut with an ellipsis inside its column: nothing overflows the card
    card = page.locator(".seg-bars-card")
    assert card.evaluate("el => el.scrollWidth <= el.clientWidth")
    long_name = page.locator(f'#seg-iou-bars .seg-bar[data-class="{LONG_CLASS}"] .seg-bar-name')
    assert long_name.evaluate("el => el.scrollWidth > el.clientWidth")
    images_loaded(page, ".eval-seg-tile img")
    seg_shot(page, "08-twenty-classes")
    seg_shot(page, "09-twenty-classes-bars", element=card)
    # narrow screens: one column, still no overflow
    page.set_viewport_size({"width": 420, "height": 900})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    seg_shot(page, "10-narrow")
