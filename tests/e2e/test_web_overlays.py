"""Annotation overlays and object filters of the Dataset page in headless Chromium: boxes on the
grid and in the detail drawn where the objects are (checked on the canvas pixels, thumbnails
letterboxed and the detail at its own scale), masks from polygons and from COCO RLE decoded in the
browser exactly as pycocotools does, class toggles and opacity remembered, the object filters,
empty states, a long class name, and 1,000 tiles drawn only where they are seen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from web_factories import htmx_settled

from detection_factories import write_coco
from factories import run_import
from vistudio.services import projects, samples, splits
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = "a-very-long-class-name-for-a-road-sign-that-warns-of-deer-crossing-at-night"


def _import(studio: Studio, project: str, src: Path) -> None:
    """Import a COCO folder and wait: the live server's worker may claim the job first."""
    from vistudio.jobs.queue import FINISHED, job_dict

    job = run_import(studio, project, src, fmt="coco")
    deadline = time.monotonic() + 120
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
        job = job_dict(studio.queue.get(job["id"]))
    assert job["status"] == "succeeded", job


def _marked_coco(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Two wide images (640 × 360, letterboxed in square tiles) with solid rectangles where their
    boxes are: one object of the long class, one crowd region."""
    (root / "images").mkdir(parents=True)
    boxes = [
        {"bbox": [80, 60, 200, 120], "category_id": 1, "iscrowd": 0},
        {"bbox": [380, 150, 180, 170], "category_id": 2, "iscrowd": 0},
        {"bbox": [20, 250, 120, 90], "category_id": 2, "iscrowd": 1},
    ]
    images, annotations = [], []
    for i in (1, 2):
        img = Image.new("RGB", (640, 360), (200, 200, 200 + i))
        d = ImageDraw.Draw(img)
        for b in boxes:
            x, y, w, h = b["bbox"]
            d.rectangle([x, y, x + w - 1, y + h - 1], fill=(40, 40, 40))
        img.save(root / "images" / f"wide{i}.png")
        images.append({"id": i, "file_name": f"wide{i}.png", "width": 640, "height": 360})
        for b in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "area": 1, **b})
    cats = [{"id": 1, "name": LONG}, {"id": 2, "name": "sign"}]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    return root, boxes


def _canvas_alpha(page: Any, selector: str, points: list[tuple[float, float]]) -> list[int]:
    """Alpha of the overlay canvas at points given in CSS pixels of the page."""
    return page.evaluate(
        """([sel, pts]) => {
          const c = document.querySelector(sel);
          const r = c.getBoundingClientRect();
          const ctx = c.getContext('2d');
          return pts.map(([x, y]) => {
            const px = Math.round((x - r.left) * c.width / r.width);
            const py = Math.round((y - r.top) * c.height / r.height);
            return ctx.getImageData(px, py, 1, 1).data[3];
          });
        }""",
        [selector, points],
    )


def _content_rect(page: Any, selector: str, w: int, h: int) -> tuple[float, float, float, float]:
    """Where an image of w × h lies in the box of ``selector`` when fitted whole (contain)."""
    r = page.locator(selector).bounding_box()
    s = min(r["width"] / w, r["height"] / h)
    return r["x"] + (r["width"] - w * s) / 2, r["y"] + (r["height"] - h * s) / 2, w * s, h * s


def _edges_drawn(
    page: Any, selector: str, rect: tuple[float, float, float, float], box: list[float], size: tuple[int, int]
) -> None:
    """The box's left and right edges carry the stroke (somewhere along them: a crowd box is
    dashed); a few pixels outside them nothing is drawn."""
    ox, oy, iw, ih = rect
    x, y, w, h = box
    sx, sy = iw / size[0], ih / size[1]
    left, right = ox + x * sx, ox + (x + w) * sx
    ys = [oy + (y + h * f) * sy for f in (0.3, 0.4, 0.5, 0.6, 0.7)]
    for edge in (left, right):
        near = _canvas_alpha(page, selector, [(edge + d, yy) for yy in ys for d in (-1, 0, 1)])
        assert max(near) > 150, (edge, near)
    outside = _canvas_alpha(page, selector, [(left - 5, yy) for yy in ys] + [(right + 5, yy) for yy in ys])
    assert max(outside) == 0, outside


def test_boxes_grid_detail_toggles_and_filters(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    projects.create_project(studio, name="signs", task="detection")
    src, boxes = _marked_coco(tmp_path / "signs")
    _import(studio, "signs", src)
    projects.create_project(studio, name="shapes-det", task="detection")
    _import(
        studio, "shapes-det", write_coco(tmp_path / "shapes", 30, size=96, seed=0, masks=False, crowd=True)
    )
    splits.create_split(studio, project="shapes-det", name="s1", ratios=(0.6, 0.2, 0.2), seed=7)

    # wide images in square tiles: letterboxed, the boxes where the dark rectangles are
    page.goto(f"{base}/projects/signs")
    tile = ".tile:first-child .ov-canvas"
    page.wait_for_function(f"() => document.querySelector('{tile}').dataset.drawn === '3'")
    rect = _content_rect(page, ".tile:first-child .tile-img", 640, 360)
    for b in boxes:
        _edges_drawn(page, tile, rect, b["bbox"], (640, 360))
    shot(page, "overlay-01-grid-long-class")

    # the detail: the image at its own aspect, the names drawn, the long one cut short
    page.locator(".tile").first.click()
    det = "#detail .ov-canvas"
    page.wait_for_function(
        f"() => document.querySelector('{det}') && document.querySelector('{det}').dataset.drawn === '3'"
    )
    rect = _content_rect(page, "#detail .stage", 640, 360)
    for b in boxes:
        _edges_drawn(page, det, rect, b["bbox"], (640, 360))
    shot(page, "overlay-02-detail-boxes", full_page=False)

    # the detail's own controls: hiding a class there hides it on the grid too, and it is remembered
    page.locator("#detail [data-ov-class=sign]").uncheck()
    page.wait_for_function(f"() => document.querySelector('{det}').dataset.drawn === '1'")
    page.keyboard.press("Escape")
    page.wait_for_function(f"() => document.querySelector('{tile}').dataset.drawn === '1'")
    expect(page.locator(".filters [data-ov-class=sign]")).not_to_be_checked()
    page.reload()
    page.wait_for_function(f"() => document.querySelector('{tile}').dataset.drawn === '1'")
    expect(page.locator(".filters [data-ov-class=sign]")).not_to_be_checked()
    page.locator(".filters [data-ov-all=on]").click()
    page.wait_for_function(f"() => document.querySelector('{tile}').dataset.drawn === '3'")
    # opacity: the fill inside a box follows the slider, 0 leaves only the outline
    ox, oy, iw, ih = _content_rect(page, ".tile:first-child .tile-img", 640, 360)
    x, y, w, h = boxes[1]["bbox"]
    inside = (ox + (x + w / 2) * iw / 640, oy + (y + h / 2) * ih / 360)
    before = _canvas_alpha(page, tile, [inside])[0]
    page.locator(".filters [data-ov=opacity]").fill("100")
    after = _canvas_alpha(page, tile, [inside])[0]
    page.locator(".filters [data-ov=opacity]").fill("0")
    assert _canvas_alpha(page, tile, [inside])[0] == 0 and 0 < before < after, (before, after)
    page.locator(".filters [data-ov=opacity]").fill("35")
    page.locator(".filters [data-ov=show]").uncheck()
    page.wait_for_function(f"() => document.querySelector('{tile}').dataset.drawn === '0'")
    page.locator(".filters [data-ov=show]").check()
    page.wait_for_function(f"() => document.querySelector('{tile}').dataset.drawn === '3'")
    shot(page, "overlay-03-controls", full_page=False)

    # object filters on the generated shapes
    page.goto(f"{base}/projects/shapes-det")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.ov-canvas')].some(c => +c.dataset.drawn > 0)"
    )
    shot(page, "overlay-04-grid-boxes", full_page=False)
    two = samples.list_samples(studio, project="shapes-det", min_objects=2, limit=500)["total"]
    assert 0 < two < 30
    page.locator("#f-min").fill("2")
    page.locator("#f-min").dispatch_event("change")
    expect(page.locator("[data-testid=grid-total]")).to_have_text(str(two))
    assert "min_objects=2" in page.url
    large = samples.list_samples(
        studio, project="shapes-det", object_size="medium", label="ellipse", limit=500
    )["total"]
    page.locator("#f-min").fill("")
    page.locator("#f-label").select_option("ellipse")
    htmx_settled(page)
    page.locator("#f-size").select_option("medium")
    expect(page.locator("[data-testid=grid-total]")).to_have_text(str(large))
    htmx_settled(page)
    shot(page, "overlay-05-filters", full_page=False)
    page.locator("#f-size").select_option("large")  # 96-px images have no large object
    expect(page.locator("#grid")).to_contain_text("No samples match these filters.")
    shot(page, "overlay-06-empty", full_page=False)
    page.goto(f"{base}/projects/shapes-det?max_objects=-1")
    expect(page.locator("#grid .alert-error")).to_contain_text("number of objects")


def test_masks_from_polygons_and_rle(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    base, studio, _ = live_server
    root = write_coco(tmp_path / "m", 12, size=160, seed=5, masks=True)
    data = json.loads((root / "annotations.json").read_text())
    rles = []
    for i, a in enumerate(data["annotations"]):
        if i % 2 == 0:  # half the masks as compressed RLE
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 160, 160))
            a["segmentation"] = {"size": [160, 160], "counts": rle["counts"].decode()}
            rles.append(a["segmentation"])
    (root / "annotations.json").write_text(json.dumps(data))
    projects.create_project(studio, name="shapes-seg", task="instance_segmentation")
    _import(studio, "shapes-seg", root)

    page.goto(f"{base}/projects/shapes-seg")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.ov-canvas')].some(c => +c.dataset.drawn > 0)"
    )
    # the browser's RLE decoding equals pycocotools', pixel for pixel
    for rle in rles[:6]:
        got = page.evaluate(
            """(rle) => {
              const m = Overlay.rleMask(rle, '#ff0000');
              const d = m.canvas.getContext('2d').getImageData(0, 0, rle.size[1], rle.size[0]).data;
              const out = [];
              for (let i = 3; i < d.length; i += 4) out.push(d[i] ? 1 : 0);
              return {mask: out, box: m.box};
            }""",
            rle,
        )
        want = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(np.array(got["mask"]).reshape(160, 160), want)
        ys, xs = np.nonzero(want)
        assert got["box"] == pytest.approx(
            [xs.min() / 160, ys.min() / 160, (xs.max() + 1) / 160, (ys.max() + 1) / 160]
        )
    assert page.evaluate("() => Overlay.rleCounts([3, 4, 5])") == [3, 4, 5]
    assert (
        page.evaluate(
            "() => { try { Overlay.rleCounts('\\x7f'); return 'no error'; } catch (e) { return 'error'; } }"
        )
        == "error"
    )
    assert (
        page.evaluate("() => Overlay.rleMask({size: [2, 2], counts: [1, 1]}, '#000')") is None
    )  # wrong size
    # each object is drawn once, its box around its mask: as many drawn as the tile's object count
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile')].slice(0, 6).every(t => t.querySelector('.ov-canvas').dataset.drawn)"
    )
    counts = page.evaluate(
        "() => [...document.querySelectorAll('.tile')].slice(0, 6).map(t => [t.querySelector('.ov-canvas').dataset.drawn,"
        " t.querySelector('.tile-count').textContent])"
    )
    assert all(drawn == n for drawn, n in counts), counts
    shot(page, "overlay-07-grid-masks", full_page=False)
    page.locator(".tile").first.click()
    page.wait_for_function(
        "() => +(document.querySelector('#detail .ov-canvas') || {dataset: {}}).dataset.drawn > 0"
    )
    shot(page, "overlay-08-detail-masks", full_page=False)
    page.locator("#detail [data-ov=opacity]").fill("0")  # outlines only: the mask's edge stays
    shot(page, "overlay-09-detail-mask-edges", full_page=False)
    page.locator("#detail [data-ov=opacity]").fill("35")


def test_a_thousand_tiles_are_drawn_lazily(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    projects.create_project(studio, name="many", task="detection")
    _import(studio, "many", write_coco(tmp_path / "many", 1000, size=32, seed=9, masks=False))
    page.goto(f"{base}/projects/many")
    expect(page.locator("[data-testid=grid-total]")).to_have_text("1,000")
    for _ in range(20):  # the grid's pages of 60, loaded as one scrolls
        more = page.locator("[data-testid=load-more]")
        if not more.count():
            break
        more.click()
        htmx_settled(page)
    expect(page.locator(".tile")).to_have_count(1000)
    page.mouse.wheel(0, 2000)
    page.wait_for_timeout(300)
    on_screen = page.evaluate(
        "() => [...document.querySelectorAll('.ov-canvas')].filter(c => { const r = c.getBoundingClientRect();"
        " return r.bottom > 0 && r.top < innerHeight && +c.dataset.drawn > 0; }).length"
    )
    # a change of the opacity redraws what is on (or near) the screen, not the thousand tiles
    before = page.evaluate("() => Overlay.stats()")
    page.locator(".filters [data-ov=opacity]").fill("60")
    after = page.evaluate("() => Overlay.stats()")
    redrawn = after["draws"] - before["draws"]
    assert on_screen >= 12 and on_screen <= redrawn <= 3 * on_screen, (on_screen, redrawn, after)
    shot(page, "overlay-10-thousand", full_page=False)


@pytest.mark.parametrize("task", ["detection", "instance_segmentation"])
def test_evaluate_page_of_box_tasks(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path], tmp_path: Path, task: str
) -> None:
    """Evaluate a small detector from the page: COCO statistics, the (N+1)² confusion matrix,
    curves, and tiles whose drawings and TP/FP/FN counts follow the confidence slider exactly as
    the per-image results say (a prediction counts at c when its score is ≥ c; an object is
    found when the prediction that matched it scores ≥ c)."""
    from playwright.sync_api import expect

    from detection_eval_factories import make_detection_experiment
    from vistudio.services import evaluation

    base, studio, _ = live_server
    name = f"ev-{task[:3]}"
    projects.create_project(studio, name=name, task=task)
    masks = task == "instance_segmentation"
    _import(studio, name, write_coco(tmp_path / name, 30, size=96, seed=4, masks=masks, crowd=True))
    splits.create_split(studio, project=name, name="s1", ratios=(0.6, 0.2, 0.2), seed=7)
    make_detection_experiment(studio, project=name, name="small", task=task, train_steps=2)

    page.goto(f"{base}/projects/{name}/evaluate")
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "none", timeout=20_000)
    page.locator("#ef-subset-val").check()
    page.locator("#ef-batch-size").fill("4")
    page.locator("#ef-device").select_option("cpu")
    page.locator("#eval-start").click()
    expect(page.locator(".eval-state")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    ev = evaluation.get_evaluation(studio, project=name, experiment="small")
    classes = ev["classes"]
    expect(page.locator("#eval-metrics .stat[data-metric=map50]")).to_be_visible()
    if masks:
        expect(page.locator("#eval-metrics .stat[data-metric=mask_map50]")).to_be_visible()
    # the confusion matrix has a background row and column
    expect(page.locator("#confusion tbody tr")).to_have_count(len(classes) + 1)
    expect(page.locator("#confusion thead th")).to_have_count(len(classes) + 2)
    for chart in ("#ap-chart", "#pr-chart", "#f1-chart"):
        page.wait_for_function(f"() => document.querySelector('{chart}').dataset.ready === '1'")
    tiles = page.locator(".eval-box-tile")
    results = evaluation.list_results(studio, project=name, experiment="small", limit=500)
    expect(tiles).to_have_count(results["total"])
    by_id = {str(r["sample_id"]): r for r in results["items"]}

    def expected(r: dict[str, Any], c: float) -> dict[str, int]:
        tp = sum(p["score"] >= c and p["outcome"] == "tp" for p in r["predictions"])
        fp = sum(p["score"] >= c and p["outcome"] == "fp" for p in r["predictions"])
        fn = sum(
            t["outcome"] != "ignored" and not (t["matched_score"] is not None and t["matched_score"] >= c)
            for t in r["truths"]
        )
        return {"tp": tp, "fp": fp, "fn": fn}

    def shown() -> dict[str, dict[str, int]]:
        return page.evaluate(
            "() => Object.fromEntries([...document.querySelectorAll('.eval-box-tile')].map(t => [t.dataset.sampleId,"
            " Object.fromEntries([...t.querySelectorAll('[data-count]')].map(s => [s.dataset.count, +s.textContent]))]))"
        )

    # at the evaluation's threshold the tiles say what the server stored
    threshold = ev["score_threshold"]
    assert shown() == {k: {"tp": r["tp"], "fp": r["fp"], "fn": r["fn"]} for k, r in by_id.items()}
    assert shown() == {k: expected(r, threshold) for k, r in by_id.items()}
    shot(page, f"eval-{task}-01-panel", full_page=True)
    page.locator("#eval-grid").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.eval-box-tile canvas')].some(c => c.dataset.drawn)"
    )
    shot(page, f"eval-{task}-02-grid", full_page=False)
    for c in (1.0, 0.3, 0.05, 0.0):
        page.locator("#eval-conf").fill(f"{c:.2f}")
        assert shown() == {k: expected(r, c) for k, r in by_id.items()}, c
        # each tile draws the predictions at c and its missed objects (a found one is its prediction)
        first = results["items"][0]
        want = (
            sum(p["score"] >= c for p in first["predictions"])
            + expected(first, c)["fn"]
            + sum(t["outcome"] == "ignored" for t in first["truths"])
        )
        page.locator(f".eval-box-tile[data-sample-id='{first['sample_id']}']").scroll_into_view_if_needed()
        expect(
            page.locator(f".eval-box-tile[data-sample-id='{first['sample_id']}'] canvas")
        ).to_have_attribute("data-drawn", str(want))
    page.locator("#eval-conf-best").click()
    expect(page.locator("#eval-conf-value")).to_have_text(f"{ev['best_f1_threshold']:.2f}")

    # the grid's filters and sorts (at the evaluation's threshold)
    page.locator("#gf-outcome").select_option("fn")
    htmx_settled(page)
    page.locator("#gf-sort").select_option("fn")
    with_fn = evaluation.list_results(studio, project=name, experiment="small", outcome="fn", sort="fn")
    expect(page.locator("#grid-total")).to_have_text(str(with_fn["total"]))
    htmx_settled(page)
    order = page.evaluate(
        "() => [...document.querySelectorAll('.eval-box-tile')].map(t => +t.dataset.sampleId)"
    )
    assert order == [r["sample_id"] for r in with_fn["items"]]

    # bad grid filters and unknown images are refused with the reason
    grid_url = f"{base}/projects/{name}/evaluate/small/grid"
    for query, word in [("outcome=zz", "outcome"), ("sort=confidence", "sort"), ("correct=yes", "filters")]:
        r = page.request.get(f"{grid_url}?{query}")
        assert r.status in (400, 422) and word in r.text(), (query, r.status, r.text()[:200])
    assert page.request.get(f"{base}/projects/{name}/evaluate/small/results/999999").status == 404

    # the detail: its own slider moves the page's, its tables follow
    page.locator(".eval-box-tile").first.click()
    detail = page.locator("#eval-detail .eval-box-detail")
    expect(detail).to_be_visible()
    page.wait_for_function(
        "() => document.querySelector('#eval-detail canvas[data-eval]').dataset.drawn !== undefined"
    )
    page.locator("#eval-conf-detail").fill("0.00")
    expect(page.locator("#eval-conf-value")).to_have_text("0.00")
    n = len(by_id[detail.get_attribute("data-sample-id")]["predictions"])
    expect(detail.locator("tr[data-pred]:not([hidden])")).to_have_count(n)
    page.locator("#eval-conf-detail").fill("1.00")
    expect(detail.locator("tr[data-pred]:not([hidden])")).to_have_count(
        sum(p["score"] >= 1.0 for p in by_id[detail.get_attribute("data-sample-id")]["predictions"])
    )
    page.locator("#eval-conf-detail").fill(f"{ev['best_f1_threshold']:.2f}")
    shot(page, f"eval-{task}-03-detail", full_page=False)
