"""Semantic segmentation in the pages, in headless Chromium: a masks dataset imported through the
job, the grid and the sample detail draw one colour per class (a polygon added to a class has its
mask's colour: regions are not instances), the ignored region hatched grey with its own toggle,
and the detail's legend gives each class's share of the image as NumPy counts it. Screenshots go to
/tmp/seg-shots/ (20 classes, long class names)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from web_factories import alpine_ready

from factories import run_import
from mask_factories import IGNORE, paint, write_masks_dataset
from vistudio.services import annotations as object_edits
from vistudio.services import projects, samples
from vistudio.studio import Studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path("/tmp/seg-shots")
CLASSES = [
    "background",
    "road",
    "car",
    "person",
    "a-very-long-class-name-for-a-road-sign-that-warns-of-deer-crossing-at-night",
    *(f"class {i:02d}" for i in range(5, 19)),
    "another quite long name: pedestrian crossing",
]
W, H = 320, 200


def _shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _custom_scene(root: Path) -> np.ndarray:
    """The first image (by name): background, a road band, two separate cars, a person, a thin
    long-named sign, and a large ignored block."""
    im = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 140, W, H), fill=1)
    d.rectangle((20, 100, 90, 150), fill=2)
    d.rectangle((200, 110, 260, 160), fill=2)
    d.ellipse((120, 40, 160, 120), fill=3)
    d.rectangle((280, 10, 283, 90), fill=4)
    d.rectangle((180, 20, 250, 80), fill=IGNORE)
    lab = np.asarray(im, dtype=np.uint8).copy()
    paint(lab, seed=77).save(root / "images" / "aaa_custom.jpg", quality=92)
    Image.fromarray(lab, "L").save(root / "masks" / "aaa_custom.png")
    return lab


def _import(studio: Studio, project: str, src: Path) -> None:
    """Import and wait: the live server's worker may claim the job first."""
    from vistudio.jobs.queue import FINISHED, job_dict

    job = run_import(studio, project, src, fmt="masks")
    deadline = time.monotonic() + 120
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
        job = job_dict(studio.queue.get(job["id"]))
    assert job["status"] == "succeeded", job


def _canvas_rgba(page: Any, selector: str, points: list[tuple[float, float]]) -> list[list[int]]:
    """RGBA of the overlay canvas at points given in CSS pixels of the page."""
    return page.evaluate(
        """([sel, pts]) => {
          const c = document.querySelector(sel);
          const r = c.getBoundingClientRect();
          const ctx = c.getContext('2d');
          return pts.map(([x, y]) => {
            const px = Math.floor((x - r.left) * c.width / r.width);
            const py = Math.floor((y - r.top) * c.height / r.height);
            return [...ctx.getImageData(px, py, 1, 1).data];
          });
        }""",
        [selector, points],
    )


def _class_rgb(page: Any, name: str) -> list[int]:
    return page.evaluate(
        """(name) => {
          const c = document.createElement('canvas').getContext('2d');
          c.fillStyle = Overlay.colour(Overlay.classIndex(name), 0);
          c.fillRect(0, 0, 1, 1);
          return [...c.getImageData(0, 0, 1, 1).data.slice(0, 3)];
        }""",
        name,
    )


def _inside(lab: np.ndarray, value: int, margin: int = 3) -> list[tuple[int, int]]:
    """(x, y) pixel centres of ``value`` at least ``margin`` pixels from any other value."""
    mask = lab == value
    core = mask.copy()
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            core &= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    ys, xs = np.nonzero(core)
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _to_page(page: Any, pixels: list[tuple[int, int]]) -> list[tuple[float, float]]:
    r = page.locator("#detail .stage").bounding_box()
    s = min(r["width"] / W, r["height"] / H)
    ox, oy = r["x"] + (r["width"] - W * s) / 2, r["y"] + (r["height"] - H * s) / 2
    return [(ox + (x + 0.5) * s, oy + (y + 0.5) * s) for x, y in pixels]


