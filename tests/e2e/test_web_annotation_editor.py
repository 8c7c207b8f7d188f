"""The sample detail's annotation editor in headless Chromium against the real app: draw a box with
the mouse and save it (the API has it where it was drawn, within a pixel), move it, nudge it and
give it another class, undo and redo the save; the editor's own undo and Delete; a polygon drawn by
clicks with a vertex dragged (instance segmentation: the imported box follows its polygon); a stale
save refused with Reload; zoom with the wheel on a 4000×3000 image and draw while zoomed, pan, and
a new class created on save. Plus the history rows of object saves, rendered by TestClient."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from web_factories import alpine_ready, htmx_settled, make_yolo_obb, wait_for_job, web_settings

from detection_factories import write_coco
from factories import run_import
from vistudio.api.app import create_app
from vistudio.services import annotations as object_edits
from vistudio.services import ingest, projects, samples
from vistudio.studio import Studio, open_studio

SHOTS = Path("/tmp/shots")
LONG_CLASS = "a-very-long-class-name-for-the-toolbar-the-palette-and-the-labels"
View = tuple[float, float, float, dict[str, float]]


def _snap(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"editor-{name}.png"))


def _truth(base: str, sid: int) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v1/samples/{sid}")
    assert r.status_code == 200, r.text
    return [
        {"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]}
        for a in r.json()["sample"]["annotations"]
        if a["score"] is None
    ]


def _kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [a for a in objs if a["kind"] == kind]


def _sample_ids(studio: Studio, project: str) -> list[int]:
    return [int(i["id"]) for i in samples.list_samples(studio, project=project, limit=100)["items"]]


def _open_detail(page: Any, base: str, project: str, sid: int) -> Any:
    page.goto(f"{base}/projects/{project}?sample={sid}")
    alpine_ready(page)
    detail = page.get_by_test_id("sample-detail")
    from playwright.sync_api import expect

    expect(detail).to_have_attribute("data-detail-id", str(sid))
    page.wait_for_function("() => [...document.querySelectorAll('#detail img')].every(i => i.complete)")
    return detail


def _start_editing(page: Any) -> Any:
    from playwright.sync_api import expect

    page.get_by_test_id("edit-objects").click()
    canvas = page.get_by_test_id("editor-canvas")
    expect(canvas).to_be_visible()
    expect(canvas).to_have_attribute("data-view", re.compile(r"."))
    return canvas


def _view(page: Any) -> View:
    """The editor's view: CSS px per image px, the image's offset in the canvas, the canvas' box."""
    canvas = page.get_by_test_id("editor-canvas")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    k, ox, oy = (float(v) for v in canvas.get_attribute("data-view").split(","))
    return k, ox, oy, canvas.bounding_box()


def _screen(v: View, x: float, y: float) -> tuple[float, float]:
    """Image pixel (x, y) → page coordinates."""
    k, ox, oy, box = v
    return box["x"] + ox + x * k, box["y"] + oy + y * k


def _image(v: View, px: float, py: float) -> tuple[float, float]:
    """Page coordinates → image pixel."""
    k, ox, oy, box = v
    return (px - box["x"] - ox) / k, (py - box["y"] - oy) / k


def _drag(page: Any, a: tuple[float, float], b: tuple[float, float], *, button: str = "left") -> None:
    page.mouse.move(*a)
    page.mouse.down(button=button)
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=3)
    page.mouse.move(*b, steps=3)
    page.mouse.up(button=button)


def _box_px(g: dict[str, float], w: int, h: int) -> tuple[float, float, float, float]:
    return g["x"] * w, g["y"] * h, (g["x"] + g["w"]) * w, (g["y"] + g["h"]) * h


def _near(a: tuple[float, ...], b: tuple[float, ...], tol: float = 1.0) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


def _run_import(studio: Studio, project: str, source: Path) -> None:
    """Import through the live server's worker (it would claim a job run here as well)."""
    job = ingest.start_import(studio, project=project, source=source, fmt="coco")
    assert wait_for_job(studio, job["id"], timeout=90)["status"] == "succeeded"