def _close(a: list[int], b: list[int], tol: int = 3) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a[:3], b[:3], strict=True))


def test_segmentation_overlays_legend_and_ignored_region(
    live_server: tuple[str, Studio, Path], page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, studio, _ = live_server
    root, labels = write_masks_dataset(tmp_path / "streets", count=7, classes=CLASSES, size=(W, H), seed=3)
    labels["images/aaa_custom.jpg"] = _custom_scene(root)
    projects.create_project(studio, name="streets", task="semantic_segmentation")
    _import(studio, "streets", root)
    by_name = {s["name"]: s for s in samples.list_samples(studio, project="streets", limit=50)["items"]}
    first = by_name["images/aaa_custom.jpg"]
    # a polygon of "car" added over the first car: a second region of the class, the same colour
    detail = samples.get_sample(studio, first["id"])
    objects = [
        {"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]}
        for a in detail["annotations"]
        if a["class"] is not None
    ]
    car_poly = [[30 / W, 20 / H], [80 / W, 20 / H], [80 / W, 60 / H], [30 / W, 60 / H]]
    object_edits.set_objects(
        studio,
        first["id"],
        [*objects, {"kind": "polygon", "class": "car", "geometry": {"polygons": [car_poly]}}],
        expected_revision=detail["objects_revision"],
    )

    # the grid: every tile drawn, no object badge, the panel's Ignored toggle and 20 class toggles
    page.goto(f"{base}/projects/streets")
    alpine_ready(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tile .ov-canvas')].filter(c => +c.dataset.drawn > 0).length === 8"
    )
    expect(page.locator(".tile-count")).to_have_count(0)
    expect(page.locator(".filters [data-testid=ov-ignored]")).to_be_checked()
    expect(page.locator(".filters [data-testid=ov-labels]")).to_have_count(0)
    expect(page.locator(".filters [data-ov-class]")).to_have_count(len(CLASSES))
    _shot(page, "01-grid-20-classes")

    # the detail at full opacity: each class interior is exactly the class colour
    page.locator(".tile").first.click()
    det = "#detail .ov-canvas"
    page.wait_for_function(
        f"() => document.querySelector('{det}') && +document.querySelector('{det}').dataset.drawn > 0"
    )
    expect(page.locator("#detail h2")).to_have_text("images/aaa_custom.jpg")
    _shot(page, "02-detail-legend")
    lab = labels["images/aaa_custom.jpg"]

    # the legend: each class present with its share of the pixels, largest first, as NumPy says
    rows = page.locator("#detail [data-testid=legend-row]")
    got = {
        rows.nth(i).get_attribute("data-class"): (
            float(rows.nth(i).get_attribute("data-share") or "nan"),
            rows.nth(i).locator("[data-testid=legend-share]").inner_text(),
        )
        for i in range(rows.count())
    }
    # the polygon of "car" lies over background pixels: its area adds to the car's share
    car_extra = 50 * 40 / (W * H)
    want = {CLASSES[v]: float(np.mean(lab == v)) for v in np.unique(lab) if v != IGNORE}
    want["car"] += car_extra
    assert set(got) == set(want)
    for name, (share, text) in got.items():
        assert share == pytest.approx(want[name], abs=1e-9), name
        assert text == ("<0.1%" if want[name] < 0.0005 else f"{want[name] * 100:.1f}%")
    order = [rows.nth(i).get_attribute("data-class") for i in range(rows.count())]
    assert order == sorted(want, key=lambda n: (-want[n], n))
    ignored = page.locator("#detail [data-testid=legend-ignored]")
    assert float(ignored.get_attribute("data-share") or "nan") == pytest.approx(np.mean(lab == IGNORE))
    # a long name is cut with an ellipsis inside its row, its whole name in the title
    long_row = page.locator(f"#detail [data-testid=legend-row][data-class='{CLASSES[4]}'] .ov-name")
    assert long_row.evaluate("e => e.scrollWidth > e.clientWidth")
    # every swatch has its class colour
    for name in ("road", "car", CLASSES[4]):
        sw = page.locator(f"#detail [data-testid=legend-row][data-class='{name}'] .ov-swatch").first
        assert sw.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb({}, {}, {})".format(
            *_class_rgb(page, name)
        )

    page.locator("#detail [data-ov=opacity]").fill("100")
    for name in ("background", "road", "car", "person"):
        value = CLASSES.index(name)
        pts = _inside(lab, value)
        picks = [pts[len(pts) // 4], pts[len(pts) // 2], pts[3 * len(pts) // 4]]
        colours = _canvas_rgba(page, det, _to_page(page, picks))
        want_rgb = _class_rgb(page, name)
        assert all(c[3] == 255 and _close(c, want_rgb) for c in colours), (name, colours, want_rgb)
    # both cars and the car polygon: one colour (not a lightness per instance)
    car_rgb = _class_rgb(page, "car")
    second_car = _canvas_rgba(page, det, _to_page(page, [(230, 135)]))[0]
    poly = _canvas_rgba(page, det, _to_page(page, [(55, 40)]))[0]  # over background: the polygon on top
    assert _close(second_car, car_rgb) and _close(poly, car_rgb), (second_car, poly, car_rgb)

    # the ignored block: hatched grey (neutral, not a class colour), and its toggle hides it
    block = _to_page(page, [(x, y) for x in range(190, 240, 7) for y in range(30, 72, 7)])
    hatched = _canvas_rgba(page, det, block)
    assert all(c[3] > 0 and max(c[:3]) - min(c[:3]) <= 20 for c in hatched), hatched
    assert len({tuple(c[:3]) for c in hatched}) > 1  # stripes: not one flat fill
    _shot(page, "03-detail-opaque")
    page.locator("#detail [data-testid=ov-ignored]").uncheck()
    page.wait_for_timeout(50)
    assert all(c[3] == 0 for c in _canvas_rgba(page, det, block))
    expect(page.locator(".filters [data-testid=ov-ignored]")).not_to_be_checked()  # one setting
    page.locator("#detail [data-testid=ov-ignored]").check()

    # a class toggled off in the legend leaves its pixels bare
    person = _to_page(page, _inside(lab, 3)[::40])
    page.locator("#detail [data-ov-class=person]").uncheck()
    assert all(c[3] == 0 for c in _canvas_rgba(page, det, person))
    page.locator("#detail [data-ov-class=person]").check()
    page.locator("#detail [data-ov=opacity]").fill("35")
    _shot(page, "04-detail-35")

    # a scene with many classes: the legend lists each present class once
    page.keyboard.press("Escape")
    tile = page.locator(".tile").nth(3)
    name = next(n for n, s in by_name.items() if s["id"] == int(tile.get_attribute("data-sample-id") or 0))
    tile.click()
    expect(page.locator("#detail h2")).to_have_text(name)
    page.wait_for_function(
        f"() => document.querySelector('{det}') && +document.querySelector('{det}').dataset.drawn > 0"
    )
    lab = labels[name]
    present = {CLASSES[v] for v in np.unique(lab) if v != IGNORE}
    expect(page.locator("#detail [data-testid=legend-row]")).to_have_count(len(present))
    shares = [
        float(x)
        for x in page.locator("#detail [data-testid=legend-row]").evaluate_all(
            "rows => rows.map(r => r.dataset.share)"
        )
    ]
    ignored_share = float(
        page.locator("#detail [data-testid=legend-ignored]").get_attribute("data-share") or 0
    )
    assert sum(shares) + ignored_share == pytest.approx(1.0)
    page.locator("#detail .ov-wrap").scroll_into_view_if_needed()
    _shot(page, "05-detail-many-classes")

    # narrow screen: one column, the legend still readable
    page.set_viewport_size({"width": 480, "height": 900})
    page.locator("#detail .ov-wrap").scroll_into_view_if_needed()
    _shot(page, "06-detail-narrow")