def _square_rle(size: int, lo: int, hi: int) -> list[int]:
    """Uncompressed COCO RLE (column-major) of a size×size mask set on [lo, hi)²."""
    counts, current, run = [], 0, 0
    for x in range(size):
        for y in range(size):
            bit = int(lo <= x < hi and lo <= y < hi)
            if bit != current:
                counts.append(run)
                current, run = bit, 0
            run += 1
    return [*counts, run]


def _import(
    studio: Studio, root: Path, name: str, task: str, *, n: int = 4, size: int = 160, crowd: bool = False
) -> list[int]:
    projects.create_project(studio, name=name, task=task)
    masks = task == "instance_segmentation"
    _run_import(
        studio, name, write_coco(root / f"{name}-coco", n, size=size, seed=5, masks=masks, crowd=crowd)
    )
    return _sample_ids(studio, name)


@pytest.mark.browser
def test_draw_move_reclass_save_undo_and_redo_a_box(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    ids = _import(studio, root, "ed-det", "detection", crowd=True)  # a crowd box (dashed) on the first image
    sid = ids[0]
    before = _truth(base, sid)
    detail = _open_detail(page, base, "ed-det", sid)

    # not editing: N and P walk the samples as → and ← do
    page.keyboard.press("n")
    expect(page.get_by_test_id("sample-detail")).to_have_attribute("data-detail-id", str(ids[1]))
    page.keyboard.press("p")
    expect(page.get_by_test_id("sample-detail")).to_have_attribute("data-detail-id", str(sid))
    htmx_settled(page)
    alpine_ready(page)

    # Edit objects: the canvas replaces the image (and its read-only overlay); the detail stays put
    canvas = _start_editing(page)
    expect(detail.get_by_test_id("detail-overlay")).to_be_hidden()
    expect(canvas).to_have_attribute("data-objects", str(len(before)))
    expect(page.get_by_test_id("tool-polygon")).to_have_count(0)  # detection draws boxes only
    page.keyboard.press("ArrowLeft")  # nudges (nothing selected), never the previous sample
    page.keyboard.press("Escape")  # deselects; the detail stays open
    expect(page.locator("dialog#detail")).to_have_attribute("open", "")
    expect(detail).to_have_attribute("data-detail-id", str(sid))

    # draw a box with the mouse in an empty corner
    page.get_by_test_id("tool-box").click()
    expect(page.get_by_test_id("tool-box")).to_have_attribute("aria-pressed", "true")
    v = _view(page)
    a, b = _screen(v, 4.3, 6.6), _screen(v, 41.7, 30.2)
    _drag(page, a, b)
    expect(canvas).to_have_attribute("data-objects", str(len(before) + 1))
    drawn = (*_image(v, *a), *_image(v, *b))
    expect(page.get_by_test_id("editor-status")).to_contain_text("selected: box")
    expect(page.get_by_test_id("editor-class")).to_have_value("rectangle")  # the project's first class
    _snap(page, "box-drawn")

    # the editor's own undo and redo, and Delete of another box drawn and thrown away
    page.keyboard.press("Control+z")
    expect(canvas).to_have_attribute("data-objects", str(len(before)))
    page.keyboard.press("Control+Shift+z")
    expect(canvas).to_have_attribute("data-objects", str(len(before) + 1))
    _drag(page, _screen(v, 120, 120), _screen(v, 150, 150))
    expect(canvas).to_have_attribute("data-objects", str(len(before) + 2))
    page.keyboard.press("Delete")
    expect(canvas).to_have_attribute("data-objects", str(len(before) + 1))
    expect(page.get_by_test_id("editor-undo")).to_be_enabled()

    page.get_by_test_id("editor-save").click()
    note = page.get_by_test_id("editor-note")
    expect(note).to_contain_text(re.compile(r"Objects saved \(change \d+\)\."))
    expect(canvas).to_be_hidden()
    after_first = _truth(base, sid)
    added = [o for o in _kind(after_first, "box") if o not in before]
    assert len(after_first) == len(before) + 1 and len(added) == 1
    assert added[0]["class"] == "rectangle"
    assert _near(_box_px(added[0]["geometry"], 160, 160), drawn), (added, drawn)
    history = page.get_by_test_id("history-item")
    expect(history.first).to_contain_text("objects: +1 box")
    expect(history.first).to_contain_text("web")

    # again: select it, drag it, nudge it (Shift+→: 10 px), give it another class by typing
    canvas = _start_editing(page)
    page.get_by_test_id("tool-select").click()
    v = _view(page)
    centre = _screen(v, (drawn[0] + drawn[2]) / 2, (drawn[1] + drawn[3]) / 2)
    page.mouse.click(*centre)
    expect(page.get_by_test_id("editor-status")).to_contain_text("selected: box")
    _snap(page, "box-selected")
    _drag(page, centre, (centre[0] + 30, centre[1] + 20))
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("ArrowDown")
    expect(detail).to_have_attribute("data-detail-id", str(sid))
    cls = page.get_by_test_id("editor-class")
    cls.fill("ellip")
    cls.press("ArrowLeft")  # typing: the arrows stay in the box
    cls.fill("ellipse")
    cls.press("Enter")
    expect(canvas).to_be_focused()
    expect(page.locator(".ed-pick.is-current")).to_have_attribute("data-class-pick", "ellipse")
    dx, dy = 30 / v[0] + 10, 20 / v[0] + 1
    moved = (drawn[0] + dx, drawn[1] + dy, drawn[2] + dx, drawn[3] + dy)
    page.keyboard.press("Control+s")
    expect(note).to_contain_text(re.compile(r"Objects saved \(change \d+\)\."))
    after_second = _truth(base, sid)
    changed = [o for o in after_second if o not in after_first]
    assert len(after_second) == len(after_first) and len(changed) == 1
    assert changed[0]["class"] == "ellipse"
    assert _near(_box_px(changed[0]["geometry"], 160, 160), moved), (changed, moved)
    expect(history.first).to_contain_text("objects: 1 box changed")
    _snap(page, "saved-note")

    # Undo save: the project's undo of that change; Redo takes it back again
    page.get_by_test_id("editor-undo-save").click()
    expect(note).to_contain_text(re.compile(r"Save undone \(change \d+\)\."))
    assert sorted(map(json.dumps, _truth(base, sid))) == sorted(map(json.dumps, after_first))
    expect(history.first).to_contain_text("undo of change")
    page.get_by_test_id("editor-redo-save").click()
    expect(note).to_contain_text(re.compile(r"Save redone \(change \d+\)\."))
    assert sorted(map(json.dumps, _truth(base, sid))) == sorted(map(json.dumps, after_second))

    # Cancel with unsaved changes asks first; declined, the editing goes on; accepted, nothing saved
    canvas = _start_editing(page)
    page.get_by_test_id("tool-box").click()
    _drag(page, _screen(v, 100, 100), _screen(v, 140, 130))
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_test_id("editor-cancel").click()
    expect(canvas).to_be_visible()
    page.once("dialog", lambda d: d.dismiss())  # so does closing the detail
    page.get_by_role("button", name="Close detail").click()
    expect(page.locator("dialog#detail")).to_have_attribute("open", "")
    expect(canvas).to_be_visible()
    expect(page.get_by_role("button", name="Next sample")).to_be_disabled()  # no stepping away meanwhile
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("editor-cancel").click()
    expect(canvas).to_be_hidden()
    assert len(_truth(base, sid)) == len(after_second)
    expect(page.get_by_role("button", name="Next sample")).to_be_enabled()


@pytest.mark.browser
def test_draw_a_polygon_drag_a_vertex_and_save(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    sid = _import(studio, root, "ed-seg", "instance_segmentation")[0]
    # and an RLE mask (a square at 110..135), which the editor shows but cannot reshape
    mask = {
        "kind": "mask_rle",
        "class": "rectangle",
        "geometry": {"size": [160, 160], "counts": _square_rle(160, 110, 135)},
    }
    rev = httpx.get(f"{base}/api/v1/samples/{sid}").json()["sample"]["objects_revision"]
    r = httpx.put(
        f"{base}/api/v1/samples/{sid}/annotations",
        json={"objects": [*_truth(base, sid), mask], "revision": rev},
    )
    assert r.status_code == 200, r.text
    before = _truth(base, sid)
    _open_detail(page, base, "ed-seg", sid)
    canvas = _start_editing(page)
    pairs = len(_kind(before, "box"))
    # a polygon imported with its box is one object in the editor
    expect(canvas).to_have_attribute("data-objects", str(len(_kind(before, "polygon")) + 1))
    expect(page.get_by_test_id("tool-box")).to_have_count(0)
    v = _view(page)
    status = page.get_by_test_id("editor-status")
    page.mouse.click(*_screen(v, 122, 122))
    expect(status).to_contain_text("selected: mask · masks cannot be reshaped here")
    _drag(page, _screen(v, 122, 122), _screen(v, 100, 100))
    expect(page.get_by_test_id("editor-undo")).to_be_disabled()  # not moved
    page.keyboard.press("2")  # its class can change: the project's second class
    expect(page.get_by_test_id("editor-class")).to_have_value("ellipse")
    _snap(page, "mask-selected")
    page.keyboard.press("Escape")

    page.get_by_test_id("tool-polygon").click()
    v = _view(page)
    points = [(20.0, 20.0), (70.0, 14.0), (76.0, 60.0), (24.0, 66.0)]
    for p in points:
        page.mouse.click(*_screen(v, *p))
    page.mouse.move(*_screen(v, 40, 40))
    _snap(page, "polygon-drawing")
    page.mouse.click(*_screen(v, *points[0]))  # the first point closes it
    expect(page.get_by_test_id("editor-status")).to_contain_text("selected: polygon · 4 points")

    # drag its third vertex (any tool: the selection's vertices are handles)
    page.keyboard.press("v")
    expect(page.get_by_test_id("tool-select")).to_have_attribute("aria-pressed", "true")
    _drag(page, _screen(v, *points[2]), _screen(v, 90, 72))
    points[2] = _image(v, *_screen(v, 90, 72))
    # a vertex inserted by double-clicking an edge, removed again with Delete
    mid = _screen(v, 45, 17)
    page.mouse.dblclick(*mid)
    expect(page.get_by_test_id("editor-status")).to_contain_text("5 points")
    page.keyboard.press("Delete")
    expect(page.get_by_test_id("editor-status")).to_contain_text("4 points")
    _snap(page, "polygon-selected")

    # a polygon whose edges cross is refused by the save, which selects it; Delete drops it
    page.keyboard.press("p")
    for p in [(100, 100), (140, 140), (140, 100), (100, 140)]:
        page.mouse.click(*_screen(v, *p))
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    expect(status).not_to_contain_text("selected")
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-error")).to_contain_text(
        "Not saved: self-intersecting polygon: its edges cross near (0.75, 0.75) (the object now selected)."
    )
    expect(status).to_contain_text("selected: polygon · 4 points · 40 × 40 px")
    _snap(page, "polygon-refused")
    page.keyboard.press("Delete")

    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-note")).to_contain_text("Objects saved")
    after = _truth(base, sid)
    new = [o for o in _kind(after, "polygon") if o not in before]
    assert len(new) == 1 and len(_kind(after, "polygon")) == len(_kind(before, "polygon")) + 1
    ring = new[0]["geometry"]["polygons"][0]
    assert len(ring) == 4
    for (x, y), (ex, ey) in zip(ring, points, strict=True):
        assert _near((x * 160, y * 160), (ex, ey)), (ring, points)
    assert len(_kind(after, "box")) == pairs and _kind(after, "box") == _kind(before, "box")
    assert _kind(after, "mask_rle") == [{**mask, "class": "ellipse"}]

    # move an imported polygon: its box follows its bounds
    canvas = _start_editing(page)
    page.get_by_test_id("tool-select").click()
    v = _view(page)

    def centre(o: dict[str, Any]) -> tuple[float, float]:
        ring = o["geometry"]["polygons"][0]
        return sum(p[0] for p in ring) / len(ring) * 160, sum(p[1] for p in ring) / len(ring) * 160

    # the imported polygon farthest from the one drawn
    poly = max(_kind(before, "polygon"), key=lambda o: (centre(o)[0] - 55) ** 2 + (centre(o)[1] - 43) ** 2)
    start = _screen(v, *centre(poly))
    page.mouse.click(*start)
    expect(page.get_by_test_id("editor-status")).to_contain_text("selected: polygon")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Shift+ArrowRight")
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-note")).to_contain_text("Objects saved")
    now = _truth(base, sid)
    assert len(_kind(now, "box")) == pairs
    moved_boxes = [o for o in _kind(now, "box") if o not in before]
    assert len(moved_boxes) == 1
    g = moved_boxes[0]["geometry"]
    moved_poly = next(o for o in _kind(now, "polygon") if o not in after)
    ys = [p[1] for p in moved_poly["geometry"]["polygons"][0]]
    assert abs(g["y"] - min(ys)) < 1e-6 and abs(g["y"] + g["h"] - max(ys)) < 1e-6


@pytest.mark.browser
def test_a_stale_save_is_refused_with_reload(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    sid = _import(studio, root, "ed-stale", "detection", n=2)[0]
    detail = _open_detail(page, base, "ed-stale", sid)
    _start_editing(page)
    page.get_by_test_id("tool-box").click()
    v = _view(page)
    _drag(page, _screen(v, 10, 10), _screen(v, 50, 40))
    # someone else saves this image's objects meanwhile
    rev = httpx.get(f"{base}/api/v1/samples/{sid}").json()["sample"]["objects_revision"]
    r = httpx.put(f"{base}/api/v1/samples/{sid}/annotations", json={"objects": [], "revision": rev})
    assert r.status_code == 200, r.text
    page.get_by_test_id("editor-save").click()
    error = page.get_by_test_id("editor-error")
    expect(error).to_contain_text("Someone changed this image’s objects since you opened it")
    _snap(page, "stale")
    assert _truth(base, sid) == []
    page.get_by_test_id("editor-reload").click()
    expect(page.get_by_test_id("editor-canvas")).to_be_hidden()
    expect(detail.get_by_test_id("detail-overlay")).to_have_attribute(
        "aria-label", "0 annotations drawn over the image"
    )
    expect(page.get_by_test_id("history-item").first).to_contain_text("api")


@pytest.mark.browser
def test_draw_and_rotate_a_rotated_box(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    projects.create_project(studio, name="ed-obb", task="oriented_detection")
    job = ingest.start_import(studio, project="ed-obb", source=make_yolo_obb(root / "obb"), fmt="yolo")
    assert wait_for_job(studio, job["id"], timeout=90)["status"] == "succeeded"
    sid = _sample_ids(studio, "ed-obb")[0]  # 160×120: turning happens in pixels, not in 0..1
    before = _truth(base, sid)
    _open_detail(page, base, "ed-obb", sid)
    canvas = _start_editing(page)
    expect(canvas).to_have_attribute(
        "data-objects", "1"
    )  # its rotated box (the box and polygon stay as they are)
    page.get_by_test_id("tool-rotated_box").click()
    v = _view(page)
    _drag(page, _screen(v, 20, 70), _screen(v, 60, 100))
    status = page.get_by_test_id("editor-status")
    expect(status).to_contain_text("selected: rotated box · 40 × 30 px · 0°")
    # turn it by 30° with its round handle, above the middle of its top edge
    c, a = (40.0, 85.0), math.radians(30)
    handle = _screen(v, 40, 70 - 26 / v[0])
    r = 40.0
    to = _screen(v, c[0] + r * math.cos(math.radians(-60)), c[1] + r * math.sin(math.radians(-60)))
    _drag(page, handle, to)
    expect(status).to_contain_text("40 × 30 px · 30°")
    # a corner handle resizes it in its own frame: 10 px longer, still at 30°
    corner = (c[0] + 20 * math.cos(a) - 15 * math.sin(a), c[1] + 20 * math.sin(a) + 15 * math.cos(a))
    _drag(page, _screen(v, *corner), _screen(v, corner[0] + 10 * math.cos(a), corner[1] + 10 * math.sin(a)))
    expect(status).to_contain_text("50 × 30 px · 30°")
    page.keyboard.press("Control+z")
    expect(status).to_contain_text("40 × 30 px · 30°")
    _snap(page, "rotated")
    page.locator(".ed-keys summary").click()  # the keys, listed under the palette
    expect(page.locator(".ed-keys dl")).to_contain_text("rotated box")
    page.locator(".ed-keys").scroll_into_view_if_needed()
    _snap(page, "keys")
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-note")).to_contain_text("Objects saved")
    after = _truth(base, sid)
    assert [o for o in after if o["kind"] != "rotated_box"] == [
        o for o in before if o["kind"] != "rotated_box"
    ]
    new = [o for o in _kind(after, "rotated_box") if o not in before]
    assert len(new) == 1 and new[0]["class"] == "car"
    expected = [
        (
            c[0] + (x - c[0]) * math.cos(a) - (y - c[1]) * math.sin(a),
            c[1] + (x - c[0]) * math.sin(a) + (y - c[1]) * math.cos(a),
        )
        for x, y in [(20, 70), (60, 70), (60, 100), (20, 100)]
    ]
    got = [(x * 160, y * 120) for x, y in new[0]["geometry"]["points"]]
    for g, e in zip(got, expected, strict=True):
        assert _near(g, e, 0.6), (got, expected)


def _big_coco(root: Path) -> Path:
    """One 4000×3000 photo-like image with two boxes, one of a class with a long name."""
    (root / "images").mkdir(parents=True)
    im = Image.new("RGB", (4000, 3000), (120, 140, 160))
    d = ImageDraw.Draw(im)
    for i in range(0, 4000, 250):
        d.line([(i, 0), (i, 3000)], fill=(100, 120, 140), width=6)
    for j in range(0, 3000, 250):
        d.line([(0, j), (4000, j)], fill=(100, 120, 140), width=6)
    d.rectangle((600, 500, 1600, 1400), fill=(210, 60, 50))
    d.ellipse((2400, 1500, 3400, 2600), fill=(60, 190, 80))
    im.save(root / "images" / "big.jpg", quality=80)
    coco = {
        "images": [{"id": 1, "file_name": "big.jpg", "width": 4000, "height": 3000}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [600, 500, 1000, 900],
                "area": 9e5,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [2400, 1500, 1000, 1100],
                "area": 1e6,
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 1, "name": LONG_CLASS}, {"id": 2, "name": "car"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


@pytest.mark.browser
def test_zoom_pan_and_draw_on_a_large_image(live_server: tuple[str, Studio, Path], page: Any) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    projects.create_project(studio, name="ed-big", task="detection")
    _run_import(studio, "ed-big", _big_coco(root / "big-coco"))
    sid = _sample_ids(studio, "ed-big")[0]
    _open_detail(page, base, "ed-big", sid)
    canvas = _start_editing(page)
    _snap(page, "long-class")
    fit = _view(page)
    zoom = page.get_by_test_id("editor-zoom")
    expect(zoom).to_have_text(f"{round(fit[0] * 100)}%")

    # the wheel zooms around the cursor: the image point under it stays under it
    # near the red box's bottom-right corner, on whole pixels (the events' coordinates are)
    at = tuple(float(round(c)) for c in _screen(fit, 1600, 1400))
    under = _image(fit, *at)
    page.mouse.move(*at)
    for _ in range(4):
        page.mouse.wheel(0, -400)
    page.wait_for_function(
        "(k) => +document.querySelector('[data-testid=editor-canvas]').dataset.view.split(',')[0] > k * 4",
        arg=fit[0],
    )
    v = _view(page)
    assert v[0] > fit[0] * 4
    assert _near(_image(v, *at), under, 0.5)

    # draw a box while zoomed, of a class the project does not have yet: created on save, once asked
    cls = page.get_by_test_id("editor-class")
    cls.fill("sign")
    cls.press("Enter")
    page.keyboard.press("b")
    a, b = (at[0] + 20, at[1] + 15), (at[0] + 180, at[1] + 110)
    _drag(page, a, b)
    drawn = (*_image(v, *a), *_image(v, *b))
    expect(page.get_by_test_id("editor-status")).to_contain_text("selected: box")
    _snap(page, "zoomed-4000")

    # space+drag and middle-drag pan; the box stays where it was drawn in the image
    page.keyboard.down(" ")
    _drag(page, (at[0], at[1]), (at[0] - 120, at[1] - 60))
    page.keyboard.up(" ")
    panned = _view(page)
    assert _near((panned[1], panned[2]), (v[1] - 120, v[2] - 60), 1.0)
    _drag(page, (at[0], at[1]), (at[0] + 50, at[1] + 50), button="middle")
    assert _near((_view(page)[1],), (panned[1] + 50,), 1.0)

    page.once("dialog", lambda d: d.accept() if "Create class “sign”?" in d.message else d.dismiss())
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-note")).to_contain_text("new class “sign”")
    new = [o for o in _truth(base, sid) if o["class"] == "sign"]
    assert len(new) == 1
    assert _near(_box_px(new[0]["geometry"], 4000, 3000), drawn), (new, drawn)
    expect(page.get_by_test_id("history-item").first).to_contain_text("new class: sign")

    # Fit comes back to the whole image; the long class name is cut in the palette, not the layout
    canvas = _start_editing(page)
    page.get_by_test_id("editor-fit").click()
    expect(zoom).to_have_text(f"{round(fit[0] * 100)}%")
    page.mouse.click(*_screen(_view(page), 1100, 950))
    expect(page.get_by_test_id("editor-class")).to_have_value(LONG_CLASS)
    assert page.evaluate(
        "() => { const d = document.querySelector('dialog'); return d.scrollWidth <= d.clientWidth + 1; }"
    )
    assert canvas.bounding_box()["width"] > 900  # the detail gives the image its full width
    _snap(page, "long-class-selected")
    # a narrow window: the toolbar wraps, nothing overflows
    page.set_viewport_size({"width": 560, "height": 800})
    expect(canvas).to_be_visible()
    assert page.evaluate(
        "() => { const d = document.querySelector('dialog'); return d.scrollWidth <= d.clientWidth + 1; }"
    )
    _snap(page, "narrow")


@pytest.fixture
def client(tmp_path: Path) -> Any:
    studio = open_studio(web_settings(tmp_path))
    yield TestClient(create_app(studio)), studio
    studio.close()


def test_object_saves_in_the_detail_history_and_who_gets_the_editor(client: Any, tmp_path: Path) -> None:
    tc, studio = client
    projects.create_project(studio, name="h-seg", task="instance_segmentation")
    assert run_import(studio, "h-seg", write_coco(tmp_path / "c", 2, size=96, seed=1), fmt="coco")[
        "status"
    ] == ("succeeded")
    sid = _sample_ids(studio, "h-seg")[0]
    d = samples.get_sample(studio, sid)
    truth = [a for a in d["annotations"] if a["score"] is None]
    poly = next(a for a in truth if a["kind"] == "polygon")
    moved = {
        **poly,
        "geometry": {"polygons": [[[x * 0.9, y * 0.9] for x, y in r] for r in poly["geometry"]["polygons"]]},
    }
    new = [
        *[a for a in truth if a is not poly],
        moved,
        {
            "kind": "polygon",
            "class": "cone",
            "geometry": {"polygons": [[[0.1, 0.1], [0.3, 0.1], [0.2, 0.3]]]},
        },
    ]
    plain = [{"kind": a["kind"], "class": a["class"], "geometry": a["geometry"]} for a in new]
    object_edits.set_objects(studio, sid, plain, expected_revision=d["objects_revision"], create_classes=True)
    page = tc.get(f"/projects/h-seg/samples/{sid}").text
    assert "objects: +1 polygon, 1 polygon changed" in page
    assert "new class: cone" in page
    assert 'data-testid="edit-objects"' in page and 'data-testid="tool-polygon"' in page
    assert 'data-testid="tool-box"' not in page  # a box is its polygon's companion here
    data = json.loads(
        re.search(r"<script type=\"application/json\" data-editor>(.*?)</script>", page, re.S)[1]
    )
    assert data["revision"] == samples.get_sample(studio, sid)["objects_revision"]
    assert data["draw"] == ["polygon"] and len(data["objects"]) == len(new)

    # a classification project gets no editor
    projects.create_project(studio, name="h-cls", task="classification")
    folder = tmp_path / "cls" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "a.png")
    assert run_import(studio, "h-cls", tmp_path / "cls")["status"] == "succeeded"
    cid = _sample_ids(studio, "h-cls")[0]
    assert 'data-testid="edit-objects"' not in tc.get(f"/projects/h-cls/samples/{cid}").text
